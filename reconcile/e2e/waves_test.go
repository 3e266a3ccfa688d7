package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
	"github.com/gantry-dev/gantry/reconcile/kube/kubetest"
)

var waveClusters = []string{"staging", "eu-1", "us-1"}

// waveSpecs is release "chat", two replicas in each of three clusters,
// rolled out wave by wave: staging, then eu-1, then us-1.
func waveSpecs(ns, product, method string, kubeconfigs []string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "gantry {\n  namespace = %q\n  registry  = \"%s/%s\"\n}\n", ns, env.registry, ns)
	fmt.Fprintf(&b, "node_pool \"gpu\" {\n  selector = { \"nvidia.com/gpu.product\" = %q }\n  reserve  = 1\n}\n", product)
	for i, name := range waveClusters {
		fmt.Fprintf(&b, "cluster %q {\n  kubeconfig = %q\n}\n", name, kubeconfigs[i])
	}
	fmt.Fprintf(&b, `
release "chat" {
  model {
    source = "models/tiny.gguf"
    format = "gguf"
  }
  quantize {
    method = %q
  }
  runtime {
    image = %q
    port  = 8080
  }
  replicas_per_cluster = 2
  resources {
    gpus = 1
  }
  placement {
    max_per_node = 1
  }
  rollout {
    waves = [["staging"], ["eu-1"], ["us-1"]]
    steps = [{ replicas = 1, pause = "4s" }, { percent = 100, pause = "4s" }]
    analysis {
      interval      = "1s"
      failure_limit = 2
      metric "error_ratio" {
        query = "max(test_error_ratio{namespace=\"{{.Namespace}}\", pod=~\"{{.Pods}}\"})"
        max   = 0.05
      }
    }
  }
}
`, method, env.runtime)
	return []byte(b.String())
}

// TestWaveRollout: three kube-apiservers, Debian's prometheus scraping
// every cluster's pods, git http-backend and the daemon. A new version
// goes wave by wave, every step and every wave a promotion commit; a
// failure injected in wave 2 gives one abort commit, and both waves that
// run the new version go back, while wave 3 never gets it.
func TestWaveRollout(t *testing.T) {
	need(t)
	const ns, product = "e2e-waves", "L4-waves"
	clusters := kubetest.StartT(t, 3)
	var kubeconfigs []string
	kubelets := map[string]*fakeKubelet{}
	for i, c := range clusters {
		cs, err := c.Clientset()
		if err != nil {
			t.Fatal(err)
		}
		gpuNodesIn(t, cs, product, 2, fmt.Sprintf("w%d-a", i), fmt.Sprintf("w%d-b", i))
		kubeconfigs = append(kubeconfigs, c.Kubeconfig)
		kubelets[waveClusters[i]] = startKubeletIn(t, c.Config, ns)
	}
	// One exporter for every cluster's pods (their names differ: so do
	// the nodes).
	exp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, c := range waveClusters {
			kubelets[c].ServeHTTP(w, r)
		}
	}))
	t.Cleanup(exp.Close)
	prom := startPrometheus(t, strings.TrimPrefix(exp.URL, "http://"))
	g := newGitRemote(t)
	model := tinyModel(t, ggufgen.Config{Layers: 1, Embd: 128, FF: 256, Vocab: 128, Heads: 4, HeadsKV: 2, Type: ggml.F16, Seed: 13})
	g.commit("add chat", map[string][]byte{"gantry.hcl": waveSpecs(ns, product, "q8_0", kubeconfigs), "models/tiny.gguf": model})
	listen := freeAddr(t)
	d := startDaemon(t, "run", "--repo", g.url, "--target", "kube", "--state-dir", t.TempDir(),
		"--listen", listen, "--interval", "1s", "--leader-elect=false", "--prometheus", prom.URL())
	version := func() string {
		ro := rolloutOf(apiStatus(t, listen))
		v, _ := ro["canary"].(string)
		return v
	}
	// only says every cluster in cs serves v on both replicas, alone.
	only := func(v string, cs ...string) bool {
		for _, c := range cs {
			got := kubelets[c].byVersion()
			if len(got) != 1 || got[v] != 2 {
				return false
			}
		}
		return true
	}
	t.Cleanup(func() {
		if t.Failed() {
			l := d.log()
			t.Logf("daemon log (tail):\n%s", l[max(0, len(l)-6000):])
			_ = os.WriteFile(filepath.Join(os.TempDir(), "gantry-wave-daemon.log"), []byte(l), 0o644)
			for _, c := range waveClusters {
				t.Logf("%s serves %v", c, kubelets[c].byVersion())
			}
		}
	})
	var v1 string
	waitUntil(t, "the first version in every cluster", 90*time.Second, func() bool {
		v1 = version()
		return v1 != "" && only(v1, waveClusters...)
	})

	// 1. A healthy version, wave by wave.
	g.sync()
	c2 := g.commit("q4_0", map[string][]byte{"gantry.hcl": waveSpecs(ns, product, "q4_0", kubeconfigs)})
	var v2 string
	waitUntil(t, "the new version", 60*time.Second, func() bool { v2 = version(); return v2 != "" && v2 != v1 })
	waitUntil(t, "wave 1 (staging) done, eu-1 and us-1 untouched", 90*time.Second, func() bool {
		return only(v2, "staging") && strings.Count(strings.Join(g.adjustments(c2), ","), "promote") >= 2
	})
	if !only(v1, "us-1") {
		t.Fatalf("us-1 changed during wave 1: %v", kubelets["us-1"].byVersion())
	}
	waitUntil(t, "every wave done", 180*time.Second, func() bool { return only(v2, waveClusters...) })
	adj := g.adjustments(c2)
	if strings.Join(adj, ",") != "promote,promote,promote,promote,promote" {
		t.Fatalf("healthy waves: adjustments %v, want 5 promotions (2 steps in each wave but the last, where the last step completes)", adj)
	}
	var waves []string
	for _, c := range g.commits() {
		if c[0] == c2 {
			break
		}
		for _, line := range strings.Split(c[1], "\n") {
			if v, ok := strings.CutPrefix(line, "Gantry-Wave: "); ok {
				waves = append([]string{v}, waves...)
			}
		}
	}
	if strings.Join(waves, ",") != "1,2,2,3,3" {
		t.Errorf("Gantry-Wave trailers %v, want 1,2,2,3,3", waves)
	}

	// 2. A version that fails in wave 2: one abort, staging and eu-1 back
	// on v2, us-1 never changed.
	g.sync()
	c3 := g.commit("q5_0", map[string][]byte{"gantry.hcl": waveSpecs(ns, product, "q5_0", kubeconfigs)})
	var v3 string
	waitUntil(t, "the third version", 60*time.Second, func() bool { v3 = version(); return v3 != "" && v3 != v2 })
	waitUntil(t, "wave 2 to start", 120*time.Second, func() bool {
		got := kubelets["eu-1"].byVersion()
		return got[v3] > 0
	})
	kubelets["eu-1"].mu.Lock()
	kubelets["eu-1"].bad[v3] = true
	kubelets["eu-1"].mu.Unlock()
	waitUntil(t, "the abort", 120*time.Second, func() bool {
		return strings.Contains(strings.Join(g.adjustments(c3), ","), "abort")
	})
	waitUntil(t, "every wave back on v2", 120*time.Second, func() bool { return only(v2, waveClusters...) })
	adj = g.adjustments(c3)
	if n := strings.Count(strings.Join(adj, ","), "abort"); n != 1 || adj[len(adj)-1] != "abort" {
		t.Fatalf("failing wave 2: adjustments %v, want promotions then one abort", adj)
	}
	if got := kubelets["us-1"].versionsSeen(); got[v3] {
		t.Errorf("us-1 ran version %s of the aborted rollout", v3)
	}
	if strings.Contains(d.log(), gitPassword) {
		t.Error("the Git password reached the daemon's log")
	}
}

// versionsSeen are the versions of every Deployment k has seen.
func (k *fakeKubelet) versionsSeen() map[string]bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := map[string]bool{}
	for _, v := range k.versionOf {
		out[v] = true
	}
	return out
}

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gantry-dev/gantry/reconcile"
	"github.com/gantry-dev/gantry/reconcile/kube/kubetest"
	"github.com/gantry-dev/gantry/spec"
)

// TestFleetDirTargets: with cluster blocks and a dir target, the engine
// gets one directory per cluster and no single Target.
func TestFleetDirTargets(t *testing.T) {
	out, state := t.TempDir(), t.TempDir()
	var stderr bytes.Buffer
	a := &app{stdout: &bytes.Buffer{}, stderr: &stderr}
	f := engineFlags{repo: "../../examples/fleet", target: "dir:" + out, state: state, jobs: 1}
	e, _, err := a.engine(context.Background(), &f)
	if err != nil {
		t.Fatalf("engine: %v\n%s", err, stderr.String())
	}
	if e.Target != nil || e.ClusterTarget == nil || e.MirrorFor == nil {
		t.Fatalf("fleet engine: Target %v, ClusterTarget set %v, MirrorFor set %v; want only the fleet hooks", e.Target, e.ClusterTarget != nil, e.MirrorFor != nil)
	}
	for _, name := range []string{"staging", "eu-1", "us-1"} {
		tg, err := e.ClusterTarget(context.Background(), spec.Cluster{Name: name, Kubeconfig: "/unused"})
		if err != nil {
			t.Fatal(err)
		}
		dt, ok := tg.(reconcile.DirTarget)
		if !ok || dt.Dir != filepath.Join(out, name) || dt.CacheDir != filepath.Join(state, "work") {
			t.Errorf("cluster %s: target %#v, want the directory %s", name, tg, filepath.Join(out, name))
		}
	}
	if f.restConfig != nil {
		t.Error("a dir fleet elects a leader")
	}
}

// fleetRepo writes specs with clusters a and b (each with a kubeconfig of
// its own server) and the gantry block's extra attributes.
func fleetRepo(t *testing.T, gantryAttrs string) (repo string, servers map[string]string) {
	t.Helper()
	repo = t.TempDir()
	servers = map[string]string{}
	var blocks strings.Builder
	for i, name := range []string{"a", "b"} {
		servers[name] = fmt.Sprintf("127.0.0.%d:%d", i+2, 6443+i)
		kc := kubeconfigFile(t, name, servers[name])
		fmt.Fprintf(&blocks, "cluster %q {\n  kubeconfig = %q\n  context = %q\n}\n", name, kc, name)
	}
	hcl := "gantry {\n  namespace = \"llm\"\n  target = \"kube\"\n" + gantryAttrs + "}\n" + blocks.String()
	if err := os.WriteFile(filepath.Join(repo, "gantry.hcl"), []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	return repo, servers
}

// kubeconfigFile writes a kubeconfig whose one context, name, reaches
// https://server with a token.
func kubeconfigFile(t *testing.T, name, server string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
current-context: %[1]s
clusters:
- name: %[1]s
  cluster: {server: "https://%[2]s", insecure-skip-tls-verify: true}
users:
- name: %[1]s
  user: {token: secret-token-of-%[1]s}
contexts:
- name: %[1]s
  context: {cluster: %[1]s, user: %[1]s}
`, name, server)
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// noDaemonCluster makes the daemon's own kube config fail: no
// KUBECONFIG file, no ~/.kube/config, not in a pod.
func noDaemonCluster(t *testing.T) {
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "missing"))
	t.Setenv("HOME", t.TempDir())
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
}

func jobsHost(t *testing.T, e *reconcile.Engine) string {
	t.Helper()
	kj, ok := e.BuildJobs.(*reconcile.KubeJobs)
	if !ok {
		return ""
	}
	return kj.Client.(*kubernetes.Clientset).CoreV1().RESTClient().Get().URL().Host
}

// TestFleetKubeWiring: with a kube target, each cluster block is a
// KubeTarget; the Lease lives in lease_cluster, else the daemon's
// cluster; build jobs run in the daemon's cluster, else the lease
// cluster, else a release that needs one fails saying why.
func TestFleetKubeWiring(t *testing.T) {
	daemon := "127.0.0.9:7443"
	cases := []struct {
		name, attrs     string
		daemon          bool // --kubeconfig of the daemon's own cluster
		lease, jobs     string
		jobsErrContains []string
	}{
		{name: "lease cluster and the daemon's", attrs: "  lease_cluster = \"b\"\n", daemon: true, lease: "b", jobs: "daemon"},
		{name: "lease cluster only", attrs: "  lease_cluster = \"b\"\n", lease: "b", jobs: "b"},
		{name: "the daemon's only", daemon: true, lease: "daemon", jobs: "daemon"},
		{name: "neither", jobsErrContains: []string{`runner = "job"`, "lease_cluster", "--kubeconfig"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			noDaemonCluster(t)
			repo, servers := fleetRepo(t, tc.attrs)
			servers["daemon"] = daemon
			f := engineFlags{repo: repo, state: t.TempDir(), jobs: 1}
			f.kube.leaderElect = true
			if tc.daemon {
				f.kube.kubeconfig = kubeconfigFile(t, "daemon", daemon)
			}
			var stderr bytes.Buffer
			e, _, err := (&app{stdout: &bytes.Buffer{}, stderr: &stderr}).engine(context.Background(), &f)
			if err != nil {
				t.Fatalf("engine: %v\n%s", err, stderr.String())
			}
			for _, name := range []string{"a", "b"} {
				tg, err := e.ClusterTarget(context.Background(), spec.Cluster{Name: name, Kubeconfig: kubeconfigFile(t, name, servers[name])})
				if _, ok := tg.(*reconcile.KubeTarget); err != nil || !ok {
					t.Errorf("cluster %s: %T, %v; want a *reconcile.KubeTarget", name, tg, err)
				}
			}
			switch {
			case tc.lease == "" && f.restConfig != nil:
				t.Errorf("Lease in %s, want no leader election", f.restConfig.Host)
			case tc.lease != "" && (f.restConfig == nil || f.restConfig.Host != "https://"+servers[tc.lease]):
				t.Errorf("Lease config %v, want cluster %s (%s)", f.restConfig != nil, tc.lease, servers[tc.lease])
			}
			if tc.jobs != "" {
				if got := jobsHost(t, e); got != servers[tc.jobs] {
					t.Errorf("build jobs go to %q, want %s (%s)", got, tc.jobs, servers[tc.jobs])
				}
				// Eval Jobs run where build Jobs do.
				ke, ok := e.EvalJobs.(*reconcile.KubeEvals)
				if !ok {
					t.Fatalf("eval jobs: %T, want *reconcile.KubeEvals", e.EvalJobs)
				}
				if got := ke.Client.(*kubernetes.Clientset).CoreV1().RESTClient().Get().URL().Host; got != servers[tc.jobs] {
					t.Errorf("eval jobs go to %q, want %s (%s)", got, tc.jobs, servers[tc.jobs])
				}
				return
			}
			if e.EvalJobs != nil {
				t.Errorf("eval jobs %T with no cluster for them", e.EvalJobs)
			}
			err = e.BuildJobs.RunBuild(context.Background(), reconcile.BuildJob{Release: "chat"})
			if err == nil {
				t.Fatal("a build job ran with no cluster for it")
			}
			for _, w := range tc.jobsErrContains {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("build job error %q lacks %q", err, w)
				}
			}
		})
	}

	// A cluster whose kubeconfig is broken is that cluster's error, naming
	// the file, never its contents.
	repo, _ := fleetRepo(t, "")
	f := engineFlags{repo: repo, state: t.TempDir(), jobs: 1}
	e, _, err := (&app{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}).engine(context.Background(), &f)
	if err != nil {
		t.Fatal(err)
	}
	bad := kubeconfigFile(t, "a", "127.0.0.2:6443")
	if err := os.WriteFile(bad, []byte("token: secret-token-of-a\n  : ["), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = e.ClusterTarget(context.Background(), spec.Cluster{Name: "a", Kubeconfig: bad, Context: "a"})
	if err == nil || !strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), "secret-token") {
		t.Errorf("broken kubeconfig: %v; want an error naming %s without the token", err, bad)
	}
}

// TestClusterCaches: the daemon's wrapper passes other targets and errors
// through and returns the KubeTarget it starts informers for.
func TestClusterCaches(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	boom := errors.New("boom")
	kt := &reconcile.KubeTarget{}
	mk := func(_ context.Context, c spec.Cluster) (reconcile.Target, error) {
		switch c.Name {
		case "dir":
			return reconcile.DirTarget{}, nil
		case "bad":
			return nil, boom
		}
		return kt, nil
	}
	noDaemonCluster(t)
	repo, servers := fleetRepo(t, "")
	f := engineFlags{repo: repo, state: t.TempDir(), jobs: 1}
	e, _, err := (&app{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}).engine(ctx, &f)
	if err != nil {
		t.Fatal(err)
	}
	real, err := e.ClusterTarget(ctx, spec.Cluster{Name: "a", Kubeconfig: kubeconfigFile(t, "a", servers["a"])})
	if err != nil {
		t.Fatal(err)
	}
	kt = real.(*reconcile.KubeTarget) // its informers fail to sync (nothing listens) until ctx ends
	cached := clusterCaches(ctx, mk)
	if tg, err := cached(ctx, spec.Cluster{Name: "dir"}); err != nil || tg != (reconcile.DirTarget{}) {
		t.Errorf("dir target: %v, %v", tg, err)
	}
	if _, err := cached(ctx, spec.Cluster{Name: "bad"}); !errors.Is(err, boom) {
		t.Errorf("error: %v, want boom", err)
	}
	for range 2 { // made again (the block changed): the first one's informers stop
		if tg, err := cached(ctx, spec.Cluster{Name: "a"}); err != nil || tg != kt {
			t.Errorf("kube target: %v, %v", tg, err)
		}
	}
}

// TestFleetLeaseInLeaseCluster: against a real API server, the daemon of
// a fleet whose gantry block names lease_cluster takes its Lease there
// (the other cluster is not even reachable, and the daemon has no
// cluster of its own).
func TestFleetLeaseInLeaseCluster(t *testing.T) {
	clusters := kubetest.StartT(t, 1)
	noDaemonCluster(t)
	repo := t.TempDir()
	hcl := fmt.Sprintf(`gantry {
  namespace     = "llm"
  target        = "kube"
  lease_cluster = "lease"
}
cluster "away" {
  kubeconfig = %q
}
cluster "lease" {
  kubeconfig = %q
}
`, kubeconfigFile(t, "away", "127.0.0.2:1"), clusters[0].Kubeconfig)
	if err := os.WriteFile(filepath.Join(repo, "gantry.hcl"), []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	f := engineFlags{repo: repo, state: t.TempDir(), jobs: 1}
	f.kube = kubeFlags{leaderElect: true, leaseNamespace: "default", leaseName: "gantry-fleet"}
	if _, _, err := (&app{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}}).engine(context.Background(), &f); err != nil {
		t.Fatal(err)
	}
	if f.restConfig == nil {
		t.Fatal("no Lease config")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var led atomic.Bool
	if err := leaderLoop(ctx, f.restConfig, &f.kube, func(bool) {}, func(context.Context) { led.Store(true); cancel() }); err != nil {
		t.Fatal(err)
	}
	if !led.Load() {
		t.Fatal("never led")
	}
	cs, err := clusters[0].Clientset()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoordinationV1().Leases("default").Get(context.Background(), "gantry-fleet", metav1.GetOptions{}); err != nil {
		t.Fatalf("the Lease is not in the lease cluster: %v", err)
	}
}

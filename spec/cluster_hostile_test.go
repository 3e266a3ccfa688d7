package spec

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// fleetSpecs is n clusters (c0000 …), a node in each, and 300 releases
// spread over them every way a release can choose its clusters; the
// first 30 list every cluster and roll out in ten waves.
func fleetSpecs(n int) string {
	var b strings.Builder
	b.WriteString("node_pool \"a100\" {}\n")
	names := make([]string, n)
	for i := range n {
		names[i] = fmt.Sprintf("c%04d", i)
		region := []string{"eu", "us", "ap"}[i%3]
		fmt.Fprintf(&b, "cluster %q {\n  kubeconfig = \"/etc/gantry/%s.kubeconfig\"\n  labels = { region = %q }\n}\n", names[i], names[i], region)
		fmt.Fprintf(&b, "node \"gpu-%04d\" {\n  cluster = %q\n  pool = \"a100\"\n  gpus = 8\n  gpu_memory = \"80Gi\"\n}\n", i, names[i])
	}
	quoted := `"` + strings.Join(names, `", "`) + `"`
	// Ten waves of all clusters, and ten of those in eu (every third).
	var waves, euWaves []string
	for w := 0; w < 10; w++ {
		part := names[w*n/10 : (w+1)*n/10]
		waves = append(waves, `["`+strings.Join(part, `", "`)+`"]`)
		var eu []string
		for _, c := range part {
			if mustAtoi(c[1:])%3 == 0 {
				eu = append(eu, c)
			}
		}
		euWaves = append(euWaves, `["`+strings.Join(eu, `", "`)+`"]`)
	}
	for i := range 300 {
		fmt.Fprintf(&b, "release \"r%03d\" {\n  %s\n", i, ociModel)
		w := waves
		switch i % 3 {
		case 0:
			if i < 30 {
				fmt.Fprintf(&b, "  clusters = [%s]\n", quoted)
			}
			fmt.Fprintf(&b, "  replicas = %d\n  min_per_cluster = 1\n", n)
		case 1:
			fmt.Fprintf(&b, "  cluster_selector = { region = \"eu\" }\n  replicas_per_cluster = 2\n")
			w = euWaves
		default:
			fmt.Fprintf(&b, "  replicas = 3\n  max_per_cluster = 1\n")
		}
		if i < 30 {
			fmt.Fprintf(&b, "  rollout {\n    waves = [%s]\n  }\n", strings.Join(w, ", "))
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// A thousand clusters, a thousand nodes and 300 releases in waves load,
// quickly, with every consumer's view of them right.
func TestFleetThousandClusters(t *testing.T) {
	src := fleetSpecs(1000)
	start := time.Now()
	cfg, diags := loadRollout(t, src)
	if diags.HasErrors() {
		t.Fatalf("%d diagnostics, the first: %s", len(diags), first(diags))
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("Load took %s", d)
	}
	if len(cfg.Clusters) != 1000 || cfg.Clusters[0].Name != "c0000" || cfg.Clusters[999].Name != "c0999" {
		t.Fatalf("%d clusters", len(cfg.Clusters))
	}
	for _, tc := range []struct {
		release      string
		clusters     int
		total, waves int
	}{
		{"r000", 1000, 1000, 10},
		// c0000, c0003, …: 334 in eu, in all ten waves.
		{"r001", 334, 668, 10},
		{"r002", 1000, 3, 10},
		{"r298", 334, 668, 0},
	} {
		r, _ := cfg.Release(tc.release)
		got := cfg.ClustersOf(r)
		waves := 0
		if r.Rollout != nil {
			waves = len(r.Rollout.WaveList(got))
		}
		if len(got) != tc.clusters || r.FleetReplicas(len(got)) != tc.total || waves != tc.waves {
			t.Errorf("%s: %d clusters, %d replicas, %d waves; want %d, %d, %d", tc.release, len(got), r.FleetReplicas(len(got)), waves, tc.clusters, tc.total, tc.waves)
		}
	}
}

// A thousand unknown clusters in one release: an error each, each at its
// entry, quickly.
func TestFleetThousandUnknownClusters(t *testing.T) {
	var names []string
	for i := range 1000 {
		names = append(names, fmt.Sprintf(`"x%04d"`, i))
	}
	src := fleetClusters + fleetRelease("  clusters = ["+strings.Join(names, ", ")+"]")
	start := time.Now()
	_, diags := loadRollout(t, src)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Load took %s", d)
	}
	n := 0
	for _, d := range diags {
		if d.Summary == "Unknown cluster" {
			n++
		}
	}
	if n != 1000 {
		t.Errorf("%d unknown-cluster errors, want 1000; the first: %s", n, first(diags))
	}
	wantAt(t, src, `, |"x0999"`, diags[len(diags)-1])
}

// A kubeconfig pasted into a spec, with a bearer token and a client key:
// Load refuses it, and the token reaches no diagnostic, neither its text
// nor the source lines printed with it.
func TestKubeconfigTokenNeverPrinted(t *testing.T) {
	const token = "eyJhbGciOiJSUzI1NiIsImtpZCI6InBsYW50ZWQifQ.c2VjcmV0LXRva2VuLXBsYW50ZWQ.Zm9vYmFy"
	const key = "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tcGxhbnRlZA=="
	pasted := "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://eu-1.example.com\n  name: eu-1\nusers:\n- name: admin\n  user:\n    token: " + token + "\n    client-key-data: " + key + "\n"
	escaped := strings.ReplaceAll(pasted, "\n", `\n`)
	for _, tc := range []struct{ name, src, at string }{
		{"heredoc", "cluster \"eu-1\" {\n  kubeconfig = <<EOT\n" + pasted + "EOT\n}\n", "kubeconfig = |<<EOT"},
		{"one line", "cluster \"eu-1\" {\n  kubeconfig = \"" + escaped + "\"\n}\n", "kubeconfig = |\"apiVersion"},
		{"the token alone", "cluster \"eu-1\" {\n  kubeconfig = \"" + token + "\"\n}\n", "kubeconfig = |\"eyJ"},
		{"a line of it", "cluster \"eu-1\" {\n  kubeconfig = \"token: " + token + "\" # pasted\n}\n", "kubeconfig = |\"token"},
		{"through a variable", "variable \"kc\" {\n  default = \"token: " + token + "\"\n}\ncluster \"eu-1\" {\n  kubeconfig = var.kc\n}\n", "kubeconfig = |var.kc"},
		{"with in_cluster too", "cluster \"eu-1\" {\n  in_cluster = true\n  kubeconfig = \"" + escaped + "\"\n}\n", "kubeconfig = |\"apiVersion"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.src + fleetRelease("")
			cfg, diags := loadRollout(t, src)
			out := renderDiags(t, cfg.Files, diags)
			var got *hcl.Diagnostic
			for _, d := range diags {
				if d.Summary == "Kubeconfig contents in Git" {
					got = d
				}
				for _, s := range []string{d.Summary, d.Detail} {
					if strings.Contains(s, token) || strings.Contains(s, key) || strings.Contains(s, "c2VjcmV0") {
						t.Errorf("diagnostic %q holds the credential", d.Summary)
					}
				}
			}
			if got == nil {
				t.Fatalf("no kubeconfig error in:\n%s", out)
			}
			wantAt(t, src, tc.at, got)
			for _, secret := range []string{token, key, "c2VjcmV0", "LS0tLS1"} {
				if strings.Contains(out, secret) {
					t.Errorf("printed diagnostics hold %q:\n%s", secret, out)
				}
			}
			if !strings.Contains(out, "main.hcl:") || !strings.Contains(out, "Credentials never belong in Git") {
				t.Errorf("printed diagnostics lack the position or the reason:\n%s", out)
			}
		})
	}
}

// A kubeconfig path is shown as written; contents are masked, byte for
// byte.
func TestMaskKubeconfig(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`kubeconfig = "/etc/gantry/eu-1.kubeconfig"`, `kubeconfig = "/etc/gantry/eu-1.kubeconfig"`},
		{`kubeconfig = "token: abc"`, `kubeconfig = "**********"`},
		{`kubeconfig = "a\nb" # c`, `kubeconfig = "****" # c`},
		{`kubeconfig = "eyJhbGciOi.e30.x"`, `kubeconfig = "****************"`},
		{"kubeconfig = <<EOT\napiVersion: v1\nEOT", "kubeconfig = <<EOT\n**************\nEOT"},
		{`labels = { kubeconfig = "x" }`, `labels = { kubeconfig = "x" }`},
	} {
		src := "cluster \"x\" {\n  " + tc.src + "\n}\n"
		want := "cluster \"x\" {\n  " + tc.want + "\n}\n"
		if got := string(maskSource("x.hcl", []byte(src), nil)); got != want {
			t.Errorf("maskSource:\n%s\nwant:\n%s", got, want)
		}
	}
}

// Hostile waves: huge, deep or odd expressions each give a few clear
// errors, quickly.
func TestWavesHostile(t *testing.T) {
	many := func(n int, wave string) string {
		return "    waves = [" + strings.TrimSuffix(strings.Repeat(wave+", ", n), ", ") + "]"
	}
	for _, tc := range []struct {
		name    string
		body    string
		summary string
		want    string
		max     int
	}{
		{"ten thousand waves", many(10000, `["eu-1"]`), "Too many rollout waves", "A rollout has at most 100 waves, this one has 10000.", 1},
		{"a thousand waves from a for", `    waves = [for i in range(1000) : ["eu-1"]]`, "Too many rollout waves", "this one has 1000.", 1},
		{"a hundred waves of one cluster", many(100, `["eu-1"]`), "Duplicate cluster in waves", `Cluster "eu-1" is in wave 1 and wave 100`, 99},
		{"ten thousand entries", "    waves = [[" + strings.TrimSuffix(strings.Repeat(`"eu-1", `, 10000), ", ") + "]]", "Duplicate cluster in waves", `Wave 1 names cluster "eu-1" twice.`, 9999},
		{"a thousand unknown entries from a for", `    waves = [[for i in range(1000) : "x${i}"]]`, "Unknown cluster", `wave 1: there is no cluster block named "x999".`, 1000},
		{"deeply nested", "    waves = " + strings.Repeat("[", 10000) + strings.Repeat("]", 10000), "Invalid rollout wave", "Wave 1: entry 1 must be the name of a cluster block, a string; got a list.", 1},
		{"an object", `    waves = { first = ["eu-1"] }`, "Invalid rollout waves", "got an object.", 1},
		{"a number", `    waves = 3`, "Invalid rollout waves", "got the number 3.", 1},
		{"a map of waves from a for", `    waves = [{ for c in ["eu-1"] : c => c }]`, "Invalid rollout wave", "Wave 1 must be a list of cluster names", 1},
		{"a bool entry", `    waves = [[true]]`, "Unknown cluster", `named "true"`, 1},
		{"a name with a slash", `    waves = [["eu-1/gpu-1"]]`, "Unknown cluster", `named "eu-1/gpu-1".`, 1},
		{"a huge name", `    waves = [["` + strings.Repeat("e", 100000) + `"]]`, "Unknown cluster", "there is no cluster block named", 1},
		{"a template entry", `    waves = [["${"eu"}-1"], ["us-${1}"]]`, "", "", 0},
		{"a set", `    waves = [toset(["us-1", "eu-1"])]`, "", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkHostile(t, fleetClusters+waveRollout("", tc.body), tc.summary, tc.want, tc.max)
		})
	}
}

func mustAtoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(err)
	}
	return n
}

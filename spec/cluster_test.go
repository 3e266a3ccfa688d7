package spec

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
)

// fleetClusters are three clusters: staging (the daemon's own), and two
// production regions.
const fleetClusters = `cluster "staging" {
  in_cluster = true
  labels     = { tier = "staging" }
}
cluster "eu-1" {
  kubeconfig = "/etc/gantry/eu-1.kubeconfig"
  labels     = { tier = "prod" }
}
cluster "us-1" {
  kubeconfig = "/etc/gantry/us-1.kubeconfig"
  labels     = { tier = "prod" }
}
`

// fleetRelease is release "r" holding attrs (and blocks) after its model
// and runtime.
func fleetRelease(attrs string) string {
	return "release \"r\" {\n  " + ociModel + "\n" + attrs + "\n}\n"
}

// waveRollout is release "r" with a rollout block holding body.
func waveRollout(attrs, body string) string {
	return fleetRelease(attrs + "\n  rollout {\n" + body + "\n  }")
}

const fleetNode = `node_pool "a100" {}
node "gpu-1" {
  cluster    = "eu-1"
  pool       = "a100"
  gpus       = 8
  gpu_memory = "80Gi"
}
`

// TestFleetErrors loads one spec per case and checks the error's summary,
// its detail and where it points. at is the text around the subject's
// start, "|" marking it; it must occur once in the source.
func TestFleetErrors(t *testing.T) {
	const ok100 = `    steps = [{ percent = 100 }]`
	for _, tc := range []struct {
		name    string
		src     string
		summary string
		want    string // in the detail
		at      string
	}{
		// Cluster blocks.
		{"name with a slash", `cluster "eu/1" { in_cluster = true }`, "Invalid cluster name", `"eu/1" cannot name a cluster: use at most 63 lowercase letters, digits and '-'`, `cluster |"eu/1"`},
		{"name uppercase", `cluster "EU-1" { in_cluster = true }`, "Invalid cluster name", `"EU-1" cannot name a cluster`, `cluster |"EU-1"`},
		{"name too long", `cluster "` + strings.Repeat("a", 64) + `" { in_cluster = true }`, "Invalid cluster name", "at most 63", `cluster |"aaaa`},
		{"duplicate cluster", fleetClusters + "cluster \"eu-1\" {\n  in_cluster = false\n  kubeconfig = \"/k\"\n}\n", `Duplicate cluster "eu-1"`, `A cluster named "eu-1" was already defined. Previous definition at`, "}\ncluster |\"eu-1\" {\n  in_cluster = false"},
		{"both ways in", "cluster \"x\" {\n  kubeconfig = \"/k\"\n  in_cluster = true\n}", "Conflicting cluster access", `Cluster "x" sets both kubeconfig and in_cluster = true`, "in_cluster = |true"},
		{"no way in", "cluster \"x\" {\n  labels = {}\n}", "Missing cluster access", `Cluster "x" says neither kubeconfig nor in_cluster = true`, `cluster |"x"`},
		{"in_cluster false", "cluster \"x\" {\n  in_cluster = false\n}", "Missing cluster access", `says neither kubeconfig nor in_cluster = true`, `cluster |"x"`},
		{"context without kubeconfig", "cluster \"x\" {\n  in_cluster = true\n  context = \"admin\"\n}", "context without kubeconfig", `Cluster "x": context names a context of the kubeconfig file, but the cluster has no kubeconfig.`, `context = |"admin"`},
		{"kubeconfig with a newline", "cluster \"x\" {\n  kubeconfig = \"a\\nb\"\n}", "Kubeconfig contents in Git", "Credentials never belong in Git", `kubeconfig = |"a\nb"`},
		{"kubeconfig heredoc", "cluster \"x\" {\n  kubeconfig = <<EOT\napiVersion: v1\nkind: Config\nEOT\n}", "Kubeconfig contents in Git", `Cluster "x": kubeconfig must be the path of a kubeconfig file on the daemon's machine (such as "/etc/gantry/x.kubeconfig"), but this value looks like a kubeconfig's contents or a credential.`, "kubeconfig = |<<EOT"},
		{"kubeconfig token", "cluster \"x\" {\n  kubeconfig = \"token: s3cr3t\"\n}", "Kubeconfig contents in Git", "rotate the credentials", `kubeconfig = |"token`},
		{"kubeconfig jwt", "cluster \"x\" {\n  kubeconfig = \"eyJhbGciOiJSUzI1NiJ9.e30.sig\"\n}", "Kubeconfig contents in Git", "mount the kubeconfig file into the daemon", `kubeconfig = |"eyJ`},
		{"kubeconfig key data", "cluster \"x\" {\n  kubeconfig = \"client-key-data: LS0t\"\n}", "Kubeconfig contents in Git", "Credentials never belong in Git", `kubeconfig = |"client`},
		{"weight zero", "cluster \"x\" {\n  in_cluster = true\n  weight = 0\n}", "Invalid cluster weight", "weight must be a finite number greater than zero, got 0.", "weight = |0"},
		{"weight negative", "cluster \"x\" {\n  in_cluster = true\n  weight = -2\n}", "Invalid cluster weight", "got -2.", "weight = |-2"},
		{"namespace", "cluster \"x\" {\n  in_cluster = true\n  namespace = \"LLM_ns\"\n}", "Invalid namespace", `"LLM_ns" is not a valid Kubernetes namespace`, `namespace = |"LLM_ns"`},
		{"mirror with scheme", "cluster \"x\" {\n  in_cluster = true\n  registry_mirror = \"https://mirror.example.com/m\"\n}", "Invalid registry_mirror", `without scheme, tag or digest; got "https://mirror.example.com/m".`, `registry_mirror = |"https`},
		{"mirror uppercase path", "cluster \"x\" {\n  in_cluster = true\n  registry_mirror = \"mirror.example.com/Models\"\n}", "Invalid registry_mirror", `got "mirror.example.com/Models"`, `registry_mirror = |"mirror`},
		{"mirror without host", "cluster \"x\" {\n  in_cluster = true\n  registry_mirror = \"models\"\n}", "Invalid registry_mirror", `a registry host (with a dot or a port)`, `registry_mirror = |"models"`},
		{"mirror with tag", "cluster \"x\" {\n  in_cluster = true\n  registry_mirror = \"mirror.example.com/m:v1\"\n}", "Invalid registry_mirror", `got "mirror.example.com/m:v1"`, `registry_mirror = |"mirror`},
		{"mirror trailing slash", "cluster \"x\" {\n  in_cluster = true\n  registry_mirror = \"mirror.example.com/\"\n}", "Invalid registry_mirror", `got "mirror.example.com/"`, `registry_mirror = |"mirror`},
		{"mirror with credentials", "cluster \"x\" {\n  in_cluster = true\n  registry_mirror = \"bob:hunter2@mirror.example.com/m\"\n}", "Invalid registry_mirror", "this value holds an '@', as user information does, and credentials never belong in Git.", `registry_mirror = |"bob`},
		{"in_cluster twice", fleetClusters + "cluster \"local\" {\n  in_cluster = true\n}\n", "Cluster reached twice", `Clusters "local" and "staging" both set in_cluster = true`, "cluster \"staging\" {\n  in_cluster = |true"},
		{"kubeconfig twice", fleetClusters + "cluster \"eu-1b\" {\n  kubeconfig = \"/etc/gantry/eu-1.kubeconfig\"\n}\n", "Cluster reached twice", `Clusters "eu-1" and "eu-1b" name the same kubeconfig file and context`, "cluster \"eu-1b\" {\n  kubeconfig = |\""},

		// lease_cluster.
		{"lease unknown", fleetClusters + "gantry {\n  lease_cluster = \"stagin\"\n}", "Unknown cluster", `lease_cluster: there is no cluster block named "stagin". Did you mean "staging"?`, `lease_cluster = |"stagin"`},
		{"lease unknown, no near name", fleetClusters + "gantry {\n  lease_cluster = \"mars\"\n}", "Unknown cluster", `there is no cluster block named "mars". Declared clusters: eu-1, staging, us-1.`, `lease_cluster = |"mars"`},
		{"lease without clusters", "gantry {\n  lease_cluster = \"staging\"\n}", "lease_cluster needs cluster blocks", "lease_cluster is about the clusters of a fleet, but there is no cluster block", `lease_cluster = |"staging"`},

		// Nodes.
		{"node without cluster", fleetClusters + strings.Replace(fleetNode, "  cluster    = \"eu-1\"\n", "", 1), "Node without cluster", `Node "gpu-1" names no cluster: with cluster blocks, every node block says which cluster it is in`, `node |"gpu-1"`},
		{"node unknown cluster", fleetClusters + strings.Replace(fleetNode, `"eu-1"`, `"eu-2"`, 1), "Unknown cluster", `cluster: there is no cluster block named "eu-2". Did you mean "eu-1"?`, `cluster    = |"eu-2"`},
		{"node cluster without clusters", fleetNode, "cluster needs cluster blocks", "without one Gantry drives a single target. Add cluster blocks or remove cluster.", `cluster    = |"eu-1"`},

		// Releases without cluster blocks.
		{"clusters without clusters", fleetRelease(`  clusters = ["eu-1"]`), "clusters needs cluster blocks", "Add cluster blocks or remove clusters.", `clusters = |["eu-1"]`},
		{"selector without clusters", fleetRelease(`  cluster_selector = { tier = "prod" }`), "cluster_selector needs cluster blocks", "remove cluster_selector", `cluster_selector = |{`},
		{"per cluster without clusters", fleetRelease(`  replicas_per_cluster = 2`), "replicas_per_cluster needs cluster blocks", "remove replicas_per_cluster", `replicas_per_cluster = |2`},
		{"min without clusters", fleetRelease(`  min_per_cluster = 0`), "min_per_cluster needs cluster blocks", "remove min_per_cluster", `min_per_cluster = |0`},
		{"max without clusters", fleetRelease(`  max_per_cluster = 3`), "max_per_cluster needs cluster blocks", "remove max_per_cluster", `max_per_cluster = |3`},
		{"waves without clusters", waveRollout("", `    waves = [["eu-1"]]`), "waves needs cluster blocks", "remove waves", `waves = |[[`},

		// Which clusters.
		{"unknown cluster", fleetClusters + fleetRelease(`  clusters = ["eu-1", "us-2"]`), "Unknown cluster", `clusters: there is no cluster block named "us-2". Did you mean "us-1"?`, `"eu-1", |"us-2"`},
		{"no clusters", fleetClusters + fleetRelease(`  clusters = []`), "No clusters", "clusters = [] names no cluster, so the release would run nowhere.", `clusters = |[]`},
		{"duplicate clusters", fleetClusters + fleetRelease(`  clusters = ["eu-1", "us-1", "eu-1"]`), "Duplicate cluster", `clusters names "eu-1" twice (entries 1 and 3).`, `"us-1", |"eu-1"`},
		{"clusters and selector", fleetClusters + fleetRelease("  clusters = [\"eu-1\"]\n  cluster_selector = { tier = \"prod\" }"), "Conflicting cluster choice", "The release sets both clusters and cluster_selector", `cluster_selector = |{`},
		{"selector selects nothing", fleetClusters + fleetRelease(`  cluster_selector = { tier = "prod", region = "mars" }`), "No cluster selected", `cluster_selector { region = "mars", tier = "prod" } matches no cluster block's labels`, `cluster_selector = |{`},

		// Replicas per cluster.
		{"per cluster negative", fleetClusters + fleetRelease(`  replicas_per_cluster = -1`), "Invalid replicas_per_cluster", "replicas_per_cluster cannot be negative, got -1.", `replicas_per_cluster = |-1`},
		{"per cluster and replicas", fleetClusters + fleetRelease("  replicas = 3\n  replicas_per_cluster = 1"), "Conflicting replicas", "replicas_per_cluster places that many replicas in each cluster, and replicas does not apply with it", `replicas_per_cluster = |1`},
		{"per cluster and min", fleetClusters + fleetRelease("  min_per_cluster = 1\n  replicas_per_cluster = 1"), "Conflicting replicas", "and min_per_cluster does not apply with it", `replicas_per_cluster = |1`},
		{"per cluster and max", fleetClusters + fleetRelease("  max_per_cluster = 1\n  replicas_per_cluster = 1"), "Conflicting replicas", "and max_per_cluster does not apply with it", `replicas_per_cluster = |1`},
		{"per cluster and autoscale", fleetClusters + fleetRelease("  replicas_per_cluster = 1\n"+autoscaleBlock), "Autoscale with replicas_per_cluster", "autoscale edits replicas, the release's total across its clusters, but replicas_per_cluster fixes each cluster's count. Use replicas with min_per_cluster and max_per_cluster instead.", `replicas_per_cluster = |1`},
		{"min negative", fleetClusters + fleetRelease(`  min_per_cluster = -1`), "Invalid min_per_cluster", "min_per_cluster cannot be negative, got -1.", `min_per_cluster = |-1`},
		{"max negative", fleetClusters + fleetRelease(`  max_per_cluster = -1`), "Invalid max_per_cluster", "max_per_cluster cannot be negative, got -1 (0 means no bound).", `max_per_cluster = |-1`},
		{"min over max", fleetClusters + fleetRelease("  replicas = 6\n  min_per_cluster = 3\n  max_per_cluster = 2"), "min_per_cluster is greater than max_per_cluster", "min_per_cluster (3) must not exceed max_per_cluster (2)", `max_per_cluster = |2`},
		// 3 clusters × at least 1 = 3 > 2.
		{"too few replicas", fleetClusters + fleetRelease("  replicas = 2\n  min_per_cluster = 1"), "Too few replicas for min_per_cluster", "min_per_cluster = 1 in each of the release's 3 clusters needs at least 3 replicas, but replicas is 2.", `min_per_cluster = |1`},
		// Default replicas 1 < 2 clusters × 1.
		{"too few default replicas", fleetClusters + fleetRelease("  cluster_selector = { tier = \"prod\" }\n  min_per_cluster = 1"), "Too few replicas for min_per_cluster", "in each of the release's 2 clusters needs at least 2 replicas, but replicas is 1.", `min_per_cluster = |1`},
		// 2 clusters × at most 3 = 6 < 7.
		{"too many replicas", fleetClusters + fleetRelease("  clusters = [\"eu-1\", \"us-1\"]\n  replicas = 7\n  max_per_cluster = 3"), "Too many replicas for max_per_cluster", "max_per_cluster = 3 in each of the release's 2 clusters holds at most 6 replicas, but replicas is 7.", `max_per_cluster = |3`},
		// autoscale 1..10; 3 clusters × min 1 = 3 > 1; × max 2 = 6 < 10.
		{"autoscale min below", fleetClusters + fleetRelease("  replicas = 3\n  min_per_cluster = 1\n"+autoscaleBlock), "Autoscale min below min_per_cluster", "autoscale may scale the release down to min = 1 replicas, but min_per_cluster = 1 in each of its 3 clusters needs at least 3.", `min    = |1`},
		{"autoscale max above", fleetClusters + fleetRelease("  replicas = 3\n  max_per_cluster = 2\n"+autoscaleBlock), "Autoscale max above max_per_cluster", "autoscale may scale the release up to max = 10 replicas, but max_per_cluster = 2 in each of its 3 clusters holds at most 6.", `max    = |10`},

		// Waves, decoding.
		{"waves a string", fleetClusters + waveRollout("", `    waves = "staging"`), "Invalid rollout waves", `waves must be a list of lists of cluster names, such as [["staging"], ["eu-1"], ["eu-2", "us-1"]]; got the string "staging".`, `waves = |"staging"`},
		{"wave a string", fleetClusters + waveRollout("", `    waves = ["staging", ["eu-1"]]`), "Invalid rollout wave", `Wave 1 must be a list of cluster names, such as ["eu-1", "eu-2"]; got the string "staging".`, `waves = [|"staging"`},
		{"entry a list", fleetClusters + waveRollout("", `    waves = [["eu-1"], [["staging"]]]`), "Invalid rollout wave", "Wave 2: entry 1 must be the name of a cluster block, a string; got a list.", `], [|["staging"]`},
		{"entry null", fleetClusters + waveRollout("", `    waves = [["eu-1", null]]`), "Invalid rollout wave", "Wave 1: entry 2 must be the name of a cluster block, a string; got null.", `"eu-1", |null`},
		{"entry an object from a for", fleetClusters + waveRollout("", `    waves = [for c in ["eu-1"] : [{ name = c }]]`), "Invalid rollout wave", "Wave 1: entry 1 must be the name of a cluster block, a string; got an object.", `waves = |[for`},
		{"waves an unknown variable", fleetClusters + waveRollout("", `    waves = var.waves`), "Unsupported attribute", `This object does not have an attribute named "waves".`, `waves = var|.waves`},
		{"too many waves", fleetClusters + waveRollout("", "    waves = ["+strings.TrimSuffix(strings.Repeat(`["eu-1"], `, 101), ", ")+"]"), "Too many rollout waves", "A rollout has at most 100 waves, this one has 101.", `waves = |[["eu-1"]`},
		{"no steps, no waves", fleetClusters + waveRollout("", `    traffic = "service"`), "Missing rollout steps", "A rollout block needs steps, waves or both", `  rollout |{`},

		// Waves against the release.
		{"no waves", fleetClusters + waveRollout("", `    waves = []`), "No rollout waves", "waves = [] has no wave", `waves = |[]`},
		{"empty wave", fleetClusters + waveRollout("", `    waves = [["eu-1"], []]`), "Empty rollout wave", "Wave 2 lists no cluster", `], |[]]`},
		{"unknown in wave", fleetClusters + waveRollout("", `    waves = [["staging"], ["eu-1", "eu-2"]]`), "Unknown cluster", `wave 2: there is no cluster block named "eu-2". Did you mean "eu-1"?`, `"eu-1", |"eu-2"`},
		{"unknown in wave of a for", fleetClusters + waveRollout("", `    waves = [for c in ["staging", "mars"] : [c]]`), "Unknown cluster", `wave 2: there is no cluster block named "mars".`, `waves = |[for`},
		{"not the release's", fleetClusters + waveRollout(`  clusters = ["eu-1", "us-1"]`, `    waves = [["staging"], ["eu-1"]]`), "Cluster not of the release", `Wave 1 names cluster "staging", but the release does not run there`, `[[|"staging"]`},
		{"not selected", fleetClusters + waveRollout(`  cluster_selector = { tier = "prod" }`, `    waves = [["eu-1"], ["staging"]]`), "Cluster not of the release", `Wave 2 names cluster "staging"`, `], [|"staging"]`},
		{"in two waves", fleetClusters + waveRollout("", `    waves = [["eu-1"], ["us-1", "eu-1"]]`), "Duplicate cluster in waves", `Cluster "eu-1" is in wave 1 and wave 2: a cluster rolls out in one wave.`, `"us-1", |"eu-1"`},
		{"twice in a wave", fleetClusters + waveRollout("", `    waves = [["eu-1", "eu-1"]]`), "Duplicate cluster in waves", `Wave 1 names cluster "eu-1" twice.`, `"eu-1", |"eu-1"`},
		{"wave_pause with steps", fleetClusters + waveRollout("", ok100+"\n    waves = [[\"eu-1\"]]\n    wave_pause = \"5m\""), "wave_pause with steps", "With steps, the last step's pause is how long each wave's analysis runs", `wave_pause = |"5m"`},
		{"wave_pause without waves", fleetClusters + waveRollout("", ok100+"\n    wave_pause = \"5m\""), "wave_pause without waves", "this rollout has no waves", `wave_pause = |"5m"`},
		{"wave_pause invalid", fleetClusters + waveRollout("", "    waves = [[\"eu-1\"]]\n    wave_pause = \"soon\""), "Invalid duration", `wave_pause: "soon" is not a duration`, `wave_pause = |"soon"`},
		{"wave_pause under interval", fleetClusters + waveRollout("", "    waves = [[\"eu-1\"]]\n    wave_pause = \"30s\"\n    analysis {\n      metric \"m\" {\n        query = \"x\"\n        max = 1\n      }\n    }"), "Pause shorter than the analysis interval", "Step 1 pauses 30s, shorter than the analysis interval of 1m0s", `wave_pause = |"30s"`},
		{"default wave_pause under interval", fleetClusters + waveRollout("", "    waves = [[\"eu-1\"]]\n    analysis {\n      interval = \"15m\"\n      metric \"m\" {\n        query = \"x\"\n        max = 1\n      }\n    }"), "Pause shorter than the analysis interval", "Step 1 pauses 10m0s, shorter than the analysis interval of 15m0s", `  |rollout {`},
		{"pause on last step without waves", fleetClusters + waveRollout("", `    steps = [{ percent = 100, pause = "1h" }]`), "Pause on the last step", "Step 1 is the last", `pause = |"1h"`},

		// The wave position.
		{"wave zero", fleetClusters + waveRollout("", "    waves = [[\"eu-1\"]]\n    wave = 0\n    step = 1\n    version = \"3f2a1c9d\""), "Invalid rollout wave", "wave is the rollout's position, from 1 to 2 (the number of waves, the release's clusters in no wave counting as the last); got 0.", "wave = |0"},
		// waves [[eu-1], [us-1]] + staging in no wave = 3 waves.
		{"wave past the end", fleetClusters + waveRollout("", "    waves = [[\"eu-1\"], [\"us-1\"]]\n    wave = 4\n    step = 1\n    version = \"3f2a1c9d\""), "Invalid rollout wave", "from 1 to 3 (the number of waves", "wave = |4"},
		{"wave without step", fleetClusters + waveRollout("", "    waves = [[\"eu-1\"]]\n    wave = 1"), "Rollout wave without step", "wave = 1 says which wave the rollout is in but not where in it: set step and version too", "wave = |1"},
		{"wave without version", fleetClusters + waveRollout("", "    waves = [[\"eu-1\"]]\n    wave = 1\n    step = 1"), "Rollout wave without step", "set step and version too", "wave = |1"},
		{"step without wave", fleetClusters + waveRollout("", "    waves = [[\"eu-1\"]]\n    step = 1\n    version = \"3f2a1c9d\""), "Rollout step without wave", "step = 1 says where the rollout is, but not in which of its waves: set wave too", "step = |1"},
		{"wave without waves", fleetClusters + waveRollout("", ok100+"\n    wave = 1\n    step = 1\n    version = \"3f2a1c9d\""), "wave without waves", "wave is the rollout's position among its waves, but this rollout has no waves.", "wave = |1"},
		{"step past the implicit step", fleetClusters + waveRollout("", "    waves = [[\"eu-1\"]]\n    wave = 1\n    step = 2\n    version = \"3f2a1c9d\""), "Invalid rollout step", "from 1 to 1 (the number of steps); got 2.", "step = |2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := loadRollout(t, tc.src)
			wantAt(t, tc.src, tc.at, findError(t, diags, tc.summary, tc.want, tc.src))
		})
	}
}

// wantAt checks that d's subject starts where "|" is in at, which must
// occur once in src.
func wantAt(t *testing.T, src, at string, d *hcl.Diagnostic) {
	t.Helper()
	before, after, ok := strings.Cut(at, "|")
	if !ok {
		t.Fatalf("at %q has no |", at)
	}
	if n := strings.Count(src, before+after); n != 1 {
		t.Fatalf("%q occurs %d times in the source, want once:\n%s", before+after, n, src)
	}
	off := strings.Index(src, before+after) + len(before)
	line := strings.Count(src[:off], "\n") + 1
	col := off - strings.LastIndex(src[:off], "\n")
	if d.Subject == nil {
		t.Fatalf("%s: no subject", d.Error())
	}
	if s := d.Subject.Start; s.Line != line || s.Column != col {
		t.Errorf("%s\npoints at %d:%d, want %d:%d (%q)", d.Error(), s.Line, s.Column, line, col, at)
	}
}

// Specs that are fine with cluster blocks, and one that is fine without.
func TestFleetValid(t *testing.T) {
	for _, tc := range []struct{ name, src string }{
		{"every cluster, no rollout", fleetClusters + fleetRelease(`  replicas = 3`)},
		{"min and max that fit", fleetClusters + fleetRelease("  replicas = 6\n  min_per_cluster = 2\n  max_per_cluster = 2")},
		{"max 0 is no bound", fleetClusters + fleetRelease("  replicas = 100\n  max_per_cluster = 0")},
		{"zero per cluster", fleetClusters + fleetRelease(`  replicas_per_cluster = 0`)},
		{"autoscale within bounds", fleetClusters + fleetRelease("  replicas = 3\n  min_per_cluster = 0\n  max_per_cluster = 4\n"+autoscaleBlock)},
		{"empty selector is every cluster", fleetClusters + fleetRelease(`  cluster_selector = {}`)},
		{"steps and waves, pause on the last step", fleetClusters + waveRollout("  replicas_per_cluster = 2", "    steps = [{ replicas = 1, pause = \"5m\" }, { percent = 100, pause = \"30m\" }]\n    waves = [[\"staging\"], [\"eu-1\", \"us-1\"]]")},
		{"waves from a for and a local", "locals {\n  prod = [\"eu-1\", \"us-1\"]\n}\n" + fleetClusters + waveRollout("", "    waves = [for c in concat([\"staging\"], local.prod) : [c]]")},
		{"a position in the leftover wave", fleetClusters + waveRollout("", "    waves = [[\"staging\"]]\n    wave = 2\n    step = 1\n    version = \"3f2a1c9d\"")},
		{"waves = null is absent", fleetClusters + waveRollout("", ok100Steps+"\n    waves = null")},
		{"no cluster blocks", fleetRelease(`  replicas = 3`) + "node_pool \"p\" {}\nnode \"n\" {\n  pool = \"p\"\n  gpus = 1\n  gpu_memory = \"1Gi\"\n}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, diags := loadRollout(t, tc.src)
			if diags.HasErrors() {
				t.Fatalf("%s\nsource:\n%s", renderDiags(t, cfg.Files, diags), tc.src)
			}
		})
	}
}

const ok100Steps = `    steps = [{ percent = 100 }]`

// Without cluster blocks a rollout without steps says what it always
// said, byte for byte.
func TestRolloutWithoutStepsUnchanged(t *testing.T) {
	_, diags := loadRollout(t, waveRollout("", `    traffic = "service"`))
	if len(diags) != 1 {
		t.Fatalf("%d diagnostics: %s", len(diags), diags.Error())
	}
	d := diags[0]
	if d.Summary != "Missing required argument" || d.Detail != `The argument "steps" is required: the rollout's steps, such as steps = [{ replicas = 1, pause = "10m" }, { percent = 100 }].` {
		t.Errorf("got %q: %q", d.Summary, d.Detail)
	}
}

// TestLoadFleet loads the three-cluster example and checks what every
// consumer of a fleet reads from it.
func TestLoadFleet(t *testing.T) {
	cfg, diags := Load(context.Background(), filepath.Join("testdata", "fleet", "ok"), LoadOptions{NoEnv: true})
	if diags.HasErrors() {
		t.Fatal(renderDiags(t, cfg.Files, diags))
	}
	if !cfg.Fleet() {
		t.Fatal("not a fleet")
	}
	var names []string
	for _, c := range cfg.Clusters {
		names = append(names, c.Name)
	}
	if d := cmp.Diff([]string{"eu-1", "staging", "us-1"}, names); d != "" {
		t.Errorf("clusters, sorted (-want +got):\n%s", d)
	}
	eu, ok := cfg.Cluster("eu-1")
	if !ok {
		t.Fatal("no eu-1")
	}
	if eu.Kubeconfig != "/etc/gantry/eu-1.kubeconfig" || eu.Context != "eu-1-admin" || eu.WeightOrDefault() != 2 || eu.RegistryMirror != "mirror.eu.example.com/models" || eu.Labels["region"] != "eu" {
		t.Errorf("eu-1 = %+v", eu)
	}
	if st, _ := cfg.Cluster("staging"); !st.InCluster || st.WeightOrDefault() != 1 {
		t.Errorf("staging = %+v", st)
	}
	if _, ok := cfg.Cluster("mars"); ok {
		t.Error("Cluster(mars) found")
	}
	if cfg.Settings.LeaseCluster != "staging" {
		t.Errorf("lease_cluster = %q", cfg.Settings.LeaseCluster)
	}
	for cl, want := range map[string]string{"eu-1": "llm-eu", "staging": "llm", "us-1": "llm", "mars": "llm"} {
		if got := cfg.ClusterNamespace(cl); got != want {
			t.Errorf("ClusterNamespace(%s) = %q, want %q", cl, got, want)
		}
	}
	for _, n := range cfg.Nodes {
		if want := map[string]string{"gpu-e1": "eu-1", "gpu-s1": "staging", "gpu-u1": "us-1"}[n.Name]; n.Cluster != want {
			t.Errorf("node %s in %q, want %q", n.Name, n.Cluster, want)
		}
	}
	for _, tc := range []struct {
		release  string
		clusters []string
		lo, hi   int
		total    int
		waves    [][]string
	}{
		// 2 per cluster × 3.
		{"chat", []string{"eu-1", "staging", "us-1"}, 2, 2, 6, [][]string{{"staging"}, {"eu-1"}, {"us-1"}}},
		// us-1 is in no wave: it comes last.
		{"embed", []string{"eu-1", "us-1"}, 1, 4, 5, [][]string{{"eu-1"}, {"us-1"}}},
		{"rerank", []string{"us-1"}, 0, 0, 1, nil},
	} {
		r, _ := cfg.Release(tc.release)
		got := cfg.ClustersOf(r)
		if d := cmp.Diff(tc.clusters, got); d != "" {
			t.Errorf("%s: ClustersOf (-want +got):\n%s", tc.release, d)
		}
		if lo, hi := r.PerCluster(); lo != tc.lo || hi != tc.hi {
			t.Errorf("%s: PerCluster = %d, %d, want %d, %d", tc.release, lo, hi, tc.lo, tc.hi)
		}
		if n := r.FleetReplicas(len(got)); n != tc.total {
			t.Errorf("%s: FleetReplicas = %d, want %d", tc.release, n, tc.total)
		}
		var waves [][]string
		if r.Rollout != nil {
			waves = r.Rollout.WaveList(got)
		}
		if d := cmp.Diff(tc.waves, waves); d != "" {
			t.Errorf("%s: WaveList (-want +got):\n%s", tc.release, d)
		}
	}
	chat, _ := cfg.Release("chat")
	ro := chat.Rollout
	if !ro.ImplicitStep || len(ro.Steps) != 1 || ro.Steps[0].Percent != 100 || ro.Steps[0].Pause != 15*time.Minute || ro.WavePause != 15*time.Minute {
		t.Errorf("chat's implicit step: %+v, wave_pause %s", ro.Steps, ro.WavePause)
	}
	if ro.Wave == nil || *ro.Wave != 2 || *ro.Step != 1 || ro.Version != "3f2a1c9d" {
		t.Errorf("chat's position: wave %v step %v version %q", ro.Wave, ro.Step, ro.Version)
	}
	if len(ro.WaveRanges) != 3 || ro.WaveRanges[2].Start.Line != 61 {
		t.Errorf("wave ranges %v", ro.WaveRanges)
	}
	embed, _ := cfg.Release("embed")
	if embed.Rollout.ImplicitStep || len(embed.Rollout.Steps) != 2 || embed.Rollout.Steps[1].Pause != 30*time.Minute {
		t.Errorf("embed's steps: %+v", embed.Rollout.Steps)
	}
}

// The implicit step's pause defaults to 10m.
func TestWavePauseDefault(t *testing.T) {
	cfg, diags := loadRollout(t, fleetClusters+waveRollout("", `    waves = [["eu-1"]]`))
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	r, _ := cfg.Release("r")
	want := []RolloutStep{{Percent: 100, PauseRaw: "10m", Pause: 10 * time.Minute}}
	if d := cmp.Diff(want, r.Rollout.Steps, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Range" }, cmp.Ignore())); d != "" {
		t.Errorf("steps (-want +got):\n%s", d)
	}
	if r.Rollout.WavePause != DefaultWavePause || r.Rollout.WavePauseRaw != "" {
		t.Errorf("wave_pause %q = %s", r.Rollout.WavePauseRaw, r.Rollout.WavePause)
	}
}

func TestWaveList(t *testing.T) {
	for _, tc := range []struct {
		name     string
		waves    [][]string
		clusters []string
		want     [][]string
	}{
		{"no waves", nil, []string{"a", "b"}, nil},
		{"empty waves", [][]string{}, []string{"a"}, nil},
		{"all placed", [][]string{{"a"}, {"b", "c"}}, []string{"a", "b", "c"}, [][]string{{"a"}, {"b", "c"}}},
		{"leftovers last, sorted", [][]string{{"b"}}, []string{"d", "a", "b", "c"}, [][]string{{"b"}, {"a", "c", "d"}}},
		{"restricted to the release's", [][]string{{"a", "x"}, {"y"}, {"b"}}, []string{"a", "b"}, [][]string{{"a"}, {"b"}}},
		{"no cluster of the release in waves", [][]string{{"x"}}, []string{"b", "a"}, [][]string{{"a", "b"}}},
		{"no clusters", [][]string{{"a"}}, nil, nil},
		{"a cluster in two waves counts once", [][]string{{"a"}, {"a", "b"}}, []string{"a", "b"}, [][]string{{"a"}, {"b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ro := &Rollout{Waves: tc.waves}
			if d := cmp.Diff(tc.want, ro.WaveList(tc.clusters)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestClustersOfAndPerCluster(t *testing.T) {
	cfg := &Config{Clusters: []Cluster{
		{Name: "a", Labels: map[string]string{"tier": "prod", "region": "eu"}},
		{Name: "b", Labels: map[string]string{"tier": "prod", "region": "us"}},
		{Name: "c", Labels: map[string]string{"tier": "staging"}},
	}}
	three, two := 3, 2
	for _, tc := range []struct {
		name   string
		r      Release
		want   []string
		lo, hi int
		total  int
	}{
		{"every cluster", Release{Replicas: &three}, []string{"a", "b", "c"}, 0, 0, 3},
		{"named", Release{Clusters: []string{"c", "a", "nope"}}, []string{"a", "c"}, 0, 0, 1},
		{"selected", Release{ClusterSelector: map[string]string{"tier": "prod"}, MinPerCluster: 1, MaxPerCluster: 2}, []string{"a", "b"}, 1, 2, 1},
		{"selected by two labels", Release{ClusterSelector: map[string]string{"tier": "prod", "region": "us"}}, []string{"b"}, 0, 0, 1},
		{"selects none", Release{ClusterSelector: map[string]string{"tier": "dev"}}, nil, 0, 0, 1},
		// 2 per cluster × 3 clusters.
		{"per cluster", Release{ReplicasPerCluster: &two}, []string{"a", "b", "c"}, 2, 2, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := cfg.ClustersOf(&tc.r)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("ClustersOf (-want +got):\n%s", d)
			}
			if lo, hi := tc.r.PerCluster(); lo != tc.lo || hi != tc.hi {
				t.Errorf("PerCluster = %d, %d, want %d, %d", lo, hi, tc.lo, tc.hi)
			}
			if n := tc.r.FleetReplicas(len(got)); n != tc.total {
				t.Errorf("FleetReplicas = %d, want %d", n, tc.total)
			}
		})
	}
	if got := (&Config{}).ClustersOf(&Release{Clusters: []string{"a"}}); got != nil {
		t.Errorf("ClustersOf without cluster blocks = %v, want nil", got)
	}
	// A long clusters list goes through a set: the same answer.
	long := Release{Clusters: []string{"z1", "z2", "z3", "z4", "z5", "z6", "z7", "z8", "c", "a"}}
	if d := cmp.Diff([]string{"a", "c"}, cfg.ClustersOf(&long)); d != "" {
		t.Errorf("long list (-want +got):\n%s", d)
	}
}

func TestKubeconfigContents(t *testing.T) {
	for s, want := range map[string]bool{
		"/etc/gantry/eu-1.kubeconfig":  false,
		"~/.kube/config":               false,
		"kubeconfigs/eu-1.yaml":        false,
		"/var/run/secrets/tokens/kube": false, // "token" without a colon is a path
		"apiVersion: v1":               true,
		"a\nb":                         true,
		"users:\n- name: x":            true,
		"token: abc":                   true,
		"eyJhbGciOiJIUzI1NiJ9.e30.x":   true,
		"-----BEGIN CERTIFICATE-----":  true,
		`{"apiVersion":"v1"}`:          true,
	} {
		if got := KubeconfigContents(s); got != want {
			t.Errorf("KubeconfigContents(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestValidRepoPrefix(t *testing.T) {
	for s, want := range map[string]bool{
		"mirror.eu.example.com/models":     true,
		"mirror.eu.example.com":            true,
		"localhost:5000/models/llm":        true,
		"10.0.0.1:5000/a__b/c-d/e.f":       true,
		"Mirror.Example.com/models":        true, // hosts are case-insensitive
		"models":                           false,
		"mirror.example.com/":              false,
		"mirror.example.com//m":            false,
		"mirror.example.com/m:tag":         false,
		"mirror.example.com/m@sha256:00":   false,
		"https://mirror.example.com":       false,
		"mirror.example.com/-m":            false,
		"mirror.example.com/" + "m m":      false,
		"mirror.example.com/" + longRepo(): false,
	} {
		if got := validRepoPrefix(s); got != want {
			t.Errorf("validRepoPrefix(%q) = %v, want %v", s, got, want)
		}
	}
}

func longRepo() string { return strings.Repeat("a/", 200) + "a" }

// TestFleetInvalidGolden loads testdata/fleet/invalid and compares the
// printed diagnostics, with their file:line:col, source lines and
// carets, with the golden file beside it (refresh with -update). The
// pasted kubeconfig's token is in none of it.
func TestFleetInvalidGolden(t *testing.T) {
	mentions := []string{
		`main.hcl:4:19`, `Did you mean "staging"?`,
		`main.hcl:9:16`, "context without kubeconfig",
		`main.hcl:15:21`, "weight must be a finite number greater than zero, got 0.",
		`main.hcl:16:21`, `"LLM" is not a valid Kubernetes namespace`,
		`main.hcl:17:21`, "Invalid registry_mirror",
		`main.hcl:23:16`, "Kubeconfig contents in Git",
		`main.hcl:30:16`, `there is no cluster block named "eu-2". Did you mean "eu-1"?`,
		`main.hcl:44:46`, `there is no cluster block named "us-2". Did you mean "us-1"?`,
		`main.hcl:45:26`, "and replicas does not apply with it",
		`main.hcl:48:41`, `Cluster "staging" is in wave 1 and wave 2`,
		`main.hcl:48:53`, "Wave 3 lists no cluster",
		`main.hcl:49:18`, `wave_pause: "forever" is not a duration`,
		`main.hcl:50:18`, "Rollout wave without step",
		`main.hcl:64:22`, "min_per_cluster = 1 in each of the release's 2 clusters needs at least 2 replicas, but replicas is 1.",
		`main.hcl:67:20`, `Wave 1 names cluster "staging", but the release does not run there`,
		`main.hcl:68:18`, "wave_pause with steps",
	}
	out := invalidGolden(t, filepath.Join("testdata", "fleet", "invalid"), mentions)
	if strings.Contains(out, "planted-token") {
		t.Errorf("the token was printed:\n%s", out)
	}
}

// FuzzLoad's fleet seed is valid, so that fuzzing starts from a spec
// that reaches every fleet check.
func TestFleetSeedLoads(t *testing.T) {
	cfg, diags := loadRollout(t, fleetSeed())
	if diags.HasErrors() {
		t.Fatal(renderDiags(t, cfg.Files, diags))
	}
	if r, _ := cfg.Release("r"); len(r.Rollout.WaveList(cfg.ClustersOf(r))) != 2 {
		t.Errorf("waves of r: %v", r.Rollout.Waves)
	}
}

// gantry fmt keeps cluster blocks and the fleet attributes whole, only
// re-spaced, and the result loads as the same fleet.
func TestFormatFleet(t *testing.T) {
	in := readFile(t, filepath.Join("testdata", "fleet", "ok", "main.hcl"))
	squashed := strings.ReplaceAll(string(in), "      = ", " = ") // misalign some attributes
	if squashed == string(in) {
		t.Fatal("nothing misaligned")
	}
	out, diags := Format("main.hcl", []byte(squashed))
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	if d := cmp.Diff(string(in), string(out)); d != "" {
		t.Errorf("formatting the misaligned example (-example +formatted):\n%s", d)
	}
}

// A fleet's node is known by (cluster, name): two clusters may each have
// a gpu-1, one cluster may not have two.
func TestFleetNodeIdentity(t *testing.T) {
	node := func(cluster string) string {
		return "node \"gpu-1\" {\n  cluster    = \"" + cluster + "\"\n  pool       = \"a100\"\n  gpus       = 8\n  gpu_memory = \"80Gi\"\n}\n"
	}
	src := fleetClusters + "node_pool \"a100\" {}\n" + node("us-1") + node("eu-1")
	cfg, diags := loadRollout(t, src)
	if diags.HasErrors() {
		t.Fatal(renderDiags(t, cfg.Files, diags))
	}
	var got []string
	for _, n := range cfg.Nodes {
		got = append(got, n.Cluster+"/"+n.Name)
	}
	if d := cmp.Diff([]string{"eu-1/gpu-1", "us-1/gpu-1"}, got); d != "" {
		t.Errorf("nodes (-want +got):\n%s", d)
	}
	src += node("eu-1")
	_, diags = loadRollout(t, src)
	d := findError(t, diags, `Duplicate node "eu-1/gpu-1"`, `A node named "eu-1/gpu-1" was already defined. Previous definition at`, src)
	if d.Subject.Start.Line != strings.Count(src, "\n")-5 {
		t.Errorf("points at line %d", d.Subject.Start.Line)
	}
}

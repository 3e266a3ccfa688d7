package spec

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestEditGolden runs each edit on a file under testdata/edit and compares
// the result with the golden file beside it (refresh with -update). Then
// it checks what the goldens promise: only the edited lines differ from
// the input, so comments, ordering and formatting survive byte for byte.
func TestEditGolden(t *testing.T) {
	dir := filepath.Join("testdata", "edit")
	for _, tc := range []struct {
		name, in, prev string
		edit           func(cur, prev []byte) ([]byte, error)
		changed        []string // the only input lines allowed to differ (trimmed)
	}{
		{
			name: "quickstart-scale", in: "quickstart.in.hcl",
			edit:    func(cur, _ []byte) ([]byte, error) { return SetReplicas(cur, "tiny-chat", 5) },
			changed: []string{"replicas = 3"},
		},
		{
			name: "quickstart-scale-second", in: "quickstart.in.hcl",
			edit:    func(cur, _ []byte) ([]byte, error) { return SetReplicas(cur, "tiny-chat-gguf", 12) },
			changed: []string{"replicas = 1"},
		},
		{
			name: "comment-scale", in: "comment.in.hcl",
			edit:    func(cur, _ []byte) ([]byte, error) { return SetReplicas(cur, "a", 7) },
			changed: []string{"replicas    = 3 # pinned by hand"},
		},
		{
			// No replicas attribute: it is added at the end of the block.
			name: "comment-add-replicas", in: "comment.in.hcl",
			edit: func(cur, _ []byte) ([]byte, error) { return SetReplicas(cur, "b", 2) },
		},
		{
			name: "rollout-restore", in: "rollout.in.hcl", prev: "rollout.prev.hcl",
			edit: func(cur, prev []byte) ([]byte, error) { return RestoreRelease(cur, prev, "chat") },
		},
		{
			name: "rollout-drop-quantize", in: "rollout.in.hcl", prev: "noquantize.prev.hcl",
			edit: func(cur, prev []byte) ([]byte, error) { return RestoreRelease(cur, prev, "chat") },
		},
		{
			name: "add-quantize", in: "addquantize.in.hcl", prev: "addquantize.prev.hcl",
			edit: func(cur, prev []byte) ([]byte, error) { return RestoreRelease(cur, prev, "chat") },
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := readFile(t, filepath.Join(dir, tc.in))
			var prev []byte
			if tc.prev != "" {
				prev = readFile(t, filepath.Join(dir, tc.prev))
			}
			got, err := tc.edit(cur, prev)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join(dir, tc.name+".golden"), string(got))
			if tc.changed != nil {
				a, b := strings.Split(string(cur), "\n"), strings.Split(string(got), "\n")
				if len(a) != len(b) {
					t.Fatalf("line count %d -> %d, want unchanged", len(a), len(b))
				}
				allowed := map[string]bool{}
				for _, c := range tc.changed {
					allowed[c] = true
				}
				for i := range a {
					if a[i] != b[i] && !allowed[strings.TrimSpace(a[i])] {
						t.Errorf("line %d changed: %q -> %q", i+1, a[i], b[i])
					}
				}
			}
		})
	}
}

// A scale edit changes the loaded value and nothing else of the release.
func TestSetReplicasLoads(t *testing.T) {
	root := t.TempDir()
	for _, name := range []string{"gantry.hcl", "nodes.hcl", "releases.hcl"} {
		b := readFile(t, filepath.Join("..", "examples", "quickstart", name))
		if err := os.WriteFile(filepath.Join(root, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.CopyFS(filepath.Join(root, "models"), os.DirFS(filepath.Join("..", "examples", "quickstart", "models"))); err != nil {
		t.Fatal(err)
	}
	file, err := ReleaseFile(root, "tiny-chat")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(file) != "releases.hcl" {
		t.Fatalf("ReleaseFile = %s, want releases.hcl", file)
	}
	before, diags := Load(context.Background(), root, LoadOptions{NoEnv: true})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	src := readFile(t, file)
	out, err := SetReplicas(src, "tiny-chat", 6)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
	after, diags := Load(context.Background(), root, LoadOptions{NoEnv: true})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	r, _ := after.Release("tiny-chat")
	if r.ReplicaCount() != 6 {
		t.Errorf("replicas after edit = %d, want 6", r.ReplicaCount())
	}
	six := 6
	want := before.Releases[0]
	want.Replicas = &six
	ignoreRanges := cmp.FilterPath(func(p cmp.Path) bool { return strings.HasSuffix(p.Last().String(), "DefRange") }, cmp.Ignore())
	if d := cmp.Diff(want, after.Releases[0], ignoreRanges); d != "" {
		t.Errorf("release after SetReplicas (-want +got):\n%s", d)
	}
	if _, err := ReleaseFile(root, "nope"); err == nil {
		t.Error("ReleaseFile of a missing release succeeded")
	}
}

func TestReleasePartsOf(t *testing.T) {
	src := readFile(t, filepath.Join("testdata", "edit", "rollout.in.hcl"))
	p, ok, err := ReleasePartsOf(src, "rollout.in.hcl", "chat")
	if err != nil || !ok {
		t.Fatalf("ReleasePartsOf: %v %v", ok, err)
	}
	if p.Replicas != "4" {
		t.Errorf("Replicas = %q, want 4", p.Replicas)
	}
	for _, want := range []string{"models/chat-v2", "int8", "v0.7.0"} {
		if !strings.Contains(p.Rollout, want) {
			t.Errorf("Rollout lacks %q:\n%s", want, p.Rollout)
		}
	}
	if strings.Contains(p.Rollout, "autoscale") || strings.Contains(p.Rollout, "replicas") {
		t.Errorf("Rollout holds more than the rollout blocks:\n%s", p.Rollout)
	}
	// Re-indenting is not a rollout change.
	again, _, _ := ReleasePartsOf(bytes.ReplaceAll(src, []byte(`method = "int8"`), []byte(`method   =    "int8"`)), "x.hcl", "chat")
	if again.Rollout != p.Rollout {
		t.Errorf("whitespace changed Rollout:\n%s\nvs\n%s", again.Rollout, p.Rollout)
	}
	if _, ok, _ := ReleasePartsOf(src, "x.hcl", "missing"); ok {
		t.Error("found a release that is not there")
	}
	if _, _, err := ReleasePartsOf([]byte("release \"x\" {"), "bad.hcl", "x"); err == nil {
		t.Error("no error for a file that does not parse")
	}
}

func TestEditErrors(t *testing.T) {
	src := readFile(t, filepath.Join("testdata", "edit", "comment.in.hcl"))
	if _, err := SetReplicas(src, "missing", 2); err == nil {
		t.Error("SetReplicas on a missing release succeeded")
	}
	if _, err := SetReplicas(src, "a", -1); err == nil {
		t.Error("SetReplicas to -1 succeeded")
	}
	if _, err := SetReplicas([]byte("release {"), "a", 1); err == nil {
		t.Error("SetReplicas on a broken file succeeded")
	}
	if _, err := RestoreRelease(src, src, "missing"); err == nil {
		t.Error("RestoreRelease of a missing release succeeded")
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The autoscale attributes the monitor's policy reads: defaults, values
// and what validation refuses.
func TestAutoscaleAttributes(t *testing.T) {
	load := func(t *testing.T, autoscale string) (*Config, string) {
		t.Helper()
		root := t.TempDir()
		src := `release "r" {
  model {
    source = "oci://example.com/m@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    format = "gguf"
  }
  runtime { image = "x" }
  autoscale {
    query  = "sum(x)"
    target = 4
    min    = 1
    max    = 5
` + autoscale + `
  }
}
`
		if err := os.WriteFile(filepath.Join(root, "r.hcl"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, diags := Load(context.Background(), root, LoadOptions{NoEnv: true})
		var b strings.Builder
		for _, d := range diags {
			b.WriteString(d.Summary + ": " + d.Detail + "\n")
		}
		return cfg, b.String()
	}
	cfg, msg := load(t, "")
	if msg != "" {
		t.Fatal(msg)
	}
	a := cfg.Releases[0].Autoscale
	if a.ScaleUpWindow != 0 || a.ScaleDownWindow != 5*60e9 || a.ToleranceOrDefault() != 0.1 || a.MaxStep != 0 || a.Cooldown != 5*60e9 {
		t.Errorf("defaults: %+v", a)
	}
	cfg, msg = load(t, `scale_up_window = "0s"
scale_down_window = "30s"
tolerance = 0.2
max_step = 3
cooldown = "10s"`)
	a = cfg.Releases[0].Autoscale
	if a.ScaleUpWindow != 0 || a.ScaleDownWindow != 30e9 || a.ToleranceOrDefault() != 0.2 || a.MaxStep != 3 || a.Cooldown != 10e9 {
		t.Errorf("set: %+v (%s)", a, msg)
	}
	for attr, want := range map[string]string{
		`scale_down_window = "soon"`: "scale_down_window",
		`scale_up_window = "-1m"`:    "scale_up_window",
		`tolerance = 1.5`:            "Invalid tolerance",
		`max_step = -2`:              "Invalid max_step",
	} {
		if _, msg := load(t, attr); !strings.Contains(msg, want) {
			t.Errorf("%s: diagnostics %q, want %q", attr, msg, want)
		}
	}
}

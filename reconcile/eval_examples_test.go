package reconcile

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/gantry-dev/gantry/spec"
)

// The release blocks of examples/evals are snippets for a specs
// repository: dropped into the quickstart's (whose models they use), they
// load and validate, and every eval gates on some metric.
func TestEvalExamplesValidate(t *testing.T) {
	snippets, err := filepath.Glob("../examples/evals/*/release.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if len(snippets) != 3 {
		t.Fatalf("examples/evals snippets: %v, want 3", snippets)
	}
	repo := t.TempDir()
	if err := os.CopyFS(repo, os.DirFS("../examples/quickstart")); err != nil {
		t.Fatal(err)
	}
	for _, p := range snippets {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(repo, "evals-"+filepath.Base(filepath.Dir(p))+".hcl"), string(data))
	}
	cfg, diags := spec.Load(context.Background(), repo, spec.LoadOptions{NoEnv: true})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	images := map[string]string{}
	for _, name := range []string{"chat-kl", "chat-ppl", "chat-lm-eval"} {
		r, ok := cfg.Release(name)
		if !ok || r.Gate == nil || len(r.Gate.Evals) != 1 {
			t.Fatalf("release %s: %+v", name, r)
		}
		ev := r.Gate.Evals[0]
		if len(ev.Metrics()) == 0 || ev.Timeout <= 0 {
			t.Errorf("%s: eval %s gates on %v, timeout %s", name, ev.Name, ev.Metrics(), ev.Timeout)
		}
		images[name] = ev.Image
		// An inline script at least parses.
		if len(ev.Command) == 3 && ev.Command[0] == "/bin/sh" {
			if out, err := exec.Command("sh", "-n", "-c", ev.Command[2]).CombinedOutput(); err != nil {
				t.Errorf("%s: the eval's script does not parse: %v\n%s\n%s", name, err, out, ev.Command[2])
			}
		}
	}
	// kl.mjs runs locally; the other two are Jobs.
	if images["chat-kl"] != "" || images["chat-ppl"] == "" || images["chat-lm-eval"] == "" {
		t.Errorf("eval images %v", images)
	}
}

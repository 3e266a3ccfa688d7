package reconcile_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/gantry-dev/gantry/compress"
	"github.com/gantry-dev/gantry/compress/quality"
	"github.com/gantry-dev/gantry/reconcile"
	"github.com/gantry-dev/gantry/reconcile/dirtarget"
	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/reconcile/scaletest"
	"github.com/gantry-dev/gantry/spec"
)

// scaleMethods are the methods of scaletest.Repo's releases.
var scaleMethods = scaletest.Methods

// scaleRepo is scaletest.Repo of the quickstart's model.
func scaleRepo(tb testing.TB, n int) string {
	tb.Helper()
	return scaletest.Repo(tb, n, "../examples/quickstart/models/tiny-llama-f16.gguf")
}

// scaleEngine is an engine on embedded defaults for repo, as gantry run
// builds it: the directory source, the dir target and the OCI layout
// under state. The quantizer is the real one.
func scaleEngine(repo, state string) *reconcile.Engine {
	return &reconcile.Engine{
		Source:  reconcile.DirSource{Dir: repo},
		Target:  reconcile.DirTarget{Target: dirtarget.Target{Dir: filepath.Join(state, "objects"), CacheDir: filepath.Join(state, "work")}},
		Store:   registry.NewLayout(filepath.Join(state, "oci")),
		WorkDir: filepath.Join(state, "work"),
		Jobs:    2,
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

var scaleSizes = []int{100, 1000}

// BenchmarkValidate is gantry validate: spec.Load of n releases sharing
// one model file.
func BenchmarkValidate(b *testing.B) {
	for _, n := range scaleSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			repo := scaleRepo(b, n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				cfg, diags := spec.Load(context.Background(), repo, spec.LoadOptions{NoEnv: true})
				if diags.HasErrors() || len(cfg.Releases) != n {
					b.Fatalf("load: %d releases, %s", len(cfg.Releases), diags.Error())
				}
			}
		})
	}
}

// BenchmarkFirstReconcile is a first gantry run --once: from an empty
// state, 4 quantizes (one per content key) and n pushes and applies.
func BenchmarkFirstReconcile(b *testing.B) {
	for _, n := range scaleSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			repo := scaleRepo(b, n)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				state := b.TempDir()
				e := scaleEngine(repo, state)
				b.StartTimer()
				res, err := e.Reconcile(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				if len(res.Releases) != n || res.Executed < 3*n {
					b.Fatalf("%d releases, %d executed", len(res.Releases), res.Executed)
				}
			}
		})
	}
}

// BenchmarkNoopReconcile is a reconcile of an unchanged repository, after
// a first one: nothing to quantize, push or apply. "fresh" is a new engine
// each time (gantry run --once); "daemon" reuses one (gantry run).
func BenchmarkNoopReconcile(b *testing.B) {
	for _, mode := range []string{"fresh", "daemon"} {
		for _, n := range scaleSizes {
			b.Run(fmt.Sprintf("%s/%d", mode, n), func(b *testing.B) {
				repo, state := scaleRepo(b, n), b.TempDir()
				e := scaleEngine(repo, state)
				if _, err := e.Reconcile(context.Background()); err != nil {
					b.Fatal(err)
				}
				if mode == "daemon" {
					if _, err := e.Reconcile(context.Background()); err != nil {
						b.Fatal(err)
					}
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if mode == "fresh" {
						e = scaleEngine(repo, state)
					}
					res, err := e.Reconcile(context.Background())
					if err != nil {
						b.Fatal(err)
					}
					if res.Executed != 0 || len(res.Plan.Actions) != 0 {
						b.Fatalf("no-op reconcile executed %d, planned %d actions", res.Executed, len(res.Plan.Actions))
					}
				}
			})
		}
	}
}

// TestNoopReconcileDoesNothing: 40 releases sharing one model, reconciled
// twice. The first quantizes once per content key (4) and pushes and
// applies every release; the second, on unchanged specs, quantizes,
// pushes and applies nothing — with a new engine too, as run --once has.
func TestNoopReconcileDoesNothing(t *testing.T) {
	const n = 40
	repo, state := scaleRepo(t, n), t.TempDir()
	c := &counting{}
	engine := func() *reconcile.Engine {
		e := scaleEngine(repo, state)
		e.Target = countingTarget{e.Target, c}
		e.Store = countingStore{e.Store.(*registry.Layout), c}
		e.Quantize = func(ctx context.Context, in, out string, o compress.Options) (quality.Report, error) {
			c.mu.Lock()
			c.quantizes++
			c.mu.Unlock()
			return compress.Quantize(ctx, in, out, o)
		}
		return e
	}
	e := engine()
	res, err := e.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if c.quantizes != len(scaleMethods) || c.writes != n || len(c.applied) != 2*n {
		t.Fatalf("first reconcile: %d quantizes, %d pushes, %d objects applied; want %d, %d, %d",
			c.quantizes, c.writes, len(c.applied), len(scaleMethods), n, 2*n)
	}
	for _, st := range res.Releases {
		if st.State != reconcile.StateSynced || st.Digest == "" {
			t.Fatalf("%s: %s (%s), digest %q", st.Name, st.State, st.Reason, st.Digest)
		}
	}
	for _, e := range []*reconcile.Engine{e, engine()} {
		c.quantizes, c.writes, c.applied = 0, 0, nil
		res, err := e.Reconcile(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if c.quantizes != 0 || c.writes != 0 || len(c.applied) != 0 || res.Executed != 0 || len(res.Plan.Actions) != 0 {
			t.Errorf("no-op reconcile: %d quantizes, %d pushes, applied %v, %d executed, %d planned",
				c.quantizes, c.writes, c.applied, res.Executed, len(res.Plan.Actions))
		}
	}
}

// TestDaemonPlansOnlyWhatChanged: a daemon's no-op reconcile renders and
// diffs no release (the plan memo vouches for all of them), and a YAML
// file edited by hand is still found and put back on the next reconcile:
// only its release is planned again.
func TestDaemonPlansOnlyWhatChanged(t *testing.T) {
	const n = 40
	repo, state := scaleRepo(t, n), t.TempDir()
	e := scaleEngine(repo, state)
	for range 2 { // the first applies; the second finds all in sync
		if _, err := e.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	before := e.MemoSkips()
	res, err := e.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if skips := e.MemoSkips() - before; skips != n || res.Executed != 0 {
		t.Fatalf("no-op reconcile: %d of %d releases skipped, %d executed", skips, n, res.Executed)
	}

	objects := filepath.Join(state, "objects")
	matches, _ := filepath.Glob(filepath.Join(objects, "deployment-llm-r-00003-*.yaml"))
	if len(matches) != 1 {
		t.Fatalf("r-00003's shards: %v", matches)
	}
	path := matches[0]
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(orig), "replicas: 1", "replicas: 5", 1)
	if edited == string(orig) {
		t.Fatalf("no replicas: 1 in %s:\n%s", path, orig)
	}
	if err := os.WriteFile(path, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	before = e.MemoSkips()
	res, err = e.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if skips := e.MemoSkips() - before; skips != n-1 || res.Executed != 1 {
		t.Fatalf("after a hand edit: %d releases skipped (want %d), %d executed (want 1): %+v", skips, n-1, res.Executed, res.Plan.Actions)
	}
	if got, _ := os.ReadFile(path); string(got) != string(orig) {
		t.Fatalf("the hand edit was not undone:\n%s", got)
	}
}

// fetchCounter is a Source that counts its fetches.
type fetchCounter struct {
	reconcile.Source
	n atomic.Int64
}

func (s *fetchCounter) Fetch(ctx context.Context) (reconcile.Snapshot, error) {
	s.n.Add(1)
	return s.Source.Fetch(ctx)
}

// TestPrimedReconcileLoadsOnce: specs handed over by Prime (gantry run
// loads them once to pick its drivers) are what the next reconcile uses,
// without fetching or loading again; the one after fetches as usual.
func TestPrimedReconcileLoadsOnce(t *testing.T) {
	ctx := context.Background()
	repo, state := scaleRepo(t, 4), t.TempDir()
	e := scaleEngine(repo, state)
	src := &fetchCounter{Source: e.Source}
	e.Source = src
	snap, err := reconcile.DirSource{Dir: repo}.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg, diags := spec.Load(ctx, snap.Dir, spec.LoadOptions{})
	if diags.HasErrors() {
		t.Fatal(diags.Error())
	}
	e.Prime(snap, cfg, diags)
	res, err := e.Reconcile(ctx)
	if err != nil || len(res.Releases) != 4 {
		t.Fatalf("primed reconcile: %v, %d releases", err, len(res.Releases))
	}
	if n := src.n.Load(); n != 0 {
		t.Fatalf("the primed reconcile fetched %d times", n)
	}
	if _, err := e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if n := src.n.Load(); n != 1 {
		t.Fatalf("the reconcile after it fetched %d times, want 1", n)
	}
}

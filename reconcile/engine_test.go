package reconcile_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/gantry-dev/gantry/compress"
	"github.com/gantry-dev/gantry/compress/quality"
	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile"
	"github.com/gantry-dev/gantry/reconcile/dirtarget"
	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/spec"
)

// counting wraps the drivers and counts every side effect.
type counting struct {
	mu        sync.Mutex
	quantizes int
	writes    int
	// provenance counts attestation and signature writes.
	provenance int
	applied    []string
	failPush   string // release whose push fails
}

type countingTarget struct {
	reconcile.Target
	c *counting
}

func (t countingTarget) Apply(ctx context.Context, ns string, actions []planner.Action) error {
	t.c.mu.Lock()
	for _, a := range actions {
		t.c.applied = append(t.c.applied, string(a.Type)+" "+a.Subject)
	}
	t.c.mu.Unlock()
	return t.Target.Apply(ctx, ns, actions)
}

type countingStore struct {
	*registry.Layout
	c *counting
}

func (s countingStore) Write(ctx context.Context, ref string, img v1.Image) (string, error) {
	s.c.mu.Lock()
	if !strings.Contains(ref, ":sha256-") {
		// Model images; attestations and signatures (tagged
		// sha256-<digest>.att and .sig) are counted apart.
		s.c.writes++
	} else {
		s.c.provenance++
	}
	fail := s.c.failPush != "" && strings.Contains(ref, "/"+s.c.failPush+":")
	s.c.mu.Unlock()
	if fail {
		return "", errors.New("registry said 503 Service Unavailable")
	}
	return s.Layout.Write(ctx, ref, img)
}

type fixture struct {
	repo, state string
	c           *counting
	e           *reconcile.Engine
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	repo := t.TempDir()
	if err := os.CopyFS(repo, os.DirFS("../examples/quickstart")); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	c := &counting{}
	f := &fixture{repo: repo, state: state, c: c}
	f.e = &reconcile.Engine{
		Source:  reconcile.DirSource{Dir: repo},
		Target:  countingTarget{reconcile.DirTarget{Target: dirtarget.Target{Dir: filepath.Join(state, "objects")}}, c},
		Store:   countingStore{registry.NewLayout(filepath.Join(state, "oci")), c},
		WorkDir: filepath.Join(state, "work"),
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Quantize: func(ctx context.Context, in, out string, o compress.Options) (quality.Report, error) {
			c.mu.Lock()
			c.quantizes++
			c.mu.Unlock()
			return compress.Quantize(ctx, in, out, o)
		},
	}
	return f
}

func (f *fixture) edit(t *testing.T, file, old, new string) {
	t.Helper()
	edit(t, filepath.Join(f.repo, file), old, new)
}

func (f *fixture) reset() {
	f.c.mu.Lock()
	f.c.quantizes, f.c.writes, f.c.provenance, f.c.applied = 0, 0, 0, nil
	f.c.mu.Unlock()
}

func TestReconcileIsIdempotent(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	res, err := f.e.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// 2 quantizes, 2 pushes, 2 Services + 3 shard Deployments.
	if f.c.quantizes != 2 || f.c.writes != 2 || len(f.c.applied) != 5 {
		t.Fatalf("first reconcile: %d quantizes, %d writes, applied %q", f.c.quantizes, f.c.writes, f.c.applied)
	}
	for _, r := range res.Releases {
		if r.State != reconcile.StateSynced || r.Digest == "" {
			t.Errorf("%s: %s %q digest %q", r.Name, r.State, r.Reason, r.Digest)
		}
	}
	// Every Deployment references its model image by the pushed digest.
	objs, _ := dirtarget.Target{Dir: filepath.Join(f.state, "objects")}.Observe(ctx)
	for _, o := range objs {
		if o.Kind != "Deployment" {
			continue
		}
		b := mustYAML(t, o)
		if strings.Contains(b, planner.UnknownDigest) || !strings.Contains(b, "@sha256:") {
			t.Errorf("%s does not reference a pushed digest:\n%s", o.Name, b)
		}
	}

	f.reset()
	res, err = f.e.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f.c.quantizes != 0 || f.c.writes != 0 || len(f.c.applied) != 0 || res.Executed != 0 || !res.Plan.Empty() {
		t.Fatalf("unchanged world: %d quantizes, %d writes, applied %q, executed %d", f.c.quantizes, f.c.writes, f.c.applied, res.Executed)
	}
}

func mustYAML(t *testing.T, o planner.Object) string {
	t.Helper()
	dir := t.TempDir()
	if err := (dirtarget.Target{Dir: dir}).Put(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, dirtarget.FileName(o)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestScaleModelChangeAndRemoval(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	if _, err := f.e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}

	// Replicas only: no build, no push, only shards change.
	f.reset()
	f.edit(t, "releases.hcl", "replicas = 3", "replicas = 4")
	if _, err := f.e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if f.c.quantizes != 0 || f.c.writes != 0 || len(f.c.applied) != 1 {
		t.Errorf("scale 3 -> 4: %d quantizes, %d writes, applied %q", f.c.quantizes, f.c.writes, f.c.applied)
	}

	// A new quantize method: a new build and image, and the objects move to it.
	f.reset()
	f.edit(t, "releases.hcl", `method = "q4_k_m"`, `method = "q8_0"`)
	if _, err := f.e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if f.c.quantizes != 1 || f.c.writes != 1 || len(f.c.applied) != 2 {
		t.Errorf("model change: %d quantizes, %d writes, applied %q", f.c.quantizes, f.c.writes, f.c.applied)
	}

	// Remove a release: its objects are pruned, last.
	f.reset()
	b, _ := os.ReadFile(filepath.Join(f.repo, "releases.hcl"))
	i := strings.Index(string(b), "# The same model as GGUF")
	if err := os.WriteFile(filepath.Join(f.repo, "releases.hcl"), b[:i], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := f.e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"delete Deployment llm/tiny-chat-gguf-gpu-a2", "delete Service llm/tiny-chat-gguf"}
	if strings.Join(f.c.applied, ",") != strings.Join(want, ",") {
		t.Errorf("prune: applied %q", f.c.applied)
	}
}

func TestGateBlocksOnlyItsRelease(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.edit(t, "releases.hcl", "max_error = 0.12", "max_error = 0.01")
	res, err := f.e.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := map[string]reconcile.ReleaseStatus{}
	for _, r := range res.Releases {
		st[r.Name] = r
	}
	if s := st["tiny-chat"]; s.State != reconcile.StateBlocked || !strings.Contains(s.Reason, "exceeds max_error 0.01") || s.NextRetry == nil {
		t.Errorf("tiny-chat: %+v", s)
	}
	if s := st["tiny-chat-gguf"]; s.State != reconcile.StateSynced {
		t.Errorf("tiny-chat-gguf: %+v", s)
	}
	for _, a := range f.c.applied {
		if strings.Contains(a, "llm/tiny-chat-gpu") || strings.HasSuffix(a, "llm/tiny-chat") {
			t.Errorf("blocked release applied %s", a)
		}
	}
	if f.c.writes != 1 {
		t.Errorf("pushed %d images, want only the gguf one", f.c.writes)
	}
	// The next reconcile waits out the backoff instead of rebuilding.
	f.reset()
	res, _ = f.e.Reconcile(ctx)
	if f.c.quantizes != 0 || res.Releases[0].State != reconcile.StateFailed || !strings.Contains(res.Releases[0].Reason, "waiting to retry") {
		t.Errorf("backoff: %d quantizes, %+v", f.c.quantizes, res.Releases[0])
	}
	// Fixing the spec retries at once, and reuses the cached build.
	f.edit(t, "releases.hcl", "max_error = 0.01", "max_error = 0.2")
	res, _ = f.e.Reconcile(ctx)
	if res.Releases[0].State != reconcile.StateSynced || f.c.quantizes != 0 {
		t.Errorf("after fix: %d quantizes, %+v", f.c.quantizes, res.Releases[0])
	}
}

func TestFailedPushDoesNotStopOthers(t *testing.T) {
	f := newFixture(t)
	f.c.failPush = "tiny-chat-gguf"
	res, err := f.e.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Releases[0].State != reconcile.StateSynced || res.Releases[1].State != reconcile.StateFailed ||
		!strings.Contains(res.Releases[1].Reason, "503") {
		t.Fatalf("states: %+v", res.Releases)
	}
	for _, a := range f.c.applied {
		if strings.Contains(a, "gguf") {
			t.Errorf("applied %s although its image was not pushed", a)
		}
	}
	st := f.e.Status()
	if st.Phase != "success" || len(st.Nodes) != 3 || st.Plan == nil {
		t.Errorf("status %+v", st)
	}
}

func TestInvalidSpecsExecuteNothing(t *testing.T) {
	f := newFixture(t)
	f.edit(t, "releases.hcl", "replicas = 3", "replicas = -3")
	_, err := f.e.Reconcile(context.Background())
	if !errors.Is(err, reconcile.ErrInvalidSpecs) {
		t.Fatalf("err = %v", err)
	}
	if f.c.quantizes+f.c.writes+len(f.c.applied) != 0 {
		t.Errorf("invalid specs executed something")
	}
	st := f.e.Status()
	if st.Phase != "invalid" || !strings.Contains(st.Diagnostics, "releases.hcl:24:14") || !strings.Contains(st.Diagnostics, "replicas cannot be negative") {
		t.Errorf("status diagnostics:\n%s", st.Diagnostics)
	}
}

// TestRegistryChangeNeedsNoRestart: with StoreFor, a new gantry.registry
// in the specs takes effect at the next reconcile.
func TestRegistryChangeNeedsNoRestart(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	local := f.e.Store
	remote := countingStore{registry.NewLayout(filepath.Join(f.state, "other-registry")), &counting{}}
	f.e.Store = nil
	f.e.StoreFor = func(cfg *spec.Config) registry.Store {
		if cfg.Settings.Registry != "" {
			return remote
		}
		return local
	}
	if _, err := f.e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	f.edit(t, "gantry.hcl", `namespace = "llm"`, `namespace = "llm"
  registry  = "registry.example.com/models"`)
	res, err := f.e.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if remote.c.writes != 2 {
		t.Fatalf("%d images pushed to the new registry, want 2", remote.c.writes)
	}
	for _, r := range res.Releases {
		if !strings.HasPrefix(r.Image, "registry.example.com/models/") || r.State != reconcile.StateSynced {
			t.Errorf("%s: %s %s", r.Name, r.Image, r.State)
		}
	}
}

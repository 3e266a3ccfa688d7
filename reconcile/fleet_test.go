package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile"
	"github.com/gantry-dev/gantry/reconcile/dirtarget"
	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/schedule"
	"github.com/gantry-dev/gantry/spec"
)

// downTarget is a cluster whose API does not answer.
type downTarget struct{}

var errRefused = errors.New("dial tcp 127.0.0.1:6443: connect: connection refused")

func (downTarget) Observe(context.Context, *spec.Config) ([]planner.Object, []schedule.Node, error) {
	return nil, nil, errRefused
}
func (downTarget) Apply(context.Context, string, []planner.Action) error { return errRefused }

// fleetFixture runs examples/fleet with one directory target per cluster;
// the clusters named in down do not answer.
type fleetFixture struct {
	repo, state string
	e           *reconcile.Engine
	mu          sync.Mutex
	down        map[string]bool
	dropOnApply string         // a cluster that goes down at its next Apply
	made        map[string]int // ClusterTarget calls by cluster
}

func newFleetFixture(t *testing.T) *fleetFixture {
	t.Helper()
	f := &fleetFixture{repo: t.TempDir(), state: t.TempDir(), down: map[string]bool{}, made: map[string]int{}}
	if err := os.CopyFS(f.repo, os.DirFS("../examples/fleet")); err != nil {
		t.Fatal(err)
	}
	f.e = &reconcile.Engine{
		Source:  reconcile.DirSource{Dir: f.repo},
		Store:   registry.NewLayout(filepath.Join(f.state, "oci")),
		WorkDir: filepath.Join(f.state, "work"),
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		ClusterTarget: func(ctx context.Context, c spec.Cluster) (reconcile.Target, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.made[c.Name]++
			return &switchable{f: f, name: c.Name, dir: reconcile.DirTarget{Target: dirtarget.Target{Dir: filepath.Join(f.state, "objects", c.Name)}}}, nil
		},
		MirrorFor: func(string) registry.Store { return registry.NewLayout(filepath.Join(f.state, "mirror")) },
	}
	return f
}

// switchable is a cluster's dir target that goes down while f.down says so.
type switchable struct {
	f    *fleetFixture
	name string
	dir  reconcile.DirTarget
}

func (s *switchable) isDown() bool {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	return s.f.down[s.name]
}

func (s *switchable) Observe(ctx context.Context, cfg *spec.Config) ([]planner.Object, []schedule.Node, error) {
	if s.isDown() {
		return downTarget{}.Observe(ctx, cfg)
	}
	return s.dir.Observe(ctx, cfg)
}

func (s *switchable) Apply(ctx context.Context, ns string, actions []planner.Action) error {
	s.f.mu.Lock()
	if s.f.dropOnApply == s.name {
		s.f.down[s.name], s.f.dropOnApply = true, "" // the API server goes away between observe and apply
	}
	s.f.mu.Unlock()
	if s.isDown() {
		return errRefused
	}
	return s.dir.Apply(ctx, ns, actions)
}

// files are the object files of a cluster, with their bytes.
func (f *fleetFixture) files(t *testing.T, cluster string) map[string]string {
	t.Helper()
	out := map[string]string{}
	root := filepath.Join(f.state, "objects", cluster)
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = string(b)
		return nil
	})
	return out
}

func TestFleetReconcile(t *testing.T) {
	ctx := context.Background()
	f := newFleetFixture(t)
	res, err := f.e.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Releases {
		if r.State != reconcile.StateSynced {
			t.Errorf("%s: %s: %s", r.Name, r.State, r.Reason)
		}
	}
	// tiny-chat: 2 replicas in each of the three clusters; tiny-chat-prod:
	// 4 over eu-1 and us-1, at least one in each.
	for _, c := range []string{"staging", "eu-1", "us-1"} {
		if len(f.files(t, c)) == 0 {
			t.Fatalf("cluster %s got no objects", c)
		}
	}
	if got := f.files(t, "staging"); strings.Contains(strings.Join(keys(got), " "), "tiny-chat-prod") {
		t.Errorf("tiny-chat-prod reached staging: %v", keys(got))
	}
	for name, body := range f.files(t, "eu-1") {
		if strings.HasPrefix(name, "deployment-") && !strings.Contains(body, "mirror.eu-1.example.com/models/") {
			t.Errorf("eu-1's %s does not pull from the mirror", name)
		}
	}
	for name := range f.files(t, "us-1") {
		if !strings.Contains(name, "models") {
			t.Errorf("us-1's %s is not in namespace models", name)
		}
	}
	st := f.e.Status()
	if len(st.Clusters) != 3 || !st.Clusters[0].Reachable {
		t.Fatalf("status clusters = %+v", st.Clusters)
	}
	// The mirror holds the eu-1 copy, by the same digest.
	mirror := registry.NewLayout(filepath.Join(f.state, "mirror"))
	for _, r := range res.Releases {
		if r.Name != "tiny-chat" {
			continue
		}
		ref := "mirror.eu-1.example.com/models/tiny-chat:" + strings.SplitN(r.Image, ":", 3)[len(strings.SplitN(r.Image, ":", 3))-1]
		d, ok, err := mirror.Has(ctx, ref)
		if err != nil || !ok || d != r.Digest {
			t.Fatalf("mirror has %s: %v %q %v, want digest %s", ref, ok, d, err, r.Digest)
		}
		// With its attestation, for the cluster's admission control.
		if st, _, err := registry.ReadAttestation(ctx, mirror, ref, d); err != nil || st == nil {
			t.Fatalf("the mirror's copy has no attestation: %v", err)
		}
	}
	// Again: nothing to do, no target made again.
	res, err = f.e.Reconcile(ctx)
	if err != nil || res.Executed != 0 {
		t.Fatalf("second reconcile executed %d: %v", res.Executed, err)
	}
	if f.made["eu-1"] != 1 {
		t.Errorf("eu-1's target made %d times, want once", f.made["eu-1"])
	}

	// us-1 stops answering; a release's replicas change. us-1's files stay
	// byte for byte, the others converge, and tiny-chat is degraded.
	before := f.files(t, "us-1")
	f.mu.Lock()
	f.down["us-1"] = true
	f.mu.Unlock()
	edit(t, filepath.Join(f.repo, "releases.hcl"), "replicas_per_cluster = 2", "replicas_per_cluster = 1")
	res, err = f.e.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var chat reconcile.ReleaseStatus
	for _, r := range res.Releases {
		if r.Name == "tiny-chat" {
			chat = r
		}
	}
	if chat.State != reconcile.StateDegraded || !strings.Contains(chat.Reason, "cluster unreachable: us-1") {
		t.Fatalf("tiny-chat with us-1 down: %s: %s", chat.State, chat.Reason)
	}
	if got := f.files(t, "us-1"); strings.Join(keys(got), " ") != strings.Join(keys(before), " ") || got[keys(got)[0]] != before[keys(before)[0]] {
		t.Fatal("us-1's objects changed while it was down")
	}
	if n := strings.Count(strings.Join(keys(f.files(t, "staging")), " "), "deployment-"); n != 1 {
		t.Errorf("staging has %d shards after the change, want 1", n)
	}
	st = f.e.Status()
	if st.Clusters[2].Reachable || !strings.Contains(st.Clusters[2].Error, "connection refused") {
		t.Errorf("us-1's status = %+v", st.Clusters[2])
	}
	// Removing a release while us-1 is down prunes nothing there.
	edit(t, filepath.Join(f.repo, "releases.hcl"), `release "tiny-chat-prod"`, `release "tiny-chat-prod-renamed"`)
	if _, err := f.e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got := f.files(t, "us-1"); len(got) != len(before) {
		t.Fatalf("us-1 was pruned while down: %v", keys(got))
	}
	// It answers again: it converges.
	f.mu.Lock()
	f.down["us-1"] = false
	f.mu.Unlock()
	if _, err := f.e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	res, err = f.e.Reconcile(ctx)
	if err != nil || res.Executed != 0 {
		t.Fatalf("after us-1 came back: executed %d, %v", res.Executed, err)
	}
	for _, name := range keys(f.files(t, "us-1")) {
		if strings.Contains(name, "tiny-chat-prod-") && !strings.Contains(name, "renamed") {
			t.Errorf("us-1 kept %s of the removed release", name)
		}
	}
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func edit(t *testing.T, p, old, new string) {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s lacks %q", p, old)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFleetClusterLostMidReconcile: a cluster that answered Observe and
// then goes away before its Apply fails its releases there; the other
// clusters are applied in the same reconcile; the next reconcile sees it
// unreachable and changes nothing there; once back, it converges.
func TestFleetClusterLostMidReconcile(t *testing.T) {
	ctx := context.Background()
	f := newFleetFixture(t)
	if _, err := f.e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	before := f.files(t, "us-1")
	edit(t, filepath.Join(f.repo, "releases.hcl"), "replicas_per_cluster = 2", "replicas_per_cluster = 1")
	f.mu.Lock()
	f.dropOnApply = "us-1"
	f.mu.Unlock()
	res, err := f.e.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var chat reconcile.ReleaseStatus
	for _, r := range res.Releases {
		if r.Name == "tiny-chat" {
			chat = r
		}
	}
	if chat.State != reconcile.StateFailed || !strings.Contains(chat.Reason, "cluster us-1") || !strings.Contains(chat.Reason, "connection refused") {
		t.Fatalf("tiny-chat with us-1 lost mid-reconcile: %s: %s", chat.State, chat.Reason)
	}
	for _, c := range []string{"staging", "eu-1"} {
		if n := strings.Count(strings.Join(keys(f.files(t, c)), " "), "deployment-llm-tiny-chat-gpu"); n != 1 {
			t.Errorf("%s: %d tiny-chat shards after the change, want 1: %v", c, n, keys(f.files(t, c)))
		}
	}
	if got := f.files(t, "us-1"); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatal("us-1 changed although it was lost before its apply")
	}
	// Still down: degraded, untouched.
	res, err = f.e.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res.Releases {
		if r.Name == "tiny-chat" && !strings.Contains(r.Reason, "cluster unreachable: us-1") {
			t.Errorf("tiny-chat with us-1 down: %s: %s", r.State, r.Reason)
		}
	}
	if got := f.files(t, "us-1"); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatal("us-1 changed while down")
	}
	// Back: it converges (the failed release's back-off is over for a
	// new spec; wait it out by changing nothing but the clock is not
	// ours, so edit the spec once more).
	f.mu.Lock()
	f.down["us-1"] = false
	f.mu.Unlock()
	edit(t, filepath.Join(f.repo, "releases.hcl"), `pause = "10m" }]`, `pause = "11m" }]`)
	if _, err := f.e.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(strings.Join(keys(f.files(t, "us-1")), " "), "deployment-models-tiny-chat-gpu"); n != 1 {
		t.Fatalf("us-1 after it came back: %v", keys(f.files(t, "us-1")))
	}
}

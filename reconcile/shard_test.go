package reconcile_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile"
)

// TestShardOfGolden pins the hash: a release must never change owner
// between versions of Gantry, or two versions of a fleet would fight.
func TestShardOfGolden(t *testing.T) {
	golden := []struct {
		name          string
		of2, of3, of5 int
	}{
		{"chat", 0, 0, 4},
		{"llama-8b", 1, 1, 1},
		{"llama-70b", 1, 2, 2},
		{"mistral-7b", 0, 2, 2},
		{"qwen-32b", 0, 2, 2},
		{"embed", 0, 2, 2},
		{"rerank", 0, 2, 3},
		{"tiny-chat", 0, 2, 2},
		{"tiny-chat-gguf", 1, 1, 1},
		{"whisper", 0, 0, 4},
	}
	for _, g := range golden {
		for n, want := range map[int]int{1: 0, 2: g.of2, 3: g.of3, 5: g.of5} {
			if got := reconcile.ShardOf(g.name, n); got != want {
				t.Errorf("ShardOf(%q, %d) = %d, want %d", g.name, n, got, want)
			}
		}
	}
}

// TestShardOfEven: 10,000 names spread within 5% of the mean for every
// count, and growing the count by one moves names only to the new shard,
// about 1/(n+1) of them (jump consistent hash).
func TestShardOfEven(t *testing.T) {
	const names = 10000
	for _, n := range []int{2, 3, 4, 7, 16} {
		count := make([]int, n)
		moved := 0
		for i := range names {
			name := fmt.Sprintf("release-%d", i)
			s := reconcile.ShardOf(name, n)
			if s < 0 || s >= n {
				t.Fatalf("ShardOf(%q, %d) = %d", name, n, s)
			}
			count[s]++
			if next := reconcile.ShardOf(name, n+1); next != s {
				if next != n {
					t.Fatalf("%s moved from shard %d to %d when the count grew to %d", name, s, next, n+1)
				}
				moved++
			}
		}
		mean := names / n
		for s, c := range count {
			if c < mean*95/100 || c > mean*105/100 {
				t.Errorf("count %d: shard %d has %d of %d names (mean %d)", n, s, c, names, mean)
			}
		}
		// Expected names/(n+1); allow 10% either way.
		if want := names / (n + 1); moved < want*9/10 || moved > want*11/10 {
			t.Errorf("count %d -> %d: %d names moved, want about %d", n, n+1, moved, want)
		}
	}
}

func TestParseShardLabel(t *testing.T) {
	for v, want := range map[string]bool{"0-of-2": true, "1-of-2": true, "2-of-2": false, "-1-of-2": false, "1/2": false, "": false, "a-of-2": false, "0-of-0": false} {
		if _, ok := reconcile.ParseShardLabel(v); ok != want {
			t.Errorf("ParseShardLabel(%q): ok %v, want %v", v, ok, want)
		}
	}
	s := reconcile.Shard{Index: 3, Count: 4}
	if got, ok := reconcile.ParseShardLabel(s.LabelValue()); !ok || got != s {
		t.Errorf("round trip of %s: %v %v", s.LabelValue(), got, ok)
	}
}

// shardedFixture is the quickstart with more copies of tiny-chat-gguf
// (2 GPUs each, a100 pool only), and one engine per shard of count,
// sharing the specs, the objects directory and the image store: a fleet
// on one target.
func shardedFixture(t *testing.T, count int, copies ...string) (*fixture, []*reconcile.Engine) {
	t.Helper()
	f := newFixture(t)
	for _, c := range copies {
		copyGGUF(t, f, c)
	}
	var engines []*reconcile.Engine
	for i := range count {
		engines = append(engines, shardEngine(f, reconcile.Shard{Index: i, Count: count}))
	}
	return f, engines
}

// shardEngine is the fixture's engine as shard s.
func shardEngine(f *fixture, s reconcile.Shard) *reconcile.Engine {
	return &reconcile.Engine{Source: f.e.Source, Target: f.e.Target, Store: f.e.Store, WorkDir: f.e.WorkDir,
		Log: f.e.Log, Quantize: f.e.Quantize, Shard: &s}
}

// objectsByRelease reads the objects directory: release -> file -> YAML,
// and release -> shard labels seen.
func objectsByRelease(t *testing.T, dir string) (map[string]map[string]string, map[string]map[string]bool) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs, labels := map[string]map[string]string{}, map[string]map[string]bool{}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		o, err := planner.ObjectFromManifest(m)
		if err != nil {
			t.Fatal(err)
		}
		rel := o.Label(planner.LabelRelease)
		if objs[rel] == nil {
			objs[rel], labels[rel] = map[string]string{}, map[string]bool{}
		}
		objs[rel][filepath.Base(p)] = string(b)
		labels[rel][o.Label(reconcile.LabelShard)] = true
	}
	return objs, labels
}

// TestShardsSplitReleases runs two shards over one repository and one
// target: each applies only its own releases, labelled with its
// assignment, a re-run of one changes nothing of the other's, and a
// removed release is pruned by its owner only.
func TestShardsSplitReleases(t *testing.T) {
	ctx := context.Background()
	// Two GPUs each on the a100 pool, whose two nodes have 8 GPUs, 1 held
	// in reserve: 3 replicas fit on each, 6 in all, only if each shard
	// counts the other's. Shard 0 owns model-2, -3 and -7 (and
	// tiny-chat), shard 1 tiny-chat-gguf, model-4 and -9.
	copies := []string{"model-2", "model-3", "model-4", "model-7", "model-9"}
	f, shards := shardedFixture(t, 2, copies...)
	all := append([]string{"tiny-chat", "tiny-chat-gguf"}, copies...)
	dir := filepath.Join(f.state, "objects")

	res, err := shards[0].Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	objs, _ := objectsByRelease(t, dir)
	for _, r := range all {
		if mine := reconcile.ShardOf(r, 2) == 0; mine != (len(objs[r]) > 0) {
			t.Errorf("after shard 0 alone: release %s (shard %d) has %d objects", r, reconcile.ShardOf(r, 2), len(objs[r]))
		}
	}
	for _, st := range res.Releases {
		if reconcile.ShardOf(st.Name, 2) != 0 {
			t.Errorf("shard 0 reports release %s", st.Name)
		}
	}
	if _, err := shards[1].Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	objs, labels := objectsByRelease(t, dir)
	for _, r := range all {
		want := fmt.Sprintf("%d-of-2", reconcile.ShardOf(r, 2))
		if len(objs[r]) < 2 || len(labels[r]) != 1 || !labels[r][want] {
			t.Errorf("release %s: %d objects, shard labels %v, want all %s", r, len(objs[r]), labels[r], want)
		}
	}
	st := shards[1].Status().Shard
	if st == nil || st.Index != 1 || st.Count != 2 || len(st.Releases)+st.Others != len(all) {
		t.Fatalf("shard 1 status %+v", st)
	}
	for _, r := range st.Releases {
		if reconcile.ShardOf(r, 2) != 1 {
			t.Errorf("shard 1 status lists %s", r)
		}
	}

	// GPUs are shared: no node holds more than it has, although each
	// shard placed only its own releases.
	nodeGPUs := map[string]int{"gpu-a1": 7, "gpu-a2": 7, "gpu-l1": 4} // a100: 8 less the reserve
	used := map[string]int{}
	for _, s := range shards {
		for _, n := range s.Status().Nodes {
			for _, g := range n.Releases {
				used[n.Name] += g
			}
		}
	}
	for n, u := range used {
		if u > nodeGPUs[n] {
			t.Errorf("node %s: the shards placed %d GPUs on %d", n, u, nodeGPUs[n])
		}
	}
	for _, s := range shards {
		for _, r := range s.Status().Releases {
			if r.State != reconcile.StateSynced {
				t.Errorf("release %s: %s: %s", r.Name, r.State, r.Reason)
			}
		}
	}

	// A re-run of shard 0 does nothing, and shard 1's files are as they were.
	f.reset()
	res, err = shards[0].Reconcile(ctx)
	if err != nil || res.Executed != 0 {
		t.Fatalf("re-run of shard 0: %d executed, %v; applied %v", res.Executed, err, f.c.applied)
	}
	again, _ := objectsByRelease(t, dir)
	for r, files := range objs {
		for name, b := range files {
			if again[r][name] != b {
				t.Errorf("re-run of shard 0 changed %s", name)
			}
		}
	}

	// Remove a release of shard 1: shard 0 leaves it, shard 1 prunes it.
	removed := ""
	for _, r := range copies {
		if reconcile.ShardOf(r, 2) == 1 {
			removed = r
		}
	}
	removeRelease(t, f, removed)
	if _, err := shards[0].Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if objs, _ := objectsByRelease(t, dir); len(objs[removed]) == 0 {
		t.Fatalf("shard 0 pruned %s, a release of shard 1", removed)
	}
	if _, err := shards[1].Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if objs, _ := objectsByRelease(t, dir); len(objs[removed]) != 0 {
		t.Fatalf("shard 1 did not prune %s: %v", removed, objs[removed])
	}
}

// TestShardCountMismatchDoesNotPrune: a process started with another
// count (0/3 in a fleet of 2) does not prune objects another assignment
// applied, even of a release it owns by hash; it says so in the status.
// The right owner still prunes them.
func TestShardCountMismatchDoesNotPrune(t *testing.T) {
	ctx := context.Background()
	f, shards := shardedFixture(t, 2, "model-2")
	if reconcile.ShardOf("model-2", 2) != 0 || reconcile.ShardOf("model-2", 3) != 0 {
		t.Fatal("the test needs a release owned by 0/2 and by 0/3")
	}
	for _, s := range shards {
		if _, err := s.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Relabel model-2's objects as if 1/3 had applied them: the fleet is
	// half-way through a rescale, or one replica has a typo.
	dir := filepath.Join(f.state, "objects")
	objs, _ := objectsByRelease(t, dir)
	for name, b := range objs["model-2"] {
		if !strings.Contains(b, "0-of-2") {
			t.Fatalf("%s lacks the label 0-of-2:\n%s", name, b)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.ReplaceAll(b, "0-of-2", "1-of-3")), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	removeRelease(t, f, "model-2")

	wrong := shardEngine(f, reconcile.Shard{Index: 0, Count: 3})
	if _, err := wrong.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	left, _ := objectsByRelease(t, dir)
	if len(left["model-2"]) != len(objs["model-2"]) {
		t.Fatalf("0/3 pruned objects labelled 1-of-3: %d of %d left", len(left["model-2"]), len(objs["model-2"]))
	}
	st := wrong.Status().Shard
	if st == nil || len(st.NotPruned) != len(objs["model-2"]) || !strings.Contains(st.NotPruned[0], "gantry.dev/shard=1-of-3") {
		t.Fatalf("status of 0/3: %+v", st)
	}
	// 0/2, whose label it is not either, leaves them too.
	if _, err := shards[0].Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if left, _ := objectsByRelease(t, dir); len(left["model-2"]) != len(objs["model-2"]) {
		t.Fatal("0/2 pruned objects labelled 1-of-3")
	}
	// Objects labelled with the owner's own assignment are pruned.
	for name, b := range objs["model-2"] {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := shards[0].Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if left, _ := objectsByRelease(t, dir); len(left["model-2"]) != 0 {
		t.Fatalf("0/2 did not prune its own objects: %v", left["model-2"])
	}
}

// copyGGUF appends a copy of tiny-chat-gguf's block, as it is in the
// quickstart, under another name.
func copyGGUF(t *testing.T, f *fixture, name string) {
	t.Helper()
	b, err := os.ReadFile("../examples/quickstart/releases.hcl")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, `release "tiny-chat-gguf"`)
	if end := strings.Index(s[i+1:], "\nrelease \""); end >= 0 {
		s = s[:i+1+end+1]
	}
	block := strings.Replace(s[i:], `release "tiny-chat-gguf"`, `release "`+name+`"`, 1)
	p := filepath.Join(f.repo, "releases.hcl")
	cur, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, append(cur, "\n"+block...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// removeRelease deletes a release block that copyGGUF appended.
func removeRelease(t *testing.T, f *fixture, name string) {
	t.Helper()
	p := filepath.Join(f.repo, "releases.hcl")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\nrelease \""+name+"\"")
	if i < 0 {
		t.Fatalf("no release %s", name)
	}
	end := strings.Index(s[i+1:], "\nrelease \"")
	if end < 0 {
		s = s[:i+1]
	} else {
		s = s[:i+1] + s[i+1+end+1:]
	}
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

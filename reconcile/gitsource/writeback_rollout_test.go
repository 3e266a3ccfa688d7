package gitsource

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rolloutBlock is chat's rollout block, added to wbSpec after its model
// and runtime, with comments that must survive Gantry's edits.
const rolloutBlock = `  replicas = 3 # autoscaled

  # Canary first.
  rollout {
    steps = [{ replicas = 1, pause = "10m" }, { percent = 50, pause = "30m" }, { percent = 100 }]
    analysis {
      interval      = "1m"
      failure_limit = 2
      metric "error_ratio" {
        query = "sum(errors{pod=~\"{{.Pods}}\"})"
        max   = 0.01
      }
    }
    step    = 1          # Gantry promotes
    version = "3f2a1c9d"
  }
`

// newRolloutRemote is newWBRemote whose second commit (returned) adds
// chat's rollout block.
func newRolloutRemote(t *testing.T) (wbRemote, string) {
	t.Helper()
	r := newWBRemote(t)
	rev := r.humanCommit(t, "chat: roll out progressively", func(s string) string {
		return strings.Replace(s, "  replicas = 3 # autoscaled\n", rolloutBlock, 1)
	})
	return r, rev
}

// promote decides step → step+1 of version, counting the calls.
func promote(version string, step int, calls *atomic.Int32) Decider {
	return func(ctx context.Context, dir, rev string, hist *History) ([]Change, error) {
		calls.Add(1)
		return []Change{{Release: "chat", Kind: "promote", Version: version, Step: step,
			Message: "chat: promote " + version + " step 1 → 2\n\nerror_ratio: canary 0.004, stable 0.005, bound <= 0.01"}}, nil
	}
}

func TestWriteBackPromote(t *testing.T) {
	r, added := newRolloutRemote(t)
	before := r.show(t, "main", "releases.hcl")
	w := r.writer(t)
	var calls atomic.Int32
	out, err := w.Write(context.Background(), promote("3f2a1c9d", 2, &calls), false)
	if err != nil {
		t.Fatal(err)
	}
	head := runGit(t, r.bare, "rev-parse", "main")
	if len(out.Commits) != 1 || out.Commits[0].Commit != head || out.Commits[0].Kind != "promote" {
		t.Fatalf("outcome %+v", out)
	}
	// Only the step changed, comment and alignment included.
	want := strings.Replace(before, "    step    = 1          # Gantry promotes", "    step    = 2          # Gantry promotes", 1)
	if got := r.show(t, "main", "releases.hcl"); got != want {
		t.Errorf("releases.hcl after promote:\n%s\nwant:\n%s", got, want)
	}
	if n := strings.Count(out.Diff, "\n-") + strings.Count(out.Diff, "\n+"); n != 4 { // --- a, +++ b, one line each way
		t.Errorf("diff is not one line:\n%s", out.Diff)
	}
	for key, want := range map[string]string{"Gantry-Adjustment": "promote", "Gantry-Release": "chat", "Gantry-Revision": added, "Gantry-Step": "2", "Gantry-Version": "3f2a1c9d"} {
		if got := runGit(t, r.bare, "log", "-1", "--format=%(trailers:key="+key+",valueonly)", "main"); got != want {
			t.Errorf("trailer %s = %q, want %q", key, got, want)
		}
	}
	if msg := runGit(t, r.bare, "log", "-1", "--format=%B", "main"); !strings.HasPrefix(msg, "chat: promote 3f2a1c9d step 1 → 2\n\nerror_ratio: canary 0.004") {
		t.Errorf("message:\n%s", msg)
	}

	// The promotion begins the step: StepStart finds it; observed at the
	// revision before it, the daemon has not seen it yet.
	hist, err := NewHistory(w.Dir, head)
	if err != nil {
		t.Fatal(err)
	}
	st, err := hist.StepStart("chat", head, time.Now().Add(-time.Hour))
	if err != nil || st.Revision != head || st.AfterObserved || time.Since(st.Time) > time.Minute {
		t.Errorf("StepStart observed at the head = %+v, %v", st, err)
	}
	if st, _ := hist.StepStart("chat", added, time.Now().Add(-time.Hour)); st.Revision != head || !st.AfterObserved {
		t.Errorf("StepStart observed before the promotion = %+v", st)
	}
	// A promotion is not a rollout of new blocks.
	if ro, err := hist.LastRollout("chat", time.Now().Add(-time.Hour)); err != nil || ro == nil || ro.Revision == head {
		t.Errorf("LastRollout = %+v, %v: the promotion changed no model, runtime or quantize block", ro, err)
	}

	// The same promotion again is already in Git.
	out, err = w.Write(context.Background(), promote("3f2a1c9d", 2, &calls), false)
	if err != nil || len(out.Commits) != 0 || len(out.Skipped) != 1 {
		t.Errorf("repeat: %+v, %v", out, err)
	}
}

// A person pushes between Gantry's fetch and its push: the promotion is
// decided again on the new head and lands on top of the person's commit.
func TestWriteBackPromoteRace(t *testing.T) {
	r, _ := newRolloutRemote(t)
	w := r.writer(t)
	var human string
	w.BeforePush = func(attempt int) {
		if attempt == 1 {
			human = r.humanCommit(t, "other: a comment", func(s string) string {
				return strings.Replace(s, "release \"other\" {\n", "release \"other\" {\n  # by hand\n", 1)
			})
		}
	}
	var calls atomic.Int32
	out, err := w.Write(context.Background(), promote("3f2a1c9d", 2, &calls), false)
	if err != nil {
		t.Fatal(err)
	}
	if out.Attempts != 2 || calls.Load() != 2 || len(out.Commits) != 1 {
		t.Errorf("attempts %d, decisions %d, commits %+v", out.Attempts, calls.Load(), out.Commits)
	}
	if parent := runGit(t, r.bare, "rev-parse", "main^"); parent != human {
		t.Errorf("the promotion is on %s, want on the person's %s", parent, human)
	}
	got := r.show(t, "main", "releases.hcl")
	if !strings.Contains(got, "# by hand") || !strings.Contains(got, "step    = 2") {
		t.Errorf("after the race:\n%s", got)
	}
	// The person's commit changed no position: observed at the revision
	// the first decision saw, the step start is not newer.
	hist, err := NewHistory(w.Dir, runGit(t, r.bare, "rev-parse", "main"))
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := hist.StepStart("other", human, time.Now().Add(-time.Hour)); st.AfterObserved {
		t.Errorf("other's StepStart = %+v", st)
	}
}

func TestWriteBackAbort(t *testing.T) {
	r, _ := newRolloutRemote(t)
	stable := runGit(t, r.bare, "rev-parse", "main")
	good := r.show(t, stable, "releases.hcl")
	// The rollout of llama:2 begins, and a person (or Gantry) takes it to
	// step 2.
	canary := r.humanCommit(t, "chat: llama 2", func(s string) string { return strings.Replace(s, `image = "llama:1"`, `image = "llama:2"`, 1) })
	r.humanCommit(t, "chat: step 2", func(s string) string { return strings.Replace(s, "step    = 1 ", "step    = 2 ", 1) })
	w := r.writer(t)
	var calls atomic.Int32
	decide := func(ctx context.Context, dir, rev string, hist *History) ([]Change, error) {
		calls.Add(1)
		ro, err := hist.LastRollout("chat", time.Time{})
		if err != nil || ro == nil {
			t.Fatalf("LastRollout = %+v, %v", ro, err)
		}
		if ro.ByRollback {
			return nil, nil // aborted already
		}
		if ro.Revision != canary || ro.Previous != stable {
			t.Errorf("LastRollout = %+v, want %s after %s", ro, canary, stable)
		}
		return []Change{{Release: "chat", Kind: "abort", Restore: ro.Previous, Version: "3f2a1c9d", Step: 2,
			Message: "chat: abort rollout of 3f2a1c9d at step 2\n\nerror_ratio at …: canary 0.2, bound <= 0.01"}}, nil
	}
	out, err := w.Write(context.Background(), decide, false)
	if err != nil || len(out.Commits) != 1 || out.Commits[0].Kind != "abort" {
		t.Fatalf("abort: %+v, %v", out, err)
	}
	// The blocks are back; the position (step 2) is as Git had it.
	want := strings.Replace(good, "step    = 1 ", "step    = 2 ", 1)
	if got := r.show(t, "main", "releases.hcl"); got != want {
		t.Errorf("after abort:\n%s\nwant:\n%s", got, want)
	}
	if tr := runGit(t, r.bare, "log", "-1", "--format=%(trailers:key=Gantry-Adjustment,valueonly)", "main"); tr != "abort" {
		t.Errorf("trailer Gantry-Adjustment = %q", tr)
	}
	if tr := runGit(t, r.bare, "log", "-1", "--format=%(trailers:key=Gantry-Step,valueonly)", "main"); tr != "2" {
		t.Errorf("trailer Gantry-Step = %q", tr)
	}
	// An abort is never rolled back in turn, nor aborted twice.
	out, err = w.Write(context.Background(), decide, false)
	if err != nil || len(out.Commits) != 0 || calls.Load() != 2 {
		t.Errorf("second round: %+v, %v", out, err)
	}
}

// StepStart sees position and block changes, and nothing else.
func TestHistoryStepStart(t *testing.T) {
	r, added := newRolloutRemote(t)
	since := time.Now().Add(-time.Hour)
	w := r.writer(t)
	at := func(rev, observed string) StepCommit {
		t.Helper()
		// A dry run fetches the remote into the write-back's clone.
		if _, err := w.Write(context.Background(), func(context.Context, string, string, *History) ([]Change, error) { return nil, nil }, true); err != nil {
			t.Fatal(err)
		}
		h, err := NewHistory(w.Dir, rev)
		if err != nil {
			t.Fatal(err)
		}
		st, err := h.StepStart("chat", observed, since)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	if st := at(added, ""); st.Revision != added {
		t.Errorf("the rollout block's commit: %+v", st)
	}
	// Replicas and comments are not the position.
	scaled := r.humanCommit(t, "chat: 4", func(s string) string {
		return strings.Replace(strings.Replace(s, "replicas = 3", "replicas = 4", 1), "# Canary first.", "# Canary first, always.", 1)
	})
	if st := at(scaled, scaled); st.Revision != added || st.AfterObserved {
		t.Errorf("after scaling: %+v, want %s", st, added)
	}
	// A whitespace-only edit of the position is no change either.
	spaced := r.humanCommit(t, "fmt", func(s string) string { return strings.Replace(s, `version = "3f2a1c9d"`, `version =   "3f2a1c9d"`, 1) })
	if st := at(spaced, ""); st.Revision != added {
		t.Errorf("after a whitespace edit: %+v", st)
	}
	// A new runtime begins a new rollout, at step 1.
	bumped := r.humanCommit(t, "chat: llama 2", func(s string) string { return strings.Replace(s, `image = "llama:1"`, `image = "llama:2"`, 1) })
	if st := at(bumped, scaled); st.Revision != bumped || !st.AfterObserved {
		t.Errorf("after a new runtime, observed before it: %+v", st)
	}
	// Nothing since the future.
	since = time.Now().Add(time.Hour)
	if st := at(bumped, ""); st.Revision != "" {
		t.Errorf("since the future: %+v", st)
	}
}

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// gantry plan right after gantry run --once shows no changes: both read
// the live state from the same place (dir:<state-dir>/objects). --target
// none keeps the empty live state for CI without a cluster.
func TestPlanDefaultTargetIsRuns(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	if code, _, errs := gantry(t, "run", "--repo", quickstart, "--once", "--state-dir", state); code != 0 {
		t.Fatalf("run --once: exit %d: %s", code, errs)
	}
	code, out, errs := gantry(t, "plan", quickstart, "--state-dir", state, "-detailed-exitcode")
	if code != 0 || strings.Count(out, "No changes.") != 1 {
		t.Fatalf("plan after run: exit %d, stdout:\n%s\nstderr: %s", code, out, errs)
	}
	code, out, _ = gantry(t, "plan", quickstart, "--state-dir", state, "--target", "none", "-detailed-exitcode")
	if code != 2 || !strings.Contains(out, "Plan: 5 to add, 0 to change, 0 to destroy.") {
		t.Fatalf("--target none: exit %d:\n%s", code, out)
	}
	if code, _, errs := gantry(t, "plan", quickstart, "--target", "nowhere"); code != 1 || !strings.Contains(errs, "none") {
		t.Errorf("--target nowhere: exit %d: %s", code, errs)
	}
}

// An empty --webhook-secret-file is a mistake to say at start, not a
// daemon whose webhook silently refuses every delivery.
func TestEmptyWebhookSecretRefused(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "secret")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Bounded: a daemon that starts anyway runs until the context ends
	// and exits 0, which fails the test instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"run", "--repo", quickstart, "--state-dir", filepath.Join(dir, "state"),
		"--webhook-secret-file", empty, "--listen", "127.0.0.1:0", "--leader-elect=false"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "is empty") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}

// A plan of a working copy with edits says so: it is not the plan of the
// commit it names.
func TestPlanSaysUncommitted(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(quickstart)); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"init", "-q"}, {"add", "-A"}, {"-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "specs"}} {
		if out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}
	_, out, _ := gantry(t, "plan", dir, "--target", "none")
	if !strings.Contains(out, "for revision ") || strings.Contains(out, "uncommitted") {
		t.Fatalf("clean working copy:\n%s", out)
	}
	p := filepath.Join(dir, "releases.hcl")
	b, _ := os.ReadFile(p)
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), "replicas = 3", "replicas = 4", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	for format, want := range map[string]string{"text": " + uncommitted changes:", "markdown": " + uncommitted changes", "json": `"uncommitted": true`} {
		_, out, _ = gantry(t, "plan", dir, "--target", "none", "--format", format)
		if !strings.Contains(out, want) {
			t.Errorf("%s plan of an edited working copy lacks %q:\n%.400s", format, want, out)
		}
	}
}

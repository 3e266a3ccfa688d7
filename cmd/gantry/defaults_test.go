package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
	code, _, errs := gantry(t, "run", "--repo", quickstart, "--state-dir", filepath.Join(dir, "state"),
		"--webhook-secret-file", empty, "--listen", "127.0.0.1:0")
	if code != 1 || !strings.Contains(errs, "is empty") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
}

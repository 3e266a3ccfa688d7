package gitsource

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestUncommitted(t *testing.T) {
	ctx := context.Background()
	repo := t.TempDir()
	specs := filepath.Join(repo, "specs")
	if err := os.MkdirAll(specs, 0o755); err != nil {
		t.Fatal(err)
	}
	gitc := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", repo, "-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	put := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gitc("init", "-q")
	put(filepath.Join(specs, "a.hcl"), "x = 1\n")
	put(filepath.Join(repo, "other.txt"), "x")
	put(filepath.Join(repo, ".gitignore"), "specs/ignored/\n")
	gitc("add", "-A")
	gitc("commit", "-qm", "first")

	check := func(what string, want bool) {
		t.Helper()
		got, err := Uncommitted(ctx, specs)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s: uncommitted = %v, want %v", what, got, want)
		}
	}
	check("clean", false)
	put(filepath.Join(repo, "other.txt"), "changed outside the specs")
	check("a change outside the spec directory", false)
	if err := os.MkdirAll(filepath.Join(specs, ".gantry"), 0o755); err != nil {
		t.Fatal(err)
	}
	put(filepath.Join(specs, ".gantry", "state.json"), "{}")
	check("a hidden state dir", false)
	if err := os.MkdirAll(filepath.Join(specs, "ignored"), 0o755); err != nil {
		t.Fatal(err)
	}
	put(filepath.Join(specs, "ignored", "x.hcl"), "{}")
	check("an ignored directory", false)
	put(filepath.Join(specs, "b.hcl"), "y = 2\n")
	check("an untracked spec", true)
	os.Remove(filepath.Join(specs, "b.hcl"))
	put(filepath.Join(specs, "a.hcl"), "x = 2\n")
	check("a modified spec", true)
	if _, err := Uncommitted(ctx, t.TempDir()); err == nil {
		t.Error("a plain directory: no error")
	}
}

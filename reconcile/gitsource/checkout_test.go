package gitsource

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckoutLocal(t *testing.T) {
	f := newFixture(t)
	sources := map[string]string{
		"path":     f.dir,
		"file URL": "file://" + filepath.ToSlash(f.dir),
	}
	refs := []struct {
		ref, want, content string
	}{
		{"", f.trunk, release["trunk"]}, // the remote's default branch
		{"trunk", f.trunk, release["trunk"]},
		{"feature", f.feature, release["feature"]},
		{"team/nested", f.nested, release["nested"]},
		{"v1", f.tagged, release["tagged"]},       // annotated tag: peeled to its commit
		{"v1-light", f.tagged, release["tagged"]}, // lightweight tag
		{f.tagged, f.tagged, release["tagged"]},
		{f.feature[:10], f.feature, release["feature"]}, // abbreviated hash
		{"refs/tags/v1", f.tagged, release["tagged"]},
		{"refs/heads/trunk", f.trunk, release["trunk"]},
		{"refs/heads/feature", f.feature, release["feature"]},
	}
	for name, src := range sources {
		for _, tc := range refs {
			sub := tc.ref
			if sub == "" {
				sub = "default"
			}
			t.Run(name+"/"+sub, func(t *testing.T) {
				dir := t.TempDir()
				got, err := Checkout(context.Background(), src, tc.ref, dir)
				if err != nil {
					t.Fatalf("Checkout(%q): %v", tc.ref, err)
				}
				if got != tc.want {
					t.Errorf("Checkout(%q) = %s, want %s", tc.ref, got, tc.want)
				}
				if c := read(t, filepath.Join(dir, "release.hcl")); c != tc.content {
					t.Errorf("release.hcl at %q = %q, want %q", tc.ref, c, tc.content)
				}
				// What Checkout reports is what Head sees in the working copy.
				head, err := Head(context.Background(), dir)
				if err != nil {
					t.Fatal(err)
				}
				if head != tc.want {
					t.Errorf("Head after Checkout(%q) = %s, want %s", tc.ref, head, tc.want)
				}
			})
		}
	}
}

func TestCheckoutUnknownRef(t *testing.T) {
	f := newFixture(t)
	for _, ref := range []string{"no-such-branch", "v9", "0123456789abcdef0123456789abcdef01234567"} {
		t.Run(ref, func(t *testing.T) {
			_, err := Checkout(context.Background(), f.dir, ref, t.TempDir())
			if err == nil {
				t.Fatalf("Checkout(%q) succeeded, want an error", ref)
			}
			msg := err.Error()
			for _, want := range []string{`"` + ref + `"`, "not a branch, tag or commit", f.dir} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not mention %q", msg, want)
				}
			}
		})
	}
}

func TestCheckoutMissingRepository(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	_, err := Checkout(context.Background(), missing, "", t.TempDir())
	if err == nil {
		t.Fatal("Checkout of a missing repository succeeded")
	}
	if !strings.Contains(err.Error(), missing) {
		t.Errorf("error %q does not name the repository", err)
	}
}

func TestCheckoutCanceled(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Checkout(ctx, "file://"+filepath.ToSlash(f.dir), "", t.TempDir()); err == nil {
		t.Fatal("Checkout with a canceled context succeeded")
	}
}

func TestHead(t *testing.T) {
	f := newFixture(t)
	sub := filepath.Join(f.dir, "models")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{f.dir, sub} {
		got, err := Head(context.Background(), dir)
		if err != nil {
			t.Fatalf("Head(%s): %v", dir, err)
		}
		if got != f.trunk {
			t.Errorf("Head(%s) = %s, want %s", dir, got, f.trunk)
		}
	}

	// A detached HEAD is reported too.
	runGit(t, f.dir, "checkout", "-q", "--detach", "v1")
	if got, err := Head(context.Background(), f.dir); err != nil || got != f.tagged {
		t.Errorf("Head on a detached v1 = %s, %v; want %s", got, err, f.tagged)
	}

	t.Run("no commits", func(t *testing.T) {
		dir := t.TempDir()
		runGit(t, dir, "init", "-q")
		_, err := Head(context.Background(), dir)
		if err == nil || !strings.Contains(err.Error(), "no commits yet") {
			t.Errorf("Head of an empty repository: %v, want \"no commits yet\"", err)
		}
	})
	t.Run("not a repository", func(t *testing.T) {
		if _, err := Head(context.Background(), t.TempDir()); err == nil {
			t.Error("Head outside a repository succeeded")
		}
	})
}

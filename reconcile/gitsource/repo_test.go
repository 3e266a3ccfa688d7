package gitsource

import (
	"context"
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestRepoPolls follows the default branch and a tag of a bare repository
// over smart HTTP as commits land, the way the daemon polls.
func TestRepoPolls(t *testing.T) {
	ctx := context.Background()
	f, srv := newBareFixture(t)
	u := srv.repoURL(t, url.UserPassword(httpUser, httpPassword), "/specs.git")
	var fetchErrors atomic.Int64
	r := &Repo{URL: u, Dir: filepath.Join(t.TempDir(), "cache"), OnError: func(error) { fetchErrors.Add(1) }}
	dir, rev, err := r.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rev != f.trunk || read(t, filepath.Join(dir, "release.hcl")) != release["trunk"] {
		t.Fatalf("first fetch: %s", rev)
	}
	if cfg := read(t, filepath.Join(dir, ".git", "config")); strings.Contains(cfg, httpPassword) || strings.Contains(cfg, url.QueryEscape(httpPassword)) {
		t.Errorf("the cache's .git/config holds the password:\n%s", cfg)
	}
	// Unchanged: same commit, no error.
	if _, rev2, err := r.Fetch(ctx); err != nil || rev2 != rev {
		t.Fatalf("refetch: %s %v", rev2, err)
	}

	// A new commit on trunk is pushed to the server.
	write(t, filepath.Join(f.dir, "release.hcl"), "version = 4\n")
	runGit(t, f.dir, "commit", "-q", "-am", "fourth")
	next := runGit(t, f.dir, "rev-parse", "HEAD")
	runGit(t, f.dir, "push", "-q", filepath.Join(srv.root, "specs.git"), "trunk")
	dir, rev, err = r.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rev != next || read(t, filepath.Join(dir, "release.hcl")) != "version = 4\n" {
		t.Fatalf("after push: rev %s (want %s)", rev, next)
	}

	// A tag stays put while the branch moves.
	tagged := &Repo{URL: u, Ref: "v1", Dir: filepath.Join(t.TempDir(), "cache")}
	if _, rev, err := tagged.Fetch(ctx); err != nil || rev != f.tagged {
		t.Fatalf("tag: %s %v", rev, err)
	}

	// A wrong password is counted and keeps the secret out of the error.
	bad := &Repo{URL: srv.repoURL(t, url.UserPassword(httpUser, "not-the-password-xyz"), "/specs.git"),
		Dir: filepath.Join(t.TempDir(), "cache"), OnError: func(error) { fetchErrors.Add(1) }}
	_, _, err = bad.Fetch(ctx)
	if err == nil || strings.Contains(err.Error(), "not-the-password-xyz") {
		t.Fatalf("bad password: %v", err)
	}
	if fetchErrors.Load() != 1 {
		t.Errorf("fetch errors counted: %d", fetchErrors.Load())
	}
}

func TestWatchDebounces(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int64
	done := make(chan error, 1)
	go func() { done <- Watch(ctx, dir, 500*time.Millisecond, nil, nil, func() { calls.Add(1) }) }()
	time.Sleep(200 * time.Millisecond) // let the watcher start
	// A burst of writes, as an editor's save makes, reconciles once.
	// On a loaded machine a 20 ms sleep can last longer than the
	// debounce; then the writes were no burst, and two calls are right.
	var gap time.Duration
	last := time.Now()
	for i := 0; i < 5; i++ {
		write(t, filepath.Join(dir, "releases.hcl"), strings.Repeat("x", i))
		if now := time.Now(); i > 0 && now.Sub(last) > gap {
			gap = now.Sub(last)
		}
		last = time.Now()
		time.Sleep(20 * time.Millisecond)
	}
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(800 * time.Millisecond)
	if got := calls.Load(); got != 1 && gap < 250*time.Millisecond {
		t.Fatalf("%d calls for one burst (longest gap between writes %v), want 1", got, gap)
	}
	base := calls.Load()
	// Hidden files (editor swap files, .git) do not count.
	write(t, filepath.Join(dir, ".releases.hcl.swp"), "x")
	time.Sleep(900 * time.Millisecond)
	if got := calls.Load(); got != base {
		t.Errorf("a hidden file triggered a reconcile")
	}
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

package gitsource

import (
	"context"
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"

	"github.com/gantry-dev/gantry/reconcile/gitsource/secrettest"
)

// requireNoSecret fails for every file under dir that holds the secret
// in any form, and for every Git config that names the user.
func requireNoSecret(t *testing.T, dir, user, pass string) {
	t.Helper()
	if files, _ := secrettest.RequireNoFile(t, dir, user, pass); files == 0 {
		t.Fatalf("no files under %s", dir)
	}
}

// requireNoUserinfo fails when text names the repository with any user
// information: errors and logs show scheme://host/path only.
func requireNoUserinfo(t *testing.T, what, text, user, pass string) {
	t.Helper()
	secrettest.RequireNotShown(t, what, text, user, pass, user)
}

// The write-back clone, the source cache and a checkout are made from a
// URL with the password in it; afterwards no file they wrote holds it
// (.git/config, packed-refs, refs, logs, FETCH_HEAD, index, objects), and
// neither does any error or log line.
func TestNoCredentialOnDisk(t *testing.T) {
	ctx := context.Background()
	t.Run("write-back", func(t *testing.T) {
		r := newWBRemote(t)
		var log logBuffer
		w := r.writer(t)
		w.Log = log.logger()
		// A race, so that the retry path logs too.
		w.BeforePush = func(attempt int) {
			if attempt == 1 {
				r.humanCommit(t, "by hand", func(s string) string { return s + "# by hand\n" })
			}
		}
		var calls atomic.Int32
		if _, err := w.Write(ctx, scaleTo(5, &calls), false); err != nil {
			t.Fatal(err)
		}
		w.BeforePush = nil
		w.Mode = ModeBranch // pushes a second ref
		if _, err := w.Write(ctx, scaleTo(6, &calls), false); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(log.String(), "lost a race") {
			t.Errorf("no race logged:\n%s", log.String())
		}
		requireNoSecret(t, w.Dir, httpUser, httpPassword)
		requireNoUserinfo(t, "the log", log.String(), httpUser, httpPassword)
		if got := originURL(t, w.Dir); got != strings.Replace(r.url, url.UserPassword(httpUser, httpPassword).String()+"@", "", 1) {
			t.Errorf("origin is %q", got)
		}
		// An error names the repository without user information.
		bad := r.writer(t)
		bad.URL = strings.Replace(r.url, "/specs.git", "/nope.git", 1)
		_, err := bad.Write(ctx, scaleTo(5, &calls), false)
		if err == nil {
			t.Fatal("a missing repository wrote back")
		}
		requireNoUserinfo(t, "the error", err.Error(), httpUser, httpPassword)
		if !strings.Contains(err.Error(), "/nope.git") {
			t.Errorf("the error does not name the repository: %v", err)
		}
	})
	t.Run("source cache", func(t *testing.T) {
		f, srv := newBareFixture(t)
		u := srv.repoURL(t, url.UserPassword(httpUser, httpPassword), "/specs.git")
		r := &Repo{URL: u, Dir: filepath.Join(t.TempDir(), "cache")}
		for range 2 { // clone, then fetch
			if _, rev, err := r.Fetch(ctx); err != nil || rev != f.trunk {
				t.Fatalf("fetch: %s %v", rev, err)
			}
		}
		requireNoSecret(t, r.Dir, httpUser, httpPassword)
		if got := r.RemoteURL(); got != srv.repoURL(t, nil, "/specs.git") {
			t.Errorf("RemoteURL() = %q", got)
		}
	})
	t.Run("checkout", func(t *testing.T) {
		_, srv := newBareFixture(t)
		dir := t.TempDir()
		if _, err := Checkout(ctx, srv.repoURL(t, url.UserPassword(httpUser, httpPassword), "/specs.git"), "", dir); err != nil {
			t.Fatal(err)
		}
		requireNoSecret(t, dir, httpUser, httpPassword)
	})
}

// A clone from before credentials were kept out of .git/config loses
// them on its next use.
func TestOldCloneScrubbed(t *testing.T) {
	ctx := context.Background()
	for _, kind := range []string{"write-back", "source cache"} {
		t.Run(kind, func(t *testing.T) {
			r := newWBRemote(t)
			dir := filepath.Join(t.TempDir(), "clone")
			runGit(t, "", "clone", "-q", r.url, dir) // the git CLI stores the URL as given
			if !strings.Contains(read(t, filepath.Join(dir, ".git", "config")), url.PathEscape(httpUser)) {
				t.Fatal("the planted clone has no credentials to scrub")
			}
			switch kind {
			case "write-back":
				w := r.writer(t)
				w.Dir = dir
				var calls atomic.Int32
				if _, err := w.Write(ctx, scaleTo(5, &calls), false); err != nil {
					t.Fatal(err)
				}
			case "source cache":
				if _, _, err := (&Repo{URL: r.url, Dir: dir}).Fetch(ctx); err != nil {
					t.Fatal(err)
				}
			}
			cfg := read(t, filepath.Join(dir, ".git", "config"))
			for _, form := range append(secrettest.Forms(httpUser, httpPassword), httpUser) {
				if strings.Contains(cfg, form) {
					t.Errorf(".git/config still holds %q:\n%s", form, cfg)
				}
			}
		})
	}
}

func originURL(t *testing.T, dir string) string {
	t.Helper()
	repo, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	rem, err := repo.Remote("origin")
	if errors.Is(err, git.ErrRemoteNotFound) {
		t.Fatal("no origin")
	} else if err != nil {
		t.Fatal(err)
	}
	var c *config.RemoteConfig = rem.Config()
	return c.URLs[0]
}

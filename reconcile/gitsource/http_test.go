package gitsource

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/transport"
)

const (
	httpUser = "gantry-ci"
	// httpPassword has characters that must be escaped in a URL's user
	// info, so the test also checks that go-git decodes them.
	httpPassword = "s3cret/p@ss:word%"
	wrongSecret  = "hunter2-WRONG-p@ss"
)

// gitServer serves the bare repositories under a directory over Git's smart
// HTTP protocol with git http-backend, behind basic auth.
type gitServer struct {
	*httptest.Server
	root   string       // the directory of bare repositories
	authed atomic.Int64 // requests that passed basic auth
}

// newGitServer starts git http-backend for the bare repositories under
// root on a loopback httptest server. /broken/ answers 500 without
// touching git.
func newGitServer(t *testing.T, root string) *gitServer {
	t.Helper()
	execPath := runGit(t, "", "--exec-path")
	backend := filepath.Join(execPath, "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		t.Skipf("git http-backend not found: %v", err)
	}
	cgiHandler := &cgi.Handler{
		Path: backend,
		Root: "/",
		Env: []string{
			"GIT_PROJECT_ROOT=" + root,
			"GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_NOSYSTEM=1",
			"GIT_CONFIG_GLOBAL=" + os.DevNull,
			"HOME=" + t.TempDir(),
		},
		Stderr: logWriter{t},
	}
	s := &gitServer{root: root}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || user != httpUser || subtle.ConstantTimeCompare([]byte(pass), []byte(httpPassword)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="gantry-test"`)
			http.Error(w, "bad credentials", http.StatusUnauthorized)
			return
		}
		s.authed.Add(1)
		if strings.HasPrefix(r.URL.Path, "/broken/") {
			http.Error(w, "server on fire", http.StatusInternalServerError)
			return
		}
		cgiHandler.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// repoURL is the URL of the repository path on s, with userinfo if not nil.
func (s *gitServer) repoURL(t *testing.T, userinfo *url.Userinfo, path string) string {
	t.Helper()
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	if h := u.Hostname(); h != "127.0.0.1" {
		t.Fatalf("test server listens on %s, want 127.0.0.1", h)
	}
	u.User = userinfo
	u.Path = path
	return u.String()
}

// newBareFixture serves a bare clone of a fresh fixture as /specs.git.
func newBareFixture(t *testing.T) (fixture, *gitServer) {
	t.Helper()
	f := newFixture(t)
	root := t.TempDir()
	runGit(t, root, "clone", "-q", "--bare", f.dir, "specs.git")
	// A bare clone copies local branches as branches; the default branch
	// stays trunk.
	if head := runGit(t, filepath.Join(root, "specs.git"), "symbolic-ref", "HEAD"); head != "refs/heads/trunk" {
		t.Fatalf("bare HEAD = %s", head)
	}
	return f, newGitServer(t, root)
}

func TestCheckoutHTTP(t *testing.T) {
	f, srv := newBareFixture(t)
	good := url.UserPassword(httpUser, httpPassword)

	t.Run("credentials in URL", func(t *testing.T) {
		for _, tc := range []struct{ ref, want, content string }{
			{"", f.trunk, release["trunk"]},
			{"feature", f.feature, release["feature"]},
			{"v1", f.tagged, release["tagged"]},
			{f.feature, f.feature, release["feature"]},
		} {
			before := srv.authed.Load()
			dir := t.TempDir()
			got, err := Checkout(context.Background(), srv.repoURL(t, good, "/specs.git"), tc.ref, dir)
			if err != nil {
				t.Fatalf("Checkout(%q): %v", tc.ref, err)
			}
			if got != tc.want {
				t.Errorf("Checkout(%q) = %s, want %s", tc.ref, got, tc.want)
			}
			if c := read(t, filepath.Join(dir, "release.hcl")); c != tc.content {
				t.Errorf("release.hcl at %q = %q, want %q", tc.ref, c, tc.content)
			}
			if srv.authed.Load() == before {
				t.Errorf("Checkout(%q) made no authenticated request", tc.ref)
			}
		}
	})

	// The same server through the real git CLI, so a failure above is
	// known to be Checkout's and not the fixture's.
	t.Run("git CLI agrees", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "clone")
		runGit(t, "", "clone", "-q", srv.repoURL(t, good, "/specs.git"), dir)
		if head := runGit(t, dir, "rev-parse", "HEAD"); head != f.trunk {
			t.Errorf("git clone HEAD = %s, want %s", head, f.trunk)
		}
	})

	// Every failure must name the repository without the secret, whether
	// the error comes from the auth check, a 404 or a 500, whose go-git
	// error quotes the request URL.
	for _, tc := range []struct {
		name     string
		userinfo *url.Userinfo
		path     string
		is       error
		secrets  []string
	}{
		{"no credentials", nil, "/specs.git", transport.ErrAuthenticationRequired, nil},
		{"wrong password", url.UserPassword(httpUser, wrongSecret), "/specs.git", transport.ErrAuthenticationRequired, []string{wrongSecret}},
		{"token as user", url.User(wrongSecret), "/specs.git", transport.ErrAuthenticationRequired, []string{wrongSecret}},
		{"missing repository", good, "/nope.git", transport.ErrRepositoryNotFound, []string{httpPassword}},
		{"server error", good, "/broken/specs.git", nil, []string{httpPassword}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := srv.repoURL(t, tc.userinfo, tc.path)
			_, err := Checkout(context.Background(), raw, "", t.TempDir())
			if err == nil {
				t.Fatal("Checkout succeeded")
			}
			msg := err.Error()
			t.Logf("error: %s", msg)
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %q", msg, tc.is)
			}
			if !strings.Contains(msg, srv.Listener.Addr().String()+tc.path) {
				t.Errorf("error %q does not name the repository", msg)
			}
			for _, s := range tc.secrets {
				for _, form := range []string{s, url.PathEscape(s), url.QueryEscape(s), url.UserPassword("x", s).String()[2:]} {
					if strings.Contains(msg, form) {
						t.Errorf("error %q leaks the secret as %q", msg, form)
					}
				}
			}
		})
	}
}

// logWriter sends git http-backend's standard error to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Logf("http-backend: %s", strings.TrimSpace(string(p)))
	return len(p), nil
}

package main

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/reconcile/gitsource/secrettest"
)

// A Git URL with a token in it reaches gantry adjust, gantry run --once
// and the daemon's write-back (gantry run --prometheus). Afterwards no
// file under the state directory holds the token, in any form, and
// nothing printed (stdout, stderr, the JSON log) names the user or the
// token: a repository is shown as scheme://host/path.
//
// The parts are real: git http-backend behind basic auth, and Debian's
// prometheus scraping an exporter (the adjust needs a decision to commit).
func TestGitTokenNeverWritten(t *testing.T) {
	if testing.Short() {
		t.Skip("runs prometheus and git http-backend")
	}
	t.Setenv("GANTRY_GIT_TOKEN", "")
	const user, token = "alice", "glpat-PLANTED/t0k3n@x:y%z"
	prom := startPrometheus(t, `vllm:num_requests_running{namespace="llm",release="tiny-chat"} 40`)
	waitPromValue(t, prom, `sum(vllm:num_requests_running{namespace="llm",release="tiny-chat"})`, 40)

	t.Run("adjust", func(t *testing.T) {
		remote := newSecretRemote(t, user, token)
		state := t.TempDir()
		code, out, errs := gantry(t, "adjust", "--repo", remote.url, "--prometheus", prom, "--state-dir", state)
		if code != 0 || !strings.Contains(out, "Committed") {
			t.Fatalf("adjust: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
		}
		if !strings.Contains(remote.git(t, "show", "main:releases.hcl"), "replicas = 5") {
			t.Error("the adjustment did not land")
		}
		requireNoToken(t, state, user, token)
		requireNotPrinted(t, out+errs, user, token)
	})

	t.Run("adjust fails", func(t *testing.T) {
		remote := newSecretRemote(t, user, token)
		state := t.TempDir()
		missing := strings.Replace(remote.url, "/specs.git", "/nope.git", 1)
		code, out, errs := gantry(t, "adjust", "--repo", missing, "--prometheus", prom, "--state-dir", state)
		if code != 1 || !strings.Contains(errs, remote.host+"/nope.git") {
			t.Fatalf("adjust a missing repository: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
		}
		requireNotPrinted(t, out+errs, user, token)
	})

	t.Run("run once", func(t *testing.T) {
		remote := newSecretRemote(t, user, token)
		state := t.TempDir()
		code, out, errs := gantry(t, "run", "--once", "--repo", remote.url, "--state-dir", state)
		if code != 0 || !strings.Contains(out, "Reconciled revision") {
			t.Fatalf("run --once: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errs)
		}
		requireNoToken(t, state, user, token)
		requireNotPrinted(t, out+errs, user, token)
	})

	t.Run("run with prometheus", func(t *testing.T) {
		remote := newSecretRemote(t, user, token)
		before := remote.git(t, "rev-parse", "main")
		state := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var out, errs syncBuffer
		done := make(chan int, 1)
		go func() {
			done <- run(ctx, []string{"run", "--repo", remote.url, "--prometheus", prom, "--state-dir", state,
				"--listen", "127.0.0.1:0", "--interval", "1h", "--leader-elect=false"}, &out, &errs)
		}()
		deadline := time.Now().Add(90 * time.Second)
		for !strings.Contains(errs.String(), "monitor: committed an adjustment") {
			select {
			case code := <-done:
				t.Fatalf("the daemon exited %d:\n%s", code, errs.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("no write-back 90s after start:\n%s", errs.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("the daemon exited %d", code)
		}
		if remote.git(t, "rev-parse", "main") == before {
			t.Error("the daemon's adjustment did not land")
		}
		requireNoToken(t, state, user, token)
		requireNotPrinted(t, out.String()+errs.String(), user, token)
	})
}

// requireNoToken fails for every file under dir (Git clones with their
// config, packed-refs, refs, logs and objects; the OCI layout; objects;
// work directories) that holds the token, and for a Git config that names
// the user; and when it checked no file or no Git config.
func requireNoToken(t *testing.T, dir, user, token string) {
	t.Helper()
	if files, configs := secrettest.RequireNoFile(t, dir, user, token); files == 0 || configs == 0 {
		t.Fatalf("%d files and %d Git configs under %s: nothing was checked", files, configs, dir)
	}
}

// requireNotPrinted fails when the output shows the token or any user
// information of the repository's URL.
func requireNotPrinted(t *testing.T, printed, user, token string) {
	t.Helper()
	secrettest.RequireNotShown(t, "the output", printed, user, token, user+"@", user+":", "REDACTED@", "***@")
}

// secretRemote is a bare repository of the quickstart (branch main)
// served by git http-backend; the handler accepts only user:token.
type secretRemote struct {
	url  string // with user and token
	host string // 127.0.0.1:port
	bare string
}

func newSecretRemote(t *testing.T, user, token string) secretRemote {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	root := t.TempDir()
	r := secretRemote{bare: filepath.Join(root, "specs.git")}
	work := filepath.Join(t.TempDir(), "work")
	if err := os.CopyFS(work, os.DirFS(quickstart)); err != nil {
		t.Fatal(err)
	}
	gitRun(t, "", "init", "-q", "--bare", "--initial-branch=main", r.bare)
	gitRun(t, r.bare, "config", "http.receivepack", "true")
	gitRun(t, r.bare, "config", "receive.denyNonFastForwards", "true")
	// A 1s cooldown instead of 5m: the release's creation counts as its
	// last change, and the test wants a decision now.
	rel := filepath.Join(work, "releases.hcl")
	b, err := os.ReadFile(rel)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rel, bytes.Replace(b, []byte(`cooldown = "5m"`), []byte(`cooldown = "1s"`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	gitRun(t, work, "init", "-q", "--initial-branch=main")
	gitRun(t, work, "add", ".")
	gitRun(t, work, "commit", "-q", "-m", "quickstart")
	gitRun(t, work, "push", "-q", r.bare, "main")
	// Past the cooldown of that commit (commit times have whole seconds).
	time.Sleep(2100 * time.Millisecond)
	backend := filepath.Join(gitRun(t, "", "--exec-path"), "git-http-backend")
	h := &cgi.Handler{Path: backend, Root: "/", Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=" + os.DevNull}, Stderr: io.Discard}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		u, p, ok := req.BasicAuth()
		if !ok || u != user || subtle.ConstantTimeCompare([]byte(p), []byte(token)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="specs"`)
			http.Error(w, "bad credentials", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	if u.Hostname() != "127.0.0.1" {
		t.Fatalf("test server on %s", u.Host)
	}
	r.host = u.Host
	u.User, u.Path = url.UserPassword(user, token), "/specs.git"
	r.url = u.String()
	return r
}

func (r secretRemote) git(t *testing.T, args ...string) string { return gitRun(t, r.bare, args...) }

func gitRun(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GIT_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull, "HOME="+t.TempDir(),
		"GIT_AUTHOR_NAME=A Person", "GIT_AUTHOR_EMAIL=person@example.invalid", "GIT_COMMITTER_NAME=A Person", "GIT_COMMITTER_EMAIL=person@example.invalid")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// startPrometheus runs Debian's prometheus (apt-get install prometheus)
// on a free loopback port, scraping an exporter that serves series every
// 200ms, and returns its URL. It is killed by its PID at cleanup.
func startPrometheus(t *testing.T, series ...string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is not installed (apt-get install -y prometheus)")
	}
	exp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintln(w, strings.Join(series, "\n"))
	}))
	t.Cleanup(exp.Close)
	dir := t.TempDir()
	cfg := fmt.Sprintf("global: {scrape_interval: 200ms, scrape_timeout: 200ms}\nscrape_configs:\n  - job_name: test\n    static_configs: [{targets: [%q]}]\n", strings.TrimPrefix(exp.URL, "http://"))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--storage.tsdb.retention.time=1h")
	var log syncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	base := "http://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 20s:\n%s", log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitPromValue polls an instant query until it returns want.
func waitPromValue(t *testing.T, base, query string, want float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(query))
		if err == nil {
			var body struct {
				Data struct {
					Result []struct {
						Value [2]any `json:"value"`
					} `json:"result"`
				} `json:"data"`
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err == nil && len(body.Data.Result) == 1 && body.Data.Result[0].Value[1] == fmt.Sprint(want) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not %g after 30s", query, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer that a running command writes while the
// test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The write-back clone is named by the repository without credentials:
// no name under the state directory derives from the token, and a new
// token keeps the clone.
func TestWriteBackCloneNamedWithoutToken(t *testing.T) {
	state := t.TempDir()
	want := writeBack("https://git.example.com/specs.git", "main", state).Dir
	for _, raw := range []string{"https://alice:glpat-one@git.example.com/specs.git", "https://alice:glpat-two@git.example.com/specs.git", "https://glpat-three@git.example.com/specs.git"} {
		if got := writeBack(raw, "main", state).Dir; got != want {
			t.Errorf("writeBack(%q).Dir = %s, want %s", raw, got, want)
		}
	}
	if writeBack("https://git.example.com/other.git", "main", state).Dir == want {
		t.Error("two repositories share a clone")
	}
}

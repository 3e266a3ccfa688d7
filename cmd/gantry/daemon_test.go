package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestDaemon runs the real binary: it serves the status endpoints,
// reconciles when a spec file is saved, logs JSON without secrets, and
// exits cleanly on SIGTERM.
func TestDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "gantry")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	repo := filepath.Join(tmp, "repo")
	if err := os.CopyFS(repo, os.DirFS(quickstart)); err != nil {
		t.Fatal(err)
	}
	const secret = "hook-secret-4f9a2c"
	cmd := exec.Command(bin, "run", "--repo", repo, "--state-dir", filepath.Join(tmp, "state"), "--listen", "127.0.0.1:0", "--interval", "1h", "--metrics-per-release")
	cmd.Env = append(os.Environ(), "GANTRY_WEBHOOK_SECRET="+secret)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	// Read the JSON log as it comes; find the address and the reconciles.
	lines := make(chan map[string]any, 100)
	var logMu sync.Mutex
	var logBuf strings.Builder
	logText := func() string {
		logMu.Lock()
		defer logMu.Unlock()
		return logBuf.String()
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			logBuf.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				lines <- m
			}
		}
		close(lines)
	}()
	waitFor := func(msg string) map[string]any {
		t.Helper()
		timeout := time.After(60 * time.Second)
		for {
			select {
			case m, ok := <-lines:
				if !ok {
					t.Fatalf("daemon exited before %q:\n%s", msg, logText())
				}
				if m["msg"] == msg {
					return m
				}
			case <-timeout:
				t.Fatalf("no %q in the log:\n%s", msg, logText())
			}
		}
	}
	addr := waitFor("gantry running")["listen"].(string)
	waitFor("reconciled")

	resp, err := http.Get("http://" + addr + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", err, resp)
	}
	resp.Body.Close()
	resp, err = http.Get("http://" + addr + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"state": "synced"`) {
		t.Errorf("status: %s", body)
	}
	resp, err = http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`gantry_releases{state="synced"} 2`, `gantry_release_state{release="tiny-chat",state="synced"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics with --metrics-per-release lacks %s", want)
		}
	}

	// Saving a spec reconciles without waiting for the interval.
	p := filepath.Join(repo, "releases.hcl")
	b, _ := os.ReadFile(p)
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), "replicas = 3", "replicas = 4", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	m := waitFor("reconciled")
	if m["executed"].(float64) < 1 {
		t.Errorf("the save reconciled nothing: %v", m)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no exit 15 s after SIGTERM")
	}
	if strings.Contains(logText(), secret) {
		t.Errorf("the webhook secret is in the log")
	}
}

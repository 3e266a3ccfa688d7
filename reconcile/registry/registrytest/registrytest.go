// Package registrytest starts Debian's docker-registry (distribution 2.8)
// on 127.0.0.1 for integration tests, with filesystem storage in a
// temporary directory, and stops it by the PID it started.
package registrytest

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Binary is the registry program looked up on PATH.
const Binary = "docker-registry"

// Start runs a registry and returns its host:port and a stop function
// (always non-nil, safe to call once). It fails when the binary is missing
// or the registry does not answer /v2/ within 15 s.
func Start() (host string, stop func(), err error) {
	stop = func() {}
	bin, err := exec.LookPath(Binary)
	if err != nil {
		return "", stop, fmt.Errorf("%s is not installed (apt-get install -y docker-registry): %w", Binary, err)
	}
	dir, err := os.MkdirTemp("", "gantry-registry-")
	if err != nil {
		return "", stop, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", stop, err
	}
	host = l.Addr().String()
	l.Close()
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog: {disabled: true}
storage:
  filesystem: {rootdirectory: %s}
  delete: {enabled: true}
http:
  addr: %s
  secret: gantry-test
`, filepath.Join(dir, "data"), host)
	if err := os.WriteFile(filepath.Join(dir, "config.yml"), []byte(cfg), 0o600); err != nil {
		return "", stop, err
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return "", stop, err
	}
	cmd := exec.Command(bin, "serve", filepath.Join(dir, "config.yml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return "", stop, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop = func() {
		cmd.Process.Kill() // by the PID we started
		<-exited
		logf.Close()
		os.RemoveAll(dir)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return host, stop, nil
			}
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(logf.Name())
			os.RemoveAll(dir)
			return "", func() {}, fmt.Errorf("%s exited: %s", Binary, b)
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return "", func() {}, fmt.Errorf("%s did not answer on %s within 15s", Binary, host)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package monitor

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantry-dev/gantry/reconcile/monitor/promtest"
)

// The tests run Debian's prometheus (apt-get install prometheus) against
// an exporter whose values they set. TestMain starts one server for the
// package on a free port with a 200ms scrape interval and kills it by PID
// at the end. Without the binary the package fails, unless -short.

var (
	promURL string // "" when prometheus is missing under -short
	// exporterAddr is the exporter's host:port, for a test's own server.
	exporterAddr string
	exporter     = &gauges{values: map[string]float64{}}
)

// gauges is a test exporter: series name{labels} -> value, served in the
// text exposition format.
type gauges struct {
	mu     sync.Mutex
	values map[string]float64
}

// Set sets one series, such as `load{release="chat"}`.
func (g *gauges) Set(series string, v float64) {
	g.mu.Lock()
	g.values[series] = v
	g.mu.Unlock()
}

func (g *gauges) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	g.mu.Lock()
	defer g.mu.Unlock()
	keys := make([]string, 0, len(g.values))
	for k := range g.values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	for _, k := range keys {
		fmt.Fprintf(w, "%s %g\n", k, g.values[k])
	}
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	_, err := exec.LookPath("prometheus")
	if err != nil {
		if testing.Short() {
			fmt.Fprintln(os.Stderr, "prometheus not installed: skipping the Prometheus tests (-short)")
			return m.Run()
		}
		fmt.Fprintln(os.Stderr, "FAIL: prometheus is not installed (apt-get install -y prometheus)")
		return 1
	}
	exp := httptest.NewServer(exporter)
	defer exp.Close()
	dir, err := os.MkdirTemp("", "gantry-prom-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	exporterAddr = strings.TrimPrefix(exp.URL, "http://")
	srv, err := promtest.Start(dir, exporterAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer srv.Stop()
	promURL = srv.URL()
	return m.Run()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// requireProm returns a client of the test server.
func requireProm(t *testing.T) *Prom {
	t.Helper()
	if promURL == "" {
		t.Skip("prometheus not installed (-short)")
	}
	p, err := NewProm(promURL)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitValue polls q until it returns want (the first sample takes about
// 5s to be queryable) and returns when it did.
func waitValue(t *testing.T, p *Prom, q string, want float64) time.Time {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v, err := p.Query(context.Background(), q, time.Now())
		if err == nil && v == want {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v (%v) after 20s, want %g", q, v, err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

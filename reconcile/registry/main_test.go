package registry

import (
	"flag"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/gantry-dev/gantry/reconcile/registry/registrytest"
)

// realRegistry is Debian's docker-registry (distribution 2.8), started once
// by TestMain on a free 127.0.0.1 port with filesystem storage.
var realRegistry struct {
	host string // 127.0.0.1:PORT
	err  error  // why it is not running
}

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Getenv(rssChildEnv) != "" {
		os.Exit(rssChild())
	}
	stop, err := startRegistry()
	realRegistry.err = err
	code := m.Run()
	stop()
	os.Exit(code)
}

// needRegistry skips (with -short) or fails a test that needs the real
// registry when it is not running, so that CI without it goes red.
func needRegistry(t *testing.T) string {
	t.Helper()
	if realRegistry.err != nil {
		if testing.Short() {
			t.Skipf("integration test skipped in -short mode: %v", realRegistry.err)
		}
		t.Fatalf("the integration tests need a real registry: %v (install it with: apt-get install -y docker-registry; or run go test -short)", realRegistry.err)
	}
	return realRegistry.host
}

// startRegistry runs `docker-registry serve config.yml` and waits for /v2/.
// The returned func kills it by its PID and removes its storage.
func startRegistry() (stop func(), err error) {
	host, stop, err := registrytest.Start()
	realRegistry.host = host
	return stop, err
}

// proxy is a counting reverse proxy in front of the real registry. It
// can fail requests (to play a registry that is down) and demand basic
// auth. The registry builds upload URLs from the Host header, which the
// proxy keeps, so uploads come back through the proxy and are counted.
type proxy struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []string // "METHOD /path?query"
	// fail, if set, is asked for each request with its 1-based number; a
	// true answer sends 503 instead of forwarding.
	fail     func(n int, r *http.Request) bool
	failed   int
	user, pw string // required basic auth, if user != ""
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	u, _ := url.Parse("http://" + target)
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &proxy{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.reqs = append(p.reqs, r.Method+" "+r.URL.RequestURI())
		n, fail := len(p.reqs), p.fail
		p.mu.Unlock()
		if fail != nil && fail(n, r) {
			p.mu.Lock()
			p.failed++
			p.mu.Unlock()
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		if p.user != "" {
			if u, pw, ok := r.BasicAuth(); !ok || u != p.user || pw != p.pw {
				w.Header().Set("WWW-Authenticate", `Basic realm="gantry-test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *proxy) host() string { return strings.TrimPrefix(p.URL, "http://") }

// requests returns the requests so far and forgets them.
func (p *proxy) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.reqs
	p.reqs = nil
	return out
}

// uploads are the requests that send blob bytes or start an upload.
func uploads(reqs []string) []string {
	var out []string
	for _, r := range reqs {
		if strings.Contains(r, "/blobs/uploads/") && (strings.HasPrefix(r, "POST ") || strings.HasPrefix(r, "PATCH ") || strings.HasPrefix(r, "PUT ")) {
			out = append(out, r)
		}
	}
	return out
}

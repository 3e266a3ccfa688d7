package kubetest

import (
	"maps"
	"net/http"
	"strings"
	"sync"

	"k8s.io/client-go/rest"
)

// Counter counts the API requests of the clients made from one
// rest.Config (CountRequests), by the verb the API server would
// authorize them as: get, list, watch, create, update, patch, delete,
// deletecollection; requests outside the resource API (discovery,
// /version, /healthz) count as "get". It is safe for concurrent use.
type Counter struct {
	mu    sync.Mutex
	total int64
	by    map[string]int64 // "verb resource[/subresource]"
}

// CountRequests returns a copy of rc whose every request c counts, and c.
// rc is not changed; transports rc wraps already stay.
func CountRequests(rc *rest.Config) (*rest.Config, *Counter) {
	c := &Counter{by: map[string]int64{}}
	cfg := rest.CopyConfig(rc)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(r *http.Request) (*http.Response, error) {
			c.add(Classify(r))
			return rt.RoundTrip(r)
		})
	})
	return cfg, c
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func (c *Counter) add(verb, resource string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total++
	c.by[verb+" "+resource]++
}

// Total is the number of requests counted.
func (c *Counter) Total() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// ByVerb is the number of requests counted per verb.
func (c *Counter) ByVerb() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int64{}
	for k, n := range c.by {
		verb, _, _ := strings.Cut(k, " ")
		out[verb] += n
	}
	return out
}

// Verb is the number of requests counted with one verb.
func (c *Counter) Verb(verb string) int64 { return c.ByVerb()[verb] }

// Requests is the number of requests counted per "verb resource", such
// as "list nodes", "patch deployments" or "update deployments/status";
// requests outside the resource API have their path as resource.
func (c *Counter) Requests() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.by)
}

// Reset forgets what was counted.
func (c *Counter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total = 0
	clear(c.by)
}

// Classify is the verb and resource of an API request, as the API
// server's authorization sees them: the resource of /api/v1/... and
// /apis/GROUP/VERSION/..., with "/subresource" when there is one; a GET of
// a collection is list (watch with watch=true), a DELETE of one
// deletecollection. Other paths are ("get" or the method, path).
func Classify(r *http.Request) (verb, resource string) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	var p []string
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		p = parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		p = parts[3:]
	default:
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			return "get", r.URL.Path
		}
		return strings.ToLower(r.Method), r.URL.Path
	}
	// namespaces/NS/RESOURCE... is RESOURCE in NS; namespaces/NS alone is
	// the Namespace NS.
	if len(p) >= 3 && p[0] == "namespaces" {
		p = p[2:]
	}
	resource, named := p[0], len(p) >= 2
	if len(p) >= 3 {
		resource += "/" + p[2]
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		switch {
		case r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1":
			return "watch", resource
		case named:
			return "get", resource
		}
		return "list", resource
	case http.MethodPost:
		return "create", resource
	case http.MethodPut:
		return "update", resource
	case http.MethodPatch:
		return "patch", resource
	case http.MethodDelete:
		if !named {
			return "deletecollection", resource
		}
		return "delete", resource
	}
	return strings.ToLower(r.Method), resource
}

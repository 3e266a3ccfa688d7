package server

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gantry-dev/gantry/reconcile"
)

// StatusSource gives the latest status; *reconcile.Engine is one.
type StatusSource interface {
	Status() reconcile.Status
}

// Server serves the daemon's endpoints.
type Server struct {
	Status  StatusSource
	Metrics *Metrics
	// WebhookSecret authenticates /hooks/git; empty refuses every hook.
	WebhookSecret []byte
	// Trigger asks the loop to fetch and reconcile now.
	Trigger func()

	ready atomic.Bool
}

// SetReady marks the daemon ready (first reconcile done, or leadership
// settled) for /readyz.
func (s *Server) SetReady(v bool) { s.ready.Store(v) }

// Handler routes every endpoint.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /api/status", s.api)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/hooks/git", s.webhook)
	if s.Metrics != nil {
		if s.Status != nil {
			s.Metrics.WatchRollouts(s.Status)
		}
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.Metrics.Registry, promhttp.HandlerOpts{}))
	}
	return mux
}

// apiStatus is the body of /api/status: the engine's Status, with the
// releases the query selects, and the counts a client pages with.
type apiStatus struct {
	reconcile.Status
	// Total counts the releases that match the filter, before paging.
	Total int `json:"total"`
	// Counts has every release by state, whatever the filter.
	Counts map[string]int `json:"counts"`
	Offset int            `json:"offset"`
	Limit  int            `json:"limit,omitempty"`
	// NextOffset is the offset of the next page while one remains.
	NextOffset int `json:"next_offset,omitempty"`
}

// api serves /api/status. Without a query it is the whole status, as it
// always was: existing clients read every release from it. The query
// narrows it: release=NAME (404 if there is no such release), state=
// (comma-separated or repeated; "problem" for failed, blocked,
// unplaceable, pending and degraded), q= (a substring of the name),
// rollout= ("any": the releases with a rollout; "paused": those whose
// last analysis paused it), cluster= (one cluster of a fleet; 404 naming
// the clusters there are if there is no such cluster), and
// limit= with offset= to page in the status's order. A narrowed response
// holds only the nodes that host its releases and the plan of its
// releases. With cluster= it is that cluster's part: clusters holds the
// one, the releases are those that run there, each with that cluster's
// cell only, state= matches a release's state there, the nodes are the
// cluster's (all of them when nothing else narrows), and the plan is its
// releases' part there with the cluster's actions. The counts stay those
// of every release.
func (s *Server) api(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f, err := parseFilter(q)
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	offset, err := queryInt(q, "offset")
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	limit, err := queryInt(q, "limit")
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	st := s.Status.Status()
	var cluster reconcile.ClusterStatus
	if f.Cluster != "" {
		if cluster, err = findCluster(st.Clusters, f.Cluster); err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(struct {
				Error    string   `json:"error"`
				Clusters []string `json:"clusters"`
			}{err.Error(), clusterNames(st.Clusters)})
			return
		}
	}
	out := apiStatus{Status: st, Counts: countStates(st.Releases), Offset: offset, Limit: limit}
	sel := f.selectReleases(st.Releases)
	out.Total = len(sel)
	if f.Release != "" && out.Total == 0 && !slices.ContainsFunc(st.Releases, func(r reconcile.ReleaseStatus) bool { return r.Name == f.Release }) {
		apiError(w, http.StatusNotFound, fmt.Sprintf("release %q not found", f.Release))
		return
	}
	sel = sel[min(offset, len(sel)):]
	if limit > 0 && limit < len(sel) {
		sel = sel[:limit]
		out.NextOffset = offset + limit
	}
	if f.Active() || offset > 0 || limit > 0 {
		names := nameSet(sel)
		out.Releases = sel
		if f.ofReleases() || offset > 0 || limit > 0 {
			out.Nodes = nodesHosting(st.Nodes, names)
			out.Plan = planFor(st.Plan, names)
		}
		if f.Cluster != "" {
			out.Clusters = []reconcile.ClusterStatus{cluster}
			out.Releases = cellsIn(out.Releases, f.Cluster)
			out.Nodes = nodesIn(out.Nodes, f.Cluster)
			out.Plan = planInCluster(out.Plan, f.Cluster, names)
		}
		if out.Releases == nil {
			out.Releases = []reconcile.ReleaseStatus{}
		}
		if out.Nodes == nil {
			out.Nodes = []reconcile.NodeUse{}
		}
	}
	out.Releases = finiteReleases(out.Releases)
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		slog.Error("write /api/status", "err", err)
	}
}

// queryInt reads a count from the query: absent is 0.
func queryInt(q url.Values, key string) (int, error) {
	v := q.Get(key)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s=%q: want a count, 0 or more", key, v)
	}
	return n, nil
}

func apiError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

package server

import (
	"bytes"
	"embed"
	"encoding/json"
	"html/template"
	"log/slog"
	"net/http"
	"sort"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gantry-dev/gantry/planner"
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
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.Metrics.Registry, promhttp.HandlerOpts{}))
	}
	return mux
}

func (s *Server) api(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s.Status.Status()); err != nil {
		slog.Error("write /api/status", "err", err)
	}
}

//go:embed status.html.tmpl
var templates embed.FS

var pageTmpl = template.Must(template.New("status.html.tmpl").Funcs(template.FuncMap{
	"short": func(s string) string {
		if len(s) > 12 {
			return s[:12]
		}
		return s
	},
	"dur": func(d time.Duration) string { return d.Round(time.Millisecond).String() },
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return time.Since(t).Round(time.Second).String() + " ago"
	},
}).ParseFS(templates, "status.html.tmpl"))

// grid is the node × release table of GPU use.
type grid struct {
	Releases []string
	Rows     []gridRow
}

type gridRow struct {
	Node, Pool string
	GPUs, Used int // capacity; used by others
	Cells      []int
	Free       int
}

func makeGrid(st reconcile.Status) grid {
	var g grid
	seen := map[string]bool{}
	for _, r := range st.Releases {
		if !seen[r.Name] {
			seen[r.Name] = true
			g.Releases = append(g.Releases, r.Name)
		}
	}
	sort.Strings(g.Releases)
	for _, n := range st.Nodes {
		row := gridRow{Node: n.Name, Pool: n.Pool, GPUs: n.GPUs, Used: n.Used, Free: n.GPUs - n.Used}
		for _, r := range g.Releases {
			row.Cells = append(row.Cells, n.Releases[r])
			row.Free -= n.Releases[r]
		}
		g.Rows = append(g.Rows, row)
	}
	return g
}

func (s *Server) page(w http.ResponseWriter, _ *http.Request) {
	st := s.Status.Status()
	var plan bytes.Buffer
	if st.Plan != nil {
		_ = planner.WriteText(&plan, st.Plan, planner.TextOptions{})
	}
	data := struct {
		S    reconcile.Status
		Grid grid
		Plan string
	}{st, makeGrid(st), plan.String()}
	var out bytes.Buffer
	if err := pageTmpl.Execute(&out, data); err != nil {
		slog.Error("render status page", "err", err)
		http.Error(w, "cannot render the status page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(out.Bytes())
}

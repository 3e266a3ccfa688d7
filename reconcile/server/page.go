package server

import (
	"bytes"
	"cmp"
	"embed"
	"fmt"
	"html/template"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile"
)

// What one status page holds, whatever the fleet: at 10,000 releases on
// 5,000 nodes the page stays a few hundred kilobytes.
const (
	defaultPerPage = 100 // releases per page
	maxPerPage     = 500
	nodesPerPage   = 100 // rows of the node grid
	// gridColumns is the most releases the node grid gives a column
	// each; past it a node lists its releases in one cell.
	gridColumns  = 20
	maxPlanLines = 1000
)

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
	"chart":  chartSVG,
	"steps":  stepBar,
	"paused": rolloutPaused,
	"avail": func(n int) string {
		if n < 0 {
			return "?"
		}
		return strconv.Itoa(n)
	},
	"val": func(v *float64) string {
		if v == nil {
			return "no data"
		}
		return fmtValue(*v)
	},
	"ratioBound": func(bound string) bool {
		return slices.ContainsFunc(parseBounds(bound), func(b chartBound) bool { return b.Ratio })
	},
}).ParseFS(templates, "status.html.tmpl"))

type pageData struct {
	S        reconcile.Status
	Filter   filter
	States   []string // for the filter's menu
	Per      int      // set when not the default, for the form
	Counts   []stateLink
	Problems stateLink
	AllURL   string
	Total    int // releases
	Matched  int // releases the filter keeps
	Rows     []*reconcile.ReleaseStatus
	Pager    pager
	Pools    []poolRow
	Grid     grid
	PlanNote string
	Plan     string
	// Rollouts and Paused count the releases with a rollout, and those
	// whose last analysis paused it, in the whole status; the URLs list
	// them.
	Rollouts, Paused       int
	RolloutsURL, PausedURL string
	// Clusters is the cluster × release grid of a fleet's page; nil
	// without clusters.
	Clusters *clusterGrid
}

// stateLink is one state in the summary: how many releases are in it, and
// the page that shows them.
type stateLink struct {
	State  string
	N      int
	URL    string
	Active bool
}

// pager is a position in a long list: rows First to Last (from 1) of Of,
// on page Page of Pages, with links to the pages around it ("" where
// there is none).
type pager struct {
	Page, Pages, First, Last, Of        int
	FirstURL, PrevURL, NextURL, LastURL string
}

func makePager(of, page, per int, link func(page int) string) pager {
	p := pager{Of: of, Pages: max(1, (of+per-1)/per)}
	p.Page = min(max(page, 1), p.Pages)
	p.First = min((p.Page-1)*per+1, of)
	p.Last = min(p.Page*per, of)
	if p.Page > 1 {
		p.FirstURL, p.PrevURL = link(1), link(p.Page-1)
	}
	if p.Page < p.Pages {
		p.NextURL, p.LastURL = link(p.Page+1), link(p.Pages)
	}
	return p
}

// grid is the node × release table of GPU use, for the nodes in view: a
// column per release while there are at most gridColumns of them, else
// one cell per node that lists its releases.
type grid struct {
	Releases []string // the columns; nil when Sparse
	Sparse   bool
	Fleet    bool // the nodes are a fleet's: a column says whose
	Rest     bool // a column for the GPUs of releases without a column
	Rows     []gridRow
	Scope    string // which nodes these are
	Pager    pager
}

type gridRow struct {
	// Node is the node's identity ("CLUSTER/NODE" in a fleet), Name its
	// name in its cluster; First marks a fleet's first row of a cluster.
	Node, Name, Cluster string
	First               bool
	Pool                string
	GPUs, Used          int // capacity; used by others
	Cells               []int
	Rest                int // GPUs of Gantry releases without a column
	Hosted              []hosted
	Free                int
	Unusable            string // why placement may not use the node; "" if it may
}

type hosted struct {
	Release string
	GPUs    int
	InView  bool // on this page
}

// poolRow sums one pool's nodes: bounded by the number of pools, it is
// the fleet-wide view the paged grid cannot give.
type poolRow struct {
	Pool                             string
	Nodes, GPUs, Gantry, Other, Free int
}

func makePools(nodes []reconcile.NodeUse) []poolRow {
	byPool := map[string]*poolRow{}
	for _, n := range nodes {
		p := byPool[n.Pool]
		if p == nil {
			p = &poolRow{Pool: n.Pool}
			byPool[n.Pool] = p
		}
		g := 0
		for _, c := range n.Releases {
			g += c
		}
		p.Nodes++
		p.GPUs += n.GPUs
		p.Gantry += g
		p.Other += n.Used
		if n.Unusable == "" { // an unusable node's GPUs are no one's to take
			p.Free += n.GPUs - n.Used - g
		}
	}
	out := make([]poolRow, 0, len(byPool))
	for _, k := range slices.Sorted(maps.Keys(byPool)) {
		out = append(out, *byPool[k])
	}
	return out
}

func makeGrid(nodes []reconcile.NodeUse, columns []string, inView map[string]bool) grid {
	g := grid{Sparse: len(columns) > gridColumns}
	col := map[string]bool{}
	if !g.Sparse {
		g.Releases = columns
		for _, r := range columns {
			col[r] = true
		}
	}
	prev := ""
	for _, n := range nodes {
		g.Fleet = g.Fleet || n.Cluster != ""
		row := gridRow{Node: n.Name, Name: nodeName(n), Cluster: n.Cluster, First: n.Cluster != "" && n.Cluster != prev,
			Pool: n.Pool, GPUs: n.GPUs, Used: n.Used, Free: n.GPUs - n.Used, Unusable: n.Unusable}
		for _, r := range g.Releases {
			row.Cells = append(row.Cells, n.Releases[r])
		}
		for _, r := range slices.Sorted(maps.Keys(n.Releases)) {
			c := n.Releases[r]
			row.Free -= c
			if g.Sparse {
				row.Hosted = append(row.Hosted, hosted{r, c, inView[r]})
			} else if !col[r] {
				row.Rest += c
			}
		}
		if row.Unusable != "" {
			row.Free = 0
		}
		g.Rest = g.Rest || row.Rest > 0
		g.Rows = append(g.Rows, row)
		prev = n.Cluster
	}
	return g
}

// pageQuery is the status page's URL query: the filter, the page of
// releases, the page of nodes, and the page size. Links change one of
// them and keep the others, so the page's self-refresh and its links
// stay on what the operator asked for.
type pageQuery struct {
	filter
	Page, NodePage, Per int
}

func parsePageQuery(v url.Values) (pageQuery, error) {
	f, err := parseFilter(v)
	if err != nil {
		return pageQuery{}, err
	}
	count := func(key string, def int) int {
		n, err := strconv.Atoi(v.Get(key))
		if err != nil || n < 1 {
			return def
		}
		return n
	}
	return pageQuery{filter: f, Page: count("page", 1), NodePage: count("npage", 1),
		Per: min(count("per", defaultPerPage), maxPerPage)}, nil
}

// url is the page's address with the given changes: keys release,
// state, q, rollout, cluster, page, npage; an empty value drops the key.
func (q pageQuery) url(changes ...string) string {
	v := url.Values{}
	set := func(k, val string) {
		if val == "" {
			v.Del(k)
		} else {
			v.Set(k, val)
		}
	}
	set("release", q.Release)
	set("state", q.StateParam)
	set("q", q.QParam)
	set("rollout", q.Rollout)
	set("cluster", q.Cluster)
	if q.Per != defaultPerPage {
		set("per", strconv.Itoa(q.Per))
	}
	if q.Page > 1 {
		set("page", strconv.Itoa(q.Page))
	}
	if q.NodePage > 1 {
		set("npage", strconv.Itoa(q.NodePage))
	}
	for i := 0; i+1 < len(changes); i += 2 {
		set(changes[i], changes[i+1])
	}
	for _, k := range []string{"page", "npage"} {
		if v.Get(k) == "1" {
			v.Del(k)
		}
	}
	if len(v) == 0 {
		return "/"
	}
	return "/?" + v.Encode()
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	q, err := parsePageQuery(r.URL.Query())
	if err != nil {
		http.Error(w, "status page: "+err.Error(), http.StatusBadRequest)
		return
	}
	st := s.Status.Status()
	if q.Cluster != "" {
		if _, err := findCluster(st.Clusters, q.Cluster); err != nil {
			http.Error(w, "status page: "+err.Error(), http.StatusNotFound)
			return
		}
	}
	data := pageData{S: st, Filter: q.filter, States: states, Total: len(st.Releases),
		AllURL: q.url("state", "", "page", "", "npage", "")}
	if q.Per != defaultPerPage {
		data.Per = q.Per
	}

	for i := range st.Releases {
		if ro := st.Releases[i].Rollout; ro != nil {
			data.Rollouts++
			if rolloutPaused(ro) {
				data.Paused++
			}
		}
	}
	data.RolloutsURL = q.url("rollout", "any", "page", "", "npage", "")
	data.PausedURL = q.url("rollout", "paused", "page", "", "npage", "")

	counts := countStates(st.Releases)
	problems := 0
	for _, state := range states {
		data.Counts = append(data.Counts, stateLink{State: state, N: counts[state],
			URL: q.url("state", state, "page", "", "npage", ""), Active: q.StateParam == state})
	}
	for _, state := range problemStates {
		problems += counts[state]
	}
	data.Problems = stateLink{State: "problem", N: problems,
		URL: q.url("state", "problem", "page", "", "npage", ""), Active: q.StateParam == "problem"}

	// Worst first, then by name: the broken releases open the first page.
	sel := q.selectReleases(st.Releases)
	data.Matched = len(sel)
	order := make([]*reconcile.ReleaseStatus, len(sel))
	for i := range sel {
		order[i] = &sel[i]
	}
	slices.SortStableFunc(order, func(a, b *reconcile.ReleaseStatus) int {
		return cmp.Or(cmp.Compare(stateRank(a.State), stateRank(b.State)), strings.Compare(a.Name, b.Name))
	})
	data.Pager = makePager(len(order), q.Page, q.Per, func(p int) string { return q.url("page", strconv.Itoa(p), "npage", "") })
	if len(order) > 0 {
		data.Rows = order[data.Pager.First-1 : data.Pager.Last]
	}
	q.Page = data.Pager.Page

	// Every release on one page: the grid and the plan are whole, as
	// they were before paging. Otherwise they follow the page.
	whole := !q.Active() && data.Pager.Pages == 1
	inView := map[string]bool{}
	for _, r := range data.Rows {
		inView[r.Name] = true
	}
	nodes, scope := st.Nodes, "All nodes"
	if !whole {
		nodes = nodesHosting(st.Nodes, inView)
		scope = "The nodes that host the releases on this page"
	}
	if q.Cluster != "" {
		nodes = nodesIn(nodes, q.Cluster)
		scope = "The nodes of cluster " + q.Cluster + " that host the releases on this page"
	}
	np := makePager(len(nodes), q.NodePage, nodesPerPage, func(p int) string { return q.url("npage", strconv.Itoa(p)) })
	var columns []string
	if whole {
		columns = slices.Sorted(maps.Keys(nameSet(st.Releases)))
	} else {
		columns = slices.Sorted(maps.Keys(inView))
	}
	if len(nodes) > 0 {
		nodes = nodes[np.First-1 : np.Last]
	}
	data.Grid = makeGrid(nodes, columns, inView)
	data.Grid.Scope, data.Grid.Pager = scope, np
	data.Pools = makePools(st.Nodes)
	if len(st.Clusters) > 0 {
		g := makeClusterGrid(st.Clusters, data.Rows, q.Cluster, func(c string) string { return q.url("cluster", c, "page", "", "npage", "") })
		data.Clusters = &g
	}

	if st.Plan != nil {
		data.Plan, data.PlanNote = planText(st.Plan, whole, inView, q.Cluster)
	}

	var out bytes.Buffer
	if err := pageTmpl.Execute(&out, data); err != nil {
		slog.Error("render status page", "err", err)
		http.Error(w, "cannot render the status page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(out.Bytes())
}

// planText renders the plan for the page: whole, or cut down to the
// releases in view with a note that says what the whole plan does; at
// most maxPlanLines lines either way. With a cluster, the releases' plan
// is their part in that cluster.
func planText(p *planner.Plan, whole bool, inView map[string]bool, cluster string) (text, note string) {
	var b strings.Builder
	if whole {
		_ = planner.WriteText(&b, p, planner.TextOptions{})
	} else {
		sub, of := planFor(p, inView), "The plan of the releases on this page."
		if cluster != "" {
			sub, of = planInCluster(sub, cluster, inView), "The plan of the releases on this page, in cluster "+cluster+"."
		}
		_ = planner.WriteText(&b, sub, planner.TextOptions{})
		if s := p.Summary(); p.Empty() {
			note = of + " The whole plan has no changes."
		} else {
			note = fmt.Sprintf("%s The whole plan: %d to add, %d to change, %d to destroy", of, s.Add, s.Change, s.Destroy)
			if s.Quantize+s.Gate+s.Push > 0 {
				note += fmt.Sprintf("; %d to quantize, %d to gate, %d to push", s.Quantize, s.Gate, s.Push)
			}
			note += " (all of it in /api/status)."
			if sub.Empty() {
				// WriteText would say the cluster matches the specs: true
				// of these releases only.
				_, rest, _ := strings.Cut(b.String(), "\n")
				b.Reset()
				b.WriteString("No changes for the releases on this page.\n" + rest)
			}
		}
	}
	text = b.String()
	if n := strings.Count(text, "\n"); n > maxPlanLines {
		i := 0
		for range maxPlanLines {
			i += strings.IndexByte(text[i:], '\n') + 1
		}
		text = text[:i] + fmt.Sprintf("… %d more lines: narrow the filter, or read the plan from /api/status.\n", n-maxPlanLines)
	}
	return text, note
}

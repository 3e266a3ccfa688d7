package server

import (
	"fmt"
	"html"
	"html/template"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile"
)

// A fleet (specs with cluster blocks) adds to the status a cluster per
// column: the page's cluster × release grid, /api/status?cluster= and
// the gantry_cluster_ series. Specs without cluster blocks have none of
// it, and the page and the API are what they were.

// fleetStates are the release states of the whole fleet, not of one
// cluster: the build failed, the gate blocked, or the one placement over
// every cluster's nodes left replicas out. A release in one is in it in
// every cluster it runs in; otherwise its state in a cluster is the
// cell's (synced, progressing, degraded: what that cluster's pods say).
var fleetStates = map[string]bool{
	reconcile.StateFailed: true, reconcile.StateBlocked: true,
	reconcile.StateUnplaceable: true, reconcile.StatePending: true,
}

// cellIn is release r's cell in cluster c, nil when r does not run there.
func cellIn(r *reconcile.ReleaseStatus, c string) *reconcile.ClusterReleaseStatus {
	for i := range r.Clusters {
		if r.Clusters[i].Cluster == c {
			return &r.Clusters[i]
		}
	}
	return nil
}

// stateIn is release r's state and reason in the cluster of its cell:
// what ?cluster=&state= selects, the grid shows and gantry_cluster_releases
// counts.
func stateIn(r *reconcile.ReleaseStatus, cell *reconcile.ClusterReleaseStatus) (state, reason string) {
	if fleetStates[r.State] {
		return r.State, r.Reason
	}
	return cell.State, cell.Reason
}

// clusterNames are the names of the fleet's clusters, in their order.
func clusterNames(cs []reconcile.ClusterStatus) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Name
	}
	return out
}

// findCluster is the cluster named c, or an error that names it and the
// clusters there are.
func findCluster(cs []reconcile.ClusterStatus, c string) (reconcile.ClusterStatus, error) {
	for _, cl := range cs {
		if cl.Name == c {
			return cl, nil
		}
	}
	if len(cs) == 0 {
		return reconcile.ClusterStatus{}, fmt.Errorf("cluster %q not found: the status has no clusters (the specs have no cluster blocks, or no reconcile has run)", c)
	}
	return reconcile.ClusterStatus{}, fmt.Errorf("cluster %q not found: the clusters are %s", c, strings.Join(clusterNames(cs), ", "))
}

// nodesIn returns the nodes of cluster c, in their order.
func nodesIn(nodes []reconcile.NodeUse, c string) []reconcile.NodeUse {
	var out []reconcile.NodeUse
	for _, n := range nodes {
		if n.Cluster == c {
			out = append(out, n)
		}
	}
	return out
}

// cellsIn returns copies of rs, each with its cells cut to the one of
// cluster c (the releases are those that run there).
func cellsIn(rs []reconcile.ReleaseStatus, c string) []reconcile.ReleaseStatus {
	out := make([]reconcile.ReleaseStatus, 0, len(rs))
	for i := range rs {
		r := rs[i]
		r.Clusters = nil
		if cell := cellIn(&rs[i], c); cell != nil {
			r.Clusters = []reconcile.ClusterReleaseStatus{*cell}
		}
		out = append(out, r)
	}
	return out
}

// planInCluster is the plan cut down to cluster c and the named releases
// (those that run there): their plans, each with its part in c only, and
// the actions in c, with the builds of the named releases (which have no
// cluster: a model is built once for the fleet).
func planInCluster(p *planner.Plan, c string, names map[string]bool) *planner.Plan {
	if p == nil {
		return nil
	}
	sub := *p
	sub.Releases = nil
	for _, r := range p.Releases {
		if !names[r.Name] {
			continue
		}
		parts := r.Clusters
		r.Clusters = nil
		for _, cp := range parts {
			if cp.Name == c {
				r.Clusters = append(r.Clusters, cp)
			}
		}
		sub.Releases = append(sub.Releases, r)
	}
	sub.Actions = []planner.Action{}
	for _, a := range p.Actions {
		if a.Cluster == c || a.Cluster == "" && names[a.Release] {
			sub.Actions = append(sub.Actions, a)
		}
	}
	return &sub
}

// clusterGrid is the page's cluster × release table: a column per
// cluster (or the one the filter names), a row per release on the page.
type clusterGrid struct {
	Columns []clusterColumn
	Rows    []clusterRow
	// Unreachable counts the clusters that could not be observed.
	Unreachable int
}

type clusterColumn struct {
	Name   string
	Labels string // k=v, sorted by key
	// Error is why the cluster could not be observed ("" when it was),
	// and Short its first line, cut.
	Error, Short string
	Reachable    bool
	Nodes, GPUs  int
	URL          string // the page of this cluster
}

type clusterRow struct {
	Release, State string
	Cells          []clusterCell
}

// clusterCell is a release in one cluster; Runs is false where it does
// not run (an empty cell).
type clusterCell struct {
	Runs          bool
	Version       string
	State, Reason string
	Replicas      int
	Wave          int
	Unreachable   bool // the column's cluster could not be observed
}

// HTML is the row's cells, one <td> per column: written here rather
// than by the template, which takes ten times as long at thousands of
// cells (30 clusters × a page of releases). Every string is escaped.
func (r clusterRow) HTML() template.HTML {
	var b strings.Builder
	b.Grow(160 * len(r.Cells))
	for _, c := range r.Cells {
		mark := ""
		if c.Unreachable {
			mark = " unreachable"
		}
		if !c.Runs {
			b.WriteString(`<td class="none` + mark + `"></td>`)
			continue
		}
		state := html.EscapeString(c.State)
		b.WriteString(`<td class="cell` + mark + `" data-state="` + state + `" title="` + html.EscapeString(c.Reason) + `">`)
		if c.Version != "" {
			b.WriteString(`<code class="version">` + html.EscapeString(c.Version) + `</code> `)
		}
		fmt.Fprintf(&b, `<span class="state %s">%s</span> <span class="replicas">×%d</span>`, state, state, c.Replicas)
		if c.Wave > 0 {
			fmt.Fprintf(&b, ` <span class="wave">wave %d</span>`, c.Wave)
		}
		b.WriteString(`</td>`)
	}
	return template.HTML(b.String())
}

// maxShortError is how much of a cluster's error its column header shows;
// the whole error is its title.
const maxShortError = 60

// shortError is the first line of err, at most maxShortError characters.
func shortError(err string) string {
	line, _, more := strings.Cut(err, "\n")
	if utf8.RuneCountInString(line) > maxShortError {
		r := []rune(line)
		return string(r[:maxShortError-1]) + "…"
	}
	if more {
		return line + " …"
	}
	return line
}

// shortVersion shortens each side of a version, "OLD→NEW" in a rollout.
func shortVersion(v string) string {
	parts := strings.Split(v, "→")
	for i, p := range parts {
		if utf8.RuneCountInString(p) > 12 {
			parts[i] = string([]rune(p)[:12])
		}
	}
	return strings.Join(parts, "→")
}

// labelText is a cluster's labels as "k=v, k=v", sorted by key.
func labelText(labels map[string]string) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(labels)) {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k + "=" + labels[k])
	}
	return b.String()
}

// makeClusterGrid is the grid of the releases in rows over the clusters,
// or over cluster only when it is not "". Each row indexes its release's
// cells by cluster once: rows × clusters map lookups, no scan of a
// release's cells per column.
func makeClusterGrid(clusters []reconcile.ClusterStatus, rows []*reconcile.ReleaseStatus, only string, link func(cluster string) string) clusterGrid {
	var g clusterGrid
	for _, c := range clusters {
		if !c.Reachable {
			g.Unreachable++
		}
		if only != "" && c.Name != only {
			continue
		}
		g.Columns = append(g.Columns, clusterColumn{Name: c.Name, Labels: labelText(c.Labels), Error: c.Error, Short: shortError(c.Error),
			Reachable: c.Reachable, Nodes: c.Nodes, GPUs: c.GPUs, URL: link(c.Name)})
	}
	byCluster := make(map[string]*reconcile.ClusterReleaseStatus, len(g.Columns))
	for _, r := range rows {
		clear(byCluster)
		for i := range r.Clusters {
			byCluster[r.Clusters[i].Cluster] = &r.Clusters[i]
		}
		row := clusterRow{Release: r.Name, State: r.State, Cells: make([]clusterCell, len(g.Columns))}
		for i, col := range g.Columns {
			cell := &row.Cells[i]
			cell.Unreachable = !col.Reachable
			c := byCluster[col.Name]
			if c == nil {
				continue
			}
			cell.Runs, cell.Version, cell.Replicas, cell.Wave = true, shortVersion(c.Version), c.Replicas, c.Wave
			cell.State, cell.Reason = stateIn(r, c)
		}
		g.Rows = append(g.Rows, row)
	}
	return g
}

// nodeName is a node's name within its cluster: its identity without
// the "CLUSTER/" a fleet puts before it.
func nodeName(n reconcile.NodeUse) string {
	if n.Cluster != "" {
		if rest, ok := strings.CutPrefix(n.Name, n.Cluster+"/"); ok {
			return rest
		}
	}
	return n.Name
}

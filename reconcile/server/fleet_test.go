package server

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile"
	"github.com/gantry-dev/gantry/schedule"
)

const usDown = "Get \"https://us-1.example:6443/api?timeout=32s\": dial tcp 10.20.0.1:6443: i/o timeout (the apiserver has been down since the maintenance window began)\nand more"

// fleetStatus is a fleet of three clusters, us-1 unreachable:
//   - chat runs in all three and rolls out in three waves (eu-1, eu-2,
//     us-1), at wave 2: eu-1 has the new version, eu-2 moves to it, us-1
//     could not be observed;
//   - embed runs in eu-1 and eu-2 only;
//   - rerank, blocked by its gate (a state of the whole fleet), runs in
//     eu-2, where its old version serves.
func fleetStatus() reconcile.Status {
	at := time.Now().Add(-20 * time.Second).UTC().Truncate(time.Second)
	ro := midRollout(at)
	ro.Canary, ro.Stable, ro.Wave, ro.Waves, ro.WaveClusters = "5f3a9c1e", "a1b2c3d4", 2, 3, []string{"eu-2"}
	return reconcile.Status{
		Revision: "0123456789abcdef0123", Time: time.Now().Add(-5 * time.Second), Duration: 3 * time.Second, Phase: "success",
		Clusters: []reconcile.ClusterStatus{
			{Name: "eu-1", Namespace: "llm", Labels: map[string]string{"tier": "prod", "region": "eu"}, Reachable: true, Nodes: 2, GPUs: 12},
			{Name: "eu-2", Namespace: "llm", Labels: map[string]string{"region": "eu"}, Reachable: true, Nodes: 1, GPUs: 8},
			{Name: "us-1", Namespace: "models", Labels: map[string]string{"region": "us"}, Error: usDown},
		},
		Releases: []reconcile.ReleaseStatus{
			{Name: "chat", State: reconcile.StateDegraded, Reason: "cluster unreachable: us-1 (left as it is); progressing in eu-2",
				Image: "r/chat:ck-2", Replicas: 6, GPUsPerReplica: 1, Rollout: ro,
				Placement: schedule.Placement{"eu-1/gpu-a": 2, "eu-2/gpu-a": 2},
				Clusters: []reconcile.ClusterReleaseStatus{
					{Cluster: "eu-1", State: reconcile.StateSynced, Reason: "up to date", Version: "5f3a9c1e", Replicas: 2, Wave: 1,
						Placement: schedule.Placement{"eu-1/gpu-a": 2}},
					{Cluster: "eu-2", State: reconcile.StateProgressing, Reason: "rollout progressing, step 2/3", Version: "a1b2c3d4→5f3a9c1e",
						Replicas: 2, Wave: 2, Placement: schedule.Placement{"eu-2/gpu-a": 2}},
					{Cluster: "us-1", State: reconcile.StateDegraded, Reason: "cluster unreachable: " + usDown, Replicas: 2, Wave: 3},
				}},
			{Name: "embed", State: reconcile.StateSynced, Reason: "up to date", Image: "r/embed:ck-1", Replicas: 3, GPUsPerReplica: 1,
				Placement: schedule.Placement{"eu-1/gpu-a": 1, "eu-2/gpu-a": 2},
				Clusters: []reconcile.ClusterReleaseStatus{
					{Cluster: "eu-1", State: reconcile.StateSynced, Reason: "up to date", Version: "0badcafe", Replicas: 1},
					{Cluster: "eu-2", State: reconcile.StateSynced, Reason: "up to date", Version: "0badcafe", Replicas: 2},
				}},
			{Name: "rerank", State: reconcile.StateBlocked, Reason: "release rerank: blocked by gate: relative RMSE 0.2 exceeds max_error 0.1",
				Image: "r/rerank:ck-3", Replicas: 1, GPUsPerReplica: 1, Placement: schedule.Placement{"eu-2/gpu-a": 1},
				Clusters: []reconcile.ClusterReleaseStatus{
					{Cluster: "eu-2", State: reconcile.StateSynced, Reason: "up to date", Version: "77e0aa12", Replicas: 1},
				}},
		},
		Nodes: []reconcile.NodeUse{
			{Name: "eu-1/gpu-a", Cluster: "eu-1", Pool: "a100", GPUs: 8, Releases: map[string]int{"chat": 2, "embed": 1}},
			{Name: "eu-1/gpu-b", Cluster: "eu-1", Pool: "l4", GPUs: 4, Releases: map[string]int{}},
			{Name: "eu-2/gpu-a", Cluster: "eu-2", Pool: "a100", GPUs: 8, Used: 1, Releases: map[string]int{"chat": 2, "embed": 2, "rerank": 1}},
		},
		Plan: &planner.Plan{FormatVersion: "2",
			Releases: []planner.ReleasePlan{
				{Name: "chat", Image: "r/chat:ck-2", Replicas: 6, Clusters: []planner.ClusterPlan{
					{Name: "eu-1", Replicas: 2, Wave: 1}, {Name: "eu-2", Replicas: 2, Wave: 2}, {Name: "us-1", Replicas: 2, Wave: 3, Unreachable: usDown}}},
				{Name: "embed", Image: "r/embed:ck-1", Replicas: 3, Clusters: []planner.ClusterPlan{{Name: "eu-1", Replicas: 1}, {Name: "eu-2", Replicas: 2}}},
				{Name: "rerank", Image: "r/rerank:ck-3", Replicas: 1, Clusters: []planner.ClusterPlan{{Name: "eu-2", Replicas: 1}}},
			},
			Actions: []planner.Action{
				{Type: planner.Quantize, Release: "rerank", Subject: "r/rerank:ck-3", Reason: "not built"},
				{Type: planner.Update, Release: "chat", Cluster: "eu-2", Subject: "Deployment llm/chat-gpu-a-5f3a9c1e", Reason: "wave 2"},
				{Type: planner.Update, Release: "embed", Cluster: "eu-1", Subject: "Deployment llm/embed-gpu-a", Reason: "the image changed"},
				{Type: planner.Delete, Cluster: "eu-2", Subject: "Deployment llm/old-gpu-a", Reason: "no release"},
			}},
	}
}

// gridCell is the grid's cell of a release in a cluster: cell n of the
// release's row (0 its name, then the clusters in order).
func gridCell(t *testing.T, page, release string, n int) string {
	t.Helper()
	row := section(page, `<tr id="cluster-row-`+release+`">`, "</tr>")
	if row == "" {
		t.Fatalf("no grid row of %s", release)
	}
	tds := strings.Split(row, "</td>")
	if n >= len(tds)-1 {
		t.Fatalf("row of %s has %d cells, want cell %d: %q", release, len(tds)-1, n, row)
	}
	return strings.TrimSpace(tds[n]) + "</td>"
}

func TestStatusPageFleet(t *testing.T) {
	url := httptestURL(t, fleetStatus())
	code, page := get(t, url+"/")
	if code != 200 {
		t.Fatalf("GET / = %d", code)
	}
	grid := section(page, `<table id="clusters">`, "</table>")
	if grid == "" {
		t.Fatalf("no cluster grid:\n%s", page)
	}
	for _, want := range []string{
		`<p id="cluster-note">3 clusters, <span class="degraded">1 unreachable</span>.`,
		// Headers: name (a link to its page), labels sorted, reachable or
		// the error cut short (all of it in the title), nodes and GPUs.
		`<th id="cluster-eu-1" class="cluster"><a href="/?cluster=eu-1">eu-1</a><div class="labels">region=eu, tier=prod</div>`,
		`<div class="reach"><span class="synced">reachable</span></div><div class="size">2 nodes, 12 GPUs</div></th>`,
		`<th id="cluster-us-1" class="cluster unreachable"><a href="/?cluster=us-1">us-1</a><div class="labels">region=us</div>`,
		`<span class="degraded" title="Get &#34;https://us-1.example:6443/api?timeout=32s&#34;: dial tcp 10.20.0.1:6443: i/o timeout (the apiserver has been down since the maintenance window began)` + "\n" + `and more">unreachable: Get &#34;https://us-1.example:6443/api?timeout=32s&#34;: dial tcp 1…</span>`,
		`<div class="size">0 nodes, 0 GPUs</div>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Rows in the releases' order: worst first.
	if got := strings.Count(grid, `<tr id="cluster-row-`); got != 3 || strings.Index(grid, "cluster-row-rerank") > strings.Index(grid, "cluster-row-chat") ||
		strings.Index(grid, "cluster-row-chat") > strings.Index(grid, "cluster-row-embed") {
		t.Errorf("grid rows: %d, want rerank, chat, embed:\n%s", got, grid)
	}
	for _, tc := range []struct {
		release string
		n       int
		want    string
	}{
		{"chat", 0, `<td class="state degraded" title="degraded">chat</td>`},
		{"chat", 1, `<td class="cell" data-state="synced" title="up to date"><code class="version">5f3a9c1e</code> <span class="state synced">synced</span> <span class="replicas">×2</span> <span class="wave">wave 1</span></td>`},
		{"chat", 2, `<td class="cell" data-state="progressing" title="rollout progressing, step 2/3"><code class="version">a1b2c3d4→5f3a9c1e</code> <span class="state progressing">progressing</span> <span class="replicas">×2</span> <span class="wave">wave 2</span></td>`},
		// Unreachable: no version, the column's mark, why in the title.
		{"chat", 3, `<td class="cell unreachable" data-state="degraded" title="cluster unreachable: Get &#34;https://us-1.example`},
		{"chat", 3, `</code>`},
		{"embed", 1, `<td class="cell" data-state="synced" title="up to date"><code class="version">0badcafe</code> <span class="state synced">synced</span> <span class="replicas">×1</span></td>`},
		{"embed", 2, `<span class="replicas">×2</span></td>`},
		// embed does not run in us-1: an empty cell, in the marked column.
		{"embed", 3, `<td class="none unreachable"></td>`},
		// rerank is blocked by its gate: so it is in eu-2, where its old
		// version serves; it runs nowhere else.
		{"rerank", 1, `<td class="none"></td>`},
		{"rerank", 2, `<td class="cell" data-state="blocked" title="release rerank: blocked by gate: relative RMSE 0.2 exceeds max_error 0.1"><code class="version">77e0aa12</code> <span class="state blocked">blocked</span>`},
		{"rerank", 3, `<td class="none unreachable"></td>`},
	} {
		cell := gridCell(t, page, tc.release, tc.n)
		if tc.want == `</code>` {
			if strings.Contains(cell, tc.want) {
				t.Errorf("%s's cell %d shows a version: %s", tc.release, tc.n, cell)
			}
			continue
		}
		if !strings.Contains(cell, tc.want) {
			t.Errorf("%s's cell %d = %s\nwant %s", tc.release, tc.n, cell, tc.want)
		}
	}
	// The rollout says its wave; the node grid names each node's cluster,
	// a border where the next cluster starts.
	for _, want := range []string{
		`; <span class="wave">wave <b>2 of 3</b>: eu-2</span></div>`,
		`<tr><th>Cluster</th><th>Node</th><th>Pool</th>`,
		`<tr id="node-eu-1/gpu-a" class="cluster-first">` + "\n" + `<td>eu-1</td><td>gpu-a</td><td>a100</td>`,
		`<tr id="node-eu-1/gpu-b">` + "\n" + `<td>eu-1</td><td>gpu-b</td>`,
		`<tr id="node-eu-2/gpu-a" class="cluster-first">` + "\n" + `<td>eu-2</td><td>gpu-a</td>`,
		`<label>Cluster <select name="cluster">`, `<option value="us-1">us-1</option>`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}

	// One cluster's page: its column, the releases that run there, its
	// nodes, its part of the plan.
	_, eu2 := get(t, url+"/?cluster=eu-2")
	grid = section(eu2, `<table id="clusters">`, "</table>")
	if n := strings.Count(grid, `<th id="cluster-`); n != 1 || !strings.Contains(grid, `id="cluster-eu-2"`) || strings.Count(grid, `<tr id="cluster-row-`) != 3 {
		t.Errorf("?cluster=eu-2 grid:\n%s", grid)
	}
	for _, want := range []string{`<option value="eu-2" selected>eu-2</option>`, `id="clear"`, `The nodes of cluster eu-2 that host the releases on this page: 1–1 of 1.`,
		`The plan of the releases on this page, in cluster eu-2.`, "chat-gpu-a-5f3a9c1e", "r/rerank:ck-3",
		`<p id="cluster-note">3 clusters, <span class="degraded">1 unreachable</span>.`} {
		if !strings.Contains(eu2, want) {
			t.Errorf("?cluster=eu-2 lacks %q", want)
		}
	}
	for _, absent := range []string{`id="node-eu-1/`, "embed-gpu-a", "old-gpu-a"} {
		if strings.Contains(eu2, absent) {
			t.Errorf("?cluster=eu-2 has %q", absent)
		}
	}
	_, us1 := get(t, url+"/?cluster=us-1")
	if got := rowStates(us1); len(got) != 1 || !strings.Contains(us1, `<tr id="release-chat">`) {
		t.Errorf("?cluster=us-1 rows %v, want chat only", got)
	}
	// Filters combine: synced in eu-1 is chat (degraded elsewhere) and embed.
	_, eu1 := get(t, url+"/?cluster=eu-1&state=synced")
	if got := rowStates(eu1); len(got) != 2 || !strings.Contains(eu1, `<tr id="release-chat">`) || !strings.Contains(eu1, `<tr id="release-embed">`) {
		t.Errorf("?cluster=eu-1&state=synced rows %v, want chat and embed", got)
	}
	if !strings.Contains(eu1, `href="/?cluster=eu-1&amp;state=problem"`) {
		t.Error("the state links of a cluster's page leave the cluster")
	}
	if code, body := get(t, url+"/?cluster=ap-1"); code != 404 || !strings.Contains(body, `cluster "ap-1" not found: the clusters are eu-1, eu-2, us-1`) {
		t.Errorf("?cluster=ap-1 = %d %s", code, body)
	}

	// No clusters: no grid, no cluster column, no cluster filter.
	_, plain := get(t, httptestURL(t, sampleStatus())+"/")
	for _, absent := range []string{`id="clusters"`, `<th>Cluster</th>`, `name="cluster"`, "cluster-first", `class="wave"`} {
		if strings.Contains(plain, absent) {
			t.Errorf("a page without clusters has %q", absent)
		}
	}
}

// The grid shows what comes from specs and clusters escaped.
func TestStatusPageFleetEscapes(t *testing.T) {
	st := fleetStatus()
	st.Clusters[0].Labels["<b>"] = `"><script>alert(1)</script>`
	st.Clusters[2].Error = `<img src=x onerror=alert(2)>`
	st.Releases[1].Clusters[0].Reason = `"><script>alert(3)</script>`
	_, page := get(t, httptestURL(t, st)+"/")
	if strings.Contains(page, "<script>") || strings.Contains(page, "<img") || strings.Contains(page, "<b>=") {
		t.Errorf("the grid lets markup through:\n%s", section(page, `<table id="clusters">`, "</table>"))
	}
}

func TestAPIStatusCluster(t *testing.T) {
	h := (&Server{Status: fixedStatus(fleetStatus())}).Handler()
	decode := func(t *testing.T, url string) apiStatus { return decodeStatus(t, h, url) }
	names := func(out apiStatus) []string {
		var n []string
		for _, r := range out.Releases {
			n = append(n, r.Name)
		}
		return n
	}
	nodeNames := func(out apiStatus) []string {
		n := []string{}
		for _, x := range out.Nodes {
			n = append(n, x.Name)
		}
		return n
	}
	subjects := func(out apiStatus) []string {
		n := []string{}
		for _, a := range out.Plan.Actions {
			n = append(n, a.Subject)
		}
		return n
	}

	all := decode(t, "/api/status")
	if len(all.Clusters) != 3 || len(all.Releases) != 3 || len(all.Releases[0].Clusters) != 3 || len(all.Nodes) != 3 {
		t.Errorf("default: %d clusters, %d releases", len(all.Clusters), len(all.Releases))
	}

	// eu-1 alone: its cluster, the two releases that run there with
	// their eu-1 cells, every node of eu-1 (the empty one too), and the
	// plan's part in eu-1.
	eu1 := decode(t, "/api/status?cluster=eu-1")
	if len(eu1.Clusters) != 1 || eu1.Clusters[0].Name != "eu-1" || !eu1.Clusters[0].Reachable {
		t.Errorf("?cluster=eu-1 clusters %+v", eu1.Clusters)
	}
	if got := names(eu1); !slices.Equal(got, []string{"chat", "embed"}) || eu1.Total != 2 {
		t.Errorf("?cluster=eu-1 releases %v (total %d)", got, eu1.Total)
	}
	for _, r := range eu1.Releases {
		if len(r.Clusters) != 1 || r.Clusters[0].Cluster != "eu-1" {
			t.Errorf("?cluster=eu-1: %s has cells %+v", r.Name, r.Clusters)
		}
	}
	if eu1.Releases[0].Clusters[0].Version != "5f3a9c1e" || eu1.Releases[0].State != reconcile.StateDegraded || eu1.Counts["blocked"] != 1 {
		t.Errorf("?cluster=eu-1: chat %+v, counts %v", eu1.Releases[0], eu1.Counts)
	}
	if got := nodeNames(eu1); !slices.Equal(got, []string{"eu-1/gpu-a", "eu-1/gpu-b"}) {
		t.Errorf("?cluster=eu-1 nodes %v", got)
	}
	if got := subjects(eu1); !slices.Equal(got, []string{"Deployment llm/embed-gpu-a"}) || len(eu1.Plan.Releases) != 2 ||
		len(eu1.Plan.Releases[0].Clusters) != 1 || eu1.Plan.Releases[0].Clusters[0].Name != "eu-1" {
		t.Errorf("?cluster=eu-1 plan: actions %v, releases %+v", got, eu1.Plan.Releases)
	}

	// eu-2: every release runs there; its prune, and rerank's build (no
	// cluster: built once for the fleet), are its plan's.
	eu2 := decode(t, "/api/status?cluster=eu-2")
	if got := subjects(eu2); !slices.Equal(got, []string{"r/rerank:ck-3", "Deployment llm/chat-gpu-a-5f3a9c1e", "Deployment llm/old-gpu-a"}) {
		t.Errorf("?cluster=eu-2 actions %v", got)
	}
	// us-1 answered nothing: chat's cell, no nodes.
	us1 := decode(t, "/api/status?cluster=us-1")
	if got := names(us1); !slices.Equal(got, []string{"chat"}) || len(us1.Nodes) != 0 || us1.Nodes == nil || us1.Clusters[0].Error != usDown ||
		!strings.HasPrefix(us1.Releases[0].Clusters[0].Reason, "cluster unreachable") {
		t.Errorf("?cluster=us-1: releases %v, nodes %v, %+v", got, us1.Nodes, us1.Clusters)
	}

	// Combined with the other filters: state= is the state in the
	// cluster, and release-narrowing filters keep the hosting nodes.
	for _, tc := range []struct {
		url   string
		names []string
		nodes []string
	}{
		{"/api/status?cluster=eu-1&state=synced", []string{"chat", "embed"}, []string{"eu-1/gpu-a"}},
		{"/api/status?cluster=eu-2&state=synced", []string{"embed"}, []string{"eu-2/gpu-a"}},
		{"/api/status?cluster=eu-2&state=problem", []string{"rerank"}, []string{"eu-2/gpu-a"}},
		{"/api/status?cluster=eu-2&state=progressing", []string{"chat"}, []string{"eu-2/gpu-a"}},
		{"/api/status?cluster=us-1&state=degraded", []string{"chat"}, []string{}},
		{"/api/status?cluster=eu-1&state=degraded", nil, []string{}},
		{"/api/status?cluster=eu-1&release=rerank", nil, []string{}},
		{"/api/status?cluster=eu-2&q=emb", []string{"embed"}, []string{"eu-2/gpu-a"}},
		{"/api/status?cluster=eu-2&rollout=any", []string{"chat"}, []string{"eu-2/gpu-a"}},
		{"/api/status?cluster=eu-1&limit=1&offset=1", []string{"embed"}, []string{"eu-1/gpu-a"}},
		{"/api/status?state=degraded", []string{"chat"}, []string{"eu-1/gpu-a", "eu-2/gpu-a"}},
	} {
		got := decode(t, tc.url)
		if n := names(got); !slices.Equal(n, tc.names) || !slices.Equal(nodeNames(got), tc.nodes) {
			t.Errorf("%s: releases %v, nodes %v; want %v, %v", tc.url, n, nodeNames(got), tc.names, tc.nodes)
		}
	}
	if got := decode(t, "/api/status?cluster=eu-1&limit=1"); got.NextOffset != 1 || got.Total != 2 {
		t.Errorf("?cluster=eu-1&limit=1: next %d, total %d", got.NextOffset, got.Total)
	}

	// An unknown cluster is a 404 that names it and the known ones.
	code, body := serve(t, h, "/api/status?cluster=ap-1&state=synced")
	var e struct {
		Error    string
		Clusters []string
	}
	if code != 404 || json.Unmarshal([]byte(body), &e) != nil || e.Error != `cluster "ap-1" not found: the clusters are eu-1, eu-2, us-1` ||
		!slices.Equal(e.Clusters, []string{"eu-1", "eu-2", "us-1"}) {
		t.Errorf("?cluster=ap-1 = %d %s", code, body)
	}
	// A bad filter is still a 400 first.
	if code, _ := serve(t, h, "/api/status?cluster=ap-1&state=bogus"); code != 400 {
		t.Errorf("?cluster=ap-1&state=bogus = %d, want 400", code)
	}
	// Without clusters every cluster is unknown.
	code, body = serve(t, (&Server{Status: fixedStatus(sampleStatus())}).Handler(), "/api/status?cluster=eu-1")
	if code != 404 || !strings.Contains(body, `cluster \"eu-1\" not found: the status has no clusters`) || !strings.Contains(body, `"clusters":[]`) {
		t.Errorf("no clusters, ?cluster=eu-1 = %d %s", code, body)
	}
}

func TestClusterMetrics(t *testing.T) {
	s, ts, _ := newTestServer(t)
	src := &mutableStatus{}
	src.set(fleetStatus())
	s.Metrics.WatchRollouts(src)
	c := clusterCollector{s.Metrics}
	// 3 clusters × (up + 7 states).
	if n := testutil.CollectAndCount(c); n != 3*8 {
		t.Errorf("%d cluster series, want 24", n)
	}
	_, body := get(t, ts.URL+"/metrics")
	for _, want := range []string{
		`gantry_cluster_up{cluster="eu-1"} 1`, `gantry_cluster_up{cluster="us-1"} 0`,
		`gantry_cluster_releases{cluster="eu-1",state="synced"} 2`,
		`gantry_cluster_releases{cluster="eu-2",state="blocked"} 1`,
		`gantry_cluster_releases{cluster="eu-2",state="progressing"} 1`,
		`gantry_cluster_releases{cluster="eu-2",state="synced"} 1`,
		`gantry_cluster_releases{cluster="us-1",state="degraded"} 1`,
		`gantry_cluster_releases{cluster="us-1",state="synced"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// A cluster that leaves takes its series along; no clusters, none.
	st := fleetStatus()
	st.Clusters = st.Clusters[:2]
	src.set(st)
	if n := testutil.CollectAndCount(c); n != 2*8 {
		t.Errorf("%d cluster series after us-1 left, want 16", n)
	}
	src.set(sampleStatus())
	if n := testutil.CollectAndCount(c); n != 0 {
		t.Errorf("%d cluster series without clusters", n)
	}
	// Bounded by clusters × states, whatever the releases.
	src.set(fleetScale(30, 300))
	if n := testutil.CollectAndCount(c); n != 30*8 {
		t.Errorf("%d cluster series at 30 clusters × 300 releases, want 240", n)
	}
}

// fleetScale is nReleases releases over nClusters clusters (every 7th
// unreachable): release i runs in the clusters j with (i+j)%3 != 0, two
// replicas each, on node (i+j)%4 of the cluster's four; every 11th is
// failed, every 13th rolls out in three waves.
func fleetScale(nClusters, nReleases int) reconcile.Status {
	st := reconcile.Status{Revision: "0123456789abcdef0123", Time: time.Now(), Phase: "success",
		Plan: &planner.Plan{FormatVersion: "2", Actions: []planner.Action{}}}
	idx := map[string]int{}
	for j := range nClusters {
		name := fmt.Sprintf("dc-%02d", j)
		cs := reconcile.ClusterStatus{Name: name, Namespace: "llm", Labels: map[string]string{"region": []string{"eu", "us", "ap"}[j%3], "tier": "prod"},
			Reachable: j%7 != 6, Nodes: 4, GPUs: 32}
		if !cs.Reachable {
			cs.Error, cs.Nodes, cs.GPUs = "dial tcp: i/o timeout", 0, 0
		}
		st.Clusters = append(st.Clusters, cs)
		if cs.Reachable {
			for k := range 4 {
				idx[fmt.Sprintf("%s/gpu-%d", name, k)] = len(st.Nodes)
				st.Nodes = append(st.Nodes, reconcile.NodeUse{Name: fmt.Sprintf("%s/gpu-%d", name, k), Cluster: name, Pool: "a100", GPUs: 8, Releases: map[string]int{}})
			}
		}
	}
	for i := range nReleases {
		name := fmt.Sprintf("model-%04d", i)
		r := reconcile.ReleaseStatus{Name: name, State: reconcile.StateSynced, Reason: "up to date", Image: "r/" + name + ":ck-1",
			Replicas: 0, GPUsPerReplica: 1, Placement: schedule.Placement{}}
		if i%11 == 0 {
			r.State, r.Reason = reconcile.StateFailed, "push image: connection reset by peer"
		}
		if i%13 == 0 {
			r.Rollout = &reconcile.RolloutStatus{RolloutState: planner.RolloutState{Phase: planner.RolloutProgressing, Canary: "5f3a9c1e", Stable: "a1b2c3d4",
				Step: 1, Steps: 2, Wave: 2, Waves: 3, WaveClusters: []string{"dc-01"}}}
		}
		rp := planner.ReleasePlan{Name: name, Image: r.Image}
		for j, cl := range st.Clusters {
			if (i+j)%3 == 0 {
				continue
			}
			cell := reconcile.ClusterReleaseStatus{Cluster: cl.Name, State: reconcile.StateSynced, Reason: "up to date", Version: "0badcafe", Replicas: 2}
			if r.Rollout != nil {
				cell.Wave = min(j+1, 3)
			}
			if !cl.Reachable {
				cell.State, cell.Reason, cell.Version = reconcile.StateDegraded, "cluster unreachable: dial tcp: i/o timeout", ""
				if r.State == reconcile.StateSynced {
					r.State, r.Reason = reconcile.StateDegraded, "cluster unreachable: "+cl.Name
				}
			} else {
				node := fmt.Sprintf("%s/gpu-%d", cl.Name, (i+j)%4)
				cell.Placement = schedule.Placement{node: 2}
				r.Placement[node] = 2
				st.Nodes[idx[node]].Releases[name] = 2
			}
			r.Replicas += 2
			r.Clusters = append(r.Clusters, cell)
			rp.Clusters = append(rp.Clusters, planner.ClusterPlan{Name: cl.Name, Replicas: 2})
		}
		st.Releases = append(st.Releases, r)
		st.Plan.Releases = append(st.Plan.Releases, rp)
	}
	return st
}

// The hostile fleet: 30 clusters × 300 releases, all on one page. The
// grid is a row per release and a cell per cluster, no more; the time
// is BenchmarkStatusPageFleet's to tell.
func TestStatusPageFleetAtScale(t *testing.T) {
	h := (&Server{Status: fixedStatus(fleetScale(30, 300))}).Handler()
	code, page := serve(t, h, "/?per=300")
	if code != 200 {
		t.Fatalf("GET /?per=300 = %d", code)
	}
	grid := section(page, `<table id="clusters">`, "</table>")
	rows := strings.Count(grid, `<tr id="cluster-row-`)
	cells := strings.Count(grid, `<td class="cell`)
	empty := strings.Count(grid, `<td class="none`)
	// Release i runs in the 20 clusters j with (i+j)%3 != 0.
	if rows != 300 || cells != 300*20 || empty != 300*10 || strings.Count(grid, `<th id="cluster-`) != 30 {
		t.Errorf("grid: %d rows, %d cells, %d empty, want 300, 6000, 3000", rows, cells, empty)
	}
	if n := strings.Count(grid, `class="cluster unreachable"`); n != 4 {
		t.Errorf("%d unreachable columns, want 4 (dc-06, dc-13, dc-20, dc-27)", n)
	}
	// The default page: 100 rows.
	_, page = serve(t, h, "/")
	if n := strings.Count(section(page, `<table id="clusters">`, "</table>"), `<tr id="cluster-row-`); n != defaultPerPage {
		t.Errorf("default page: %d grid rows", n)
	}
	_, body := serve(t, h, "/api/status?cluster=dc-05&state=failed")
	var out apiStatus
	if err := json.Unmarshal([]byte(body), &out); err != nil || out.Total == 0 || len(out.Nodes) == 0 {
		t.Errorf("?cluster=dc-05&state=failed: %v, %d releases", err, out.Total)
	}
	for _, r := range out.Releases {
		if len(r.Clusters) != 1 || r.State != reconcile.StateFailed {
			t.Errorf("?cluster=dc-05&state=failed: %s %s with %d cells", r.Name, r.State, len(r.Clusters))
		}
	}
}

// go test -run '^$' -bench Fleet -benchtime 10x ./reconcile/server/
func BenchmarkStatusPageFleet(b *testing.B) { benchGet(b, fleetScale(30, 300), "/?per=300") }

func BenchmarkAPIStatusFleetCluster(b *testing.B) {
	benchGet(b, fleetScale(30, 300), "/api/status?cluster=dc-05")
}

func BenchmarkClusterMetricsFleet(b *testing.B) {
	m := NewMetrics()
	m.WatchRollouts(fixedStatus(fleetScale(30, 300)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Registry.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

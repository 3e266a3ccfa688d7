package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gantry-dev/gantry/compress/quality"
	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile"
	"github.com/gantry-dev/gantry/schedule"
)

// bigStatus is a fleet at the scale issue 11 asks for: nReleases
// releases of two one-GPU replicas each, spread over nNodes nodes of 8
// GPUs in four pools. Every 50th release is failed, every 70th blocked,
// every 90th unplaceable, every 110th pending, every 130th degraded
// (first match wins), the rest synced. The plan is a steady state with
// one update per failed release.
func bigStatus(nReleases, nNodes int) reconcile.Status {
	st := reconcile.Status{
		Revision: "0123456789abcdef0123", Time: time.Now().Add(-5 * time.Second), Duration: 90 * time.Second, Phase: "success",
		Plan: &planner.Plan{FormatVersion: "1", Revision: "0123456789abcdef0123"},
	}
	nodes := make([]reconcile.NodeUse, nNodes)
	for i := range nodes {
		nodes[i] = reconcile.NodeUse{Name: fmt.Sprintf("gpu-%05d", i), Pool: []string{"a100", "h100", "l4", "l40s"}[i%4], GPUs: 8, Used: i % 3, Releases: map[string]int{}}
	}
	for i := range nReleases {
		name := fmt.Sprintf("model-%05d", i)
		state, reason := reconcile.StateSynced, "up to date"
		switch {
		case i%50 == 0:
			state, reason = reconcile.StateFailed, "release "+name+": push image: connection reset by peer"
		case i%70 == 0:
			state, reason = reconcile.StateBlocked, "release "+name+": blocked by gate: relative RMSE 0.2 exceeds max_error 0.1"
		case i%90 == 0:
			state, reason = reconcile.StateUnplaceable, "2 replicas fit on no node: needs 1 GPU (pool h100)"
		case i%110 == 0:
			state, reason = reconcile.StatePending, "1 of 2 replicas placed"
		case i%130 == 0:
			state, reason = reconcile.StateDegraded, "0 of 2 pods available"
		}
		r := reconcile.ReleaseStatus{Name: name, State: state, Reason: reason, Image: "registry.example/models/" + name + ":ck-1",
			Digest: "sha256:abcdef0123456789abcdef", Replicas: 2, GPUsPerReplica: 1, Placement: schedule.Placement{},
			Error: &quality.Tensor{RelRMSE: 0.0123, Cosine: 0.99991}}
		if state != reconcile.StateUnplaceable && nNodes > 0 {
			for k := range 2 {
				n := &nodes[(2*i+k)%nNodes]
				r.Placement[n.Name]++
				n.Releases[name]++
			}
		}
		st.Releases = append(st.Releases, r)
		st.Plan.Releases = append(st.Plan.Releases, planner.ReleasePlan{Name: name, Image: r.Image, Replicas: 2, Placement: r.Placement})
		if state == reconcile.StateFailed {
			st.Plan.Actions = append(st.Plan.Actions, planner.Action{Type: planner.Update, Release: name,
				Subject: "Deployment gantry/" + name, Reason: "the image changed"})
		}
	}
	st.Nodes = nodes
	return st
}

func benchGet(b *testing.B, st reconcile.Status, url string) {
	s := &Server{Status: fixedStatus(st)}
	h := s.Handler()
	var size int
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", url, nil))
		if w.Code != 200 {
			b.Fatalf("GET %s = %d", url, w.Code)
		}
		size = w.Body.Len()
	}
	b.ReportMetric(float64(size), "resp-bytes")
}

// go test -run '^$' -bench . -benchtime 3x ./reconcile/server/
func BenchmarkStatusPage(b *testing.B) { benchGet(b, bigStatus(10000, 5000), "/") }

func BenchmarkStatusPageFiltered(b *testing.B) {
	benchGet(b, bigStatus(10000, 5000), "/?state=problem&q=model-0&page=2")
}

func BenchmarkAPIStatus(b *testing.B) { benchGet(b, bigStatus(10000, 5000), "/api/status") }

func BenchmarkAPIStatusPaged(b *testing.B) {
	benchGet(b, bigStatus(10000, 5000), "/api/status?state=problem&limit=100&offset=100")
}

func BenchmarkAPIStatusOneRelease(b *testing.B) {
	benchGet(b, bigStatus(10000, 5000), "/api/status?release=model-04242")
}

func serve(t *testing.T, h http.Handler, url string) (int, string) {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", url, nil))
	return w.Code, w.Body.String()
}

// decodeStatus is h's /api/status at url, which must answer 200.
func decodeStatus(t *testing.T, h http.Handler, url string) apiStatus {
	t.Helper()
	code, body := serve(t, h, url)
	var out apiStatus
	if code != 200 || json.Unmarshal([]byte(body), &out) != nil {
		t.Fatalf("GET %s = %d %.300s", url, code, body)
	}
	return out
}

// rowStates are the data-state of each release row, in page order.
func rowStates(page string) []string {
	var out []string
	for _, row := range strings.Split(page, `<tr id="release-`)[1:] {
		_, rest, _ := strings.Cut(row, `data-state="`)
		s, _, _ := strings.Cut(rest, `"`)
		out = append(out, s)
	}
	return out
}

// section is the part of page from the first from to the next to.
func section(page, from, to string) string {
	_, rest, _ := strings.Cut(page, from)
	s, _, _ := strings.Cut(rest, to)
	return s
}

func TestStatusPageAtScale(t *testing.T) {
	st := bigStatus(10000, 5000)
	want := countStates(st.Releases)
	// From bigStatus's rule, first match wins over 0..9999:
	// failed: multiples of 50, 200; blocked: of 70 (143) less those of
	// 350 (29), 114; unplaceable: of 90 (112) less those of 450 (23) and
	// 630 (16) plus those of 3150 (4), 77.
	if want[reconcile.StateFailed] != 200 || want[reconcile.StateBlocked] != 114 || want[reconcile.StateUnplaceable] != 77 {
		t.Fatalf("fixture counts: %v", want)
	}
	h := (&Server{Status: fixedStatus(st)}).Handler()

	t.Run("first page", func(t *testing.T) {
		code, page := serve(t, h, "/")
		if code != 200 {
			t.Fatalf("GET / = %d", code)
		}
		if len(page) > 256<<10 {
			t.Errorf("page is %d bytes, want under 256 KiB", len(page))
		}
		got := rowStates(page)
		if len(got) != defaultPerPage {
			t.Fatalf("%d release rows, want %d", len(got), defaultPerPage)
		}
		// 200 failed releases: the first two pages hold nothing else.
		for i, s := range got {
			if s != reconcile.StateFailed {
				t.Fatalf("row %d is %s, want failed first", i, s)
			}
		}
		if nodes := strings.Count(page, `<tr id="node-`); nodes == 0 || nodes > nodesPerPage {
			t.Errorf("%d node rows, want 1 to %d", nodes, nodesPerPage)
		}
		if cells := strings.Count(page, "<td"); cells > 2000 {
			t.Errorf("%d table cells, want at most 2000", cells)
		}
		for _, want := range []string{
			`Releases 1–100 of 10000, problems first.`, `<span>page 1 of 100</span>`,
			`<a href="/?page=2" rel="next">`, `<a href="/?page=100" rel="last">`,
			`data-state="problem">`, `>200 failed</a>`, `>114 blocked</a>`, `>77 unplaceable</a>`,
			`<form id="filter" method="get" action="/">`, `<input type="search" name="q" value=""`,
			`<th>Releases (GPUs)</th>`, `<span class="inview">model-00000 1</span>`,
			`<tr id="pool-h100"><td>h100</td><td class="num">1250</td><td class="num">10000</td>`,
			// Each of the 200 failed releases has an update; the plan shows
			// those of the 100 on this page.
			"The whole plan: 0 to add, 200 to change, 0 to destroy", "# release model-00000", "model-00050  2/2 replicas: gpu-00100×1, gpu-00101×1",
		} {
			if !strings.Contains(page, want) {
				t.Errorf("page lacks %q", want)
			}
		}
		if strings.Contains(page, "# release model-09950") {
			t.Error("the plan shows a release of another page")
		}
	})

	t.Run("pages", func(t *testing.T) {
		// Rows 201–314 are the 114 blocked, then come the 77 unplaceable.
		_, page := serve(t, h, "/?page=3")
		if got := rowStates(page); len(got) != 100 || got[0] != reconcile.StateBlocked || got[99] != reconcile.StateBlocked {
			t.Errorf("page 3 rows: %v", got)
		}
		_, page = serve(t, h, "/?page=4")
		if got := rowStates(page); len(got) != 100 || got[13] != reconcile.StateBlocked || got[14] != reconcile.StateUnplaceable {
			t.Errorf("page 4 rows: %v", got)
		}
		_, last := serve(t, h, "/?page=1000")
		if p := section(last, `id="pager"`, "</p>"); !strings.Contains(p, "Releases 9901–10000 of 10000") || strings.Contains(p, `rel="next"`) || !strings.Contains(p, `<a href="/?page=99" rel="prev">`) {
			t.Errorf("page 1000 is not the last page: %s", p)
		}
		// The node pager links to the page shown, not to the one asked.
		if !strings.Contains(last, `<a href="/?npage=2&amp;page=100" rel="next">`) {
			t.Errorf("node pager: %s", section(last, `id="node-pager"`, "</p>"))
		}
		_, big := serve(t, h, "/?per=100000")
		if n := len(rowStates(big)); n != maxPerPage {
			t.Errorf("per=100000: %d rows, want the cap %d", n, maxPerPage)
		}
		if len(big) > 1<<20 {
			t.Errorf("largest page is %d bytes, want under 1 MiB", len(big))
		}
	})

	t.Run("filter by state", func(t *testing.T) {
		_, page := serve(t, h, "/?state=blocked")
		got := rowStates(page)
		if len(got) != 100 || !strings.Contains(page, "Releases 1–100 of 114 that match (of 10000)") {
			t.Fatalf("state=blocked: %d rows", len(got))
		}
		for _, s := range got {
			if s != reconcile.StateBlocked {
				t.Fatalf("state=blocked shows a %s release", s)
			}
		}
		if !strings.Contains(page, `<option value="blocked" selected>`) || !strings.Contains(page, `<a href="/?page=2&amp;state=blocked" rel="next">`) {
			t.Error("the filter is not kept in the form and the pager")
		}
		_, page = serve(t, h, "/?state=problem&per=500")
		problems := 0
		for _, s := range problemStates {
			problems += want[s]
		}
		if got := rowStates(page); len(got) != problems {
			t.Errorf("state=problem: %d rows, want %d", len(got), problems)
		}
		if strings.Contains(page, `data-state="synced">synced</td>`) {
			t.Error("state=problem shows a synced release")
		}
		if code, _ := serve(t, h, "/?state=bogus"); code != 400 {
			t.Errorf("state=bogus = %d, want 400", code)
		}
	})

	t.Run("filter by name", func(t *testing.T) {
		_, page := serve(t, h, "/?q=MODEL-0999")
		got := rowStates(page)
		// model-09990 … model-09999; 09990 is unplaceable (a multiple of 90).
		if len(got) != 10 || got[0] != reconcile.StateUnplaceable || strings.Contains(page, `rel=`) {
			t.Fatalf("q=MODEL-0999: rows %v", got)
		}
		// Ten releases: a column each. Nine are placed on two nodes each
		// (release i on nodes 2i and 2i+1 mod 5000), and each
		// shares them with three others (i ± 2500k), in the "Other
		// releases" column.
		if n := strings.Count(page, `<tr id="node-`); n != 18 {
			t.Errorf("%d node rows, want 18", n)
		}
		for _, want := range []string{`<th>model-09999</th>`, `<th>Other releases</th>`, `<tr id="node-gpu-04998">`, `value="MODEL-0999"`} {
			if !strings.Contains(page, want) {
				t.Errorf("page lacks %q", want)
			}
		}
		_, page = serve(t, h, "/?q=nothing-like-this")
		if !strings.Contains(page, "No release matches the filter.") || len(rowStates(page)) != 0 {
			t.Error("an empty filter result is not said")
		}
	})

	t.Run("no changes on this page", func(t *testing.T) {
		_, page := serve(t, h, "/?state=synced")
		if !strings.Contains(page, "No changes for the releases on this page.") || !strings.Contains(page, "200 to change") {
			t.Error("the plan of a page of synced releases misleads")
		}
	})
}

func TestAPIStatusQuery(t *testing.T) {
	st := bigStatus(10000, 5000)
	h := (&Server{Status: fixedStatus(st)}).Handler()
	decode := func(t *testing.T, url string) apiStatus { return decodeStatus(t, h, url) }

	all := decode(t, "/api/status")
	if all.Total != 10000 || len(all.Releases) != 10000 || len(all.Nodes) != 5000 || len(all.Plan.Releases) != 10000 || all.Counts["failed"] != 200 || all.NextOffset != 0 {
		t.Errorf("default: total %d, %d releases, %d nodes, counts %v", all.Total, len(all.Releases), len(all.Nodes), all.Counts)
	}

	one := decode(t, "/api/status?release=model-00042")
	if one.Total != 1 || len(one.Releases) != 1 || one.Releases[0].Name != "model-00042" || len(one.Nodes) != 2 ||
		one.Nodes[0].Name != "gpu-00084" || len(one.Plan.Releases) != 1 || len(one.Plan.Actions) != 0 {
		t.Errorf("release=model-00042: %+v", one)
	}

	for _, tc := range []struct {
		url               string
		total, n, next    int
		first             string
		plans, actionsFor int
	}{
		// 200 failed, in status order: model-00000, model-00050, …
		{"/api/status?state=failed&limit=50&offset=100", 200, 50, 150, "model-05000", 50, 50},
		{"/api/status?state=failed&limit=50&offset=150", 200, 50, 0, "model-07500", 50, 50},
		{"/api/status?state=failed&offset=190", 200, 10, 0, "model-09500", 10, 10},
		{"/api/status?state=failed&offset=500", 200, 0, 0, "", 0, 0},
		{"/api/status?limit=3", 10000, 3, 3, "model-00000", 3, 1},
		{"/api/status?q=model-0999&state=problem", 10000, 0, 0, "", 0, 0},
	} {
		got := decode(t, tc.url)
		if tc.url == "/api/status?q=model-0999&state=problem" {
			// model-09990 unplaceable; the others synced.
			tc.total, tc.n, tc.first, tc.plans = 1, 1, "model-09990", 1
		}
		first := ""
		if len(got.Releases) > 0 {
			first = got.Releases[0].Name
		}
		if got.Total != tc.total || len(got.Releases) != tc.n || got.NextOffset != tc.next || first != tc.first ||
			len(got.Plan.Releases) != tc.plans || len(got.Plan.Actions) != tc.actionsFor || got.Counts["blocked"] != 114 {
			t.Errorf("%s: total %d, %d releases from %q, next %d, plan %d/%d", tc.url, got.Total, len(got.Releases), first,
				got.NextOffset, len(got.Plan.Releases), len(got.Plan.Actions))
		}
	}

	for url, want := range map[string]int{
		"/api/status?release=nope":  404,
		"/api/status?state=bogus":   400,
		"/api/status?limit=-1":      400,
		"/api/status?offset=ten":    400,
		"/api/status?state=failed,": 200,
	} {
		code, body := serve(t, h, url)
		var e struct{ Error string }
		if code != want || (code != 200 && (json.Unmarshal([]byte(body), &e) != nil || e.Error == "")) {
			t.Errorf("%s = %d %.200s, want %d with a JSON error", url, code, body, want)
		}
	}
}

// gantrySeries counts the gantry_ series /metrics exposes, as Prometheus
// stores them: a histogram is a series per bucket, +Inf, _sum and _count.
func gantrySeries(t *testing.T, m *Metrics) int {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "gantry_") {
			continue
		}
		for _, s := range mf.GetMetric() {
			if h := s.GetHistogram(); h != nil {
				n += len(h.GetBucket()) + 3
			} else {
				n++
			}
		}
	}
	return n
}

func TestMetricsSeriesAtScale(t *testing.T) {
	record := func(m *Metrics, st reconcile.Status) {
		m.Reconciled("success", time.Second, st.Revision)
		m.Reconciled("error", time.Second, st.Revision)
		for _, r := range st.Releases {
			m.Quantized(r.Name, 1<<30)
			m.Pushed(r.Name, 1<<30)
		}
		m.Releases(st.Releases)
	}
	small, big := NewMetrics(), NewMetrics()
	record(small, bigStatus(10, 5))
	record(big, bigStatus(10000, 5000))
	// 2 results × (reconciles 1 + duration 10 buckets + 3), revision 1,
	// releases 7 states, quantized 1, pushed 1, last reconcile 1, fetch
	// errors 1: 40 (webhooks have none until one comes).
	if n, m := gantrySeries(t, small), gantrySeries(t, big); n != m || m != 40 {
		t.Errorf("%d series at 10 releases, %d at 10,000: want 40 for both", n, m)
	}
	if got := testutil.ToFloat64(big.releases.WithLabelValues(reconcile.StateFailed)); got != 200 {
		t.Errorf(`gantry_releases{state="failed"} = %v, want 200`, got)
	}

	// Opted in, it is per release: 7 states and 2 counters each.
	per := NewMetrics()
	per.PerRelease = true
	record(per, bigStatus(1000, 500))
	if n := gantrySeries(t, per); n < 9*1000 || n > 9*1000+50 {
		t.Errorf("--metrics-per-release: %d series at 1,000 releases, want about 9,000", n)
	}
	// A release that leaves takes its series along.
	per.Releases(bigStatus(10, 5).Releases)
	if n := testutil.CollectAndCount(per.releaseState); n != 7*10 {
		t.Errorf("gantry_release_state has %d series after 990 releases left, want 70", n)
	}
}

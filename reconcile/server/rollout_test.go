package server

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile"
	"github.com/gantry-dev/gantry/schedule"
)

func f64(v float64) *float64 { return &v }

// hourSeries is a minute's sample for the hour up to end, v(i) the i-th
// (0 an hour ago, 60 at end).
func hourSeries(end time.Time, v func(i int) float64) []reconcile.Point {
	out := make([]reconcile.Point, 61)
	for i := range out {
		out[i] = reconcile.Point{T: end.Add(time.Duration(i-60) * time.Minute), V: v(i)}
	}
	return out
}

// midRollout is a rollout at step 2 of 3, ready, holding within bounds
// until its pause is over: two metrics with an hour of series each.
func midRollout(at time.Time) *reconcile.RolloutStatus {
	return &reconcile.RolloutStatus{
		RolloutState: planner.RolloutState{
			Phase: planner.RolloutProgressing, Canary: "5f3a9c1e", Stable: "a1b2c3d4", Step: 2, Steps: 3,
			CanaryReplicas: 2, StableReplicas: 2, CanaryAvailable: 2, StableAvailable: 2,
			CanaryShards: []string{"chat-gpu-a-5f3a9c1e"}, StableShards: []string{"chat-gpu-a-a1b2c3d4"},
			Weight: 50, Ready: true, Pause: 10 * time.Minute,
			Next: "step 3 once every metric stays within bounds for the 10m pause (4m left)",
		},
		Prestage: "pulled r/chat:ck-2 on 2 nodes in 41s",
		Analysis: &reconcile.Analysis{
			Time: at, Decision: "hold", Reason: "the 10m0s pause ends at 15:04:00 (4m0s left); 0 of 2 failed evaluations",
			FailureLimit: 2,
			Metrics: []reconcile.MetricAnalysis{
				{Name: "error_rate", Bound: "<= 0.01", Canary: f64(0.004), Stable: f64(0.003), Pass: true, Samples: 6, Needed: 10,
					CanarySeries: hourSeries(at, func(i int) float64 {
						if i < 40 {
							return math.NaN() // before the canary served
						}
						return 0.003 + 0.001*math.Sin(float64(i)/3)
					}),
					StableSeries: hourSeries(at, func(i int) float64 { return 0.003 + 0.0005*math.Cos(float64(i)/5) })},
				{Name: "latency_p99", Bound: "<= 1.2 × stable", Canary: f64(0.42), Stable: f64(0.38), Pass: true, Samples: 6, Needed: 10,
					CanarySeries: hourSeries(at, func(i int) float64 { return 0.41 + 0.02*math.Sin(float64(i)/4) }),
					StableSeries: hourSeries(at, func(i int) float64 { return 0.38 + 0.01*math.Cos(float64(i)/6) })},
			},
		},
	}
}

const unreachable = `Prometheus unreachable: Get "http://prometheus:9090/api/v1/query": dial tcp 10.0.0.9:9090: connect: connection refused`

// pausedRollout is a rollout at step 1 of 4 whose analysis paused: no
// data, Prometheus is down.
func pausedRollout(at time.Time) *reconcile.RolloutStatus {
	return &reconcile.RolloutStatus{
		RolloutState: planner.RolloutState{
			Phase: planner.RolloutProgressing, Canary: "77e0aa12", Stable: "0c0ffee0", Step: 1, Steps: 4,
			CanaryReplicas: 1, StableReplicas: 3, CanaryAvailable: 1, StableAvailable: -1, Weight: 25,
			Pause: 30 * time.Minute, Next: "step 2 when the analysis has data again",
		},
		Analysis: &reconcile.Analysis{Time: at, Decision: "pause", Reason: unreachable, Failures: 1, FailureLimit: 3,
			Metrics: []reconcile.MetricAnalysis{{Name: "error_rate", Bound: "<= 0.02", Needed: 30}}},
	}
}

// rolloutStatus is sampleStatus with two rollouts: chat mid-rollout,
// rerank paused; embed (blocked) has none.
func rolloutStatus() reconcile.Status {
	st := sampleStatus()
	at := time.Now().Add(-20 * time.Second).UTC().Truncate(time.Second)
	st.Releases[0].State, st.Releases[0].Reason = reconcile.StateProgressing, "rollout at step 2 of 3"
	st.Releases[0].Rollout = midRollout(at)
	st.Releases = append(st.Releases, reconcile.ReleaseStatus{Name: "rerank", State: reconcile.StateProgressing,
		Reason: "rollout paused: no data", Image: "r/rerank:ck-7", Replicas: 4, GPUsPerReplica: 1,
		Placement: schedule.Placement{"gpu-b": 1}, Rollout: pausedRollout(at)})
	st.Nodes[1].Releases["rerank"] = 1
	return st
}

func TestStepBar(t *testing.T) {
	segs := stepBar(midRollout(time.Now()))
	want := []stepSeg{{N: 1, Done: true}, {N: 2, Current: true, Ready: true}, {N: 3}}
	if fmt.Sprint(segs) != fmt.Sprint(want) {
		t.Errorf("step 2 of 3: %+v", segs)
	}
	segs = stepBar(pausedRollout(time.Now()))
	if len(segs) != 4 || !segs[0].Current || !segs[0].Paused || segs[0].Ready || segs[1].Done {
		t.Errorf("paused step 1 of 4: %+v", segs)
	}
	for _, ro := range []*reconcile.RolloutStatus{nil, {}, {RolloutState: planner.RolloutState{Step: 1, Steps: 1000}}} {
		if segs := stepBar(ro); segs != nil {
			t.Errorf("%+v: %v", ro, segs)
		}
	}
}

func TestPauseCode(t *testing.T) {
	for reason, want := range map[string]string{
		unreachable:              pausePrometheus,
		"Prometheus unreachable": pausePrometheus,
		"no data, not a pass: error_rate: the canary query: prometheus is unavailable: 503":             pausePrometheus,
		"no data, not a pass: error_rate: the canary query: the query returned no data":                 pauseNoData,
		"no data, not a pass: latency: no canary samples since the step started":                        pauseNoData,
		"no data, not a pass: latency has 3 of the 10 samples the 10m0s pause takes at a 1m0s interval": pauseFewSamples,
		"too few samples": pauseFewSamples,
		"paused by hand":  pauseManual,
		"something else":  pauseOther,
		"":                pauseOther,
	} {
		if got := pauseCode(reason); got != want {
			t.Errorf("pauseCode(%q) = %s, want %s", reason, got, want)
		}
	}
}

func TestStatusPageRollout(t *testing.T) {
	_, page := get(t, httptestURL(t, rolloutStatus())+"/")
	chat := section(page, `<tr class="rollout" id="rollout-chat">`, "</tr>")
	rerank := section(page, `<tr class="rollout" id="rollout-rerank">`, "</tr>")
	if chat == "" || rerank == "" {
		t.Fatalf("no rollout rows:\n%s", page)
	}
	for _, want := range []string{
		`<span class="stepbar" role="img" aria-label="step 2 of 3">`,
		`<span class="seg done" title="step 1: done">1</span>`,
		`<span class="seg current ready" title="step 2: now, ready">2</span>`,
		`<span class="seg" title="step 3">3</span>`,
		`step <b class="step">2 of 3</b>, <span class="ready">ready</span> (step pause 10m0s)`,
		`50% of traffic to the canary`,
		`Canary <code>5f3a9c1e</code>: 2 of 2 replicas available · stable <code>a1b2c3d4</code>: 2 of 2`,
		`Next: step 3 once every metric stays within bounds for the 10m pause (4m left)`,
		`Prestage: pulled r/chat:ck-2 on 2 nodes in 41s`,
		`Analysis: <span class="decision hold">hold</span>: the 10m0s pause ends at 15:04:00`,
		`0 of 2 failures allowed`,
		`<b>error_rate</b> &lt;= 0.01: <span class="k-canary">canary 0.004</span>, <span class="k-stable">stable 0.003</span>, <span class="pass">within</span>, 6 of 10 samples</figcaption>`,
		`<b>latency_p99</b> &lt;= 1.2 × stable:`, `dashed: the bound, a multiple of stable`,
	} {
		if !strings.Contains(chat, want) {
			t.Errorf("chat's rollout lacks %q", want)
		}
	}
	if n := strings.Count(chat, `<svg class="chart"`); n != 2 {
		t.Errorf("chat has %d charts, want 2", n)
	}
	if n := strings.Count(chat, `<polyline class="canary"`) + strings.Count(chat, `<polyline class="stable"`); n != 4 {
		t.Errorf("chat has %d series polylines, want 4", n)
	}
	for _, want := range []string{
		`<span class="seg current paused" title="step 1: now, not ready yet">1</span>`,
		`<div class="paused analysis">paused: Prometheus unreachable: Get &#34;http://prometheus:9090/api/v1/query&#34;`,
		`1 of 3 failures allowed`,
		// The stable version's availability is unknown (-1).
		`Canary <code>77e0aa12</code>: 1 of 1 replicas available · stable <code>0c0ffee0</code>: ? of 3`,
		`canary no data`, `>no data</text>`,
	} {
		if !strings.Contains(rerank, want) {
			t.Errorf("rerank's rollout lacks %q", want)
		}
	}
	if !strings.Contains(page, `<p id="rollout-counts"><a href="/?rollout=any">2 rollouts</a>, <a href="/?rollout=paused" class="paused">1 paused</a>: each shows under its release.</p>`) {
		t.Error("the rollout count is missing")
	}
	// The rows' order and parse are those of the releases.
	if got := rowStates(page); len(got) != 3 || got[0] != reconcile.StateBlocked {
		t.Errorf("rows %v", got)
	}
	if strings.Contains(page, "<script") {
		t.Error("the page has a script")
	}

	// Releases without a rollout add nothing.
	_, plain := get(t, httptestURL(t, sampleStatus())+"/")
	for _, absent := range []string{`class="rollout"`, "<svg", "rollout-counts"} {
		if strings.Contains(plain, absent) {
			t.Errorf("a page without rollouts has %q", absent)
		}
	}
}

// Everything a rollout carries is escaped: a release's names and the
// monitor's words come from specs and from Prometheus.
func TestStatusPageRolloutEscapes(t *testing.T) {
	st := rolloutStatus()
	ro := st.Releases[2].Rollout
	ro.Next = `<script>alert(1)</script>`
	ro.Prestage = `<img src=x onerror=alert(2)>`
	ro.Phase = `"><script>alert(3)</script>`
	ro.Analysis.Reason = `<b>bold</b>`
	ro.Analysis.Metrics[0].Name = `<svg onload=alert(4)>`
	ro.Analysis.Metrics[0].Bound = `<= 1 "x"`
	_, page := get(t, httptestURL(t, st)+"/")
	for _, bad := range []string{"<script", "<img", "<b>bold", "<svg onload"} {
		if strings.Contains(page, bad) {
			t.Errorf("page has %q unescaped", bad)
		}
	}
	for _, want := range []string{"&lt;script&gt;alert(1)", "&lt;img src=x", "paused: &lt;b&gt;bold&lt;/b&gt;", "&lt;svg onload=alert(4)&gt;"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
}

// /api/status carries the rollout as the engine gives it, and a NaN the
// monitor let through does not break it.
func TestAPIStatusRollout(t *testing.T) {
	st := rolloutStatus()
	h := (&Server{Status: fixedStatus(st)}).Handler()
	code, body := serve(t, h, "/api/status?release=chat")
	var out struct {
		Releases []map[string]json.RawMessage `json:"releases"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &out) != nil || len(out.Releases) != 1 {
		t.Fatalf("/api/status?release=chat = %d %.300s", code, body)
	}
	var ro map[string]any
	if err := json.Unmarshal(out.Releases[0]["rollout"], &ro); err != nil {
		t.Fatalf("rollout: %v in %s", err, out.Releases[0]["rollout"])
	}
	for _, k := range []string{"phase", "canary", "stable", "step", "steps", "canary_replicas", "stable_replicas", "canary_available",
		"stable_available", "canary_shards", "stable_shards", "weight", "ready", "pause_ns", "next", "prestage", "analysis"} {
		if _, ok := ro[k]; !ok {
			t.Errorf("rollout lacks %q", k)
		}
	}
	if ro["step"] != 2.0 || ro["steps"] != 3.0 || ro["weight"] != 50.0 || ro["ready"] != true || ro["canary"] != "5f3a9c1e" || ro["pause_ns"] != float64(10*time.Minute) {
		t.Errorf("rollout: %v", ro)
	}
	a, _ := ro["analysis"].(map[string]any)
	for _, k := range []string{"time", "decision", "reason", "failures", "failure_limit", "metrics"} {
		if _, ok := a[k]; !ok {
			t.Errorf("analysis lacks %q", k)
		}
	}
	ms, _ := a["metrics"].([]any)
	if len(ms) != 2 || a["decision"] != "hold" {
		t.Fatalf("analysis: %v", a)
	}
	m, _ := ms[0].(map[string]any)
	for _, k := range []string{"name", "bound", "canary", "stable", "pass", "samples", "needed", "canary_series", "stable_series"} {
		if _, ok := m[k]; !ok {
			t.Errorf("metric lacks %q", k)
		}
	}
	// The canary's 40 NaN minutes are left out; the stable's 61 points stay.
	cs, _ := m["canary_series"].([]any)
	ss, _ := m["stable_series"].([]any)
	if len(cs) != 21 || len(ss) != 61 {
		t.Errorf("series of %d and %d points, want 21 and 61", len(cs), len(ss))
	}
	if p, _ := ss[0].(map[string]any); p["t"] == nil || p["v"] == nil {
		t.Errorf("point: %v", ss[0])
	}
	if st.Releases[0].Rollout.Analysis.Metrics[0].CanarySeries[0].V == st.Releases[0].Rollout.Analysis.Metrics[0].CanarySeries[0].V {
		t.Error("the status's own series was changed") // NaN != NaN
	}

	// A NaN latest value becomes no value, not a broken body.
	st.Releases[2].Rollout.Analysis.Metrics[0].Canary = f64(math.Inf(1))
	code, body = serve(t, (&Server{Status: fixedStatus(st)}).Handler(), "/api/status")
	var all apiStatus
	if code != 200 || json.Unmarshal([]byte(body), &all) != nil || all.Releases[2].Rollout.Analysis.Metrics[0].Canary != nil {
		t.Errorf("/api/status with an Inf: %d %.300s", code, body)
	}
	if _, page := serve(t, (&Server{Status: fixedStatus(sampleStatus())}).Handler(), "/api/status"); strings.Contains(page, `"rollout"`) {
		t.Error("a release without a rollout has one in /api/status")
	}
}

func TestRolloutMetrics(t *testing.T) {
	st := rolloutStatus()
	src := &mutableStatus{st: st}
	s := &Server{Status: src, Metrics: NewMetrics()}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	_, body := get(t, ts.URL+"/metrics")
	want := []string{
		`gantry_rollout_step{release="chat"} 2`, `gantry_rollout_steps{release="chat"} 3`,
		`gantry_rollout_canary_weight{release="chat"} 50`, `gantry_rollout_paused{reason="",release="chat"} 0`,
		`gantry_rollout_failures{release="chat"} 0`,
		`gantry_rollout_analysis_value{metric="error_rate",release="chat",version="canary"} 0.004`,
		`gantry_rollout_analysis_value{metric="error_rate",release="chat",version="stable"} 0.003`,
		`gantry_rollout_analysis_value{metric="latency_p99",release="chat",version="canary"} 0.42`,
		`gantry_rollout_analysis_value{metric="latency_p99",release="chat",version="stable"} 0.38`,
		`gantry_rollout_step{release="rerank"} 1`, `gantry_rollout_steps{release="rerank"} 4`,
		`gantry_rollout_canary_weight{release="rerank"} 25`,
		`gantry_rollout_paused{reason="prometheus_unavailable",release="rerank"} 1`,
		`gantry_rollout_failures{release="rerank"} 1`,
	}
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}
	for _, absent := range []string{`release="embed"`, `release="rerank",version=`, `metric="error_rate",release="rerank"`} {
		if strings.Contains(body, absent) {
			t.Errorf("/metrics has %s", absent)
		}
	}

	// The gauges follow the status at each scrape: the monitor's next
	// analysis shows without a reconcile, and a rollout that ends goes.
	st.Releases[0].Rollout = nil
	ro := *st.Releases[2].Rollout
	a := *ro.Analysis
	a.Decision, a.Reason = "pause", "no data, not a pass: error_rate has 3 of the 30 samples the 30m0s pause takes at a 1m0s interval"
	ro.Analysis = &a
	st.Releases[2].Rollout = &ro
	src.set(st)
	if n := testutil.CollectAndCount(rolloutCollector{s.Metrics}); n != 5 {
		t.Errorf("%d rollout series after chat's rollout ended, want rerank's 5", n)
	}
	if err := testutil.CollectAndCompare(rolloutCollector{s.Metrics}, strings.NewReader(`
# HELP gantry_rollout_paused 1 while the last analysis of a release's rollout paused it for missing data, with why (prometheus_unavailable, no_data, too_few_samples, manual, other); else 0, without a reason.
# TYPE gantry_rollout_paused gauge
gantry_rollout_paused{reason="too_few_samples",release="rerank"} 1
`), "gantry_rollout_paused"); err != nil {
		t.Error(err)
	}

	// Without a server, the gauges are those of the releases Releases
	// was last given.
	m := NewMetrics()
	m.Releases(rolloutStatus().Releases)
	if got := gaugeValue(t, m, "gantry_rollout_step", "chat"); got != 2 {
		t.Errorf("gantry_rollout_step{chat} = %v from Releases", got)
	}
}

// The rollout series grow with the rollouts, not with the releases.
func TestRolloutMetricsSeriesAtScale(t *testing.T) {
	st := bigStatus(10000, 5000)
	at := time.Now()
	for i := range 20 {
		st.Releases[i*500].Rollout = midRollout(at)
	}
	m := NewMetrics()
	m.WatchRollouts(fixedStatus(st))
	// 20 rollouts: step, steps, weight, paused, failures, and 2 metrics
	// × 2 versions each.
	if n := testutil.CollectAndCount(rolloutCollector{m}); n != 20*9 {
		t.Errorf("%d rollout series for 20 rollouts of 10,000 releases, want %d", n, 20*9)
	}
	m.WatchRollouts(fixedStatus(bigStatus(10000, 5000)))
	if n := testutil.CollectAndCount(rolloutCollector{m}); n != 0 {
		t.Errorf("%d rollout series without rollouts", n)
	}
}

// A page of rollouts stays small enough: a page of 100 releases all
// rolling out, with two charted metrics each, of a fleet of 10,000.
func TestStatusPageRolloutsAtScale(t *testing.T) {
	st := bigStatus(10000, 5000)
	at := time.Now()
	for i := range st.Releases {
		if i%50 == 0 { // the 200 failed releases, the first two pages
			st.Releases[i].Rollout = midRollout(at)
		}
	}
	h := (&Server{Status: fixedStatus(st)}).Handler()
	_, plain := serve(t, (&Server{Status: fixedStatus(bigStatus(10000, 5000))}).Handler(), "/")
	start := time.Now()
	code, page := serve(t, h, "/")
	took := time.Since(start)
	if code != 200 || strings.Count(page, `<tr class="rollout"`) != defaultPerPage || strings.Count(page, `<svg class="chart"`) != 2*defaultPerPage {
		t.Fatalf("GET / = %d with %d rollout rows", code, strings.Count(page, `<tr class="rollout"`))
	}
	per := (len(page) - len(plain)) / defaultPerPage
	t.Logf("100 rollouts on the page: %d bytes (%d without), %d a rollout; rendered in %v", len(page), len(plain), per, took)
	if per > 6<<10 {
		t.Errorf("a rollout adds %d bytes to the page, want at most 6 KiB", per)
	}
	if len(page) > 1<<20 {
		t.Errorf("page is %d bytes, want under 1 MiB", len(page))
	}
}

// mutableStatus is a status that changes between scrapes.
type mutableStatus struct {
	st reconcile.Status
}

func (m *mutableStatus) Status() reconcile.Status {
	st := m.st
	st.Releases = append([]reconcile.ReleaseStatus(nil), m.st.Releases...)
	return st
}

func (m *mutableStatus) set(st reconcile.Status) { m.st = st }

// gaugeValue is the named rollout gauge of a release in m's registry.
func gaugeValue(t *testing.T, m *Metrics, name, release string) float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "release" && l.GetValue() == release {
					return s.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{release=%q}", name, release)
	return 0
}

// ?rollout= lists the releases with a rollout, or those paused, on the
// page and in /api/status; links and the form keep it.
func TestRolloutFilter(t *testing.T) {
	h := (&Server{Status: fixedStatus(rolloutStatus())}).Handler()
	_, page := serve(t, h, "/")
	for _, want := range []string{`<a href="/?rollout=any">2 rollouts</a>`, `<a href="/?rollout=paused" class="paused">1 paused</a>`, `<select name="rollout">`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	for url, want := range map[string][]string{
		"/?rollout=any":              {"chat", "rerank"},
		"/?rollout=paused":           {"rerank"},
		"/?rollout=paused&q=chat":    nil,
		"/?rollout=any&state=failed": nil,
	} {
		code, page := serve(t, h, url)
		var got []string
		for _, row := range strings.Split(page, `<tr id="release-`)[1:] {
			name, _, _ := strings.Cut(row, `"`)
			got = append(got, name)
		}
		if code != 200 || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %d, releases %v, want %v", url, code, got, want)
		}
	}
	_, page = serve(t, h, "/?rollout=paused")
	if !strings.Contains(page, `<option value="paused" selected>paused</option>`) || !strings.Contains(page, `class="paused active"`) || !strings.Contains(page, `id="clear"`) {
		t.Error("the rollout filter is not shown as set")
	}
	if code, _ := serve(t, h, "/?rollout=maybe"); code != 400 {
		t.Errorf("rollout=maybe = %d, want 400", code)
	}
	code, body := serve(t, h, "/api/status?rollout=paused")
	var out apiStatus
	if code != 200 || json.Unmarshal([]byte(body), &out) != nil || out.Total != 1 || out.Releases[0].Name != "rerank" {
		t.Errorf("/api/status?rollout=paused = %d %.300s", code, body)
	}
	// Without rollouts there is no rollout filter to offer.
	_, plain := serve(t, (&Server{Status: fixedStatus(sampleStatus())}).Handler(), "/")
	if strings.Contains(plain, `name="rollout"`) {
		t.Error("a page without rollouts offers the rollout filter")
	}
}

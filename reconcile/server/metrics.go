package server

import (
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantry-dev/gantry/reconcile"
)

// Metrics are the daemon's Prometheus metrics. It is a reconcile.Observer.
//
// The number of series does not grow with the number of releases unless
// PerRelease is set: gantry_releases{state} counts releases by state.
// The gantry_rollout_ gauges have series per release with a rollout
// only, whatever PerRelease: a few per rollout, and per analysis metric.
// A fleet adds gantry_cluster_up{cluster} and
// gantry_cluster_releases{cluster, state}: clusters × states series,
// whatever the number of releases.
type Metrics struct {
	Registry *prometheus.Registry
	// PerRelease adds series per release: gantry_release_state{release,
	// state}, one per release and state, and the release label of
	// gantry_quantized_bytes_total and gantry_pushed_bytes_total (empty
	// without it, which Prometheus stores as no label). At 10,000
	// releases that is 90,000 series, so it is off by default (gantry run
	// --metrics-per-release). Set it before the first reconcile.
	PerRelease bool

	reconciles    *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	revision      *prometheus.GaugeVec
	releases      *prometheus.GaugeVec
	releaseState  *prometheus.GaugeVec
	quantized     *prometheus.CounterVec
	pushed        *prometheus.CounterVec
	fetchErrors   prometheus.Counter
	webhooks      *prometheus.CounterVec
	lastReconcile prometheus.Gauge

	mu      sync.Mutex
	lastRev string
	extra   map[string]bool // states outside reconcile's, last counted
	// rolloutSrc is where the rollout gauges are read at each scrape
	// (set by WatchRollouts); without one, rollouts is what Releases
	// was last given, the releases with a rollout.
	rolloutSrc StatusSource
	rollouts   []reconcile.ReleaseStatus
}

var _ reconcile.Observer = (*Metrics)(nil)

// NewMetrics registers every metric in a new registry, with the Go and
// process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_reconcile_total", Help: "Reconciles by result (success, invalid, error).",
		}, []string{"result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gantry_reconcile_duration_seconds", Help: "How long reconciles take, by result.",
			Buckets: []float64{0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600},
		}, []string{"result"}),
		revision: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gantry_revision_info", Help: "The Git revision last reconciled (value 1).",
		}, []string{"revision"}),
		releases: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gantry_releases", Help: "Releases by state (failed, blocked, unplaceable, pending, degraded, progressing, synced) after the last reconcile.",
		}, []string{"state"}),
		releaseState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gantry_release_state", Help: "1 for each release's current state (failed, blocked, unplaceable, pending, degraded, progressing, synced); only with --metrics-per-release.",
		}, []string{"release", "state"}),
		quantized: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_quantized_bytes_total", Help: "Bytes of quantized model output, by release with --metrics-per-release.",
		}, []string{"release"}),
		pushed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_pushed_bytes_total", Help: "Bytes of model files pushed, by release with --metrics-per-release.",
		}, []string{"release"}),
		fetchErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gantry_git_fetch_errors_total", Help: "Failed Git clones and fetches.",
		}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gantry_webhook_requests_total", Help: "Webhook requests by provider and result (accepted, ignored, unauthorized, bad_request).",
		}, []string{"provider", "result"}),
		lastReconcile: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gantry_last_reconcile_timestamp_seconds", Help: "When the last reconcile finished (Unix time).",
		}),
	}
	m.Registry.MustRegister(m.reconciles, m.duration, m.revision, m.releases, m.releaseState, m.quantized, m.pushed,
		m.fetchErrors, m.webhooks, m.lastReconcile, rolloutCollector{m}, clusterCollector{m},
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// Reconciled records one reconcile.
func (m *Metrics) Reconciled(result string, d time.Duration, revision string) {
	m.reconciles.WithLabelValues(result).Inc()
	m.duration.WithLabelValues(result).Observe(d.Seconds())
	m.lastReconcile.SetToCurrentTime()
	if revision == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if revision != m.lastRev {
		m.revision.Reset()
		m.revision.WithLabelValues(revision).Set(1)
		m.lastRev = revision
	}
}

// Quantized counts quantized output.
func (m *Metrics) Quantized(release string, bytes int64) {
	m.quantized.WithLabelValues(m.releaseLabel(release)).Add(float64(bytes))
}

// Pushed counts pushed model bytes.
func (m *Metrics) Pushed(release string, bytes int64) {
	m.pushed.WithLabelValues(m.releaseLabel(release)).Add(float64(bytes))
}

func (m *Metrics) releaseLabel(release string) string {
	if m.PerRelease {
		return release
	}
	return ""
}

// FetchError counts a failed Git fetch.
func (m *Metrics) FetchError(error) { m.fetchErrors.Inc() }

// Releases counts the releases by state and, with PerRelease, sets each
// release's state gauge, forgetting releases that left.
func (m *Metrics) Releases(rs []reconcile.ReleaseStatus) {
	counts := countStates(rs)
	m.mu.Lock()
	defer m.mu.Unlock()
	// Every known state always has a series, 0 included, so a rule on
	// one state never sees it vanish; a state reconcile does not list
	// (none today) gets one while releases are in it.
	for state, n := range counts {
		m.releases.WithLabelValues(state).Set(float64(n))
	}
	for state := range m.extra {
		if _, ok := counts[state]; !ok {
			m.releases.DeleteLabelValues(state)
		}
	}
	m.extra = map[string]bool{}
	for state := range counts {
		if !slices.Contains(states, state) {
			m.extra[state] = true
		}
	}

	// A new slice, not m.rollouts[:0]: a scrape may still be reading
	// the last one outside the lock.
	m.rollouts = nil
	for _, r := range rs {
		if r.Rollout != nil {
			m.rollouts = append(m.rollouts, r)
		}
	}

	m.releaseState.Reset()
	if !m.PerRelease {
		return
	}
	for _, r := range rs {
		for _, s := range states {
			v := 0.0
			if r.State == s {
				v = 1
			}
			m.releaseState.WithLabelValues(r.Name, s).Set(v)
		}
	}
}

// WatchRollouts makes the rollout gauges follow src, read at each scrape:
// the monitor records its analyses between reconciles (SetAnalysis), and
// a pause must show when it happens, not at the next reconcile.
// Server.Handler calls it with the server's Status. Without it the gauges
// are those of the releases last given to Releases. The cluster gauges
// are read from src too, and there are none without it.
func (m *Metrics) WatchRollouts(src StatusSource) {
	m.mu.Lock()
	m.rolloutSrc = src
	m.mu.Unlock()
}

// The rollout gauges, per release with a rollout.
var (
	rolloutStepDesc = prometheus.NewDesc("gantry_rollout_step",
		"The step a release's rollout is at (from 1).", []string{"release"}, nil)
	rolloutStepsDesc = prometheus.NewDesc("gantry_rollout_steps",
		"How many steps a release's rollout has.", []string{"release"}, nil)
	rolloutWeightDesc = prometheus.NewDesc("gantry_rollout_canary_weight",
		"The percent of a release's traffic its rollout sends to the canary.", []string{"release"}, nil)
	rolloutPausedDesc = prometheus.NewDesc("gantry_rollout_paused",
		"1 while the last analysis of a release's rollout paused it for missing data, with why (prometheus_unavailable, no_data, too_few_samples, manual, other); else 0, without a reason.",
		[]string{"release", "reason"}, nil)
	rolloutValueDesc = prometheus.NewDesc("gantry_rollout_analysis_value",
		"The latest value of an analysis metric of a release's rollout, for the canary and the stable version (none while it has no data).",
		[]string{"release", "metric", "version"}, nil)
	rolloutFailuresDesc = prometheus.NewDesc("gantry_rollout_failures",
		"Failed analysis evaluations of the current step of a release's rollout (failure_limit of them abort it).", []string{"release"}, nil)
)

// rolloutCollector serves the rollout gauges from the status at scrape
// time: releases whose rollout ended leave no series behind.
type rolloutCollector struct{ m *Metrics }

func (c rolloutCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{rolloutStepDesc, rolloutStepsDesc, rolloutWeightDesc, rolloutPausedDesc, rolloutValueDesc, rolloutFailuresDesc} {
		ch <- d
	}
}

func (c rolloutCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	src, rs := c.m.rolloutSrc, c.m.rollouts
	c.m.mu.Unlock()
	if src != nil {
		rs = src.Status().Releases
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	seen := map[string]bool{}
	for _, r := range rs {
		ro := r.Rollout
		if ro == nil || seen[r.Name] {
			continue
		}
		seen[r.Name] = true
		gauge(rolloutStepDesc, float64(ro.Step), r.Name)
		gauge(rolloutStepsDesc, float64(ro.Steps), r.Name)
		gauge(rolloutWeightDesc, float64(ro.Weight), r.Name)
		paused, reason, failures := 0.0, "", 0
		if a := ro.Analysis; a != nil {
			failures = a.Failures
			if a.Decision == decisionPause {
				paused, reason = 1, pauseCode(a.Reason)
			}
			metrics := map[string]bool{}
			for _, ma := range a.Metrics {
				if metrics[ma.Name] { // a duplicate would fail the scrape
					continue
				}
				metrics[ma.Name] = true
				for _, v := range []struct {
					version string
					v       *float64
				}{{"canary", ma.Canary}, {"stable", ma.Stable}} {
					if v.v != nil && finite(*v.v) {
						gauge(rolloutValueDesc, *v.v, r.Name, ma.Name, v.version)
					}
				}
			}
		}
		gauge(rolloutPausedDesc, paused, r.Name, reason)
		gauge(rolloutFailuresDesc, float64(failures), r.Name)
	}
}

// The cluster gauges of a fleet.
var (
	clusterUpDesc = prometheus.NewDesc("gantry_cluster_up",
		"1 if the last reconcile observed the cluster, 0 if it could not (nothing changed there).", []string{"cluster"}, nil)
	clusterReleasesDesc = prometheus.NewDesc("gantry_cluster_releases",
		"Releases that run in the cluster, by their state there (failed, blocked, unplaceable, pending, degraded, progressing, synced); every state always has a series.",
		[]string{"cluster", "state"}, nil)
)

// clusterCollector serves the cluster gauges from the status at scrape
// time: a series per cluster, and per cluster and state. A cluster that
// left the specs leaves no series behind.
type clusterCollector struct{ m *Metrics }

func (c clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- clusterUpDesc
	ch <- clusterReleasesDesc
}

func (c clusterCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	src := c.m.rolloutSrc
	c.m.mu.Unlock()
	if src == nil {
		return
	}
	st := src.Status()
	if len(st.Clusters) == 0 {
		return
	}
	counts := make(map[string]map[string]int, len(st.Clusters))
	for _, cl := range st.Clusters {
		if counts[cl.Name] != nil { // a duplicate would fail the scrape
			continue
		}
		counts[cl.Name] = make(map[string]int, len(states))
		for _, s := range states {
			counts[cl.Name][s] = 0
		}
		up := 0.0
		if cl.Reachable {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(clusterUpDesc, prometheus.GaugeValue, up, cl.Name)
	}
	for i := range st.Releases {
		r := &st.Releases[i]
		for k := range r.Clusters {
			by := counts[r.Clusters[k].Cluster]
			if by == nil {
				continue // a cell of no cluster the status lists
			}
			state, _ := stateIn(r, &r.Clusters[k])
			by[state]++
		}
	}
	for cluster, by := range counts {
		for state, n := range by {
			ch <- prometheus.MustNewConstMetric(clusterReleasesDesc, prometheus.GaugeValue, float64(n), cluster, state)
		}
	}
}

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
		m.fetchErrors, m.webhooks, m.lastReconcile,
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

package monitor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"text/template"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// ErrUnavailable wraps every failure to reach Prometheus or to run a
// query; ErrNoData is a query that ran and returned nothing. Neither is a
// decision: callers change nothing and report it.
var (
	ErrUnavailable = errors.New("prometheus is unavailable")
	ErrNoData      = errors.New("the query returned no data")
)

// Prom runs queries against a Prometheus server with client_golang's v1
// API. Each query gets its own timeout.
type Prom struct {
	API v1.API
	// Timeout bounds one query; default 10s.
	Timeout time.Duration
}

// NewProm connects to the Prometheus at url (http://host:9090).
func NewProm(url string) (*Prom, error) {
	c, err := api.NewClient(api.Config{Address: url})
	if err != nil {
		return nil, fmt.Errorf("prometheus %s: %w", url, err)
	}
	return &Prom{API: v1.NewAPI(c)}, nil
}

func (p *Prom) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	d := p.Timeout
	if d <= 0 {
		d = 10 * time.Second
	}
	return context.WithTimeout(ctx, d)
}

// Query returns the query's single value at t. An instant vector must
// have exactly one series (wrap the query in sum() otherwise).
func (p *Prom) Query(ctx context.Context, q string, t time.Time) (float64, error) {
	ctx, cancel := p.ctx(ctx)
	defer cancel()
	v, _, _, err := p.API.Query(ctx, q, t)
	if err != nil {
		return 0, fmt.Errorf("%w: query %q: %w", ErrUnavailable, q, err)
	}
	switch v := v.(type) {
	case *model.Scalar:
		return checkValue(q, float64(v.Value))
	case model.Vector:
		switch len(v) {
		case 0:
			return 0, fmt.Errorf("query %q: %w", q, ErrNoData)
		case 1:
			return checkValue(q, float64(v[0].Value))
		}
		return 0, fmt.Errorf("query %q returned %d series, want one (wrap it in sum())", q, len(v))
	}
	return 0, fmt.Errorf("query %q returned a %s, want a scalar or a one-series vector", q, v.Type())
}

func checkValue(q string, v float64) (float64, error) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("query %q: %w (the value is %g)", q, ErrNoData, v)
	}
	return v, nil
}

// Range returns the query's samples from start to end, oldest first. The
// result must have at most one series.
func (p *Prom) Range(ctx context.Context, q string, start, end time.Time, step time.Duration) ([]Sample, error) {
	ctx, cancel := p.ctx(ctx)
	defer cancel()
	v, _, _, err := p.API.QueryRange(ctx, q, v1.Range{Start: start, End: end, Step: step})
	if err != nil {
		return nil, fmt.Errorf("%w: query %q: %w", ErrUnavailable, q, err)
	}
	m, ok := v.(model.Matrix)
	if !ok {
		return nil, fmt.Errorf("range query %q returned a %s, want a matrix", q, v.Type())
	}
	switch len(m) {
	case 0:
		return nil, fmt.Errorf("query %q: %w", q, ErrNoData)
	case 1:
	default:
		return nil, fmt.Errorf("query %q returned %d series, want one (wrap it in sum())", q, len(m))
	}
	out := make([]Sample, 0, len(m[0].Values))
	for _, s := range m[0].Values {
		if f := float64(s.Value); !math.IsNaN(f) && !math.IsInf(f, 0) {
			out = append(out, Sample{Time: s.Timestamp.Time(), Value: f})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("query %q: %w", q, ErrNoData)
	}
	return out, nil
}

// Connections runs q, which must return an instant vector with a "node"
// label (for example sum by (node) (vllm:num_requests_running)), and
// returns the value per node: the live connections weighted least
// connections places new replicas by. Series without a node label are
// ignored; an empty result is an empty map, not an error.
func (p *Prom) Connections(ctx context.Context, q string) (map[string]float64, error) {
	ctx, cancel := p.ctx(ctx)
	defer cancel()
	v, _, _, err := p.API.Query(ctx, q, time.Now())
	if err != nil {
		return nil, fmt.Errorf("%w: query %q: %w", ErrUnavailable, q, err)
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("connections query %q returned a %s, want a vector by node", q, v.Type())
	}
	out := make(map[string]float64, len(vec))
	for _, s := range vec {
		node := string(s.Metric["node"])
		if node == "" || math.IsNaN(float64(s.Value)) {
			continue
		}
		out[node] += float64(s.Value)
	}
	return out, nil
}

// QueryVars fill a query template: {{.Release}}, {{.Namespace}} and
// {{.Pods}}, a regular expression matching the release's pods; in a
// rollout's analysis, {{.Version}} (the 8-hex version queried) and a
// {{.Pods}} that matches only that version's pods.
type QueryVars struct {
	Release, Namespace, Pods string
	Version                  string
}

// VarsFor is the template data for a release.
func VarsFor(namespace, release string) QueryVars {
	return QueryVars{Release: release, Namespace: namespace, Pods: release + "-.*"}
}

// VersionVars is the template data for one version of a release, whose
// pods are those of the Deployments shards.
func VersionVars(namespace, release, version string, shards []string) QueryVars {
	return QueryVars{Release: release, Namespace: namespace, Version: version, Pods: PodsRegex(shards)}
}

// PodsRegex is a RE2 regular expression (PromQL anchors it) matching the
// pods of the Deployments named: a Deployment D's pods are D-<replica
// set hash>-<5 characters>. With no Deployment it matches nothing.
func PodsRegex(deployments []string) string {
	if len(deployments) == 0 {
		return "$^"
	}
	quoted := make([]string, len(deployments))
	for i, d := range deployments {
		quoted[i] = regexp.QuoteMeta(d)
	}
	return "(?:" + strings.Join(quoted, "|") + ")-[a-z0-9]+-[a-z0-9]+"
}

// Render fills a query template. Unknown fields are errors, so that a
// typo does not silently query the wrong series.
func Render(query string, vars QueryVars) (string, error) {
	t, err := template.New("query").Option("missingkey=error").Parse(query)
	if err != nil {
		return "", fmt.Errorf("query template: %w", err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, vars); err != nil {
		return "", fmt.Errorf("query template: %w", err)
	}
	return strings.TrimSpace(b.String()), nil
}

package server

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/reconcile"
)

// The monitoring examples (Grafana dashboard, PrometheusRule) use only
// series /metrics serves, and their alerts work without
// --metrics-per-release.
const monitoring = "../../examples/monitoring"

type promRule struct {
	Spec struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

func TestMonitoringExamples(t *testing.T) {
	// Every series the metrics can have, per-release ones included.
	m := NewMetrics()
	m.PerRelease = true
	m.Reconciled("success", time.Second, "abc")
	m.Quantized("chat", 1)
	m.Pushed("chat", 1)
	m.FetchError(nil)
	m.webhooks.WithLabelValues("github", "accepted").Inc()
	m.Releases(rolloutStatus().Releases) // with a rollout, for the gantry_rollout_ series
	// A fleet's, for the gantry_cluster_ series.
	fleet := NewMetrics()
	fleet.WatchRollouts(fixedStatus(fleetStatus()))
	served := map[string]bool{}
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	more, err := fleet.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range append(mfs, more...) {
		served[mf.GetName()] = true
		if ms := mf.GetMetric(); len(ms) > 0 && ms[0].GetHistogram() != nil {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				served[mf.GetName()+s] = true
			}
		}
	}

	name := regexp.MustCompile(`gantry_[a-z_]+`)
	var exprs []string
	dash, err := os.ReadFile(filepath.Join(monitoring, "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(dash, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	raw, err := os.ReadFile(filepath.Join(monitoring, "prometheusrule.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rule promRule
	if err := yaml.Unmarshal(raw, &rule); err != nil || len(rule.Spec.Groups) == 0 {
		t.Fatalf("prometheusrule.yaml: %v", err)
	}
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
			if strings.Contains(r.Expr, "gantry_release_state") {
				t.Errorf("alert %s needs --metrics-per-release: %s", r.Alert, r.Expr)
			}
		}
	}
	// The README table and the comments name metrics too.
	readme, _ := os.ReadFile(filepath.Join(monitoring, "README.md"))
	for _, text := range append(exprs, string(raw), string(readme)) {
		for _, n := range name.FindAllString(text, -1) {
			if !served[n] {
				t.Errorf("examples/monitoring uses %s, which /metrics does not serve", n)
			}
		}
	}
	if !strings.Contains(strings.Join(exprs, "\n"), "gantry_releases") {
		t.Error("no panel or alert uses gantry_releases")
	}

	t.Run("promtool", func(t *testing.T) { promtoolRules(t, raw) })
}

// promtoolRules checks the rules and runs an alert test with promtool,
// when it is installed (it is not part of Go's toolchain).
func promtoolRules(t *testing.T, raw []byte) {
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed")
	}
	dir := t.TempDir()
	// promtool reads the spec of the PrometheusRule: its groups, whole.
	var full map[string]any
	if err := yaml.Unmarshal(raw, &full); err != nil {
		t.Fatal(err)
	}
	groups, err := yaml.Marshal(full["spec"])
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "rules.yaml"), groups, 0o644)
	desc := func(n, state string) string {
		return n + " releases have been " + state + " for 15 minutes (the releases may change, the count has not dropped to 0). " +
			"The status page lists them worst first: /?state=" + state + "."
	}
	test := map[string]any{
		"rule_files":          []string{"rules.yaml"},
		"evaluation_interval": "1m",
		"tests": []any{map[string]any{
			"interval": "1m",
			"input_series": []any{
				map[string]any{"series": `gantry_releases{state="failed"}`, "values": "3x30"},
				map[string]any{"series": `gantry_releases{state="blocked"}`, "values": "0x30"},
				map[string]any{"series": `gantry_releases{state="synced"}`, "values": "9997x30"},
			},
			"alert_rule_test": []any{
				// for: 15m
				map[string]any{"eval_time": "10m", "alertname": "GantryReleasesUnhealthy", "exp_alerts": []any{}},
				map[string]any{"eval_time": "20m", "alertname": "GantryReleasesUnhealthy", "exp_alerts": []any{map[string]any{
					"exp_labels":      map[string]string{"severity": "warning", "state": reconcile.StateFailed},
					"exp_annotations": map[string]string{"summary": "3 releases are failed", "description": desc("3", "failed")},
				}}},
			},
		}},
	}
	b, _ := yaml.Marshal(test)
	os.WriteFile(filepath.Join(dir, "test.yaml"), b, 0o644)
	for _, args := range [][]string{{"check", "rules", "rules.yaml"}, {"test", "rules", "test.yaml"}} {
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

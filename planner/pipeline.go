package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/gantry-dev/gantry/spec"
)

// FuserVersion is part of the content key of every release with adapters.
// Bump it whenever the merged weights for the same inputs change.
const FuserVersion = "gantry-lora/1"

// adapterKey is one adapter in a content key.
type adapterKey struct {
	Digest  string  `json:"digest"`
	Scale   float64 `json:"scale"`
	Version string  `json:"fuser"`
}

// EvalResult is what one evaluator said of one build.
type EvalResult struct {
	Metrics map[string]float64 `json:"metrics"`
	// Seconds is how long the run took.
	Seconds float64 `json:"seconds,omitempty"`
}

// EvalAction is the part of an eval action a reader needs: which
// evaluator, which metrics it bounds, and, when the engine has run it on
// this build before (a cached result), its values against the bounds.
type EvalAction struct {
	Name    string       `json:"name"`
	Metrics []string     `json:"metrics"`
	Cached  *EvalResult  `json:"cached,omitempty"`
	Checks  []BoundCheck `json:"checks,omitempty"`
}

// EvalSpecHash identifies what an evaluator runs: its command, image and
// environment. Its bounds are not part of it, so that tightening a bound
// does not run the evaluator again.
func EvalSpecHash(ev *spec.Eval) string {
	v := struct {
		Command []string          `json:"command,omitempty"`
		Image   string            `json:"image,omitempty"`
		Env     map[string]string `json:"env,omitempty"`
	}{ev.Command, ev.Image, ev.Env}
	b, _ := json.Marshal(v)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// EvalKey is the cache key of evaluator ev's result on the build with
// content key key.
func EvalKey(key string, ev *spec.Eval) string {
	sum := sha256.Sum256([]byte(key + "\x00" + EvalSpecHash(ev)))
	return hex.EncodeToString(sum[:])
}

// Bound kinds.
const (
	BoundMin   = "min"
	BoundMax   = "max"
	BoundRatio = "max_ratio_to_baseline"
)

// BoundCheck is one bound of an eval checked against a result.
type BoundCheck struct {
	Eval   string  `json:"eval"`
	Metric string  `json:"metric"`
	Kind   string  `json:"kind"`
	Bound  float64 `json:"bound"`
	Value  float64 `json:"value"`
	// Baseline is the serving build's value, for a ratio bound.
	Baseline *float64 `json:"baseline,omitempty"`
	// Missing: the evaluator's output lacks the metric (a failed check).
	Missing bool `json:"missing,omitempty"`
	// Skipped says why a ratio bound was not checked (no baseline).
	Skipped string `json:"skipped,omitempty"`
	OK      bool   `json:"ok"`
}

// CheckEval checks ev's bounds against candidate's metrics, and its ratio
// bounds against baseline's (nil: nothing serves yet, and those bounds
// are skipped). Checks come metric by metric, min before max before
// ratio.
func CheckEval(ev *spec.Eval, candidate map[string]float64, baseline map[string]float64, noBaseline string) []BoundCheck {
	var out []BoundCheck
	for _, m := range ev.Metrics() {
		v, have := candidate[m]
		if b, ok := ev.Min[m]; ok {
			out = append(out, BoundCheck{Eval: ev.Name, Metric: m, Kind: BoundMin, Bound: b, Value: v, Missing: !have, OK: have && v >= b})
		}
		if b, ok := ev.Max[m]; ok {
			out = append(out, BoundCheck{Eval: ev.Name, Metric: m, Kind: BoundMax, Bound: b, Value: v, Missing: !have, OK: have && v <= b})
		}
		if ratio, ok := ev.MaxRatioToBaseline[m]; ok {
			c := BoundCheck{Eval: ev.Name, Metric: m, Kind: BoundRatio, Bound: ratio, Value: v, Missing: !have}
			base, haveBase := baseline[m]
			switch {
			case !have:
			case baseline == nil:
				c.Skipped, c.OK = noBaseline, true
			case !haveBase:
				c.Skipped, c.OK = "the baseline's output lacks it", true
			default:
				c.Baseline = &base
				c.OK = v <= ratio*base
			}
			out = append(out, c)
		}
	}
	return out
}

// String says the check in a line: the value against its bound and, for
// a miss, by how much.
func (c BoundCheck) String() string {
	if c.Missing {
		return fmt.Sprintf("%s is missing from the output of eval %s", c.Metric, c.Eval)
	}
	switch c.Kind {
	case BoundMin:
		if c.OK {
			return fmt.Sprintf("%s = %s >= min %s", c.Metric, num(c.Value), num(c.Bound))
		}
		return fmt.Sprintf("%s = %s is below min %s by %s", c.Metric, num(c.Value), num(c.Bound), num(c.Bound-c.Value))
	case BoundMax:
		if c.OK {
			return fmt.Sprintf("%s = %s <= max %s", c.Metric, num(c.Value), num(c.Bound))
		}
		return fmt.Sprintf("%s = %s exceeds max %s by %s", c.Metric, num(c.Value), num(c.Bound), num(c.Value-c.Bound))
	}
	if c.Skipped != "" {
		return fmt.Sprintf("%s = %s; max_ratio_to_baseline %s not checked: %s", c.Metric, num(c.Value), num(c.Bound), c.Skipped)
	}
	base := *c.Baseline
	limit := c.Bound * base
	ratio := math.Inf(1)
	if base != 0 {
		ratio = c.Value / base
	}
	if c.OK {
		return fmt.Sprintf("%s = %s <= %s × baseline %s (ratio %s)", c.Metric, num(c.Value), num(c.Bound), num(base), num(ratio))
	}
	return fmt.Sprintf("%s = %s exceeds %s × baseline %s = %s by %s (ratio %s)", c.Metric, num(c.Value), num(c.Bound), num(base), num(limit), num(c.Value-limit), num(ratio))
}

// Blocked is why checks block a build ("" when every check passed).
func Blocked(checks []BoundCheck) string {
	var misses []string
	for _, c := range checks {
		if !c.OK {
			misses = append(misses, "eval "+c.Eval+": "+c.String())
		}
	}
	return strings.Join(misses, "; ")
}

func num(f float64) string { return fmt.Sprintf("%.4g", f) }

// evalActions are the eval actions of release r's candidate build with
// content key key: one per evaluator, with its cached result if any.
func evalActions(r *spec.Release, key string, cached map[string]EvalResult) []Action {
	if r.Gate == nil {
		return nil
	}
	var out []Action
	for i := range r.Gate.Evals {
		ev := &r.Gate.Evals[i]
		ea := &EvalAction{Name: ev.Name, Metrics: ev.Metrics()}
		var bounds []string
		for _, m := range ea.Metrics {
			if b, ok := ev.Min[m]; ok {
				bounds = append(bounds, fmt.Sprintf("%s >= %s", m, num(b)))
			}
			if b, ok := ev.Max[m]; ok {
				bounds = append(bounds, fmt.Sprintf("%s <= %s", m, num(b)))
			}
			if b, ok := ev.MaxRatioToBaseline[m]; ok {
				bounds = append(bounds, fmt.Sprintf("%s <= %s × the serving build's", m, num(b)))
			}
		}
		reason := "the candidate must meet " + strings.Join(bounds, ", ")
		if res, ok := cached[EvalKey(key, ev)]; ok {
			res := res
			ea.Cached = &res
			// The baseline is the engine's to find; a cached candidate
			// shows its absolute bounds here.
			ea.Checks = CheckEval(ev, res.Metrics, nil, "checked against the serving build when the gate runs")
			var parts []string
			for _, c := range ea.Checks {
				parts = append(parts, c.String())
			}
			reason += "; cached result: " + strings.Join(parts, "; ")
		}
		out = append(out, Action{Type: Eval, Release: r.Name, Subject: r.Name + " " + ev.Name, ContentKey: key, Eval: ea, Reason: reason})
	}
	return out
}

// fuseActions are the fuse actions of release r: one per adapter, in the
// order they are merged.
func fuseActions(r *spec.Release, key string) []Action {
	var out []Action
	for _, a := range r.Model.Adapters {
		out = append(out, Action{Type: Fuse, Release: r.Name, Subject: a.Source, ContentKey: key,
			Reason: fmt.Sprintf("merge LoRA adapter %s (%s, scale %s) into %s before quantizing", a.Source, short(a.Digest), num(a.ScaleOrDefault()), r.Model.Source)})
	}
	return out
}

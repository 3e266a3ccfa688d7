package monitor

import (
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

// series makes samples one minute apart ending at t0.
func series(values ...float64) []Sample {
	out := make([]Sample, len(values))
	for i, v := range values {
		out[i] = Sample{Time: t0.Add(time.Duration(i-len(values)+1) * time.Minute), Value: v}
	}
	return out
}

func TestPolicyDecide(t *testing.T) {
	// target 8 per replica, [2, 10], ±10%, no scale-up window, 5m
	// scale-down window, 5m cooldown, default step max(4, current).
	base := Policy{Target: 8, Min: 2, Max: 10, Tolerance: 0.1, ScaleDownWindow: 5 * time.Minute, Cooldown: 5 * time.Minute}
	for _, tc := range []struct {
		name    string
		p       Policy
		in      ScaleInput
		to      int
		change  bool
		because string
	}{
		// 3 × 8 = 24 capacity; 40/24 = 167% → ceil(40/8) = 5.
		{"load rises", base, ScaleInput{Current: 3, Samples: series(20, 40), Now: t0}, 5, true, "scale up"},
		// 26/24 = 108%, inside ±10%: no change although ceil(26/8) = 4.
		{"inside tolerance above", base, ScaleInput{Current: 3, Samples: series(26), Now: t0}, 3, false, "within ±10%"},
		// 22/24 = 92%, inside ±10%.
		{"inside tolerance below", base, ScaleInput{Current: 3, Samples: series(22), Now: t0}, 3, false, "within ±10%"},
		// 100/8 = 12.5 → 13, clamped to max 10; step max(4, 3) = 4 → 3+4 = 7.
		{"step cap", base, ScaleInput{Current: 3, Samples: series(100), Now: t0}, 7, true, "step cap of 4"},
		// the same with max_step = 2 → 5.
		{"max_step", Policy{Target: 8, Min: 2, Max: 10, Tolerance: 0.1, MaxStep: 2}, ScaleInput{Current: 3, Samples: series(100), Now: t0}, 5, true, "step cap of 2"},
		// 1000/8 = 125 → max 10; current 8, step max(4, 8) = 8 → 10.
		{"clamped to max", base, ScaleInput{Current: 8, Samples: series(1000), Now: t0}, 10, true, "needs 10"},
		// 6 samples over 5 minutes, the highest 40 → ceil(40/8) = 5 = current: hold.
		{"scale down waits for the window", base, ScaleInput{Current: 5, Samples: series(40, 40, 10, 10, 10, 10), Now: t0}, 5, false, "highest recommendation in the last 5m0s is 5"},
		// Low for all of the 5m window: max ceil(10/8) = 2 → 2 (step 5 allows it).
		{"load falls after the window", base, ScaleInput{Current: 5, Samples: series(40, 10, 10, 10, 10, 10, 10), Now: t0}, 2, true, "scale down"},
		// 2 minutes of samples cannot show 5 minutes of low load.
		{"scale down without history", base, ScaleInput{Current: 5, Samples: series(10, 10, 10), Now: t0}, 5, false, "less than the 5m0s window"},
		// min 2: 0/8 = 0 → 2 replicas; 2 × 8 = 16, 0/16 = 0% is outside the band.
		{"zero load floors at min", base, ScaleInput{Current: 4, Samples: series(0, 0, 0, 0, 0, 0), Now: t0}, 2, true, "scale down"},
		// Scale-up window 2m: the lowest of the last 2m is ceil(16/8) = 2 ≤ 3: hold.
		{"scale up window", Policy{Target: 8, Min: 2, Max: 10, Tolerance: 0.1, ScaleUpWindow: 2 * time.Minute}, ScaleInput{Current: 3, Samples: series(16, 16, 40), Now: t0}, 3, false, "scale-up stabilizing"},
		// The last change 2m ago, cooldown 5m: hold until 12:03.
		{"cooldown", base, ScaleInput{Current: 3, Samples: series(40), LastChange: t0.Add(-2 * time.Minute), Now: t0}, 3, false, "cooldown until 2025-01-01T12:03:00Z"},
		// The last change 6m ago: 40/8 = 5.
		{"after cooldown", base, ScaleInput{Current: 3, Samples: series(40), LastChange: t0.Add(-6 * time.Minute), Now: t0}, 5, true, "scale up"},
		// Replicas 12 in Git, max 10: correct at once, whatever the load.
		{"outside range", base, ScaleInput{Current: 12, Samples: series(24), LastChange: t0, Now: t0}, 10, true, "outside [2, 10]"},
		{"no data", base, ScaleInput{Current: 3, Now: t0}, 3, false, "no data"},
		// 0 replicas (min 0): no capacity to compare with; ceil(5/8) = 1.
		{"from zero", Policy{Target: 8, Min: 0, Max: 4, Tolerance: 0.1}, ScaleInput{Current: 0, Samples: series(5), Now: t0}, 1, true, "scale up"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := tc.p.Decide(tc.in)
			if d.To != tc.to || d.Change != tc.change {
				t.Errorf("Decide = %d (change %v), want %d (change %v); reason %q", d.To, d.Change, tc.to, tc.change, d.Reason)
			}
			if d.Change != (d.To != d.From) {
				t.Errorf("Change %v but %d -> %d", d.Change, d.From, d.To)
			}
			if !strings.Contains(d.Reason, tc.because) {
				t.Errorf("reason %q does not say %q", d.Reason, tc.because)
			}
		})
	}
}

func TestRollbackDecide(t *testing.T) {
	p := RollbackPolicy{Threshold: 0.05, Window: 30 * time.Minute}
	recent := &Rollout{Revision: "bbbbbbbbbbbbbbbb", Previous: "aaaaaaaaaaaaaaaa", Time: t0.Add(-10 * time.Minute)}
	for _, tc := range []struct {
		name    string
		in      RollbackInput
		want    bool
		because string
	}{
		// 0.2 > 0.05, 10m after the rollout, inside 30m.
		{"bad rollout", RollbackInput{Value: 0.2, Rollout: recent, Now: t0}, true, "above the threshold 0.05 within 10m0s of rollout bbbbbbbbbbbb"},
		{"healthy", RollbackInput{Value: 0.01, Rollout: recent, Now: t0}, false, "within the threshold"},
		// Equal is not crossing.
		{"at threshold", RollbackInput{Value: 0.05, Rollout: recent, Now: t0}, false, "within the threshold"},
		// 40m > 30m: the release has been fine long enough.
		{"outside window", RollbackInput{Value: 0.2, Rollout: recent, Now: t0.Add(30 * time.Minute)}, false, "older than the 30m0s window"},
		{"no rollout", RollbackInput{Value: 0.2, Now: t0}, false, "no rollout"},
		{"own rollback", RollbackInput{Value: 0.2, Rollout: &Rollout{Revision: "c", Previous: "b", Time: t0, ByRollback: true}, Now: t0}, false, "is a rollback"},
		{"new release", RollbackInput{Value: 0.2, Rollout: &Rollout{Revision: "c", Time: t0}, Now: t0}, false, "nothing to restore"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := p.Decide(tc.in)
			if d.Rollback != tc.want || !strings.Contains(d.Reason, tc.because) {
				t.Errorf("Decide = %v %q, want %v %q", d.Rollback, d.Reason, tc.want, tc.because)
			}
		})
	}
}

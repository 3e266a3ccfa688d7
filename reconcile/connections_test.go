package reconcile_test

import (
	"context"
	"errors"
	"testing"
)

// Live connections from Engine.Connections steer placement: the node with
// the load gets no new replicas, and a failing source keeps the specs'
// static connections.
func TestConnectionsOverlay(t *testing.T) {
	place := func(conns map[string]float64, err error) map[string]int {
		t.Helper()
		f := newFixture(t)
		f.e.Connections = func(context.Context) (map[string]float64, error) { return conns, err }
		res, rerr := f.e.Reconcile(context.Background())
		if rerr != nil {
			t.Fatal(rerr)
		}
		for _, r := range res.Plan.Releases {
			if r.Name == "tiny-chat" {
				return r.Placement
			}
		}
		t.Fatal("no tiny-chat in the plan")
		return nil
	}
	busyA1 := place(map[string]float64{"gpu-a1": 1000, "gpu-a2": 0, "gpu-l1": 0}, nil)
	busyOthers := place(map[string]float64{"gpu-a1": 0, "gpu-a2": 1000, "gpu-l1": 1000}, nil)
	if busyA1["gpu-a1"] != 0 || busyOthers["gpu-a1"] == 0 {
		t.Errorf("placement ignores live load: gpu-a1 busy %v, others busy %v", busyA1, busyOthers)
	}
	static := place(nil, errors.New("prometheus is unavailable"))
	if len(static) == 0 {
		t.Errorf("with the source failing, placement = %v", static)
	}
}

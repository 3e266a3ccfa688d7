package monitor

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gantry-dev/gantry/spec"
)

func TestPromQueries(t *testing.T) {
	p := requireProm(t)
	ctx := context.Background()
	exporter.Set(`q_load{release="a",pod="a-0"}`, 10)
	exporter.Set(`q_load{release="a",pod="a-1"}`, 15)
	exporter.Set(`q_running{node="gpu-a1",pod="x"}`, 3)
	exporter.Set(`q_running{node="gpu-a1",pod="y"}`, 2)
	exporter.Set(`q_running{node="gpu-l1",pod="z"}`, 7)
	waitValue(t, p, `sum(q_load{release="a"})`, 25)

	if _, err := p.Query(ctx, `q_load{release="a"}`, time.Now()); err == nil || !strings.Contains(err.Error(), "2 series") {
		t.Errorf("two series: %v, want an error asking for sum()", err)
	}
	if _, err := p.Query(ctx, `q_load{release="nope"}`, time.Now()); !errors.Is(err, ErrNoData) {
		t.Errorf("no series: %v, want ErrNoData", err)
	}
	if _, err := p.Query(ctx, `sum(`, time.Now()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("bad query: %v, want ErrUnavailable (the query failed)", err)
	}
	end := time.Now()
	samples, err := p.Range(ctx, `sum(q_load{release="a"})`, end.Add(-time.Second), end, 200*time.Millisecond)
	if err != nil || len(samples) == 0 || samples[len(samples)-1].Value != 25 {
		t.Errorf("Range = %v, %v; want samples ending at 25", samples, err)
	}

	waitValue(t, p, `sum(q_running)`, 12)
	conns, err := p.Connections(ctx, `sum by (node) (q_running)`)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]float64{"gpu-a1": 5, "gpu-l1": 7}, conns); d != "" {
		t.Errorf("Connections (-want +got):\n%s", d)
	}
}

func TestPromUnreachable(t *testing.T) {
	port, err := freePort() // closed again: nothing listens
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewProm("http://127.0.0.1:" + strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	p.Timeout = 2 * time.Second
	if _, err := p.Query(context.Background(), "up", time.Now()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Query: %v, want ErrUnavailable", err)
	}
	if _, err := p.Connections(context.Background(), "up"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Connections: %v, want ErrUnavailable", err)
	}
	// The monitor reports it and decides nothing.
	cfg := testConfig(3)
	rep := (&Monitor{Metrics: p}).Decide(context.Background(), cfg, nil)
	if len(rep.Decisions) != 0 || rep.Unavailable == "" {
		t.Errorf("Decide with Prometheus down: %d decisions, unavailable %q", len(rep.Decisions), rep.Unavailable)
	}
}

func TestRender(t *testing.T) {
	got, err := Render(`sum(x{namespace="{{.Namespace}}", release="{{.Release}}", pod=~"{{.Pods}}"})`, VarsFor("llm", "chat"))
	if err != nil || got != `sum(x{namespace="llm", release="chat", pod=~"chat-.*"})` {
		t.Errorf("Render = %q, %v", got, err)
	}
	if _, err := Render(`{{.Relase}}`, VarsFor("llm", "chat")); err == nil {
		t.Error("a misspelled field rendered")
	}
}

// Decide on real samples: load above the target scales up; inside the
// tolerance it does not.
func TestMonitorDecideProm(t *testing.T) {
	p := requireProm(t)
	exporter.Set(`m_load{release="chat"}`, 40)
	waitValue(t, p, `sum(m_load{release="chat"})`, 40)
	m := &Monitor{Metrics: p, Step: time.Second}
	cfg := testConfig(3)
	rep := m.Decide(context.Background(), cfg, nil)
	// 40 / (3 × 8) = 167% → ceil(40/8) = 5.
	if len(rep.Decisions) != 1 || rep.Decisions[0].To != 5 {
		t.Fatalf("decisions %+v; report %+v", rep.Decisions, rep.Releases)
	}
	msg := rep.Decisions[0].Message()
	for _, want := range []string{"chat: scale 3 → 5 replicas", "at 40", "target of 8", "window 0s", `m_load{release="chat"}`} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	exporter.Set(`m_load{release="chat"}`, 26)
	waitValue(t, p, `sum(m_load{release="chat"})`, 26)
	// 26 / 24 = 108%: inside ±10%.
	if rep := m.Decide(context.Background(), cfg, nil); len(rep.Decisions) != 0 {
		t.Errorf("inside the tolerance: %+v", rep.Decisions)
	}
}

// testConfig is one release "chat" autoscaled on m_load, target 8.
func testConfig(replicas int) *spec.Config {
	return &spec.Config{
		Settings: spec.Settings{Namespace: "llm"},
		Releases: []spec.Release{{
			Name:     "chat",
			Replicas: &replicas,
			Autoscale: &spec.Autoscale{
				Query: `sum(m_load{release="{{.Release}}"})`, Target: 8, Min: 1, Max: 10,
				Cooldown: time.Minute,
			},
		}},
	}
}

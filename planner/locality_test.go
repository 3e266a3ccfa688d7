package planner

import (
	"fmt"
	"strings"
	"testing"
)

// TestPlacementPrefersNodesWithTheModelImage: a node whose kubelet
// reports the release's model image (by digest) takes its replica over a
// less loaded node within ImageLocality, and the plan says so.
func TestPlacementPrefersNodesWithTheModelImage(t *testing.T) {
	cfg := fleet(t, 1) // r-00000, 1 replica, over 4 nodes
	r := &cfg.Releases[0]
	ref := ImageRef(cfg, r)
	digest := fmt.Sprintf("sha256:%064x", 7)
	obs := Observed{Nodes: StaticNodes(cfg), Artifacts: map[string]Artifact{ref: {Ref: ref, Digest: digest}}}
	for i := range obs.Nodes {
		obs.Nodes[i].Connections = float64(10 + i) // gpu-00000 is the least loaded
	}
	plan := func(obs Observed) ReleasePlan {
		t.Helper()
		p, err := Build(*cfg, obs)
		if err != nil {
			t.Fatal(err)
		}
		return p.Releases[0]
	}
	if rp := plan(obs); rp.Placement["gpu-00000"] != 1 || len(rp.ImageLocal) != 0 {
		t.Fatalf("without the image anywhere: %v, local %v", rp.Placement, rp.ImageLocal)
	}
	// gpu-00002 (12 connections; 12 × 0.8 = 9.6 < 10) holds the image.
	obs.Nodes[2].Images = map[string]int64{digest: 40 << 30, "sha256:other": 1 << 30}
	rp := plan(obs)
	if rp.Placement["gpu-00002"] != 1 || len(rp.ImageLocal) != 1 || rp.ImageLocal[0] != "gpu-00002" {
		t.Fatalf("with the image on gpu-00002: %v, local %v", rp.Placement, rp.ImageLocal)
	}
	if s := placementString(rp); !strings.Contains(s, "gpu-00002×1*") || !strings.Contains(s, "model image already on the node") {
		t.Errorf("placement line: %q", s)
	}
	// Load still decides: gpu-00003 (13 × 0.8 = 10.4 > 10) holding it
	// does not win.
	obs.Nodes[2].Images = nil
	obs.Nodes[3].Images = map[string]int64{digest: 40 << 30}
	if rp := plan(obs); rp.Placement["gpu-00000"] != 1 {
		t.Fatalf("a holder 1.3 times as loaded won: %v", rp.Placement)
	}
}

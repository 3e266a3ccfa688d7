package schedule

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

const img = "sha256:0000000000000000000000000000000000000000000000000000000000000abc"

// holding gives nd image img of size bytes.
func holding(nd Node, size int64) Node {
	nd.Images = map[string]int64{img: size}
	return nd
}

func imgReq(release string, replicas int) Request {
	r := req(release, replicas)
	r.Image = img
	return r
}

// TestImageLocality shows the arithmetic of the locality term: a node
// holding the request's image has its score lowered by up to
// ImageLocality (scaled by the image's size below LocalityFullSize), so
// it wins over a less loaded node only within that bound.
func TestImageLocality(t *testing.T) {
	tests := []struct {
		name string
		p    Problem
		want Result
	}{
		{
			name: "the node holding the image wins within the bound",
			// a: 10 × (1-0.2) = 8 < b: 9 -> a, although b has fewer connections.
			p: Problem{
				Nodes:         []Node{holding(n("a", 10), 20*gi), n("b", 9)},
				Requests:      []Request{imgReq("r", 1)},
				ImageLocality: 0.2,
			},
			want: Result{Placements: map[string]Placement{"r": {"a": 1}}, ImageLocal: map[string][]string{"r": {"a"}}},
		},
		{
			name: "load decides beyond the bound",
			// a: 13 × 0.8 = 10.4 > b: 10 -> b.
			p: Problem{
				Nodes:         []Node{holding(n("a", 13), 20*gi), n("b", 10)},
				Requests:      []Request{imgReq("r", 1)},
				ImageLocality: 0.2,
			},
			want: Result{Placements: map[string]Placement{"r": {"b": 1}}},
		},
		{
			name: "each replica counts as load on the holder",
			// a scores (4 + its replicas) × 0.8, b 4 + its replicas:
			// 3.2 < 4: a; 4.0 = 4: a (the tie goes to the smaller name);
			// 4.8 > 4: b; 4.8 < 5: a; 5.6 > 5: b.
			p: Problem{
				Nodes:         []Node{holding(n("a", 4), 20*gi), n("b", 4)},
				Requests:      []Request{imgReq("r", 5)},
				ImageLocality: 0.2,
			},
			want: Result{Placements: map[string]Placement{"r": {"a": 3, "b": 2}}, ImageLocal: map[string][]string{"r": {"a"}}},
		},
		{
			name: "a small image is worth less",
			// 100 MiB of LocalityFullSize: discount 0.2 × 100/1024 ≈ 0.0195.
			// a: 10 × 0.9805 = 9.80 > b: 9.5 -> b.
			p: Problem{
				Nodes:         []Node{holding(n("a", 10), 100<<20), n("b", 9.5)},
				Requests:      []Request{imgReq("r", 1)},
				ImageLocality: 0.2,
			},
			want: Result{Placements: map[string]Placement{"r": {"b": 1}}},
		},
		{
			name: "unknown size counts as a big image",
			p: Problem{
				Nodes:         []Node{holding(n("a", 10), 0), n("b", 9)},
				Requests:      []Request{imgReq("r", 1)},
				ImageLocality: 0.2,
			},
			want: Result{Placements: map[string]Placement{"r": {"a": 1}}, ImageLocal: map[string][]string{"r": {"a"}}},
		},
		{
			name: "capped at MaxImageLocality",
			// 0.9 is capped to 0.5: a: 21 × 0.5 = 10.5 > b: 10 -> b.
			p: Problem{
				Nodes:         []Node{holding(n("a", 21), 20*gi), n("b", 10)},
				Requests:      []Request{imgReq("r", 1)},
				ImageLocality: 0.9,
			},
			want: Result{Placements: map[string]Placement{"r": {"b": 1}}},
		},
		{
			name: "locality off: load alone, the holder still reported",
			p: Problem{
				Nodes:    []Node{holding(n("a", 10), 20*gi), n("b", 9), holding(n("c", 11), 20*gi)},
				Requests: []Request{imgReq("r", 3)},
			},
			// b 9, a 10, then b 10 vs a 11 vs c 11: b.
			want: Result{Placements: map[string]Placement{"r": {"a": 1, "b": 2}}, ImageLocal: map[string][]string{"r": {"a"}}},
		},
		{
			name: "a holder that does not fit is not chosen",
			p: Problem{
				// a holds the image but has no free GPU; c holds it but is
				// in a pool the release may not use.
				Nodes: []Node{holding(inPool(withGPUs(n("a", 0), 8, 8), "p"), 20*gi), holding(inPool(n("c", 0), "other"), 20*gi), inPool(n("b", 9), "p")},
				Requests: []Request{func() Request {
					r := imgReq("r", 1)
					r.Pools = []string{"p"}
					return r
				}()},
				ImageLocality: 0.2,
			},
			want: Result{Placements: map[string]Placement{"r": {"b": 1}}},
		},
		{
			name: "spread first, then locality among new nodes",
			// Spread: a (holder) takes 1; the next goes to a node without r:
			// b (5) against c (holder, 6 × 0.8 = 4.8): c.
			p: Problem{
				Nodes: []Node{holding(n("a", 0), 20*gi), n("b", 5), holding(n("c", 6), 20*gi)},
				Requests: []Request{func() Request {
					r := imgReq("r", 3)
					r.Spread = true
					return r
				}()},
				ImageLocality: 0.2,
			},
			want: Result{Placements: map[string]Placement{"r": {"a": 1, "b": 1, "c": 1}}, ImageLocal: map[string][]string{"r": {"a", "c"}}},
		},
		{
			name: "kept replicas stay where they are",
			p: Problem{
				Nodes:         []Node{holding(n("a", 0), 20*gi), n("b", 50)},
				Requests:      []Request{imgReq("r", 2)},
				Current:       map[string]Placement{"r": {"b": 2}},
				ImageLocality: 0.5,
			},
			want: Result{Placements: map[string]Placement{"r": {"b": 2}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Place(tc.p)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			// Deterministic whatever the order of the nodes.
			rev := tc.p
			rev.Nodes = append([]Node(nil), tc.p.Nodes...)
			for i, j := 0, len(rev.Nodes)-1; i < j; i, j = i+1, j-1 {
				rev.Nodes[i], rev.Nodes[j] = rev.Nodes[j], rev.Nodes[i]
			}
			if d := cmp.Diff(got, Place(rev)); d != "" {
				t.Errorf("reversed nodes (-first +reversed):\n%s", d)
			}
		})
	}
}

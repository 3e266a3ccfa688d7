package vllm

import (
	"fmt"
	"path"
	"strings"
)

// GroupSizes are the int4 group sizes vLLM's WNA16 kernels serve: -1 (one
// scale per output channel) and 32, 64, 128 (Marlin's
// MARLIN_SUPPORTED_GROUP_SIZES). A checkpoint with any other group size
// does not load.
var GroupSizes = []int{-1, 32, 64, 128}

// DefaultGroupSize is the int4 group size when none is given.
const DefaultGroupSize = 128

// ValidGroupSize reports whether n is an int4 group size vLLM can serve:
// -1 (channel-wise), 32, 64 or 128. 0 stands for "not given" and means
// DefaultGroupSize, so it is accepted.
func ValidGroupSize(n int) error {
	if n == 0 {
		return nil
	}
	for _, g := range GroupSizes {
		if n == g {
			return nil
		}
	}
	return fmt.Errorf("int4 group size %d: vLLM serves only -1 (channel-wise), 32, 64 and 128", n)
}

// fusedFamilies are the projections vLLM loads as one fused layer
// (QKVParallelLinear qkv_proj, MergedColumnParallelLinear gate_up_proj).
// Every part of one must have the same scheme: vLLM refuses a fused layer
// whose parts are quantized differently, or some dense and some not.
var fusedFamilies = [][]string{
	{"q_proj", "k_proj", "v_proj"},
	{"gate_proj", "up_proj"},
}

// FusedSiblings returns the other members of c's fused family (q_proj:
// k_proj and v_proj), or nil when vLLM does not fuse c.
func FusedSiblings(c string) []string {
	for _, fam := range fusedFamilies {
		for _, m := range fam {
			if m == c {
				var sib []string
				for _, s := range fam {
					if s != c {
						sib = append(sib, s)
					}
				}
				return sib
			}
		}
	}
	return nil
}

// skipCovers reports whether some glob in skip keeps name dense, matching
// it as a tensor name or module name, as Convert does: a glob may name the
// module ("…q_proj") or its weight ("…q_proj.weight").
func skipCovers(skip []string, name string) bool {
	module := strings.TrimSuffix(name, ".weight")
	for _, g := range skip {
		for _, n := range []string{name, module, module + ".weight"} {
			// Equal strings count too: name may be another glob, such as
			// "x.[ab].k_proj", which does not match itself.
			if ok, _ := path.Match(g, n); ok || g == n {
				return true
			}
		}
	}
	return false
}

// CheckSkip checks a skip list (path.Match globs of tensor or module names
// kept dense) without a model: every glob must be valid, and a glob that
// names one part of a fused layer (a dotted component equal to q_proj,
// k_proj or v_proj; gate_proj or up_proj) must come with globs covering
// the other parts, because vLLM refuses a fused layer (qkv_proj,
// gate_up_proj) whose parts do not share one scheme. For instance
// "model.layers.*.self_attn.q_proj" needs "…k_proj" and "…v_proj" (or a
// glob such as "model.layers.*.self_attn.*" instead). Convert checks the
// same on the model's actual layers, which also catches globs this check
// cannot see into (such as "[qk]_proj").
func CheckSkip(skip []string) error {
	for _, g := range skip {
		if _, err := path.Match(g, ""); err != nil {
			return fmt.Errorf("skip pattern %q: %w", g, err)
		}
	}
	for _, g := range skip {
		parts := strings.Split(g, ".")
		for i, c := range parts {
			for _, s := range FusedSiblings(c) {
				p := append([]string(nil), parts...)
				p[i] = s
				sib := strings.Join(p, ".")
				if !skipCovers(skip, sib) {
					return fmt.Errorf("skip pattern %q keeps %s dense but not its fused sibling %s (%q): vLLM loads %s as one layer and refuses mixed schemes; skip all of them or none",
						g, c, s, sib, FamilyName(c))
				}
			}
		}
	}
	return nil
}

// FamilyName names c's fused family for messages.
func FamilyName(c string) string {
	if c == "gate_proj" || c == "up_proj" {
		return "gate_proj and up_proj (gate_up_proj)"
	}
	return "q_proj, k_proj and v_proj (qkv_proj)"
}

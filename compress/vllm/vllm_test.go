package vllm

import (
	"fmt"
	"strings"
	"testing"
)

func TestValidGroupSize(t *testing.T) {
	for _, n := range []int{0, -1, 32, 64, 128} {
		if err := ValidGroupSize(n); err != nil {
			t.Errorf("ValidGroupSize(%d) = %v", n, err)
		}
	}
	for _, n := range []int{-2, 1, 8, 16, 48, 96, 100, 256, 384, 1024} {
		err := ValidGroupSize(n)
		if err == nil || !strings.Contains(err.Error(), "-1 (channel-wise), 32, 64 and 128") || !strings.Contains(err.Error(), fmt.Sprint(n)) {
			t.Errorf("ValidGroupSize(%d) = %v", n, err)
		}
	}
}

func TestCheckSkip(t *testing.T) {
	for _, tc := range []struct {
		skip []string
		want string // "" for no error
	}{
		{nil, ""},
		{[]string{"*.down_proj.weight", "lm_head"}, ""},
		{[]string{"model.layers.*.self_attn.*"}, ""},
		{[]string{"model.layers.0.*"}, ""},
		{[]string{"*.q_proj", "*.k_proj", "*.v_proj"}, ""},
		{[]string{"x.q_proj.weight", "x.k_proj", "x.v_proj.weight"}, ""},
		{[]string{"x.q_proj", "x.[kv]_proj"}, ""},
		{[]string{"model.layers.[0-3].self_attn.q_proj", "model.layers.[0-3].self_attn.k_proj", "model.layers.[0-3].self_attn.v_proj"}, ""},
		{[]string{"model.layers.3.mlp.gate_proj", "model.layers.3.mlp.up_proj"}, ""},
		{[]string{"model.layers.*.mlp.gate_up_proj"}, ""}, // already fused in the checkpoint
		{[]string{"model.layers.*.self_attn.qkv_proj"}, ""},
		{[]string{"model.layers.0.self_attn.q_proj"}, `fused sibling k_proj ("model.layers.0.self_attn.k_proj")`},
		{[]string{"*.q_proj", "*.k_proj"}, `fused sibling v_proj ("*.v_proj")`},
		{[]string{"model.layers.1.mlp.gate_proj.weight"}, `fused sibling up_proj ("model.layers.1.mlp.up_proj.weight")`},
		{[]string{"model.layers.*.mlp.up_proj"}, "fused sibling gate_proj"},
		{[]string{"model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.k_proj", "model.layers.*.self_attn.v_proj"}, "fused sibling k_proj"},
		{[]string{"a[", "b"}, "syntax error in pattern"},
	} {
		err := CheckSkip(tc.skip)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("CheckSkip(%q) = %v", tc.skip, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("CheckSkip(%q) = %v, want %q", tc.skip, err, tc.want)
		}
	}
}

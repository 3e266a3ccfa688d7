package ggufquant

import (
	"fmt"
	"testing"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
	"github.com/google/go-cmp/cmp"
)

// llama32 is a 32-layer llama header (shapes of a 4096-wide model are not
// needed: only ne0 matters for the rules, so matrices are 4096 x 1... with
// ne1 = 2 to keep them 2-D).
func llama32(tied bool) ([]gguf.KV, []gguf.TensorInfo) {
	cfg := ggufgen.Config{Layers: 32, Embd: 4096, FF: 11008, Vocab: 32000, Heads: 32, HeadsKV: 8, Type: ggml.F16, TiedEmbeddings: tied}
	ts := cfg.Tensors()
	for i := range ts {
		if len(ts[i].Shape) == 2 {
			ts[i].Shape = []int64{ts[i].Shape[0], 2}
		}
	}
	return cfg.Metadata(), ts
}

// moreBits32 is use_more_bits for n = 32 written out:
// i < 4 || i >= 28 || (i − 4) % 3 == 2, i.e. 0–3, 6, 9, …, 27, 28–31.
var moreBits32 = map[int]bool{0: true, 1: true, 2: true, 3: true, 6: true, 9: true, 12: true, 15: true,
	18: true, 21: true, 24: true, 27: true, 28: true, 29: true, 30: true, 31: true}

func TestUseMoreBits(t *testing.T) {
	for i := 0; i < 32; i++ {
		if got := useMoreBits(i, 32); got != moreBits32[i] {
			t.Errorf("useMoreBits(%d, 32) = %v", i, got)
		}
	}
}

func planTypes(t *testing.T, kvs []gguf.KV, ts []gguf.TensorInfo, opts Options) map[string]ggml.Type {
	t.Helper()
	p, err := MakePlan(kvs, ts, opts)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]ggml.Type{}
	for _, tp := range p.Tensors {
		m[tp.Name] = tp.To
	}
	return m
}

func TestMixes(t *testing.T) {
	kvs, ts := llama32(false)
	for _, tc := range []struct {
		typ                 string
		base, out, embd     ggml.Type
		vMore, downMore     ggml.Type // on use_more_bits layers
		vFirst4, downFirst4 ggml.Type // Q4_K_S: first 4 attn_v / first n/8 ffn_down
	}{
		{"q4_0", ggml.Q4_0, ggml.Q6_K, ggml.Q4_0, ggml.Q4_0, ggml.Q4_0, ggml.Q4_0, ggml.Q4_0},
		{"q4_1", ggml.Q4_1, ggml.Q6_K, ggml.Q4_1, ggml.Q4_1, ggml.Q4_1, ggml.Q4_1, ggml.Q4_1},
		{"q5_0", ggml.Q5_0, ggml.Q6_K, ggml.Q5_0, ggml.Q5_0, ggml.Q5_0, ggml.Q5_0, ggml.Q5_0},
		{"q5_1", ggml.Q5_1, ggml.Q6_K, ggml.Q5_1, ggml.Q5_1, ggml.Q5_1, ggml.Q5_1, ggml.Q5_1},
		{"q8_0", ggml.Q8_0, ggml.Q8_0, ggml.Q8_0, ggml.Q8_0, ggml.Q8_0, ggml.Q8_0, ggml.Q8_0},
		{"q4_k_m", ggml.Q4_K, ggml.Q6_K, ggml.Q4_K, ggml.Q6_K, ggml.Q6_K, 0, 0},
		{"q4_k", ggml.Q4_K, ggml.Q6_K, ggml.Q4_K, ggml.Q6_K, ggml.Q6_K, 0, 0},
		{"q5_k_m", ggml.Q5_K, ggml.Q6_K, ggml.Q5_K, ggml.Q6_K, ggml.Q6_K, 0, 0},
		{"q4_k_s", ggml.Q4_K, ggml.Q6_K, ggml.Q4_K, ggml.Q4_K, ggml.Q4_K, ggml.Q5_K, ggml.Q5_K},
		{"q5_k_s", ggml.Q5_K, ggml.Q6_K, ggml.Q5_K, ggml.Q5_K, ggml.Q5_K, ggml.Q5_K, ggml.Q5_K},
		{"q6_k", ggml.Q6_K, ggml.Q6_K, ggml.Q6_K, ggml.Q6_K, ggml.Q6_K, ggml.Q6_K, ggml.Q6_K},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			got := planTypes(t, kvs, ts, Options{Type: tc.typ})
			want := map[string]ggml.Type{
				"token_embd.weight":  tc.embd,
				"output.weight":      tc.out,
				"output_norm.weight": ggml.F32,
			}
			for i := 0; i < 32; i++ {
				p := fmt.Sprintf("blk.%d.", i)
				for _, n := range []string{"attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"} {
					want[p+n+".weight"] = tc.base
				}
				want[p+"attn_norm.weight"] = ggml.F32
				want[p+"ffn_norm.weight"] = ggml.F32
				v, down := tc.base, tc.base
				if moreBits32[i] {
					v, down = tc.vMore, tc.downMore
				}
				if tc.vFirst4 != 0 && i < 4 {
					v = tc.vFirst4
				}
				if tc.downFirst4 != 0 && i < 32/8 {
					down = tc.downFirst4
				}
				want[p+"attn_v.weight"] = v
				want[p+"ffn_down.weight"] = down
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("types (-want +got):\n%s", diff)
			}
			// --pure: every quantizable tensor gets the base type.
			pure := planTypes(t, kvs, ts, Options{Type: tc.typ, Pure: true})
			for name, typ := range pure {
				if want[name] != ggml.F32 && typ != tc.base {
					t.Errorf("pure: %s is %v, want %v", name, typ, tc.base)
				}
			}
		})
	}
}

func TestTiedEmbeddingsGetOutputType(t *testing.T) {
	kvs, ts := llama32(true)
	got := planTypes(t, kvs, ts, Options{Type: "q4_0"})
	if got["token_embd.weight"] != ggml.Q6_K {
		t.Errorf("tied token_embd: %v, want q6_K", got["token_embd.weight"])
	}
}

func TestLeaveOutputAndSkip(t *testing.T) {
	kvs, ts := llama32(false)
	got := planTypes(t, kvs, ts, Options{Type: "q4_k_m", LeaveOutput: true, Skip: []string{"blk.1*.ffn_up.weight"}})
	if got["output.weight"] != ggml.F16 {
		t.Errorf("output: %v", got["output.weight"])
	}
	for _, n := range []string{"blk.1.ffn_up.weight", "blk.17.ffn_up.weight"} {
		if got[n] != ggml.F16 {
			t.Errorf("%s: %v, want f16 (skipped)", n, got[n])
		}
	}
	if got["blk.2.ffn_up.weight"] != ggml.Q4_K {
		t.Errorf("blk.2.ffn_up: %v", got["blk.2.ffn_up.weight"])
	}
	// Skipping does not shift the layer counters: blk.3.ffn_down still
	// gets Q6_K (3 < 32/8).
	got = planTypes(t, kvs, ts, Options{Type: "q4_k_m", Skip: []string{"blk.0.*"}})
	if got["blk.3.ffn_down.weight"] != ggml.Q6_K || got["blk.4.ffn_down.weight"] != ggml.Q4_K {
		t.Errorf("counters shifted by skip: %v %v", got["blk.3.ffn_down.weight"], got["blk.4.ffn_down.weight"])
	}
}

func TestFallbacks(t *testing.T) {
	kvs := []gguf.KV{{Key: "general.architecture", Value: "llama"}, {Key: "llama.block_count", Value: uint32(1)}}
	mk := func(name string, ne0 int64) gguf.TensorInfo {
		return gguf.TensorInfo{Name: name, Shape: []int64{ne0, 4}, Type: ggml.F16}
	}
	ts := []gguf.TensorInfo{
		mk("blk.0.attn_q.weight", 96),   // Q4_K -> Q5_0 (96 % 256 != 0, 96 % 32 == 0)
		mk("blk.0.attn_k.weight", 48),   // Q4_K -> Q5_0 -> F16 (48 % 32 != 0): already F16, copied
		mk("blk.0.ffn_down.weight", 96), // Q6_K (layer 0 of 1 gets more bits) -> Q8_0
		mk("output.weight", 64),         // ne0 % 256 != 0 -> Q8_0
		mk("blk.0.attn_v.weight", 256),
	}
	got := planTypes(t, kvs, ts, Options{Type: "q4_k_m"})
	want := map[string]ggml.Type{
		"blk.0.attn_q.weight": ggml.Q5_0, "blk.0.attn_k.weight": ggml.F16,
		"blk.0.ffn_down.weight": ggml.Q8_0, "output.weight": ggml.Q8_0, "blk.0.attn_v.weight": ggml.Q6_K,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	got = planTypes(t, kvs, ts[:2], Options{Type: "q5_k_s"})
	if got["blk.0.attn_q.weight"] != ggml.Q5_1 {
		t.Errorf("Q5_K fallback: %v", got["blk.0.attn_q.weight"])
	}

	// --pure skips the mix but not the shape fallback, and a 32-block type
	// whose blocks do not fit falls back to F16: what llama.cpp v0.5.0's
	// llama_model_quantize writes (checked byte for byte; see
	// compress/ggml's doc). Earlier llama.cpp failed on both.
	got = planTypes(t, kvs, ts, Options{Type: "q4_k_m", Pure: true})
	want = map[string]ggml.Type{
		"blk.0.attn_q.weight": ggml.Q5_0, "blk.0.attn_k.weight": ggml.F16,
		"blk.0.ffn_down.weight": ggml.Q5_0, "output.weight": ggml.Q5_0, "blk.0.attn_v.weight": ggml.Q4_K,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("pure (-want +got):\n%s", diff)
	}
	for _, pure := range []bool{false, true} {
		f32 := mk("blk.0.attn_q.weight", 40)
		f32.Type = ggml.F32
		p, err := MakePlan(kvs, []gguf.TensorInfo{mk("blk.0.ffn_up.weight", 40), f32}, Options{Type: "q8_0", Pure: pure})
		if err != nil {
			t.Fatalf("q8_0 with ne0 = 40 (pure %v): %v", pure, err)
		}
		for _, tp := range p.Tensors {
			wantAction := ActionCopy // already F16
			if tp.From == ggml.F32 {
				wantAction = ActionQuantize
			}
			if tp.To != ggml.F16 || tp.Action != wantAction {
				t.Errorf("q8_0 with ne0 = 40 (pure %v): %s %v -> %v (%v, %s), want f16 (%v)",
					pure, tp.Name, tp.From, tp.To, tp.Action, tp.Why, wantAction)
			}
		}
	}
}

func TestExcludedTensors(t *testing.T) {
	two := []int64{64, 64}
	ts := []gguf.TensorInfo{
		{Name: "blk.0.ffn_gate_inp.weight", Shape: two, Type: ggml.F16},
		{Name: "position_embd.weight", Shape: two, Type: ggml.F16},
		{Name: "blk.0.attn_norm.weight", Shape: two, Type: ggml.F16},
		{Name: "blk.0.attn_q.bias", Shape: two, Type: ggml.F16},
		{Name: "blk.0.attn_k.weight", Shape: []int64{64, 1}, Type: ggml.F16}, // 1 effective dim
		{Name: "blk.0.attn_q.weight", Shape: two, Type: ggml.F16},
	}
	got := planTypes(t, nil, ts, Options{Type: "q8_0"})
	for _, tt := range ts {
		want := ggml.F16
		if tt.Name == "blk.0.attn_q.weight" {
			want = ggml.Q8_0
		}
		if got[tt.Name] != want {
			t.Errorf("%s: %v, want %v", tt.Name, got[tt.Name], want)
		}
	}
}

func TestOrderAndMetadata(t *testing.T) {
	kvs, ts := llama32(false)
	kvs = append(kvs, gguf.KV{Key: "split.count", Value: uint16(1)}, gguf.KV{Key: "zz.custom", Value: "x"})
	p, err := MakePlan(kvs, ts, Options{Type: "q4_k_m"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tp := range p.Tensors {
		names = append(names, tp.Name)
	}
	wantNames := []string{"output.weight", "output_norm.weight", "token_embd.weight"}
	for _, i := range []int{0, 1, 2, 10, 11} {
		if i == 10 {
			// layers 3..9 omitted from the spelled-out list; check below
			break
		}
		p := fmt.Sprintf("blk.%d.", i)
		for _, n := range []string{"attn_k", "attn_norm", "attn_output", "attn_q", "attn_v", "ffn_down", "ffn_gate", "ffn_norm", "ffn_up"} {
			wantNames = append(wantNames, p+n+".weight")
		}
	}
	if diff := cmp.Diff(wantNames, names[:len(wantNames)]); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
	// blk.10 comes after blk.9 (numeric, not bytewise).
	if names[3+9*9] != "blk.9.attn_k.weight" || names[3+10*9] != "blk.10.attn_k.weight" {
		t.Errorf("numeric layer order: %s, %s", names[3+9*9], names[3+10*9])
	}
	var keys []string
	for _, kv := range p.KV {
		keys = append(keys, kv.Key)
	}
	var wantKeys []string
	for _, kv := range kvs {
		switch kv.Key {
		case "general.file_type", "general.quantization_version", "split.count":
		default:
			wantKeys = append(wantKeys, kv.Key)
		}
	}
	wantKeys = append(wantKeys, "general.quantization_version", "general.file_type")
	if diff := cmp.Diff(wantKeys, keys); diff != "" {
		t.Errorf("keys (-want +got):\n%s", diff)
	}
	if v := p.KV[len(p.KV)-1].Value; v != uint32(15) {
		t.Errorf("file_type = %v, want u32 15", v)
	}
	if v := p.KV[len(p.KV)-2].Value; v != uint32(2) {
		t.Errorf("quantization_version = %v, want u32 2", v)
	}
}

func TestLayerOf(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"blk.12.attn_q.weight", 12}, {"output.weight", -1}, {"blk.x", -1},
		{"blk. 7.a", 7}, {"blk.-3.a", -3}, {"blk.5", 5}, {"blkk.1.a", -1},
	} {
		if got, _ := layerOf(tc.in); got != tc.want {
			t.Errorf("layerOf(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestParseType(t *testing.T) {
	for in, want := range map[string]string{"q4_k": "Q4_K_M", "Q5_K": "Q5_K_M", "q8_0": "Q8_0", " Q6_K ": "Q6_K", "q4_k_s": "Q4_K_S"} {
		ft, err := ParseType(in)
		if err != nil || ft.Name != want {
			t.Errorf("ParseType(%q) = %v, %v; want %s", in, ft, err, want)
		}
	}
	if _, err := ParseType("q3_k"); err == nil {
		t.Error("q3_k: want error")
	}
}

package lora

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
	st "github.com/gantry-dev/gantry/compress/safetensors"
)

func TestVersion(t *testing.T) {
	// planner.FuserVersion is "gantry-lora/1" and must equal Version;
	// compress must not import planner, so the value is pinned here.
	if Version != "gantry-lora/1" {
		t.Fatalf("Version = %q, planner.FuserVersion is \"gantry-lora/1\": change both together", Version)
	}
}

// stCase is one safetensors merge checked against the float64 reference.
type stCase struct {
	name     string
	dtype    st.DType
	shards   int
	adapters func(t *testing.T, rng *rand.Rand, base stModel, dir string) ([]Adapter, map[string][]refDelta)
	replaced int
}

// plainAdapter is a LoRA adapter of rank r on the given modules of layer
// 0 and 1, with keys as PEFT saves them.
func plainAdapter(t *testing.T, rng *rand.Rand, base stModel, dir string, cfg map[string]any, r int, scaleOf func(module string) float64,
	transposed bool, dt st.DType, user float64, modules ...string) (Adapter, map[string][]refDelta) {
	var ts []tensor
	refs := map[string][]refDelta{}
	for l := 0; l < 2; l++ {
		for _, m := range modules {
			module := "model.layers." + string(rune('0'+l)) + "." + m
			bt := base[module+".weight"]
			rows, cols := int(bt.shape[0]), int(bt.shape[1])
			out, in := rows, cols
			if transposed {
				out, in = cols, rows
			}
			rr := r
			if rp, ok := cfg["rank_pattern"].(map[string]any); ok {
				for k, v := range rp {
					if strings.HasSuffix(module, k) {
						rr = v.(int)
					}
				}
			}
			a, b := loraPair(rng, module, out, in, rr, dt)
			ts = append(ts, a, b)
			refs[module+".weight"] = []refDelta{{a: a.vals, b: b.vals, r: rr, scale: user * scaleOf(module), transposed: transposed}}
		}
	}
	return Adapter{Path: peftDir(t, dir, cfg, ts), Scale: user}, refs
}

func TestMergeSafetensors(t *testing.T) {
	cases := []stCase{
		{name: "f32 r8 alpha16", dtype: st.F32, adapters: func(t *testing.T, rng *rand.Rand, base stModel, dir string) ([]Adapter, map[string][]refDelta) {
			cfg := loraConfig(8, 16, "q_proj", "v_proj", "o_proj")
			a, refs := plainAdapter(t, rng, base, dir, cfg, 8, func(string) float64 { return 16.0 / 8 }, false, st.F32, 1, "self_attn.q_proj", "self_attn.v_proj", "self_attn.o_proj")
			return []Adapter{a}, refs
		}},
		{name: "f16 rslora scale 0.75", dtype: st.F16, adapters: func(t *testing.T, rng *rand.Rand, base stModel, dir string) ([]Adapter, map[string][]refDelta) {
			cfg := loraConfig(16, 8, "q_proj", "k_proj")
			cfg["use_rslora"] = true
			a, refs := plainAdapter(t, rng, base, dir, cfg, 16, func(string) float64 { return 8 / math.Sqrt(16) }, false, st.F16, 0.75, "self_attn.q_proj", "self_attn.k_proj")
			return []Adapter{a}, refs
		}},
		{name: "bf16 rank and alpha patterns", dtype: st.BF16, adapters: func(t *testing.T, rng *rand.Rand, base stModel, dir string) ([]Adapter, map[string][]refDelta) {
			cfg := loraConfig(8, 8, "q_proj", "v_proj", "down_proj")
			cfg["rank_pattern"] = map[string]any{"model.layers.1.self_attn.q_proj": 4}
			cfg["alpha_pattern"] = map[string]any{"v_proj": 32, `layers\.\d+\.mlp\.down_proj`: 2.5}
			scale := func(m string) float64 {
				switch {
				case m == "model.layers.1.self_attn.q_proj":
					return 8.0 / 4
				case strings.HasSuffix(m, "v_proj"):
					return 32.0 / 8
				case strings.HasSuffix(m, "down_proj"):
					return 2.5 / 8
				}
				return 1
			}
			a, refs := plainAdapter(t, rng, base, dir, cfg, 8, scale, false, st.BF16, 1, "self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj")
			return []Adapter{a}, refs
		}},
		{name: "fan_in_fan_out", dtype: st.F16, adapters: func(t *testing.T, rng *rand.Rand, base stModel, dir string) ([]Adapter, map[string][]refDelta) {
			cfg := loraConfig(4, 12, "k_proj", "up_proj")
			cfg["fan_in_fan_out"] = true
			a, refs := plainAdapter(t, rng, base, dir, cfg, 4, func(string) float64 { return 3 }, true, st.F32, 1, "self_attn.k_proj", "mlp.up_proj")
			return []Adapter{a}, refs
		}},
		{name: "modules_to_save and embedding LoRA", dtype: st.BF16, replaced: 2, adapters: func(t *testing.T, rng *rand.Rand, base stModel, dir string) ([]Adapter, map[string][]refDelta) {
			cfg := loraConfig(8, 16, "q_proj", "embed_tokens")
			cfg["modules_to_save"] = []string{"lm_head", "norm"}
			a, refs := plainAdapter(t, rng, base, dir+"-tmp", cfg, 8, func(string) float64 { return 2 }, false, st.BF16, 1, "self_attn.q_proj")
			ts := readAdapterTensors(t, a.Path)
			lm := base["lm_head.weight"]
			repl := randMatrix(rng, int(lm.shape[0]), int(lm.shape[1]), 0.05, st.F32) // F32 into a BF16 base: rounded once
			ts = append(ts, tensor{"base_model.model.lm_head.weight", st.F32, lm.shape, repl})
			norm := randMatrix(rng, 1, 64, 1, st.F32)
			ts = append(ts, tensor{"base_model.model.model.norm.weight", st.F32, []int64{64}, norm})
			// lora_embedding_A is r×num_embeddings, lora_embedding_B dim×r,
			// and the delta (B·A)ᵀ.
			ea := tensor{"base_model.model.model.embed_tokens.lora_embedding_A", st.F32, []int64{8, 80}, randMatrix(rng, 8, 80, 0.2, st.F32)}
			eb := tensor{"base_model.model.model.embed_tokens.lora_embedding_B", st.F32, []int64{64, 8}, randMatrix(rng, 64, 8, 0.2, st.F32)}
			ts = append(ts, ea, eb)
			refs["lm_head.weight"] = []refDelta{{replace: repl}}
			refs["model.norm.weight"] = []refDelta{{replace: norm}}
			refs["model.embed_tokens.weight"] = []refDelta{{a: ea.vals, b: eb.vals, r: 8, scale: 2, transposed: true}}
			return []Adapter{{Path: peftDir(t, dir, cfg, ts), Scale: 1}}, refs
		}},
		{name: "two adapters in order, sharded", dtype: st.BF16, shards: 3, replaced: 1, adapters: func(t *testing.T, rng *rand.Rand, base stModel, dir string) ([]Adapter, map[string][]refDelta) {
			// The first replaces lm_head and adds to q; the second adds to
			// lm_head (onto the replacement) and q, with .default keys.
			cfg1 := loraConfig(8, 16, "q_proj")
			cfg1["modules_to_save"] = []string{"lm_head"}
			a1, refs := plainAdapter(t, rng, base, dir+"-1", cfg1, 8, func(string) float64 { return 2 }, false, st.F32, 1, "self_attn.q_proj")
			ts := readAdapterTensors(t, a1.Path)
			lm := base["lm_head.weight"]
			repl := randMatrix(rng, int(lm.shape[0]), int(lm.shape[1]), 0.05, st.BF16)
			ts = append(ts, tensor{"base_model.model.lm_head.weight", st.BF16, lm.shape, repl})
			a1 = Adapter{Path: peftDir(t, dir+"-1", cfg1, ts), Scale: 1}
			refs["lm_head.weight"] = []refDelta{{replace: repl}}

			cfg2 := loraConfig(4, 4, "q_proj", "lm_head")
			var ts2 []tensor
			for _, m := range []string{"model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.q_proj", "lm_head"} {
				bt := base[m+".weight"]
				a, b := loraPair(rng, m, int(bt.shape[0]), int(bt.shape[1]), 4, st.F16)
				a.name = strings.Replace(a.name, ".lora_A.weight", ".lora_A.default.weight", 1)
				b.name = strings.Replace(b.name, ".lora_B.weight", ".lora_B.default.weight", 1)
				ts2 = append(ts2, a, b)
				refs[m+".weight"] = append(refs[m+".weight"], refDelta{a: a.vals, b: b.vals, r: 4, scale: 0.5 * 1})
			}
			a2 := Adapter{Path: peftDir(t, dir+"-2", cfg2, ts2), Scale: 0.5}
			return []Adapter{a1, a2}, refs
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			baseDir := filepath.Join(dir, "base")
			writeSTBase(t, baseDir, tinyST(c.dtype, c.shards))
			base := readSTDir(t, baseDir)
			rng := rand.New(rand.NewPCG(1, uint64(len(c.name))))
			ads, refs := c.adapters(t, rng, base, filepath.Join(dir, "adapter"))
			out := filepath.Join(dir, "out")
			rep, err := Merge(context.Background(), "safetensors", baseDir, out, ads)
			if err != nil {
				t.Fatal(err)
			}
			got := readSTDir(t, out)
			merged := 0
			for name, bv := range base {
				gv, ok := got[name]
				if !ok {
					t.Fatalf("output lacks %s", name)
				}
				if gv.dtype != bv.dtype || dims(gv.shape) != dims(bv.shape) {
					t.Fatalf("%s: %s %v, base %s %v", name, gv.dtype, gv.shape, bv.dtype, bv.shape)
				}
				ds, touched := refs[name]
				if !touched {
					if !bytes.Equal(gv.raw, bv.raw) {
						t.Errorf("%s: untouched tensor changed", name)
					}
					continue
				}
				for _, d := range ds {
					if d.a != nil {
						merged++
						break
					}
				}
				rows, cols := int(bv.shape[0]), 1
				if len(bv.shape) == 2 {
					cols = int(bv.shape[1])
				} else {
					rows, cols = 1, rows
				}
				checkTensor(t, name, gv, refMerge(bv.vals, rows, cols, ds), 0)
				if bytes.Equal(gv.raw, bv.raw) {
					t.Errorf("%s: merged tensor equals the base", name)
				}
			}
			if len(got) != len(base) {
				t.Errorf("output has %d tensors, base %d", len(got), len(base))
			}
			if rep.Tensors != len(base) || rep.Merged != merged || rep.Replaced != c.replaced {
				t.Errorf("report %+v, want %d tensors, %d merged, %d replaced", rep, len(base), merged, c.replaced)
			}
			// Same files; the non-weight files byte for byte.
			bn, on := dirNames(t, baseDir), dirNames(t, out)
			if strings.Join(bn, ",") != strings.Join(on, ",") {
				t.Errorf("files %v, base has %v", on, bn)
			}
			var size int64
			for _, n := range bn {
				b1, _ := os.ReadFile(filepath.Join(baseDir, n))
				b2, _ := os.ReadFile(filepath.Join(out, n))
				if strings.HasSuffix(n, ".safetensors") {
					size += int64(len(b2))
					if len(b1) != len(b2) {
						t.Errorf("%s: %d bytes, base %d", n, len(b2), len(b1))
					}
					continue
				}
				if !bytes.Equal(b1, b2) {
					t.Errorf("%s differs from the base's", n)
				}
			}
			if rep.Bytes != size {
				t.Errorf("report says %d bytes, shards hold %d", rep.Bytes, size)
			}
		})
	}
}

func readAdapterTensors(t *testing.T, dir string) []tensor {
	t.Helper()
	f, err := st.Open(filepath.Join(dir, "adapter_model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ts []tensor
	for _, ti := range f.Tensors() {
		raw, err := f.ReadTensor(context.Background(), ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		v := make([]float32, ti.NumElements())
		if err := st.DecodeFloat32(v, raw, ti.DType); err != nil {
			t.Fatal(err)
		}
		ts = append(ts, tensor{ti.Name, ti.DType, ti.Shape, v})
	}
	return ts
}

// TestMergeGGUF merges GGUF LoRA adapters of several types into F16 and
// F32 bases and checks every tensor against the float64 reference.
func TestMergeGGUF(t *testing.T) {
	type ad struct {
		ta, tb  ggml.Type
		r       int
		alpha   float32
		scale   float64
		targets []string
	}
	cases := []struct {
		name string
		base ggml.Type
		ads  []ad
	}{
		{"f16 base, f16 adapter", ggml.F16, []ad{{ggml.F16, ggml.F16, 16, 32, 1, []string{"attn_q", "attn_k", "attn_v", "attn_output"}}}},
		{"f32 base, f32 adapter, alpha 0", ggml.F32, []ad{{ggml.F32, ggml.F32, 8, 0, 0.5, []string{"attn_q", "ffn_down"}}}},
		{"f16 base, q8_0 adapter", ggml.F16, []ad{{ggml.Q8_0, ggml.Q8_0, 32, 16, 1, []string{"attn_q", "attn_v"}}}},
		{"bf16 base, mixed adapter", ggml.BF16, []ad{{ggml.Q8_0, ggml.F16, 16, 8, 1, []string{"ffn_up", "attn_k"}}}},
		{"f16 base, token_embd and two adapters", ggml.F16, []ad{
			{ggml.F32, ggml.F32, 8, 16, 1, []string{"attn_q", "token_embd"}},
			{ggml.F16, ggml.F32, 4, 4, 2, []string{"attn_q", "output"}},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := tinyGGUF(c.base)
			basePath := filepath.Join(dir, "base.gguf")
			if err := ggufgen.WriteLlama(context.Background(), basePath, cfg); err != nil {
				t.Fatal(err)
			}
			base := readGGUF(t, basePath)
			rng := rand.New(rand.NewPCG(2, uint64(len(c.name))))
			refs := map[string][]refDelta{}
			var ads []Adapter
			for i, a := range c.ads {
				var ts []gtensor
				for l := 0; l < 2; l++ {
					for _, tg := range a.targets {
						name := "blk." + string(rune('0'+l)) + "." + tg + ".weight"
						if tg == "token_embd" || tg == "output" {
							if l == 1 {
								continue
							}
							name = tg + ".weight"
						}
						bt, _ := base.f.Tensor(name)
						nIn, nOut := int(bt.Shape[0]), int(bt.Shape[1])
						scale := a.scale
						if a.alpha != 0 {
							scale = a.scale * float64(a.alpha) / float64(a.r)
						}
						if tg == "token_embd" {
							// lora_a ne [r, n_vocab], lora_b ne [r, n_embd]:
							// delta[v][e] = Σ_k a[v][k]·b[e][k] = Σ_k B'[v][k]·A'[k][e]
							// with B' = a (n_vocab×r) and A' = bᵀ.
							ga := gtensor{name + ".lora_a", a.ta, []int64{int64(a.r), int64(nOut)}, randF32(rng, a.r*nOut, 0.2)}
							gb := gtensor{name + ".lora_b", a.tb, []int64{int64(a.r), int64(nIn)}, randF32(rng, a.r*nIn, 0.2)}
							ts = append(ts, ga, gb)
							av, bv := decoded(t, ga), decoded(t, gb)
							bT := make([]float32, len(bv))
							for e := 0; e < nIn; e++ {
								for k := 0; k < a.r; k++ {
									bT[k*nIn+e] = bv[e*a.r+k]
								}
							}
							refs[name] = append(refs[name], refDelta{a: bT, b: av, r: a.r, scale: scale})
							continue
						}
						ga, gb := ggufLoRA(rng, name, nIn, nOut, a.r, a.ta, a.tb)
						ts = append(ts, ga, gb)
						// lora_a ne [n_in, r] is row-major r×n_in = PEFT's A;
						// lora_b ne [r, n_out] is n_out×r = B.
						refs[name] = append(refs[name], refDelta{a: decoded(t, ga), b: decoded(t, gb), r: a.r, scale: scale})
					}
				}
				p := filepath.Join(dir, "lora"+string(rune('0'+i))+".gguf")
				writeGGUFFile(t, p, loraKV("llama", a.alpha), ts)
				ads = append(ads, Adapter{Path: p, Scale: a.scale})
			}
			out := filepath.Join(dir, "merged.gguf")
			rep, err := Merge(context.Background(), "gguf", basePath, out, ads)
			if err != nil {
				t.Fatal(err)
			}
			got := readGGUF(t, out)
			if len(got.f.Tensors) != len(base.f.Tensors) || len(got.f.KV) != len(base.f.KV) {
				t.Fatalf("output has %d tensors and %d keys, base %d and %d", len(got.f.Tensors), len(got.f.KV), len(base.f.Tensors), len(base.f.KV))
			}
			for i, bt := range base.f.Tensors {
				gt := got.f.Tensors[i]
				if gt.Name != bt.Name || gt.Type != bt.Type || dims(gt.Shape) != dims(bt.Shape) {
					t.Fatalf("tensor %d: %s %v %v, base %s %v %v", i, gt.Name, gt.Type, gt.Shape, bt.Name, bt.Type, bt.Shape)
				}
				ds, touched := refs[bt.Name]
				if !touched {
					if !bytes.Equal(got.raw[bt.Name], base.raw[bt.Name]) {
						t.Errorf("%s: untouched tensor changed", bt.Name)
					}
					continue
				}
				ref := refMerge(base.vals[bt.Name], int(bt.Shape[1]), int(bt.Shape[0]), ds)
				checkTensor(t, bt.Name, stValue{dtype: ggmlToST(bt.Type), vals: got.vals[bt.Name]}, ref, 0)
			}
			if rep.Merged != len(refs) || rep.Tensors != len(base.f.Tensors) || rep.Replaced != 0 {
				t.Errorf("report %+v, want %d merged of %d", rep, len(refs), len(base.f.Tensors))
			}
			if fi, _ := os.Stat(out); rep.Bytes != fi.Size() {
				t.Errorf("report says %d bytes, file has %d", rep.Bytes, fi.Size())
			}
		})
	}
}

// TestMergeNoAdapterIsCopy: a zero-scale adapter leaves every tensor's
// bytes unchanged (one rounding of an exactly representable value).
func TestMergeZeroScaleIsIdentity(t *testing.T) {
	dir := t.TempDir()
	baseDir := filepath.Join(dir, "base")
	writeSTBase(t, baseDir, tinyST(st.BF16, 1))
	base := readSTDir(t, baseDir)
	rng := rand.New(rand.NewPCG(9, 9))
	a, _ := plainAdapter(t, rng, base, filepath.Join(dir, "a"), loraConfig(8, 16, "q_proj"), 8, func(string) float64 { return 2 }, false, st.F32, 0, "self_attn.q_proj")
	out := filepath.Join(dir, "out")
	rep, err := Merge(context.Background(), "safetensors", baseDir, out, []Adapter{a})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Merged != 2 {
		t.Errorf("merged %d tensors, want 2", rep.Merged)
	}
	b1, _ := os.ReadFile(filepath.Join(baseDir, "model.safetensors"))
	b2, _ := os.ReadFile(filepath.Join(out, "model.safetensors"))
	if !bytes.Equal(b1, b2) {
		t.Error("a zero-scale merge changed the weights file")
	}
}

func TestMergeCancelled(t *testing.T) {
	dir := t.TempDir()
	basePath := filepath.Join(dir, "base.gguf")
	if err := ggufgen.WriteLlama(context.Background(), basePath, tinyGGUF(ggml.F16)); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	ga, gb := ggufLoRA(rng, "blk.0.attn_q.weight", 64, 64, 8, ggml.F32, ggml.F32)
	p := filepath.Join(dir, "a.gguf")
	writeGGUFFile(t, p, loraKV("llama", 8), []gtensor{ga, gb})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	before := dirNames(t, dir)
	out := filepath.Join(dir, "out.gguf")
	if _, err := Merge(ctx, "gguf", basePath, out, []Adapter{{Path: p, Scale: 1}}); err == nil {
		t.Fatal("merge with a cancelled context succeeded")
	}
	noOutput(t, out, before)
}

func TestReportJSON(t *testing.T) {
	b, err := json.Marshal(Report{Tensors: 3, Merged: 2, Replaced: 1, Bytes: 10})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"tensors":3,"merged":2,"replaced":1,"bytes":10}`; string(b) != want {
		t.Errorf("Report JSON %s, want %s", b, want)
	}
}

var _ = gguf.KV{}

func TestMergeOutputPaths(t *testing.T) {
	dir := t.TempDir()
	baseDir := filepath.Join(dir, "base")
	writeSTBase(t, baseDir, tinyST(st.F16, 1))
	base := readSTDir(t, baseDir)
	rng := rand.New(rand.NewPCG(10, 10))
	a, _ := plainAdapter(t, rng, base, filepath.Join(dir, "a"), loraConfig(8, 16, "q_proj"), 8, func(string) float64 { return 2 }, false, st.F32, 1, "self_attn.q_proj")
	ads := []Adapter{a}
	if _, err := Merge(context.Background(), "safetensors", baseDir, filepath.Join(baseDir, "merged"), ads); err == nil || !strings.Contains(err.Error(), "inside the base") {
		t.Errorf("output inside the base: %v", err)
	}
	if _, err := Merge(context.Background(), "safetensors", baseDir, baseDir, ads); err == nil {
		t.Error("output = base accepted")
	}
	busy := filepath.Join(dir, "busy")
	os.MkdirAll(busy, 0o755)
	os.WriteFile(filepath.Join(busy, "keep"), []byte("x"), 0o644)
	if _, err := Merge(context.Background(), "safetensors", baseDir, busy, ads); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("non-empty output directory: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(busy, "keep")); string(b) != "x" {
		t.Error("existing output directory was modified")
	}
	empty := filepath.Join(dir, "empty")
	os.MkdirAll(empty, 0o755)
	if _, err := Merge(context.Background(), "safetensors", baseDir, empty, ads); err != nil {
		t.Errorf("empty output directory: %v", err)
	}
	if _, err := Merge(context.Background(), "onnx", baseDir, filepath.Join(dir, "x"), ads); err == nil {
		t.Error("format onnx accepted")
	}
	if _, err := Merge(context.Background(), "safetensors", baseDir, filepath.Join(dir, "y"), nil); err == nil {
		t.Error("no adapters accepted")
	}
}

// TestPEFTKeyVariants: keys with the adapter name left in (older PEFT, or
// saved from the model's state dict) merge like the canonical ones.
func TestPEFTKeyVariants(t *testing.T) {
	dir := t.TempDir()
	baseDir := filepath.Join(dir, "base")
	writeSTBase(t, baseDir, tinyST(st.F16, 1))
	base := readSTDir(t, baseDir)
	rng := rand.New(rand.NewPCG(12, 12))
	cfg := loraConfig(4, 8, "q_proj")
	cfg["modules_to_save"] = []string{"lm_head"}
	a, b := loraPair(rng, "model.layers.1.self_attn.q_proj", 64, 64, 4, st.BF16)
	a.name = strings.Replace(a.name, "lora_A.weight", "lora_A.default.weight", 1)
	b.name = strings.Replace(b.name, "lora_B.weight", "lora_B.default.weight", 1)
	lm := base["lm_head.weight"]
	repl := randMatrix(rng, 80, 64, 0.05, st.F16)
	saved := tensor{"base_model.model.lm_head.modules_to_save.default.weight", st.F16, lm.shape, repl}
	p := peftDir(t, filepath.Join(dir, "a"), cfg, []tensor{a, b, saved})
	out := filepath.Join(dir, "out")
	rep, err := Merge(context.Background(), "safetensors", baseDir, out, []Adapter{{Path: p, Scale: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Merged != 1 || rep.Replaced != 1 {
		t.Errorf("report %+v, want 1 merged and 1 replaced", rep)
	}
	got := readSTDir(t, out)
	q := base["model.layers.1.self_attn.q_proj.weight"]
	checkTensor(t, "q_proj", got["model.layers.1.self_attn.q_proj.weight"], refMerge(q.vals, 64, 64, []refDelta{{a: a.vals, b: b.vals, r: 4, scale: 2}}), 0)
	checkTensor(t, "lm_head", got["lm_head.weight"], refMerge(lm.vals, 80, 64, []refDelta{{replace: repl}}), 0)
}

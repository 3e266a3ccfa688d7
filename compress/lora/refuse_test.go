package lora

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/compress"
	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
	st "github.com/gantry-dev/gantry/compress/safetensors"
)

const secret = "ghp_PLANTEDsecret0123456789"

// stBaseOnce builds one tiny BF16 safetensors base per test binary run in
// dir.
func stRefusalBase(t *testing.T) (string, stModel) {
	dir := filepath.Join(t.TempDir(), "base")
	writeSTBase(t, dir, tinyST(st.BF16, 1))
	return dir, readSTDir(t, dir)
}

func TestRefusalsSafetensors(t *testing.T) {
	type mk func(t *testing.T, rng *rand.Rand, base stModel, dir string) Adapter
	// good is a valid q/v adapter whose config and tensors the cases edit.
	good := func(edit func(cfg map[string]any, ts []tensor) []tensor) mk {
		return func(t *testing.T, rng *rand.Rand, base stModel, dir string) Adapter {
			cfg := loraConfig(8, 16, "q_proj", "v_proj")
			var ts []tensor
			for _, m := range []string{"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"} {
				bt := base[m+".weight"]
				a, b := loraPair(rng, m, int(bt.shape[0]), int(bt.shape[1]), 8, st.F32)
				ts = append(ts, a, b)
			}
			if edit != nil {
				ts = edit(cfg, ts)
			}
			return Adapter{Path: peftDir(t, dir, cfg, ts), Scale: 1}
		}
	}
	set := func(k string, v any) mk {
		return good(func(cfg map[string]any, ts []tensor) []tensor { cfg[k] = v; return ts })
	}
	cases := []struct {
		name    string
		adapter mk
		is      error
		want    []string // substrings of the error
	}{
		{"dora", set("use_dora", true), ErrUnsupported, []string{"use_dora", "DoRA", "adapter_config.json:"}},
		{"loha", set("peft_type", "LOHA"), ErrUnsupported, []string{"peft_type", "LOHA"}},
		{"adalora", set("peft_type", "ADALORA"), ErrUnsupported, []string{"peft_type", "ADALORA"}},
		{"ia3", set("peft_type", "IA3"), ErrUnsupported, []string{"IA3"}},
		{"qalora", set("use_qalora", true), ErrUnsupported, []string{"use_qalora"}},
		{"lora bias", set("lora_bias", true), ErrUnsupported, []string{"lora_bias"}},
		{"bias all", set("bias", "all"), ErrUnsupported, []string{"bias", `"all"`}},
		{"layer replication", set("layer_replication", [][]int{{0, 2}, {1, 2}}), ErrUnsupported, []string{"layer_replication"}},
		{"trainable tokens", set("trainable_token_indices", []int{1, 2}), ErrUnsupported, []string{"trainable_token_indices"}},
		{"target parameters", set("target_parameters", []string{"experts.gate_up_proj"}), ErrUnsupported, []string{"target_parameters"}},
		{"pissa", set("init_lora_weights", "pissa_niter_4"), ErrUnsupported, []string{"init_lora_weights", "PiSSA", "path_initial_model_for_weight_conversion"}},
		{"missing target module", set("target_modules", []string{"q_proj", "v_proj", "qkv_proj"}), ErrMissing, []string{"target_modules[2]", "matches no module"}},
		{"rank disagrees with r", set("r", 4), ErrShape, []string{"tensor model.layers.0.self_attn.q_proj.weight", "rank 8", "says 4"}},
		{"shape", good(func(cfg map[string]any, ts []tensor) []tensor {
			// k_proj is 32×64; an adapter made for a 64×64 module.
			cfg["target_modules"] = []string{"k_proj"}
			a, b := loraPair(rand.New(rand.NewPCG(1, 1)), "model.layers.0.self_attn.k_proj", 64, 64, 8, st.F32)
			return []tensor{a, b}
		}), ErrShape, []string{"tensor model.layers.0.self_attn.k_proj.weight: adapter B·A is 64×64, base is 32×64"}},
		{"tensor for a missing base tensor", good(func(cfg map[string]any, ts []tensor) []tensor {
			a, b := loraPair(rand.New(rand.NewPCG(1, 1)), "model.layers.7.self_attn.q_proj", 64, 64, 8, st.F32)
			return append(ts, a, b)
		}), ErrMissing, []string{"base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight", "no tensor model.layers.7.self_attn.q_proj.weight"}},
		{"missing B half", good(func(cfg map[string]any, ts []tensor) []tensor {
			return ts[:3]
		}), ErrMissing, []string{"tensor model.layers.0.self_attn.v_proj.weight", "no lora_B"}},
		{"missing A half", good(func(cfg map[string]any, ts []tensor) []tensor {
			return append(ts[:2:2], ts[3])
		}), ErrMissing, []string{"tensor model.layers.0.self_attn.v_proj.weight", "no lora_A"}},
		{"nan", good(func(cfg map[string]any, ts []tensor) []tensor {
			ts[1].vals[5] = float32(math.NaN())
			return ts
		}), ErrNonFinite, []string{"base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", "element 5"}},
		{"overflow", good(func(cfg map[string]any, ts []tensor) []tensor {
			for i := range ts[0].vals {
				ts[0].vals[i] = 3e19
			}
			for i := range ts[1].vals {
				ts[1].vals[i] = 3e19
			}
			return ts
		}), ErrNonFinite, []string{"tensor model.layers.0.self_attn.q_proj.weight", "does not fit"}},
		{"dora magnitude tensor", good(func(cfg map[string]any, ts []tensor) []tensor {
			return append(ts, tensor{"base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", st.F32, []int64{64}, make([]float32, 64)})
		}), ErrUnsupported, []string{"lora_magnitude_vector", "DoRA"}},
		{"full tensor not in modules_to_save", good(func(cfg map[string]any, ts []tensor) []tensor {
			return append(ts, tensor{"base_model.model.lm_head.weight", st.F32, []int64{80, 64}, make([]float32, 80*64)})
		}), ErrUnsupported, []string{"base_model.model.lm_head.weight", "modules_to_save"}},
		{"saved tensor of the wrong shape", good(func(cfg map[string]any, ts []tensor) []tensor {
			cfg["modules_to_save"] = []string{"lm_head"}
			return append(ts, tensor{"base_model.model.lm_head.weight", st.F32, []int64{96, 64}, make([]float32, 96*64)})
		}), ErrShape, []string{"tensor lm_head.weight", "96×64", "80×64"}},
	}
	baseDir, base := stRefusalBase(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			a := c.adapter(t, rand.New(rand.NewPCG(4, 4)), base, filepath.Join(dir, "adapter"))
			outParent := filepath.Join(dir, "out")
			os.MkdirAll(outParent, 0o755)
			out := filepath.Join(outParent, "merged")
			before := dirNames(t, outParent)
			_, err := Merge(context.Background(), "safetensors", baseDir, out, []Adapter{a})
			if err == nil {
				t.Fatal("merge succeeded")
			}
			if !errors.Is(err, c.is) {
				t.Errorf("error %q does not wrap %v", err, c.is)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			noOutput(t, out, before)
		})
	}
}

func TestRefusalQuantizedSafetensorsBase(t *testing.T) {
	dir := t.TempDir()
	baseDir, base := stRefusalBase(t)
	q := filepath.Join(dir, "int8")
	if _, err := compress.Quantize(context.Background(), baseDir, q, compress.Options{Type: "int8"}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	a, b := loraPair(rng, "model.layers.0.self_attn.q_proj", 64, 64, 8, st.F32)
	_ = base
	ad := Adapter{Path: peftDir(t, filepath.Join(dir, "a"), loraConfig(8, 16, "q_proj"), []tensor{a, b}), Scale: 1}
	out := filepath.Join(dir, "out")
	before := dirNames(t, dir)
	_, err := Merge(context.Background(), "safetensors", q, out, []Adapter{ad})
	if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "quantized") {
		t.Fatalf("merge into an int8 checkpoint: %v, want a quantized-base refusal", err)
	}
	noOutput(t, out, before)
}

// TestSecretsNotEchoed plants a token in string fields of
// adapter_config.json; whatever the refusal, the error must not print it.
func TestSecretsNotEchoed(t *testing.T) {
	configs := map[string]func(cfg map[string]any){
		"peft_type":               func(c map[string]any) { c["peft_type"] = secret },
		"bias":                    func(c map[string]any) { c["bias"] = secret },
		"init_lora_weights":       func(c map[string]any) { c["init_lora_weights"] = secret },
		"init_lora_weights pissa": func(c map[string]any) { c["init_lora_weights"] = "pissa_" + secret },
		"target_modules list":     func(c map[string]any) { c["target_modules"] = []string{"q_proj", secret} },
		"target_modules regex":    func(c map[string]any) { c["target_modules"] = secret + "(" },
		"target_modules no match": func(c map[string]any) { c["target_modules"] = secret },
		"rank_pattern key":        func(c map[string]any) { c["rank_pattern"] = map[string]any{secret + "[": 4} },
		"rank_pattern value":      func(c map[string]any) { c["rank_pattern"] = map[string]any{"q_proj": secret} },
		"alpha_pattern value":     func(c map[string]any) { c["alpha_pattern"] = map[string]any{"q_proj": secret} },
		"r":                       func(c map[string]any) { c["r"] = secret },
		"lora_alpha":              func(c map[string]any) { c["lora_alpha"] = secret },
		"use_dora":                func(c map[string]any) { c["use_dora"] = secret },
		"base_model with dora": func(c map[string]any) {
			c["base_model_name_or_path"] = "https://" + secret + "@hf.co/x"
			c["use_dora"] = true
		},
		"modules_to_save": func(c map[string]any) { c["modules_to_save"] = secret },
		"duplicate key":   nil,
	}
	baseDir, base := stRefusalBase(t)
	for name, edit := range configs {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := loraConfig(8, 16, "q_proj")
			rng := rand.New(rand.NewPCG(6, 6))
			bt := base["model.layers.0.self_attn.q_proj.weight"]
			a, b := loraPair(rng, "model.layers.0.self_attn.q_proj", int(bt.shape[0]), int(bt.shape[1]), 8, st.F32)
			if edit != nil {
				edit(cfg)
			}
			p := peftDir(t, filepath.Join(dir, "a"), cfg, []tensor{a, b})
			if edit == nil {
				data := `{"peft_type": "LORA", "r": 8, "` + secret + `": 1, "` + secret + `": 2}`
				os.WriteFile(filepath.Join(p, "adapter_config.json"), []byte(data), 0o644)
			}
			out := filepath.Join(dir, "out")
			_, err := Merge(context.Background(), "safetensors", baseDir, out, []Adapter{{Path: p, Scale: 1}})
			if err == nil {
				t.Fatal("merge succeeded")
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "PLANTED") {
				t.Fatalf("error echoes the planted token: %v", err)
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Error("output left behind")
			}
		})
	}
}

func TestParsePEFTConfigPosition(t *testing.T) {
	data := "{\n  \"peft_type\": \"LORA\",\n  \"r\": 8,\n  \"use_dora\": true\n}\n"
	_, err := ParsePEFTConfig([]byte(data))
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v is not a *ConfigError", err)
	}
	if ce.Field != "use_dora" || ce.Line != 4 || ce.Col != 15 || !errors.Is(err, ErrUnsupported) {
		t.Errorf("got field %q at %d:%d (%v), want use_dora at 4:15", ce.Field, ce.Line, ce.Col, err)
	}
	if _, err := ParsePEFTConfig([]byte("{\n \"peft_type\": \"LORA\",\n \"r\": 8,,\n}")); err == nil {
		t.Error("malformed JSON accepted")
	} else if !errors.As(err, &ce) || ce.Line != 3 {
		t.Errorf("malformed JSON: %v, want line 3", err)
	}
	c, err := ParsePEFTConfig([]byte(`{"peft_type":"LORA","r":16,"lora_alpha":32,"use_rslora":true,"target_modules":["q_proj"],
		"rank_pattern":{"layers\\.0\\..*q_proj":4,"q_proj":2},"alpha_pattern":{"q_proj":8}}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		m     string
		r     int
		alpha float64
	}{
		{"model.layers.0.self_attn.q_proj", 4, 8}, // first key that matches wins
		{"model.layers.1.self_attn.q_proj", 2, 8},
		{"model.layers.1.self_attn.xq_proj", 16, 32}, // a pattern matches at a dot boundary
		{"model.layers.1.self_attn.v_proj", 16, 32},
	} {
		r, s := c.Scaling(tc.m)
		if r != tc.r || s != tc.alpha/math.Sqrt(float64(tc.r)) {
			t.Errorf("%s: rank %d, scaling %v; want %d, %v", tc.m, r, s, tc.r, tc.alpha/math.Sqrt(float64(tc.r)))
		}
	}
}

func TestRefusalsGGUF(t *testing.T) {
	dir := t.TempDir()
	basePath := filepath.Join(dir, "base.gguf")
	if err := ggufgen.WriteLlama(context.Background(), basePath, tinyGGUF(ggml.F16)); err != nil {
		t.Fatal(err)
	}
	q8 := filepath.Join(dir, "base-q8_0.gguf")
	if _, err := compress.Quantize(context.Background(), basePath, q8, compress.Options{Type: "q8_0", Threads: 1}); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	ga, gb := ggufLoRA(rng, "blk.0.attn_q.weight", 64, 64, 8, ggml.F16, ggml.F16)
	kv := loraKV("llama", 16)
	write := func(name string, kvs []gguf.KV, ts ...gtensor) string {
		p := filepath.Join(dir, name)
		writeGGUFFile(t, p, kvs, ts)
		return p
	}
	good := write("good.gguf", kv, ga, gb)
	goodBytes, _ := os.ReadFile(good)
	trunc := filepath.Join(dir, "trunc.gguf")
	os.WriteFile(trunc, goodBytes[:len(goodBytes)-100], 0o644)
	corrupt := filepath.Join(dir, "corrupt.gguf")
	bad := append([]byte(nil), goodBytes...)
	copy(bad[:4], "GGUX")
	os.WriteFile(corrupt, bad, 0o644)
	nanA := ga
	nanA.typ, nanA.vals = ggml.F32, append([]float32(nil), ga.vals...)
	nanA.vals[3] = float32(math.Inf(1))
	// k is ne [64, 32]; an adapter for ne [64, 64].
	ka, kb := ggufLoRA(rng, "blk.0.attn_k.weight", 64, 64, 8, ggml.F32, ggml.F32)
	cases := []struct {
		name, base, adapter string
		is                  error
		want                []string
	}{
		{"other architecture", basePath, write("qwen.gguf", loraKV("qwen2", 16), ga, gb), ErrUnsupported, []string{"general.architecture", "qwen2", "llama"}},
		{"quantized base", q8, good, ErrUnsupported, []string{"tensor blk.0.attn_q.weight", "q8_0", "F16 model"}},
		{"not an adapter", basePath, basePath, ErrUnsupported, []string{"general.type"}},
		{"control vector", basePath, write("cv.gguf", []gguf.KV{{Key: "general.architecture", Value: "llama"}, {Key: "general.type", Value: "adapter"}, {Key: "adapter.type", Value: "control_vector"}}, ga, gb), ErrUnsupported, []string{"control_vector"}},
		{"shape", basePath, write("shape.gguf", kv, ka, kb), ErrShape, []string{"tensor blk.0.attn_k.weight: adapter B·A is 64×64, base is 32×64"}},
		{"missing base tensor", basePath, write("missing.gguf", kv, gtensor{"blk.9.attn_q.weight.lora_a", ggml.F32, ga.ne, ga.vals}, gtensor{"blk.9.attn_q.weight.lora_b", ggml.F32, gb.ne, gb.vals}), ErrMissing, []string{"blk.9.attn_q.weight.lora_a", "no tensor blk.9.attn_q.weight"}},
		{"missing half", basePath, write("half.gguf", kv, ga), ErrMissing, []string{"tensor blk.0.attn_q.weight", "no lora_b"}},
		{"non-finite", basePath, write("inf.gguf", kv, nanA, gb), ErrNonFinite, []string{"blk.0.attn_q.weight.lora_a", "element 3"}},
		{"truncated", basePath, trunc, nil, []string{trunc, "truncated"}},
		{"corrupt magic", basePath, corrupt, nil, []string{corrupt, "magic"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			outDir := filepath.Join(t.TempDir(), "o")
			os.MkdirAll(outDir, 0o755)
			out := filepath.Join(outDir, "merged.gguf")
			_, err := Merge(context.Background(), "gguf", c.base, out, []Adapter{{Path: c.adapter, Scale: 1}})
			if err == nil {
				t.Fatal("merge succeeded")
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %q does not wrap %v", err, c.is)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			noOutput(t, out, nil)
		})
	}
}

func TestRefusalCorruptSafetensorsAdapter(t *testing.T) {
	baseDir, base := stRefusalBase(t)
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(8, 8))
	bt := base["model.layers.0.self_attn.q_proj.weight"]
	a, b := loraPair(rng, "model.layers.0.self_attn.q_proj", int(bt.shape[0]), int(bt.shape[1]), 8, st.F32)
	p := peftDir(t, filepath.Join(dir, "a"), loraConfig(8, 16, "q_proj"), []tensor{a, b})
	wp := filepath.Join(p, "adapter_model.safetensors")
	full, _ := os.ReadFile(wp)
	for name, data := range map[string][]byte{
		"truncated":  full[:len(full)-7],
		"bad header": append([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, full[8:]...),
		"empty":      nil,
	} {
		t.Run(name, func(t *testing.T) {
			os.WriteFile(wp, data, 0o644)
			outParent := t.TempDir()
			out := filepath.Join(outParent, "m")
			_, err := Merge(context.Background(), "safetensors", baseDir, out, []Adapter{{Path: p, Scale: 1}})
			if err == nil {
				t.Fatal("merge succeeded")
			}
			if !strings.Contains(err.Error(), "adapter_model.safetensors") {
				t.Errorf("error %q does not name the file", err)
			}
			noOutput(t, out, nil)
		})
	}
}

package lora

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
	st "github.com/gantry-dev/gantry/compress/safetensors"
)

func FuzzParsePEFTConfig(f *testing.F) {
	for _, s := range []string{
		`{"peft_type":"LORA","r":8,"lora_alpha":16,"target_modules":["q_proj","v_proj"],"bias":"none"}`,
		`{"peft_type":"LORA","r":16,"lora_alpha":32,"use_rslora":true,"target_modules":".*\\.(q|v)_proj",
		  "rank_pattern":{"layers\\.0\\..*":4},"alpha_pattern":{"v_proj":8},"modules_to_save":["lm_head"]}`,
		`{"peft_type":"LORA","use_dora":true}`,
		`{"peft_type":"LOHA","r":8}`,
		`{"peft_type":"LORA","init_lora_weights":"pissa_niter_4"}`,
		`{"peft_type":"LORA","layers_to_transform":[0,1],"target_modules":["q_proj"]}`,
		`{"peft_type":"LORA","r":8,,}`,
		`[]`,
		``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParsePEFTConfig(data)
		if err != nil {
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *ConfigError", err)
			}
			if ce.Line < 1 || ce.Col < 1 || ce.Offset < 0 || ce.Offset > int64(len(data)) {
				t.Fatalf("position %d:%d (offset %d) outside the %d-byte input", ce.Line, ce.Col, ce.Offset, len(data))
			}
			return
		}
		if c.R < 1 || !isFinite(c.Alpha) {
			t.Fatalf("accepted config with r %d, alpha %v", c.R, c.Alpha)
		}
		for _, m := range []string{"model.layers.0.self_attn.q_proj", "lm_head", ""} {
			r, s := c.Scaling(m)
			if r < 1 || !isFinite(s) {
				t.Fatalf("%s: rank %d, scaling %v", m, r, s)
			}
			c.targets(m)
			c.savedModule(m)
		}
	})
}

// FuzzMergeAdapterFile feeds arbitrary bytes through Merge as a GGUF LoRA
// file and as a PEFT adapter_model.safetensors, on tiny bases: Merge must
// not panic, and must leave nothing at the output when it fails.
func FuzzMergeAdapterFile(f *testing.F) {
	dir := f.TempDir()
	ggufBase := filepath.Join(dir, "base.gguf")
	gcfg := ggufgen.Config{Layers: 1, Embd: 32, FF: 32, Vocab: 8, Heads: 2, HeadsKV: 1, Type: ggml.F16, Seed: 1}
	if err := ggufgen.WriteLlama(context.Background(), ggufBase, gcfg); err != nil {
		f.Fatal(err)
	}
	stBase := filepath.Join(dir, "st")
	writeSTBase(f, stBase, tinyST(st.F16, 1))
	cfg := loraConfig(4, 8, "q_proj")

	// Seeds: valid adapters of both kinds and damaged copies.
	rng := rand.New(rand.NewPCG(1, 2))
	ga, gb := ggufLoRA(rng, "blk.0.attn_q.weight", 32, 32, 4, ggml.F16, ggml.F32)
	gp := filepath.Join(dir, "seed.gguf")
	writeGGUFFile(f, gp, loraKV("llama", 8), []gtensor{ga, gb})
	gseed, _ := os.ReadFile(gp)
	a, b := loraPair(rng, "model.layers.0.self_attn.q_proj", 64, 64, 4, st.BF16)
	sp := peftDir(f, filepath.Join(dir, "seed-peft"), cfg, []tensor{a, b})
	sseed, _ := os.ReadFile(filepath.Join(sp, "adapter_model.safetensors"))
	for _, s := range [][]byte{gseed, sseed} {
		f.Add(true, s)
		f.Add(false, s)
		f.Add(true, s[:len(s)/2])
		f.Add(false, s[:len(s)-3])
		c := append([]byte(nil), s...)
		c[len(c)/3] ^= 0x40
		f.Add(true, c)
		f.Add(false, c)
	}

	f.Fuzz(func(t *testing.T, asGGUF bool, data []byte) {
		d := t.TempDir()
		outDir := filepath.Join(d, "out")
		if err := os.MkdirAll(outDir, 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		var out string
		if asGGUF {
			p := filepath.Join(d, "a.gguf")
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
			out = filepath.Join(outDir, "m.gguf")
			_, err = Merge(context.Background(), "gguf", ggufBase, out, []Adapter{{Path: p, Scale: 1}})
		} else {
			p := peftDir(t, filepath.Join(d, "a"), cfg, nil)
			if err := os.WriteFile(filepath.Join(p, "adapter_model.safetensors"), data, 0o644); err != nil {
				t.Fatal(err)
			}
			out = filepath.Join(outDir, "m")
			_, err = Merge(context.Background(), "safetensors", stBase, out, []Adapter{{Path: p, Scale: 1}})
		}
		ents, _ := os.ReadDir(outDir)
		if err != nil {
			if len(ents) != 0 {
				t.Fatalf("failed merge (%v) left %d entries in the output directory", err, len(ents))
			}
			return
		}
		if _, serr := os.Stat(out); serr != nil {
			t.Fatalf("merge succeeded but %s: %v", out, serr)
		}
	})
}

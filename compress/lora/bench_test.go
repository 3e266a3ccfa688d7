package lora

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/gantry-dev/gantry/compress"
	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
	st "github.com/gantry-dev/gantry/compress/safetensors"
	"github.com/gantry-dev/gantry/compress/safetensors/stgen"
)

// The benchmark models: about 61 MB each in F16/BF16 (2 layers, 1024
// wide, 2816-wide MLP, 16 heads of which 4 KV, 4096 tokens), with a
// rank-16 adapter on q, k, v and o of every layer.
var benchST = stgen.Config{Layers: 2, Hidden: 1024, Intermediate: 2816, Vocab: 4096, Heads: 16, KVHeads: 4, DType: st.BF16, Seed: 11}

var benchGGUF = ggufgen.Config{Layers: 2, Embd: 1024, FF: 2816, Vocab: 4096, Heads: 16, HeadsKV: 4, Type: ggml.F16, Seed: 11}

const benchRank = 16

type benchModels struct {
	dir                string
	stBase, stAdapter  string
	ggBase, ggAdapter  string
	stBytes, ggufBytes int64
	err                error
}

var (
	benchOnce sync.Once
	bench     benchModels
)

func TestMain(m *testing.M) {
	code := m.Run()
	if bench.dir != "" {
		os.RemoveAll(bench.dir)
	}
	os.Exit(code)
}

func benchSetup(b *testing.B) *benchModels {
	benchOnce.Do(func() {
		bench.err = func() error {
			dir, err := os.MkdirTemp("", "lora-bench-")
			if err != nil {
				return err
			}
			bench.dir = dir
			ctx := context.Background()
			bench.stBase = filepath.Join(dir, "st")
			if err := stgen.WriteLlamaCheckpoint(ctx, bench.stBase, benchST); err != nil {
				return err
			}
			bench.ggBase = filepath.Join(dir, "base.gguf")
			if err := ggufgen.WriteLlama(ctx, bench.ggBase, benchGGUF); err != nil {
				return err
			}
			rng := rand.New(rand.NewPCG(11, 11))
			// PEFT: q/k/v/o of every layer.
			base := readSTDir(b, bench.stBase)
			var ts []tensor
			for l := 0; l < benchST.Layers; l++ {
				for _, m := range []string{"q_proj", "k_proj", "v_proj", "o_proj"} {
					module := fmt.Sprintf("model.layers.%d.self_attn.%s", l, m)
					bt := base[module+".weight"]
					a, bb := loraPair(rng, module, int(bt.shape[0]), int(bt.shape[1]), benchRank, st.BF16)
					ts = append(ts, a, bb)
				}
			}
			bench.stAdapter = peftDir(b, filepath.Join(dir, "peft"), loraConfig(benchRank, 32, "q_proj", "k_proj", "v_proj", "o_proj"), ts)
			// GGUF: the same modules.
			var gts []gtensor
			for l := 0; l < benchGGUF.Layers; l++ {
				for _, m := range []string{"attn_q", "attn_k", "attn_v", "attn_output"} {
					name := fmt.Sprintf("blk.%d.%s.weight", l, m)
					var nIn, nOut int
					for _, t := range benchGGUF.Tensors() {
						if t.Name == name {
							nIn, nOut = int(t.Shape[0]), int(t.Shape[1])
						}
					}
					ga, gb := ggufLoRA(rng, name, nIn, nOut, benchRank, ggml.F16, ggml.F16)
					gts = append(gts, ga, gb)
				}
			}
			bench.ggAdapter = filepath.Join(dir, "lora.gguf")
			writeGGUFFile(b, bench.ggAdapter, loraKV("llama", 32), gts)
			if bench.stBytes, err = compress.InputSize(bench.stBase); err != nil {
				return err
			}
			bench.ggufBytes, err = compress.InputSize(bench.ggBase)
			return err
		}()
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return &bench
}

func benchMerge(b *testing.B, format string) {
	m := benchSetup(b)
	base, adapter, size := m.stBase, m.stAdapter, m.stBytes
	if format == "gguf" {
		base, adapter, size = m.ggBase, m.ggAdapter, m.ggufBytes
	}
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		out := filepath.Join(m.dir, fmt.Sprintf("merged-%s-%d", format, i))
		if format == "gguf" {
			out += ".gguf"
		}
		rep, err := Merge(context.Background(), format, base, out, []Adapter{{Path: adapter, Scale: 1}})
		if err != nil {
			b.Fatal(err)
		}
		if rep.Merged != 8 {
			b.Fatalf("merged %d tensors, want 8", rep.Merged)
		}
		b.StopTimer()
		os.RemoveAll(out)
		b.StartTimer()
	}
}

func benchQuantize(b *testing.B, format, typ string) {
	m := benchSetup(b)
	base, size := m.stBase, m.stBytes
	if format == "gguf" {
		base, size = m.ggBase, m.ggufBytes
	}
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		out := filepath.Join(m.dir, fmt.Sprintf("quant-%s-%d", format, i))
		if format == "gguf" {
			out += ".gguf"
		}
		if _, err := compress.Quantize(context.Background(), base, out, compress.Options{Type: typ}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(out)
		b.StartTimer()
	}
}

// BenchmarkMerge is merge throughput in MB/s of base model read.
func BenchmarkMerge(b *testing.B) {
	b.Run("safetensors", func(b *testing.B) { benchMerge(b, "safetensors") })
	b.Run("gguf", func(b *testing.B) { benchMerge(b, "gguf") })
}

// BenchmarkMergeVsQuantize runs the merge and the quantization that
// follows it on the same models, so that one run gives both.
func BenchmarkMergeVsQuantize(b *testing.B) {
	b.Run("safetensors/merge", func(b *testing.B) { benchMerge(b, "safetensors") })
	b.Run("safetensors/quantize-int8", func(b *testing.B) { benchQuantize(b, "safetensors", "int8") })
	b.Run("safetensors/quantize-int4", func(b *testing.B) { benchQuantize(b, "safetensors", "int4") })
	b.Run("gguf/merge", func(b *testing.B) { benchMerge(b, "gguf") })
	b.Run("gguf/quantize-q8_0", func(b *testing.B) { benchQuantize(b, "gguf", "q8_0") })
	b.Run("gguf/quantize-q4_k_m", func(b *testing.B) { benchQuantize(b, "gguf", "q4_k_m") })
}

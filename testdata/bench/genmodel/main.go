// Command genmodel writes the synthetic F16 llama models the benchmarks in
// BENCHMARKS.md quantize, with ggufgen (fixed seed):
//
//	go run ./testdata/bench/genmodel -shape tinyllama -out /tmp/tinyllama-f16.gguf
//
// tinyllama is TinyLlama 1.1B's shape: 22 layers, embd 2048, FF 5632, vocab
// 32000, 32 heads (4 KV), 2.2 GB of F16.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
)

func main() {
	shape := flag.String("shape", "tinyllama", "tinyllama, or small (4 layers × 1024) for a quick check")
	out := flag.String("out", "", "output GGUF path")
	flag.Parse()
	var cfg ggufgen.Config
	switch *shape {
	case "tinyllama":
		cfg = ggufgen.Config{Layers: 22, Embd: 2048, FF: 5632, Vocab: 32000, Heads: 32, HeadsKV: 4, Type: ggml.F16, Seed: 11}
	case "small":
		cfg = ggufgen.Config{Layers: 4, Embd: 1024, FF: 2816, Vocab: 8192, Heads: 16, HeadsKV: 4, Type: ggml.F16, Seed: 11}
	default:
		fmt.Fprintf(os.Stderr, "genmodel: unknown shape %q\n", *shape)
		os.Exit(2)
	}
	if *out == "" {
		fmt.Fprintln(os.Stderr, "genmodel: -out is required")
		os.Exit(2)
	}
	if err := ggufgen.WriteLlama(context.Background(), *out, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "genmodel:", err)
		os.Exit(1)
	}
	var params int64
	for _, t := range cfg.Tensors() {
		params += t.Elements()
	}
	fmt.Printf("%s: %s, %d layers, embd %d, FF %d, vocab %d, %d params\n", *out, *shape, cfg.Layers, cfg.Embd, cfg.FF, cfg.Vocab, params)
}

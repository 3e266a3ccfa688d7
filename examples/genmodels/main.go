// Command genmodels writes the example repositories' tiny models. The
// models are generated from a fixed seed, so running it again gives the
// same bytes; a test checks that the committed files match.
//
//	go run ./examples/genmodels            # rewrite examples/quickstart/models
//	go run ./examples/genmodels -out DIR   # write somewhere else
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
	"github.com/gantry-dev/gantry/compress/safetensors"
	"github.com/gantry-dev/gantry/compress/safetensors/stgen"
)

// TinyLlama is the quickstart's checkpoint: a 2-layer llama small enough
// to read in a diff, with rows that are multiples of 128 so that every
// quantize method applies.
var TinyLlama = stgen.Config{
	Layers: 2, Hidden: 128, Intermediate: 256, Vocab: 256, Heads: 4, KVHeads: 2,
	DType: safetensors.BF16, Seed: 42,
}

// TinyGGUF is the quickstart's GGUF model: F16, rows of 256 so that the
// K-quants apply.
var TinyGGUF = ggufgen.Config{
	Name: "tiny-llama", Layers: 2, Embd: 256, FF: 512, Vocab: 256, Heads: 4, HeadsKV: 2,
	Type: ggml.F16, Seed: 42,
}

func main() {
	out := flag.String("out", "examples/quickstart/models", "directory to write the models into")
	flag.Parse()
	if err := generate(context.Background(), *out); err != nil {
		fmt.Fprintln(os.Stderr, "genmodels:", err)
		os.Exit(1)
	}
}

func generate(ctx context.Context, out string) error {
	dir := filepath.Join(out, "tiny-llama")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := stgen.WriteLlamaCheckpoint(ctx, dir, TinyLlama); err != nil {
		return err
	}
	return ggufgen.WriteLlama(ctx, filepath.Join(out, "tiny-llama-f16.gguf"), TinyGGUF)
}

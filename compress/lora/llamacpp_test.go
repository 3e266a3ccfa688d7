package lora

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
	st "github.com/gantry-dev/gantry/compress/safetensors"
)

// exportLoRA finds a llama-export-lora binary: $GANTRY_LLAMA_EXPORT_LORA,
// or ~/.cache/gantry-test/llama.cpp-<commit>/llama-export-lora.
func exportLoRA(t *testing.T) string {
	if p := os.Getenv("GANTRY_LLAMA_EXPORT_LORA"); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	m, _ := filepath.Glob(filepath.Join(home, ".cache", "gantry-test", "llama.cpp-*", "llama-export-lora"))
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1]
}

// TestAgainstLlamaCpp merges the same GGUF LoRA adapters with Merge and
// with llama.cpp's llama-export-lora and compares every tensor. llama.cpp
// computes in F32 and rounds twice (delta to F32, sum to F16), so F16
// results may differ by one unit in the last place; nothing more.
func TestAgainstLlamaCpp(t *testing.T) {
	if testing.Short() {
		t.Skip("runs llama-export-lora")
	}
	bin := exportLoRA(t)
	if bin == "" {
		t.Skip("no llama-export-lora in ~/.cache/gantry-test/llama.cpp-*/ (or $GANTRY_LLAMA_EXPORT_LORA)")
	}
	dir := t.TempDir()
	basePath := filepath.Join(dir, "base.gguf")
	cfg := ggufgen.Config{Layers: 2, Embd: 256, FF: 512, Vocab: 512, Heads: 4, HeadsKV: 2, Type: ggml.F16, Seed: 21}
	if err := ggufgen.WriteLlama(context.Background(), basePath, cfg); err != nil {
		t.Fatal(err)
	}
	shapes := map[string][]int64{}
	for _, ti := range cfg.Tensors() {
		shapes[ti.Name] = ti.Shape
	}
	// Two adapters over the same tensors (llama-export-lora requires it),
	// F16 and F32, with token_embd and output among the targets.
	var targets []string
	for l := 0; l < cfg.Layers; l++ {
		for _, m := range []string{"attn_q", "attn_k", "attn_v", "attn_output", "ffn_down"} {
			targets = append(targets, fmt.Sprintf("blk.%d.%s.weight", l, m))
		}
	}
	targets = append(targets, "token_embd.weight", "output.weight")
	rng := rand.New(rand.NewPCG(21, 21))
	type ad struct {
		typ   ggml.Type
		r     int
		alpha float32
		scale float64
	}
	var adapters []Adapter
	args := []string{"-m", basePath, "-o", filepath.Join(dir, "llamacpp.gguf"), "-t", "1"}
	for i, a := range []ad{{ggml.F16, 16, 32, 1}, {ggml.F32, 8, 4, 0.5}} {
		var ts []gtensor
		for _, name := range targets {
			ne := shapes[name]
			if name == "token_embd.weight" {
				ts = append(ts,
					gtensor{name + ".lora_a", a.typ, []int64{int64(a.r), ne[1]}, randF32(rng, a.r*int(ne[1]), 0.2)},
					gtensor{name + ".lora_b", a.typ, []int64{int64(a.r), ne[0]}, randF32(rng, a.r*int(ne[0]), 0.2)})
				continue
			}
			ga, gb := ggufLoRA(rng, name, int(ne[0]), int(ne[1]), a.r, a.typ, a.typ)
			ts = append(ts, ga, gb)
		}
		p := filepath.Join(dir, fmt.Sprintf("lora%d.gguf", i))
		writeGGUFFile(t, p, loraKV("llama", a.alpha), ts)
		adapters = append(adapters, Adapter{Path: p, Scale: a.scale})
		// Newer llama.cpp takes FNAME:SCALE (older builds took two arguments).
		args = append(args, "--lora-scaled", p+":"+strconv.FormatFloat(a.scale, 'g', -1, 64))
	}
	cmd := exec.Command(bin, args...)
	// A build with shared libraries keeps them next to the binary.
	cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+filepath.Dir(bin))
	var outb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &outb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", bin, err, outb.String())
	}
	ours := filepath.Join(dir, "gantry.gguf")
	rep, err := Merge(context.Background(), "gguf", basePath, ours, adapters)
	if err != nil {
		t.Fatal(err)
	}
	ref := readGGUF(t, filepath.Join(dir, "llamacpp.gguf"))
	got := readGGUF(t, ours)
	worst, merged, off, total := 0, 0, 0, 0
	for _, bt := range got.f.Tensors {
		rt, ok := ref.f.Tensor(bt.Name)
		if !ok || rt.Type != bt.Type {
			t.Fatalf("%s: llama.cpp wrote %v (found %v)", bt.Name, rt, ok)
		}
		if !slices.Contains(targets, bt.Name) {
			if !bytes.Equal(got.raw[bt.Name], ref.raw[bt.Name]) {
				t.Errorf("%s: untouched tensor differs", bt.Name)
			}
			continue
		}
		merged++
		g, r := got.vals[bt.Name], ref.vals[bt.Name]
		total += len(g)
		for i := range g {
			u := ulps(g[i], r[i], st.F16)
			if u > 0 {
				off++
			}
			worst = max(worst, u)
		}
	}
	t.Logf("%s: %d tensors merged (report %+v), max difference %d ULP of F16, %d of %d values differ", bin, merged, rep, worst, off, total)
	if worst > 1 {
		t.Errorf("max difference from llama-export-lora is %d ULP of F16, want at most 1", worst)
	}
	if merged != len(targets) {
		t.Errorf("compared %d merged tensors, want %d", merged, len(targets))
	}
}

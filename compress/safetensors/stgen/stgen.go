package stgen

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"

	"github.com/gantry-dev/gantry/compress/safetensors"
)

// Config describes the checkpoint. Zero fields take the defaults noted.
type Config struct {
	Layers       int               // decoder layers; default 2
	Hidden       int               // hidden size; default 256
	Intermediate int               // MLP size; default 512
	Vocab        int               // vocabulary size; default 1024
	Heads        int               // attention heads; default 4
	KVHeads      int               // key/value heads; default Heads/2 (at least 1)
	DType        safetensors.DType // F16, BF16 or F32; default BF16
	Shards       int               // number of weight files; 0 or 1 writes model.safetensors
	Seed         uint64            // PRNG seed
	// TieEmbeddings omits lm_head.weight and sets tie_word_embeddings.
	TieEmbeddings bool
	// Outliers, when > 0, makes one weight in Outliers an outlier 8× larger,
	// to give quantizers realistic rows.
	Outliers int
}

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Layers, 2)
	def(&c.Hidden, 256)
	def(&c.Intermediate, 512)
	def(&c.Vocab, 1024)
	def(&c.Heads, 4)
	def(&c.KVHeads, max(1, c.Heads/2))
	def(&c.Shards, 1)
	if c.DType == 0 {
		c.DType = safetensors.BF16
	}
	return c
}

// Tensor is one generated tensor's name and shape.
type Tensor struct {
	Name  string
	Shape []int64
}

// Tensors lists the checkpoint's tensors in model order.
func (c Config) Tensors() []Tensor {
	c = c.withDefaults()
	h, im, v := int64(c.Hidden), int64(c.Intermediate), int64(c.Vocab)
	hd := h / int64(c.Heads)
	kv := hd * int64(c.KVHeads)
	ts := []Tensor{{"model.embed_tokens.weight", []int64{v, h}}}
	for l := 0; l < c.Layers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		ts = append(ts,
			Tensor{p + "input_layernorm.weight", []int64{h}},
			Tensor{p + "self_attn.q_proj.weight", []int64{h, h}},
			Tensor{p + "self_attn.k_proj.weight", []int64{kv, h}},
			Tensor{p + "self_attn.v_proj.weight", []int64{kv, h}},
			Tensor{p + "self_attn.o_proj.weight", []int64{h, h}},
			Tensor{p + "post_attention_layernorm.weight", []int64{h}},
			Tensor{p + "mlp.gate_proj.weight", []int64{im, h}},
			Tensor{p + "mlp.up_proj.weight", []int64{im, h}},
			Tensor{p + "mlp.down_proj.weight", []int64{h, im}},
		)
	}
	ts = append(ts, Tensor{"model.norm.weight", []int64{h}})
	if !c.TieEmbeddings {
		ts = append(ts, Tensor{"lm_head.weight", []int64{v, h}})
	}
	return ts
}

func numel(s []int64) int64 {
	n := int64(1)
	for _, d := range s {
		n *= d
	}
	return n
}

// rng is splitmix64.
type rng uint64

func (r *rng) next() uint64 {
	*r += 0x9e3779b97f4a7c15
	z := uint64(*r)
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// Values fills dst with the values of the named tensor starting at element
// off. Each value depends only on cfg.Seed, cfg.Outliers, the name and the
// element index, so any range can be generated independently.
func Values(cfg Config, name string, off int64, dst []float32) {
	h := fnv.New64a()
	h.Write([]byte(name))
	key := h.Sum64() ^ cfg.Seed*0x9e3779b97f4a7c15
	norm := strings.Contains(name, "norm")
	var outlier uint64
	if cfg.Outliers > 0 {
		outlier = 4096 / uint64(min(cfg.Outliers, 4096))
	}
	for i := range dst {
		r := rng(key ^ uint64(off+int64(i))*0xd1b54a32d192ed03)
		u := r.next()
		// Sum of two 26-bit uniforms: triangular on (-1, 1), then scaled
		// to the ±0.05 range typical of trained linear weights.
		a := float64(u>>38) / (1 << 26)
		b := float64((u>>12)&(1<<26-1)) / (1 << 26)
		x := (a + b - 1) * 0.05
		switch {
		case norm:
			x += 1
		case u&0xfff < outlier:
			x *= 8
		}
		dst[i] = float32(x)
	}
}

// ShardName is the transformers name of shard i (1-based) of n.
func ShardName(i, n int) string {
	if n <= 1 {
		return "model.safetensors"
	}
	return fmt.Sprintf("model-%05d-of-%05d.safetensors", i, n)
}

// WriteLlamaCheckpoint writes the checkpoint described by cfg into dir,
// which is created if needed. Existing files of the same names are
// replaced.
func WriteLlamaCheckpoint(ctx context.Context, dir string, cfg Config) error {
	cfg = cfg.withDefaults()
	switch cfg.DType {
	case safetensors.F16, safetensors.BF16, safetensors.F32:
	default:
		return fmt.Errorf("stgen: dtype %s: want F16, BF16 or F32", cfg.DType)
	}
	if cfg.Hidden%cfg.Heads != 0 {
		return fmt.Errorf("stgen: hidden %d not divisible by %d heads", cfg.Hidden, cfg.Heads)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("stgen: %w", err)
	}
	tensors := cfg.Tensors()
	// Split into shards of about equal size, in model order.
	var total int64
	for _, t := range tensors {
		total += numel(t.Shape) * cfg.DType.Size()
	}
	shards := make([][]Tensor, cfg.Shards)
	var acc int64
	for _, t := range tensors {
		i := int(acc * int64(cfg.Shards) / max(total, 1))
		i = min(i, cfg.Shards-1)
		shards[i] = append(shards[i], t)
		acc += numel(t.Shape) * cfg.DType.Size()
	}
	weightMap := map[string]string{}
	for i, st := range shards {
		name := ShardName(i+1, cfg.Shards)
		for _, t := range st {
			weightMap[t.Name] = name
		}
		if err := writeShard(ctx, filepath.Join(dir, name), cfg, st); err != nil {
			return err
		}
	}
	if cfg.Shards > 1 {
		idx := map[string]any{"metadata": map[string]any{"total_size": total}, "weight_map": weightMap}
		if err := writeJSON(filepath.Join(dir, "model.safetensors.index.json"), idx); err != nil {
			return err
		}
	}
	torchDType := map[safetensors.DType]string{safetensors.F16: "float16", safetensors.BF16: "bfloat16", safetensors.F32: "float32"}[cfg.DType]
	config := map[string]any{
		"architectures":           []string{"LlamaForCausalLM"},
		"model_type":              "llama",
		"hidden_size":             cfg.Hidden,
		"intermediate_size":       cfg.Intermediate,
		"num_hidden_layers":       cfg.Layers,
		"num_attention_heads":     cfg.Heads,
		"num_key_value_heads":     cfg.KVHeads,
		"vocab_size":              cfg.Vocab,
		"hidden_act":              "silu",
		"max_position_embeddings": 2048,
		"rms_norm_eps":            1e-05,
		"rope_theta":              10000.0,
		"tie_word_embeddings":     cfg.TieEmbeddings,
		"torch_dtype":             torchDType,
		"bos_token_id":            1,
		"eos_token_id":            2,
		"transformers_version":    "4.44.0",
		"use_cache":               true,
	}
	files := map[string]any{
		"config.json":             config,
		"generation_config.json":  map[string]any{"bos_token_id": 1, "eos_token_id": 2, "_from_model_config": true},
		"special_tokens_map.json": map[string]any{"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
		"tokenizer_config.json":   map[string]any{"bos_token": "<s>", "eos_token": "</s>", "model_max_length": 2048, "tokenizer_class": "PreTrainedTokenizerFast"},
		"tokenizer.json":          map[string]any{"version": "1.0", "model": map[string]any{"type": "BPE", "vocab": map[string]int{"<unk>": 0, "<s>": 1, "</s>": 2}, "merges": []string{}}},
	}
	for name, v := range files {
		if err := writeJSON(filepath.Join(dir, name), v); err != nil {
			return err
		}
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("stgen: %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("stgen: %w", err)
	}
	return nil
}

func writeShard(ctx context.Context, path string, cfg Config, ts []Tensor) (err error) {
	infos := make([]safetensors.TensorInfo, len(ts))
	for i, t := range ts {
		infos[i] = safetensors.TensorInfo{Name: t.Name, DType: cfg.DType, Shape: t.Shape}
	}
	safetensors.SortCanonical(infos)
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("stgen: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("stgen: %w", cerr)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	w, err := safetensors.NewWriter(bw, map[string]string{"format": "pt"}, infos)
	if err != nil {
		return fmt.Errorf("stgen: %s: %w", path, err)
	}
	const chunk = 1 << 16
	vals := make([]float32, chunk)
	buf := make([]byte, chunk*cfg.DType.Size())
	for _, t := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := t.NumElements()
		for off := int64(0); off < n; off += chunk {
			m := min(chunk, n-off)
			Values(cfg, t.Name, off, vals[:m])
			if err := safetensors.EncodeFloat32(buf, vals[:m], cfg.DType); err != nil {
				return err
			}
			if _, err := w.Write(buf[:m*cfg.DType.Size()]); err != nil {
				return fmt.Errorf("stgen: %s: %w", path, err)
			}
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("stgen: %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("stgen: %w", err)
	}
	return nil
}

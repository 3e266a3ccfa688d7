package ggufgen

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"strings"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf"
)

// Config shapes a synthetic llama model.
type Config struct {
	Name    string    // general.name; "synthetic-llama" if empty
	Layers  int       // transformer blocks
	Embd    int       // embedding width (ne0 of most matrices)
	FF      int       // feed-forward width
	Vocab   int       // vocabulary size
	Heads   int       // attention heads
	HeadsKV int       // key/value heads (GQA); Heads if 0
	Type    ggml.Type // matrix type: F16 (zero value F32 means F32), BF16
	Seed    uint64
	// TiedEmbeddings leaves out output.weight, as models that reuse the
	// token embeddings for the output do.
	TiedEmbeddings bool
}

// Tiny is a small valid model (4 layers, 256 wide, about 3 MB in F16) for
// tests and examples.
func Tiny() Config {
	return Config{Layers: 4, Embd: 256, FF: 512, Vocab: 512, Heads: 4, HeadsKV: 2, Type: ggml.F16, Seed: 1}
}

// Sized returns an F16 config of at least the given number of bytes (it
// grows in steps, so up to about 1.5× more; 400 MB gives 582 MB),
// growing the width and layer count together, for memory and speed runs.
func Sized(bytes int64) Config {
	c := Config{Layers: 8, Embd: 1024, FF: 2816, Vocab: 8192, Heads: 16, HeadsKV: 4, Type: ggml.F16, Seed: 7}
	for c.approxBytes() < bytes {
		c.Layers += 2
		if c.Layers%8 == 0 && c.Embd < 4096 {
			c.Embd += 256
			c.FF = c.Embd * 11 / 4 / 256 * 256
		}
	}
	return c
}

func (c Config) approxBytes() int64 {
	var n int64
	for _, t := range c.Tensors() {
		n += t.Bytes()
	}
	return n
}

func (c Config) headsKV() int {
	if c.HeadsKV == 0 {
		return c.Heads
	}
	return c.HeadsKV
}

func (c Config) validate() error {
	if c.Layers < 1 || c.Embd < 1 || c.FF < 1 || c.Vocab < 3 || c.Heads < 1 {
		return fmt.Errorf("ggufgen: config %+v: every size must be positive, vocab at least 3", c)
	}
	if c.Embd%c.Heads != 0 || c.Heads%c.headsKV() != 0 {
		return fmt.Errorf("ggufgen: embd %d, heads %d, kv heads %d do not divide", c.Embd, c.Heads, c.headsKV())
	}
	switch c.Type {
	case ggml.F16, ggml.F32, ggml.BF16:
	default:
		return fmt.Errorf("ggufgen: matrix type %v: want f16, bf16 or f32", c.Type)
	}
	return nil
}

// Tensors lists the model's tensors in file order (token embeddings, the
// blocks, output norm, output), the order convert_hf_to_gguf.py uses and
// deliberately not llama-quantize's sorted order.
func (c Config) Tensors() []gguf.TensorInfo {
	kv := c.Embd / c.Heads * c.headsKV()
	mat := func(name string, ne0, ne1 int) gguf.TensorInfo {
		return gguf.TensorInfo{Name: name, Shape: []int64{int64(ne0), int64(ne1)}, Type: c.Type}
	}
	vec := func(name string, n int) gguf.TensorInfo {
		return gguf.TensorInfo{Name: name, Shape: []int64{int64(n)}, Type: ggml.F32}
	}
	ts := []gguf.TensorInfo{mat("token_embd.weight", c.Embd, c.Vocab)}
	for i := 0; i < c.Layers; i++ {
		p := fmt.Sprintf("blk.%d.", i)
		ts = append(ts,
			vec(p+"attn_norm.weight", c.Embd),
			mat(p+"attn_q.weight", c.Embd, c.Embd),
			mat(p+"attn_k.weight", c.Embd, kv),
			mat(p+"attn_v.weight", c.Embd, kv),
			mat(p+"attn_output.weight", c.Embd, c.Embd),
			vec(p+"ffn_norm.weight", c.Embd),
			mat(p+"ffn_gate.weight", c.Embd, c.FF),
			mat(p+"ffn_up.weight", c.Embd, c.FF),
			mat(p+"ffn_down.weight", c.FF, c.Embd),
		)
	}
	ts = append(ts, vec("output_norm.weight", c.Embd))
	if !c.TiedEmbeddings {
		ts = append(ts, mat("output.weight", c.Embd, c.Vocab))
	}
	return ts
}

// Metadata is the model's key/value list, in convert_hf_to_gguf.py's order.
func (c Config) Metadata() []gguf.KV {
	name := c.Name
	if name == "" {
		name = "synthetic-llama"
	}
	ftype := uint32(1) // MOSTLY_F16
	switch c.Type {
	case ggml.F32:
		ftype = 0
	case ggml.BF16:
		ftype = 32
	}
	tokens := make([]string, c.Vocab)
	scores := make([]float32, c.Vocab)
	types := make([]int32, c.Vocab)
	for i := range tokens {
		switch {
		case i == 0:
			tokens[i], types[i] = "<unk>", 2
		case i == 1:
			tokens[i], types[i] = "<s>", 3
		case i == 2:
			tokens[i], types[i] = "</s>", 3
		case i < 3+256:
			tokens[i], types[i] = fmt.Sprintf("<0x%02X>", i-3), 6
		default:
			tokens[i], types[i] = "\u2581t"+strings.Repeat("a", (i%7)+1)+fmt.Sprint(i), 1
			scores[i] = -float32(i)
		}
	}
	return []gguf.KV{
		{Key: "general.architecture", Value: "llama"},
		{Key: "general.type", Value: "model"},
		{Key: "general.name", Value: name},
		{Key: "llama.block_count", Value: uint32(c.Layers)},
		{Key: "llama.context_length", Value: uint32(2048)},
		{Key: "llama.embedding_length", Value: uint32(c.Embd)},
		{Key: "llama.feed_forward_length", Value: uint32(c.FF)},
		{Key: "llama.attention.head_count", Value: uint32(c.Heads)},
		{Key: "llama.attention.head_count_kv", Value: uint32(c.headsKV())},
		{Key: "llama.rope.freq_base", Value: float32(10000)},
		{Key: "llama.attention.layer_norm_rms_epsilon", Value: float32(1e-5)},
		{Key: "general.file_type", Value: ftype},
		{Key: "llama.vocab_size", Value: uint32(c.Vocab)},
		{Key: "llama.rope.dimension_count", Value: uint32(c.Embd / c.Heads)},
		{Key: "tokenizer.ggml.model", Value: "llama"},
		{Key: "tokenizer.ggml.pre", Value: "default"},
		{Key: "tokenizer.ggml.tokens", Value: gguf.Array{Elem: gguf.TypeString, Values: tokens}},
		{Key: "tokenizer.ggml.scores", Value: gguf.Array{Elem: gguf.TypeFloat32, Values: scores}},
		{Key: "tokenizer.ggml.token_type", Value: gguf.Array{Elem: gguf.TypeInt32, Values: types}},
		{Key: "tokenizer.ggml.bos_token_id", Value: uint32(1)},
		{Key: "tokenizer.ggml.eos_token_id", Value: uint32(2)},
		{Key: "tokenizer.ggml.unknown_token_id", Value: uint32(0)},
		{Key: "tokenizer.ggml.add_bos_token", Value: true},
		{Key: "tokenizer.ggml.add_eos_token", Value: false},
		{Key: "general.quantization_version", Value: uint32(2)},
	}
}

// WriteLlama writes the model described by cfg to path (atomically).
func WriteLlama(ctx context.Context, path string, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	tensors := cfg.Tensors()
	fw, err := gguf.Create(ctx, path, cfg.Metadata(), tensors)
	if err != nil {
		return fmt.Errorf("ggufgen: %w", err)
	}
	defer fw.Abort()
	const chunk = 1 << 18 // values per write
	vals := make([]float32, chunk)
	buf := make([]byte, 4*chunk)
	for _, t := range tensors {
		if err := ctx.Err(); err != nil {
			return err
		}
		g := newGen(cfg.Seed, t.Name)
		n := t.Elements()
		scale := float32(1 / math.Sqrt(float64(t.Shape[0])))
		isNorm := len(t.Shape) == 1
		for done := int64(0); done < n; {
			k := min(int64(chunk), n-done)
			v := vals[:k]
			for i := range v {
				if isNorm {
					v[i] = 1 + float32(0.05*g.normal()) // explicit: no FMA, same bytes on every CPU
				} else {
					x := g.normal() * scale
					if g.next()%1024 == 0 { // rare outliers, as trained weights have
						x *= 12
					}
					v[i] = x
				}
			}
			var b []byte
			switch t.Type {
			case ggml.F16:
				b = buf[:2*k]
				ggml.EncodeF16(b, v)
			case ggml.BF16:
				b = buf[:2*k]
				ggml.EncodeBF16(b, v)
			default:
				b = buf[:4*k]
				ggml.EncodeF32(b, v)
			}
			if _, err := fw.Write(b); err != nil {
				return fmt.Errorf("ggufgen: write %s: %w", path, err)
			}
			done += k
		}
	}
	return fw.Commit(ctx)
}

// gen is xorshift64* seeded per tensor from the config seed and the name,
// so a tensor's values do not depend on the tensors before it.
type gen struct{ s uint64 }

func newGen(seed uint64, name string) *gen {
	h := fnv.New64a()
	h.Write([]byte(name))
	s := splitmix(seed ^ h.Sum64())
	if s == 0 {
		s = 1
	}
	return &gen{s}
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

func (g *gen) next() uint64 {
	g.s ^= g.s >> 12
	g.s ^= g.s << 25
	g.s ^= g.s >> 27
	return g.s * 0x2545f4914f6cdd1d
}

// normal is an Irwin–Hall approximation of N(0,1): the sum of four 16-bit
// uniforms from one draw, centred and scaled (variance 4/12 -> 1).
func (g *gen) normal() float32 {
	r := g.next()
	s := float32(r&0xffff) + float32(r>>16&0xffff) + float32(r>>32&0xffff) + float32(r>>48)
	return (s/65536 - 2) * 1.7320508
}

// LoRA describes a synthetic GGUF LoRA adapter for a model of Base, as
// llama.cpp's convert_lora_to_gguf.py lays one out: general.type
// "adapter", adapter.type "lora", adapter.lora.alpha, and for each
// targeted matrix of ne [n_in, n_out] a pair NAME.lora_a of ne [n_in, r]
// and NAME.lora_b of ne [r, n_out], in F32 (or Type).
type LoRA struct {
	Base  Config
	Rank  int
	Alpha float32
	// Targets are suffixes of the matrices adapted, such as "attn_q" and
	// "attn_v" (every layer's); empty: attn_q, attn_k, attn_v and
	// attn_output.
	Targets []string
	Type    ggml.Type // F32 (zero value) or F16
	Seed    uint64
}

// Tensors lists the adapter's tensors in file order.
func (l LoRA) Tensors() []gguf.TensorInfo {
	targets := l.Targets
	if len(targets) == 0 {
		targets = []string{"attn_q", "attn_k", "attn_v", "attn_output"}
	}
	typ := l.Type
	if typ != ggml.F16 {
		typ = ggml.F32
	}
	var out []gguf.TensorInfo
	for _, t := range l.Base.Tensors() {
		if len(t.Shape) != 2 {
			continue
		}
		for _, s := range targets {
			if strings.HasSuffix(t.Name, "."+s+".weight") {
				out = append(out,
					gguf.TensorInfo{Name: t.Name + ".lora_a", Shape: []int64{t.Shape[0], int64(l.Rank)}, Type: typ},
					gguf.TensorInfo{Name: t.Name + ".lora_b", Shape: []int64{int64(l.Rank), t.Shape[1]}, Type: typ})
			}
		}
	}
	return out
}

// WriteLoRA writes the adapter l to path (atomically). Its values are
// small (|v| ≤ 1/√n_in for lora_a, 1/√r for lora_b), as a trained
// adapter's are, and depend only on l.Seed and the tensor's name.
func WriteLoRA(ctx context.Context, path string, l LoRA) error {
	if err := l.Base.validate(); err != nil {
		return err
	}
	if l.Rank < 1 {
		return fmt.Errorf("ggufgen: lora rank %d: want at least 1", l.Rank)
	}
	tensors := l.Tensors()
	if len(tensors) == 0 {
		return fmt.Errorf("ggufgen: lora targets %v match no matrix", l.Targets)
	}
	kvs := []gguf.KV{
		{Key: "general.architecture", Value: "llama"},
		{Key: "general.type", Value: "adapter"},
		{Key: "general.name", Value: "synthetic-lora"},
		{Key: "adapter.type", Value: "lora"},
		{Key: "adapter.lora.alpha", Value: l.Alpha},
	}
	fw, err := gguf.Create(ctx, path, kvs, tensors)
	if err != nil {
		return fmt.Errorf("ggufgen: %w", err)
	}
	defer fw.Abort()
	for _, t := range tensors {
		g := newGen(l.Seed, t.Name)
		n := t.Elements()
		vals := make([]float32, n)
		scale := float32(1 / math.Sqrt(float64(t.Shape[0])))
		for i := range vals {
			vals[i] = g.normal() * scale
		}
		var buf []byte
		if t.Type == ggml.F16 {
			buf = make([]byte, 2*n)
			for i, v := range vals {
				h := ggml.FP32ToFP16(v)
				buf[2*i], buf[2*i+1] = byte(h), byte(h>>8)
			}
		} else {
			buf = make([]byte, 4*n)
			for i, v := range vals {
				b := math.Float32bits(v)
				buf[4*i], buf[4*i+1], buf[4*i+2], buf[4*i+3] = byte(b), byte(b>>8), byte(b>>16), byte(b>>24)
			}
		}
		if _, err := fw.Write(buf); err != nil {
			return fmt.Errorf("ggufgen: %w", err)
		}
	}
	return fw.Commit(ctx)
}

package ctensors

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	st "github.com/gantry-dev/gantry/compress/safetensors"
	"github.com/gantry-dev/gantry/compress/safetensors/stgen"
)

// FuzzConvert drives arbitrary bytes, as the model.safetensors of a
// checkpoint, through the whole path of `gantry quantize` on safetensors:
// validation, planning, quantizing and the atomic output directory. It
// checks that nothing panics, that a refused input leaves nothing beside
// the output, and that an accepted one gives a checkpoint that reads back.
func FuzzConvert(f *testing.F) {
	// Small seeds: the fuzzer minimizes every new input byte by byte.
	b, err := os.ReadFile(filepath.Join(gen(f, stgen.Config{Layers: 1, Hidden: 32, Intermediate: 32, Vocab: 2, Heads: 1, Seed: 1}), "model.safetensors"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b, uint8(2))
	for i, dt := range []st.DType{st.BF16, st.F16, st.F32} {
		f.Add(safetensorsBytes(f, []st.TensorInfo{
			{Name: "lm_head.weight", DType: dt, Shape: []int64{2, 32}},
			{Name: "model.norm.weight", DType: dt, Shape: []int64{4}},
			{Name: "model.layers.0.self_attn.q_proj.weight", DType: dt, Shape: []int64{2, 32}},
			{Name: "model.layers.0.self_attn.k_proj.weight", DType: dt, Shape: []int64{1, 32}},
			{Name: "model.layers.0.mlp.up_proj.weight", DType: dt, Shape: []int64{1, 64}},
		}), uint8(i))
	}
	config := []byte(`{"architectures":["LlamaForCausalLM"],"model_type":"llama"}`)
	schemes := []string{"fp8", "int8", "int4", "int4"}
	groups := []int{0, 32, -1, 64}
	f.Fuzz(func(t *testing.T, b []byte, flags uint8) {
		dir := t.TempDir()
		in, parent := filepath.Join(dir, "in"), filepath.Join(dir, "out")
		for _, d := range []string{in, parent} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(in, "config.json"), config, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(in, "model.safetensors"), b, 0o644); err != nil {
			t.Fatal(err)
		}
		opts := Options{
			Scheme:         schemes[flags&3],
			AllowNonFinite: flags&4 != 0,
			QuantizeLMHead: flags&8 != 0,
			Threads:        1 + int(flags>>4&1),
		}
		if opts.Scheme == "int4" {
			opts.GroupSize = groups[flags>>5&3]
		}
		if flags&128 != 0 {
			opts.Skip = []string{"*.mlp.*"}
		}
		out := filepath.Join(parent, "ckpt")
		_, err := Convert(context.Background(), in, out, opts)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "ctensors: ") {
				t.Errorf("unprefixed error: %v", err)
			}
			var fe *st.FormatError
			if errors.As(err, &fe) && (fe.Offset < 0 || fe.Offset > int64(len(b))) {
				t.Errorf("offset %d outside the %d-byte input: %v", fe.Offset, len(b), err)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 0 {
				t.Errorf("refused conversion left %d entries", len(ents))
			}
			return
		}
		of, err := st.Open(filepath.Join(out, "model.safetensors"))
		if err != nil {
			t.Fatalf("output does not read back: %v", err)
		}
		of.Close()
		cfg, err := readJSONMap(filepath.Join(out, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := cfg["quantization_config"]; !ok {
			t.Fatal("output config.json has no quantization_config")
		}
	})
}

// safetensorsBytes is a safetensors file of the given tensors with small
// nonzero values.
func safetensorsBytes(tb testing.TB, tensors []st.TensorInfo) []byte {
	tb.Helper()
	st.SortCanonical(tensors)
	var buf bytes.Buffer
	w, err := st.NewWriter(&buf, map[string]string{"format": "pt"}, tensors)
	if err != nil {
		tb.Fatal(err)
	}
	for _, ti := range tensors {
		x := make([]float32, ti.NumElements())
		for i := range x {
			x[i] = float32(i%7-3) / 64
		}
		b := make([]byte, ti.ByteSize())
		if err := st.EncodeFloat32(b, x, ti.DType); err != nil {
			tb.Fatal(err)
		}
		if err := w.WriteTensor(ti.Name, b); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/compress/gguf"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
	st "github.com/gantry-dev/gantry/compress/safetensors"
	"github.com/gantry-dev/gantry/compress/safetensors/stgen"
)

// tinyGGUF writes a small generated model and returns its path, bytes and
// header.
func tinyGGUF(t *testing.T) (string, []byte, *gguf.File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "in.gguf")
	cfg := ggufgen.Tiny()
	cfg.Layers = 2
	if err := ggufgen.WriteLlama(context.Background(), path, cfg); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Read(context.Background(), bytes.NewReader(b), int64(len(b)), path)
	if err != nil {
		t.Fatal(err)
	}
	return path, b, f
}

func onlyEntry(t *testing.T, dir, want string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, ","); got != want {
		t.Errorf("%s holds [%s], want [%s]", dir, got, want)
	}
}

// TestQuantizeZeroDimension is issue 10 item 6 at the command: a GGUF file
// with a zero dimension used to panic (exit 2) and leave a temporary file
// in the output directory. It is exit 1 with an error naming the tensor
// and offset, and the output directory stays empty.
func TestQuantizeZeroDimension(t *testing.T) {
	path, b, f := tinyGGUF(t)
	ti, _ := f.Tensor("blk.0.attn_q.weight")
	off := ti.InfoOffset + 8 + int64(len(ti.Name)) + 4 // ne0
	binary.LittleEndian.PutUint64(b[off:], 0)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"q8_0", "q4_k_m"} {
		dir := t.TempDir()
		code, stdout, errs := gantry(t, "quantize", "--in", path, "--out", filepath.Join(dir, "out.gguf"), "--type", typ)
		if code != 1 {
			t.Errorf("%s: exit %d, want 1; stderr %q", typ, code, errs)
		}
		for _, want := range []string{`tensor "blk.0.attn_q.weight"`, fmt.Sprintf("offset %d", off), "dimension 0 is 0"} {
			if !strings.Contains(errs, want) {
				t.Errorf("%s: stderr %q lacks %q", typ, errs, want)
			}
		}
		if stdout != "" {
			t.Errorf("%s: stdout %q", typ, stdout)
		}
		onlyEntry(t, dir, "")
	}
}

// TestQuantizeNonFiniteKept is issue 10 item 17 at the command: a NaN in a
// norm (kept F32) or in lm_head (kept dense) is exit 1 naming the tensor,
// with nothing written; --allow-nonfinite lets it through.
func TestQuantizeNonFiniteKept(t *testing.T) {
	path, b, f := tinyGGUF(t)
	ti, _ := f.Tensor("blk.1.ffn_norm.weight")
	off := f.DataOffset + ti.Offset + 4*9
	binary.LittleEndian.PutUint32(b[off:], 0x7fc00000)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out.gguf")
	code, _, errs := gantry(t, "quantize", "--in", path, "--out", out, "--type", "q8_0")
	if code != 1 || !strings.Contains(errs, `tensor "blk.1.ffn_norm.weight"`) || !strings.Contains(errs, fmt.Sprintf("offset %d", off)) {
		t.Errorf("gguf: exit %d, stderr %q", code, errs)
	}
	onlyEntry(t, dir, "")
	if code, _, errs := gantry(t, "quantize", "--in", path, "--out", out, "--type", "q8_0", "--allow-nonfinite"); code != 0 {
		t.Errorf("gguf --allow-nonfinite: exit %d: %s", code, errs)
	}

	ckpt := filepath.Join(t.TempDir(), "ckpt")
	if err := stgen.WriteLlamaCheckpoint(context.Background(), ckpt, stgen.Config{Layers: 1, Hidden: 128, Intermediate: 256, Vocab: 64, Heads: 2}); err != nil {
		t.Fatal(err)
	}
	sf, err := st.Open(filepath.Join(ckpt, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	lm, _ := sf.Lookup("lm_head.weight")
	soff := sf.DataStart() + lm.Offsets[0] + 2*130
	sf.Close()
	w, err := os.OpenFile(filepath.Join(ckpt, "model.safetensors"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	bits := math.Float32bits(float32(math.Inf(1))) >> 16 // bf16 +Inf
	_, err = w.WriteAt([]byte{byte(bits), byte(bits >> 8)}, soff)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	code, _, errs = gantry(t, "quantize", "--in", ckpt, "--out", filepath.Join(dir, "int4"), "--type", "int4")
	if code != 1 || !strings.Contains(errs, `tensor "lm_head.weight"`) || !strings.Contains(errs, fmt.Sprintf("offset %d", soff)) || !strings.Contains(errs, "[1, 2]") {
		t.Errorf("safetensors: exit %d, stderr %q", code, errs)
	}
	onlyEntry(t, dir, "")
	if code, _, errs := gantry(t, "quantize", "--in", ckpt, "--out", filepath.Join(dir, "int4"), "--type", "int4", "--allow-nonfinite"); code != 0 {
		t.Errorf("safetensors --allow-nonfinite: exit %d: %s", code, errs)
	}
}

// TestQuantizeGroupSizeAndSkip is issue 10 item 13 at the command: group
// sizes vLLM cannot serve and skips that split a fused layer are exit 1
// with nothing written.
func TestQuantizeGroupSizeAndSkip(t *testing.T) {
	ckpt := filepath.Join(t.TempDir(), "ckpt")
	if err := stgen.WriteLlamaCheckpoint(context.Background(), ckpt, stgen.Config{Layers: 1, Hidden: 128, Intermediate: 256, Vocab: 64, Heads: 2}); err != nil {
		t.Fatal(err)
	}
	gg, _, _ := tinyGGUF(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--in", ckpt, "--type", "int4", "--group-size", "256"}, "vLLM serves only -1 (channel-wise), 32, 64 and 128"},
		{[]string{"--in", ckpt, "--type", "int4", "--group-size", "100"}, "vLLM serves only -1 (channel-wise), 32, 64 and 128"},
		{[]string{"--in", ckpt, "--type", "int8", "--group-size", "128"}, "only int4 takes a group size"},
		{[]string{"--in", gg, "--type", "q4_k_m", "--group-size", "128"}, "GGUF types have fixed block sizes"},
		{[]string{"--in", ckpt, "--type", "int4", "--skip", "model.layers.0.self_attn.q_proj"}, "fused sibling k_proj"},
		{[]string{"--in", ckpt, "--type", "int4", "--skip", "*.gate_proj"}, "fused sibling up_proj"},
	} {
		dir := t.TempDir()
		args := append([]string{"quantize", "--out", filepath.Join(dir, "out")}, tc.args...)
		code, _, errs := gantry(t, args...)
		if code != 1 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %q", tc.args, code, errs, tc.want)
		}
		onlyEntry(t, dir, "")
	}
	dir := t.TempDir()
	code, _, errs := gantry(t, "quantize", "--in", ckpt, "--out", filepath.Join(dir, "out"), "--type", "int4", "--group-size", "64",
		"--skip", "model.layers.0.self_attn.q_proj", "--skip", "model.layers.0.self_attn.k_proj", "--skip", "model.layers.0.self_attn.v_proj")
	if code != 0 {
		t.Errorf("group 64 with a whole qkv skip: exit %d: %s", code, errs)
	}
	onlyEntry(t, dir, "out")
}

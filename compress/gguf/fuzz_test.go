package gguf_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/gantry-dev/gantry/compress/gguf"
)

// FuzzRead checks that Read never panics or over-allocates, that every
// rejection is a located *gguf.Error, and that whatever it accepts can be
// written back and read again to the same header.
func FuzzRead(f *testing.F) {
	t := &testing.T{}
	f.Add(small(t, allKinds()))
	f.Add(small(t, []gguf.KV{{Key: "general.alignment", Value: uint32(64)}}))
	f.Add(start(2, 0).tensor("a", 0, 0, 16).tensor("b", 0, 64, 16).pad(128).Bytes())
	f.Add(start(1, 1).str("general.alignment").u32(4).u32(16).tensor("t", 8, 0, 32, 1).pad(64).Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		lim := gguf.DefaultLimits
		lim.MaxArray, lim.MaxString = 1<<16, 1<<16
		file, err := gguf.ReadWithLimits(context.Background(), bytes.NewReader(b), int64(len(b)), "fuzz.gguf", lim)
		if err != nil {
			var ge *gguf.Error
			if !errors.As(err, &ge) || ge.File != "fuzz.gguf" {
				t.Fatalf("unlocated error %v", err)
			}
			return
		}
		tensors := append([]gguf.TensorInfo(nil), file.Tensors...)
		var buf bytes.Buffer
		w, err := gguf.NewWriter(&buf, file.KV, tensors)
		if err != nil {
			t.Fatalf("accepted file cannot be written: %v", err)
		}
		for i := range file.Tensors {
			if _, err := io.Copy(w, file.TensorReader(&file.Tensors[i])); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Finish(); err != nil {
			t.Fatal(err)
		}
		again, err := gguf.ReadWithLimits(context.Background(), bytes.NewReader(buf.Bytes()), int64(buf.Len()), "again.gguf", lim)
		if err != nil {
			t.Fatalf("rewritten file rejected: %v", err)
		}
		if len(again.KV) != len(file.KV) || len(again.Tensors) != len(file.Tensors) {
			t.Fatalf("rewrite changed the header")
		}
	})
}

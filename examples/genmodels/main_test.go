package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
)

// TestCommittedModelsAreReproducible regenerates the example models and
// compares them with the committed files byte for byte.
func TestCommittedModelsAreReproducible(t *testing.T) {
	out := t.TempDir()
	if err := generate(context.Background(), out); err != nil {
		t.Fatal(err)
	}
	committed := filepath.Join("..", "quickstart", "models")
	n := 0
	err := filepath.WalkDir(out, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(out, p)
		got, _ := os.ReadFile(p)
		want, err := os.ReadFile(filepath.Join(committed, rel))
		if err != nil {
			t.Errorf("%s: %v (run go run ./examples/genmodels)", rel, err)
			return nil
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from the committed file (run go run ./examples/genmodels)", rel)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 2 {
		t.Fatalf("only %d files generated", n)
	}
}

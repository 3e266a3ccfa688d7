package stgen

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/gantry-dev/gantry/compress/safetensors"
)

func TestDeterministicAndShardIndependent(t *testing.T) {
	ctx := context.Background()
	cfg := Config{Layers: 2, Hidden: 64, Intermediate: 128, Vocab: 96, Seed: 7}
	d1, d2, d3 := t.TempDir(), t.TempDir(), t.TempDir()
	if err := WriteLlamaCheckpoint(ctx, d1, cfg); err != nil {
		t.Fatal(err)
	}
	if err := WriteLlamaCheckpoint(ctx, d2, cfg); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(filepath.Join(d1, "model.safetensors"))
	b, _ := os.ReadFile(filepath.Join(d2, "model.safetensors"))
	if !bytes.Equal(a, b) {
		t.Fatal("two runs differ")
	}
	cfg.Shards = 3
	if err := WriteLlamaCheckpoint(ctx, d3, cfg); err != nil {
		t.Fatal(err)
	}
	var idx struct {
		Metadata struct {
			TotalSize int64 `json:"total_size"`
		}
		WeightMap map[string]string `json:"weight_map"`
	}
	raw, err := os.ReadFile(filepath.Join(d3, "model.safetensors.index.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	single, err := safetensors.Open(filepath.Join(d1, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer single.Close()
	if len(idx.WeightMap) != len(single.Tensors()) {
		t.Fatalf("index has %d tensors, want %d", len(idx.WeightMap), len(single.Tensors()))
	}
	var total int64
	for _, ti := range single.Tensors() {
		total += ti.Offsets[1] - ti.Offsets[0]
		shard, err := safetensors.Open(filepath.Join(d3, idx.WeightMap[ti.Name]))
		if err != nil {
			t.Fatal(err)
		}
		x, _ := single.ReadTensor(ctx, ti.Name)
		y, err := shard.ReadTensor(ctx, ti.Name)
		shard.Close()
		if err != nil || !bytes.Equal(x, y) {
			t.Fatalf("%s differs between single file and shard (%v)", ti.Name, err)
		}
	}
	if idx.Metadata.TotalSize != total {
		t.Errorf("total_size %d, want %d", idx.Metadata.TotalSize, total)
	}
	for i := 1; i <= 3; i++ {
		if _, err := os.Stat(filepath.Join(d3, ShardName(i, 3))); err != nil {
			t.Error(err)
		}
	}
}

// TestGolden pins the generator's output so that a change to it, which
// would silently change every test built on it, is noticed.
func TestGolden(t *testing.T) {
	dir := t.TempDir()
	if err := WriteLlamaCheckpoint(context.Background(), dir, Config{Layers: 1, Hidden: 32, Intermediate: 64, Vocab: 40, Seed: 1, Outliers: 64}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%x", sha256.Sum256(b))
	const want = "b78406f34e737f48af0867fa3ca2abeb4febf9130f2fe97643e1f5b4a8993028"
	if got != want {
		t.Errorf("model.safetensors sha256 = %s, want %s", got, want)
	}
	var v [4]float32
	Values(Config{Seed: 1}, "model.norm.weight", 0, v[:])
	for _, x := range v {
		if x < 0.95 || x > 1.05 {
			t.Errorf("norm value %g outside 1±0.05", x)
		}
	}
}

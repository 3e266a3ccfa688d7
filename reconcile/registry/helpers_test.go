package registry

import (
	"bytes"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// testFiles is a tiny safetensors-style model: weights, configs, a doc and
// a nested file. Contents are fixed so digests are stable.
var testFiles = map[string]string{
	"model-00001-of-00002.safetensors": string(bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7}, 3000)),
	"model-00002-of-00002.safetensors": string(bytes.Repeat([]byte{9, 8, 7}, 5000)),
	"config.json":                      `{"architectures":["LlamaForCausalLM"],"hidden_size":64}`,
	"tokenizer.json":                   `{"version":"1.0"}`,
	"README.md":                        "# tiny\n",
	"extra/generation_config.json":     `{"temperature":0.7}`,
}

// writeModelDir writes files into a new directory and returns it.
func writeModelDir(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// testModel packages dir's files (in the map's order, which is random).
func testModel(dir string, files map[string]string) Model {
	m := Model{
		Release: "tiny-chat", Version: "ck-0123456789abcdef", Revision: "4e32347719d5",
		ContentKey: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", SourceDigest: "sha256:554d52f687ff",
		Format: "safetensors", Precision: "int4", Quantization: "int4", ParamSize: "1m",
		Quantize: map[string]string{"method": "int4", "group_size": "128"},
	}
	for p := range files {
		m.Files = append(m.Files, File{Path: p, Source: filepath.Join(dir, filepath.FromSlash(p))})
	}
	return m
}

// readTree returns every regular file below dir, by slash path.
func readTree(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&fs.ModeSymlink != 0 {
			t.Errorf("symlink %s in extracted tree", p)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t testing.TB, want map[string]string, dir string) {
	t.Helper()
	got := readTree(t, dir)
	if diff := cmp.Diff(keys(want), keys(got)); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: content differs (%d bytes, want %d)", k, len(got[k]), len(v))
		}
	}
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// quiet is a logger that drops everything.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// nilLogger silences pkg/registry's request log.
func nilLogger() *log.Logger { return log.New(io.Discard, "", 0) }

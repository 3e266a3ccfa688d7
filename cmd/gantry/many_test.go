package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// manyReleases copies the quickstart and adds n releases that differ from
// tiny-chat-gguf only by name (q8_0, so all n share one content key), and
// enough a100 nodes to hold them.
func manyReleases(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(quickstart)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "releases.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(b), `release "tiny-chat-gguf"`)
	block := strings.Replace(string(b[i:]), `method = "q4_k_m"`, `method = "q8_0"`, 1)
	var more strings.Builder
	for k := 0; k < n; k++ {
		more.WriteString(strings.Replace(block, `release "tiny-chat-gguf"`, fmt.Sprintf(`release "copy-%02d"`, k), 1))
		fmt.Fprintf(&more, "\nnode \"gpu-x%02d\" {\n  pool        = \"a100\"\n  gpus        = 8\n  gpu_memory  = \"80Gi\"\n  gpu_product = \"NVIDIA-A100-SXM4-80GB\"\n}\n", k)
	}
	if err := os.WriteFile(filepath.Join(dir, "more.hcl"), []byte(more.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// 30 releases pushed at once into one OCI layout, from a fresh state: the
// run succeeds, index.json is whole and names every image, and each
// release's shard references its own repository's image (the bugs: a
// corrupt index.json from racing writers, images missing from it, and
// releases sharing a content key getting each other's digest).
func TestManyReleasesOneLayout(t *testing.T) {
	if testing.Short() {
		t.Skip("30 releases end to end")
	}
	const n = 30
	dir := manyReleases(t, n)
	for attempt := 0; attempt < 2; attempt++ {
		state := t.TempDir()
		args := []string{"run", "--repo", dir, "--once", "--state-dir", state, "--jobs", "8", "--gc-keep", "0"}
		code, out, errs := gantry(t, args...)
		if code != 0 {
			t.Fatalf("fresh run %d: exit %d\n%s\n%s", attempt, code, errs, out)
		}
		raw, err := os.ReadFile(filepath.Join(state, "oci", "index.json"))
		if err != nil {
			t.Fatal(err)
		}
		var idx struct {
			Manifests []struct {
				Digest      string            `json:"digest"`
				Annotations map[string]string `json:"annotations"`
			} `json:"manifests"`
		}
		if err := json.Unmarshal(raw, &idx); err != nil {
			t.Fatalf("index.json: %v", err)
		}
		digestOf := map[string]string{} // repository -> model image digest
		attested := map[string]bool{}   // model image digests with an attestation
		for _, m := range idx.Manifests {
			repo, tag, _ := strings.Cut(m.Annotations["io.containerd.image.name"], ":")
			if subject, ok := strings.CutSuffix(tag, ".att"); ok {
				attested[strings.Replace(subject, "sha256-", "sha256:", 1)] = true
				continue
			}
			digestOf[repo] = m.Digest
		}
		for repo, d := range digestOf {
			if !attested[d] {
				t.Errorf("%s@%s has no attestation in the layout", repo, d)
			}
		}
		if len(digestOf) != n+2 {
			t.Fatalf("index.json names %d repositories, want %d", len(digestOf), n+2)
		}
		objs, err := filepath.Glob(filepath.Join(state, "objects", "deployment-*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		seen := 0
		for _, p := range objs {
			y, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(string(y), "\n") {
				i := strings.Index(line, "gantry.local/models/")
				if i < 0 {
					continue
				}
				ref := strings.Trim(strings.TrimSpace(line[i:]), `"'`)
				repo, digest, _ := strings.Cut(ref, "@")
				repo = strings.SplitN(repo, ":", 2)[0]
				if want := digestOf[repo]; digest != want {
					t.Errorf("%s references %s, but %s in the layout is %s", filepath.Base(p), ref, repo, want)
				}
				seen++
			}
		}
		if seen < n+2 {
			t.Errorf("%d model image references in %d shards, want at least %d", seen, len(objs), n+2)
		}
		code, out, _ = gantry(t, args...)
		if code != 0 || !strings.Contains(out, "0 actions executed") {
			t.Fatalf("second run: exit %d\n%s", code, out)
		}
	}
}

package reconcile_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/compress"
	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
	"github.com/gantry-dev/gantry/compress/lora"
	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile"
	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/spec"
)

// releaseStatus finds one release's status in a result.
func releaseStatus(t *testing.T, res reconcile.Result, name string) reconcile.ReleaseStatus {
	t.Helper()
	for _, r := range res.Releases {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no status of %s in %+v", name, res.Releases)
	return reconcile.ReleaseStatus{}
}

// An eval gate compares the candidate with the build that serves: a
// candidate over its bound is blocked with the metric and by how much,
// what serves stays as it is, and the image under the release's tag is
// never written. Relaxing the bound passes on cached results: neither
// build is evaluated again.
func TestEvalGateAgainstProduction(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	runs := filepath.Join(t.TempDir(), "runs")
	// The evaluator's metric is the size of the model file: a q8_0
	// build is larger than the q4_k_m one that serves.
	const evalBlock = `
  gate {
    eval "size" {
      command = ["sh", "-c", "echo \"$GANTRY_MODEL\" >> \"$RUNS\"; printf '{\"bytes\": %s}\n' $(wc -c < \"$GANTRY_MODEL\")"]
      env     = { RUNS = "RUNSFILE" }
      max_ratio_to_baseline = { bytes = 1.0 }
    }
  }

  runtime {
    image = "ghcr.io/ggml-org/llama.cpp:server"`
	f.edit(t, "releases.hcl", `
  runtime {
    image = "ghcr.io/ggml-org/llama.cpp:server"`, strings.ReplaceAll(evalBlock, "RUNSFILE", runs))
	res, err := f.e.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := releaseStatus(t, res, "tiny-chat-gguf")
	if st.State != reconcile.StateSynced || len(st.Evals) != 1 || st.Evals[0].Skipped == "" {
		t.Fatalf("first release: %+v", st)
	}
	countRuns := func() int {
		data, _ := os.ReadFile(runs)
		return strings.Count(string(data), "\n")
	}
	if n := countRuns(); n != 1 {
		t.Fatalf("evaluator ran %d times for the first release, want 1", n)
	}
	objects := filepath.Join(f.state, "objects")
	before := snapshotDir(t, objects)

	// A bigger candidate: blocked against the serving build.
	f.edit(t, "releases.hcl", `method = "q4_k_m"`, `method = "q8_0"`)
	f.reset()
	res, _ = f.e.Reconcile(ctx)
	st = releaseStatus(t, res, "tiny-chat-gguf")
	if st.State != reconcile.StateBlocked || !strings.Contains(st.Reason, "eval size: bytes = ") || !strings.Contains(st.Reason, "exceeds 1 × baseline") || !strings.Contains(st.Reason, " by ") {
		t.Fatalf("bigger candidate: %+v", st)
	}
	if len(st.Evals) != 1 || st.Evals[0].Baseline == nil || st.Evals[0].OK {
		t.Fatalf("checks %+v", st.Evals)
	}
	// The serving build's result is the one cached when it was the
	// candidate: only the new candidate runs.
	if n := countRuns(); n != 2 {
		t.Fatalf("evaluator ran %d times in all, want 2 (the first build, which is the baseline now, and the candidate)", n)
	}
	if after := snapshotDir(t, objects); after != before {
		t.Fatalf("a blocked candidate changed what serves:\n%s\n---\n%s", before, after)
	}
	r, _ := f.cfg(t).Release("tiny-chat-gguf")
	if _, ok, err := f.e.Store.Has(ctx, planner.ImageRef(f.cfg(t), r)); err != nil || ok {
		t.Fatalf("the blocked build is under the release's tag (ok=%v, %v)", ok, err)
	}

	// A looser bound passes on the cached results.
	f.edit(t, "releases.hcl", `bytes = 1.0`, `bytes = 3.0`)
	f.reset()
	res, _ = f.e.Reconcile(ctx)
	st = releaseStatus(t, res, "tiny-chat-gguf")
	if st.State != reconcile.StateSynced || len(st.Evals) != 1 || !st.Evals[0].OK {
		t.Fatalf("looser bound: %+v", st)
	}
	if n := countRuns(); n != 2 {
		t.Fatalf("evaluator ran again (%d runs): results are cached by build and evaluator", n)
	}
	if f.c.quantizes != 0 {
		t.Fatalf("quantized %d times: the build is cached", f.c.quantizes)
	}
}

// cfg loads the fixture's specs.
func (f *fixture) cfg(t *testing.T) *spec.Config {
	t.Helper()
	cfg, diags := spec.Load(context.Background(), f.repo, spec.LoadOptions{NoEnv: true})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	return cfg
}

// snapshotDir is every file under dir with its contents, for comparing.
func snapshotDir(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		b.WriteString(p + "\n" + string(data) + "\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// tinyGGUF is the quickstart's GGUF model (examples/genmodels).
var tinyGGUF = ggufgen.Config{
	Name: "tiny-llama", Layers: 2, Embd: 256, FF: 512, Vocab: 256, Heads: 4, HeadsKV: 2,
	Type: ggml.F16, Seed: 42,
}

// A release with an adapter builds the quantized merge: the image holds
// exactly what merging, then quantizing, by hand gives; the merged
// intermediate is not kept; and a new scale is a new build.
func TestFuseAdapterIntoGGUF(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	adapter := filepath.Join(f.repo, "adapters", "chat.gguf")
	if err := os.MkdirAll(filepath.Dir(adapter), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := ggufgen.WriteLoRA(ctx, adapter, ggufgen.LoRA{Base: tinyGGUF, Rank: 8, Alpha: 16, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	f.edit(t, "releases.hcl", `    source = "models/tiny-llama-f16.gguf"
    format = "gguf"`, `    source = "models/tiny-llama-f16.gguf"
    format = "gguf"
    adapter {
      source = "adapters/chat.gguf"
      scale  = 0.5
    }`)
	res, err := f.e.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st := releaseStatus(t, res, "tiny-chat-gguf"); st.State != reconcile.StateSynced {
		t.Fatalf("%+v", st)
	}
	var fused []string
	for _, a := range res.Plan.Actions {
		if a.Type == planner.Fuse {
			fused = append(fused, a.Release+" "+a.Subject)
		}
	}
	if len(fused) != 1 || fused[0] != "tiny-chat-gguf adapters/chat.gguf" {
		t.Fatalf("fuse actions %v", fused)
	}
	cfg := f.cfg(t)
	r, _ := cfg.Release("tiny-chat-gguf")
	key := planner.ContentKey(r)
	build := filepath.Join(f.state, "work", "builds", key)
	got, err := os.ReadFile(filepath.Join(build, "model", "model.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(build, "fuse.json")); err != nil {
		t.Error(err)
	}
	if left, _ := filepath.Glob(filepath.Join(build, "merged*")); len(left) > 0 {
		t.Errorf("the merged intermediate was kept: %v", left)
	}
	// By hand: merge, then quantize.
	dir := t.TempDir()
	merged := filepath.Join(dir, "merged.gguf")
	if _, err := lora.Merge(ctx, "gguf", filepath.Join(f.repo, "models", "tiny-llama-f16.gguf"), merged, []lora.Adapter{{Path: adapter, Scale: 0.5}}); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(dir, "q.gguf")
	if _, err := compress.Quantize(ctx, merged, want, compress.Options{Type: r.Quantize.Method}); err != nil {
		t.Fatal(err)
	}
	wantBytes, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, wantBytes) {
		t.Fatal("the build is not the quantized merge")
	}
	plain := filepath.Join(dir, "plain.gguf")
	if _, err := compress.Quantize(ctx, filepath.Join(f.repo, "models", "tiny-llama-f16.gguf"), plain, compress.Options{Type: r.Quantize.Method}); err != nil {
		t.Fatal(err)
	}
	if plainBytes, _ := os.ReadFile(plain); bytes.Equal(plainBytes, got) {
		t.Fatal("the adapter changed nothing")
	}
	if d := refDigest(t, f, cfg, r); d == "" {
		t.Fatal("no image pushed")
	}

	// Another scale is another build.
	f.edit(t, "releases.hcl", "scale  = 0.5", "scale  = 1.5")
	f.reset()
	res, _ = f.e.Reconcile(ctx)
	if st := releaseStatus(t, res, "tiny-chat-gguf"); st.State != reconcile.StateSynced || f.c.quantizes != 1 {
		t.Fatalf("new scale: %d quantizes, %+v", f.c.quantizes, st)
	}
	r2, _ := f.cfg(t).Release("tiny-chat-gguf")
	if planner.ContentKey(r2) == key {
		t.Fatal("the scale is not in the content key")
	}
}

// ref is the digest of the release's image in the fixture's store.
func refDigest(t *testing.T, f *fixture, cfg *spec.Config, r *spec.Release) string {
	t.Helper()
	d, ok, err := f.e.Store.Has(context.Background(), planner.ImageRef(cfg, r))
	if err != nil || !ok {
		t.Fatalf("image %s: ok=%v %v", planner.ImageRef(cfg, r), ok, err)
	}
	return d
}

// writeKeys writes a P-256 key pair as PEM: the private key (PKCS#8) and
// the public key (PKIX).
func writeKeys(t *testing.T, dir, name string) (priv, pub string, privPEM []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pder, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	privPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	priv, pub = filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pub")
	if err := os.WriteFile(priv, privPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pder}), 0o644); err != nil {
		t.Fatal(err)
	}
	return priv, pub, privPEM
}

// Every image gets its provenance; with a signing key it is signed, and
// with a verify key nothing that does not verify is applied: what serves
// stays, and the status says why. The private key is in no file written
// and no line logged.
func TestSignAttestAndVerify(t *testing.T) {
	ctx := context.Background()
	keys := t.TempDir()
	priv, pub, privPEM := writeKeys(t, keys, "release")
	_, otherPub, _ := writeKeys(t, keys, "other")
	f := newFixture(t)
	var logs bytes.Buffer
	f.e.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.edit(t, "gantry.hcl", `namespace = "llm"`, `namespace = "llm"
  signing_key_file = "`+priv+`"
  verify_key_file  = "`+pub+`"`)
	res, err := f.e.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range res.Releases {
		if st.State != reconcile.StateSynced {
			t.Fatalf("%s: %+v", st.Name, st)
		}
	}
	cfg := f.cfg(t)
	r, _ := cfg.Release("tiny-chat")
	ref := planner.ImageRef(cfg, r)
	digest := refDigest(t, f, cfg, r)
	src := f.e.Store.(registry.Source)
	v, err := registry.LoadVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	st, err := registry.Verify(ctx, src, ref, digest, v)
	if err != nil {
		t.Fatalf("the image and its attestation do not verify: %v", err)
	}
	prov, err := reconcile.ParseProvenance(st)
	if err != nil {
		t.Fatal(err)
	}
	ext := prov.BuildDefinition.ExternalParameters
	in := prov.BuildDefinition.InternalParameters
	if ext.Release != "tiny-chat" || ext.Model.Digest != r.Model.Digest || ext.Quantize.Method != r.Quantize.Method ||
		in.ContentKey != planner.ContentKey(r) || in.QuantizerVersion != planner.QuantizerVersion ||
		in.Gate == nil || in.Gate.WeightError == nil || in.Gate.WeightError.RelRMSE == nil {
		t.Fatalf("provenance %+v / %+v", ext, in)
	}

	// A verify key the images were not signed with: a model change is
	// refused, and what serves is left as it is.
	objects := filepath.Join(f.state, "objects")
	before := snapshotDir(t, objects)
	f.edit(t, "gantry.hcl", pub, otherPub)
	f.edit(t, "releases.hcl", `method = "q4_k_m"`, `method = "q8_0"`)
	res, _ = f.e.Reconcile(ctx)
	gg := releaseStatus(t, res, "tiny-chat-gguf")
	if gg.State != reconcile.StateFailed || !strings.Contains(gg.Reason, "refused to apply") || !strings.Contains(gg.Reason, "does not verify with "+otherPub) {
		t.Fatalf("unverified image: %+v", gg)
	}
	if after := snapshotDir(t, objects); after != before {
		t.Fatal("an image that does not verify was applied")
	}

	// The private key is nowhere Gantry wrote or logged.
	secret := strings.TrimSpace(string(privPEM))
	body := secret[strings.Index(secret, "\n")+1 : strings.LastIndex(secret, "\n")]
	for _, line := range strings.Split(body, "\n") {
		if strings.Contains(logs.String(), line) {
			t.Fatal("the private key is in the log")
		}
	}
	err = filepath.WalkDir(f.state, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, line := range strings.Split(body, "\n") {
			if bytes.Contains(data, []byte(line)) {
				t.Errorf("%s holds the private key", p)
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// With verify_key_file, an oci:// model source is pulled only once its
// cosign signature verifies: unsigned, the release fails saying so and
// nothing is pulled; signed, it builds.
func TestVerifiedOCISource(t *testing.T) {
	ctx := context.Background()
	remote, host, digest := upstreamModel(t, nil)
	keys := t.TempDir()
	priv, pub, _ := writeKeys(t, keys, "k")
	f := newFixture(t)
	f.e.Images = remote
	f.edit(t, "releases.hcl", `source = "models/tiny-llama-f16.gguf"`, `source = "oci://`+host+`/upstream/tiny@`+digest+`"`)
	f.edit(t, "gantry.hcl", `namespace = "llm"`, `namespace = "llm"
  signing_key_file = "`+priv+`"
  verify_key_file  = "`+pub+`"`)
	res, _ := f.e.Reconcile(ctx)
	st := releaseStatus(t, res, "tiny-chat-gguf")
	if st.State != reconcile.StateFailed || !strings.Contains(st.Reason, "refused to pull") || !strings.Contains(st.Reason, "has no cosign signature") {
		t.Fatalf("unsigned source: %+v", st)
	}
	if st := releaseStatus(t, res, "tiny-chat"); st.State != reconcile.StateSynced {
		t.Fatalf("the other release: %+v", st)
	}
	if left, _ := filepath.Glob(filepath.Join(f.e.WorkDir, "sources", "*")); len(left) != 0 {
		t.Fatalf("an unverified source was pulled: %v", left)
	}

	signer, err := registry.LoadSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := registry.Sign(ctx, remote, host+"/upstream/tiny:v1", digest, signer); err != nil {
		t.Fatal(err)
	}
	e := &reconcile.Engine{Source: f.e.Source, Target: f.e.Target, Store: f.e.Store, Images: remote,
		WorkDir: f.e.WorkDir, Log: f.e.Log, Quantize: f.e.Quantize}
	res, _ = e.Reconcile(ctx)
	if st := releaseStatus(t, res, "tiny-chat-gguf"); st.State != reconcile.StateSynced {
		t.Fatalf("signed source: %+v", st)
	}
}

// Thirty releases of one build, reconciled at once, run their shared
// evaluator once: the others wait for its result and read it.
func TestThirtyReleasesOneEval(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.e.Jobs = 4
	runs := filepath.Join(t.TempDir(), "runs")
	b, _ := os.ReadFile(filepath.Join(f.repo, "releases.hcl"))
	src := strings.Replace(string(b), `
  runtime {
    image = "ghcr.io/ggml-org/llama.cpp:server"`, `
  gate {
    eval "size" {
      command = ["sh", "-c", "echo run >> \"$RUNS\"; sleep 0.2; printf '{\"bytes\": %s}\n' $(wc -c < \"$GANTRY_MODEL\")"]
      env     = { RUNS = "`+runs+`" }
      min     = { bytes = 1 }
    }
  }

  runtime {
    image = "ghcr.io/ggml-org/llama.cpp:server"`, 1)
	i := strings.Index(src, `release "tiny-chat-gguf"`)
	block := src[i:]
	for n := range 29 {
		src += strings.Replace(block, `release "tiny-chat-gguf"`, fmt.Sprintf(`release "gguf-%02d"`, n), 1)
	}
	if err := os.WriteFile(filepath.Join(f.repo, "releases.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	// Static nodes: enough room for 30 releases of 2 GPUs each.
	f.edit(t, "nodes.hcl", "gpus        = 8", "gpus        = 80")
	res, err := f.e.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	synced := 0
	for _, st := range res.Releases {
		if st.State == reconcile.StateSynced {
			synced++
		} else {
			t.Errorf("%s: %s %s", st.Name, st.State, st.Reason)
		}
	}
	data, _ := os.ReadFile(runs)
	if n := strings.Count(string(data), "\n"); n != 1 || synced != 31 {
		t.Fatalf("%d releases synced; the shared evaluator ran %d times, want once", synced, n)
	}
}

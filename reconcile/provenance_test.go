package reconcile

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/gantry-dev/gantry/compress/quality"
	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/spec"
)

// provKeys writes an ECDSA P-256 key pair into dir.
func provKeys(t *testing.T, dir string) (priv, pub string, privPEM []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privPEM, err = cryptoutils.MarshalPrivateKeyToPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := cryptoutils.MarshalPublicKeyToPEM(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	priv, pub = filepath.Join(dir, "cosign.key"), filepath.Join(dir, "cosign.pub")
	if err := os.WriteFile(priv, privPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pubPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return priv, pub, privPEM
}

// provImage pushes a tiny ModelPack image of release into the layout.
func provImage(t *testing.T, ctx context.Context, l *registry.Layout, release string, n int) (ref, digest string) {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "config.json")
	if err := os.WriteFile(p, []byte(strings.Repeat("x", n+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := registry.BuildModelPack(ctx, registry.Model{Release: release, Version: "v1", Format: "safetensors",
		Files: []registry.File{{Path: "config.json", Source: p}}})
	if err != nil {
		t.Fatal(err)
	}
	ref = "gantry.local/models/" + release + ":ck-0123"
	digest, err = l.Write(ctx, ref, img)
	if err != nil {
		t.Fatal(err)
	}
	return ref, digest
}

func provRelease() (*spec.Config, *spec.Release) {
	scale := 0.5
	cfg := &spec.Config{Revision: "4e32347719d5aa0c1f0ffb8cc1b1c2d3e4f5a6b7"}
	r := &spec.Release{Name: "chat",
		Model: spec.Model{Source: "models/tiny", Format: "safetensors", Digest: "sha256:" + strings.Repeat("ab", 32),
			Adapters: []spec.Adapter{{Source: "adapters/sql", Digest: "sha256:" + strings.Repeat("cd", 32), Scale: &scale}}},
		Quantize: &spec.Quantize{Method: "int4", GroupSize: 128, Skip: []string{"lm_head", "embed"}},
	}
	return cfg, r
}

var provChecks = []planner.BoundCheck{
	{Eval: "ppl", Metric: "perplexity", Kind: "max", Bound: 12, Value: 10.5, OK: true},
	{Eval: "mmlu", Metric: "acc", Kind: "min", Bound: 0.6, Value: 0.62, OK: true},
}

func TestAttestStatementLayout(t *testing.T) {
	ctx := context.Background()
	l := registry.NewLayout(t.TempDir())
	ref, digest := provImage(t, ctx, l, "chat", 1)
	cfg, r := provRelease()
	e := &Engine{}
	werr := &quality.Tensor{Type: "int4", Params: 1000, RelRMSE: 0.02, MaxAbs: 0.1, Cosine: 0.999}
	if err := e.attest(ctx, l, cfg, r, "0123456789abcdef", ref, digest, werr, provChecks); err != nil {
		t.Fatal(err)
	}
	st, signed, err := registry.ReadAttestation(ctx, l, ref, digest)
	if err != nil {
		t.Fatal(err)
	}
	if signed {
		t.Error("signed without a key")
	}
	if st.Type != "https://in-toto.io/Statement/v1" || st.PredicateType != "https://slsa.dev/provenance/v1" || !st.Names(digest) ||
		st.Subject[0].Name != "gantry.local/models/chat" {
		t.Errorf("statement %s", st.Raw)
	}
	p, err := ParseProvenance(st)
	if err != nil {
		t.Fatal(err)
	}
	ext, in := p.BuildDefinition.ExternalParameters, p.BuildDefinition.InternalParameters
	if ext.Model.Digest != r.Model.Digest || len(ext.Adapters) != 1 || ext.Adapters[0].Scale != 0.5 ||
		ext.Adapters[0].Digest != r.Model.Adapters[0].Digest || ext.Quantize.Method != "int4" || ext.Quantize.GroupSize != 128 ||
		strings.Join(ext.Quantize.Skip, ",") != "embed,lm_head" || ext.Revision != cfg.Revision || ext.SpecHash != r.PodHash() {
		t.Errorf("externalParameters %+v", ext)
	}
	if in.QuantizerVersion != planner.QuantizerVersion || in.FuserVersion != planner.FuserVersion || in.ContentKey != "0123456789abcdef" ||
		in.Gate == nil || !in.Gate.Passed || len(in.Gate.Evals) != 2 || *in.Gate.WeightError.RelRMSE != 0.02 {
		t.Errorf("internalParameters %+v", in)
	}
	if len(p.BuildDefinition.ResolvedDependencies) != 3 || p.BuildDefinition.ResolvedDependencies[2].Digest["gitCommit"] != cfg.Revision {
		t.Errorf("resolvedDependencies %+v", p.BuildDefinition.ResolvedDependencies)
	}
	// Idempotent: the index is not rewritten, even by another engine.
	before, _ := os.ReadFile(filepath.Join(l.Dir, "index.json"))
	if err := (&Engine{}).attest(ctx, l, cfg, r, "0123456789abcdef", ref, digest, werr, provChecks); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(filepath.Join(l.Dir, "index.json"))
	if !bytes.Equal(before, after) {
		t.Error("attesting again rewrote index.json")
	}
	// No adapters: no fuser version; a NaN error is left out.
	r.Model.Adapters = nil
	ref2, digest2 := provImage(t, ctx, l, "plain", 2)
	if err := e.attest(ctx, l, cfg, r, "k2", ref2, digest2, &quality.Tensor{RelRMSE: nanValue()}, nil); err != nil {
		t.Fatal(err)
	}
	st2, _, err := registry.ReadAttestation(ctx, l, ref2, digest2)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := ParseProvenance(st2)
	if err != nil {
		t.Fatal(err)
	}
	if p2.BuildDefinition.InternalParameters.FuserVersion != "" || p2.BuildDefinition.InternalParameters.Gate.WeightError.RelRMSE != nil {
		t.Errorf("no adapters: %s", st2.Raw)
	}
}

func nanValue() float64 {
	z := 0.0
	return z / z
}

// TestAttestSignedVerifyImage signs with a planted key and checks
// verifyImage's answers, its cache, and that the key's bytes appear in
// no file written and no line logged.
func TestAttestSignedVerifyImage(t *testing.T) {
	ctx := context.Background()
	keys := t.TempDir()
	priv, pub, privPEM := provKeys(t, keys)
	_, wrongPub, _ := provKeys(t, t.TempDir())
	layoutDir := t.TempDir()
	l := registry.NewLayout(layoutDir)
	var logs bytes.Buffer
	e := &Engine{Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	cfg, r := provRelease()
	cfg.Settings.SigningKeyFile = priv
	ref, digest := provImage(t, ctx, l, "chat", 1)
	unsignedRef, unsignedDigest := provImage(t, ctx, l, "other", 2)
	if err := e.attest(ctx, l, cfg, r, "ck", ref, digest, nil, provChecks); err != nil {
		t.Fatal(err)
	}
	var errs []string
	check := func(keyFile, ref, digest, want string) {
		t.Helper()
		c := &spec.Config{}
		c.Settings.VerifyKeyFile = keyFile
		err := e.verifyImage(ctx, c, l, ref, digest)
		if err != nil {
			errs = append(errs, err.Error())
		}
		switch {
		case want == "" && err != nil:
			t.Errorf("verify %s with %s: %v", ref, keyFile, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("verify %s with %s: %v, want %q", ref, keyFile, err, want)
		}
	}
	check("", unsignedRef, unsignedDigest, "")
	check(pub, ref, digest, "")
	check(wrongPub, ref, digest, "does not verify")
	check(pub, unsignedRef, unsignedDigest, "has no cosign signature")
	check(filepath.Join(keys, "missing.pub"), ref, digest, "cannot read the verify key")
	check(priv, ref, digest, "cannot read the verify key") // a private key is no public key
	if _, err := registry.Verify(ctx, l, ref, digest, mustVerifier(t, pub)); err != nil {
		t.Errorf("attestation: %v", err)
	}
	// The attestation is signed: verify-attestation's check passes.
	if _, signed, err := registry.ReadAttestation(ctx, l, ref, digest); err != nil || !signed {
		t.Errorf("read: signed=%v %v", signed, err)
	}
	// Cached: a verified digest is not read again (the signature gone,
	// the answer stays); a missing one is asked again.
	sigImg, err := l.Image(ctx, "gantry.local/models/chat:"+registry.SignatureTag(digest))
	if err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(filepath.Join(layoutDir, "index.json"))
	check(pub, ref, digest, "")
	if _, err := l.Write(ctx, "gantry.local/models/other:"+registry.SignatureTag(unsignedDigest), sigImg); err != nil {
		t.Fatal(err)
	}
	check(pub, unsignedRef, unsignedDigest, "names another digest")

	// No key material anywhere.
	block, _ := pem.Decode(privPEM)
	needles := [][]byte{privPEM, []byte("PRIVATE KEY"), []byte(base64.StdEncoding.EncodeToString(block.Bytes)[:40]), block.Bytes}
	var haystack [][]byte
	haystack = append(haystack, logs.Bytes())
	for _, s := range errs {
		haystack = append(haystack, []byte(s))
	}
	filepath.WalkDir(layoutDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			haystack = append(haystack, b)
		}
		return nil
	})
	for _, h := range haystack {
		for _, n := range needles {
			if bytes.Contains(h, n) {
				t.Fatalf("key material in a file, an error or the log: %.200q", h)
			}
		}
	}
	if !strings.Contains(logs.String(), "attested model image") {
		t.Errorf("log: %s", logs.String())
	}
}

func TestAttestBadSigningKey(t *testing.T) {
	ctx := context.Background()
	l := registry.NewLayout(t.TempDir())
	ref, digest := provImage(t, ctx, l, "chat", 1)
	cfg, r := provRelease()
	secret := filepath.Join(t.TempDir(), "bad.key")
	os.WriteFile(secret, []byte("-----BEGIN EC PRIVATE KEY-----\nc2VjcmV0IGJ5dGVzIHRoYXQgbXVzdCBub3QgbGVhaw==\n-----END EC PRIVATE KEY-----\n"), 0o600)
	cfg.Settings.SigningKeyFile = secret
	err := (&Engine{}).attest(ctx, l, cfg, r, "ck", ref, digest, nil, nil)
	if !errors.Is(err, registry.ErrKey) || strings.Contains(err.Error(), "c2Vj") {
		t.Errorf("bad key: %v", err)
	}
	cfg.Settings.SigningKeyFile = filepath.Join(t.TempDir(), "none.key")
	if err := (&Engine{}).attest(ctx, l, cfg, r, "ck", ref, digest, nil, nil); !errors.Is(err, registry.ErrKey) {
		t.Errorf("missing key: %v", err)
	}
}

func mustVerifier(t *testing.T, pub string) signature.Verifier {
	t.Helper()
	v, err := registry.LoadVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// FuzzParseProvenance: a predicate read back from a store never panics
// the parser.
func FuzzParseProvenance(f *testing.F) {
	cfg, r := provRelease()
	st, _ := ProvenanceStatement(cfg, r, "k", "gantry.local/models/chat:x", "sha256:"+strings.Repeat("ab", 32), nil, provChecks)
	f.Add(st)
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha256":"00"}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{"buildDefinition":{"buildType":"https://gantry.dev/build/v1","externalParameters":{"adapters":7}}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := registry.ParseStatement(b)
		if err != nil {
			return
		}
		ParseProvenance(st)
	})
}

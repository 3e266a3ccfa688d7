package registry

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// testKeys writes a new key pair of kind ("ecdsa" or "ed25519") as PEM
// files in dir and returns their paths.
func testKeys(t testing.TB, dir, kind string) (priv, pub string) {
	t.Helper()
	var (
		k   any
		pk  any
		err error
	)
	switch kind {
	case "ecdsa":
		var e *ecdsa.PrivateKey
		e, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		k, pk = e, e.Public()
	case "ed25519":
		var p ed25519.PublicKey
		var s ed25519.PrivateKey
		p, s, err = ed25519.GenerateKey(rand.Reader)
		k, pk = s, p
	}
	if err != nil {
		t.Fatal(err)
	}
	privPEM, err := cryptoutils.MarshalPrivateKeyToPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := cryptoutils.MarshalPublicKeyToPEM(pk)
	if err != nil {
		t.Fatal(err)
	}
	priv, pub = filepath.Join(dir, kind+".key"), filepath.Join(dir, kind+".pub")
	if err := os.WriteFile(priv, privPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pub, pubPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

func testSignerVerifier(t testing.TB, kind string) (signature.SignerVerifier, signature.Verifier) {
	t.Helper()
	priv, pub := testKeys(t, t.TempDir(), kind)
	s, err := LoadSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	v, err := LoadVerifier(pub)
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// testStatement is a minimal valid statement of repo@digest.
func testStatement(repo, digest string) []byte {
	_, hex, _ := strings.Cut(digest, ":")
	b, _ := json.Marshal(map[string]any{
		"_type":         StatementTypeV1,
		"subject":       []any{map[string]any{"name": repo, "digest": map[string]string{"sha256": hex}}},
		"predicateType": PredicateSLSAProvenanceV1,
		"predicate":     map[string]any{"buildDefinition": map[string]any{"buildType": "https://gantry.dev/build/v1"}},
	})
	return b
}

// pushTestImage builds a small ModelPack image whose content depends on
// n and writes it as repo:tag.
func pushTestImage(t testing.TB, ctx context.Context, store Store, repo string, n int) (ref, digest string) {
	t.Helper()
	files := map[string]string{"config.json": fmt.Sprintf(`{"n":%d}`, n), "model.safetensors": strings.Repeat(fmt.Sprint(n), 100)}
	dir := writeModelDir(t, files)
	img, err := BuildModelPack(ctx, testModel(dir, files))
	if err != nil {
		t.Fatal(err)
	}
	ref = fmt.Sprintf("%s:v%d", repo, n)
	digest, err = store.Write(ctx, ref, img)
	if err != nil {
		t.Fatal(err)
	}
	return ref, digest
}

type testStore interface {
	Store
	Source
}

func stores(t *testing.T) map[string]func(t *testing.T) (testStore, string) {
	return map[string]func(t *testing.T) (testStore, string){
		"layout": func(t *testing.T) (testStore, string) {
			return NewLayout(t.TempDir()), "gantry.local/models/tiny"
		},
		"remote": func(t *testing.T) (testStore, string) {
			host := needRegistry(t)
			return NewRemote(Options{Logger: quiet, Retry: fastRetry}), host + "/attest/" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
		},
	}
}

func TestAttestSignVerify(t *testing.T) {
	for sname, mk := range stores(t) {
		for _, kind := range []string{"ecdsa", "ed25519"} {
			t.Run(sname+"/"+kind, func(t *testing.T) {
				ctx := context.Background()
				store, repo := mk(t)
				ref, digest := pushTestImage(t, ctx, store, repo, 1)
				_, other := pushTestImage(t, ctx, store, repo, 2)
				signer, verifier := testSignerVerifier(t, kind)
				_, wrong := testSignerVerifier(t, kind)

				if err := VerifySignature(ctx, store, ref, digest, verifier); !errors.Is(err, ErrNoSignature) {
					t.Fatalf("unsigned: %v, want ErrNoSignature", err)
				}
				st := testStatement(repo, digest)
				if err := AttachSigned(ctx, store, ref, digest, st, PredicateSLSAProvenanceV1, signer); err != nil {
					t.Fatal(err)
				}
				if err := Sign(ctx, store, ref, digest, signer); err != nil {
					t.Fatal(err)
				}
				got, err := Verify(ctx, store, ref, digest, verifier)
				if err != nil {
					t.Fatal(err)
				}
				if string(got.Raw) != string(st) || !got.Names(digest) {
					t.Errorf("statement %s", got.Raw)
				}
				// Idempotent: the same key signs and attests nothing again.
				sigDigest, _, _ := store.Has(ctx, repo+":"+SignatureTag(digest))
				attDigest, _, _ := store.Has(ctx, repo+":"+AttestationTag(digest))
				if err := AttachSigned(ctx, store, ref, digest, st, PredicateSLSAProvenanceV1, signer); err != nil {
					t.Fatal(err)
				}
				if err := Sign(ctx, store, ref, digest, signer); err != nil {
					t.Fatal(err)
				}
				if d, _, _ := store.Has(ctx, repo+":"+SignatureTag(digest)); d != sigDigest {
					t.Errorf("signature rewritten: %s, was %s", d, sigDigest)
				}
				if d, _, _ := store.Has(ctx, repo+":"+AttestationTag(digest)); d != attDigest {
					t.Errorf("attestation rewritten: %s, was %s", d, attDigest)
				}

				// Referrers: the attestation, with its artifactType.
				refs, err := Referrers(ctx, store, ref, digest)
				if err != nil {
					t.Fatal(err)
				}
				if len(refs) != 1 || refs[0].Digest.String() != attDigest || refs[0].ArtifactType != ArtifactTypeInToto {
					t.Errorf("referrers %+v, want the attestation %s", refs, attDigest)
				}
				if sname == "remote" {
					// distribution 2.8 has no referrers API: the fallback tag.
					fb, err := name.NewTag(repo+":"+strings.Replace(digest, ":", "-", 1), name.Insecure)
					if err != nil {
						t.Fatal(err)
					}
					desc, err := remote.Get(fb)
					if err != nil {
						t.Fatalf("fallback tag: %v", err)
					}
					if desc.MediaType != types.OCIImageIndex || !strings.Contains(string(desc.Manifest), attDigest) {
						t.Errorf("fallback tag %s: %s %s", fb, desc.MediaType, desc.Manifest)
					}
				}

				// A wrong key fails, for both.
				if err := VerifySignature(ctx, store, ref, digest, wrong); !errors.Is(err, ErrBadSignature) {
					t.Errorf("wrong key: %v", err)
				}
				if _, err := VerifyAttestation(ctx, store, ref, digest, wrong); !errors.Is(err, ErrBadSignature) {
					t.Errorf("wrong key, attestation: %v", err)
				}
				// A signature copied onto another image names the first.
				sigImg, err := store.Image(ctx, repo+":"+SignatureTag(digest))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := store.Write(ctx, repo+":"+SignatureTag(other), sigImg); err != nil {
					t.Fatal(err)
				}
				if err := VerifySignature(ctx, store, repo, other, verifier); !errors.Is(err, ErrPayloadDigest) {
					t.Errorf("copied signature: %v", err)
				}
				// A tampered payload (the signature of the original kept)
				// fails.
				layers, err := artifactLayers(ctx, store, repo+":"+SignatureTag(digest))
				if err != nil {
					t.Fatal(err)
				}
				layers[0].data = []byte(strings.Replace(string(layers[0].data), "cosign container image signature", "cosign container image signature ", 1))
				tampered, err := newArtifact("", nil, nil, layers)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := store.Write(ctx, repo+":"+SignatureTag(digest), tampered); err != nil {
					t.Fatal(err)
				}
				if err := VerifySignature(ctx, store, ref, digest, verifier); !errors.Is(err, ErrBadSignature) {
					t.Errorf("tampered payload: %v", err)
				}
				// Signing again appends a good signature.
				if err := Sign(ctx, store, ref, digest, signer); err != nil {
					t.Fatal(err)
				}
				if err := VerifySignature(ctx, store, ref, digest, verifier); err != nil {
					t.Errorf("re-signed: %v", err)
				}
				// A tampered envelope fails.
				attLayers, err := artifactLayers(ctx, store, repo+":"+AttestationTag(digest))
				if err != nil {
					t.Fatal(err)
				}
				var env map[string]any
				json.Unmarshal(attLayers[0].data, &env)
				env["payload"] = "eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjEifQ=="
				attLayers[0].data, _ = json.Marshal(env)
				rr, _ := repoOfRef(ref)
				subj, _ := subjectOf(ctx, store, rr, digest)
				bad, _ := newArtifact(ArtifactTypeInToto, &subj, nil, attLayers)
				if _, err := store.Write(ctx, repo+":"+AttestationTag(digest), bad); err != nil {
					t.Fatal(err)
				}
				if _, err := VerifyAttestation(ctx, store, ref, digest, verifier); !errors.Is(err, ErrBadSignature) {
					t.Errorf("tampered envelope: %v", err)
				}
			})
		}
	}
}

// TestAttachUnsigned: without a key the statement itself is the layer,
// found by ReadAttestation and listed as a referrer, and it does not pass
// for a signed one.
func TestAttachUnsigned(t *testing.T) {
	for sname, mk := range stores(t) {
		t.Run(sname, func(t *testing.T) {
			ctx := context.Background()
			store, repo := mk(t)
			ref, digest := pushTestImage(t, ctx, store, repo, 7)
			if _, _, err := ReadAttestation(ctx, store, ref, digest); !errors.Is(err, ErrNoAttestation) {
				t.Fatalf("none yet: %v", err)
			}
			st := testStatement(repo, digest)
			for range 2 {
				if err := Attach(ctx, store, ref, digest, Attestation{Statement: st, PredicateType: PredicateSLSAProvenanceV1}); err != nil {
					t.Fatal(err)
				}
			}
			got, signed, err := ReadAttestation(ctx, store, ref, digest)
			if err != nil || signed || string(got.Raw) != string(st) {
				t.Fatalf("read: %v signed=%v", err, signed)
			}
			refs, err := Referrers(ctx, store, ref, digest)
			if err != nil || len(refs) != 1 {
				t.Fatalf("referrers %v %v", refs, err)
			}
			s, v := testSignerVerifier(t, "ecdsa")
			if _, err := VerifyAttestation(ctx, store, ref, digest, v); !errors.Is(err, ErrBadSignature) {
				t.Errorf("unsigned attestation verified: %v", err)
			}
			// A key added later: the signed attestation replaces the tag.
			if err := AttachSigned(ctx, store, ref, digest, st, PredicateSLSAProvenanceV1, s); err != nil {
				t.Fatal(err)
			}
			if _, err := VerifyAttestation(ctx, store, ref, digest, v); err != nil {
				t.Errorf("signed later: %v", err)
			}
			want := map[string]int{"layout": 1, "remote": 2}[sname] // a registry keeps listing the first
			if refs, err := Referrers(ctx, store, ref, digest); err != nil || len(refs) != want {
				t.Errorf("referrers after signing: %d, want %d (%v)", len(refs), want, err)
			}
		})
	}
}

// TestAttestConcurrent attests and signs 30 images at once into one
// store; every one verifies afterwards and a Layout's index stays valid
// (run with -race).
func TestAttestConcurrent(t *testing.T) {
	for sname, mk := range stores(t) {
		t.Run(sname, func(t *testing.T) {
			ctx := context.Background()
			store, repo := mk(t)
			const n = 30
			refs, digests := make([]string, n), make([]string, n)
			for i := range n {
				refs[i], digests[i] = pushTestImage(t, ctx, store, fmt.Sprintf("%s-%d", repo, i%3), i)
			}
			signer, verifier := testSignerVerifier(t, "ecdsa")
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Go(func() {
					st := testStatement(refs[i], digests[i])
					if err := AttachSigned(ctx, store, refs[i], digests[i], st, PredicateSLSAProvenanceV1, signer); err != nil {
						errs[i] = err
						return
					}
					errs[i] = Sign(ctx, store, refs[i], digests[i], signer)
				})
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("image %d: %v", i, err)
				}
			}
			if l, ok := store.(*Layout); ok {
				im, _, err := l.readIndex()
				if err != nil {
					t.Fatal(err)
				}
				if len(im.Manifests) != 3*n {
					t.Errorf("index has %d entries, want %d", len(im.Manifests), 3*n)
				}
			}
			for i := range n {
				if _, err := Verify(ctx, store, refs[i], digests[i], verifier); err != nil {
					t.Errorf("image %d: %v", i, err)
				}
			}
		})
	}
}

// TestLayoutGCKeepsAttachments: signatures and attestations do not count
// against gc's keep, and go with their image.
func TestLayoutGCKeepsAttachments(t *testing.T) {
	ctx := context.Background()
	l := NewLayout(t.TempDir())
	repo := "gantry.local/models/tiny"
	signer, verifier := testSignerVerifier(t, "ed25519")
	var digests []string
	for i := range 3 {
		ref, d := pushTestImage(t, ctx, l, repo, i)
		digests = append(digests, d)
		if err := AttachSigned(ctx, l, ref, d, testStatement(repo, d), PredicateSLSAProvenanceV1, signer); err != nil {
			t.Fatal(err)
		}
		if err := Sign(ctx, l, ref, d, signer); err != nil {
			t.Fatal(err)
		}
	}
	res, err := l.GC(ctx, GCOptions{Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Kept) != 6 || len(res.Removed) != 3 {
		t.Errorf("kept %v removed %v", res.Kept, res.Removed)
	}
	for _, d := range digests[1:] {
		if _, err := Verify(ctx, l, repo, d, verifier); err != nil {
			t.Errorf("after gc: %v", err)
		}
	}
	if err := VerifySignature(ctx, l, repo, digests[0], verifier); !errors.Is(err, ErrNoSignature) {
		t.Errorf("dropped image's signature: %v", err)
	}
}

// TestLoadKeys: the kinds accepted, and errors that never hold the key.
func TestLoadKeys(t *testing.T) {
	dir := t.TempDir()
	for _, kind := range []string{"ecdsa", "ed25519"} {
		priv, _ := testKeys(t, dir, kind)
		if _, err := LoadSigner(priv); err != nil {
			t.Errorf("%s: %v", kind, err)
		}
	}
	// SEC1 ("EC PRIVATE KEY").
	e, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.MarshalECPrivateKey(e)
	if err != nil {
		t.Fatal(err)
	}
	sec1 := filepath.Join(dir, "sec1.key")
	os.WriteFile(sec1, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
	if _, err := LoadSigner(sec1); err != nil {
		t.Errorf("SEC1: %v", err)
	}
	// A P-384 key is refused, by name of its curve, without its bytes.
	e384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	pem384, _ := cryptoutils.MarshalPrivateKeyToPEM(e384)
	p384 := filepath.Join(dir, "p384.key")
	os.WriteFile(p384, pem384, 0o600)
	_, err = LoadSigner(p384)
	if !errors.Is(err, ErrKey) || !strings.Contains(err.Error(), "P-384") {
		t.Errorf("P-384: %v", err)
	}
	// A broken key: the error does not quote it.
	broken := filepath.Join(dir, "broken.key")
	secret := "-----BEGIN PRIVATE KEY-----\nTUlJRVZRSUJBREFOQmdrcWhraUc5dzBCQVFFRkFBU0NCSzh3Z2dTckFnRUFBb0lCQVFD\n-----END PRIVATE KEY-----\n"
	os.WriteFile(broken, []byte(secret), 0o600)
	_, err = LoadSigner(broken)
	if !errors.Is(err, ErrKey) || strings.Contains(err.Error(), "TUlJ") {
		t.Errorf("broken: %v", err)
	}
	if _, err := LoadVerifier(broken); !errors.Is(err, ErrKey) || strings.Contains(err.Error(), "TUlJ") {
		t.Errorf("broken pub: %v", err)
	}
}

// FuzzParseArtifacts: the parsers of what is read back from a store
// (statements, envelopes, signature payloads) never panic.
func FuzzParseArtifacts(f *testing.F) {
	f.Add(testStatement("r", "sha256:"+strings.Repeat("a", 64)))
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[{"keyid":"","sig":"AA=="}]}`))
	f.Add([]byte(`{"critical":{"identity":{"docker-reference":"r"},"image":{"docker-manifest-digest":"sha256:00"},"type":"cosign container image signature"},"optional":null}`))
	f.Add([]byte(`{"_type":"https://in-toto.io/Statement/v1","subject":[{}],"predicate":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if st, err := ParseStatement(b); err == nil {
			st.Names("sha256:00")
		}
		if env, err := ParseEnvelope(b); err == nil {
			env.DecodeB64Payload()
		}
		ParseSimpleSigning(b)
		l := artifactLayer{mediaType: MediaTypeSimpleSigning, data: b, annotations: map[string]string{AnnotationSignature: string(b)}}
		_, v := fuzzVerifier(t)
		verifyLayer(l, v, "sha256:00")
	})
}

var fuzzKeys struct {
	once sync.Once
	v    signature.Verifier
}

func fuzzVerifier(t *testing.T) (struct{}, signature.Verifier) {
	fuzzKeys.once.Do(func() {
		e, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		fuzzKeys.v, _ = signature.LoadVerifier(e.Public(), crypto.SHA256)
	})
	return struct{}{}, fuzzKeys.v
}

// TestAttestLayoutBatch: in a batch, attestations and signatures of
// images still pending are written, listed and verified, and all of it is
// in index.json once the batch ends.
func TestAttestLayoutBatch(t *testing.T) {
	ctx := context.Background()
	l := NewLayout(t.TempDir())
	end := l.Batch()
	repo := "gantry.local/models/tiny"
	signer, verifier := testSignerVerifier(t, "ecdsa")
	var wg sync.WaitGroup
	errs := make([]error, 20)
	digests := make([]string, 20)
	for i := range 20 {
		ref, d := pushTestImage(t, ctx, l, repo, i)
		digests[i] = d
		wg.Go(func() {
			if err := AttachSigned(ctx, l, ref, d, testStatement(repo, d), PredicateSLSAProvenanceV1, signer); err != nil {
				errs[i] = err
				return
			}
			errs[i] = Sign(ctx, l, ref, d, signer)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("image %d: %v", i, err)
		}
	}
	for _, d := range digests {
		if _, err := Verify(ctx, l, repo, d, verifier); err != nil {
			t.Errorf("in batch: %v", err)
		}
		if refs, err := Referrers(ctx, l, repo, d); err != nil || len(refs) != 1 {
			t.Errorf("referrers in batch: %v %v", refs, err)
		}
	}
	if err := end(ctx); err != nil {
		t.Fatal(err)
	}
	im, _, err := l.readIndex()
	if err != nil || len(im.Manifests) != 60 {
		t.Fatalf("index: %v, %d entries", err, len(im.Manifests))
	}
	l2 := NewLayout(l.Dir)
	for _, d := range digests {
		if _, err := Verify(ctx, l2, repo, d, verifier); err != nil {
			t.Errorf("after batch: %v", err)
		}
	}
}

// TestCopyAttachments: a mirror of an image with its signature and
// attestation copied verifies in the mirror.
func TestCopyAttachments(t *testing.T) {
	for sname, mk := range stores(t) {
		t.Run(sname, func(t *testing.T) {
			ctx := context.Background()
			src, repo := mk(t)
			dst, _ := mk(t)
			dstRepo := repo + "-mirror"
			ref, digest := pushTestImage(t, ctx, src, repo, 3)
			signer, verifier := testSignerVerifier(t, "ed25519")
			if err := AttachSigned(ctx, src, ref, digest, testStatement(repo, digest), PredicateSLSAProvenanceV1, signer); err != nil {
				t.Fatal(err)
			}
			if err := Sign(ctx, src, ref, digest, signer); err != nil {
				t.Fatal(err)
			}
			if _, err := Mirror(ctx, src, ref, dst, dstRepo+":v3", digest); err != nil {
				t.Fatal(err)
			}
			if err := VerifySignature(ctx, dst, dstRepo, digest, verifier); !errors.Is(err, ErrNoSignature) {
				t.Fatalf("mirror before copy: %v", err)
			}
			for range 2 {
				if err := CopyAttachments(ctx, src, ref, dst, dstRepo+":v3", digest); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := Verify(ctx, dst, dstRepo, digest, verifier); err != nil {
				t.Errorf("mirror: %v", err)
			}
			if refs, err := Referrers(ctx, dst, dstRepo, digest); err != nil || len(refs) != 1 {
				t.Errorf("mirror referrers: %v %v", refs, err)
			}
			// Nothing to copy: no error.
			ref2, digest2 := pushTestImage(t, ctx, src, repo, 4)
			if err := CopyAttachments(ctx, src, ref2, dst, dstRepo+":v4", digest2); err != nil {
				t.Errorf("none: %v", err)
			}
		})
	}
}

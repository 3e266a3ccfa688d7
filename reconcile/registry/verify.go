package registry

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// Why a verification failed, with errors.Is.
var (
	// ErrNoSignature: the image has no cosign signature (no .sig tag, or
	// no simple signing layer in it).
	ErrNoSignature = errors.New("no signature")
	// ErrBadSignature: no signature there verifies with the key.
	ErrBadSignature = errors.New("signature does not verify")
	// ErrPayloadDigest: a signature verifies, but its payload names
	// another digest than the image's.
	ErrPayloadDigest = errors.New("payload names another digest")
)

// LoadVerifier reads a PEM public key (ECDSA P-256 or Ed25519, PKIX) and
// returns its verifier.
func LoadVerifier(path string) (signature.Verifier, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: verify key: %w", ErrKey, err)
	}
	return ParseVerifier(path, b)
}

// keyKind accepts the public keys of the kinds Gantry signs with: ECDSA
// P-256 and Ed25519 (those of private keys too, through their public
// half).
func keyKind(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("ECDSA on %s; want P-256 or Ed25519", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("a %T; want ECDSA P-256 or Ed25519", pub)
	}
	return nil
}

// ParseVerifier is LoadVerifier of the PEM bytes b read from path (path
// only names it in errors).
func ParseVerifier(path string, b []byte) (signature.Verifier, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: verify key %s: not a PEM public key", ErrKey, path)
	}
	if err := keyKind(pub); err != nil {
		return nil, fmt.Errorf("%w: verify key %s: %s", ErrKey, path, err)
	}
	v, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%w: verify key %s: %w", ErrKey, path, err)
	}
	return v, nil
}

// ParseSimpleSigning parses a cosign simple signing payload (untrusted
// bytes).
func ParseSimpleSigning(b []byte) (*payload.SimpleContainerImage, error) {
	if len(b) > maxArtifactSize {
		return nil, fmt.Errorf("signature payload: %d bytes, more than %d", len(b), maxArtifactSize)
	}
	var p payload.SimpleContainerImage
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("signature payload: %w", err)
	}
	if p.Critical.Type != payload.CosignSignatureType {
		return nil, fmt.Errorf("signature payload: type %q, want %q", p.Critical.Type, payload.CosignSignatureType)
	}
	return &p, nil
}

// ParseEnvelope parses a DSSE envelope (untrusted bytes).
func ParseEnvelope(b []byte) (*dsse.Envelope, error) {
	if len(b) > maxArtifactSize {
		return nil, fmt.Errorf("envelope: %d bytes, more than %d", len(b), maxArtifactSize)
	}
	var env dsse.Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("envelope: %w", err)
	}
	if env.PayloadType != PayloadTypeInToto {
		return nil, fmt.Errorf("envelope: payloadType %q, want %q", env.PayloadType, PayloadTypeInToto)
	}
	return &env, nil
}

// verifyLayer checks one simple signing layer: its signature annotation
// verifies over its bytes with v, and the payload names digest.
func verifyLayer(l artifactLayer, v signature.Verifier, digest string) error {
	sig, err := base64.StdEncoding.DecodeString(l.annotations[AnnotationSignature])
	if err != nil || len(sig) == 0 {
		return ErrBadSignature
	}
	if err := v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(l.data)); err != nil {
		return ErrBadSignature
	}
	p, err := ParseSimpleSigning(l.data)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	if p.Critical.Image.DockerManifestDigest != digest {
		return fmt.Errorf("%w: %s", ErrPayloadDigest, p.Critical.Image.DockerManifestDigest)
	}
	return nil
}

// VerifySignature returns nil when the image ref@digest has a cosign
// signature (SignatureTag(digest) in its repository) that verifies with
// v and whose payload names digest. Else the error wraps ErrNoSignature,
// ErrBadSignature or ErrPayloadDigest, or says why the signatures could
// not be read.
func VerifySignature(ctx context.Context, src Source, ref, digest string, v signature.Verifier) error {
	repo, err := repoOfRef(ref)
	if err != nil {
		return err
	}
	layers, err := artifactLayers(ctx, src, repo.Tag(SignatureTag(digest)).String())
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%s@%s: %w", repo.Name(), digest, ErrNoSignature)
	}
	if err != nil {
		return fmt.Errorf("%s@%s: read signatures: %w", repo.Name(), digest, err)
	}
	why := ErrNoSignature
	for _, l := range layers {
		if l.mediaType != MediaTypeSimpleSigning {
			continue
		}
		err := verifyLayer(l, v, digest)
		if err == nil {
			return nil
		}
		if errors.Is(err, ErrPayloadDigest) || why == ErrNoSignature {
			why = err
		}
	}
	return fmt.Errorf("%s@%s: %w", repo.Name(), digest, why)
}

// VerifyAttestation returns the statement of the attestation of ref@digest
// (AttestationTag(digest) in its repository) whose DSSE envelope verifies
// with v and whose statement names digest as a subject. Errors wrap
// ErrNoAttestation, ErrBadSignature or ErrPayloadDigest.
func VerifyAttestation(ctx context.Context, src Source, ref, digest string, v signature.Verifier) (*Statement, error) {
	repo, err := repoOfRef(ref)
	if err != nil {
		return nil, err
	}
	layers, err := artifactLayers(ctx, src, repo.Tag(AttestationTag(digest)).String())
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%s@%s: %w", repo.Name(), digest, ErrNoAttestation)
	}
	if err != nil {
		return nil, fmt.Errorf("%s@%s: read attestation: %w", repo.Name(), digest, err)
	}
	pub, err := v.PublicKey()
	if err != nil {
		return nil, err
	}
	ev, err := dsse.NewEnvelopeVerifier(&sigdsse.VerifierAdapter{SignatureVerifier: v, Pub: pub})
	if err != nil {
		return nil, err
	}
	why := error(ErrNoAttestation)
	for _, l := range layers {
		if l.mediaType != MediaTypeDSSE {
			if l.mediaType == MediaTypeInToto && why == ErrNoAttestation {
				why = fmt.Errorf("%w: the attestation is not signed", ErrBadSignature)
			}
			continue
		}
		env, err := ParseEnvelope(l.data)
		if err != nil {
			why = fmt.Errorf("%w: %w", ErrBadSignature, err)
			continue
		}
		if _, err := ev.Verify(ctx, env); err != nil {
			why = ErrBadSignature
			continue
		}
		body, err := env.DecodeB64Payload()
		if err != nil {
			why = fmt.Errorf("%w: %w", ErrBadSignature, err)
			continue
		}
		st, err := ParseStatement(body)
		if err != nil {
			why = fmt.Errorf("%w: %w", ErrBadSignature, err)
			continue
		}
		if !st.Names(digest) {
			why = ErrPayloadDigest
			continue
		}
		return st, nil
	}
	return nil, fmt.Errorf("%s@%s: attestation: %w", repo.Name(), digest, why)
}

// Verify checks both: the image signature (VerifySignature) and its
// attestation (VerifyAttestation), and returns the verified statement.
func Verify(ctx context.Context, src Source, ref, digest string, v signature.Verifier) (*Statement, error) {
	if err := VerifySignature(ctx, src, ref, digest, v); err != nil {
		return nil, err
	}
	return VerifyAttestation(ctx, src, ref, digest, v)
}

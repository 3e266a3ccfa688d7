package registry

import (
	"bytes"
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"
	"github.com/sigstore/sigstore/pkg/signature/options"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// ErrKey: a signing or verification key could not be read or is of a
// kind Gantry does not use. Its messages name the file and the kind,
// never the key's bytes.
var ErrKey = errors.New("cannot read key")

// LoadSigner reads a PEM private key (ECDSA P-256 or Ed25519; PKCS#8 or
// SEC1; not encrypted) and returns a signer: ECDSA signs the SHA-256 of
// a message, Ed25519 the message, as cosign does. Errors never quote the
// file's content.
func LoadSigner(path string) (signature.SignerVerifier, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: signing key: %w", ErrKey, err)
	}
	defer clear(b)
	// No passphrase function: an encrypted key fails instead of prompting.
	priv, err := cryptoutils.UnmarshalPEMToPrivateKey(b, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: signing key %s: not an unencrypted PEM private key (PKCS#8 or SEC1)", ErrKey, path)
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: signing key %s: a %T; want ECDSA P-256 or Ed25519", ErrKey, path, priv)
	}
	if err := keyKind(signer.Public()); err != nil {
		return nil, fmt.Errorf("%w: signing key %s: %s", ErrKey, path, err)
	}
	// LoadSigner's kinds, with their public half (for idempotence checks).
	sv, err := signature.LoadSignerVerifier(priv, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%w: signing key %s: %w", ErrKey, path, err)
	}
	return sv, nil
}

// SimpleSigningPayload is the cosign payload that signs ref's repository
// at digest.
func SimpleSigningPayload(ref, digest string) ([]byte, error) {
	repo, err := repoOfRef(ref)
	if err != nil {
		return nil, err
	}
	d, err := name.NewDigest(repo.Name()+"@"+digest, name.WeakValidation)
	if err != nil {
		return nil, fmt.Errorf("digest %q: %w", digest, err)
	}
	return payload.Cosign{Image: d}.MarshalJSON()
}

// Sign signs the image ref@digest in cosign's key-based format: a simple
// signing payload (docker-reference the repository, docker-manifest-digest
// the digest) as a layer of media type
// application/vnd.dev.cosign.simplesigning.v1+json with its base64
// signature in the annotation dev.cosignproject.cosign/signature, in the
// image tagged SignatureTag(digest) of the same repository, so that
// `cosign verify --key` accepts it. Signatures by other keys already
// there are kept (cosign appends too); when one there verifies with
// signer's key and names the digest, nothing is written.
func Sign(ctx context.Context, store Store, ref, digest string, signer signature.SignerVerifier) error {
	repo, err := repoOfRef(ref)
	if err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	unlock := attachLocks.lock(repo.Name() + "@" + digest)
	defer unlock()
	tag := repo.Tag(SignatureTag(digest)).String()
	var layers []artifactLayer
	if src, ok := store.(Source); ok {
		existing, err := artifactLayers(ctx, src, tag)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return fmt.Errorf("sign %s@%s: read %s: %w", repo.Name(), digest, SignatureTag(digest), err)
		default:
			for _, l := range existing {
				if l.mediaType != MediaTypeSimpleSigning {
					continue
				}
				if verifyLayer(l, signer, digest) == nil {
					return nil
				}
				layers = append(layers, l)
			}
		}
	}
	p, err := SimpleSigningPayload(ref, digest)
	if err != nil {
		return fmt.Errorf("sign %s@%s: %w", repo.Name(), digest, err)
	}
	sig, err := signer.SignMessage(bytes.NewReader(p), options.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("sign %s@%s: %w", repo.Name(), digest, err)
	}
	layers = append(layers, artifactLayer{mediaType: MediaTypeSimpleSigning, data: p,
		annotations: map[string]string{AnnotationSignature: base64.StdEncoding.EncodeToString(sig)}})
	img, err := newArtifact("", nil, nil, layers)
	if err != nil {
		return fmt.Errorf("sign %s@%s: %w", repo.Name(), digest, err)
	}
	if _, err := store.Write(ctx, tag, img); err != nil {
		return fmt.Errorf("sign %s@%s: %w", repo.Name(), digest, err)
	}
	return nil
}

// SignEnvelope wraps statement in a DSSE envelope (payloadType
// application/vnd.in-toto+json) signed by signer, as cosign attest does;
// the result is JSON.
func SignEnvelope(ctx context.Context, statement []byte, signer signature.SignerVerifier) ([]byte, error) {
	es, err := dsse.NewEnvelopeSigner(&sigdsse.SignerAdapter{SignatureSigner: signer})
	if err != nil {
		return nil, err
	}
	env, err := es.SignPayload(ctx, PayloadTypeInToto, statement)
	if err != nil {
		return nil, fmt.Errorf("sign attestation: %w", err)
	}
	return json.Marshal(env)
}

// AttachSigned attaches statement as a DSSE envelope signed by signer
// (see Attach), unless the attestation there already is a valid envelope
// by signer's key of the same statement.
func AttachSigned(ctx context.Context, store Store, ref, digest string, statement []byte, predicateType string, signer signature.SignerVerifier) error {
	if src, ok := store.(Source); ok {
		if st, err := VerifyAttestation(ctx, src, ref, digest, signer); err == nil && bytes.Equal(st.Raw, statement) {
			return nil
		}
	}
	env, err := SignEnvelope(ctx, statement, signer)
	if err != nil {
		return err
	}
	return Attach(ctx, store, ref, digest, Attestation{Statement: statement, PredicateType: predicateType, Envelope: env})
}

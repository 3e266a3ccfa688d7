package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	attv1 "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// Media types, tags and annotations of the provenance artifacts: cosign's
// key-based layout (the ".sig" and ".att" tags of an image) and OCI 1.1
// referrers. The Provenance section of doc.go has the layout.
const (
	// ArtifactTypeInToto is the artifactType of the attestation manifest
	// (an OCI 1.1 referrer of the image).
	ArtifactTypeInToto = "application/vnd.in-toto+json"
	// MediaTypeInToto is the layer of an unsigned attestation: the
	// statement itself.
	MediaTypeInToto types.MediaType = "application/vnd.in-toto+json"
	// MediaTypeDSSE is the layer of a signed attestation: a DSSE envelope
	// whose payload is the statement (cosign's .att layer).
	MediaTypeDSSE types.MediaType = "application/vnd.dsse.envelope.v1+json"
	// MediaTypeSimpleSigning is the layer of a cosign signature: the
	// simple signing payload.
	MediaTypeSimpleSigning types.MediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	// AnnotationSignature holds the base64 signature of a layer's bytes
	// (empty on a DSSE layer: the envelope holds it).
	AnnotationSignature = "dev.cosignproject.cosign/signature"
	// AnnotationPredicateType is cosign's annotation of an attestation
	// layer with the statement's predicate type.
	AnnotationPredicateType = "predicateType"
	// AnnotationInTotoPredicateType is the same on the manifest, for OCI
	// 1.1 referrer filters.
	AnnotationInTotoPredicateType = "in-toto.io/predicate-type"
	// PayloadTypeInToto is the DSSE payloadType of a statement.
	PayloadTypeInToto = "application/vnd.in-toto+json"
	// StatementTypeV1 is the in-toto Statement v1 _type.
	StatementTypeV1 = "https://in-toto.io/Statement/v1"
	// PredicateSLSAProvenanceV1 is the SLSA provenance v1 predicate type
	// (cosign's --type slsaprovenance1).
	PredicateSLSAProvenanceV1 = "https://slsa.dev/provenance/v1"
)

// maxArtifactSize bounds what is read into memory from a signature or
// attestation layer: they are small JSON documents, and a registry is not
// trusted to keep them so.
const maxArtifactSize = 4 << 20

// ErrNoAttestation: the image carries no attestation.
var ErrNoAttestation = errors.New("no attestation")

// SignatureTag is cosign's tag of the signatures of the image digest
// ("sha256-<hex>.sig").
func SignatureTag(digest string) string { return digestTag(digest) + ".sig" }

// AttestationTag is cosign's tag of the attestations of the image digest
// ("sha256-<hex>.att").
func AttestationTag(digest string) string { return digestTag(digest) + ".att" }

func digestTag(digest string) string { return strings.Replace(digest, ":", "-", 1) }

// repoOfRef is the repository of ref (repo, repo:tag or repo@digest).
func repoOfRef(ref string) (name.Repository, error) {
	r, err := name.ParseReference(ref, name.WeakValidation)
	if err != nil {
		return name.Repository{}, fmt.Errorf("reference %q: %w", ref, err)
	}
	return r.Context(), nil
}

// Attestation is what Attach stores: a statement, and when it is signed
// the DSSE envelope around it (which is then what is stored).
type Attestation struct {
	// Statement is the in-toto statement, JSON.
	Statement []byte
	// PredicateType is the statement's predicate type.
	PredicateType string
	// Envelope, if set, is the DSSE envelope (JSON) whose payload is
	// Statement, signed.
	Envelope []byte
}

// Attach stores att as the attestation of the image ref@digest in store:
// one OCI image manifest with subject = the image's descriptor,
// artifactType application/vnd.in-toto+json and one layer (the DSSE
// envelope, or the bare statement when unsigned), tagged
// AttestationTag(digest) in the image's repository. That is cosign's .att
// layout, and through the subject an OCI 1.1 referrer: pushed to a
// registry without the referrers API (distribution 2.8),
// go-containerregistry adds it to the fallback tag index "sha256-<hex>";
// in a Layout it is an entry of index.json written through Layout.Write
// (its lock and batch). The tag holds the newest attestation; in a
// registry earlier ones stay listed as referrers (in a Layout the entry
// is replaced). An attestation already there byte for byte is not
// written again. Writes for one subject are serialised in this process;
// two processes attaching to one subject in a registry without the
// referrers API at once may lose one of them from the fallback index
// (go-containerregistry updates it without conditional requests); the
// .att tag is unaffected.
func Attach(ctx context.Context, store Store, ref, digest string, att Attestation) error {
	repo, err := repoOfRef(ref)
	if err != nil {
		return fmt.Errorf("attach attestation: %w", err)
	}
	unlock := attachLocks.lock(repo.Name() + "@" + digest)
	defer unlock()
	subject, err := subjectOf(ctx, store, repo, digest)
	if err != nil {
		return fmt.Errorf("attach attestation to %s@%s: %w", repo.Name(), digest, err)
	}
	layer := artifactLayer{mediaType: MediaTypeInToto, data: att.Statement,
		annotations: map[string]string{AnnotationPredicateType: att.PredicateType}}
	if att.Envelope != nil {
		layer.mediaType, layer.data = MediaTypeDSSE, att.Envelope
		layer.annotations[AnnotationSignature] = ""
	}
	img, err := newArtifact(ArtifactTypeInToto, &subject,
		map[string]string{AnnotationInTotoPredicateType: att.PredicateType}, []artifactLayer{layer})
	if err != nil {
		return fmt.Errorf("attach attestation to %s@%s: %w", repo.Name(), digest, err)
	}
	tag := repo.Tag(AttestationTag(digest)).String()
	want, err := img.Digest()
	if err != nil {
		return err
	}
	if got, ok, err := store.Has(ctx, tag); err == nil && ok && got == want.String() {
		return nil
	}
	if _, err := store.Write(ctx, tag, img); err != nil {
		return fmt.Errorf("attach attestation to %s@%s: %w", repo.Name(), digest, err)
	}
	return nil
}

// attachLocks serialises the writes of attachments per subject in this
// process: a registry without the referrers API keeps them in one fallback
// index per subject, which go-containerregistry updates by read, modify,
// write.
var attachLocks hostLocks

// subjectOf is the descriptor of repo@digest in store.
func subjectOf(ctx context.Context, store Store, repo name.Repository, digest string) (v1.Descriptor, error) {
	src, ok := store.(Source)
	if !ok {
		return v1.Descriptor{}, fmt.Errorf("store %T cannot read images", store)
	}
	img, err := src.Image(ctx, repo.Name()+"@"+digest)
	if err != nil {
		return v1.Descriptor{}, err
	}
	d, err := partial.Descriptor(img)
	if err != nil {
		return v1.Descriptor{}, err
	}
	if d.Digest.String() != digest {
		return v1.Descriptor{}, fmt.Errorf("%w: read %s, want %s", ErrDigestMismatch, d.Digest, digest)
	}
	return v1.Descriptor{MediaType: d.MediaType, Size: d.Size, Digest: d.Digest}, nil
}

// artifactLayer is one small blob of a signature or attestation manifest.
type artifactLayer struct {
	mediaType   types.MediaType
	data        []byte
	annotations map[string]string
}

// newArtifact builds an OCI image manifest with the layers, a config that
// names their digests (so that no two artifacts share a config blob:
// docker-registry loses concurrent uploads of one blob) and, if given,
// artifactType, subject and annotations.
func newArtifact(artifactType string, subject *v1.Descriptor, annotations map[string]string, layers []artifactLayer) (v1.Image, error) {
	a := &attachment{blobs: map[v1.Hash]partial.CompressedLayer{}}
	cfg := v1.ConfigFile{RootFS: v1.RootFS{Type: "layers"}, History: []v1.History{{}}}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, ArtifactType: artifactType, Subject: subject}
	if len(annotations) > 0 {
		m.Annotations = annotations
	}
	for _, l := range layers {
		sl := static.NewLayer(l.data, l.mediaType)
		h, err := sl.Digest()
		if err != nil {
			return nil, err
		}
		a.blobs[h] = sl
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, h)
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: l.mediaType, Size: int64(len(l.data)), Digest: h, Annotations: l.annotations})
	}
	rawCfg, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cl := static.NewLayer(rawCfg, types.OCIConfigJSON)
	ch, _ := cl.Digest()
	a.blobs[ch] = cl
	a.config = rawCfg
	m.Config = v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(rawCfg)), Digest: ch}
	if a.manifest, err = json.Marshal(m); err != nil {
		return nil, err
	}
	return partial.CompressedToImage(a)
}

// attachment is an image made of bytes in memory.
type attachment struct {
	manifest, config []byte
	blobs            map[v1.Hash]partial.CompressedLayer
}

func (a *attachment) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (a *attachment) RawManifest() ([]byte, error)        { return a.manifest, nil }
func (a *attachment) RawConfigFile() ([]byte, error)      { return a.config, nil }
func (a *attachment) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := a.blobs[h]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("blob %s is not in the artifact", h)
}

// referrerLister is a store that lists the referrers of an image.
type referrerLister interface {
	referrers(ctx context.Context, repo name.Repository, digest v1.Hash) ([]v1.Descriptor, error)
}

var (
	_ referrerLister = (*Remote)(nil)
	_ referrerLister = (*Layout)(nil)
)

// Referrers lists the manifests whose subject is ref@digest (ref names the
// repository): from a registry, its referrers API or, without one (as
// distribution 2.8), the fallback tag "sha256-<hex>" that
// go-containerregistry maintains; from a Layout, the index entries of the
// repository tagged "sha256-<hex>…" whose manifest has that subject. Each
// descriptor has its artifactType.
func Referrers(ctx context.Context, src Source, ref, digest string) ([]v1.Descriptor, error) {
	repo, err := repoOfRef(ref)
	if err != nil {
		return nil, fmt.Errorf("referrers: %w", err)
	}
	h, err := v1.NewHash(digest)
	if err != nil {
		return nil, fmt.Errorf("referrers of %s: digest %q: %w", repo.Name(), digest, err)
	}
	rl, ok := src.(referrerLister)
	if !ok {
		return nil, fmt.Errorf("referrers of %s@%s: source %T cannot list referrers", repo.Name(), digest, src)
	}
	ds, err := rl.referrers(ctx, repo, h)
	if err != nil {
		return nil, fmt.Errorf("referrers of %s@%s: %w", repo.Name(), digest, err)
	}
	return ds, nil
}

func (r *Remote) referrers(ctx context.Context, repo name.Repository, digest v1.Hash) ([]v1.Descriptor, error) {
	rr, err := r.parse(repo.Name() + "@" + digest.String())
	if err != nil {
		return nil, err
	}
	d, ok := rr.(name.Digest)
	if !ok {
		return nil, fmt.Errorf("%s is not a digest reference", rr)
	}
	idx, err := remote.Referrers(d, r.remoteOptions(ctx)...)
	if err != nil {
		return nil, classify(rr, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	return im.Manifests, nil
}

func (l *Layout) referrers(ctx context.Context, repo name.Repository, digest v1.Hash) ([]v1.Descriptor, error) {
	release, err := l.readLock(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	prefix := digestTag(digest.String())
	var cands []v1.Descriptor
	// A batch of this process may hold the attestation pending.
	if d, err := l.lookup(repo.Tag(AttestationTag(digest.String())).String()); err == nil && d != nil {
		cands = append(cands, *d)
	}
	im, _, err := l.index()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		full := d.Annotations[AnnotationImageName]
		if !strings.HasPrefix(d.Annotations[AnnotationRefName], prefix) || full == "" || !sameRepo(full, repo.Tag("x")) {
			continue
		}
		cands = append(cands, d)
	}
	var out []v1.Descriptor
	seen := map[v1.Hash]bool{}
	for _, d := range cands {
		if seen[d.Digest] {
			continue
		}
		seen[d.Digest] = true
		raw, err := l.readManifest(d)
		if errors.Is(err, errBroken) {
			continue
		}
		if err != nil {
			return nil, err
		}
		var m v1.Manifest
		if json.Unmarshal(raw, &m) != nil || m.Subject == nil || m.Subject.Digest != digest {
			continue
		}
		at := m.ArtifactType
		if at == "" {
			at = string(m.Config.MediaType)
		}
		out = append(out, v1.Descriptor{MediaType: m.MediaType, Size: int64(len(raw)), Digest: d.Digest, ArtifactType: at, Annotations: m.Annotations})
	}
	return out, nil
}

// artifactLayers reads the layers of the artifact image at ref in src,
// each with its annotations and bytes (at most maxArtifactSize each).
func artifactLayers(ctx context.Context, src Source, ref string) ([]artifactLayer, error) {
	img, err := src.Image(ctx, ref)
	if err != nil {
		return nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	if len(m.Layers) > 64 {
		return nil, fmt.Errorf("%s has %d layers; a signature or attestation has a few", ref, len(m.Layers))
	}
	var out []artifactLayer
	for _, d := range m.Layers {
		if d.Size > maxArtifactSize {
			return nil, fmt.Errorf("%s: layer %s has %d bytes, more than %d", ref, d.Digest, d.Size, maxArtifactSize)
		}
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			return nil, err
		}
		rc, err := l.Compressed()
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(io.LimitReader(rc, maxArtifactSize+1))
		rc.Close()
		if err != nil {
			return nil, err
		}
		if got, _, _ := v1.SHA256(bytes.NewReader(b)); got != d.Digest {
			return nil, fmt.Errorf("%s: layer %s: content has digest %s", ref, d.Digest, got)
		}
		out = append(out, artifactLayer{mediaType: d.MediaType, data: b, annotations: d.Annotations})
	}
	return out, nil
}

// Statement is an in-toto statement as read back from a store: untrusted
// until its envelope verified.
type Statement struct {
	Type          string          `json:"_type"`
	Subject       []Subject       `json:"subject"`
	PredicateType string          `json:"predicateType"`
	Predicate     json.RawMessage `json:"predicate"`
	// Raw is the statement's bytes as read.
	Raw []byte `json:"-"`
}

// Subject is one subject of a statement.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Names reports whether the statement has a subject with digest
// ("sha256:<hex>").
func (s *Statement) Names(digest string) bool {
	alg, hex, ok := strings.Cut(digest, ":")
	if !ok {
		return false
	}
	for _, sub := range s.Subject {
		if sub.Digest[alg] == hex {
			return true
		}
	}
	return false
}

// ParseStatement parses and validates an in-toto v1 statement read from
// a store (untrusted bytes): in-toto's own validation (type, subjects with
// digests, predicate type) must pass.
func ParseStatement(b []byte) (*Statement, error) {
	if len(b) > maxArtifactSize {
		return nil, fmt.Errorf("statement: %d bytes, more than %d", len(b), maxArtifactSize)
	}
	var pb attv1.Statement
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &pb); err != nil {
		return nil, fmt.Errorf("statement: %w", err)
	}
	if err := pb.Validate(); err != nil {
		return nil, fmt.Errorf("statement: %w", err)
	}
	var s Statement
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("statement: %w", err)
	}
	if s.Type != StatementTypeV1 {
		return nil, fmt.Errorf("statement: _type %q, want %q", s.Type, StatementTypeV1)
	}
	s.Raw = bytes.Clone(b)
	return &s, nil
}

// ReadAttestation reads, without verifying anything, the newest
// attestation of ref@digest: the statement and whether it came in a DSSE
// envelope (signed). ErrNoAttestation when there is none.
func ReadAttestation(ctx context.Context, src Source, ref, digest string) (st *Statement, signed bool, err error) {
	repo, err := repoOfRef(ref)
	if err != nil {
		return nil, false, err
	}
	layers, err := artifactLayers(ctx, src, repo.Tag(AttestationTag(digest)).String())
	if errors.Is(err, ErrNotFound) {
		return nil, false, fmt.Errorf("%s@%s: %w", repo.Name(), digest, ErrNoAttestation)
	}
	if err != nil {
		return nil, false, fmt.Errorf("read attestation of %s@%s: %w", repo.Name(), digest, err)
	}
	for _, l := range layers {
		var payload []byte
		switch l.mediaType {
		case MediaTypeInToto:
			payload = l.data
		case MediaTypeDSSE:
			env, err := ParseEnvelope(l.data)
			if err != nil {
				return nil, false, fmt.Errorf("read attestation of %s@%s: %w", repo.Name(), digest, err)
			}
			if payload, err = env.DecodeB64Payload(); err != nil {
				return nil, false, fmt.Errorf("read attestation of %s@%s: envelope payload: %w", repo.Name(), digest, err)
			}
			signed = true
		default:
			continue
		}
		st, err := ParseStatement(payload)
		if err != nil {
			return nil, false, fmt.Errorf("read attestation of %s@%s: %w", repo.Name(), digest, err)
		}
		return st, signed, nil
	}
	return nil, false, fmt.Errorf("%s@%s: %w (the %s tag has no in-toto layer)", repo.Name(), digest, ErrNoAttestation, AttestationTag(digest))
}

// CopyAttachments copies the cosign signature and the attestation of the
// image digest from srcRef's repository in src to dstRef's repository in
// dst (by the same tags, byte for byte), for a mirror of the image
// (Mirror copies the image alone): the signature names the digest, not
// the registry, so it verifies in the copy too, and the attestation's
// subject is the same descriptor. What src lacks is skipped; what dst has
// already is not written again.
func CopyAttachments(ctx context.Context, src Source, srcRef string, dst Store, dstRef, digest string) error {
	from, err := repoOfRef(srcRef)
	if err != nil {
		return fmt.Errorf("copy attachments: %w", err)
	}
	to, err := repoOfRef(dstRef)
	if err != nil {
		return fmt.Errorf("copy attachments: %w", err)
	}
	unlock := attachLocks.lock(to.Name() + "@" + digest)
	defer unlock()
	for _, tag := range []string{SignatureTag(digest), AttestationTag(digest)} {
		img, err := src.Image(ctx, from.Tag(tag).String())
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("copy attachments of %s@%s: %w", from.Name(), digest, err)
		}
		want, err := img.Digest()
		if err != nil {
			return err
		}
		if got, ok, err := dst.Has(ctx, to.Tag(tag).String()); err == nil && ok && got == want.String() {
			continue
		}
		if _, err := dst.Write(ctx, to.Tag(tag).String(), img); err != nil {
			return fmt.Errorf("copy attachments of %s@%s to %s: %w", from.Name(), digest, to.Name(), err)
		}
	}
	return nil
}

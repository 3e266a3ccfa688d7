package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	slsa "github.com/in-toto/attestation/go/predicates/provenance/v1"
	attv1 "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/gantry-dev/gantry/compress/quality"
	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/spec"
)

// BuildType is the SLSA buildType of Gantry's provenance: what
// externalParameters, internalParameters and resolvedDependencies hold.
//
//   - externalParameters (ExternalParameters): what the specs ask for: the
//     release, the model source (as written, with its digest, format,
//     packaging), the adapters (source, digest, scale), the quantize
//     parameters, the Git revision of the specs and the release's spec
//     hash (spec.Release.PodHash).
//   - internalParameters (InternalParameters): what Gantry chose: the
//     content key, the quantizer version, the fuser version (with
//     adapters) and the gate's results: the weight error summary and the
//     eval bound checks.
//   - resolvedDependencies: the source model ("model"), each adapter
//     ("adapter/N") and the specs' Git commit ("specs"), with digests.
const BuildType = "https://gantry.dev/build/v1"

// BuilderID is the SLSA builder id of Gantry.
const BuilderID = "https://gantry.dev/gantry"

// ExternalParameters are the specs' side of a build (see BuildType).
type ExternalParameters struct {
	Release  string          `json:"release"`
	Model    ModelParameters `json:"model"`
	Adapters []AdapterParam  `json:"adapters,omitempty"`
	Quantize QuantizeParams  `json:"quantize"`
	Revision string          `json:"revision,omitempty"`
	SpecHash string          `json:"specHash"`
}

// ModelParameters is the model source of a release.
type ModelParameters struct {
	Source    string `json:"source"`
	Digest    string `json:"digest,omitempty"`
	Format    string `json:"format,omitempty"`
	Packaging string `json:"packaging,omitempty"`
	BaseImage string `json:"baseImage,omitempty"`
}

// AdapterParam is one LoRA adapter merged before quantization.
type AdapterParam struct {
	Source string  `json:"source"`
	Digest string  `json:"digest,omitempty"`
	Scale  float64 `json:"scale"`
}

// QuantizeParams are the quantize block's parameters ("none": no
// quantize block).
type QuantizeParams struct {
	Method    string   `json:"method"`
	GroupSize int      `json:"groupSize,omitempty"`
	Skip      []string `json:"skip,omitempty"`
}

// InternalParameters are Gantry's side of a build (see BuildType).
type InternalParameters struct {
	ContentKey       string       `json:"contentKey"`
	QuantizerVersion string       `json:"quantizerVersion"`
	FuserVersion     string       `json:"fuserVersion,omitempty"`
	Gate             *GateResults `json:"gate,omitempty"`
}

// GateResults are what the gate measured of the build. Non-finite
// numbers are left out (JSON has none).
type GateResults struct {
	WeightError *WeightError `json:"weightError,omitempty"`
	Evals       []EvalCheck  `json:"evals,omitempty"`
	// Passed: every eval check is OK.
	Passed bool `json:"passed"`
}

// WeightError is the quantization error summary over all quantized
// weights (quality.Report.Summary).
type WeightError struct {
	Type    string   `json:"type,omitempty"`
	Params  int64    `json:"params"`
	RelRMSE *float64 `json:"relRMSE,omitempty"`
	MaxAbs  *float64 `json:"maxAbsError,omitempty"`
	Cosine  *float64 `json:"cosine,omitempty"`
}

// EvalCheck is one bound check of a gate eval (planner.BoundCheck).
type EvalCheck struct {
	Eval     string   `json:"eval"`
	Metric   string   `json:"metric"`
	Kind     string   `json:"kind"`
	Bound    *float64 `json:"bound,omitempty"`
	Value    *float64 `json:"value,omitempty"`
	Baseline *float64 `json:"baseline,omitempty"`
	Missing  bool     `json:"missing,omitempty"`
	Skipped  string   `json:"skipped,omitempty"`
	OK       bool     `json:"ok"`
}

// Provenance is Gantry's SLSA provenance v1 predicate as read back.
type Provenance struct {
	BuildDefinition struct {
		BuildType            string               `json:"buildType"`
		ExternalParameters   ExternalParameters   `json:"externalParameters"`
		InternalParameters   InternalParameters   `json:"internalParameters"`
		ResolvedDependencies []ResourceDescriptor `json:"resolvedDependencies,omitempty"`
	} `json:"buildDefinition"`
	RunDetails struct {
		Builder struct {
			ID      string            `json:"id"`
			Version map[string]string `json:"version,omitempty"`
		} `json:"builder"`
	} `json:"runDetails"`
}

// ResourceDescriptor is an in-toto resource descriptor as read back.
type ResourceDescriptor struct {
	Name        string            `json:"name,omitempty"`
	URI         string            `json:"uri,omitempty"`
	Digest      map[string]string `json:"digest,omitempty"`
	Annotations map[string]any    `json:"annotations,omitempty"`
}

// ParseProvenance reads Gantry's predicate from a statement (untrusted
// bytes): the predicate type must be SLSA provenance v1 and pass
// in-toto's validation, and the build type must be BuildType.
func ParseProvenance(st *registry.Statement) (*Provenance, error) {
	if st.PredicateType != registry.PredicateSLSAProvenanceV1 {
		return nil, fmt.Errorf("predicate type %q, want %q", st.PredicateType, registry.PredicateSLSAProvenanceV1)
	}
	var pb slsa.Provenance
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(st.Predicate, &pb); err != nil {
		return nil, fmt.Errorf("provenance: %w", err)
	}
	if err := pb.Validate(); err != nil {
		return nil, fmt.Errorf("provenance: %w", err)
	}
	var p Provenance
	if err := json.Unmarshal(st.Predicate, &p); err != nil {
		return nil, fmt.Errorf("provenance: %w", err)
	}
	if p.BuildDefinition.BuildType != BuildType {
		return nil, fmt.Errorf("provenance: buildType %q, want %q", p.BuildDefinition.BuildType, BuildType)
	}
	return &p, nil
}

// finite is x, or nil when JSON cannot hold it.
func finite(x float64) *float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return &x
}

// ProvenanceStatement builds the in-toto statement (JSON, keys sorted, no
// timestamps: the same build gives the same bytes) of the image
// ref@digest of release r, whose content key is key.
func ProvenanceStatement(cfg *spec.Config, r *spec.Release, key, ref, digest string, weightErr *quality.Tensor, checks []planner.BoundCheck) ([]byte, error) {
	rr, err := name.ParseReference(ref, name.WeakValidation)
	if err != nil {
		return nil, fmt.Errorf("statement: reference %q: %w", ref, err)
	}
	alg, hexd, ok := strings.Cut(digest, ":")
	if !ok || alg != "sha256" {
		return nil, fmt.Errorf("statement: digest %q: want sha256:<hex>", digest)
	}
	ext := ExternalParameters{
		Release: r.Name,
		Model: ModelParameters{Source: r.Model.Source, Digest: r.Model.Digest, Format: r.Model.Format,
			Packaging: r.Model.Packaging, BaseImage: r.Model.BaseImage},
		Quantize: QuantizeParams{Method: "none"},
		Revision: cfg.Revision,
		SpecHash: r.PodHash(),
	}
	if q := r.Quantize; q != nil {
		ext.Quantize = QuantizeParams{Method: q.Method, GroupSize: q.GroupSize, Skip: append([]string(nil), q.Skip...)}
		sort.Strings(ext.Quantize.Skip)
	}
	internal := InternalParameters{ContentKey: key, QuantizerVersion: planner.QuantizerVersion}
	deps := []*attv1.ResourceDescriptor{dependency("model", r.Model.Source, r.Model.Digest)}
	for i, a := range r.Model.Adapters {
		ext.Adapters = append(ext.Adapters, AdapterParam{Source: a.Source, Digest: a.Digest, Scale: a.ScaleOrDefault()})
		deps = append(deps, dependency(fmt.Sprintf("adapter/%d", i), a.Source, a.Digest))
	}
	if len(r.Model.Adapters) > 0 {
		internal.FuserVersion = planner.FuserVersion
	}
	if cfg.Revision != "" {
		deps = append(deps, dependency("specs", "", "gitCommit:"+cfg.Revision))
	}
	if weightErr != nil || len(checks) > 0 {
		g := &GateResults{Passed: true}
		if weightErr != nil {
			g.WeightError = &WeightError{Type: weightErr.Type, Params: weightErr.Params,
				RelRMSE: finite(weightErr.RelRMSE), MaxAbs: finite(weightErr.MaxAbs), Cosine: finite(weightErr.Cosine)}
		}
		for _, c := range checks {
			ec := EvalCheck{Eval: c.Eval, Metric: c.Metric, Kind: c.Kind, Bound: finite(c.Bound), Value: finite(c.Value),
				Missing: c.Missing, Skipped: c.Skipped, OK: c.OK}
			if c.Baseline != nil {
				ec.Baseline = finite(*c.Baseline)
			}
			g.Evals = append(g.Evals, ec)
			g.Passed = g.Passed && c.OK
		}
		internal.Gate = g
	}
	extpb, err := toStruct(ext)
	if err != nil {
		return nil, err
	}
	intpb, err := toStruct(internal)
	if err != nil {
		return nil, err
	}
	prov := &slsa.Provenance{
		BuildDefinition: &slsa.BuildDefinition{BuildType: BuildType, ExternalParameters: extpb,
			InternalParameters: intpb, ResolvedDependencies: deps},
		RunDetails: &slsa.RunDetails{Builder: &slsa.Builder{Id: BuilderID, Version: map[string]string{"gantry": gantryVersion()}}},
	}
	if err := prov.Validate(); err != nil {
		return nil, fmt.Errorf("statement: %w", err)
	}
	predJSON, err := protojson.Marshal(prov)
	if err != nil {
		return nil, err
	}
	pred := &structpb.Struct{}
	if err := protojson.Unmarshal(predJSON, pred); err != nil {
		return nil, err
	}
	st := &attv1.Statement{
		Type:          attv1.StatementTypeUri,
		Subject:       []*attv1.ResourceDescriptor{{Name: rr.Context().Name(), Digest: map[string]string{alg: hexd}}},
		PredicateType: registry.PredicateSLSAProvenanceV1,
		Predicate:     pred,
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("statement: %w", err)
	}
	raw, err := protojson.Marshal(st)
	if err != nil {
		return nil, err
	}
	// protojson's output is deliberately unstable; sorted keys are not.
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

// dependency is a resolved dependency; a digest in-toto would refuse
// (a short revision, an unknown form) goes into its annotations instead.
func dependency(nm, uri, digest string) *attv1.ResourceDescriptor {
	rd := &attv1.ResourceDescriptor{Name: nm, Uri: uri}
	if alg, h, ok := strings.Cut(digest, ":"); ok && h != "" {
		rd.Digest = map[string]string{alg: h}
		if rd.Validate() != nil {
			rd.Digest = nil
			rd.Annotations, _ = structpb.NewStruct(map[string]any{alg: h})
		}
	}
	return rd
}

func toStruct(v any) (*structpb.Struct, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	s := &structpb.Struct{}
	if err := protojson.Unmarshal(b, s); err != nil {
		return nil, err
	}
	return s, nil
}

// gantryVersion is the module version of the running binary.
func gantryVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "dev"
}

// provenanceState is an Engine's provenance caches (see provenanceOf).
type provenanceState struct {
	mu sync.Mutex
	// verified are the definitive results of verifyImage by key file
	// content hash and digest: nil, or a signature that does not verify
	// or names another digest. Missing signatures and read failures are
	// asked again.
	verified map[[2]string]error
	// attested are the attestations written, by digest, key file content
	// hash ("" unsigned) and statement hash.
	attested map[[3]string]bool
}

// maxProvenanceCache bounds each cache; past it a cache starts over.
const maxProvenanceCache = 4096

var provenanceStates sync.Map // *Engine -> *provenanceState

func provenanceOf(e *Engine) *provenanceState {
	if s, ok := provenanceStates.Load(e); ok {
		return s.(*provenanceState)
	}
	s, _ := provenanceStates.LoadOrStore(e, &provenanceState{verified: map[[2]string]error{}, attested: map[[3]string]bool{}})
	return s.(*provenanceState)
}

func hashOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// attest builds the statement of the pushed image ref@digest and attaches
// it; with cfg.Settings.SigningKeyFile it signs the image and the
// attestation. Idempotent (an image already attested/signed by the same
// key is not written again).
func (e *Engine) attest(ctx context.Context, store registry.Store, cfg *spec.Config, r *spec.Release, key, ref, digest string, weightErr *quality.Tensor, checks []planner.BoundCheck) error {
	st, err := ProvenanceStatement(cfg, r, key, ref, digest, weightErr, checks)
	if err != nil {
		return fmt.Errorf("attest %s: %w", ref, err)
	}
	var keyHash string
	keyFile := cfg.Settings.SigningKeyFile
	var kb []byte
	if keyFile != "" {
		if kb, err = os.ReadFile(keyFile); err != nil {
			return fmt.Errorf("attest %s: %w: signing key: %w", ref, registry.ErrKey, err)
		}
		keyHash = hashOf(kb)
		clear(kb)
	}
	ps := provenanceOf(e)
	ck := [3]string{digest, keyHash, hashOf(st)}
	ps.mu.Lock()
	done := ps.attested[ck]
	ps.mu.Unlock()
	if done {
		return nil
	}
	if keyFile == "" {
		if err := registry.Attach(ctx, store, ref, digest, registry.Attestation{Statement: st, PredicateType: registry.PredicateSLSAProvenanceV1}); err != nil {
			return fmt.Errorf("attest %s: %w", ref, err)
		}
	} else {
		sv, err := registry.LoadSigner(keyFile)
		if err != nil {
			return fmt.Errorf("attest %s: %w", ref, err)
		}
		if err := registry.AttachSigned(ctx, store, ref, digest, st, registry.PredicateSLSAProvenanceV1, sv); err != nil {
			return fmt.Errorf("attest %s: %w", ref, err)
		}
		if err := registry.Sign(ctx, store, ref, digest, sv); err != nil {
			return fmt.Errorf("attest %s: %w", ref, err)
		}
	}
	ps.mu.Lock()
	if len(ps.attested) >= maxProvenanceCache {
		clear(ps.attested)
	}
	ps.attested[ck] = true
	ps.mu.Unlock()
	if e.Log != nil {
		e.Log.LogAttrs(ctx, slog.LevelDebug, "attested model image", slog.String("ref", ref),
			slog.String("digest", digest), slog.Bool("signed", keyFile != ""))
	}
	return nil
}

// verifyImage returns nil when cfg.Settings.VerifyKeyFile is empty; else
// nil only when ref@digest carries a cosign signature that verifies with
// the key and whose payload names that digest. Results are cached by (key
// file content hash, digest). The error says why in one sentence (no
// signature / signature does not verify / payload names another digest /
// cannot read key), fit for the release status; errors.Is finds
// registry.ErrNoSignature, ErrBadSignature, ErrPayloadDigest or ErrKey.
func (e *Engine) verifyImage(ctx context.Context, cfg *spec.Config, src registry.Source, ref, digest string) error {
	keyFile := cfg.Settings.VerifyKeyFile
	if keyFile == "" {
		return nil
	}
	image := ref
	if rr, err := name.ParseReference(ref, name.WeakValidation); err == nil {
		image = rr.Context().Name() + "@" + digest
	}
	kb, err := os.ReadFile(keyFile)
	if err != nil {
		return fmt.Errorf("cannot read the verify key %s to check %s: %w", keyFile, image, errors.Join(registry.ErrKey, err))
	}
	ck := [2]string{hashOf(kb), digest}
	ps := provenanceOf(e)
	ps.mu.Lock()
	res, cached := ps.verified[ck]
	ps.mu.Unlock()
	if !cached {
		v, err := registry.ParseVerifier(keyFile, kb)
		if err != nil {
			return fmt.Errorf("cannot read the verify key %s to check %s: %w", keyFile, image, err)
		}
		res = registry.VerifySignature(ctx, src, ref, digest, v)
		if res == nil || errors.Is(res, registry.ErrBadSignature) || errors.Is(res, registry.ErrPayloadDigest) {
			ps.mu.Lock()
			if len(ps.verified) >= maxProvenanceCache {
				clear(ps.verified)
			}
			ps.verified[ck] = res
			ps.mu.Unlock()
		}
	}
	switch {
	case res == nil:
		return nil
	case errors.Is(res, registry.ErrNoSignature):
		return fmt.Errorf("%s has no cosign signature (%w)", image, registry.ErrNoSignature)
	case errors.Is(res, registry.ErrPayloadDigest):
		return fmt.Errorf("the cosign signature of %s verifies with %s but its payload names another digest (%w)", image, keyFile, registry.ErrPayloadDigest)
	case errors.Is(res, registry.ErrBadSignature):
		return fmt.Errorf("the cosign signature of %s does not verify with %s (%w)", image, keyFile, registry.ErrBadSignature)
	default:
		return fmt.Errorf("cannot check the cosign signature of %s: %w", image, res)
	}
}

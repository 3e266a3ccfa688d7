package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Media types of the CNCF ModelPack model-spec (specs-go/v1/mediatype.go).
const (
	ArtifactTypeModelManifest = "application/vnd.cncf.model.manifest.v1+json"
	MediaTypeModelConfig      = types.MediaType("application/vnd.cncf.model.config.v1+json")
	MediaTypeModelWeight      = types.MediaType("application/vnd.cncf.model.weight.v1.tar")
	MediaTypeModelConfigFile  = types.MediaType("application/vnd.cncf.model.weight.config.v1.tar")
	MediaTypeModelDoc         = types.MediaType("application/vnd.cncf.model.doc.v1.tar")
)

// Annotation keys written on manifests and layers.
const (
	// AnnotationFilepath is ModelPack's per-layer file path.
	AnnotationFilepath = "org.cncf.model.filepath"
	// AnnotationTitle is the OCI title: the layer's file name.
	AnnotationTitle    = "org.opencontainers.image.title"
	AnnotationRevision = "org.opencontainers.image.revision"
	AnnotationVersion  = "org.opencontainers.image.version"
	// AnnotationRefName names a manifest inside an OCI image layout.
	AnnotationRefName = "org.opencontainers.image.ref.name"
	// AnnotationImageName carries the full reference inside an OCI layout,
	// as containerd does, so that two repositories may share a tag.
	AnnotationImageName = "io.containerd.image.name"

	// Gantry's own keys match the planner's object annotations.
	AnnotationModelDigest  = "gantry.dev/model-digest"
	AnnotationContentKey   = "gantry.dev/content-key"
	AnnotationRelease      = "gantry.dev/release"
	AnnotationQuantization = "gantry.dev/quantization"
	AnnotationQuantize     = "gantry.dev/quantize-params" // JSON object
	AnnotationGitRevision  = "gantry.dev/revision"
)

// ModelcarDir is where a modelcar image holds the model files, the KServe
// convention.
const ModelcarDir = "models"

// Model is what gets packaged: files on disk plus the metadata that the
// ModelPack config and the annotations carry. Every field that ends up in
// the image is part of its digest, so the same Model always gives the same
// digest, whatever the files' mtimes or the order of Files.
type Model struct {
	Release  string // release name; the ModelPack descriptor's name
	Version  string // descriptor version; by convention the image tag
	Revision string // Git commit the release came from

	ContentKey   string            // the planner's content key
	SourceDigest string            // digest of the source model
	Format       string            // "gguf" or "safetensors"
	Precision    string            // "bf16", "fp16", "int4", ...
	Quantization string            // the quantize method ("q4_k_m", "int4", "none")
	Quantize     map[string]string // the quantize parameters, as annotations
	ParamSize    string            // "8b", "1.5b"; optional
	Architecture string            // "transformer"; optional

	Files []File
	// Annotations are added to the manifest; they win over Gantry's.
	Annotations map[string]string
}

// File is one model file.
type File struct {
	// Path is where the file lives inside the model directory: relative,
	// slash-separated, clean ("config.json", "tokenizer/vocab.json").
	Path string
	// Source is the file on disk.
	Source string
	// MediaType overrides the ModelPack layer media type, which is otherwise
	// guessed from the name (see LayerMediaType).
	MediaType types.MediaType
}

// LayerMediaType is the ModelPack media type for a model file: weights by
// extension, docs (README, LICENSE, *.md) and everything else as weight
// config (config.json, tokenizer files).
func LayerMediaType(p string) types.MediaType {
	base := strings.ToLower(path.Base(p))
	switch path.Ext(base) {
	case ".safetensors", ".gguf", ".bin", ".pt", ".pth", ".onnx", ".ckpt", ".h5", ".msgpack", ".npz":
		return MediaTypeModelWeight
	case ".md", ".rst":
		return MediaTypeModelDoc
	}
	for _, doc := range []string{"readme", "license", "licence", "notice", "copying"} {
		if strings.HasPrefix(base, doc) {
			return MediaTypeModelDoc
		}
	}
	return MediaTypeModelConfigFile
}

// modelPackConfig is the ModelPack config blob (specs-go/v1/config.go).
type modelPackConfig struct {
	Descriptor struct {
		Name     string `json:"name,omitempty"`
		Version  string `json:"version,omitempty"`
		Revision string `json:"revision,omitempty"`
	} `json:"descriptor"`
	ModelFS struct {
		Type    string    `json:"type"`
		DiffIDs []v1.Hash `json:"diffIds"`
	} `json:"modelfs"`
	Config struct {
		Architecture string `json:"architecture,omitempty"`
		Format       string `json:"format,omitempty"`
		ParamSize    string `json:"paramSize,omitempty"`
		Precision    string `json:"precision,omitempty"`
		Quantization string `json:"quantization,omitempty"`
	} `json:"config"`
}

// layers builds one layer per file, sorted by path, below prefix, and
// hashes them. Hashing reads every file once, unless this process hashed
// the same version of it (see fileLayer) before; ctx stops it.
func (m Model) layers(ctx context.Context, prefix string, mediaType func(File) types.MediaType) ([]*fileLayer, []File, error) {
	if len(m.Files) == 0 {
		return nil, nil, errors.New("model has no files")
	}
	files := append([]File(nil), m.Files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	out := make([]*fileLayer, 0, len(files))
	for i, f := range files {
		p, err := cleanRel(f.Path)
		if err != nil {
			return nil, nil, err
		}
		if i > 0 && files[i-1].Path == p {
			return nil, nil, fmt.Errorf("file %s is listed twice", p)
		}
		l, err := newFileLayer(prefix, p, f.Source, mediaType(f))
		if err != nil {
			return nil, nil, fmt.Errorf("file %s: %w", p, err)
		}
		if err := l.compute(ctx); err != nil {
			return nil, nil, fmt.Errorf("file %s: %w", p, err)
		}
		out = append(out, l)
	}
	return out, files, nil
}

// annotations are the manifest annotations: provenance, then m.Annotations.
func (m Model) annotations() (map[string]string, error) {
	a := map[string]string{}
	set := func(k, v string) {
		if v != "" {
			a[k] = v
		}
	}
	set(AnnotationRelease, m.Release)
	set(AnnotationContentKey, m.ContentKey)
	set(AnnotationModelDigest, m.SourceDigest)
	set(AnnotationQuantization, m.Quantization)
	set(AnnotationRevision, m.Revision)
	set(AnnotationGitRevision, m.Revision)
	set(AnnotationVersion, m.Version)
	if len(m.Quantize) > 0 {
		b, err := json.Marshal(m.Quantize) // map keys marshal sorted
		if err != nil {
			return nil, err
		}
		a[AnnotationQuantize] = string(b)
	}
	for k, v := range m.Annotations {
		a[k] = v
	}
	return a, nil
}

// BuildModelPack packages m as a ModelPack model artifact: one
// uncompressed tar layer per file, each annotated with its path, and a
// ModelPack config. It reads every file once to hash it, unless this
// process hashed the same version of the file under the same path before
// (so that releases sharing a model file hash it once); the image streams
// the files again when written.
func BuildModelPack(ctx context.Context, m Model) (v1.Image, error) {
	layers, files, err := m.layers(ctx, "", func(f File) types.MediaType {
		if f.MediaType != "" {
			return f.MediaType
		}
		return LayerMediaType(f.Path)
	})
	if err != nil {
		return nil, fmt.Errorf("release %s: build modelpack: %w", m.Release, err)
	}
	var cfg modelPackConfig
	cfg.Descriptor.Name, cfg.Descriptor.Version, cfg.Descriptor.Revision = m.Release, m.Version, m.Revision
	cfg.Config.Architecture, cfg.Config.Format, cfg.Config.ParamSize = m.Architecture, m.Format, m.ParamSize
	cfg.Config.Precision, cfg.Config.Quantization = m.Precision, m.Quantization
	cfg.ModelFS.Type = "layers"
	cfg.ModelFS.DiffIDs = make([]v1.Hash, len(layers))
	for i, l := range layers {
		cfg.ModelFS.DiffIDs[i] = l.digest
	}
	rawCfg, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cfgDigest, cfgSize, err := v1.SHA256(bytes.NewReader(rawCfg))
	if err != nil {
		return nil, err
	}
	anns, err := m.annotations()
	if err != nil {
		return nil, err
	}
	man := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  ArtifactTypeModelManifest,
		Config:        v1.Descriptor{MediaType: MediaTypeModelConfig, Digest: cfgDigest, Size: cfgSize},
		Annotations:   anns,
	}
	byDigest := map[v1.Hash]*fileLayer{}
	for i, l := range layers {
		byDigest[l.digest] = l
		man.Layers = append(man.Layers, v1.Descriptor{
			MediaType: l.mediaType, Digest: l.digest, Size: l.size,
			Annotations: map[string]string{
				AnnotationFilepath: files[i].Path,
				AnnotationTitle:    path.Base(files[i].Path),
			},
		})
	}
	rawMan, err := json.Marshal(man)
	if err != nil {
		return nil, err
	}
	return partial.CompressedToImage(&artifact{manifest: rawMan, config: rawCfg, layers: byDigest})
}

// artifact is a ModelPack image whose manifest and config are fixed bytes.
type artifact struct {
	manifest, config []byte
	layers           map[v1.Hash]*fileLayer
}

func (a *artifact) RawConfigFile() ([]byte, error)      { return a.config, nil }
func (a *artifact) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }
func (a *artifact) RawManifest() ([]byte, error)        { return a.manifest, nil }

func (a *artifact) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if l, ok := a.layers[h]; ok {
		return l, nil
	}
	if cd, _, _ := v1.SHA256(bytes.NewReader(a.config)); cd == h {
		return &configBlob{a.config, h}, nil
	}
	return nil, fmt.Errorf("blob %s not in this artifact", h)
}

// configBlob serves the config as a blob for writers that ask for it by digest.
type configBlob struct {
	b []byte
	h v1.Hash
}

func (c *configBlob) Digest() (v1.Hash, error)            { return c.h, nil }
func (c *configBlob) Size() (int64, error)                { return int64(len(c.b)), nil }
func (c *configBlob) MediaType() (types.MediaType, error) { return MediaTypeModelConfig, nil }
func (c *configBlob) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(c.b)), nil
}

// BuildModelcar packages m as a KServe modelcar: base plus one layer per
// file holding it under /models. The base's layers are kept as they are
// (and, pushed to the same registry, mounted rather than copied). The
// result uses the base's manifest flavour (OCI or Docker) with the
// matching uncompressed layer type, and keeps the base's config apart from
// the added layers' diff IDs and history, so the digest depends only on
// base and m.
func BuildModelcar(ctx context.Context, base v1.Image, m Model) (v1.Image, error) {
	mt, err := base.MediaType()
	if err != nil {
		return nil, fmt.Errorf("release %s: build modelcar: base: %w", m.Release, err)
	}
	layerType := types.OCIUncompressedLayer
	if mt == types.DockerManifestSchema2 {
		layerType = types.DockerUncompressedLayer
	}
	layers, files, err := m.layers(ctx, ModelcarDir+"/", func(File) types.MediaType { return layerType })
	if err != nil {
		return nil, fmt.Errorf("release %s: build modelcar: %w", m.Release, err)
	}
	adds := make([]mutate.Addendum, len(layers))
	for i, l := range layers {
		adds[i] = mutate.Addendum{
			Layer:     l,
			MediaType: layerType,
			History:   v1.History{CreatedBy: "gantry: add /" + ModelcarDir + "/" + files[i].Path, Created: v1.Time{Time: epoch}},
			Annotations: map[string]string{
				AnnotationTitle:    path.Base(files[i].Path),
				AnnotationFilepath: files[i].Path,
			},
		}
	}
	img, err := mutate.Append(base, adds...)
	if err != nil {
		return nil, fmt.Errorf("release %s: build modelcar: %w", m.Release, err)
	}
	anns, err := m.annotations()
	if err != nil {
		return nil, err
	}
	out, ok := mutate.Annotations(img, anns).(v1.Image)
	if !ok {
		return nil, errors.New("mutate.Annotations did not return an image")
	}
	return out, nil
}

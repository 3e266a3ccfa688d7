package reconcile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/gantry-dev/gantry/compress"
	"github.com/gantry-dev/gantry/compress/lora"
	"github.com/gantry-dev/gantry/compress/quality"
	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/spec"
)

// built is a release's model, ready to package.
type built struct {
	Files  []registry.File
	Bytes  int64
	Report *quality.Report // nil when nothing was quantized
	// Path is the model on disk: the .gguf file, or the safetensors
	// checkpoint directory (what evaluators are given).
	Path string
}

// GateError blocks a release whose build misses the bar.
type GateError struct {
	Release string
	Reason  string
}

func (e *GateError) Error() string {
	return fmt.Sprintf("release %s: blocked by gate: %s", e.Release, e.Reason)
}

// build makes the release's model files: the source as it is for method
// "none", else the quantized output, cached under WorkDir/builds/KEY.
func (e *Engine) build(ctx context.Context, snap Snapshot, cfg *spec.Config, r *spec.Release, key string) (built, error) {
	src, err := e.source(ctx, snap, cfg, r)
	if err != nil {
		return built{}, err
	}
	method := "none"
	if r.Quantize != nil {
		method = r.Quantize.Method
	}
	if method == "none" && len(r.Model.Adapters) == 0 {
		return modelFiles(src, r.Model.Format, nil)
	}
	dir := filepath.Join(e.WorkDir, "builds", key)
	e.cleanStale()
	defer e.builds.lock(key)() // a second release with this key waits, then reuses the build
	if b, err := loadBuild(dir, r.Model.Format); err == nil {
		e.log().Info("reusing cached build", "release", r.Name, "key", key[:12])
		return b, nil
	}
	tmp, err := os.MkdirTemp(filepath.Join(e.WorkDir, "builds"), ".build-*")
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.MkdirAll(filepath.Join(e.WorkDir, "builds"), 0o755); err == nil {
			tmp, err = os.MkdirTemp(filepath.Join(e.WorkDir, "builds"), ".build-*")
		}
	}
	if err != nil {
		return built{}, fmt.Errorf("quantize: %w", err)
	}
	defer os.RemoveAll(tmp) // after a successful rename it is gone already
	out := filepath.Join(tmp, "model")
	if r.Model.Format == "gguf" {
		if err := os.Mkdir(out, 0o755); err != nil {
			return built{}, err
		}
		out = filepath.Join(out, "model.gguf")
	}
	if len(r.Model.Adapters) > 0 {
		merged, err := e.fuse(ctx, snap, r, src, tmp, method == "none", out)
		if err != nil {
			return built{}, err
		}
		if method == "none" {
			return e.finishBuild(tmp, dir, key, r)
		}
		src = merged
		defer os.RemoveAll(merged) // the quantized build is what is kept
	}
	quantize := e.Quantize
	if quantize == nil {
		quantize = compress.Quantize
	}
	e.log().Info("quantizing", "release", r.Name, "method", method, "source", r.Model.Source)
	rep, err := quantize(ctx, src, out, compress.Options{Type: method, GroupSize: r.Quantize.GroupSize, Skip: r.Quantize.Skip})
	if err != nil {
		return built{}, fmt.Errorf("quantize %s: %w", r.Model.Source, err)
	}
	repJSON, err := json.Marshal(rep)
	if err != nil {
		return built{}, err
	}
	if err := os.WriteFile(filepath.Join(tmp, "report.json"), repJSON, 0o644); err != nil {
		return built{}, err
	}
	if len(r.Model.Adapters) > 0 {
		os.RemoveAll(src) // the merged model: only the quantized one is kept
	}
	return e.finishBuild(tmp, dir, key, r)
}

// finishBuild renames the finished build directory tmp to dir, its place
// in the cache, and reads it back.
func (e *Engine) finishBuild(tmp, dir, key string, r *spec.Release) (built, error) {
	if err := os.Rename(tmp, dir); err != nil {
		// Another reconcile may have finished the same build: use it.
		if _, statErr := loadBuild(dir, r.Model.Format); statErr != nil {
			return built{}, fmt.Errorf("build: %w", err)
		}
	}
	e.mu.Lock()
	delete(e.reports, key) // a report this engine found missing is there now
	e.mu.Unlock()
	b, err := loadBuild(dir, r.Model.Format)
	if err == nil && e.Observer != nil {
		e.Observer.Quantized(r.Name, b.Bytes)
	}
	return b, err
}

// fuse merges release r's adapters into the model src, streaming (see
// compress/lora), inside the build directory tmp. Unless final, the
// merged model goes to tmp/merged (returned: what is quantized next);
// final (method "none") writes it to out, the build's model. tmp gets
// fuse.json, the merge's report. An adapter whose content no longer has
// the digest the specs were loaded with is refused.
func (e *Engine) fuse(ctx context.Context, snap Snapshot, r *spec.Release, src, tmp string, final bool, out string) (string, error) {
	adapters := make([]lora.Adapter, 0, len(r.Model.Adapters))
	for _, a := range r.Model.Adapters {
		p := filepath.Join(snap.Dir, filepath.FromSlash(a.Source))
		got, err := spec.FileDigest(ctx, p)
		if err != nil {
			return "", fmt.Errorf("adapter %s: %w", a.Source, err)
		}
		if a.Digest != "" && got != a.Digest {
			return "", fmt.Errorf("adapter %s has digest %s, but the spec pins %s", a.Source, got, a.Digest)
		}
		adapters = append(adapters, lora.Adapter{Path: p, Scale: a.ScaleOrDefault()})
	}
	merged := out
	if !final {
		merged = filepath.Join(tmp, "merged")
		if r.Model.Format == "gguf" {
			merged += ".gguf"
		}
	} else if r.Model.Format != "gguf" {
		if err := os.RemoveAll(out); err != nil { // Merge creates the directory
			return "", err
		}
	}
	e.log().Info("merging adapters", "release", r.Name, "adapters", len(adapters), "source", r.Model.Source)
	rep, err := lora.Merge(ctx, r.Model.Format, src, merged, adapters)
	if err != nil {
		return "", fmt.Errorf("fuse adapters into %s: %w", r.Model.Source, err)
	}
	j, err := json.Marshal(rep)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, "fuse.json"), j, 0o644); err != nil {
		return "", err
	}
	return merged, nil
}

// cleanStale removes, once per engine, the temporary files and
// directories a process killed mid-quantize or mid-fetch left in WorkDir:
// build directories (with a merge's intermediate inside), pulls,
// downloads and eval results. Nothing refers to them; the
// finished ones are renamed into place, so a temporary name is never
// the result of a finished step. (Another daemon on the same state dir
// is not supported: leader election keeps one at a time.)
func (e *Engine) cleanStale() {
	e.cleanOnce.Do(func() {
		for _, pattern := range []string{
			filepath.Join(e.WorkDir, "builds", ".build-*"),
			filepath.Join(e.WorkDir, "sources", ".*.pull-*"),
			filepath.Join(e.WorkDir, "sources", "*", ".download-*"),
			filepath.Join(e.WorkDir, "evals", ".eval-*"),
		} {
			stale, _ := filepath.Glob(pattern)
			for _, d := range stale {
				if err := os.RemoveAll(d); err == nil {
					e.log().Info("removed a temporary file left by an interrupted run", "path", d)
				}
			}
		}
	})
}

// loadBuild reads a finished build directory: report.json for a
// quantized build, fuse.json for one that only merged adapters.
func loadBuild(dir, format string) (built, error) {
	data, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if errors.Is(err, fs.ErrNotExist) {
		if _, ferr := os.Stat(filepath.Join(dir, "fuse.json")); ferr == nil {
			return modelFiles(filepath.Join(dir, "model"), format, nil)
		}
	}
	if err != nil {
		return built{}, err
	}
	var rep quality.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return built{}, fmt.Errorf("read build report: %w", err)
	}
	// Stats are not serialised; the summary's figures are.
	return modelFiles(filepath.Join(dir, "model"), format, &rep)
}

// modelFiles lists a model's files: a GGUF file becomes model.gguf, a
// directory contributes every regular file at its relative path.
func modelFiles(src, format string, rep *quality.Report) (built, error) {
	info, err := os.Stat(src)
	if err != nil {
		return built{}, err
	}
	b := built{Report: rep, Path: src}
	if !info.IsDir() {
		name := filepath.Base(src)
		if format == "gguf" {
			name = "model.gguf"
		}
		b.Files = []registry.File{{Path: name, Source: src}}
		b.Bytes = info.Size()
		return b, nil
	}
	err = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		b.Bytes += fi.Size()
		b.Files = append(b.Files, registry.File{Path: filepath.ToSlash(rel), Source: p})
		return nil
	})
	sort.Slice(b.Files, func(i, j int) bool { return b.Files[i].Path < b.Files[j].Path })
	if format == "gguf" && len(b.Files) == 1 {
		b.Path = b.Files[0].Source
	}
	return b, err
}

// source returns the model on local disk, fetching oci:// and https://
// sources into WorkDir/sources once, by digest.
func (e *Engine) source(ctx context.Context, snap Snapshot, cfg *spec.Config, r *spec.Release) (string, error) {
	m := &r.Model
	switch m.Kind() {
	case spec.SourcePath:
		p := filepath.Join(snap.Dir, filepath.FromSlash(m.Source))
		if m.Digest != "" {
			got, err := spec.FileDigest(ctx, p)
			if err != nil {
				return "", err
			}
			if got != m.Digest {
				return "", fmt.Errorf("model %s has digest %s, but the spec pins %s", m.Source, got, m.Digest)
			}
		}
		return p, nil
	case spec.SourceOCI:
		e.cleanStale()
		ref := strings.TrimPrefix(m.Source, "oci://")
		dir := filepath.Join(e.WorkDir, "sources", digestDir(m.Digest, ref))
		// Releases that share a source fetch it once: the second waits,
		// then finds it (a concurrent pull into one directory would fail).
		defer e.builds.lock("source\x00" + dir)()
		if _, err := os.Stat(dir); err == nil {
			return modelPath(dir, m.Format)
		}
		images := e.images()
		if images == nil {
			return "", fmt.Errorf("model %s: no registry to pull from", m.Source)
		}
		if m.Digest != "" && !strings.Contains(ref, "@") {
			ref = refRepository(ref) + "@" + m.Digest
		}
		if cfg.Settings.VerifyKeyFile != "" {
			digest := m.Digest
			if i := strings.Index(ref, "@"); digest == "" && i >= 0 {
				digest = ref[i+1:]
			}
			if err := e.verifyImage(ctx, cfg, images, ref, digest); err != nil {
				return "", fmt.Errorf("model %s: refused to pull: %w", m.Source, err)
			}
		}
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return "", err
		}
		if err := registry.Pull(ctx, images, ref, dir); err != nil {
			return "", err
		}
		return modelPath(dir, m.Format)
	default:
		e.cleanStale()
		dir := filepath.Join(e.WorkDir, "sources", digestDir(m.Digest, m.Source))
		defer e.builds.lock("source\x00" + dir)()
		file := filepath.Join(dir, path.Base(m.Source))
		if _, err := os.Stat(file); err == nil {
			return file, nil
		}
		if err := download(ctx, m.Source, m.Digest, file); err != nil {
			return "", err
		}
		return file, nil
	}
}

func (e *Engine) images() registry.Source {
	if e.Images != nil {
		return e.Images
	}
	if s, ok := e.Store.(registry.Source); ok {
		return s
	}
	return nil
}

// modelPath is a pulled model: the directory for safetensors, the one GGUF
// file inside it for gguf.
func modelPath(dir, format string) (string, error) {
	if format != "gguf" {
		return dir, nil
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "*.gguf"))
	if len(matches) != 1 {
		return "", fmt.Errorf("pulled model in %s has %d .gguf files, want 1", dir, len(matches))
	}
	return matches[0], nil
}

func digestDir(digest, fallback string) string {
	if digest != "" {
		return strings.ReplaceAll(digest, ":", "-")
	}
	sum := sha256.Sum256([]byte(fallback))
	return "ref-" + hex.EncodeToString(sum[:8])
}

// refRepository drops the tag or digest of an image reference.
func refRepository(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

// download fetches url into file, streaming, and keeps it only if its
// sha256 is the pinned digest.
func download(ctx context.Context, url, digest, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("download model: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("download model %s: %s", url, resp.Status)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), ".download-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), resp.Body); err != nil {
		tmp.Close()
		return fmt.Errorf("download model %s: %w", url, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != digest {
		return fmt.Errorf("download model %s: content has digest %s, but the spec pins %s", url, got, digest)
	}
	return os.Rename(tmp.Name(), file)
}

// gate checks the build against the release's gate block.
func gate(snap Snapshot, r *spec.Release, rep *quality.Report) error {
	g := r.Gate
	if g == nil {
		return nil
	}
	if g.MaxError != nil && rep != nil && rep.Summary.RelRMSE > *g.MaxError {
		return &GateError{r.Name, fmt.Sprintf("relative RMSE %.4f exceeds max_error %g", rep.Summary.RelRMSE, *g.MaxError)}
	}
	if g.EvalFile == "" {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(snap.Dir, filepath.FromSlash(g.EvalFile)))
	if err != nil {
		return &GateError{r.Name, fmt.Sprintf("cannot read eval_file: %v", err)}
	}
	var metrics map[string]any
	if err := json.Unmarshal(data, &metrics); err != nil {
		return &GateError{r.Name, fmt.Sprintf("eval_file %s is not a JSON object of metrics: %v", g.EvalFile, err)}
	}
	names := make([]string, 0, len(g.Min))
	for k := range g.Min {
		names = append(names, k)
	}
	sort.Strings(names)
	var misses []string
	for _, k := range names {
		v, ok := number(metrics[k])
		switch {
		case !ok:
			misses = append(misses, fmt.Sprintf("%s is missing from %s", k, g.EvalFile))
		case v < g.Min[k]:
			misses = append(misses, fmt.Sprintf("%s = %g is below %g", k, v, g.Min[k]))
		}
	}
	if len(misses) > 0 {
		return &GateError{r.Name, strings.Join(misses, "; ")}
	}
	return nil
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case string:
		f, err := strconv.ParseFloat(n, 64)
		return f, err == nil
	}
	return 0, false
}

package reconcile

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/gantry-dev/gantry/compress/quality"
	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/spec"
)

// push packages the build as the release asks (ModelPack artifact or
// modelcar image) and writes it under ref. The store skips what it has.
func (e *Engine) push(ctx context.Context, store registry.Store, cfg *spec.Config, r *spec.Release, key, ref string, b built) (string, error) {
	method, params := "none", map[string]string{}
	if q := r.Quantize; q != nil {
		method = q.Method
		if q.GroupSize != 0 {
			params["group_size"] = strconv.Itoa(q.GroupSize)
		}
		if len(q.Skip) > 0 {
			skip := append([]string(nil), q.Skip...)
			sort.Strings(skip)
			params["skip"] = strings.Join(skip, ",")
		}
	}
	params["method"] = method
	m := registry.Model{
		Release:      r.Name,
		Version:      planner.ImageTag(key),
		Revision:     cfg.Revision,
		ContentKey:   key,
		SourceDigest: r.Model.Digest,
		Format:       r.Model.Format,
		Precision:    precision(method),
		Quantization: method,
		Quantize:     params,
		Files:        b.Files,
	}
	if b.Report != nil {
		// The error summary travels with the image, so that a restarted
		// daemon (or another one) can show it without the build cache.
		if j, err := json.Marshal(b.Report.Summary); err == nil {
			m.Annotations = map[string]string{AnnotationQuantError: string(j)}
		}
	}
	var (
		img v1.Image
		err error
	)
	switch r.Model.Packaging {
	case "modelcar":
		images := e.images()
		if images == nil || r.Model.BaseImage == "" {
			return "", fmt.Errorf("modelcar packaging needs base_image and a registry to read it from")
		}
		base, err := images.Image(ctx, r.Model.BaseImage)
		if err != nil {
			return "", fmt.Errorf("base image: %w", err)
		}
		img, err = registry.BuildModelcar(ctx, base, m)
		if err != nil {
			return "", err
		}
	default:
		img, err = registry.BuildModelPack(ctx, m)
		if err != nil {
			return "", err
		}
	}
	digest, err := store.Write(ctx, ref, img)
	if err != nil {
		return "", err
	}
	if e.Observer != nil {
		e.Observer.Pushed(r.Name, b.Bytes)
	}
	e.log().Info("pushed", "release", r.Name, "ref", ref, "digest", digest)
	return digest, nil
}

// AnnotationQuantError is the manifest annotation holding the quantization
// error summary (quality.Tensor as JSON) of the build inside the image.
const AnnotationQuantError = "gantry.dev/quantization-error"

// quantError is the error summary of the model image ref (digest): from
// the build cache's report.json when this machine built it, else from the
// image's annotation. Results are kept by digest, so that a restarted
// daemon reads each image once, not on every reconcile. nil when neither
// says (an image of method "none", or one pushed before the annotation).
func (e *Engine) quantError(ctx context.Context, store registry.Store, key, ref, digest string) *quality.Tensor {
	if digest == "" {
		return nil
	}
	e.mu.Lock()
	t, ok := e.errors[digest]
	e.mu.Unlock()
	if ok {
		return t
	}
	t = e.buildReport(key)
	if t == nil {
		if src, ok := store.(registry.Source); ok {
			if img, err := src.Image(ctx, ref); err == nil {
				if m, err := img.Manifest(); err == nil && m.Annotations[AnnotationQuantError] != "" {
					var sum quality.Tensor
					if json.Unmarshal([]byte(m.Annotations[AnnotationQuantError]), &sum) == nil {
						t = &sum
					}
				}
			} else if ctx.Err() != nil {
				return nil // not cached: try again next time
			}
		}
	}
	e.mu.Lock()
	if e.errors == nil {
		e.errors = map[string]*quality.Tensor{}
	}
	e.errors[digest] = t
	e.mu.Unlock()
	return t
}

// buildReport is the error summary in the build cache's report.json of
// content key, read once per key: releases sharing a model share it.
func (e *Engine) buildReport(key string) *quality.Tensor {
	e.mu.Lock()
	t, ok := e.reports[key]
	e.mu.Unlock()
	if ok {
		return t
	}
	if data, err := os.ReadFile(filepath.Join(e.WorkDir, "builds", key, "report.json")); err == nil {
		var rep quality.Report
		if json.Unmarshal(data, &rep) == nil {
			t = &rep.Summary
		}
	}
	e.mu.Lock()
	if e.reports == nil {
		e.reports = map[string]*quality.Tensor{}
	}
	e.reports[key] = t
	e.mu.Unlock()
	return t
}

// precision names the weights' number format for the ModelPack config.
func precision(method string) string {
	switch method {
	case "none":
		return ""
	case "fp8":
		return "fp8_e4m3"
	case "int8":
		return "int8"
	case "int4":
		return "int4"
	}
	return method // the GGUF type: q4_k_m, q8_0, …
}

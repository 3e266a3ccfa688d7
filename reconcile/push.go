package reconcile

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/spec"
)

// push packages the build as the release asks (ModelPack artifact or
// modelcar image) and writes it under ref. The store skips what it has.
func (e *Engine) push(ctx context.Context, cfg *spec.Config, r *spec.Release, key, ref string, b built) (string, error) {
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
	digest, err := e.store(cfg).Write(ctx, ref, img)
	if err != nil {
		return "", err
	}
	if e.Observer != nil {
		e.Observer.Pushed(r.Name, b.Bytes)
	}
	e.log().Info("pushed", "release", r.Name, "ref", ref, "digest", digest)
	return digest, nil
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

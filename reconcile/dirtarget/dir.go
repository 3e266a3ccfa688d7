package dirtarget

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/spec"
)

// Target is a directory of YAML manifests.
type Target struct {
	Dir string
}

// FileName is the file an object lives in.
func FileName(o planner.Object) string {
	return strings.ToLower(fmt.Sprintf("%s-%s-%s.yaml", o.Kind, o.Namespace, o.Name))
}

// Observe reads the managed objects in the directory. A missing directory
// is an empty target, not an error: nothing has been applied yet.
func (t Target) Observe(ctx context.Context) ([]planner.Object, error) {
	entries, err := os.ReadDir(t.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("observe %s: %w", t.Dir, err)
	}
	var out []planner.Object
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		path := filepath.Join(t.Dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("observe %s: %w", path, err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("observe %s: not a YAML manifest: %w", path, err)
		}
		if m == nil {
			continue
		}
		o, err := planner.ObjectFromManifest(m)
		if err != nil {
			return nil, fmt.Errorf("observe %s: %w", path, err)
		}
		if o.Label(planner.LabelManagedBy) != planner.ManagedBy {
			continue
		}
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out, nil
}

// Put writes an object, replacing its file atomically.
func (t Target) Put(ctx context.Context, o planner.Object) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := yaml.Marshal(o.Manifest)
	if err != nil {
		return fmt.Errorf("write %s: %w", o.ID(), err)
	}
	if err := os.MkdirAll(t.Dir, 0o755); err != nil {
		return fmt.Errorf("write %s: %w", o.ID(), err)
	}
	return spec.WriteFileAtomic(filepath.Join(t.Dir, FileName(o)), data)
}

// Delete removes an object's file; a file already gone is not an error.
func (t Target) Delete(ctx context.Context, o planner.Object) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := os.Remove(filepath.Join(t.Dir, FileName(o)))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete %s: %w", o.ID(), err)
	}
	return nil
}

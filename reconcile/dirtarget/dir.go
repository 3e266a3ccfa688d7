package dirtarget

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

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
	seen := make(map[string]parsed, len(entries))
	defer func() { parsedCache.keep(t.Dir, seen) }()
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
		m, err := parsedCache.decode(t.Dir, name, data, seen)
		if err != nil {
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
		// The file's bytes are the object's version: any edit, by Gantry
		// or by hand, gives a new one.
		sum := sha256.Sum256(data)
		o.Version = hex.EncodeToString(sum[:16])
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

// parsedCache keeps, per directory, each file's bytes and the manifest
// they decoded to, so that observing a directory of unchanged objects
// reads the files but does not decode their YAML again. It is keyed by
// content: a file whose bytes differ in any way is decoded again, so a
// hit can never be stale.
var parsedCache = &manifestCache{dirs: map[string]map[string]parsed{}}

// maxCachedDirs bounds parsedCache: a daemon observes one directory.
const maxCachedDirs = 16

// yamlDecodes counts the files decoded, for tests.
var yamlDecodes atomic.Int64

type manifestCache struct {
	mu   sync.Mutex
	dirs map[string]map[string]parsed // directory -> file name -> last decode
}

type parsed struct {
	raw      []byte
	manifest map[string]any // nil for an empty document
}

func cacheKey(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}

// decode returns the manifest data holds, decoded now or copied from the
// last decode of the same bytes, and records it in seen.
func (c *manifestCache) decode(dir, name string, data []byte, seen map[string]parsed) (map[string]any, error) {
	c.mu.Lock()
	p, ok := c.dirs[cacheKey(dir)][name]
	c.mu.Unlock()
	if !ok || !bytes.Equal(p.raw, data) {
		var m map[string]any
		yamlDecodes.Add(1)
		if err := yaml.Unmarshal(data, &m); err != nil {
			return nil, err
		}
		p = parsed{raw: data, manifest: m}
	}
	seen[name] = p
	if p.manifest == nil {
		return nil, nil
	}
	// A copy: the caller may change what it observed.
	return deepCopy(p.manifest).(map[string]any), nil
}

// keep replaces what is cached for dir with the files an Observe saw, so
// that removed files are forgotten.
func (c *manifestCache) keep(dir string, seen map[string]parsed) {
	c.mu.Lock()
	k := cacheKey(dir)
	if _, ok := c.dirs[k]; !ok && len(c.dirs) >= maxCachedDirs {
		clear(c.dirs)
	}
	c.dirs[k] = seen
	c.mu.Unlock()
}

// deepCopy copies JSON-shaped data.
func deepCopy(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(t))
		for k, e := range t {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		l := make([]any, len(t))
		for i, e := range t {
			l[i] = deepCopy(e)
		}
		return l
	}
	return v
}

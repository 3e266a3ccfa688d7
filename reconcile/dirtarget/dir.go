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
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
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
	var names []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
			continue
		}
		names = append(names, name)
	}
	// Files are read and decoded in parallel (YAML decoding is most of a
	// cold Observe of a big directory); the first error in name order wins.
	type result struct {
		o    *planner.Object
		p    parsed
		read bool
		err  error
	}
	results := make([]result, len(names))
	parallel(len(names), func(i int) {
		if ctx.Err() != nil {
			return
		}
		path := filepath.Join(t.Dir, names[i])
		data, err := os.ReadFile(path)
		if err != nil {
			results[i].err = fmt.Errorf("observe %s: %w", path, err)
			return
		}
		m, p, err := parsedCache.decode(t.Dir, names[i], data)
		results[i].p, results[i].read = p, true
		if err != nil {
			results[i].err = fmt.Errorf("observe %s: not a YAML manifest: %w", path, err)
			return
		}
		if m == nil {
			return
		}
		o, err := planner.ObjectFromManifest(m)
		if err != nil {
			results[i].err = fmt.Errorf("observe %s: %w", path, err)
			return
		}
		if o.Label(planner.LabelManagedBy) != planner.ManagedBy {
			return
		}
		// The file's bytes are the object's version: any edit, by Gantry
		// or by hand, gives a new one.
		sum := sha256.Sum256(data)
		o.Version = hex.EncodeToString(sum[:16])
		results[i].o = &o
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []planner.Object
	seen := make(map[string]parsed, len(names))
	defer func() { parsedCache.keep(t.Dir, seen) }()
	for i, r := range results {
		if r.read && r.err == nil {
			seen[names[i]] = r.p
		}
	}
	for _, r := range results {
		if r.err != nil {
			return nil, r.err
		}
		if r.o != nil {
			out = append(out, *r.o)
		}
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
// last decode of the same bytes, and what to keep of it for the next.
func (c *manifestCache) decode(dir, name string, data []byte) (map[string]any, parsed, error) {
	c.mu.Lock()
	p, ok := c.dirs[cacheKey(dir)][name]
	c.mu.Unlock()
	if !ok || !bytes.Equal(p.raw, data) {
		var m map[string]any
		yamlDecodes.Add(1)
		if err := yaml.Unmarshal(data, &m); err != nil {
			return nil, parsed{}, err
		}
		p = parsed{raw: data, manifest: m}
	}
	if p.manifest == nil {
		return nil, p, nil
	}
	// A copy: the caller may change what it observed.
	return deepCopy(p.manifest).(map[string]any), p, nil
}

// parallel calls f(0) … f(n-1), at most GOMAXPROCS at once, and returns
// when all have.
func parallel(n int, f func(i int)) {
	var g errgroup.Group
	g.SetLimit(runtime.GOMAXPROCS(0))
	for i := range n {
		g.Go(func() error { f(i); return nil })
	}
	_ = g.Wait()
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

package dirtarget

import (
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

	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/spec"
)

// Target is a directory of YAML manifests.
type Target struct {
	Dir string
	// CacheDir, if set, is where Save keeps the manifests decoded from
	// Dir's files, for the next process to observe Dir (see Save). Not
	// Dir itself: that directory is output users read, apply and commit.
	CacheDir string
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
	parsedCache.load(t.Dir, t.cacheFile())
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
		o   *planner.Object
		p   parsed
		err error
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
		results[i].p = p
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
		o.Version = hex.EncodeToString(p.sum[:16])
		results[i].o = &o
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []planner.Object
	seen := make(map[string]parsed, len(names))
	defer func() { parsedCache.keep(t.Dir, seen) }()
	for i, r := range results { // every file was read: ctx did not end
		if r.err == nil {
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
	if err := spec.WriteFileAtomic(filepath.Join(t.Dir, FileName(o)), data); err != nil {
		return err
	}
	parsedCache.put(t.Dir, FileName(o), data, o.Manifest)
	return nil
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
	parsedCache.forget(t.Dir, FileName(o))
	return nil
}

// Save writes what the target knows of its files' manifests to a file in
// CacheDir, so that the next process to observe the directory decodes
// only the files that changed since (YAML decoding is most of a cold
// Observe). It writes nothing when nothing changed since the last Save,
// and nothing at all without a CacheDir.
func (t Target) Save(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if t.CacheDir == "" {
		return nil
	}
	return parsedCache.save(t.Dir, t.cacheFile())
}

// cacheFile is Save's file for Dir: named by Dir's absolute path, so that
// targets sharing a CacheDir keep apart. "" without a CacheDir.
func (t Target) cacheFile() string {
	if t.CacheDir == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(cacheKey(t.Dir)))
	return filepath.Join(t.CacheDir, "dirtarget-"+hex.EncodeToString(sum[:8])+".json")
}

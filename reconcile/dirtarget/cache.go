package dirtarget

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/spec"
)

// cacheFormat is the version of the layout of Save's file, which holds
// the manifests of a directory's files by the SHA-256 of their bytes. It
// is a cache: a file whose bytes hash otherwise is decoded from its YAML,
// and a cache file that is missing, corrupt or of another format is
// ignored.
const cacheFormat = 1

// parsedCache keeps, per directory, each file's content hash and the
// manifest it decodes to, so that observing a directory of unchanged
// objects reads the files but does not decode their YAML again. It is
// keyed by content: a file whose bytes differ in any way is decoded
// again, so a hit can never be stale. What Put writes is recorded as
// written, and Save keeps it all in a file for the next process.
var parsedCache = &manifestCache{dirs: map[string]*dirCache{}}

// maxCachedDirs bounds parsedCache: a daemon observes one directory.
const maxCachedDirs = 16

// yamlDecodes counts the files decoded, for tests.
var yamlDecodes atomic.Int64

type manifestCache struct {
	mu   sync.Mutex
	dirs map[string]*dirCache
}

type dirCache struct {
	files  map[string]parsed // file name -> last decode
	loaded bool              // CacheFile was read
	dirty  bool              // files differs from what CacheFile holds
}

type parsed struct {
	sum      [sha256.Size]byte
	manifest map[string]any // nil for an empty document
}

func cacheKey(dir string) string {
	if abs, err := filepath.Abs(dir); err == nil {
		return abs
	}
	return dir
}

// dir returns dir's entry, made if needed. The caller holds c.mu.
func (c *manifestCache) dir(dir string) *dirCache {
	k := cacheKey(dir)
	d := c.dirs[k]
	if d == nil {
		if len(c.dirs) >= maxCachedDirs {
			clear(c.dirs)
		}
		d = &dirCache{files: map[string]parsed{}}
		c.dirs[k] = d
	}
	return d
}

// cached is the JSON of CacheFile.
type cached struct {
	Format int                   `json:"format"`
	Files  map[string]cachedFile `json:"files"`
}

type cachedFile struct {
	SHA256   string         `json:"sha256"`
	Manifest map[string]any `json:"manifest"`
}

// load reads dir's cache file once per process and directory, if there
// is one.
func (c *manifestCache) load(dir, file string) {
	c.mu.Lock()
	d := c.dir(dir)
	if d.loaded || file == "" {
		c.mu.Unlock()
		return
	}
	d.loaded = true
	c.mu.Unlock()
	b, err := os.ReadFile(file)
	if err != nil {
		return
	}
	var f cached
	if json.Unmarshal(b, &f) != nil || f.Format != cacheFormat {
		return
	}
	files := make(map[string]parsed, len(f.Files))
	for name, e := range f.Files {
		sum, err := hex.DecodeString(e.SHA256)
		if err != nil || len(sum) != sha256.Size {
			continue
		}
		var p parsed
		copy(p.sum[:], sum)
		p.manifest = e.Manifest
		files[name] = p
	}
	c.mu.Lock()
	for name, p := range files {
		if _, ok := d.files[name]; !ok { // what this process saw is newer
			d.files[name] = p
		}
	}
	c.mu.Unlock()
}

// decode returns the manifest data holds, decoded now or copied from the
// last decode of the same bytes, and what to keep of it for the next.
func (c *manifestCache) decode(dir, name string, data []byte) (map[string]any, parsed, error) {
	sum := sha256.Sum256(data)
	c.mu.Lock()
	p, ok := c.dir(dir).files[name]
	c.mu.Unlock()
	if !ok || p.sum != sum {
		var m map[string]any
		yamlDecodes.Add(1)
		if err := yaml.Unmarshal(data, &m); err != nil {
			return nil, parsed{}, err
		}
		p = parsed{sum: sum, manifest: m}
	}
	if p.manifest == nil {
		return nil, p, nil
	}
	// A copy: the caller may change what it observed.
	return planner.CopyManifest(p.manifest), p, nil
}

// keep replaces what is cached for dir with the files an Observe saw, so
// that removed files are forgotten.
func (c *manifestCache) keep(dir string, seen map[string]parsed) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.dir(dir)
	if len(seen) != len(d.files) {
		d.dirty = true
	} else {
		for name, p := range seen {
			if q, ok := d.files[name]; !ok || q.sum != p.sum {
				d.dirty = true
				break
			}
		}
	}
	d.files = seen
}

// put records that data, the YAML of manifest, was written to name: the
// manifest as a decode of data gives it (JSON-shaped: numbers float64),
// without decoding the YAML.
func (c *manifestCache) put(dir, name string, data []byte, manifest map[string]any) {
	b, err := json.Marshal(manifest)
	var m map[string]any
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.dir(dir)
	d.dirty = true
	if err != nil {
		delete(d.files, name) // decoded from the file next time
		return
	}
	d.files[name] = parsed{sum: sha256.Sum256(data), manifest: m}
}

// forget drops name's entry (the file was removed).
func (c *manifestCache) forget(dir, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.dir(dir)
	if _, ok := d.files[name]; ok {
		delete(d.files, name)
		d.dirty = true
	}
}

// save writes dir's entries to file if they changed since it was read or
// written. Nothing is written for a directory that does not exist.
func (c *manifestCache) save(dir, file string) error {
	c.mu.Lock()
	d := c.dir(dir)
	if !d.dirty {
		c.mu.Unlock()
		return nil
	}
	f := cached{Format: cacheFormat, Files: make(map[string]cachedFile, len(d.files))}
	for name, p := range d.files {
		f.Files[name] = cachedFile{SHA256: hex.EncodeToString(p.sum[:]), Manifest: p.manifest}
	}
	d.dirty = false
	c.mu.Unlock()
	b, err := json.Marshal(f) // the manifests are only read here and in decode's copies
	if err == nil {
		if _, statErr := os.Stat(dir); errors.Is(statErr, fs.ErrNotExist) {
			return nil
		}
		if err = os.MkdirAll(filepath.Dir(file), 0o755); err == nil {
			err = spec.WriteFileAtomic(file, b)
		}
	}
	if err != nil {
		c.mu.Lock()
		d.dirty = true
		c.mu.Unlock()
		return fmt.Errorf("save %s: %w", file, err)
	}
	return nil
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

package spec

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"golang.org/x/sync/errgroup"
)

// LoadOptions changes how a repository is loaded.
type LoadOptions struct {
	// Vars sets variables, as -var NAME=VALUE does. A value is taken as a
	// string when the variable's type is string or unset, and parsed as an
	// HCL expression otherwise.
	Vars map[string]string
	// NoEnv ignores GANTRY_VAR_* environment variables (for tests).
	NoEnv bool
}

var rootSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "gantry"},
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "locals"},
		{Type: "node_pool", LabelNames: []string{"name"}},
		{Type: "node", LabelNames: []string{"name"}},
		{Type: "release", LabelNames: []string{"name"}},
		{Type: "cluster", LabelNames: []string{"name"}},
	},
}

// Files lists the *.hcl files below root in load order: lexical by
// slash-separated relative path. Hidden directories (.git, .gantry) are
// skipped.
func Files(root string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(d.Name(), ".hcl") && d.Type().IsRegular() {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list config files in %s: %w", root, err)
	}
	sort.Slice(files, func(i, j int) bool { return filepath.ToSlash(files[i]) < filepath.ToSlash(files[j]) })
	return files, nil
}

// Load reads every *.hcl file below root, evaluates variables and locals,
// decodes and validates. The Config is usable only when the diagnostics have
// no errors; it is returned either way so that its Files can print them.
func Load(ctx context.Context, root string, opts LoadOptions) (*Config, hcl.Diagnostics) {
	cfg, diags := load(ctx, root, opts)
	sortDiagnostics(diags)
	return cfg, diags
}

// sortDiagnostics orders diagnostics by position, so that output is stable
// whatever order decoding visited maps in. Diagnostics without a subject
// keep their place at the end.
func sortDiagnostics(diags hcl.Diagnostics) {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		switch {
		case a == nil || b == nil:
			return a != nil && b == nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		case a.Start.Byte != b.Start.Byte:
			return a.Start.Byte < b.Start.Byte
		}
		return diags[i].Summary < diags[j].Summary
	})
}

func load(ctx context.Context, root string, opts LoadOptions) (*Config, hcl.Diagnostics) {
	cfg := &Config{Root: root, Files: map[string]*hcl.File{}}
	info, err := os.Stat(root)
	if err != nil {
		return cfg, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read config directory", Detail: err.Error()}}
	}
	if !info.IsDir() {
		return cfg, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Not a directory", Detail: fmt.Sprintf("%s is not a directory; point Gantry at the root of a config repository.", root)}}
	}
	paths, err := Files(root)
	if err != nil {
		return cfg, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Cannot read config directory", Detail: err.Error()}}
	}
	if len(paths) == 0 {
		return cfg, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "No configuration files", Detail: fmt.Sprintf("There are no *.hcl files in %s.", root)}}
	}
	// Files are parsed in parallel (HCL parsing is most of a load), and
	// their results kept in path order, so diagnostics come out the same.
	files := make([]*hcl.File, len(paths))
	fileDiags := make([]hcl.Diagnostics, len(paths))
	parallel(len(paths), func(i int) { files[i], fileDiags[i] = parseFile(paths[i]) })
	var diags hcl.Diagnostics
	var bodies []*hcl.File
	for i, p := range paths {
		diags = append(diags, fileDiags[i]...)
		if files[i] != nil {
			bodies = append(bodies, files[i])
			cfg.Files[p] = files[i]
		}
	}
	for _, d := range diags {
		if d.Summary != unclosedSummary || d.Subject == nil {
			continue
		}
		if f := cfg.Files[d.Subject.Filename]; f != nil {
			if hint := unclosedBlock(d.Subject.Filename, f.Bytes, *d.Subject); hint != nil {
				diags = append(diags, hint)
			}
		}
	}
	if diags.HasErrors() {
		return cfg, diags
	}

	var blocks []*hcl.Block
	for _, f := range bodies {
		content, d := f.Body.Content(rootSchema)
		diags = append(diags, d...)
		blocks = append(blocks, content.Blocks...)
	}

	// Variables and locals first: everything else may refer to them.
	seen := map[string]map[string]hcl.Range{}
	dup := func(kind, name string, r hcl.Range, subject *hcl.Range) bool {
		if seen[kind] == nil {
			seen[kind] = map[string]hcl.Range{}
		}
		if prev, ok := seen[kind][name]; ok {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("Duplicate %s %q", kind, name),
				Detail:   fmt.Sprintf("A %s named %q was already defined. Previous definition at %s:%d.", kind, name, prev.Filename, prev.Start.Line),
				Subject:  subject,
			})
			return true
		}
		seen[kind][name] = r
		return false
	}
	vars := map[string]cty.Value{}
	localAttrs := map[string]*hcl.Attribute{}
	declared := map[string]bool{}
	for _, b := range blocks {
		switch b.Type {
		case "variable":
			declared[b.Labels[0]] = true
			v, d := decodeVariable(b)
			diags = append(diags, d...)
			if v == nil || dup("variable", v.Name, b.DefRange, b.LabelRanges[0].Ptr()) {
				continue
			}
			val, d := variableValue(v, opts)
			diags = append(diags, d...)
			vars[v.Name] = val
		case "locals":
			attrs, d := b.Body.JustAttributes()
			diags = append(diags, d...)
			for name, a := range attrs {
				if dup("local value", name, a.NameRange, a.NameRange.Ptr()) {
					continue
				}
				localAttrs[name] = a
			}
		}
	}
	diags = append(diags, undeclaredVars(opts.Vars, declared)...)
	funcs := functions()
	varObj := cty.ObjectVal(vars)
	locals, d := evalLocals(localAttrs, varObj, funcs)
	diags = append(diags, d...)
	if diags.HasErrors() {
		return cfg, diags
	}
	evalCtx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": varObj, "local": cty.ObjectVal(locals)},
		Functions: funcs,
	}

	// Release blocks, the bulk of a big repository, are decoded in
	// parallel; everything else, and the order of the results and of
	// their diagnostics, stays as a sequential decode gives it.
	fleet := slices.ContainsFunc(blocks, func(b *hcl.Block) bool { return b.Type == "cluster" })
	decoded := make([]Release, len(blocks))
	decodeDiags := make([]hcl.Diagnostics, len(blocks))
	parallel(len(blocks), func(i int) {
		if blocks[i].Type == "release" {
			decodeDiags[i] = gohcl.DecodeBody(blocks[i].Body, evalCtx, &decoded[i])
			if ro := decoded[i].Rollout; ro != nil {
				decodeDiags[i] = append(decodeDiags[i], decodeRollout(ro, evalCtx, fleet)...)
			}
		}
	})
	for i, b := range blocks {
		switch b.Type {
		case "gantry":
			if dup("gantry block", "settings", b.DefRange, b.DefRange.Ptr()) {
				continue
			}
			diags = append(diags, gohcl.DecodeBody(b.Body, evalCtx, &cfg.Settings)...)
			cfg.Settings.DefRange = b.DefRange
		case "node_pool":
			var p NodePool
			diags = append(diags, gohcl.DecodeBody(b.Body, evalCtx, &p)...)
			p.Name, p.DefRange = b.Labels[0], b.DefRange
			if !dup("node_pool", p.Name, b.DefRange, b.LabelRanges[0].Ptr()) {
				cfg.Pools = append(cfg.Pools, p)
			}
		case "node":
			var n Node
			diags = append(diags, gohcl.DecodeBody(b.Body, evalCtx, &n)...)
			n.Name, n.DefRange = b.Labels[0], b.DefRange
			// A fleet's node is known by cluster and name: two clusters
			// may each have a gpu-1.
			key := n.Name
			if n.Cluster != "" {
				key = n.Cluster + "/" + n.Name
			}
			if !dup("node", key, b.DefRange, b.LabelRanges[0].Ptr()) {
				cfg.Nodes = append(cfg.Nodes, n)
			}
		case "cluster":
			var c Cluster
			diags = append(diags, gohcl.DecodeBody(b.Body, evalCtx, &c)...)
			c.Name, c.DefRange = b.Labels[0], b.DefRange
			if !dup("cluster", c.Name, b.DefRange, b.LabelRanges[0].Ptr()) {
				cfg.Clusters = append(cfg.Clusters, c)
			}
		case "release":
			r := decoded[i]
			diags = append(diags, decodeDiags[i]...)
			r.Name, r.DefRange = b.Labels[0], b.DefRange
			if !dup("release", r.Name, b.DefRange, b.LabelRanges[0].Ptr()) {
				cfg.Releases = append(cfg.Releases, r)
			}
		}
	}
	if diags.HasErrors() {
		return cfg, diags
	}
	sort.Slice(cfg.Pools, func(i, j int) bool { return cfg.Pools[i].Name < cfg.Pools[j].Name })
	sort.Slice(cfg.Nodes, func(i, j int) bool {
		a, b := &cfg.Nodes[i], &cfg.Nodes[j]
		return a.Name < b.Name || (a.Name == b.Name && a.Cluster < b.Cluster)
	})
	sort.Slice(cfg.Releases, func(i, j int) bool { return cfg.Releases[i].Name < cfg.Releases[j].Name })
	sort.Slice(cfg.Clusters, func(i, j int) bool { return cfg.Clusters[i].Name < cfg.Clusters[j].Name })

	diags = append(diags, validate(cfg)...)
	if diags.HasErrors() {
		return cfg, diags
	}
	diags = append(diags, resolveDigests(ctx, cfg)...)
	return cfg, diags
}

// parseFile reads and parses one HCL file, as hclparse.Parser does.
func parseFile(path string) (*hcl.File, hcl.Diagnostics) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Failed to read file",
			Detail: fmt.Sprintf("The configuration file %q could not be read.", path)}}
	}
	return hclsyntax.ParseConfig(src, path, hcl.InitialPos)
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

// resolveDigests fills Model.Digest for repo-path sources that do not pin
// one, by hashing the file. Pinned digests are trusted here and verified
// when the model is read for quantization. A model that several releases
// share is hashed once.
func resolveDigests(ctx context.Context, cfg *Config) hcl.Diagnostics {
	var diags hcl.Diagnostics
	done := map[string]string{}
	for i := range cfg.Releases {
		m := &cfg.Releases[i].Model
		if m.Digest != "" || m.Kind() != SourcePath {
			continue
		}
		p := filepath.Join(cfg.Root, filepath.FromSlash(m.Source))
		if d, ok := done[p]; ok {
			m.Digest = d
			continue
		}
		d, err := FileDigest(ctx, p)
		if err == nil {
			done[p] = d
		}
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError, Summary: "Cannot read model file",
				Detail: err.Error(), Subject: m.DefRange.Ptr(),
			})
			continue
		}
		m.Digest = d
	}
	for i := range cfg.Releases {
		for j := range cfg.Releases[i].Model.Adapters {
			a := &cfg.Releases[i].Model.Adapters[j]
			if a.Digest != "" || strings.Contains(a.Source, "://") {
				continue
			}
			p := filepath.Join(cfg.Root, filepath.FromSlash(a.Source))
			if d, ok := done[p]; ok {
				a.Digest = d
				continue
			}
			d, err := FileDigest(ctx, p)
			if err != nil {
				continue // validation reports a missing or unreadable adapter
			}
			done[p] = d
			a.Digest = d
		}
	}
	return diags
}

// FileDigest is "sha256:<hex>" of a file's content, streamed. A directory
// (a safetensors checkpoint) hashes the sorted list of its regular files'
// relative names and digests.
func FileDigest(ctx context.Context, path string) (string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !info.IsDir() {
		return hashFile(ctx, path)
	}
	h := sha256.New()
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fd, err := hashFile(ctx, p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(path, p)
		fmt.Fprintf(h, "%s %s\n", filepath.ToSlash(rel), fd)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash model directory %s: %w", path, err)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// hashFile is the digest of the file at path, from digestCache when the
// file is the same version as when it was last hashed.
func hashFile(ctx context.Context, path string) (string, error) {
	if d, ok := digestCache.get(path); ok {
		return d, nil
	}
	f, err := openFile(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	start := time.Now()
	before, err := f.Stat()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if _, err := io.Copy(h, ctxReader{ctx, f}); err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	d := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if after, err := f.Stat(); err == nil && sameVersion(before, after) && start.Sub(before.ModTime()) > digestSettle {
		digestCache.put(path, before, d)
	}
	return d, nil
}

// openFile opens a model file for hashing; tests count the calls.
var openFile = func(name string) (*os.File, error) { return os.Open(name) }

// digestCache keeps, for the life of the process, the digest of each
// model file Gantry hashed, by absolute path and file version, so that a
// reconcile of an unchanged repository (and every release sharing a
// model, and a build verifying it) does not read the model again. A
// digest is served only while the file is the same version: the same
// file (device and inode), size and modification time. A file modified
// less than digestSettle before it was hashed is not kept, so that a
// write within the file system's timestamp granularity cannot pass for
// the version that was hashed; nor is one that changed while it was
// read.
var digestCache = &fileDigests{m: map[string]fileDigest{}}

// digestSettle is how much older than its hashing a file must be for its
// digest to be kept (FAT has 2 s timestamps).
const digestSettle = 3 * time.Second

// maxCachedDigests bounds digestCache: a checkout per revision would
// otherwise add its paths forever.
const maxCachedDigests = 4096

type fileDigests struct {
	mu sync.Mutex
	m  map[string]fileDigest // by absolute path
}

type fileDigest struct {
	info   os.FileInfo
	digest string
}

func (c *fileDigests) get(path string) (string, bool) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", false
	}
	c.mu.Lock()
	e, ok := c.m[abs]
	c.mu.Unlock()
	if !ok {
		return "", false
	}
	st, err := os.Stat(abs)
	if err != nil || !sameVersion(e.info, st) {
		c.mu.Lock()
		if cur, ok := c.m[abs]; ok && cur.info == e.info {
			delete(c.m, abs)
		}
		c.mu.Unlock()
		return "", false
	}
	return e.digest, true
}

func (c *fileDigests) put(path string, info os.FileInfo, digest string) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return
	}
	c.mu.Lock()
	if len(c.m) >= maxCachedDigests {
		clear(c.m) // paths of old checkouts; the live ones come back
	}
	c.m[abs] = fileDigest{info: info, digest: digest}
	c.mu.Unlock()
}

// sameVersion reports whether a and b describe the same version of a
// regular file.
func sameVersion(a, b os.FileInfo) bool {
	return a.Mode().IsRegular() && b.Mode().IsRegular() && os.SameFile(a, b) &&
		a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}

// ctxReader stops a long read when ctx is cancelled.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

package spec

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// Format returns src in canonical form. It refuses source that does not
// parse, since reformatting broken HCL could lose text.
func Format(filename string, src []byte) ([]byte, hcl.Diagnostics) {
	_, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	return hclwrite.Format(src), nil
}

// FormatResult is one file's outcome of FormatFiles.
type FormatResult struct {
	Path      string
	Original  []byte
	Formatted []byte
}

// Changed reports whether formatting changes the file.
func (r FormatResult) Changed() bool { return !bytes.Equal(r.Original, r.Formatted) }

// FormatFiles formats every *.hcl file below root (or the single file root
// names). With write, changed files are replaced atomically.
func FormatFiles(ctx context.Context, root string, write bool) ([]FormatResult, hcl.Diagnostics, error) {
	var paths []string
	if info, err := os.Stat(root); err != nil {
		return nil, nil, err
	} else if info.IsDir() {
		if paths, err = Files(root); err != nil {
			return nil, nil, err
		}
	} else {
		paths = []string{root}
	}
	var out []FormatResult
	var diags hcl.Diagnostics
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return out, diags, err
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return out, diags, fmt.Errorf("read %s: %w", p, err)
		}
		formatted, d := Format(p, src)
		diags = append(diags, d...)
		if d.HasErrors() {
			continue
		}
		r := FormatResult{Path: p, Original: src, Formatted: formatted}
		out = append(out, r)
		if write && r.Changed() {
			if err := WriteFileAtomic(p, formatted); err != nil {
				return out, diags, err
			}
		}
	}
	return out, diags, nil
}

// WriteFileAtomic writes data to a temp file in the same directory and
// renames it over path, keeping path's mode, so that readers never see a
// half-written file.
func WriteFileAtomic(path string, data []byte) error {
	mode := os.FileMode(0o644)
	if info, err := os.Stat(path); err == nil {
		mode = info.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

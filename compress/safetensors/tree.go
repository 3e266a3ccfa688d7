package safetensors

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// CopyTree copies every regular file of a checkpoint directory src
// (following symlinks, as in a Hugging Face cache snapshot) to dst, except
// the top-level names in skip: the files a converter of the weights
// (quantization, adapter fusion) keeps as they are, such as config.json
// and the tokenizer. Each file is synced; a symlinked directory is an
// error.
func CopyTree(ctx context.Context, src, dst string, skip map[string]bool) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("safetensors: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		if filepath.Dir(rel) == "." && skip[rel] {
			return nil
		}
		fi, err := os.Stat(p) // follows symlinks
		if err != nil {
			return fmt.Errorf("safetensors: %w", err)
		}
		target := filepath.Join(dst, rel)
		if fi.IsDir() {
			if d.Type()&os.ModeSymlink != 0 {
				return fmt.Errorf("safetensors: %s: symlinked directories are not copied", p)
			}
			return os.MkdirAll(target, 0o755)
		}
		if !fi.Mode().IsRegular() {
			return nil
		}
		return copyFile(p, target)
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("safetensors: copy %s: %w", src, err)
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("safetensors: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return nil
}

// SyncDir syncs a directory, so that the names created in it are durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("safetensors: sync %s: %w", dir, err)
	}
	return nil
}

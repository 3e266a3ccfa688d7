package registry

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// OCIScheme prefixes a registry reference in a model source
// (model.source = "oci://REF", gantry quantize --in oci://REF).
const OCIScheme = "oci://"

// PullRef pulls "oci://REF" (or a plain REF) from its registry into destDir,
// with o's settings. See Pull.
func PullRef(ctx context.Context, ref, destDir string, o Options) error {
	return Pull(ctx, NewRemote(o), strings.TrimPrefix(ref, OCIScheme), destDir)
}

// Pull extracts the model files of ref from src into destDir, which must
// not exist or be empty. It understands both packagings: a ModelPack
// artifact (every file layer, at its path) and a modelcar image (the files
// under /models of all layers, later layers winning, whiteouts applied).
//
// Pull streams: each layer is read once, its digest checked against the
// manifest as it is read, and the files written as they come. It is
// atomic: files go to a temporary directory beside destDir, renamed into
// place only when every layer has been read and verified. It refuses
// entries that would land outside destDir (absolute, "..", through a
// symlink) and any symlink, hard link or device in the model: model files
// are regular files.
func Pull(ctx context.Context, src Source, ref, destDir string) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("pull %s into %s: %w", ref, destDir, err)
		}
	}()
	if err := checkDest(destDir); err != nil {
		return err
	}
	img, err := src.Image(ctx, ref)
	if err != nil {
		return err
	}
	man, err := img.Manifest()
	if err != nil {
		return err
	}
	modelPack := isModelPack(man)

	parent := filepath.Dir(filepath.Clean(destDir))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(destDir)+".pull-")
	if err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp makes it 0700
		os.RemoveAll(tmp)
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return err
	}
	defer root.Close()

	files := 0
	for i, desc := range man.Layers {
		l, err := img.LayerByDigest(desc.Digest)
		if err != nil {
			return fmt.Errorf("layer %d (%s): %w", i, desc.Digest, err)
		}
		n, err := extractLayer(ctx, root, l, desc, modelPack)
		if err != nil {
			return fmt.Errorf("layer %d (%s): %w", i, desc.Digest, err)
		}
		files += n
	}
	if files == 0 {
		if modelPack {
			return errors.New("the artifact holds no model files")
		}
		return fmt.Errorf("the image holds no files under /%s; is it a modelcar?", ModelcarDir)
	}
	if err := root.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := os.Remove(destDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err // checkDest saw it empty; something wrote meanwhile
	}
	return os.Rename(tmp, destDir)
}

// checkDest accepts a missing or empty directory.
func checkDest(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("destination is not empty: %w", fs.ErrExist)
	}
	return nil
}

func isModelPack(m *v1.Manifest) bool {
	return m.ArtifactType == ArtifactTypeModelManifest || m.Config.MediaType == MediaTypeModelConfig ||
		// The model-spec's media types before it moved to CNCF.
		m.ArtifactType == "application/vnd.cnai.model.manifest.v1+json" ||
		m.Config.MediaType == "application/vnd.cnai.model.config.v1+json"
}

// verifyingReader hashes what it reads and, at EOF, fails if the bytes do
// not match the digest and size the manifest promised.
type verifyingReader struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	want v1.Descriptor
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if err == io.EOF {
		got := fmt.Sprintf("%x", v.h.Sum(nil))
		if v.want.Digest.Algorithm != "sha256" || got != v.want.Digest.Hex || v.n != v.want.Size {
			return n, fmt.Errorf("blob does not match its descriptor: want %s (%d bytes), got sha256:%s (%d bytes)", v.want.Digest, v.want.Size, got, v.n)
		}
	}
	return n, err
}

// extractLayer writes the model files of one layer into root and returns
// how many it wrote.
func extractLayer(ctx context.Context, root *os.Root, l v1.Layer, desc v1.Descriptor, modelPack bool) (int, error) {
	rc, err := l.Compressed()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	vr := &verifyingReader{r: ctxReader{ctx, rc}, h: sha256.New(), want: desc}
	mt := string(desc.MediaType)

	if modelPack && strings.HasSuffix(mt, ".raw") {
		// An unarchived file: the blob is the file, named by annotation.
		p, err := cleanRel(desc.Annotations[AnnotationFilepath])
		if err != nil {
			return 0, err
		}
		if err := writeFile(root, p, vr, -1); err != nil {
			return 0, err
		}
		return 1, nil
	}

	var r io.Reader = vr
	switch {
	case strings.HasSuffix(mt, "+gzip") || desc.MediaType == types.DockerLayer:
		zr, err := gzip.NewReader(vr)
		if err != nil {
			return 0, err
		}
		defer zr.Close()
		r = zr
	case strings.HasSuffix(mt, "+zstd"):
		return 0, fmt.Errorf("media type %s: zstd layers are not supported", mt)
	case strings.HasSuffix(mt, ".tar") || desc.MediaType == types.DockerUncompressedLayer:
	default:
		if modelPack {
			return 0, fmt.Errorf("media type %s is not a model layer", mt)
		}
		return 0, nil // not a filesystem layer; nothing of the model in it
	}

	files := 0
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return files, err
		}
		p, ok, err := entryPath(h.Name, modelPack)
		if err != nil {
			return files, err
		}
		if !ok {
			continue // outside /models in a modelcar: the base's files
		}
		if dir, base := path.Split(p); strings.HasPrefix(base, ".wh.") {
			if base == ".wh..wh..opq" {
				return files, fmt.Errorf("%s: opaque whiteouts are not supported", h.Name)
			}
			if err := root.RemoveAll(path.Join(dir, strings.TrimPrefix(base, ".wh."))); err != nil {
				return files, err
			}
			continue
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if p != "." {
				if err := root.MkdirAll(p, 0o755); err != nil {
					return files, err
				}
			}
		case tar.TypeReg:
			if err := writeFile(root, p, tr, h.Size); err != nil {
				return files, err
			}
			files++
		default:
			return files, fmt.Errorf("%s: %s entries are not allowed in a model (only files and directories)", h.Name, typeName(h.Typeflag))
		}
	}
	// Read to the end so that the digest is checked even past the tar's
	// end-of-archive marker.
	if _, err := io.Copy(io.Discard, vr); err != nil {
		return files, err
	}
	return files, nil
}

// entryPath maps a tar entry name to a path below the model directory. In a
// modelcar only entries under models/ belong to the model.
func entryPath(name string, modelPack bool) (string, bool, error) {
	n := strings.TrimPrefix(strings.TrimPrefix(name, "./"), "/")
	if !modelPack {
		n = strings.TrimSuffix(n, "/")
		if n != ModelcarDir && !strings.HasPrefix(n, ModelcarDir+"/") {
			return "", false, nil
		}
		n = strings.TrimPrefix(strings.TrimPrefix(n, ModelcarDir), "/")
		if n == "" {
			return ".", true, nil
		}
	}
	n = strings.TrimSuffix(n, "/")
	p, err := cleanRel(n)
	if err != nil {
		return "", false, fmt.Errorf("tar entry %q: %w", name, err)
	}
	return p, true, nil
}

// writeFile writes r (size bytes, or to EOF when size < 0) to p below root.
// os.Root refuses any path that resolves outside it, symlinks included.
func writeFile(root *os.Root, p string, r io.Reader, size int64) error {
	if dir := path.Dir(p); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	f, err := root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("%s: wrote %d of %d bytes", p, n, size)
	}
	return nil
}

func typeName(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "symlink"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar, tar.TypeBlock:
		return "device"
	case tar.TypeFifo:
		return "fifo"
	}
	return fmt.Sprintf("type %q", t)
}

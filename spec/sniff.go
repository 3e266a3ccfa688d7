package spec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// What a model path holds, told from its first bytes (or, for a directory,
// from its file names), so that a format that contradicts the file fails
// validation at the format attribute instead of the quantizer failing later
// with no position.
type sniffKind int

const (
	sniffUnknown      sniffKind = iota // a file that is neither format
	sniffGGUF                          // a file starting with "GGUF"
	sniffSafetensors                   // a safetensors file, or a directory of them
	sniffDirNoWeights                  // a directory without *.safetensors files
)

type sniffResult struct {
	kind sniffKind
	err  error
}

// openModel opens a model file for sniffing; tests count the calls.
var openModel = func(name string) (io.ReadCloser, error) { return os.Open(name) }

// sniffHead is how many bytes sniffing reads: the GGUF magic, or a
// safetensors header length (8 bytes, little endian) and the '{' after it.
const sniffHead = 9

// sniffModel tells what path holds, reading at most sniffHead bytes of a
// file or the names in a directory.
func sniffModel(path string) sniffResult {
	info, err := os.Stat(path)
	if err != nil {
		return sniffResult{err: err}
	}
	if info.IsDir() {
		entries, err := os.ReadDir(path)
		if err != nil {
			return sniffResult{err: err}
		}
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".safetensors") && !e.IsDir() {
				return sniffResult{kind: sniffSafetensors}
			}
		}
		return sniffResult{kind: sniffDirNoWeights}
	}
	f, err := openModel(path)
	if err != nil {
		return sniffResult{err: err}
	}
	defer f.Close()
	var head [sniffHead]byte
	n, err := io.ReadFull(f, head[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return sniffResult{err: err}
	}
	return sniffResult{kind: sniffBytes(head[:n], info.Size())}
}

// sniffBytes classifies the first bytes of a file of the given size.
func sniffBytes(head []byte, size int64) sniffKind {
	if len(head) >= 4 && string(head[:4]) == "GGUF" {
		return sniffGGUF
	}
	if len(head) >= 9 && head[8] == '{' {
		// The header is JSON of at least "{}", and inside the file.
		if n := binary.LittleEndian.Uint64(head[:8]); n >= 2 && n <= uint64(max(0, size-8)) {
			return sniffSafetensors
		}
	}
	return sniffUnknown
}

// modelFormat checks m.Format against what the repository file at real
// holds. Each real path is read once per Load, however many releases
// share it.
func (v *validator) modelFormat(m *Model, source hcl.Range, real string) {
	if m.Format != "gguf" && m.Format != "safetensors" {
		return // reported as an unsupported format
	}
	if v.sniffed == nil {
		v.sniffed = map[string]sniffResult{}
	}
	res, ok := v.sniffed[real]
	if !ok {
		res = sniffModel(real)
		v.sniffed[real] = res
	}
	if res.err != nil {
		v.errorf(source, "Cannot read model file", "source %q: %s.", m.Source, describeFileError(res.err))
		return
	}
	var detail string
	switch {
	case res.kind == sniffGGUF && m.Format == "safetensors":
		detail = fmt.Sprintf("format is \"safetensors\", but %q is a GGUF file (it starts with the GGUF magic). Set format = \"gguf\".", m.Source)
	case res.kind == sniffSafetensors && m.Format == "gguf":
		detail = fmt.Sprintf("format is \"gguf\", but %q is a safetensors checkpoint. Set format = \"safetensors\".", m.Source)
	case res.kind == sniffDirNoWeights && m.Format == "gguf":
		detail = fmt.Sprintf("format is \"gguf\", but %q is a directory; a GGUF model is one file.", m.Source)
	case res.kind == sniffDirNoWeights:
		detail = fmt.Sprintf("%q is a directory with no *.safetensors files in it.", m.Source)
	case res.kind == sniffUnknown && m.Format == "gguf":
		detail = fmt.Sprintf("format is \"gguf\", but %q does not start with the GGUF magic, so it is not a GGUF file.", m.Source)
	case res.kind == sniffUnknown:
		detail = fmt.Sprintf("format is \"safetensors\", but %q is neither a safetensors file (an 8-byte header length, then a JSON header) nor a directory of them.", m.Source)
	default:
		return
	}
	v.errorf(v.attr(m.DefRange, "format"), "Model format does not match the file", "%s", detail)
}

// describeFileError drops the path from an *os.PathError, which would
// otherwise print the absolute path of the checkout.
func describeFileError(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Op + ": " + pe.Err.Error()
	}
	return err.Error()
}

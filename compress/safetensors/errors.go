package safetensors

import (
	"errors"
	"fmt"
	"strconv"
)

// Sentinel errors classifying a [FormatError]; test with errors.Is.
var (
	ErrHeaderTooLarge = errors.New("header length over limit")
	ErrTruncated      = errors.New("file truncated")
	ErrSyntax         = errors.New("malformed header")
	ErrDuplicate      = errors.New("duplicate name")
	ErrUnknownDType   = errors.New("unknown dtype")
	ErrShape          = errors.New("shape does not match dtype and offsets")
	ErrOffsets        = errors.New("bad data offsets")
	ErrTrailing       = errors.New("trailing bytes after data")
)

// FormatError reports an invalid or truncated safetensors file. Its message
// names the file, the tensor when there is one, and the byte offset in the
// file at which the problem was found.
type FormatError struct {
	File   string // the name given to Open or NewFile
	Tensor string // "" when the problem is not tied to one tensor
	Offset int64  // absolute byte offset in the file
	Err    error  // one of the Err* sentinels
	Detail string
}

func (e *FormatError) Error() string {
	s := "safetensors: " + e.File
	if e.Tensor != "" {
		s += ": tensor " + strconv.Quote(e.Tensor)
	}
	s += fmt.Sprintf(": offset %d: %v", e.Offset, e.Err)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

func (e *FormatError) Unwrap() error { return e.Err }

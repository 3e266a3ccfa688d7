package gguf

import (
	"errors"
	"fmt"
	"strconv"
)

// Sentinel causes, for callers that branch on why a file was rejected
// (errors.Is). Every error from Read is an *Error wrapping one of them.
var (
	ErrTruncated   = errors.New("file is truncated")
	ErrLimit       = errors.New("length over limit")
	ErrDuplicate   = errors.New("duplicate name")
	ErrUnknownType = errors.New("unknown type")
	ErrRange       = errors.New("out of range")
	ErrOverlap     = errors.New("overlapping tensor data")
	ErrShape       = errors.New("bad shape")
	ErrFormat      = errors.New("malformed")
)

// Error locates a problem in a GGUF file: the file, the tensor or metadata
// key concerned (if any), and the byte offset in the file.
type Error struct {
	File   string
	Tensor string // tensor name, "" if not about a tensor
	Key    string // metadata key, "" if not about one
	Offset int64  // byte offset in the file
	Msg    string
	Err    error // the sentinel cause
}

func (e *Error) Error() string {
	s := "gguf " + e.File
	if e.Tensor != "" {
		s += ": tensor " + strconv.Quote(e.Tensor)
	}
	if e.Key != "" {
		s += ": key " + strconv.Quote(e.Key)
	}
	s += ": offset " + strconv.FormatInt(e.Offset, 10) + ": " + e.Msg
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(file string, off int64, cause error, format string, args ...any) *Error {
	return &Error{File: file, Offset: off, Msg: fmt.Sprintf(format, args...), Err: cause}
}

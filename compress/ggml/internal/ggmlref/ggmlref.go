//go:build ggmlref && cgo

package ggmlref

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

// Signatures as declared in ggml.h (ggml_type is a C enum, passed as int).
typedef size_t (*quantize_chunk_fn)(int type, const float *src, void *dst,
	int64_t start, int64_t nrows, int64_t n_per_row, const float *imatrix);
typedef bool (*requires_imatrix_fn)(int type);
typedef void (*row_fn)(const void *src, void *dst, int64_t n);
typedef const char *(*str_fn)(void);

static size_t gr_quantize_chunk(void *f, int type, const float *src, void *dst,
		int64_t nrows, int64_t n_per_row) {
	return ((quantize_chunk_fn)f)(type, src, dst, 0, nrows, n_per_row, NULL);
}
static bool gr_requires_imatrix(void *f, int type) { return ((requires_imatrix_fn)f)(type); }
static void gr_row(void *f, const void *src, void *dst, int64_t n) { ((row_fn)f)(src, dst, n); }
static const char *gr_str(void *f) { return ((str_fn)f)(); }
*/
import "C"

import (
	"errors"
	"fmt"
	"unsafe"
)

// Lib is an open ggml library.
type Lib struct {
	h    unsafe.Pointer
	path string
}

// Open dlopens the library at path.
func Open(path string) (*Lib, error) {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	h := C.dlopen(cp, C.RTLD_NOW|C.RTLD_LOCAL)
	if h == nil {
		return nil, fmt.Errorf("dlopen %s: %s", path, C.GoString(C.dlerror()))
	}
	return &Lib{h: h, path: path}, nil
}

// Sym returns the address of an exported symbol, or nil.
func (l *Lib) Sym(name string) unsafe.Pointer {
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	return C.dlsym(l.h, cn)
}

// Has reports whether the library exports name.
func (l *Lib) Has(name string) bool { return l.Sym(name) != nil }

func (l *Lib) str(name string) string {
	if f := l.Sym(name); f != nil {
		return C.GoString(C.gr_str(f))
	}
	return ""
}

// Version is ggml_version() and ggml_commit(), or empty strings when the
// library does not export them.
func (l *Lib) Version() (version, commit string) {
	return l.str("ggml_version"), l.str("ggml_commit")
}

// RequiresImatrix is ggml_quantize_requires_imatrix.
func (l *Lib) RequiresImatrix(typ uint32) (bool, error) {
	f := l.Sym("ggml_quantize_requires_imatrix")
	if f == nil {
		return false, errors.New("ggml_quantize_requires_imatrix not exported")
	}
	return bool(C.gr_requires_imatrix(f, C.int(typ))), nil
}

// QuantizeChunk is ggml_quantize_chunk(typ, src, dst, 0, nrows, nPerRow,
// NULL). dst must hold the whole result; ggml does not check its size.
func (l *Lib) QuantizeChunk(typ uint32, dst []byte, src []float32, nrows, nPerRow int64) (int, error) {
	f := l.Sym("ggml_quantize_chunk")
	if f == nil {
		return 0, errors.New("ggml_quantize_chunk not exported")
	}
	if int64(len(src)) != nrows*nPerRow || len(src) == 0 || len(dst) == 0 {
		return 0, fmt.Errorf("quantize_chunk: %d values for %d×%d", len(src), nrows, nPerRow)
	}
	n := C.gr_quantize_chunk(f, C.int(typ), (*C.float)(unsafe.Pointer(&src[0])), unsafe.Pointer(&dst[0]),
		C.int64_t(nrows), C.int64_t(nPerRow))
	if int(n) > len(dst) {
		panic(fmt.Sprintf("ggml_quantize_chunk wrote %d bytes into %d", n, len(dst)))
	}
	return int(n), nil
}

// Row calls a row function of the shape void f(const T *src, U *dst, int64_t
// n), such as ggml_fp32_to_fp16_row or dequantize_row_q4_K, where n counts
// values. The caller sizes both buffers. It reports false when name is not
// exported.
func (l *Lib) Row(name string, dst, src unsafe.Pointer, n int64) bool {
	f := l.Sym(name)
	if f == nil {
		return false
	}
	C.gr_row(f, src, dst, C.int64_t(n))
	return true
}

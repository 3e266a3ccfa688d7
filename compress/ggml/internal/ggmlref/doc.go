// Package ggmlref loads a prebuilt ggml shared library (libggml-base.so) at
// run time with dlopen and calls its reference quantizers and conversions,
// so that compress/ggml's ggmlref test can compare the Go kernels with the
// real ggml byte for byte.
//
// Its code is built only with the ggmlref build tag (and cgo); without the
// tag the package is empty and nothing in gantry links against libdl or
// ggml. Nothing from ggml is vendored: the library is whatever file
// GANTRY_GGML_LIB names at test time.
package ggmlref

package ggufquant

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gantry-dev/gantry/compress/ggml"
)

// FileType is a llama-quantize target: the value written to
// general.file_type (llama_ftype) and the base tensor type.
type FileType struct {
	Name  string    // canonical name, e.g. "Q4_K_M"
	FType uint32    // llama_ftype
	Base  ggml.Type // the type most tensors get
}

// The targets ParseType knows, with llama.cpp's ftype numbers. "Q4_K" and
// "Q5_K" are llama-quantize's aliases for Q4_K_M and Q5_K_M.
var fileTypes = map[string]FileType{
	"Q4_0":   {"Q4_0", 2, ggml.Q4_0},
	"Q4_1":   {"Q4_1", 3, ggml.Q4_1},
	"Q8_0":   {"Q8_0", 7, ggml.Q8_0},
	"Q5_0":   {"Q5_0", 8, ggml.Q5_0},
	"Q5_1":   {"Q5_1", 9, ggml.Q5_1},
	"Q4_K_S": {"Q4_K_S", 14, ggml.Q4_K},
	"Q4_K_M": {"Q4_K_M", 15, ggml.Q4_K},
	"Q5_K_S": {"Q5_K_S", 16, ggml.Q5_K},
	"Q5_K_M": {"Q5_K_M", 17, ggml.Q5_K},
	"Q6_K":   {"Q6_K", 18, ggml.Q6_K},
}

var aliases = map[string]string{"Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}

// ParseType maps a target name, case-insensitive ("q4_k_m", "Q8_0", "q4_k"),
// to its FileType.
func ParseType(s string) (FileType, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	if a, ok := aliases[u]; ok {
		u = a
	}
	if ft, ok := fileTypes[u]; ok {
		return ft, nil
	}
	names := make([]string, 0, len(fileTypes)+len(aliases))
	for n := range fileTypes {
		names = append(names, strings.ToLower(n))
	}
	for n := range aliases {
		names = append(names, strings.ToLower(n))
	}
	sort.Strings(names)
	return FileType{}, fmt.Errorf("unknown quantization type %q (known: %s)", s, strings.Join(names, ", "))
}

// Types lists the canonical target names.
func Types() []string {
	names := make([]string, 0, len(fileTypes))
	for n := range fileTypes {
		names = append(names, strings.ToLower(n))
	}
	sort.Strings(names)
	return names
}

package ggml

import "fmt"

// Type is a ggml tensor element type, numbered as in ggml.h (enum ggml_type).
type Type uint32

// The ggml type ids. Ids 4, 5, 31–33 and 36–38 were removed from ggml and
// are not valid in a file.
const (
	F32     Type = 0
	F16     Type = 1
	Q4_0    Type = 2
	Q4_1    Type = 3
	Q5_0    Type = 6
	Q5_1    Type = 7
	Q8_0    Type = 8
	Q8_1    Type = 9
	Q2_K    Type = 10
	Q3_K    Type = 11
	Q4_K    Type = 12
	Q5_K    Type = 13
	Q6_K    Type = 14
	Q8_K    Type = 15
	IQ2_XXS Type = 16
	IQ2_XS  Type = 17
	IQ3_XXS Type = 18
	IQ1_S   Type = 19
	IQ4_NL  Type = 20
	IQ3_S   Type = 21
	IQ2_S   Type = 22
	IQ4_XS  Type = 23
	I8      Type = 24
	I16     Type = 25
	I32     Type = 26
	I64     Type = 27
	F64     Type = 28
	IQ1_M   Type = 29
	BF16    Type = 30
	TQ1_0   Type = 34
	TQ2_0   Type = 35
	MXFP4   Type = 39
)

type traits struct {
	name      string
	blockSize int64 // values per block
	typeSize  int64 // bytes per block
	quantized bool
}

var typeTable = [...]traits{
	F32:     {"f32", 1, 4, false},
	F16:     {"f16", 1, 2, false},
	Q4_0:    {"q4_0", 32, 18, true},
	Q4_1:    {"q4_1", 32, 20, true},
	Q5_0:    {"q5_0", 32, 22, true},
	Q5_1:    {"q5_1", 32, 24, true},
	Q8_0:    {"q8_0", 32, 34, true},
	Q8_1:    {"q8_1", 32, 36, true},
	Q2_K:    {"q2_K", 256, 84, true},
	Q3_K:    {"q3_K", 256, 110, true},
	Q4_K:    {"q4_K", 256, 144, true},
	Q5_K:    {"q5_K", 256, 176, true},
	Q6_K:    {"q6_K", 256, 210, true},
	Q8_K:    {"q8_K", 256, 292, true},
	IQ2_XXS: {"iq2_xxs", 256, 66, true},
	IQ2_XS:  {"iq2_xs", 256, 74, true},
	IQ3_XXS: {"iq3_xxs", 256, 98, true},
	IQ1_S:   {"iq1_s", 256, 50, true},
	IQ4_NL:  {"iq4_nl", 32, 18, true},
	IQ3_S:   {"iq3_s", 256, 110, true},
	IQ2_S:   {"iq2_s", 256, 82, true},
	IQ4_XS:  {"iq4_xs", 256, 136, true},
	I8:      {"i8", 1, 1, false},
	I16:     {"i16", 1, 2, false},
	I32:     {"i32", 1, 4, false},
	I64:     {"i64", 1, 8, false},
	F64:     {"f64", 1, 8, false},
	IQ1_M:   {"iq1_m", 256, 56, true},
	BF16:    {"bf16", 1, 2, false},
	TQ1_0:   {"tq1_0", 256, 54, true},
	TQ2_0:   {"tq2_0", 256, 66, true},
	MXFP4:   {"mxfp4", 32, 17, true},
}

// Known reports whether t is a ggml type id that a file may contain.
func (t Type) Known() bool { return t.traits().blockSize != 0 }

func (t Type) traits() traits {
	if int(t) < len(typeTable) {
		return typeTable[t]
	}
	return traits{}
}

// BlockSize is the number of values in one block (1 for plain types), or 0
// for an unknown type.
func (t Type) BlockSize() int64 { return t.traits().blockSize }

// TypeSize is the number of bytes of one block, or 0 for an unknown type.
func (t Type) TypeSize() int64 { return t.traits().typeSize }

// Quantized reports whether t is a block-quantized type.
func (t Type) Quantized() bool { return t.traits().quantized }

// String is ggml's name for the type ("f16", "q4_K"), or "type(N)".
func (t Type) String() string {
	if tr := t.traits(); tr.blockSize != 0 {
		return tr.name
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// RowSize is the byte size of n values of type t. It returns an error when n
// is negative or not a whole number of blocks, or t is unknown.
func (t Type) RowSize(n int64) (int64, error) {
	tr := t.traits()
	if tr.blockSize == 0 {
		return 0, fmt.Errorf("unknown ggml type %d", uint32(t))
	}
	if n < 0 || n%tr.blockSize != 0 {
		return 0, fmt.Errorf("%d values do not fill whole %s blocks of %d", n, tr.name, tr.blockSize)
	}
	return n / tr.blockSize * tr.typeSize, nil
}

// ParseType maps ggml's type name (case-insensitive, e.g. "q4_k", "F16") to
// a Type.
func ParseType(s string) (Type, error) {
	for t, tr := range typeTable {
		if tr.blockSize != 0 && equalFold(tr.name, s) {
			return Type(t), nil
		}
	}
	return 0, fmt.Errorf("unknown ggml type name %q", s)
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

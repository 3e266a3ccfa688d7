package safetensors

import "fmt"

// DType is a tensor element type as spelled in a safetensors header.
//
// The constants are declared in the order of the reference implementation's
// Dtype enum (increasing alignment), which the reference writer uses, in
// descending order, to lay tensors out; see [SortCanonical].
type DType uint8

// The element types this package reads and writes. Sub-byte types (F4, F6_*)
// and complex types are rejected as unknown.
const (
	BOOL DType = iota + 1
	U8
	I8
	F8_E5M2
	F8_E4M3
	F8_E8M0
	I16
	U16
	F16
	BF16
	I32
	U32
	F32
	F64
	I64
	U64
)

var dtypeNames = [...]string{
	BOOL: "BOOL", U8: "U8", I8: "I8", F8_E5M2: "F8_E5M2", F8_E4M3: "F8_E4M3",
	F8_E8M0: "F8_E8M0", I16: "I16", U16: "U16", F16: "F16", BF16: "BF16",
	I32: "I32", U32: "U32", F32: "F32", F64: "F64", I64: "I64", U64: "U64",
}

var dtypeSizes = [...]int64{
	BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, F8_E8M0: 1, I16: 2, U16: 2,
	F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8,
}

// String returns the header spelling, e.g. "BF16".
func (d DType) String() string {
	if d.Valid() {
		return dtypeNames[d]
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Valid reports whether d is one of the declared constants.
func (d DType) Valid() bool { return d >= BOOL && d <= U64 }

// Size is the size of one element in bytes (0 for an invalid DType).
func (d DType) Size() int64 {
	if d.Valid() {
		return dtypeSizes[d]
	}
	return 0
}

// IsFloat reports whether d is a floating-point type that [DecodeFloat32]
// converts.
func (d DType) IsFloat() bool {
	switch d {
	case F16, BF16, F32, F64, F8_E4M3:
		return true
	}
	return false
}

// ParseDType returns the DType spelled s; ok is false for anything else.
func ParseDType(s string) (d DType, ok bool) {
	for i := BOOL; i <= U64; i++ {
		if dtypeNames[i] == s {
			return i, true
		}
	}
	return 0, false
}

package ggml

import (
	"encoding/binary"
	"math"

	"github.com/gantry-dev/gantry/compress/internal/simd"
)

// FP16ToFP32 widens an IEEE 754 binary16 value exactly, as ggml's
// GGML_FP16_TO_FP32. A NaN keeps its sign and payload and comes out quiet:
// ggml's software conversion multiplies by 2^-112, which quiets a signalling
// NaN, and so does F16C's vcvtph2ps.
func FP16ToFP32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f && mant != 0: // NaN: keep the payload, set the quiet bit
		return math.Float32frombits(sign | 0x7fc00000 | mant<<13)
	case exp == 0x1f: // ±Inf
		return math.Float32frombits(sign | 0x7f800000)
	case exp != 0:
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal: normalise the mantissa.
	e := uint32(113)
	for mant&0x400 == 0 {
		mant <<= 1
		e--
	}
	return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
}

// FP32ToFP16 narrows to binary16 rounding to nearest, ties to even, as
// ggml's GGML_FP32_TO_FP16. Overflow gives ±Inf; NaN gives a quiet NaN
// (0x7e00 with the sign), as ggml's software conversion does.
func FP32ToFP16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 112 // rebias 127 -> 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign
		}
		m := mant | 0x800000
		shift := uint32(14 - e)
		q := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && q&1 == 1) {
			q++ // may carry into the smallest normal: still the right encoding
		}
		return sign | uint16(q)
	}
	q := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && q&1 == 1) {
		q++ // a carry out of the mantissa rounds up to the next binade or Inf
	}
	return sign | uint16(q)
}

// BF16ToFP32 widens a bfloat16 value exactly.
func BF16ToFP32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// FP32ToBF16 narrows to bfloat16 rounding to nearest even; NaN stays a quiet
// NaN, as ggml's GGML_FP32_TO_BF16.
func FP32ToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 {
		return uint16(u>>16) | 64
	}
	return uint16((u + (0x7fff + (u>>16)&1)) >> 16)
}

// DecodeF16 converts little-endian binary16 values in src to dst.
// len(src) must be 2*len(dst).
func DecodeF16(dst []float32, src []byte) { DecodeF16Finite(dst, src) }

// DecodeF16Finite is DecodeF16 that also reports whether every value was
// finite (no NaN or ±Inf), at little extra cost: a caller that must refuse
// non-finite values then needs no pass of its own over finite data.
func DecodeF16Finite(dst []float32, src []byte) bool {
	src = src[:2*len(dst)]
	i, finite := decodeF16Wide(dst, src) // F16C at AVX2 and above
	if i == len(dst) {
		return finite
	}
	for j := 2 * i; j < len(src); j += 2 {
		if src[j+1]&0x7c == 0x7c { // the high byte holds the exponent
			finite = false
			break
		}
	}
	if simd.Current() < simd.SSE2 {
		decodeF16Scalar(dst[i:], src[2*i:])
		return finite
	}
	for {
		// The vector loop converts groups of 8 normal values and stops at
		// the first group with a zero, subnormal, Inf or NaN.
		i += decodeF16Normal(dst[i:], src[2*i:])
		if len(dst)-i < 8 {
			break
		}
		decodeF16Scalar(dst[i:i+8], src[2*i:2*i+16])
		i += 8
	}
	decodeF16Scalar(dst[i:], src[2*i:])
	return finite
}

// decodeF16Scalar is DecodeF16 one value at a time.
func decodeF16Scalar(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	for i := range dst {
		h := uint32(src[2*i]) | uint32(src[2*i+1])<<8
		em := h & 0x7fff
		if em-0x400 < 0x7800 { // normal: rebias the exponent by 112
			dst[i] = math.Float32frombits((h&0x8000)<<16 | (em<<13 + 112<<23))
		} else { // zero, subnormal, Inf, NaN
			dst[i] = f16Table[h]
		}
	}
}

// f16Table maps every binary16 bit pattern to its float32 value; a lookup is
// faster than decoding the fields.
var f16Table = func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		t[i] = FP16ToFP32(uint16(i))
	}
	return &t
}()

// DecodeBF16 converts little-endian bfloat16 values in src to dst.
func DecodeBF16(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	n := decodeBF16Wide(dst, src) // AVX2
	dst, src = dst[n:], src[2*n:]
	for i := range dst {
		dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
	}
}

// DecodeF32 converts little-endian float32 values in src to dst.
func DecodeF32(dst []float32, src []byte) {
	src = src[:4*len(dst)]
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

// EncodeF16 writes dst as little-endian binary16; len(dst) = 2*len(src).
func EncodeF16(dst []byte, src []float32) {
	dst = dst[:2*len(src)]
	for len(src) >= 8 && simd.Current() >= simd.AVX2 {
		n := encodeF16Wide(dst, src) // F16C, up to a group of 8 with a NaN
		dst, src = dst[2*n:], src[n:]
		if len(src) >= 8 { // that group
			encodeF16Go(dst[:16], src[:8])
			dst, src = dst[16:], src[8:]
		}
	}
	encodeF16Go(dst, src)
}

// encodeF16Go is EncodeF16 one value at a time.
func encodeF16Go(dst []byte, src []float32) {
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], FP32ToFP16(v))
	}
}

// EncodeBF16 writes dst as little-endian bfloat16; len(dst) = 2*len(src).
func EncodeBF16(dst []byte, src []float32) {
	dst = dst[:2*len(src)]
	for i, v := range src {
		binary.LittleEndian.PutUint16(dst[2*i:], FP32ToBF16(v))
	}
}

// EncodeF32 writes dst as little-endian float32; len(dst) = 4*len(src).
func EncodeF32(dst []byte, src []float32) {
	dst = dst[:4*len(src)]
	for i, v := range src {
		binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
	}
}

package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Conversions between float32 and the narrow float formats that appear in
// checkpoints. All narrowing conversions round to nearest, ties to even,
// like torch's Tensor.to.

// F16ToF32 widens an IEEE 754 binary16 value exactly.
func F16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h & 0x3ff)
	switch {
	case exp == 0x1f: // Inf or NaN; keep the payload's top bits.
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0:
		return math.Float32frombits(sign | (exp+112)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal half: mant * 2^-24, exact in float32.
	f := float32(mant) * (1.0 / (1 << 24))
	if sign != 0 {
		f = -f
	}
	return f
}

// F32ToF16 narrows to binary16, rounding to nearest even. Values too large
// become ±Inf; NaN stays a (quiet) NaN with its sign.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant != 0 {
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Result is subnormal (or zero): value = m * 2^-24 with the
		// implicit bit restored; shift right by 14-e bits plus 13.
		if e < -10 {
			return sign // rounds to zero (below half of the smallest subnormal)
		}
		m := mant | 0x800000
		shift := uint32(14 - e)
		q := m >> shift
		rem := m & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || (rem == half && q&1 == 1) {
			q++
		}
		return sign | uint16(q)
	}
	q := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && q&1 == 1) {
		q++ // may carry into the exponent, up to Inf: that is correct rounding
	}
	return sign | uint16(q)
}

// BF16ToF32 widens a bfloat16 value exactly.
func BF16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// F32ToBF16 narrows to bfloat16, rounding to nearest even; NaN stays a quiet
// NaN with its sign.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// FP8 E4M3 ("e4m3fn", torch.float8_e4m3fn): 1 sign bit, 4 exponent bits with
// bias 7, 3 mantissa bits, no infinities, NaN is S.1111.111, largest finite
// value 0x7e = 1.75·2^8 = 448, smallest subnormal 0x01 = 2^-9.

// F8E4M3Max is the largest finite FP8 E4M3 value.
const F8E4M3Max = 448

var f8e4m3Table = func() (t [256]float32) {
	for i := range t {
		s, e, m := i>>7, (i>>3)&0xf, i&7
		var v float32
		switch {
		case e == 0xf && m == 7:
			v = float32(math.NaN())
		case e == 0:
			v = float32(m) / 512
		default:
			v = float32(8+m) / 8 * float32(math.Ldexp(1, e-7))
		}
		if s == 1 {
			v = -v
		}
		t[i] = v
	}
	return t
}()

// F8E4M3ToF32 widens an FP8 E4M3 value exactly.
func F8E4M3ToF32(b uint8) float32 { return f8e4m3Table[b] }

// F32ToF8E4M3 narrows to FP8 E4M3, rounding to nearest even and saturating:
// magnitudes ≥ 448, including ±Inf, become ±448 (0x7e/0xfe); NaN becomes
// 0x7f (or 0xff for a negative NaN). Saturation is what compressed-tensors
// gets by clamping to ±448 before its cast.
func F32ToF8E4M3(f float32) uint8 {
	b := math.Float32bits(f)
	sign := uint8(b>>24) & 0x80
	a := b & 0x7fffffff
	switch {
	case a >= 0x43e00000: // ≥ 448, Inf or NaN
		if a > 0x7f800000 {
			return sign | 0x7f
		}
		return sign | 0x7e
	case a >= 0x3c800000: // ≥ 2^-6: a normal result
		// Round the float32 mantissa to 3 bits, half to even; a carry
		// moves into the exponent as it should, and cannot pass 448.
		a += 0x7ffff + (a>>20)&1
		// (exp−127+7)<<3 | top 3 mantissa bits = (a>>20) − (120<<3).
		return sign | uint8(a>>20-120<<3)
	}
	// Subnormal range: multiples of 2^-9. Adding 2^14, whose float32 ulp is
	// 2^-9, rounds to one half to even; 8 is the smallest normal (0x08),
	// which the code layout gives for free.
	r := math.Float32frombits(a) + 16384
	return sign | uint8(math.Float32bits(r)-0x46800000)
}

// DecodeFloat32 converts len(dst) elements of type dt from little-endian
// src into dst. src must hold at least len(dst)*dt.Size() bytes.
func DecodeFloat32(dst []float32, src []byte, dt DType) error {
	n := len(dst)
	if int64(len(src)) < int64(n)*dt.Size() {
		return fmt.Errorf("safetensors: decode %s: %d bytes for %d elements", dt, len(src), n)
	}
	switch dt {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case BF16:
		src = src[:2*n]
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(src[2*i])<<16 | uint32(src[2*i+1])<<24)
		}
	case F16:
		for i := range dst {
			dst[i] = F16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
		}
	case F8_E4M3:
		for i := range dst {
			dst[i] = f8e4m3Table[src[i]]
		}
	default:
		return fmt.Errorf("safetensors: decode: %s is not a float type", dt)
	}
	return nil
}

// EncodeFloat32 converts src to type dt (F32, F16, BF16, F64 or F8_E4M3) into
// little-endian dst, which must hold len(src)*dt.Size() bytes.
func EncodeFloat32(dst []byte, src []float32, dt DType) error {
	if int64(len(dst)) < int64(len(src))*dt.Size() {
		return fmt.Errorf("safetensors: encode %s: %d bytes for %d elements", dt, len(dst), len(src))
	}
	switch dt {
	case F32:
		for i, v := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case BF16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], F32ToBF16(v))
		}
	case F16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], F32ToF16(v))
		}
	case F64:
		for i, v := range src {
			binary.LittleEndian.PutUint64(dst[8*i:], math.Float64bits(float64(v)))
		}
	case F8_E4M3:
		for i, v := range src {
			dst[i] = F32ToF8E4M3(v)
		}
	default:
		return fmt.Errorf("safetensors: encode: %s is not a float type", dt)
	}
	return nil
}

// FirstNonFinite returns the index of the first NaN or ±Inf among the
// little-endian elements of type dt in b, or -1 if there is none or dt is
// not a float type (F16, BF16, F32, F64, F8_E4M3, F8_E5M2). It looks at the
// bits only (all exponent bits set; for E4M3, which has no infinities, the
// NaN pattern S.1111.111), so it is cheap enough to run on every tensor
// copied unchanged.
func FirstNonFinite(b []byte, dt DType) int {
	le := binary.LittleEndian
	switch dt {
	case F32:
		for i := 0; i+4 <= len(b); i += 4 {
			if le.Uint32(b[i:])&0x7f800000 == 0x7f800000 {
				return i / 4
			}
		}
	case F64:
		for i := 0; i+8 <= len(b); i += 8 {
			if le.Uint64(b[i:])&0x7ff0000000000000 == 0x7ff0000000000000 {
				return i / 8
			}
		}
	case F16:
		for i := 0; i+2 <= len(b); i += 2 {
			if le.Uint16(b[i:])&0x7c00 == 0x7c00 {
				return i / 2
			}
		}
	case BF16:
		for i := 0; i+2 <= len(b); i += 2 {
			if le.Uint16(b[i:])&0x7f80 == 0x7f80 {
				return i / 2
			}
		}
	case F8_E4M3:
		for i, v := range b {
			if v&0x7f == 0x7f {
				return i
			}
		}
	case F8_E5M2:
		for i, v := range b {
			if v&0x7c == 0x7c {
				return i
			}
		}
	}
	return -1
}

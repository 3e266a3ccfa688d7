//go:build !purego

#include "textflag.h"

DATA q8c<>+0(SB)/4, $0x7f800000   // exponent mask
DATA q8c<>+4(SB)/4, $0x7fffffff   // abs mask
DATA q8c<>+8(SB)/4, $0x80000000   // sign mask
DATA q8c<>+12(SB)/4, $0x3f800000  // 1.0
DATA q8c<>+16(SB)/4, $0x3f000000  // 0.5
DATA q8c<>+20(SB)/4, $0x42fe0000  // 127.0
DATA q8c<>+24(SB)/4, $0x00800000  // FLT_MIN, the smallest normal
GLOBL q8c<>(SB), RODATA|NOPTR, $28

DATA q8perm<>+0(SB)/4, $0
DATA q8perm<>+4(SB)/4, $4
DATA q8perm<>+8(SB)/4, $1
DATA q8perm<>+12(SB)/4, $5
DATA q8perm<>+16(SB)/4, $2
DATA q8perm<>+20(SB)/4, $6
DATA q8perm<>+24(SB)/4, $3
DATA q8perm<>+28(SB)/4, $7
GLOBL q8perm<>(SB), RODATA|NOPTR, $32

// func quantizeQ8_0AVX2(dst *byte, src *float32, nb int) int
// quantizeQ8_0 for up to nb blocks; it stops before the first block that
// holds a NaN or ±Inf or whose scale is subnormal, and returns the number
// of blocks done.
TEXT ·quantizeQ8_0AVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ nb+16(FP), CX
	XORQ AX, AX
	VBROADCASTSS q8c<>+0(SB), Y10  // exponent mask
	VBROADCASTSS q8c<>+4(SB), Y11  // abs mask
	VBROADCASTSS q8c<>+8(SB), Y12  // sign mask
	VBROADCASTSS q8c<>+12(SB), Y13 // 1
	VBROADCASTSS q8c<>+16(SB), Y14 // 0.5
	VMOVDQU q8perm<>(SB), Y15
	TESTQ CX, CX
	JZ q8done

q8loop:
	VMOVUPS 0(SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3

	// Any element with all exponent bits set stops the loop.
	VANDPS Y10, Y0, Y4
	VPCMPEQD Y10, Y4, Y4
	VANDPS Y10, Y1, Y5
	VPCMPEQD Y10, Y5, Y5
	VPOR Y5, Y4, Y4
	VANDPS Y10, Y2, Y5
	VPCMPEQD Y10, Y5, Y5
	VPOR Y5, Y4, Y4
	VANDPS Y10, Y3, Y5
	VPCMPEQD Y10, Y5, Y5
	VPOR Y5, Y4, Y4
	VPTEST Y4, Y4
	JNZ q8done

	// amax = max |x| (order-free for finite values).
	VANDPS Y11, Y0, Y4
	VANDPS Y11, Y1, Y5
	VMAXPS Y5, Y4, Y4
	VANDPS Y11, Y2, Y5
	VMAXPS Y5, Y4, Y4
	VANDPS Y11, Y3, Y5
	VMAXPS Y5, Y4, Y4
	VEXTRACTF128 $1, Y4, X5
	VMAXPS X5, X4, X4
	VPERMILPS $0x4e, X4, X5
	VMAXPS X5, X4, X4
	VPERMILPS $0xb1, X4, X5
	VMAXPS X5, X4, X4

	// d = amax/127; id = d != 0 ? 1/d : 0.
	VMOVSS q8c<>+20(SB), X5
	VDIVSS X5, X4, X6         // d
	// A subnormal d has too few bits for 1/d to bring amax back to 127
	// (x*id may round to 128, which the C conversion wraps and the vector
	// pack saturates): such blocks go to the Go code.
	VMOVSS q8c<>+24(SB), X9
	VUCOMISS X9, X6
	JAE q8normal
	VXORPS X9, X9, X9
	VUCOMISS X9, X6
	JNE q8done

q8normal:
	VDIVSS X6, X13, X7        // 1/d
	VXORPS X8, X8, X8
	VCMPSS $4, X8, X6, X8     // d != 0
	VANDPS X8, X7, X7
	VCVTPS2PH $0, X6, X9      // fp16(d), round to nearest even
	VMOVD X9, R8
	MOVW R8, 0(DI)
	VBROADCASTSS X7, Y7

	// q = roundf(x*id): truncate, then step away from zero on |frac| ≥ 0.5.
#define Q8ROUND(R) \
	VMULPS Y7, R, R \
	VROUNDPS $3, R, Y8 \
	VSUBPS Y8, R, Y9 \
	VANDPS Y11, Y9, Y9 \
	VCMPPS $13, Y14, Y9, Y9 \
	VANDPS Y12, R, R \
	VORPS Y13, R, R \
	VANDPS Y9, R, R \
	VADDPS R, Y8, R \
	VCVTTPS2DQ R, R

	Q8ROUND(Y0)
	Q8ROUND(Y1)
	Q8ROUND(Y2)
	Q8ROUND(Y3)
#undef Q8ROUND

	VPACKSSDW Y1, Y0, Y0
	VPACKSSDW Y3, Y2, Y2
	VPACKSSWB Y2, Y0, Y0
	VPERMD Y0, Y15, Y0
	VMOVDQU Y0, 2(DI)

	ADDQ $128, SI
	ADDQ $34, DI
	INCQ AX
	CMPQ AX, CX
	JLT q8loop

q8done:
	MOVQ AX, ret+24(FP)
	VZEROUPPER
	RET

// func dequantizeQ8_0AVX2(dst *float32, src *byte, nb int)
// dequantizeQ8_0 for nb blocks: float32(q)*d, d widened by VCVTPH2PS.
TEXT ·dequantizeQ8_0AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ nb+16(FP), CX
	TESTQ CX, CX
	JZ dq8done

dq8loop:
	MOVWLZX 0(SI), R8
	VMOVD R8, X7
	VCVTPH2PS X7, X7
	VBROADCASTSS X7, Y7
	VPMOVSXBD 2(SI), Y0
	VPMOVSXBD 10(SI), Y1
	VPMOVSXBD 18(SI), Y2
	VPMOVSXBD 26(SI), Y3
	VCVTDQ2PS Y0, Y0
	VCVTDQ2PS Y1, Y1
	VCVTDQ2PS Y2, Y2
	VCVTDQ2PS Y3, Y3
	VMULPS Y7, Y0, Y0
	VMULPS Y7, Y1, Y1
	VMULPS Y7, Y2, Y2
	VMULPS Y7, Y3, Y3
	VMOVUPS Y0, 0(DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ $34, SI
	ADDQ $128, DI
	DECQ CX
	JNZ dq8loop

dq8done:
	VZEROUPPER
	RET

// func decodeF16AVX2(dst *float32, src *byte, n int)
// DecodeF16 for n values (a multiple of 16) with F16C's VCVTPH2PS, exact
// for every binary16 pattern (a NaN keeps its payload and comes out quiet).
TEXT ·decodeF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	JZ f16done

f16loop:
	VCVTPH2PS 0(SI), Y0
	VCVTPH2PS 16(SI), Y1
	VMOVUPS Y0, 0(DI)
	VMOVUPS Y1, 32(DI)
	ADDQ $32, SI
	ADDQ $64, DI
	DECQ CX
	JNZ f16loop

f16done:
	VZEROUPPER
	RET

DATA q4c<>+0(SB)/4, $0xc1000000   // -8.0
DATA q4c<>+4(SB)/4, $0x41080000   // 8.5
DATA q4c<>+8(SB)/4, $15
GLOBL q4c<>(SB), RODATA|NOPTR, $12

// func quantizeQ4_0AVX2(dst *byte, src *float32, nb int) int
// quantizeQ4_0 for up to nb blocks; it stops before the first block that
// holds a NaN or ±Inf or whose scale is subnormal, and returns the number
// of blocks done.
TEXT ·quantizeQ4_0AVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ nb+16(FP), CX
	XORQ AX, AX
	VBROADCASTSS q8c<>+0(SB), Y10  // exponent mask
	VBROADCASTSS q8c<>+4(SB), Y11  // abs mask
	VBROADCASTSS q4c<>+4(SB), Y12  // 8.5
	VPBROADCASTD q4c<>+8(SB), Y13  // 15
	VBROADCASTSS q8c<>+12(SB), Y14 // 1
	TESTQ CX, CX
	JZ q4done

q4loop:
	VMOVUPS 0(SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3

	VANDPS Y10, Y0, Y4
	VPCMPEQD Y10, Y4, Y4
	VANDPS Y10, Y1, Y5
	VPCMPEQD Y10, Y5, Y5
	VPOR Y5, Y4, Y4
	VANDPS Y10, Y2, Y5
	VPCMPEQD Y10, Y5, Y5
	VPOR Y5, Y4, Y4
	VANDPS Y10, Y3, Y5
	VPCMPEQD Y10, Y5, Y5
	VPOR Y5, Y4, Y4
	VPTEST Y4, Y4
	JNZ q4done

	// amax = max |x|, then the first element whose |x| is amax: its
	// signed value is ggml's max (the first one wins ties, as with <).
	VANDPS Y11, Y0, Y4
	VANDPS Y11, Y1, Y5
	VANDPS Y11, Y2, Y6
	VANDPS Y11, Y3, Y7
	VMAXPS Y5, Y4, Y8
	VMAXPS Y6, Y8, Y8
	VMAXPS Y7, Y8, Y8
	VEXTRACTF128 $1, Y8, X9
	VMAXPS X9, X8, X8
	VPERMILPS $0x4e, X8, X9
	VMAXPS X9, X8, X8
	VPERMILPS $0xb1, X8, X9
	VMAXPS X9, X8, X8
	// All zero (±0): ggml's scan never moves off its +0 start.
	VXORPS X9, X9, X9
	VUCOMISS X9, X8
	JNE q4find
	VXORPS X4, X4, X4
	JMP q4havemax

q4find:
	VBROADCASTSS X8, Y8
	VCMPPS $0, Y8, Y4, Y4
	VMOVMSKPS Y4, R8
	VCMPPS $0, Y8, Y5, Y5
	VMOVMSKPS Y5, R9
	SHLQ $8, R9
	ORQ R9, R8
	VCMPPS $0, Y8, Y6, Y6
	VMOVMSKPS Y6, R9
	SHLQ $16, R9
	ORQ R9, R8
	VCMPPS $0, Y8, Y7, Y7
	VMOVMSKPS Y7, R9
	SHLQ $24, R9
	ORQ R9, R8
	XORQ R9, R9
	BSFQ R8, R9            // amax is some |x|, so the mask is not empty
	VMOVSS (SI)(R9*4), X4  // max

q4havemax:

	// d = max/-8; a subnormal nonzero d goes to the Go code.
	VMOVSS q4c<>+0(SB), X5
	VDIVSS X5, X4, X6      // d
	VANDPS X11, X6, X9     // |d|
	VMOVSS q8c<>+24(SB), X5
	VUCOMISS X5, X9
	JAE q4normal
	VXORPS X5, X5, X5
	VUCOMISS X5, X9
	JNE q4done

q4normal:
	VDIVSS X6, X14, X7     // 1/d
	VXORPS X8, X8, X8
	VCMPSS $4, X8, X6, X8  // d != 0
	VANDPS X8, X7, X7
	VCVTPS2PH $0, X6, X9
	VMOVD X9, R8
	MOVW R8, 0(DI)
	VBROADCASTSS X7, Y7

	// q = min(15, (int)(x*id + 8.5)); in range for a normal d.
#define Q4Q(R) \
	VMULPS Y7, R, R \
	VADDPS Y12, R, R \
	VCVTTPS2DQ R, R \
	VPMINSD Y13, R, R

	Q4Q(Y0)
	Q4Q(Y1)
	Q4Q(Y2)
	Q4Q(Y3)
#undef Q4Q

	// byte j = q[j] | q[j+16]<<4, j < 16.
	VPSLLD $4, Y2, Y2
	VPOR Y2, Y0, Y0        // j = 0..7
	VPSLLD $4, Y3, Y3
	VPOR Y3, Y1, Y1        // j = 8..15
	VPACKUSDW Y1, Y0, Y0   // words 0-3 8-11 | 4-7 12-15
	VPERMQ $0xd8, Y0, Y0   // words 0-15 in order
	VEXTRACTI128 $1, Y0, X1
	VPACKUSWB X1, X0, X0
	VMOVDQU X0, 2(DI)

	ADDQ $128, SI
	ADDQ $18, DI
	INCQ AX
	CMPQ AX, CX
	JLT q4loop

q4done:
	MOVQ AX, ret+24(FP)
	VZEROUPPER
	RET

DATA q4d<>+0(SB)/4, $15
DATA q4d<>+4(SB)/4, $8
GLOBL q4d<>(SB), RODATA|NOPTR, $8

// func dequantizeQ4_0AVX2(dst *float32, src *byte, nb int)
// dequantizeQ4_0 for nb blocks: float32(q−8)*d, low nibbles first.
TEXT ·dequantizeQ4_0AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ nb+16(FP), CX
	VPBROADCASTD q4d<>+0(SB), Y14
	VPBROADCASTD q4d<>+4(SB), Y15
	TESTQ CX, CX
	JZ dq4done

dq4loop:
	MOVWLZX 0(SI), R8
	VMOVD R8, X7
	VCVTPH2PS X7, X7
	VBROADCASTSS X7, Y7
	VPMOVZXBD 2(SI), Y0    // bytes 0-7
	VPMOVZXBD 10(SI), Y1   // bytes 8-15
	VPSRLD $4, Y0, Y2      // high nibbles: values 16-23
	VPSRLD $4, Y1, Y3      // 24-31
	VPAND Y14, Y0, Y0
	VPAND Y14, Y1, Y1
	VPSUBD Y15, Y0, Y0
	VPSUBD Y15, Y1, Y1
	VPSUBD Y15, Y2, Y2
	VPSUBD Y15, Y3, Y3
	VCVTDQ2PS Y0, Y0
	VCVTDQ2PS Y1, Y1
	VCVTDQ2PS Y2, Y2
	VCVTDQ2PS Y3, Y3
	VMULPS Y7, Y0, Y0
	VMULPS Y7, Y1, Y1
	VMULPS Y7, Y2, Y2
	VMULPS Y7, Y3, Y3
	VMOVUPS Y0, 0(DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ $18, SI
	ADDQ $128, DI
	DECQ CX
	JNZ dq4loop

dq4done:
	VZEROUPPER
	RET

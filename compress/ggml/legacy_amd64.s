//go:build !purego

#include "textflag.h"

DATA q8c<>+0(SB)/4, $0x7f800000   // exponent mask
DATA q8c<>+4(SB)/4, $0x7fffffff   // abs mask
DATA q8c<>+8(SB)/4, $0x80000000   // sign mask
DATA q8c<>+12(SB)/4, $0x3f800000  // 1.0
DATA q8c<>+16(SB)/4, $0x3effffff  // nextafter(0.5, 0)
DATA q8c<>+20(SB)/4, $0x42fe0000  // 127.0
DATA q8c<>+24(SB)/4, $0x00800000  // FLT_MIN, the smallest normal
DATA q8c<>+28(SB)/4, $0x7f7fffff  // FLT_MAX
GLOBL q8c<>(SB), RODATA|NOPTR, $32

DATA q8perm<>+0(SB)/4, $0
DATA q8perm<>+4(SB)/4, $4
DATA q8perm<>+8(SB)/4, $1
DATA q8perm<>+12(SB)/4, $5
DATA q8perm<>+16(SB)/4, $2
DATA q8perm<>+20(SB)/4, $6
DATA q8perm<>+24(SB)/4, $3
DATA q8perm<>+28(SB)/4, $7
GLOBL q8perm<>(SB), RODATA|NOPTR, $32

// QMAX8: for the eight blocks at SI, the bits of each one's max |x| in
// lane b of Y0 (for non-negative floats the integer order is the float
// order, and a NaN or ±Inf is above every finite value). Uses Y0-Y9; Y11
// holds the abs mask.
#define QMAXBLOCK(in, M) \
	VANDPS in(SI), Y11, M \
	VANDPS in+32(SI), Y11, Y8 \
	VPMAXSD Y8, M, M \
	VANDPS in+64(SI), Y11, Y8 \
	VPMAXSD Y8, M, M \
	VANDPS in+96(SI), Y11, Y8 \
	VPMAXSD Y8, M, M

#define QMAX8 \
	QMAXBLOCK(0, Y0) \
	QMAXBLOCK(128, Y1) \
	QMAXBLOCK(256, Y2) \
	QMAXBLOCK(384, Y3) \
	QMAXBLOCK(512, Y4) \
	QMAXBLOCK(640, Y5) \
	QMAXBLOCK(768, Y6) \
	QMAXBLOCK(896, Y7) \
	VUNPCKLPS Y1, Y0, Y8 \
	VUNPCKHPS Y1, Y0, Y9 \
	VPMAXSD Y9, Y8, Y0 \
	VUNPCKLPS Y3, Y2, Y8 \
	VUNPCKHPS Y3, Y2, Y9 \
	VPMAXSD Y9, Y8, Y2 \
	VUNPCKLPS Y5, Y4, Y8 \
	VUNPCKHPS Y5, Y4, Y9 \
	VPMAXSD Y9, Y8, Y4 \
	VUNPCKLPS Y7, Y6, Y8 \
	VUNPCKHPS Y7, Y6, Y9 \
	VPMAXSD Y9, Y8, Y6 \
	VSHUFPS $0x44, Y2, Y0, Y8 \
	VSHUFPS $0xee, Y2, Y0, Y9 \
	VPMAXSD Y9, Y8, Y0 \
	VSHUFPS $0x44, Y6, Y4, Y8 \
	VSHUFPS $0xee, Y6, Y4, Y9 \
	VPMAXSD Y9, Y8, Y4 \
	VPERM2F128 $0x20, Y4, Y0, Y8 \
	VPERM2F128 $0x31, Y4, Y0, Y9 \
	VPMAXSD Y9, Y8, Y0

// func quantizeQ8_0AVX2(dst *byte, src *float32, nb int) int
// quantizeQ8_0 for up to nb blocks; it stops before the first block that
// holds a NaN or ±Inf or whose scale is subnormal, and returns the number
// of blocks done. Eight blocks at a time, their maxima, scales and
// inverse scales are one vector each (one division for eight blocks); a
// group of eight with a block the group code does not take, and the last
// blocks, go one at a time.
TEXT ·quantizeQ8_0AVX2(SB), NOSPLIT, $32-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ nb+16(FP), CX
	XORQ AX, AX
	VBROADCASTSS q8c<>+0(SB), Y10  // exponent mask
	VBROADCASTSS q8c<>+4(SB), Y11  // abs mask
	VBROADCASTSS q8c<>+8(SB), Y12  // sign mask
	VBROADCASTSS q8c<>+12(SB), Y13 // 1
	VBROADCASTSS q8c<>+16(SB), Y14 // nextafter(0.5, 0)
	VMOVDQU q8perm<>(SB), Y15

	// q = roundf(v) for v = x*id is trunc(v + copysign(0.49999997, v)),
	// with 0.49999997 = nextafter(0.5, 0): the one add (to nearest even)
	// never carries a fraction below 0.5 up to the next integer and always
	// carries one of 0.5 or more (checked for every float32 of magnitude
	// below 3e9 against roundf; TestRoundHalfAwayByAdd checks it too).
#define Q8ROUND(R) \
	VMULPS Y7, R, R \
	VANDPS Y12, R, Y8 \
	VORPS Y14, Y8, Y8 \
	VADDPS Y8, R, R \
	VCVTTPS2DQ R, R

	// The 32 quants of a block from Y0..Y3, into out(DI).
#define Q8STORE(out) \
	Q8ROUND(Y0) \
	Q8ROUND(Y1) \
	Q8ROUND(Y2) \
	Q8ROUND(Y3) \
	VPACKSSDW Y1, Y0, Y0 \
	VPACKSSDW Y3, Y2, Y2 \
	VPACKSSWB Y2, Y0, Y0 \
	VPERMD Y0, Y15, Y0 \
	VMOVDQU Y0, out(DI)

	// Block b of a group: its inverse scale from the stack, its quants.
#define Q8GROUPBLOCK(b) \
	VBROADCASTSS (4*b)(SP), Y7 \
	VMOVUPS (128*b)(SI), Y0 \
	VMOVUPS (128*b+32)(SI), Y1 \
	VMOVUPS (128*b+64)(SI), Y2 \
	VMOVUPS (128*b+96)(SI), Y3 \
	Q8STORE(34*b+2)

q8group:
	MOVQ CX, R9
	SUBQ AX, R9
	JZ q8done
	CMPQ R9, $8
	JLT q8single

	QMAX8 // amax of blocks 0..7

	// d = amax/127. A NaN or ±Inf, or a subnormal d (0 < d < FLT_MIN),
	// sends the group to the one-block code, which stops at that block.
	VPBROADCASTD q8c<>+28(SB), Y8 // FLT_MAX
	VPCMPGTD Y8, Y0, Y9           // not finite
	VBROADCASTSS q8c<>+20(SB), Y8
	VDIVPS Y8, Y0, Y1             // d
	VPBROADCASTD q8c<>+24(SB), Y8
	VPCMPGTD Y1, Y8, Y2           // d < FLT_MIN
	VPXOR Y3, Y3, Y3
	VPCMPEQD Y3, Y1, Y4           // d == 0
	VPANDN Y2, Y4, Y2
	VPOR Y2, Y9, Y9
	VPTEST Y9, Y9
	JNZ q8group1

	// id = d != 0 ? 1/d : 0, kept on the stack for the blocks.
	VDIVPS Y1, Y13, Y2
	VPANDN Y2, Y4, Y2
	VMOVUPS Y2, 0(SP)
	// fp16(d), round to nearest even, into each block's first two bytes.
	VCVTPS2PH $0, Y1, X5
	VPEXTRW $0, X5, 0(DI)
	VPEXTRW $1, X5, 34(DI)
	VPEXTRW $2, X5, 68(DI)
	VPEXTRW $3, X5, 102(DI)
	VPEXTRW $4, X5, 136(DI)
	VPEXTRW $5, X5, 170(DI)
	VPEXTRW $6, X5, 204(DI)
	VPEXTRW $7, X5, 238(DI)

	Q8GROUPBLOCK(0)
	Q8GROUPBLOCK(1)
	Q8GROUPBLOCK(2)
	Q8GROUPBLOCK(3)
	Q8GROUPBLOCK(4)
	Q8GROUPBLOCK(5)
	Q8GROUPBLOCK(6)
	Q8GROUPBLOCK(7)

	ADDQ $1024, SI
	ADDQ $272, DI
	ADDQ $8, AX
	JMP q8group

q8group1:
	MOVQ $8, R9

q8single: // R9 (≥ 1) blocks one at a time, then back to the groups
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

	Q8STORE(2)

	ADDQ $128, SI
	ADDQ $34, DI
	INCQ AX
	DECQ R9
	JNZ q8single
	JMP q8group
#undef Q8ROUND
#undef Q8STORE
#undef Q8GROUPBLOCK

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

DATA f16exp<>+0(SB)/2, $0x7c00
GLOBL f16exp<>(SB), RODATA|NOPTR, $2

// func decodeF16AVX2(dst *float32, src *byte, n int) bool
// DecodeF16 for n values (a multiple of 16) with F16C's VCVTPH2PS, exact
// for every binary16 pattern (a NaN keeps its payload and comes out quiet).
// It reports whether every value was finite (no exponent of all ones).
TEXT ·decodeF16AVX2(SB), NOSPLIT, $0-25
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VPBROADCASTW f16exp<>(SB), Y3
	VPXOR Y4, Y4, Y4       // some exponent was all ones
	SHRQ $4, CX
	JZ f16done

f16loop:
	VMOVDQU 0(SI), Y2
	VCVTPH2PS X2, Y0
	VEXTRACTI128 $1, Y2, X1
	VCVTPH2PS X1, Y1
	VPAND Y3, Y2, Y2
	VPCMPEQW Y3, Y2, Y2
	VPOR Y2, Y4, Y4
	VMOVUPS Y0, 0(DI)
	VMOVUPS Y1, 32(DI)
	ADDQ $32, SI
	ADDQ $64, DI
	DECQ CX
	JNZ f16loop

f16done:
	VPTEST Y4, Y4
	SETEQ ret+24(FP)
	VZEROUPPER
	RET

// func decodeBF16AVX2(dst *float32, src *byte, n int)
// DecodeBF16 for n values (a multiple of 16): each 16-bit pattern becomes
// the high half of a float32, exact for every pattern.
TEXT ·decodeBF16AVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	JZ bf16done

bf16loop:
	VPMOVZXWD 0(SI), Y0
	VPMOVZXWD 16(SI), Y1
	VPSLLD $16, Y0, Y0
	VPSLLD $16, Y1, Y1
	VMOVDQU Y0, 0(DI)
	VMOVDQU Y1, 32(DI)
	ADDQ $32, SI
	ADDQ $64, DI
	DECQ CX
	JNZ bf16loop

bf16done:
	VZEROUPPER
	RET

// func encodeF16AVX2(dst *byte, src *float32, n int) int
// EncodeF16 for up to n values (a multiple of 8) with F16C's VCVTPS2PH,
// rounding to nearest even as FP32ToFP16 does for every non-NaN value; it
// stops before the first group of 8 that holds a NaN (whose payload
// VCVTPS2PH keeps and ggml does not) and returns the number of values done.
TEXT ·encodeF16AVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	XORQ AX, AX
	TESTQ CX, CX
	JZ ef16done

ef16loop:
	VMOVUPS 0(SI), Y0
	VCMPPS $3, Y0, Y0, Y1  // unordered: NaN
	VPTEST Y1, Y1
	JNZ ef16done
	VCVTPS2PH $0, Y0, X2
	VMOVDQU X2, 0(DI)
	ADDQ $32, SI
	ADDQ $16, DI
	ADDQ $8, AX
	DECQ CX
	JNZ ef16loop

ef16done:
	MOVQ AX, ret+24(FP)
	VZEROUPPER
	RET

// The NaN/±Inf test of a block in Y0-Y3 (exponent mask in Y10): Y4 is
// nonzero when some element has all exponent bits set.
#define NONFINITE4 \
	VANDPS Y10, Y0, Y4 \
	VPCMPEQD Y10, Y4, Y4 \
	VANDPS Y10, Y1, Y5 \
	VPCMPEQD Y10, Y5, Y5 \
	VPOR Y5, Y4, Y4 \
	VANDPS Y10, Y2, Y5 \
	VPCMPEQD Y10, Y5, Y5 \
	VPOR Y5, Y4, Y4 \
	VANDPS Y10, Y3, Y5 \
	VPCMPEQD Y10, Y5, Y5 \
	VPOR Y5, Y4, Y4 \
	VPTEST Y4, Y4

// q = min(clamp, (int)(R·id + add)) for id in Y7, add in Y12, clamp in Y13.
#define QTRUNC(R) \
	VMULPS Y7, R, R \
	VADDPS Y12, R, R \
	VCVTTPS2DQ R, R \
	VPMINSD Y13, R, R

// The 32 codes in Y0-Y3 (int32, elements 0-7, 8-15, 16-23, 24-31): bit 4
// of each into R8 (bit j for element j), then byte j = (q[j]&15) |
// (q[j+16]&15)<<4, j < 16, into X0. Y14 holds 15 in every lane.
#define QHIGHBITS \
	VPSLLD $27, Y0, Y4 \
	VMOVMSKPS Y4, R8 \
	VPSLLD $27, Y1, Y4 \
	VMOVMSKPS Y4, R9 \
	SHLQ $8, R9 \
	ORQ R9, R8 \
	VPSLLD $27, Y2, Y4 \
	VMOVMSKPS Y4, R9 \
	SHLQ $16, R9 \
	ORQ R9, R8 \
	VPSLLD $27, Y3, Y4 \
	VMOVMSKPS Y4, R9 \
	SHLQ $24, R9 \
	ORQ R9, R8

#define QNIBBLES \
	VPAND Y14, Y0, Y0 \
	VPAND Y14, Y1, Y1 \
	VPAND Y14, Y2, Y2 \
	VPAND Y14, Y3, Y3 \
	VPSLLD $4, Y2, Y2 \
	VPOR Y2, Y0, Y0 \
	VPSLLD $4, Y3, Y3 \
	VPOR Y3, Y1, Y1 \
	VPACKUSDW Y1, Y0, Y0 \
	VPERMQ $0xd8, Y0, Y0 \
	VEXTRACTI128 $1, Y0, X1 \
	VPACKUSWB X1, X0, X0

// A scale d in X6 that is subnormal and not zero jumps to L (the Go code
// takes the block): |d|'s bits − 1 < 2²³ − 1. Uses X9, R8; X11 holds the
// abs mask.
#define SUBNORMAL(R, L) \
	VANDPS X11, R, X9 \
	VMOVD X9, R8 \
	DECL R8 \
	CMPL R8, $0x7fffff \
	JB L

// The constants of quantizeQx0AVX2 and quantizeQx1AVX2 (DX: the params):
// exponent mask Y10, abs mask Y11, add Y12, clamp Y13, 15 in Y14, 1 in
// Y15; AX, the blocks done, is zeroed.
#define QXCONSTANTS \
	XORQ AX, AX \
	VBROADCASTSS q8c<>+0(SB), Y10 \
	VBROADCASTSS q8c<>+4(SB), Y11 \
	VBROADCASTSS 4(DX), Y12 \
	VPBROADCASTD 8(DX), Y13 \
	VPBROADCASTD q4c<>+0(SB), Y14 \
	VBROADCASTSS q8c<>+12(SB), Y15

// OP (VMINPS or VMAXPS) of the 8 lanes of Y into the low lane of X (Y's
// low half), with T as scratch.
#define HREDUCE(OP, Y, X, T) \
	VEXTRACTF128 $1, Y, T \
	OP T, X, X \
	VPERMILPS $0x4e, X, T \
	OP T, X, X \
	VPERMILPS $0xb1, X, T \
	OP T, X, X

// For the scale d in X6: id = d != 0 ? 1/d : 0 in X7, and d as f16 at
// 0(DI). Uses X8, X9, R8; X15 holds 1.
#define QINVSCALE \
	VDIVSS X6, X15, X7 \
	VXORPS X8, X8, X8 \
	VCMPSS $4, X8, X6, X8 \
	VANDPS X8, X7, X7 \
	VCVTPS2PH $0, X6, X9 \
	VMOVD X9, R8 \
	MOVW R8, 0(DI)

// qx0Params and qx1Params mirror the Go structs of legacy_amd64.go.
// qx0: div float32 (−8, −16), add float32 (8.5, 16.5), clamp int32 (15,
// 31), five int32 (Q5_0: a qh word), size int64 (bytes a block).

// func quantizeQx0AVX2(dst *byte, src *float32, nb int, p *qx0Params) int
// quantizeQ4_0 or quantizeQ5_0 for up to nb blocks; it stops before the
// first block that holds a NaN or ±Inf or whose scale is subnormal, and
// returns the number of blocks done.
TEXT ·quantizeQx0AVX2(SB), NOSPLIT, $64-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ nb+16(FP), CX
	MOVQ p+24(FP), DX
	QXCONSTANTS

	// The group code's blocks: 0(SP) holds the eight maxima of |x|, then
	// the eight inverse scales; 32(SP) the eight signed maxima.

	// Block b of a group: the first element whose |x| is the block's
	// amax; its signed value is ggml's max (the first one wins ties, as
	// with <). Uses Y8, Y9, R8-R10.
#define QXFIND(b) \
	VBROADCASTSS (4*b)(SP), Y8 \
	VANDPS (128*b)(SI), Y11, Y9 \
	VPCMPEQD Y8, Y9, Y9 \
	VMOVMSKPS Y9, R8 \
	VANDPS (128*b+32)(SI), Y11, Y9 \
	VPCMPEQD Y8, Y9, Y9 \
	VMOVMSKPS Y9, R9 \
	SHLQ $8, R9 \
	ORQ R9, R8 \
	VANDPS (128*b+64)(SI), Y11, Y9 \
	VPCMPEQD Y8, Y9, Y9 \
	VMOVMSKPS Y9, R9 \
	SHLQ $16, R9 \
	ORQ R9, R8 \
	VANDPS (128*b+96)(SI), Y11, Y9 \
	VPCMPEQD Y8, Y9, Y9 \
	VMOVMSKPS Y9, R9 \
	SHLQ $24, R9 \
	ORQ R9, R8 \
	BSFQ R8, R9 \
	MOVL (128*b)(SI)(R9*4), R10 \
	MOVL R10, (32+4*b)(SP)

	// Block b of a group: its inverse scale from the stack, its codes in
	// Y0-Y3. QXGROUP4 then stores Q4_0's nibbles, QXGROUP5 Q5_0's high
	// bits and nibbles, at DI, which moves on to the next block.
#define QXGROUPCODES(b) \
	VBROADCASTSS (4*b)(SP), Y7 \
	VMOVUPS (128*b)(SI), Y0 \
	VMOVUPS (128*b+32)(SI), Y1 \
	VMOVUPS (128*b+64)(SI), Y2 \
	VMOVUPS (128*b+96)(SI), Y3 \
	QTRUNC(Y0) \
	QTRUNC(Y1) \
	QTRUNC(Y2) \
	QTRUNC(Y3)

#define QXGROUP4(b) \
	QXGROUPCODES(b) \
	QNIBBLES \
	VMOVDQU X0, 2(DI) \
	ADDQ $18, DI

#define QXGROUP5(b) \
	QXGROUPCODES(b) \
	QHIGHBITS \
	MOVL R8, 2(DI) \
	QNIBBLES \
	VMOVDQU X0, 6(DI) \
	ADDQ $22, DI

qx0group:
	MOVQ CX, R12
	SUBQ AX, R12
	JZ qx0done
	CMPQ R12, $8
	JLT qx0single

	QMAX8
	// A NaN or ±Inf sends the group to the one-block code.
	VPBROADCASTD q8c<>+28(SB), Y8 // FLT_MAX
	VPCMPGTD Y8, Y0, Y9
	VPTEST Y9, Y9
	JNZ qx0group1
	VMOVDQU Y0, 0(SP)
	QXFIND(0)
	QXFIND(1)
	QXFIND(2)
	QXFIND(3)
	QXFIND(4)
	QXFIND(5)
	QXFIND(6)
	QXFIND(7)
	// All zero (±0): ggml's scan never moves off its +0 start.
	VMOVDQU 32(SP), Y1
	VPXOR Y3, Y3, Y3
	VPCMPEQD Y3, Y0, Y4
	VPANDN Y1, Y4, Y1
	// d = max / div; a subnormal d (0 < |d| < FLT_MIN) sends the group
	// to the one-block code, which hands that block to Go.
	VBROADCASTSS 0(DX), Y8
	VDIVPS Y8, Y1, Y2
	VANDPS Y11, Y2, Y5
	VPCMPEQD Y3, Y5, Y4 // d == 0
	VPBROADCASTD q8c<>+24(SB), Y8
	VPCMPGTD Y5, Y8, Y5 // |d| < FLT_MIN
	VPANDN Y5, Y4, Y5
	VPTEST Y5, Y5
	JNZ qx0group1
	// id = d != 0 ? 1/d : 0 for the blocks; fp16(d) into each block.
	VDIVPS Y2, Y15, Y3
	VPANDN Y3, Y4, Y3
	VMOVUPS Y3, 0(SP)
	VCVTPS2PH $0, Y2, X5
	MOVQ DI, R11
	MOVQ 16(DX), R10
	VPEXTRW $0, X5, 0(R11)
	ADDQ R10, R11
	VPEXTRW $1, X5, 0(R11)
	ADDQ R10, R11
	VPEXTRW $2, X5, 0(R11)
	ADDQ R10, R11
	VPEXTRW $3, X5, 0(R11)
	ADDQ R10, R11
	VPEXTRW $4, X5, 0(R11)
	ADDQ R10, R11
	VPEXTRW $5, X5, 0(R11)
	ADDQ R10, R11
	VPEXTRW $6, X5, 0(R11)
	ADDQ R10, R11
	VPEXTRW $7, X5, 0(R11)

	CMPL 12(DX), $0
	JEQ qx0group4
	QXGROUP5(0)
	QXGROUP5(1)
	QXGROUP5(2)
	QXGROUP5(3)
	QXGROUP5(4)
	QXGROUP5(5)
	QXGROUP5(6)
	QXGROUP5(7)
	JMP qx0groupnext

qx0group4:
	QXGROUP4(0)
	QXGROUP4(1)
	QXGROUP4(2)
	QXGROUP4(3)
	QXGROUP4(4)
	QXGROUP4(5)
	QXGROUP4(6)
	QXGROUP4(7)
#undef QXFIND
#undef QXGROUPCODES
#undef QXGROUP4
#undef QXGROUP5

qx0groupnext:

	ADDQ $1024, SI
	ADDQ $8, AX
	JMP qx0group

qx0group1:
	MOVQ $8, R12

qx0single: // R12 (≥ 1) blocks one at a time, then back to the groups
	VMOVUPS 0(SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3
	NONFINITE4
	JNZ qx0done

	// amax = max |x|, then the first element whose |x| is amax: its
	// signed value is ggml's max (the first one wins ties, as with <).
	VANDPS Y11, Y0, Y4
	VANDPS Y11, Y1, Y5
	VANDPS Y11, Y2, Y6
	VANDPS Y11, Y3, Y7
	VMAXPS Y5, Y4, Y8
	VMAXPS Y6, Y8, Y8
	VMAXPS Y7, Y8, Y8
	HREDUCE(VMAXPS, Y8, X8, X9)
	// All zero (±0): ggml's scan never moves off its +0 start.
	VXORPS X9, X9, X9
	VUCOMISS X9, X8
	JNE qx0find
	VXORPS X4, X4, X4
	JMP qx0havemax

qx0find:
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

qx0havemax:
	VMOVSS 0(DX), X5
	VDIVSS X5, X4, X6      // d = max / div
	SUBNORMAL(X6, qx0done)
	QINVSCALE
	VBROADCASTSS X7, Y7

	// In range for a normal d: |x·id| ≤ −div.
	QTRUNC(Y0)
	QTRUNC(Y1)
	QTRUNC(Y2)
	QTRUNC(Y3)
	CMPL 12(DX), $0
	JEQ qx0four
	QHIGHBITS
	MOVL R8, 2(DI)
	QNIBBLES
	VMOVDQU X0, 6(DI)
	JMP qx0next

qx0four:
	QNIBBLES
	VMOVDQU X0, 2(DI)

qx0next:
	ADDQ $128, SI
	ADDQ 16(DX), DI
	INCQ AX
	DECQ R12
	JNZ qx0single
	JMP qx0group

qx0done:
	MOVQ AX, ret+32(FP)
	VZEROUPPER
	RET

// qx1: div float32 (15, 31), add float32 (0.5), clamp int32 (15; 255 for
// Q5_1, which does not clamp and cannot exceed 31), five int32 (Q5_1),
// size int64.

// func quantizeQx1AVX2(dst *byte, src *float32, nb int, p *qx1Params) int
// quantizeQ4_1 or quantizeQ5_1 for up to nb blocks; it stops before the
// first block that holds a NaN or ±Inf, whose min is 0 or subnormal
// (the sign of a zero min depends on the scan order) or whose scale is
// subnormal, and returns the number of blocks done.
TEXT ·quantizeQx1AVX2(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ nb+16(FP), CX
	MOVQ p+24(FP), DX
	QXCONSTANTS
	TESTQ CX, CX
	JZ qx1done

qx1loop:
	VMOVUPS 0(SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3
	NONFINITE4
	JNZ qx1done

	// min and max (order-free for finite values, but for the sign of 0).
	VMINPS Y1, Y0, Y4
	VMINPS Y2, Y4, Y4
	VMINPS Y3, Y4, Y4
	HREDUCE(VMINPS, Y4, X4, X5) // min
	VMAXPS Y1, Y0, Y8
	VMAXPS Y2, Y8, Y8
	VMAXPS Y3, Y8, Y8
	HREDUCE(VMAXPS, Y8, X8, X5) // max
	VANDPS X11, X4, X9
	VMOVSS q8c<>+24(SB), X5
	VUCOMISS X5, X9
	JB qx1done             // |min| < FLT_MIN, 0 included

	VSUBSS X4, X8, X6
	VMOVSS 0(DX), X5
	VDIVSS X5, X6, X6      // d = (max − min) / div
	SUBNORMAL(X6, qx1done)
	QINVSCALE
	VCVTPS2PH $0, X4, X9
	VMOVD X9, R8
	MOVW R8, 2(DI)
	VBROADCASTSS X7, Y7
	VBROADCASTSS X4, Y4

	// q = min(clamp, (int)((x − min)·id + 0.5)), in [0, div+1).
	VSUBPS Y4, Y0, Y0
	VSUBPS Y4, Y1, Y1
	VSUBPS Y4, Y2, Y2
	VSUBPS Y4, Y3, Y3
	QTRUNC(Y0)
	QTRUNC(Y1)
	QTRUNC(Y2)
	QTRUNC(Y3)
	CMPL 12(DX), $0
	JEQ qx1four
	QHIGHBITS
	MOVL R8, 4(DI)
	QNIBBLES
	VMOVDQU X0, 8(DI)
	JMP qx1next

qx1four:
	QNIBBLES
	VMOVDQU X0, 4(DI)

qx1next:
	ADDQ $128, SI
	ADDQ 16(DX), DI
	INCQ AX
	CMPQ AX, CX
	JLT qx1loop

qx1done:
	MOVQ AX, ret+32(FP)
	VZEROUPPER
	RET

DATA q4c<>+0(SB)/4, $15
GLOBL q4c<>(SB), RODATA|NOPTR, $4

DATA q4d<>+0(SB)/4, $15
DATA q4d<>+4(SB)/4, $1
GLOBL q4d<>(SB), RODATA|NOPTR, $8

DATA dqshift<>+0(SB)/4, $0
DATA dqshift<>+4(SB)/4, $1
DATA dqshift<>+8(SB)/4, $2
DATA dqshift<>+12(SB)/4, $3
DATA dqshift<>+16(SB)/4, $4
DATA dqshift<>+20(SB)/4, $5
DATA dqshift<>+24(SB)/4, $6
DATA dqshift<>+28(SB)/4, $7
DATA dqshift<>+32(SB)/4, $8
GLOBL dqshift<>(SB), RODATA|NOPTR, $36

// Bit 4 of the elements of R (shifts in Y8) from the qh word in Y9:
// R |= ((qh >> shift) & 1) << 4; then shift += 8 (Y10).
#define DQHIGH(R) \
	VPSRLVD Y8, Y9, Y11 \
	VPAND Y13, Y11, Y11 \
	VPSLLD $4, Y11, Y11 \
	VPOR Y11, R, R \
	VPADDD Y10, Y8, Y8

// dqParams mirrors the Go struct of legacy_amd64.go: off int32 (8, 16 or
// 0, subtracted from the code), five int32 (a qh word at 2 or 4), hasMin
// int32 (an f16 min at 2, added), qs int32 (offset of the nibbles), size
// int64 (bytes a block).

// func dequantizeLegacyAVX2(dst *float32, src *byte, nb int, p *dqParams)
// dequantizeQ4_0, Q4_1, Q5_0 or Q5_1 for nb blocks, low nibbles first:
// y = float32(q − off)·d (+ m).
TEXT ·dequantizeLegacyAVX2(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ nb+16(FP), CX
	MOVQ p+24(FP), DX
	VPBROADCASTD q4d<>+0(SB), Y14  // 15
	VPBROADCASTD q4d<>+4(SB), Y13  // 1
	VPBROADCASTD 0(DX), Y15        // off
	VPBROADCASTD dqshift<>+32(SB), Y10
	MOVL 12(DX), BX                // qs
	MOVL 8(DX), R10                // hasMin: qh at 4, else 2
	SHLL $1, R10
	ADDL $2, R10
	TESTQ CX, CX
	JZ dqldone

dqlloop:
	MOVWLZX 0(SI), R8
	VMOVD R8, X7
	VCVTPH2PS X7, X7
	VBROADCASTSS X7, Y7            // d
	VPMOVZXBD (SI)(BX*1), Y0       // bytes 0-7
	VPMOVZXBD 8(SI)(BX*1), Y1      // bytes 8-15
	VPSRLD $4, Y0, Y2              // high nibbles: values 16-23
	VPSRLD $4, Y1, Y3              // 24-31
	VPAND Y14, Y0, Y0
	VPAND Y14, Y1, Y1
	CMPL 4(DX), $0
	JEQ dqlnoh
	VPBROADCASTD (SI)(R10*1), Y9   // qh
	VMOVDQU dqshift<>(SB), Y8
	DQHIGH(Y0)
	DQHIGH(Y1)
	DQHIGH(Y2)
	DQHIGH(Y3)

dqlnoh:
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
	CMPL 8(DX), $0
	JEQ dqlstore
	MOVWLZX 2(SI), R8
	VMOVD R8, X6
	VCVTPH2PS X6, X6
	VBROADCASTSS X6, Y6            // m
	VADDPS Y6, Y0, Y0
	VADDPS Y6, Y1, Y1
	VADDPS Y6, Y2, Y2
	VADDPS Y6, Y3, Y3

dqlstore:
	VMOVUPS Y0, 0(DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ 16(DX), SI
	ADDQ $128, DI
	DECQ CX
	JNZ dqlloop

dqldone:
	VZEROUPPER
	RET

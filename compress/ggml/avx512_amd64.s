//go:build !purego

#include "textflag.h"

// The AVX-512 kernels (F, BW, DQ, VL): 16 float32 lanes per register and
// opmask registers for the per-lane choices. Each one is bit-identical to
// its Go reference; the tests run both on the same adversarial inputs.

DATA z8c<>+0(SB)/4, $0x7fffffff  // abs mask
DATA z8c<>+4(SB)/4, $0x42fe0000  // 127.0
DATA z8c<>+8(SB)/4, $0x00800000  // FLT_MIN, the smallest normal
DATA z8c<>+12(SB)/4, $0x7f7fffff // FLT_MAX
DATA z8c<>+16(SB)/4, $0x3f800000 // 1.0
DATA z8c<>+20(SB)/4, $0x80000000 // sign mask
DATA z8c<>+24(SB)/4, $0x3effffff // nextafter(0.5, 0)
GLOBL z8c<>(SB), RODATA|NOPTR, $28

// z8perm: the VPERMI2B indices that gather the low byte of each of the
// 32 int32 quants in Z0 (byte indices 0–63) and Z1 (64–127) into the low
// 32 bytes: byte j is 4j. The high 32 bytes are not stored.
DATA z8perm<>+0(SB)/8, $0x1c1814100c080400
DATA z8perm<>+8(SB)/8, $0x3c3834302c282420
DATA z8perm<>+16(SB)/8, $0x5c5854504c484440
DATA z8perm<>+24(SB)/8, $0x7c7874706c686460
GLOBL z8perm<>(SB), RODATA|NOPTR, $64

// ZMAXBLOCK: the bits of |x| of the 32 values at in(SI), lane-wise maxima
// of its two halves, into M (for non-negative floats the integer order is
// the float order, and a NaN or ±Inf is above every finite value).
#define ZMAXBLOCK(in, M) \
	VPANDD in(SI), Z31, M \
	VPANDD in+64(SI), Z31, Z16 \
	VPMAXUD Z16, M, M

// ZPAIR folds A and B (16 lanes each) into A with OP, a lane-wise max or
// min: within each 128-bit lane, (op(a0,a2), op(b0,b2), op(a1,a3),
// op(b1,b3)).
#define ZPAIR(OP, B, A) \
	VUNPCKLPS B, A, Z16 \
	VUNPCKHPS B, A, Z17 \
	OP Z17, Z16, A

// ZQUAD folds two ZPAIR results into A: 128-bit lane l holds, for each of
// the four blocks, OP over that block's lane l.
#define ZQUAD(OP, B, A) \
	VSHUFPS $0x44, B, A, Z16 \
	VSHUFPS $0xee, B, A, Z17 \
	OP Z17, Z16, A

// ZLANES folds the 128-bit lanes of A and B: lanes 0,1 of the result are
// A's lanes (0∘1, 2∘3), lanes 2,3 are B's.
#define ZLANES(OP, B, A) \
	VSHUFF32X4 $0x88, B, A, Z16 \
	VSHUFF32X4 $0xdd, B, A, Z17 \
	OP Z17, Z16, A

// ZFOLD16 folds Z0-Z15, one block's 16 partial results each, into Z0:
// lane b is OP over all of Z<b>. Uses Z16, Z17.
#define ZFOLD16(OP) \
	ZPAIR(OP, Z1, Z0) \
	ZPAIR(OP, Z3, Z2) \
	ZPAIR(OP, Z5, Z4) \
	ZPAIR(OP, Z7, Z6) \
	ZPAIR(OP, Z9, Z8) \
	ZPAIR(OP, Z11, Z10) \
	ZPAIR(OP, Z13, Z12) \
	ZPAIR(OP, Z15, Z14) \
	ZQUAD(OP, Z2, Z0) \
	ZQUAD(OP, Z6, Z4) \
	ZQUAD(OP, Z10, Z8) \
	ZQUAD(OP, Z14, Z12) \
	ZLANES(OP, Z4, Z0) \
	ZLANES(OP, Z12, Z8) \
	ZLANES(OP, Z8, Z0)

// ZAMAX16: lane b of Z0 holds the bits of block b's max |x|, for the
// sixteen blocks at SI.
#define ZAMAX16 \
	ZMAXBLOCK(0, Z0) \
	ZMAXBLOCK(128, Z1) \
	ZMAXBLOCK(256, Z2) \
	ZMAXBLOCK(384, Z3) \
	ZMAXBLOCK(512, Z4) \
	ZMAXBLOCK(640, Z5) \
	ZMAXBLOCK(768, Z6) \
	ZMAXBLOCK(896, Z7) \
	ZMAXBLOCK(1024, Z8) \
	ZMAXBLOCK(1152, Z9) \
	ZMAXBLOCK(1280, Z10) \
	ZMAXBLOCK(1408, Z11) \
	ZMAXBLOCK(1536, Z12) \
	ZMAXBLOCK(1664, Z13) \
	ZMAXBLOCK(1792, Z14) \
	ZMAXBLOCK(1920, Z15) \
	ZFOLD16(VPMAXUD)

// Z8ROUND: the int32 roundf(R) of the 16 floats R: trunc(R +
// copysign(nextafter(0.5, 0), R)), as Q8ROUND in legacy_amd64.s. Z22 holds
// the sign mask, Z21 nextafter(0.5, 0). The copysign is one ternary-logic
// op, Z8 = Z8 | (Z22 & R), on a copy of Z21 (the register move costs no
// execution slot where the CPU renames it away, as Zen 4 does: QD 654 →
// 616 ns a tile against an AND and an OR).
#define Z8ROUND(R) \
	VMOVDQA32 Z21, Z8 \
	VPTERNLOGD $0xf8, R, Z22, Z8 \
	VADDPS Z8, R, R \
	VCVTTPS2DQ R, R

// Block b of a group: x·id with its inverse scale from the stack, the
// rounded quants packed to int8 by PACK(b) and stored after the scale.
#define Z8BLOCK(b, PACK) \
	VBROADCASTSS (4*b)(SP), Z7 \
	VMULPS (128*b)(SI), Z7, Z0 \
	VMULPS (128*b+64)(SI), Z7, Z1 \
	Z8ROUND(Z0) \
	Z8ROUND(Z1) \
	PACK(b) \
	MOVWLZX (64+2*b)(SP), R8 \
	MOVW R8, (34*b)(DI)

// The two ways to pack block b's 32 int32 quants in Z0 and Z1 to bytes,
// the same bytes since |q| ≤ 127 for the normal scales that reach here:
// Z8SATURATE narrows each register with saturation (AVX512F, as the AVX2
// packs do), two stores; Z8PERMUTE gathers the 32 low bytes with one
// VPERMI2B (AVX512VBMI; indices z8perm in Z20, which VPERMI2B overwrites,
// so a copy) and stores them once: 617 → 582 ns a QuantizeDequantize tile
// on one Zen 4 core.
#define Z8SATURATE(b) \
	VPMOVSDB Z0, (34*b+2)(DI) \
	VPMOVSDB Z1, (34*b+18)(DI)

#define Z8PERMUTE(b) \
	VMOVDQA64 Z20, Z9 \
	VPERMI2B Z1, Z0, Z9 \
	VMOVDQU Y9, (34*b+2)(DI)

// Z8GROUP(BLOCK, PACK): BLOCK(b, PACK) for the sixteen blocks of a group.
#define Z8GROUP(BLOCK, PACK) \
	BLOCK(0, PACK) \
	BLOCK(1, PACK) \
	BLOCK(2, PACK) \
	BLOCK(3, PACK) \
	BLOCK(4, PACK) \
	BLOCK(5, PACK) \
	BLOCK(6, PACK) \
	BLOCK(7, PACK) \
	BLOCK(8, PACK) \
	BLOCK(9, PACK) \
	BLOCK(10, PACK) \
	BLOCK(11, PACK) \
	BLOCK(12, PACK) \
	BLOCK(13, PACK) \
	BLOCK(14, PACK) \
	BLOCK(15, PACK)

// Z8CONSTANTS loads the Q8_0 kernels' constants and zeroes AX, the blocks
// done.
#define Z8CONSTANTS \
	XORQ AX, AX \
	VPBROADCASTD z8c<>+0(SB), Z31 \
	VBROADCASTSS z8c<>+4(SB), Z30 \
	VPBROADCASTD z8c<>+8(SB), Z29 \
	VPBROADCASTD z8c<>+12(SB), Z28 \
	VBROADCASTSS z8c<>+16(SB), Z27 \
	VPBROADCASTD z8c<>+20(SB), Z22 \
	VBROADCASTSS z8c<>+24(SB), Z21 \
	VMOVDQU64 z8perm<>(SB), Z20

// Z8SCALES(done): for the sixteen blocks at SI (CX − AX ≥ 16 of them
// left, else it jumps to done), d = amax/127, then id = d != 0 ? 1/d : 0
// at 0(SP) and fp16(d) (round to nearest even) at 64(SP), fp16(d) also in
// Y3. A NaN or ±Inf, or a subnormal d (0 < d < FLT_MIN), jumps to done:
// the caller's one-block code takes it from there. Constants as
// Z8CONSTANTS loads them: abs mask Z31, 127 Z30, FLT_MIN Z29, FLT_MAX Z28,
// 1 Z27.
#define Z8SCALES(done) \
	MOVQ CX, R9 \
	SUBQ AX, R9 \
	CMPQ R9, $16 \
	JLT done \
	ZAMAX16 \
	VPCMPGTD Z28, Z0, K1 \
	VDIVPS Z30, Z0, Z1 \
	VPCMPGTD Z1, Z29, K2 \
	VPTESTMD Z1, Z1, K3 \
	KANDW K3, K2, K2 \
	KORTESTW K2, K1 \
	JNZ done \
	VDIVPS.Z Z1, Z27, K3, Z2 \
	VMOVUPS Z2, 0(SP) \
	VCVTPS2PH $0, Z1, Y3 \
	VMOVDQU Y3, 64(SP)

// func quantizeQ8_0AVX512(dst *byte, src *float32, nb int, vbmi bool) int
// quantizeQ8_0 for up to nb blocks, sixteen at a time: their maxima,
// scales and inverse scales are one register each. It stops before a group
// of sixteen that holds a NaN or ±Inf or a block whose scale is subnormal,
// or when fewer than sixteen blocks are left, and returns the number of
// blocks done (a multiple of 16). With vbmi (the CPU has AVX512VBMI) it
// packs the quants with VPERMI2B, else with VPMOVSDB: the same bytes.
TEXT ·quantizeQ8_0AVX512(SB), NOSPLIT, $96-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ nb+16(FP), CX
	MOVBLZX vbmi+24(FP), BX
	Z8CONSTANTS

z8group:
	Z8SCALES(z8done)
	TESTQ BX, BX
	JNZ z8permute
	Z8GROUP(Z8BLOCK, Z8SATURATE)
	JMP z8next

z8permute:
	Z8GROUP(Z8BLOCK, Z8PERMUTE)

z8next:
	ADDQ $2048, SI
	ADDQ $544, DI
	ADDQ $16, AX
	JMP z8group

z8done:
	MOVQ AX, ret+32(FP)
	VZEROUPPER
	RET

// func dequantizeQ8_0AVX512(dst *float32, src *byte, nb int)
// dequantizeQ8_0 for nb blocks: float32(q)*d, d widened by VCVTPH2PS.
TEXT ·dequantizeQ8_0AVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ nb+16(FP), CX
	TESTQ CX, CX
	JZ zdq8done

zdq8loop:
	VPBROADCASTW 0(SI), X7
	VCVTPH2PS X7, X7
	VBROADCASTSS X7, Z7
	VPMOVSXBD 2(SI), Z0
	VPMOVSXBD 18(SI), Z1
	VCVTDQ2PS Z0, Z0
	VCVTDQ2PS Z1, Z1
	VMULPS Z7, Z0, Z0
	VMULPS Z7, Z1, Z1
	VMOVUPS Z0, 0(DI)
	VMOVUPS Z1, 64(DI)
	ADDQ $34, SI
	ADDQ $128, DI
	DECQ CX
	JNZ zdq8loop

zdq8done:
	VZEROUPPER
	RET

DATA zf16exp<>+0(SB)/2, $0x7c00
GLOBL zf16exp<>(SB), RODATA|NOPTR, $2

// func decodeF16AVX512(dst *float32, src *byte, n int) bool
// DecodeF16 for n values (a multiple of 16) with VCVTPH2PS, 32 a step and
// a last 16; it reports whether every value was finite: the lane-wise
// maximum of the exponent bits never reached all ones.
TEXT ·decodeF16AVX512(SB), NOSPLIT, $0-25
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	VPBROADCASTW zf16exp<>(SB), Z3
	VPXORD Z4, Z4, Z4 // lane-wise max of the exponent bits
	MOVQ CX, DX
	SHRQ $5, CX
	JZ zf16tail

zf16loop:
	VMOVDQU64 0(SI), Z2
	VCVTPH2PS Y2, Z0
	VEXTRACTI64X4 $1, Z2, Y1
	VCVTPH2PS Y1, Z1
	VPANDD Z3, Z2, Z2
	VPMAXUW Z2, Z4, Z4
	VMOVUPS Z0, 0(DI)
	VMOVUPS Z1, 64(DI)
	ADDQ $64, SI
	ADDQ $128, DI
	DECQ CX
	JNZ zf16loop

zf16tail:
	TESTQ $16, DX
	JZ zf16done
	VMOVDQU 0(SI), Y2
	VCVTPH2PS Y2, Z0
	VPAND Y3, Y2, Y2 // VEX: clears Z2's upper half
	VPMAXUW Z2, Z4, Z4
	VMOVUPS Z0, 0(DI)

zf16done:
	VPCMPEQW Z3, Z4, K1
	KORTESTD K1, K1
	SETEQ ret+24(FP)
	VZEROUPPER
	RET

DATA zqc<>+0(SB)/4, $15
DATA zqc<>+4(SB)/4, $16
GLOBL zqc<>(SB), RODATA|NOPTR, $8

// ZMASK32: the opmasks K1 (bits 0-15) and K2 (bits 16-31) as one 32-bit
// mask in R8. Uses R9.
#define ZMASK32 \
	KMOVW K1, R8 \
	KMOVW K2, R9 \
	SHLL $16, R9 \
	ORL R9, R8

// ZQ5HIGH(off): a Q5 block's qh, bit 4 of code j as bit j (codes 0-15 in
// Z0, 16-31 in Z1; Z23 holds 16), stored at off(DI). Uses K1, K2, R8, R9.
#define ZQ5HIGH(off) \
	VPTESTMD Z23, Z0, K1 \
	VPTESTMD Z23, Z1, K2 \
	ZMASK32 \
	MOVL R8, off(DI)

// ZQXFIND(b): the first element of block b whose |x| is the block's amax
// (at 4b(SP)); its signed value, ggml's max (the first one wins ties, as
// with <), goes to 64+4b(SP). Uses Z8, Z9, K1, K2, R8-R10.
#define ZQXFIND(b) \
	VPBROADCASTD (4*b)(SP), Z8 \
	VPANDD (128*b)(SI), Z31, Z9 \
	VPCMPEQD Z8, Z9, K1 \
	VPANDD (128*b+64)(SI), Z31, Z9 \
	VPCMPEQD Z8, Z9, K2 \
	ZMASK32 \
	BSFL R8, R9 \
	MOVL (128*b)(SI)(R9*4), R10 \
	MOVL R10, (64+4*b)(SP)

// ZQXCODES(b): block b's codes min(clamp, (int)(x·id + add)), elements
// 0-15 in Z0 and 16-31 in Z1, and its fp16 scale stored at 0(DI). id is
// at 4b(SP), fp16(d) at 64+2b(SP); add in Z26, clamp in Z25.
#define ZQXCODES(b) \
	VBROADCASTSS (4*b)(SP), Z7 \
	VMULPS (128*b)(SI), Z7, Z0 \
	VMULPS (128*b+64)(SI), Z7, Z1 \
	VADDPS Z26, Z0, Z0 \
	VADDPS Z26, Z1, Z1 \
	VCVTTPS2DQ Z0, Z0 \
	VCVTTPS2DQ Z1, Z1 \
	VPMINSD Z25, Z0, Z0 \
	VPMINSD Z25, Z1, Z1 \
	MOVWLZX (64+2*b)(SP), R8 \
	MOVW R8, 0(DI)

// ZQXNIBBLES: byte j = (q[j]&15) | (q[j+16]&15)<<4 for j < 16, from Z0
// and Z1, stored at off(DI): a bitwise select of Z0's low nibble and
// Z1<<4 under the mask 15 (Z24), then each dword's low byte.
#define ZQXNIBBLES(off) \
	VPSLLD $4, Z1, Z1 \
	VPTERNLOGD $0xe4, Z24, Z1, Z0 \
	VPMOVDB Z0, off(DI)

#define ZQXGROUP4(b) \
	ZQXCODES(b) \
	ZQXNIBBLES(2) \
	ADDQ $18, DI

#define ZQXGROUP5(b) \
	ZQXCODES(b) \
	ZQ5HIGH(2) \
	ZQXNIBBLES(6) \
	ADDQ $22, DI

// func quantizeQx0AVX512(dst *byte, src *float32, nb int, p *qx0Params) int
// quantizeQ4_0 or quantizeQ5_0 for up to nb blocks, sixteen at a time:
// their maxima, scales and inverse scales are one register each. It stops
// before a group of sixteen that holds a NaN or ±Inf or a block whose
// scale is subnormal, or when fewer than sixteen blocks are left, and
// returns the number of blocks done (a multiple of 16).
TEXT ·quantizeQx0AVX512(SB), NOSPLIT, $128-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ nb+16(FP), CX
	MOVQ p+24(FP), DX
	XORQ AX, AX
	VPBROADCASTD z8c<>+0(SB), Z31  // abs mask
	VBROADCASTSS 0(DX), Z30        // div
	VPBROADCASTD z8c<>+8(SB), Z29  // FLT_MIN
	VPBROADCASTD z8c<>+12(SB), Z28 // FLT_MAX
	VBROADCASTSS z8c<>+16(SB), Z27 // 1
	VBROADCASTSS 4(DX), Z26        // add
	VPBROADCASTD 8(DX), Z25        // clamp
	VPBROADCASTD zqc<>+0(SB), Z24  // 15
	VPBROADCASTD zqc<>+4(SB), Z23  // 16

zqxgroup:
	MOVQ CX, R11
	SUBQ AX, R11
	CMPQ R11, $16
	JLT zqxdone

	ZAMAX16 // lane b: max |x| of block b

	// A NaN or ±Inf ends the run.
	VPCMPGTD Z28, Z0, K1
	KORTESTW K1, K1
	JNZ zqxdone
	VMOVDQU32 Z0, 0(SP)
	ZQXFIND(0)
	ZQXFIND(1)
	ZQXFIND(2)
	ZQXFIND(3)
	ZQXFIND(4)
	ZQXFIND(5)
	ZQXFIND(6)
	ZQXFIND(7)
	ZQXFIND(8)
	ZQXFIND(9)
	ZQXFIND(10)
	ZQXFIND(11)
	ZQXFIND(12)
	ZQXFIND(13)
	ZQXFIND(14)
	ZQXFIND(15)
	// All zero (±0): ggml's scan never moves off its +0 start.
	VPTESTMD Z0, Z0, K3
	VMOVDQU32.Z 64(SP), K3, Z1
	// d = max / div; a subnormal d (0 < |d| < FLT_MIN) ends the run.
	VDIVPS Z30, Z1, Z2
	VPANDD Z31, Z2, Z5
	VPCMPGTD Z5, Z29, K4 // |d| < FLT_MIN
	VPTESTMD Z5, Z5, K5  // d != 0
	KANDW K5, K4, K4
	KORTESTW K4, K4
	JNZ zqxdone
	// id = d != 0 ? 1/d : 0 and fp16(d) (round to nearest even), on the
	// stack for the blocks.
	VDIVPS.Z Z2, Z27, K5, Z3
	VMOVUPS Z3, 0(SP)
	VCVTPS2PH $0, Z2, Y4
	VMOVDQU Y4, 64(SP)

	CMPL 12(DX), $0
	JEQ zqxgroup4
	ZQXGROUP5(0)
	ZQXGROUP5(1)
	ZQXGROUP5(2)
	ZQXGROUP5(3)
	ZQXGROUP5(4)
	ZQXGROUP5(5)
	ZQXGROUP5(6)
	ZQXGROUP5(7)
	ZQXGROUP5(8)
	ZQXGROUP5(9)
	ZQXGROUP5(10)
	ZQXGROUP5(11)
	ZQXGROUP5(12)
	ZQXGROUP5(13)
	ZQXGROUP5(14)
	ZQXGROUP5(15)
	JMP zqxnext

zqxgroup4:
	ZQXGROUP4(0)
	ZQXGROUP4(1)
	ZQXGROUP4(2)
	ZQXGROUP4(3)
	ZQXGROUP4(4)
	ZQXGROUP4(5)
	ZQXGROUP4(6)
	ZQXGROUP4(7)
	ZQXGROUP4(8)
	ZQXGROUP4(9)
	ZQXGROUP4(10)
	ZQXGROUP4(11)
	ZQXGROUP4(12)
	ZQXGROUP4(13)
	ZQXGROUP4(14)
	ZQXGROUP4(15)

zqxnext:
	ADDQ $2048, SI
	ADDQ $16, AX
	JMP zqxgroup

zqxdone:
	MOVQ AX, ret+32(FP)
	VZEROUPPER
	RET

// func decodeBF16AVX512(dst *float32, src *byte, n int)
// DecodeBF16 for n values (a multiple of 16): each 16-bit pattern becomes
// the high half of a float32, 32 a step and a last 16.
TEXT ·decodeBF16AVX512(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	MOVQ CX, DX
	SHRQ $5, CX
	JZ zbf16tail

zbf16loop:
	VPMOVZXWD 0(SI), Z0
	VPMOVZXWD 32(SI), Z1
	VPSLLD $16, Z0, Z0
	VPSLLD $16, Z1, Z1
	VMOVDQU32 Z0, 0(DI)
	VMOVDQU32 Z1, 64(DI)
	ADDQ $64, SI
	ADDQ $128, DI
	DECQ CX
	JNZ zbf16loop

zbf16tail:
	TESTQ $16, DX
	JZ zbf16done
	VPMOVZXWD 0(SI), Z0
	VPSLLD $16, Z0, Z0
	VMOVDQU32 Z0, 0(DI)

zbf16done:
	VZEROUPPER
	RET

// ZMINMAXBLOCK(b): the lane-wise min of block b's two halves into Z<b>,
// the max onto the stack at 256+64b(SP), and whether the block holds a
// NaN or ±Inf (VFPCLASSPS) OR-ed into K7. Uses Z16, Z17, K1, K2.
#define ZMINMAXBLOCK(b, M) \
	VMOVUPS (128*b)(SI), Z16 \
	VMOVUPS (128*b+64)(SI), Z17 \
	VFPCLASSPSZ $0x99, Z16, K1 \
	VFPCLASSPSZ $0x99, Z17, K2 \
	KORW K1, K7, K7 \
	KORW K2, K7, K7 \
	VMINPS Z17, Z16, M \
	VMAXPS Z17, Z16, Z16 \
	VMOVUPS Z16, (256+64*b)(SP)

#define ZMAXLOAD(b, M) \
	VMOVUPS (256+64*b)(SP), M

// ZQX1CODES(b): block b's codes min(clamp, (int)((x − min)·id + 0.5)),
// elements 0-15 in Z0 and 16-31 in Z1, and its fp16 d and m at 0(DI).
// id is at 4b(SP), min at 64+4b(SP), fp16 m<<16 | d at 128+4b(SP).
#define ZQX1CODES(b) \
	VBROADCASTSS (64+4*b)(SP), Z6 \
	VBROADCASTSS (4*b)(SP), Z7 \
	VMOVUPS (128*b)(SI), Z0 \
	VMOVUPS (128*b+64)(SI), Z1 \
	VSUBPS Z6, Z0, Z0 \
	VSUBPS Z6, Z1, Z1 \
	VMULPS Z7, Z0, Z0 \
	VMULPS Z7, Z1, Z1 \
	VADDPS Z26, Z0, Z0 \
	VADDPS Z26, Z1, Z1 \
	VCVTTPS2DQ Z0, Z0 \
	VCVTTPS2DQ Z1, Z1 \
	VPMINSD Z25, Z0, Z0 \
	VPMINSD Z25, Z1, Z1 \
	MOVL (128+4*b)(SP), R8 \
	MOVL R8, 0(DI)

#define ZQX1GROUP4(b) \
	ZQX1CODES(b) \
	ZQXNIBBLES(4) \
	ADDQ $20, DI

#define ZQX1GROUP5(b) \
	ZQX1CODES(b) \
	ZQ5HIGH(4) \
	ZQXNIBBLES(8) \
	ADDQ $24, DI

// func quantizeQx1AVX512(dst *byte, src *float32, nb int, p *qx1Params) int
// quantizeQ4_1 or quantizeQ5_1 for up to nb blocks, sixteen at a time:
// their minima, maxima, scales and inverse scales are one register each.
// It stops before a group of sixteen that holds a NaN or ±Inf, a block
// whose min is 0 or subnormal (the sign of a zero min depends on the scan
// order) or whose scale is subnormal, or when fewer than sixteen blocks
// are left, and returns the number of blocks done (a multiple of 16).
TEXT ·quantizeQx1AVX512(SB), 0, $1280-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ nb+16(FP), CX
	MOVQ p+24(FP), DX
	XORQ AX, AX
	VPBROADCASTD z8c<>+0(SB), Z31  // abs mask
	VBROADCASTSS 0(DX), Z30        // div
	VPBROADCASTD z8c<>+8(SB), Z29  // FLT_MIN
	VBROADCASTSS z8c<>+16(SB), Z27 // 1
	VBROADCASTSS 4(DX), Z26        // add (0.5)
	VPBROADCASTD 8(DX), Z25        // clamp
	VPBROADCASTD zqc<>+0(SB), Z24  // 15
	VPBROADCASTD zqc<>+4(SB), Z23  // 16

zqx1group:
	MOVQ CX, R11
	SUBQ AX, R11
	CMPQ R11, $16
	JLT zqx1done

	KXORW K7, K7, K7
	ZMINMAXBLOCK(0, Z0)
	ZMINMAXBLOCK(1, Z1)
	ZMINMAXBLOCK(2, Z2)
	ZMINMAXBLOCK(3, Z3)
	ZMINMAXBLOCK(4, Z4)
	ZMINMAXBLOCK(5, Z5)
	ZMINMAXBLOCK(6, Z6)
	ZMINMAXBLOCK(7, Z7)
	ZMINMAXBLOCK(8, Z8)
	ZMINMAXBLOCK(9, Z9)
	ZMINMAXBLOCK(10, Z10)
	ZMINMAXBLOCK(11, Z11)
	ZMINMAXBLOCK(12, Z12)
	ZMINMAXBLOCK(13, Z13)
	ZMINMAXBLOCK(14, Z14)
	ZMINMAXBLOCK(15, Z15)
	KORTESTW K7, K7
	JNZ zqx1done // a NaN or ±Inf
	// min and max, order-free for finite values but for the sign of a
	// zero, which the min check below and the subtraction make moot.
	ZFOLD16(VMINPS)
	VMOVAPS Z0, Z18 // min
	ZMAXLOAD(0, Z0)
	ZMAXLOAD(1, Z1)
	ZMAXLOAD(2, Z2)
	ZMAXLOAD(3, Z3)
	ZMAXLOAD(4, Z4)
	ZMAXLOAD(5, Z5)
	ZMAXLOAD(6, Z6)
	ZMAXLOAD(7, Z7)
	ZMAXLOAD(8, Z8)
	ZMAXLOAD(9, Z9)
	ZMAXLOAD(10, Z10)
	ZMAXLOAD(11, Z11)
	ZMAXLOAD(12, Z12)
	ZMAXLOAD(13, Z13)
	ZMAXLOAD(14, Z14)
	ZMAXLOAD(15, Z15)
	ZFOLD16(VMAXPS) // max in Z0

	// |min| < FLT_MIN (0 included) ends the run.
	VPANDD Z31, Z18, Z5
	VPCMPGTD Z5, Z29, K1
	// d = (max − min) / div; a subnormal d (0 < d < FLT_MIN) ends the run.
	VSUBPS Z18, Z0, Z2
	VDIVPS Z30, Z2, Z2
	VPCMPGTD Z2, Z29, K2 // d < FLT_MIN (d ≥ 0)
	VPTESTMD Z2, Z2, K3  // d != 0
	KANDW K3, K2, K2
	KORTESTW K2, K1
	JNZ zqx1done
	// id = d != 0 ? 1/d : 0, min, and fp16 m<<16 | fp16 d (round to
	// nearest even), on the stack for the blocks.
	VDIVPS.Z Z2, Z27, K3, Z3
	VMOVUPS Z3, 0(SP)
	VMOVUPS Z18, 64(SP)
	VCVTPS2PH $0, Z2, Y4
	VCVTPS2PH $0, Z18, Y5
	VPMOVZXWD Y4, Z4
	VPMOVZXWD Y5, Z5
	VPSLLD $16, Z5, Z5
	VPORD Z5, Z4, Z4
	VMOVDQU32 Z4, 128(SP)

	CMPL 12(DX), $0
	JEQ zqx1group4
	ZQX1GROUP5(0)
	ZQX1GROUP5(1)
	ZQX1GROUP5(2)
	ZQX1GROUP5(3)
	ZQX1GROUP5(4)
	ZQX1GROUP5(5)
	ZQX1GROUP5(6)
	ZQX1GROUP5(7)
	ZQX1GROUP5(8)
	ZQX1GROUP5(9)
	ZQX1GROUP5(10)
	ZQX1GROUP5(11)
	ZQX1GROUP5(12)
	ZQX1GROUP5(13)
	ZQX1GROUP5(14)
	ZQX1GROUP5(15)
	JMP zqx1next

zqx1group4:
	ZQX1GROUP4(0)
	ZQX1GROUP4(1)
	ZQX1GROUP4(2)
	ZQX1GROUP4(3)
	ZQX1GROUP4(4)
	ZQX1GROUP4(5)
	ZQX1GROUP4(6)
	ZQX1GROUP4(7)
	ZQX1GROUP4(8)
	ZQX1GROUP4(9)
	ZQX1GROUP4(10)
	ZQX1GROUP4(11)
	ZQX1GROUP4(12)
	ZQX1GROUP4(13)
	ZQX1GROUP4(14)
	ZQX1GROUP4(15)

zqx1next:
	ADDQ $2048, SI
	ADDQ $16, AX
	JMP zqx1group

zqx1done:
	MOVQ AX, ret+32(FP)
	VZEROUPPER
	RET

// func dequantizeLegacyAVX512(dst *float32, src *byte, nb int, p *dqParams)
// dequantizeQ4_0, Q4_1, Q5_0 or Q5_1 for nb blocks (p as for
// dequantizeLegacyAVX2): the low nibbles are values 0-15, the high ones
// 16-31, and Q5's qh bits, as two 16-bit opmasks, OR 16 into their lanes.
TEXT ·dequantizeLegacyAVX512(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ nb+16(FP), CX
	MOVQ p+24(FP), DX
	VPBROADCASTD zqc<>+0(SB), Z14  // 15
	VPBROADCASTD zqc<>+4(SB), Z13  // 16
	VPBROADCASTD 0(DX), Z15        // off
	MOVL 12(DX), BX                // qs
	MOVL 8(DX), R10                // hasMin: qh at 4, else 2
	SHLL $1, R10
	ADDL $2, R10
	TESTQ CX, CX
	JZ zdqldone

zdqlloop:
	VPBROADCASTW 0(SI), X7
	VCVTPH2PS X7, X7
	VBROADCASTSS X7, Z7            // d
	VPMOVZXBD (SI)(BX*1), Z0       // the 16 bytes
	VPSRLD $4, Z0, Z1              // high nibbles: values 16-31
	VPANDD Z14, Z0, Z0
	CMPL 4(DX), $0
	JEQ zdqlnoh
	KMOVW (SI)(R10*1), K1          // qh bits 0-15
	KMOVW 2(SI)(R10*1), K2         // qh bits 16-31
	VPORD Z13, Z0, K1, Z0
	VPORD Z13, Z1, K2, Z1

zdqlnoh:
	VPSUBD Z15, Z0, Z0
	VPSUBD Z15, Z1, Z1
	VCVTDQ2PS Z0, Z0
	VCVTDQ2PS Z1, Z1
	VMULPS Z7, Z0, Z0
	VMULPS Z7, Z1, Z1
	CMPL 8(DX), $0
	JEQ zdqlstore
	VPBROADCASTW 2(SI), X6
	VCVTPH2PS X6, X6
	VBROADCASTSS X6, Z6            // m
	VADDPS Z6, Z0, Z0
	VADDPS Z6, Z1, Z1

zdqlstore:
	VMOVUPS Z0, 0(DI)
	VMOVUPS Z1, 64(DI)
	ADDQ 16(DX), SI
	ADDQ $128, DI
	DECQ CX
	JNZ zdqlloop

zdqldone:
	VZEROUPPER
	RET

// Z8DQBLOCK(b, PACK): Z8BLOCK, then the block's dequantized values
// float32(q)·fp16(d) (fp16(d) widened, at 128+4b(SP)) stored at R11: the
// quants are still int32 in Z0 and Z1, and equal to the stored bytes
// (|q| ≤ 127 for the normal scales that reach here).
#define Z8DQBLOCK(b, PACK) \
	Z8BLOCK(b, PACK) \
	VBROADCASTSS (128+4*b)(SP), Z6 \
	VCVTDQ2PS Z0, Z0 \
	VCVTDQ2PS Z1, Z1 \
	VMULPS Z6, Z0, Z0 \
	VMULPS Z6, Z1, Z1 \
	VMOVUPS Z0, (128*b)(R11) \
	VMOVUPS Z1, (128*b+64)(R11)

// func quantizeDequantizeQ8_0AVX512(dst *byte, y, src *float32, nb int, vbmi bool) int
// quantizeQ8_0AVX512 that also writes dequantizeQ8_0 of its output to y,
// while the quants are in registers; it stops where quantizeQ8_0AVX512
// does and returns the number of blocks done.
TEXT ·quantizeDequantizeQ8_0AVX512(SB), NOSPLIT, $192-48
	MOVQ dst+0(FP), DI
	MOVQ y+8(FP), R11
	MOVQ src+16(FP), SI
	MOVQ nb+24(FP), CX
	MOVBLZX vbmi+32(FP), BX
	Z8CONSTANTS

zdq8group:
	Z8SCALES(zdq8gdone)
	VCVTPH2PS Y3, Z4 // the scales the output holds, widened back
	VMOVUPS Z4, 128(SP)
	TESTQ BX, BX
	JNZ zdq8permute
	Z8GROUP(Z8DQBLOCK, Z8SATURATE)
	JMP zdq8next

zdq8permute:
	Z8GROUP(Z8DQBLOCK, Z8PERMUTE)

zdq8next:
	ADDQ $2048, SI
	ADDQ $2048, R11
	ADDQ $544, DI
	ADDQ $16, AX
	JMP zdq8group

zdq8gdone:
	MOVQ AX, ret+40(FP)
	VZEROUPPER
	RET

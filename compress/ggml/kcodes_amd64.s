//go:build !purego

#include "textflag.h"

DATA kdq<>+0(SB)/4, $15
DATA kdq<>+4(SB)/4, $1
DATA kdq<>+8(SB)/4, $0x30
DATA kdq<>+12(SB)/4, $32
GLOBL kdq<>(SB), RODATA|NOPTR, $16

// func dequantizeQ4KAVX2(dst *float32, q *byte, dm *[16]float32)
// For each of the four 32-byte groups j of q: the low nibbles are
// sub-block 2j, the high nibbles sub-block 2j+1; y = d·q − m, rounded
// after the multiply as the Go code does.
TEXT ·dequantizeQ4KAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ q+8(FP), SI
	MOVQ dm+16(FP), DX
	VPBROADCASTD kdq<>+0(SB), Y15 // 15
	MOVQ $4, CX

q4kloop:
	VBROADCASTSS 0(DX), Y12  // d of sub-block 2j
	VBROADCASTSS 4(DX), Y13  // d of 2j+1
	VBROADCASTSS 32(DX), Y14 // m of 2j
	VBROADCASTSS 36(DX), Y11 // m of 2j+1

	// Bytes off..off+7 of the group: values off.. of both sub-blocks.
#define Q4KEIGHT(off) \
	VPMOVZXBD off(SI), Y0 \
	VPSRLD $4, Y0, Y1 \
	VPAND Y15, Y0, Y0 \
	VCVTDQ2PS Y0, Y0 \
	VCVTDQ2PS Y1, Y1 \
	VMULPS Y12, Y0, Y0 \
	VMULPS Y13, Y1, Y1 \
	VSUBPS Y14, Y0, Y0 \
	VSUBPS Y11, Y1, Y1 \
	VMOVUPS Y0, (4*off)(DI) \
	VMOVUPS Y1, (4*off+128)(DI)

	Q4KEIGHT(0)
	Q4KEIGHT(8)
	Q4KEIGHT(16)
	Q4KEIGHT(24)
#undef Q4KEIGHT

	ADDQ $32, SI
	ADDQ $256, DI
	ADDQ $8, DX
	DECQ CX
	JNZ q4kloop
	VZEROUPPER
	RET

// func dequantizeQ5KAVX2(dst *float32, qh *byte, dm *[16]float32)
// dequantizeQ4KAVX2 with a fifth bit: bit 2j of qh[i] for value i of
// sub-block 2j, bit 2j+1 for sub-block 2j+1. The low nibbles follow qh.
TEXT ·dequantizeQ5KAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ qh+8(FP), BX
	LEAQ 32(BX), SI
	MOVQ dm+16(FP), DX
	VPBROADCASTD kdq<>+0(SB), Y15 // 15
	VPBROADCASTD kdq<>+4(SB), Y8  // 1
	XORQ R8, R8                   // 2j
	MOVQ $4, CX

q5kloop:
	VMOVQ R8, X10
	LEAQ 1(R8), R9
	VMOVQ R9, X9
	VBROADCASTSS 0(DX), Y12
	VBROADCASTSS 4(DX), Y13
	VBROADCASTSS 32(DX), Y14
	VBROADCASTSS 36(DX), Y11

#define Q5KEIGHT(off) \
	VPMOVZXBD off(SI), Y0 \
	VPMOVZXBD off(BX), Y2 \
	VPSRLD X10, Y2, Y3 \
	VPSRLD X9, Y2, Y2 \
	VPAND Y8, Y3, Y3 \
	VPAND Y8, Y2, Y2 \
	VPSLLD $4, Y3, Y3 \
	VPSLLD $4, Y2, Y2 \
	VPSRLD $4, Y0, Y1 \
	VPAND Y15, Y0, Y0 \
	VPADDD Y3, Y0, Y0 \
	VPADDD Y2, Y1, Y1 \
	VCVTDQ2PS Y0, Y0 \
	VCVTDQ2PS Y1, Y1 \
	VMULPS Y12, Y0, Y0 \
	VMULPS Y13, Y1, Y1 \
	VSUBPS Y14, Y0, Y0 \
	VSUBPS Y11, Y1, Y1 \
	VMOVUPS Y0, (4*off)(DI) \
	VMOVUPS Y1, (4*off+128)(DI)

	Q5KEIGHT(0)
	Q5KEIGHT(8)
	Q5KEIGHT(16)
	Q5KEIGHT(24)
#undef Q5KEIGHT

	ADDQ $32, SI
	ADDQ $256, DI
	ADDQ $8, DX
	ADDQ $2, R8
	DECQ CX
	JNZ q5kloop
	VZEROUPPER
	RET

// func dequantizeQ6KAVX2(dst *float32, x *byte, ds *[16]float32)
// For each half n of the block (ql at 64n, qh at 128+32n, scales 8n..):
// value i (of 32) of the four quarters is
//   ql[i]&15 | (qh[i]&3)<<4,  ql[i+32]&15 | (qh[i]>>2&3)<<4,
//   ql[i]>>4 | (qh[i]>>4&3)<<4, ql[i+32]>>4 | (qh[i]>>6&3)<<4,
// minus 32, times ds[8n + i/16 + 2·quarter].
TEXT ·dequantizeQ6KAVX2(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ x+8(FP), SI
	LEAQ 128(SI), BX
	MOVQ ds+16(FP), DX
	VPBROADCASTD kdq<>+0(SB), Y15 // 15
	VPBROADCASTD kdq<>+8(SB), Y14 // 0x30
	VPBROADCASTD kdq<>+12(SB), Y13 // 32
	MOVQ $2, CX

q6kloop:
	// Values i0..i0+7 of the four quarters, scale is = i0/16.
#define Q6KEIGHT(i0, is) \
	VPMOVZXBD i0(SI), Y0 \
	VPMOVZXBD (i0+32)(SI), Y1 \
	VPMOVZXBD i0(BX), Y2 \
	VPAND Y15, Y0, Y3 \
	VPSLLD $4, Y2, Y4 \
	VPAND Y14, Y4, Y4 \
	VPOR Y4, Y3, Y3 \
	VPSUBD Y13, Y3, Y3 \
	VCVTDQ2PS Y3, Y3 \
	VBROADCASTSS (4*is)(DX), Y5 \
	VMULPS Y5, Y3, Y3 \
	VMOVUPS Y3, (4*i0)(DI) \
	VPAND Y15, Y1, Y3 \
	VPSLLD $2, Y2, Y4 \
	VPAND Y14, Y4, Y4 \
	VPOR Y4, Y3, Y3 \
	VPSUBD Y13, Y3, Y3 \
	VCVTDQ2PS Y3, Y3 \
	VBROADCASTSS (4*is+8)(DX), Y5 \
	VMULPS Y5, Y3, Y3 \
	VMOVUPS Y3, (4*i0+128)(DI) \
	VPSRLD $4, Y0, Y3 \
	VPAND Y14, Y2, Y4 \
	VPOR Y4, Y3, Y3 \
	VPSUBD Y13, Y3, Y3 \
	VCVTDQ2PS Y3, Y3 \
	VBROADCASTSS (4*is+16)(DX), Y5 \
	VMULPS Y5, Y3, Y3 \
	VMOVUPS Y3, (4*i0+256)(DI) \
	VPSRLD $4, Y1, Y3 \
	VPSRLD $2, Y2, Y4 \
	VPAND Y14, Y4, Y4 \
	VPOR Y4, Y3, Y3 \
	VPSUBD Y13, Y3, Y3 \
	VCVTDQ2PS Y3, Y3 \
	VBROADCASTSS (4*is+24)(DX), Y5 \
	VMULPS Y5, Y3, Y3 \
	VMOVUPS Y3, (4*i0+384)(DI)

	Q6KEIGHT(0, 0)
	Q6KEIGHT(8, 0)
	Q6KEIGHT(16, 1)
	Q6KEIGHT(24, 1)
#undef Q6KEIGHT

	ADDQ $64, SI
	ADDQ $32, BX
	ADDQ $32, DX
	ADDQ $512, DI
	DECQ CX
	JNZ q6kloop
	VZEROUPPER
	RET

DATA kpk<>+0(SB)/1, $0x0f
DATA kpk<>+1(SB)/1, $0x10
DATA kpk<>+2(SB)/1, $0x30
GLOBL kpk<>(SB), RODATA|NOPTR, $3

// func packQ4KAVX2(q *[128]byte, l *[QK_K]uint8)
// q[32k+i] = l[64k+i] | l[64k+32+i]<<4. The codes are ≤ 15, so a shift of
// 16-bit lanes moves no bit into the neighbouring byte.
TEXT ·packQ4KAVX2(SB), NOSPLIT, $0-16
	MOVQ q+0(FP), DI
	MOVQ l+8(FP), SI
	MOVQ $4, CX

pk4loop:
	VMOVDQU 0(SI), Y0
	VMOVDQU 32(SI), Y1
	VPSLLW $4, Y1, Y1
	VPOR Y1, Y0, Y0
	VMOVDQU Y0, 0(DI)
	ADDQ $64, SI
	ADDQ $32, DI
	DECQ CX
	JNZ pk4loop
	VZEROUPPER
	RET

// func packQ5KAVX2(q *[160]byte, l *[QK_K]uint8)
// qh (q[0:32]): bit k of qh[i] is bit 4 of l[32k+i]; the low nibbles
// (q[32:160]) as packQ4KAVX2. The codes are ≤ 31.
TEXT ·packQ5KAVX2(SB), NOSPLIT, $0-16
	MOVQ q+0(FP), DI
	MOVQ l+8(FP), SI
	VPBROADCASTB kpk<>+0(SB), Y15 // 0x0f
	VPBROADCASTB kpk<>+1(SB), Y14 // 0x10

	// Row k of 32 codes: bit 4 to bit k of Y8 (bit 4 alone shifts within
	// its byte), its low nibbles to Y0 (even k) or Y1 (odd k).
#define Q5ROW(k, SHIFT, s) \
	VMOVDQU (32*k)(SI), Y2 \
	VPAND Y14, Y2, Y3 \
	SHIFT $s, Y3, Y3 \
	VPOR Y3, Y8, Y8 \
	VPAND Y15, Y2, Y2

	// Rows k0 and k0+1: their bits 4 into Y8, their low nibbles paired
	// into out(DI).
#define Q5PAIR(k0, SH0, s0, k1, SH1, s1, out) \
	Q5ROW(k0, SH0, s0) \
	VMOVDQU Y2, Y1 \
	Q5ROW(k1, SH1, s1) \
	VPSLLW $4, Y2, Y2 \
	VPOR Y2, Y1, Y1 \
	VMOVDQU Y1, out(DI)

	VPXOR Y8, Y8, Y8
	Q5PAIR(0, VPSRLW, 4, 1, VPSRLW, 3, 32)
	Q5PAIR(2, VPSRLW, 2, 3, VPSRLW, 1, 64)
	Q5PAIR(4, VPSRLW, 0, 5, VPSLLW, 1, 96)
	Q5PAIR(6, VPSLLW, 2, 7, VPSLLW, 3, 128)
#undef Q5PAIR
#undef Q5ROW
	VMOVDQU Y8, 0(DI)
	VZEROUPPER
	RET

// func packQ6KAVX2(q *[192]byte, l *[QK_K]int8)
// For each half j (128 codes, 0…63): with a, b, c, d the codes j+i,
// j+i+32, j+i+64, j+i+96, ql[j/2+i] = a&15 | (c&15)<<4, ql[j/2+i+32] =
// b&15 | (d&15)<<4, qh[j/4+i] = a>>4 | (b>>4)<<2 | (c>>4)<<4 | (d>>4)<<6.
// The masks come before the shifts, so no bit crosses a byte.
TEXT ·packQ6KAVX2(SB), NOSPLIT, $0-16
	MOVQ q+0(FP), DI
	MOVQ l+8(FP), SI
	LEAQ 128(DI), BX
	VPBROADCASTB kpk<>+0(SB), Y15 // 0x0f
	VPBROADCASTB kpk<>+2(SB), Y14 // 0x30
	MOVQ $2, CX

pk6loop:
	VMOVDQU 0(SI), Y0  // a
	VMOVDQU 32(SI), Y1 // b
	VMOVDQU 64(SI), Y2 // c
	VMOVDQU 96(SI), Y3 // d
	VPAND Y15, Y0, Y4
	VPAND Y15, Y2, Y5
	VPSLLW $4, Y5, Y5
	VPOR Y5, Y4, Y4
	VMOVDQU Y4, 0(DI)
	VPAND Y15, Y1, Y4
	VPAND Y15, Y3, Y5
	VPSLLW $4, Y5, Y5
	VPOR Y5, Y4, Y4
	VMOVDQU Y4, 32(DI)
	VPAND Y14, Y0, Y0
	VPSRLW $4, Y0, Y0
	VPAND Y14, Y1, Y1
	VPSRLW $2, Y1, Y1
	VPOR Y1, Y0, Y0
	VPAND Y14, Y2, Y2
	VPOR Y2, Y0, Y0
	VPAND Y14, Y3, Y3
	VPSLLW $2, Y3, Y3
	VPOR Y3, Y0, Y0
	VMOVDQU Y0, 0(BX)
	ADDQ $128, SI
	ADDQ $64, DI
	ADDQ $32, BX
	DECQ CX
	JNZ pk6loop
	VZEROUPPER
	RET

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

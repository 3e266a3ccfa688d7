//go:build !purego

#include "textflag.h"

DATA f16Mask7fff<>+0(SB)/8, $0x00007fff00007fff
DATA f16Mask7fff<>+8(SB)/8, $0x00007fff00007fff
GLOBL f16Mask7fff<>(SB), RODATA|NOPTR, $16

DATA f16Mask8000<>+0(SB)/8, $0x0000800000008000
DATA f16Mask8000<>+8(SB)/8, $0x0000800000008000
GLOBL f16Mask8000<>(SB), RODATA|NOPTR, $16

DATA f16Bias<>+0(SB)/8, $0x3800000038000000
DATA f16Bias<>+8(SB)/8, $0x3800000038000000
GLOBL f16Bias<>(SB), RODATA|NOPTR, $16

DATA f16Lo<>+0(SB)/8, $0x000003ff000003ff
DATA f16Lo<>+8(SB)/8, $0x000003ff000003ff
GLOBL f16Lo<>(SB), RODATA|NOPTR, $16

DATA f16Hi<>+0(SB)/8, $0x00007c0000007c00
DATA f16Hi<>+8(SB)/8, $0x00007c0000007c00
GLOBL f16Hi<>(SB), RODATA|NOPTR, $16

// func decodeF16NormalAsm(dst *float32, src *byte, n int) int
// For each h: em = h&0x7fff; normal iff 0x3ff < em < 0x7c00; then
// bits = (h&0x8000)<<16 | (em<<13 + 112<<23).
TEXT ·decodeF16NormalAsm(SB), NOSPLIT, $0-32
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	XORQ AX, AX
	PXOR X15, X15
	MOVOU f16Mask7fff<>(SB), X8
	MOVOU f16Mask8000<>(SB), X9
	MOVOU f16Bias<>(SB), X10
	MOVOU f16Lo<>(SB), X11
	MOVOU f16Hi<>(SB), X12

loop:
	MOVOU (SI), X0
	MOVO X0, X1
	PUNPCKLWL X15, X1 // h0..h3 as uint32
	PUNPCKHWL X15, X0 // h4..h7

	MOVO X1, X2
	PAND X8, X2       // em
	MOVO X2, X3
	PCMPGTL X11, X3   // em > 0x3ff
	MOVO X12, X4
	PCMPGTL X2, X4    // 0x7c00 > em
	PAND X4, X3       // normal
	PSLLL $13, X2
	PADDL X10, X2
	PAND X9, X1
	PSLLL $16, X1
	POR X2, X1        // float32 bits

	MOVO X0, X5
	PAND X8, X5
	MOVO X5, X6
	PCMPGTL X11, X6
	MOVO X12, X7
	PCMPGTL X5, X7
	PAND X7, X6
	PSLLL $13, X5
	PADDL X10, X5
	PAND X9, X0
	PSLLL $16, X0
	POR X5, X0

	PAND X6, X3
	MOVMSKPS X3, DX
	CMPQ DX, $15
	JNE done
	MOVOU X1, (DI)
	MOVOU X0, 16(DI)
	ADDQ $16, SI
	ADDQ $32, DI
	ADDQ $8, AX
	DECQ CX
	JNZ loop

done:
	MOVQ AX, ret+24(FP)
	RET

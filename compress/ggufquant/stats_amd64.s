//go:build !purego

#include "textflag.h"

DATA statAbs<>+0(SB)/8, $0x7fffffffffffffff
DATA statAbs<>+8(SB)/8, $0x7fffffffffffffff
GLOBL statAbs<>(SB), RODATA|NOPTR, $16

// func errorSums(x, y *float32, n int, acc *statSums)
// Lanes 0,1 of each sum are in the low register of its pair, lanes 2,3 in
// the high one; element i of every group of four goes to lane i.
TEXT ·errorSums(SB), NOSPLIT, $0-32
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ n+16(FP), CX
	MOVQ acc+24(FP), R8
	MOVUPD 0(R8), X0   // xx 0,1
	MOVUPD 16(R8), X1  // xx 2,3
	MOVUPD 32(R8), X2  // yy
	MOVUPD 48(R8), X3
	MOVUPD 64(R8), X4  // xy
	MOVUPD 80(R8), X5
	MOVUPD 96(R8), X6  // ee
	MOVUPD 112(R8), X7
	MOVSD 128(R8), X8  // mx (both lanes: the maximum is order-free)
	MOVLHPS X8, X8
	MOVUPD statAbs<>(SB), X9
	SHRQ $2, CX
	JZ done

loop:
	MOVUPS (SI), X10
	CVTPS2PD X10, X11  // a 0,1
	MOVHLPS X10, X10
	CVTPS2PD X10, X10  // a 2,3
	MOVUPS (DI), X12
	CVTPS2PD X12, X13  // b 0,1
	MOVHLPS X12, X12
	CVTPS2PD X12, X12  // b 2,3

	MOVAPD X11, X14
	MULPD X13, X14
	ADDPD X14, X4      // xy += a*b
	MOVAPD X10, X14
	MULPD X12, X14
	ADDPD X14, X5

	MOVAPD X11, X14
	SUBPD X13, X14     // e 0,1
	MOVAPD X10, X15
	SUBPD X12, X15     // e 2,3

	MULPD X11, X11
	ADDPD X11, X0      // xx += a*a
	MULPD X10, X10
	ADDPD X10, X1
	MULPD X13, X13
	ADDPD X13, X2      // yy += b*b
	MULPD X12, X12
	ADDPD X12, X3

	MOVAPD X14, X11
	ANDPD X9, X11      // |e|
	MAXPD X8, X11      // |e| > mx ? |e| : mx (NaN keeps mx)
	MOVAPD X11, X8
	MOVAPD X15, X11
	ANDPD X9, X11
	MAXPD X8, X11
	MOVAPD X11, X8

	MULPD X14, X14
	ADDPD X14, X6      // ee += e*e
	MULPD X15, X15
	ADDPD X15, X7

	ADDQ $16, SI
	ADDQ $16, DI
	DECQ CX
	JNZ loop

done:
	MOVUPD X0, 0(R8)
	MOVUPD X1, 16(R8)
	MOVUPD X2, 32(R8)
	MOVUPD X3, 48(R8)
	MOVUPD X4, 64(R8)
	MOVUPD X5, 80(R8)
	MOVUPD X6, 96(R8)
	MOVUPD X7, 112(R8)
	MOVAPD X8, X10
	MOVHLPS X10, X10
	MAXSD X10, X8
	MOVSD X8, 128(R8)
	RET

// func finitePrefixAsm(x *float32, n int) int
TEXT ·finitePrefixAsm(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	SHRQ $3, CX
	XORQ AX, AX

fploop:
	MOVUPS (SI), X0
	MOVUPS 16(SI), X1
	MOVAPS X0, X2
	SUBPS X0, X2     // v - v: 0, or NaN for NaN and ±Inf
	MOVAPS X1, X3
	SUBPS X1, X3
	ADDPS X3, X2     // NaN in a lane if either was NaN
	CMPPS X2, X2, $3 // unordered: all ones where NaN
	MOVMSKPS X2, DX
	TESTQ DX, DX
	JNZ fpdone
	ADDQ $32, SI
	ADDQ $8, AX
	DECQ CX
	JNZ fploop

fpdone:
	MOVQ AX, ret+16(FP)
	RET

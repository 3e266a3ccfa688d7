//go:build !purego

#include "textflag.h"

DATA statAbs<>+0(SB)/8, $0x7fffffffffffffff
DATA statAbs<>+8(SB)/8, $0x7fffffffffffffff
GLOBL statAbs<>(SB), RODATA|NOPTR, $16

// func errorSumsSSE2(x, y *float32, n int, acc *statSums)
// Lanes 0,1 of each sum are in the low register of its pair, lanes 2,3 in
// the high one; element i of every group of four goes to lane i.
TEXT ·errorSumsSSE2(SB), NOSPLIT, $0-32
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

DATA statAbs4<>+0(SB)/8, $0x7fffffffffffffff
DATA statAbs4<>+8(SB)/8, $0x7fffffffffffffff
DATA statAbs4<>+16(SB)/8, $0x7fffffffffffffff
DATA statAbs4<>+24(SB)/8, $0x7fffffffffffffff
GLOBL statAbs4<>(SB), RODATA|NOPTR, $32

DATA statOne<>+0(SB)/8, $0x3ff0000000000000 // 1.0
GLOBL statOne<>(SB), RODATA|NOPTR, $8

// func errorSumsAVX2(x, y *float32, n int, acc *statSums)
// errorSums with the four lanes of each sum in one YMM register: lane k
// holds element k of every group of four, as in errorSumsGo. xx, yy and xy
// are fused multiply-adds: the product of two float32 values is exact in
// float64 (48 significant bits at most, far from overflow and underflow),
// so rounding acc + a*b once is what the add after an exact multiply
// does, bit for bit, and the adds move off the add ports the loop is
// bound by. ee is not fused: e = a − b may be rounded, and so is e·e.
TEXT ·errorSumsAVX2(SB), NOSPLIT, $0-32
	MOVQ x+0(FP), SI
	MOVQ y+8(FP), DI
	MOVQ n+16(FP), CX
	MOVQ acc+24(FP), R8
	VMOVUPD 0(R8), Y0     // xx
	VMOVUPD 32(R8), Y1    // yy
	VMOVUPD 64(R8), Y2    // xy
	VMOVUPD 96(R8), Y3    // ee
	VBROADCASTSD 128(R8), Y4 // mx in every lane: the maximum is order-free
	VMOVUPD statAbs4<>(SB), Y15
	SHRQ $2, CX
	JZ avxdone

avxloop:
	VCVTPS2PD (SI), Y5    // a
	VCVTPS2PD (DI), Y6    // b
	VFMADD231PD Y6, Y5, Y2 // xy += a*b
	VSUBPD Y6, Y5, Y8     // e = a - b
	VFMADD231PD Y5, Y5, Y0 // xx += a*a
	VFMADD231PD Y6, Y6, Y1 // yy += b*b
	VANDPD Y15, Y8, Y11   // |e|
	VMAXPD Y4, Y11, Y4    // |e| > mx ? |e| : mx (NaN keeps mx)
	VMULPD Y8, Y8, Y12
	VADDPD Y12, Y3, Y3    // ee += e*e
	ADDQ $16, SI
	ADDQ $16, DI
	DECQ CX
	JNZ avxloop

avxdone:
	VMOVUPD Y0, 0(R8)
	VMOVUPD Y1, 32(R8)
	VMOVUPD Y2, 64(R8)
	VMOVUPD Y3, 96(R8)
	VEXTRACTF128 $1, Y4, X5
	VMAXPD X5, X4, X4
	VPERMILPD $1, X4, X5
	VMAXSD X5, X4, X4
	VMOVSD X4, 128(R8)
	VZEROUPPER
	RET

// func finitePrefixAVX2(x *float32, n int) int
// finitePrefixAsm in groups of 16 (two YMM registers).
TEXT ·finitePrefixAVX2(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	SHRQ $4, CX
	XORQ AX, AX
	TESTQ CX, CX
	JZ fpavxdone

fpavxloop:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VSUBPS Y0, Y0, Y2    // v - v: 0, or NaN for NaN and ±Inf
	VSUBPS Y1, Y1, Y3
	VADDPS Y3, Y2, Y2
	VCMPPS $3, Y2, Y2, Y2 // unordered: all ones where NaN
	VMOVMSKPS Y2, DX
	TESTQ DX, DX
	JNZ fpavxdone
	ADDQ $64, SI
	ADDQ $16, AX
	DECQ CX
	JNZ fpavxloop

fpavxdone:
	MOVQ AX, ret+16(FP)
	VZEROUPPER
	RET

// func errorSums2AVX2(x1, y1, x2, y2 *float32, n int, a1, a2 *statSums)
// errorSumsAVX2 on two independent runs at once, x1/y1 into a1 and x2/y2
// into a2, n pairs each: every sum of a run is still one chain per lane,
// in the same order, so a1 and a2 get the bits of two errorSumsAVX2 calls.
// One run's chains wait on the FMA latency, four cycles per group of four;
// the other run's work fills those cycles. e = a − b is a fused
// −(1·b) + a: 1·b is exact, so it is a − b rounded once, the bits of the
// subtraction (±0 included), on the multiply pipes instead of the add
// pipes, which the conversions keep busier (5.20 → 5.40 G pairs/s).
TEXT ·errorSums2AVX2(SB), NOSPLIT, $0-56
	MOVQ x1+0(FP), SI
	MOVQ y1+8(FP), DI
	MOVQ x2+16(FP), R9
	MOVQ y2+24(FP), R10
	MOVQ n+32(FP), CX
	MOVQ a1+40(FP), R8
	MOVQ a2+48(FP), R11
	VMOVUPD 0(R8), Y0     // xx 1
	VMOVUPD 32(R8), Y1    // yy 1
	VMOVUPD 64(R8), Y2    // xy 1
	VMOVUPD 96(R8), Y3    // ee 1
	VMOVUPD 0(R11), Y4    // xx 2
	VMOVUPD 32(R11), Y5   // yy 2
	VMOVUPD 64(R11), Y6   // xy 2
	VMOVUPD 96(R11), Y7   // ee 2
	VBROADCASTSD 128(R8), Y8  // mx 1
	VBROADCASTSD 128(R11), Y9 // mx 2
	VMOVUPD statAbs4<>(SB), Y15
	VBROADCASTSD statOne<>(SB), Y14
	SHRQ $2, CX
	JZ avx2done

avx2loop:
	VCVTPS2PD (SI), Y10    // a 1
	VCVTPS2PD (DI), Y11    // b 1
	VFMADD231PD Y11, Y10, Y2
	VMOVAPD Y10, Y12
	VFNMADD231PD Y11, Y14, Y12 // e 1 = a - 1·b
	VFMADD231PD Y10, Y10, Y0
	VFMADD231PD Y11, Y11, Y1
	VANDPD Y15, Y12, Y13
	VMAXPD Y8, Y13, Y8     // NaN keeps mx
	VMULPD Y12, Y12, Y12
	VADDPD Y12, Y3, Y3
	VCVTPS2PD (R9), Y10    // a 2
	VCVTPS2PD (R10), Y11   // b 2
	VFMADD231PD Y11, Y10, Y6
	VMOVAPD Y10, Y13
	VFNMADD231PD Y11, Y14, Y13 // e 2
	VFMADD231PD Y10, Y10, Y4
	VFMADD231PD Y11, Y11, Y5
	VANDPD Y15, Y13, Y10
	VMAXPD Y9, Y10, Y9
	VMULPD Y13, Y13, Y13
	VADDPD Y13, Y7, Y7
	ADDQ $16, SI
	ADDQ $16, DI
	ADDQ $16, R9
	ADDQ $16, R10
	DECQ CX
	JNZ avx2loop

avx2done:
	VMOVUPD Y0, 0(R8)
	VMOVUPD Y1, 32(R8)
	VMOVUPD Y2, 64(R8)
	VMOVUPD Y3, 96(R8)
	VMOVUPD Y4, 0(R11)
	VMOVUPD Y5, 32(R11)
	VMOVUPD Y6, 64(R11)
	VMOVUPD Y7, 96(R11)
	VEXTRACTF128 $1, Y8, X10
	VMAXPD X10, X8, X8
	VPERMILPD $1, X8, X10
	VMAXSD X10, X8, X8
	VMOVSD X8, 128(R8)
	VEXTRACTF128 $1, Y9, X10
	VMAXPD X10, X9, X9
	VPERMILPD $1, X9, X10
	VMAXSD X10, X9, X9
	VMOVSD X9, 128(R11)
	VZEROUPPER
	RET

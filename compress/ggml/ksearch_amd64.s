//go:build !purego

#include "textflag.h"

// See ksearch.go. Every lane does the scalar reference operations in the
// same order; MAXPS/MINPS then ±1.5·2²³ stand for nearestInt and the clamp.

DATA ksMagic<>+0(SB)/4, $0x4b400000
DATA ksMagic<>+4(SB)/4, $0x4b400000
DATA ksMagic<>+8(SB)/4, $0x4b400000
DATA ksMagic<>+12(SB)/4, $0x4b400000
GLOBL ksMagic<>(SB), RODATA|NOPTR, $16

DATA ksM32<>+0(SB)/4, $0xc2000000
DATA ksM32<>+4(SB)/4, $0xc2000000
DATA ksM32<>+8(SB)/4, $0xc2000000
DATA ksM32<>+12(SB)/4, $0xc2000000
GLOBL ksM32<>(SB), RODATA|NOPTR, $16

DATA ksP31<>+0(SB)/4, $0x41f80000
DATA ksP31<>+4(SB)/4, $0x41f80000
DATA ksP31<>+8(SB)/4, $0x41f80000
DATA ksP31<>+12(SB)/4, $0x41f80000
GLOBL ksP31<>(SB), RODATA|NOPTR, $16

// func qkx2Sums(xt, wt, fq *[QK_K]float32, ln *qkLanes)
TEXT ·qkx2Sums(SB), NOSPLIT, $0-32
	MOVQ xt+0(FP), SI
	MOVQ wt+8(FP), DI
	MOVQ fq+16(FP), R8
	MOVQ ln+24(FP), R9
	MOVUPS 0(R9), X6   // isc, lanes 0-3
	MOVUPS 16(R9), X7  // isc, lanes 4-7
	MOVUPS 32(R9), X8  // mn, lanes 0-3
	MOVUPS 48(R9), X9  // mn, lanes 4-7
	MOVUPS 64(R9), X10 // nmax
	MOVUPS ksMagic<>(SB), X11
	XORPS X12, X12
	XORPS X0, X0 // sL 0-3
	XORPS X1, X1 // sL 4-7
	XORPS X2, X2 // sL2 0-3
	XORPS X3, X3 // sL2 4-7
	XORPS X4, X4 // sXL 0-3
	XORPS X5, X5 // sXL 4-7
	XORQ AX, AX
	MOVQ $32, CX

qkx2row:
	MOVUPS (SI)(AX*1), X13
	SUBPS X8, X13   // x - mn
	MULPS X6, X13   // isc*(x-mn)
	MAXPS X12, X13
	MINPS X10, X13
	ADDPS X11, X13
	SUBPS X11, X13  // L
	MOVUPS X13, (R8)(AX*1)
	MOVUPS (DI)(AX*1), X14
	MULPS X13, X14  // wl = w*L
	ADDPS X14, X0
	MOVUPS (SI)(AX*1), X15
	MULPS X14, X15  // wl*x
	MULPS X13, X14  // wl*L
	ADDPS X14, X2
	ADDPS X15, X4

	MOVUPS 16(SI)(AX*1), X13
	SUBPS X9, X13
	MULPS X7, X13
	MAXPS X12, X13
	MINPS X10, X13
	ADDPS X11, X13
	SUBPS X11, X13
	MOVUPS X13, 16(R8)(AX*1)
	MOVUPS 16(DI)(AX*1), X14
	MULPS X13, X14
	ADDPS X14, X1
	MOVUPS 16(SI)(AX*1), X15
	MULPS X14, X15
	MULPS X13, X14
	ADDPS X14, X3
	ADDPS X15, X5

	ADDQ $32, AX
	DECQ CX
	JNZ qkx2row

	MOVUPS X0, 80(R9)
	MOVUPS X1, 96(R9)
	MOVUPS X2, 112(R9)
	MOVUPS X3, 128(R9)
	MOVUPS X4, 144(R9)
	MOVUPS X5, 160(R9)
	RET

// func qkx2Errors(xt, wt, fq *[QK_K]float32, ln *qkLanes)
TEXT ·qkx2Errors(SB), NOSPLIT, $0-32
	MOVQ xt+0(FP), SI
	MOVQ wt+8(FP), DI
	MOVQ fq+16(FP), R8
	MOVQ ln+24(FP), R9
	MOVUPS 176(R9), X6 // ts 0-3
	MOVUPS 192(R9), X7 // ts 4-7
	MOVUPS 208(R9), X8 // tm 0-3
	MOVUPS 224(R9), X9 // tm 4-7
	XORPS X0, X0
	XORPS X1, X1
	XORQ AX, AX
	MOVQ $32, CX

qkerrrow:
	MOVUPS (R8)(AX*1), X10
	MULPS X6, X10   // ts*L
	ADDPS X8, X10   // + tm
	MOVUPS (SI)(AX*1), X11
	SUBPS X11, X10  // - x
	MULPS X10, X10  // d*d
	MOVUPS (DI)(AX*1), X11
	MULPS X11, X10  // w*(d*d)
	ADDPS X10, X0

	MOVUPS 16(R8)(AX*1), X12
	MULPS X7, X12
	ADDPS X9, X12
	MOVUPS 16(SI)(AX*1), X13
	SUBPS X13, X12
	MULPS X12, X12
	MOVUPS 16(DI)(AX*1), X13
	MULPS X13, X12
	ADDPS X12, X1

	ADDQ $32, AX
	DECQ CX
	JNZ qkerrrow

	MOVUPS X0, 240(R9)
	MOVUPS X1, 256(R9)
	RET

// func qx6Sums(xt, wt, wvt *[QK_K]float32, isc, sLX, sL2 *[16]float32)
TEXT ·qx6Sums(SB), NOSPLIT, $0-48
	MOVQ xt+0(FP), SI
	MOVQ wt+8(FP), DI
	MOVQ wvt+16(FP), R8
	MOVQ isc+24(FP), R9
	MOVQ sLX+32(FP), R10
	MOVQ sL2+40(FP), R11
	MOVUPS ksM32<>(SB), X6
	MOVUPS ksP31<>(SB), X7
	MOVUPS ksMagic<>(SB), X8
	XORQ BX, BX // lane byte offset of this pass: 0, then 32

qx6pass:
	MOVUPS (R9)(BX*1), X4
	MOVUPS 16(R9)(BX*1), X5
	XORPS X0, X0 // sLX, lanes +0..3
	XORPS X1, X1 // sL2, lanes +0..3
	XORPS X2, X2 // sLX, lanes +4..7
	XORPS X3, X3 // sL2, lanes +4..7
	MOVQ BX, AX
	MOVQ $16, CX

qx6row:
	MOVUPS (SI)(AX*1), X9
	MULPS X4, X9
	MAXPS X6, X9
	MINPS X7, X9
	ADDPS X8, X9
	SUBPS X8, X9 // L
	MOVUPS (R8)(AX*1), X10
	MULPS X9, X10 // (w*x)*L
	ADDPS X10, X0
	MOVUPS (DI)(AX*1), X11
	MULPS X9, X11 // w*L
	MULPS X9, X11 // *L
	ADDPS X11, X1

	MOVUPS 16(SI)(AX*1), X12
	MULPS X5, X12
	MAXPS X6, X12
	MINPS X7, X12
	ADDPS X8, X12
	SUBPS X8, X12
	MOVUPS 16(R8)(AX*1), X13
	MULPS X12, X13
	ADDPS X13, X2
	MOVUPS 16(DI)(AX*1), X14
	MULPS X12, X14
	MULPS X12, X14
	ADDPS X14, X3

	ADDQ $64, AX
	DECQ CX
	JNZ qx6row

	MOVUPS X0, (R10)(BX*1)
	MOVUPS X2, 16(R10)(BX*1)
	MOVUPS X1, (R11)(BX*1)
	MOVUPS X3, 16(R11)(BX*1)
	ADDQ $32, BX
	CMPQ BX, $64
	JLT qx6pass
	RET

DATA ksOne<>+0(SB)/4, $0x4b400000  // 1.5·2²³
DATA ksOne<>+4(SB)/4, $0x4a000000  // 2²¹, the range limit of the rounding
DATA ksOne<>+8(SB)/4, $0x7fffffff  // |·| mask
GLOBL ksOne<>(SB), RODATA|NOPTR, $12

// func qkx2LoopAVX2(xt, wt, fq, bq *[QK_K]float32, s *qkState, nmax, rmin, rdelta float32, is, nstep int) int
//
// qkx2Step for candidates is, is+1, …, nstep with the 8 lanes in one
// register, each doing the scalar operations of makeQKX2 in its order. It
// returns nstep+1, or the first candidate whose rounding range needs the
// scalar code in some lane (left for qkx2Step).
TEXT ·qkx2LoopAVX2(SB), NOSPLIT, $0-80
	MOVQ xt+0(FP), SI
	MOVQ wt+8(FP), DI
	MOVQ fq+16(FP), R8
	MOVQ bq+24(FP), R11
	MOVQ s+32(FP), R9
	MOVQ is+56(FP), BX
	MOVQ nstep+64(FP), DX
	VXORPS Y14, Y14, Y14
	VBROADCASTSS nmax+40(FP), Y13
	VBROADCASTSS ksOne<>+4(SB), Y12
	VBROADCASTSS ksOne<>+8(SB), Y11
	CMPQ BX, DX
	JGT qkldone

qkltop:
	// num = (rmin + rdelta·is) + nmax, in float32 as qkx2Step.
	VCVTSI2SSQ BX, X0, X0
	VMULSS rdelta+48(FP), X0, X0
	VADDSS rmin+44(FP), X0, X0
	VADDSS nmax+40(FP), X0, X0
	VBROADCASTSS X0, Y0
	VMOVUPS 0(R9), Y1          // mn
	VMOVUPS 32(R9), Y2         // mx
	VSUBPS Y1, Y2, Y3          // mx − mn
	VDIVPS Y3, Y0, Y4          // isc = num / (mx − mn)
	VANDPS 224(R9), Y4, Y4     // 0 in inactive lanes
	VMULPS Y3, Y4, Y5          // b = isc·(mx − mn)
	VMOVUPS 64(R9), Y6
	VSUBPS Y1, Y6, Y6
	VMULPS Y4, Y6, Y6          // a = isc·(lo − mn)
	VANDPS Y11, Y5, Y5
	VANDPS Y11, Y6, Y6
	VCMPPS $0x11, Y12, Y5, Y5  // |b| < 2²¹
	VCMPPS $0x11, Y12, Y6, Y6  // |a| < 2²¹
	VANDPS Y5, Y6, Y6
	VMOVMSKPS Y6, AX
	CMPL AX, $0xff
	JNE qkldone

	VXORPS Y6, Y6, Y6          // sL
	VXORPS Y7, Y7, Y7          // sL2
	VXORPS Y8, Y8, Y8          // sXL
	XORQ R10, R10
	MOVQ $32, CX

qklsums:
	VMOVUPS (SI)(R10*1), Y2    // x
	VSUBPS Y1, Y2, Y3
	VMULPS Y4, Y3, Y3          // isc·(x − mn)
	VMAXPS Y14, Y3, Y3
	VMINPS Y13, Y3, Y3
	VROUNDPS $0, Y3, Y3        // L = nearest_int: to nearest even, as the magic-number add for 0 ≤ v ≤ nmax
	VMOVUPS Y3, (R8)(R10*1)
	VMULPS (DI)(R10*1), Y3, Y5 // wl = w·L
	VADDPS Y5, Y6, Y6
	VMULPS Y2, Y5, Y9          // wl·x
	VMULPS Y3, Y5, Y5          // wl·L
	VADDPS Y5, Y7, Y7
	VADDPS Y9, Y8, Y8
	ADDQ $32, R10
	DECQ CX
	JNZ qklsums

	VMOVUPS 96(R9), Y9         // sumW
	VMOVUPS 128(R9), Y10       // sumX
	VMULPS Y7, Y9, Y0
	VMULPS Y6, Y6, Y1
	VSUBPS Y1, Y0, Y0          // d = sumW·sL2 − sL·sL
	VCMPPS $0x11, Y0, Y14, Y1  // ok = 0 < d
	VMOVMSKPS Y1, AX
	TESTL AX, AX
	JZ qklnext
	VMULPS Y8, Y9, Y2
	VMULPS Y6, Y10, Y3
	VSUBPS Y3, Y2, Y2
	VDIVPS Y0, Y2, Y2          // ts = (sumW·sXL − sumX·sL) / d
	VMULPS Y10, Y7, Y3
	VMULPS Y8, Y6, Y5
	VSUBPS Y5, Y3, Y3
	VDIVPS Y0, Y3, Y3          // tm = (sL2·sumX − sL·sXL) / d
	VCMPPS $0x11, Y3, Y14, Y5  // tm > 0
	VDIVPS Y7, Y8, Y9          // sXL / sL2
	VBLENDVPS Y5, Y9, Y2, Y2
	VANDNPS Y3, Y5, Y3

	VXORPS Y6, Y6, Y6          // ce
	XORQ R10, R10
	MOVQ $32, CX

qklerrs:
	VMOVUPS (R8)(R10*1), Y0
	VMULPS Y2, Y0, Y0          // ts·L
	VADDPS Y3, Y0, Y0          // + tm
	VSUBPS (SI)(R10*1), Y0, Y0 // − x
	VMULPS Y0, Y0, Y0
	VMULPS (DI)(R10*1), Y0, Y0 // w·d²
	VADDPS Y0, Y6, Y6
	ADDQ $32, R10
	DECQ CX
	JNZ qklerrs

	VMOVUPS 160(R9), Y0        // best
	VCMPPS $0x11, Y0, Y6, Y5   // ce < best
	VANDPS Y1, Y5, Y5
	VMOVMSKPS Y5, AX
	TESTL AX, AX
	JZ qklnext
	VBLENDVPS Y5, Y6, Y0, Y0
	VMOVUPS Y0, 160(R9)
	VMOVUPS 192(R9), Y0
	VBLENDVPS Y5, Y2, Y0, Y0
	VMOVUPS Y0, 192(R9)        // scale = ts
	VMOVUPS 0(R9), Y0
	VBLENDVPS Y5, Y3, Y0, Y0
	VMOVUPS Y0, 0(R9)          // mn = tm
	XORQ R10, R10
	MOVQ $32, CX

qklcopy:
	VMOVUPS (R11)(R10*1), Y0
	VBLENDVPS Y5, (R8)(R10*1), Y0, Y0
	VMOVUPS Y0, (R11)(R10*1)
	ADDQ $32, R10
	DECQ CX
	JNZ qklcopy

qklnext:
	INCQ BX
	CMPQ BX, DX
	JLE qkltop

qkldone:
	MOVQ BX, ret+72(FP)
	VZEROUPPER
	RET

// func qx6LoopAVX2(xt, wt, wvt *[QK_K]float32, s *q6State, nums *[18]float32)
//
// The candidate loop of qx6Search with 8 lanes a register (two registers
// for the 16 sub-blocks): each lane does makeQX6's operations in its order
// and keeps the best candidate's scale, error and inverse scale.
TEXT ·qx6LoopAVX2(SB), NOSPLIT, $0-40
	MOVQ xt+0(FP), SI
	MOVQ wt+8(FP), DI
	MOVQ wvt+16(FP), R8
	MOVQ s+24(FP), R9
	MOVQ nums+32(FP), R10
	VBROADCASTSS ksM32<>(SB), Y15
	VBROADCASTSS ksP31<>(SB), Y14
	VXORPS Y12, Y12, Y12
	XORQ R12, R12

q6ltop:
	VBROADCASTSS (R10)(R12*4), Y0
	VDIVPS 0(R9), Y0, Y1       // isc = num / mx, lanes 0-7
	VANDPS 256(R9), Y1, Y1
	VDIVPS 32(R9), Y0, Y2      // lanes 8-15
	VANDPS 288(R9), Y2, Y2
	VXORPS Y3, Y3, Y3          // sLX 0-7
	VXORPS Y4, Y4, Y4          // sL2 0-7
	VXORPS Y5, Y5, Y5          // sLX 8-15
	VXORPS Y6, Y6, Y6          // sL2 8-15
	XORQ AX, AX
	MOVQ $16, CX

q6lrow:
	VMULPS (SI)(AX*1), Y1, Y7
	VMAXPS Y15, Y7, Y7
	VMINPS Y14, Y7, Y7
	VROUNDPS $0, Y7, Y7        // L = nearest_int: to nearest even, as the magic-number add for −32 ≤ v ≤ 31
	VMULPS (R8)(AX*1), Y7, Y8  // (w·x)·L
	VADDPS Y8, Y3, Y3
	VMULPS (DI)(AX*1), Y7, Y8  // w·L
	VMULPS Y7, Y8, Y8          // ·L
	VADDPS Y8, Y4, Y4
	VMULPS 32(SI)(AX*1), Y2, Y9
	VMAXPS Y15, Y9, Y9
	VMINPS Y14, Y9, Y9
	VROUNDPS $0, Y9, Y9
	VMULPS 32(R8)(AX*1), Y9, Y10
	VADDPS Y10, Y5, Y5
	VMULPS 32(DI)(AX*1), Y9, Y10
	VMULPS Y9, Y10, Y10
	VADDPS Y10, Y6, Y6
	ADDQ $64, AX
	DECQ CX
	JNZ q6lrow

	// lanes 0-7: take the candidate where sL2 > 0 and sLX² > best·sL2.
	VCMPPS $0x11, Y4, Y12, Y7  // 0 < sL2
	VMULPS Y3, Y3, Y8
	VMULPS 64(R9), Y4, Y9
	VCMPPS $0x11, Y8, Y9, Y9   // best·sL2 < sLX²
	VANDPS Y7, Y9, Y9
	VANDPS 256(R9), Y9, Y9
	VMOVMSKPS Y9, AX
	TESTL AX, AX
	JZ q6lhi
	VDIVPS Y4, Y3, Y10         // scale = sLX / sL2
	VMULPS Y3, Y10, Y11        // best = scale·sLX
	VMOVUPS 128(R9), Y8
	VBLENDVPS Y9, Y10, Y8, Y8
	VMOVUPS Y8, 128(R9)
	VMOVUPS 64(R9), Y8
	VBLENDVPS Y9, Y11, Y8, Y8
	VMOVUPS Y8, 64(R9)
	VMOVUPS 192(R9), Y8
	VBLENDVPS Y9, Y1, Y8, Y8
	VMOVUPS Y8, 192(R9)

q6lhi:
	VCMPPS $0x11, Y6, Y12, Y7
	VMULPS Y5, Y5, Y8
	VMULPS 96(R9), Y6, Y9
	VCMPPS $0x11, Y8, Y9, Y9
	VANDPS Y7, Y9, Y9
	VANDPS 288(R9), Y9, Y9
	VMOVMSKPS Y9, AX
	TESTL AX, AX
	JZ q6lnext
	VDIVPS Y6, Y5, Y10
	VMULPS Y5, Y10, Y11
	VMOVUPS 160(R9), Y8
	VBLENDVPS Y9, Y10, Y8, Y8
	VMOVUPS Y8, 160(R9)
	VMOVUPS 96(R9), Y8
	VBLENDVPS Y9, Y11, Y8, Y8
	VMOVUPS Y8, 96(R9)
	VMOVUPS 224(R9), Y8
	VBLENDVPS Y9, Y2, Y8, Y8
	VMOVUPS Y8, 224(R9)

q6lnext:
	INCQ R12
	CMPQ R12, $18
	JLT q6ltop
	VZEROUPPER
	RET

DATA kqc<>+0(SB)/4, $0x4b400000  // 1.5·2²³
DATA kqc<>+4(SB)/4, $0x007fffff  // mantissa mask
DATA kqc<>+8(SB)/4, $0x00400000
GLOBL kqc<>(SB), RODATA|NOPTR, $12

// VPERMD order that undoes the lane interleaving of the two packs.
DATA kqperm<>+0(SB)/4, $0
DATA kqperm<>+4(SB)/4, $4
DATA kqperm<>+8(SB)/4, $1
DATA kqperm<>+12(SB)/4, $5
DATA kqperm<>+16(SB)/4, $2
DATA kqperm<>+20(SB)/4, $6
DATA kqperm<>+24(SB)/4, $3
DATA kqperm<>+28(SB)/4, $7
GLOBL kqperm<>(SB), RODATA|NOPTR, $32

// func kQuantsAVX2(l *[QK_K]uint8, x *[QK_K]float32, d, dm *[8]float32, nmax int32)
//
// For every sub-block j with d[j] != 0: l = clamp(nearestInt((x+dm)/d),
// 0, nmax), nearestInt being the reference's bit trick, exact for every
// input (NaN and ±Inf included).
TEXT ·kQuantsAVX2(SB), NOSPLIT, $0-36
	MOVQ l+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ d+16(FP), R8
	MOVQ dm+24(FP), R9
	MOVL nmax+32(FP), AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15
	VPBROADCASTD kqc<>+0(SB), Y14
	VPBROADCASTD kqc<>+4(SB), Y13
	VPBROADCASTD kqc<>+8(SB), Y12
	VPXOR Y11, Y11, Y11
	VMOVDQU kqperm<>(SB), Y10
	XORQ R12, R12

kqtop:
	VMOVSS (R8)(R12*4), X0
	VUCOMISS X11, X0
	JP kqdo    // NaN: not 0
	JE kqnext  // ±0: leave the search's quants
kqdo:
	VBROADCASTSS X0, Y0
	VBROADCASTSS (R9)(R12*4), Y1
	VADDPS 0(SI), Y1, Y2
	VADDPS 32(SI), Y1, Y3
	VADDPS 64(SI), Y1, Y4
	VADDPS 96(SI), Y1, Y5
	VDIVPS Y0, Y2, Y2
	VDIVPS Y0, Y3, Y3
	VDIVPS Y0, Y4, Y4
	VDIVPS Y0, Y5, Y5
	VADDPS Y14, Y2, Y2
	VADDPS Y14, Y3, Y3
	VADDPS Y14, Y4, Y4
	VADDPS Y14, Y5, Y5
	VPAND Y13, Y2, Y2
	VPAND Y13, Y3, Y3
	VPAND Y13, Y4, Y4
	VPAND Y13, Y5, Y5
	VPSUBD Y12, Y2, Y2
	VPSUBD Y12, Y3, Y3
	VPSUBD Y12, Y4, Y4
	VPSUBD Y12, Y5, Y5
	VPMINSD Y15, Y2, Y2
	VPMINSD Y15, Y3, Y3
	VPMINSD Y15, Y4, Y4
	VPMINSD Y15, Y5, Y5
	VPMAXSD Y11, Y2, Y2
	VPMAXSD Y11, Y3, Y3
	VPMAXSD Y11, Y4, Y4
	VPMAXSD Y11, Y5, Y5
	VPACKSSDW Y3, Y2, Y2
	VPACKSSDW Y5, Y4, Y4
	VPACKUSWB Y4, Y2, Y2
	VPERMD Y2, Y10, Y2
	VMOVDQU Y2, (DI)

kqnext:
	ADDQ $128, SI
	ADDQ $32, DI
	INCQ R12
	CMPQ R12, $8
	JLT kqtop
	VZEROUPPER
	RET

DATA kgidx<>+0(SB)/4, $0
DATA kgidx<>+4(SB)/4, $32
DATA kgidx<>+8(SB)/4, $64
DATA kgidx<>+12(SB)/4, $96
DATA kgidx<>+16(SB)/4, $128
DATA kgidx<>+20(SB)/4, $160
DATA kgidx<>+24(SB)/4, $192
DATA kgidx<>+28(SB)/4, $224
GLOBL kgidx<>(SB), RODATA|NOPTR, $32

DATA kone<>+0(SB)/4, $0x3f800000
GLOBL kone<>(SB), RODATA|NOPTR, $4

DATA kc32<>+0(SB)/4, $0x42000000
GLOBL kc32<>(SB), RODATA|NOPTR, $4

DATA kabs<>+0(SB)/4, $0x7fffffff
GLOBL kabs<>(SB), RODATA|NOPTR, $4

// func qkx2SetupAVX2(x, xt, wt, bq *[QK_K]float32, s *qkState, nmax int32)
//
// The weights of kScales and the first part of qkx2Search for all 8 lanes:
// transpose x (lane k is sub-block k), per lane the in-order Σx², the
// weights sqrt(Σx²/32) + |x| (transposed into wt), the in-order min, max,
// Σw and Σw·x, the active mask (max != min, after min = min(min, 0)), the
// first scale and its error with the reference's nearestInt bit trick
// (exact for every input), and its quants in bq (0 in inactive lanes).
TEXT ·qkx2SetupAVX2(SB), NOSPLIT, $0-44
	MOVQ x+0(FP), SI
	MOVQ xt+8(FP), R8
	MOVQ wt+16(FP), R10
	MOVQ bq+24(FP), R11
	MOVQ s+32(FP), R9
	MOVL nmax+40(FP), AX
	VMOVD AX, X15
	VPBROADCASTD X15, Y15      // nmax (int)
	VCVTDQ2PS Y15, Y14         // nmax (float)
	VMOVDQU kgidx<>(SB), Y13
	VXORPS Y12, Y12, Y12

	// Σx² per lane, transposing x into xt.
	VXORPS Y5, Y5, Y5
	XORQ AX, AX
	XORQ DX, DX

ksx2:
	LEAQ (SI)(AX*1), BX
	VPCMPEQD Y11, Y11, Y11
	VGATHERDPS Y11, (BX)(Y13*4), Y0
	VMOVUPS Y0, (R8)(DX*1)
	VMULPS Y0, Y0, Y1
	VADDPS Y1, Y5, Y5
	ADDQ $4, AX
	ADDQ $32, DX
	CMPQ AX, $128
	JLT ksx2

	VBROADCASTSS kc32<>(SB), Y1
	VDIVPS Y1, Y5, Y5
	VSQRTPS Y5, Y10            // avX = sqrt(Σx²/32)
	VBROADCASTSS kabs<>(SB), Y9

	// row 0
	VMOVUPS (R8), Y0
	VANDPS Y9, Y0, Y1
	VADDPS Y1, Y10, Y1         // w = avX + |x|
	VMOVUPS Y1, (R10)
	VMOVAPS Y0, Y2             // min
	VMOVAPS Y0, Y3             // max
	VMOVAPS Y1, Y4             // Σw
	VMULPS Y0, Y1, Y5          // Σw·x
	MOVQ $32, DX

ksrow:
	VMOVUPS (R8)(DX*1), Y0
	VANDPS Y9, Y0, Y1
	VADDPS Y1, Y10, Y1
	VMOVUPS Y1, (R10)(DX*1)
	VMINPS Y2, Y0, Y2          // x < min ? x : min
	VMAXPS Y3, Y0, Y3          // x > max ? x : max
	VADDPS Y1, Y4, Y4
	VMULPS Y0, Y1, Y6
	VADDPS Y6, Y5, Y5
	ADDQ $32, DX
	CMPQ DX, $1024
	JLT ksrow

	VMOVUPS Y2, 64(R9)               // lo
	VMINPS Y2, Y12, Y2               // min = 0 < min ? 0 : min
	VMOVUPS Y2, 0(R9)                // mn
	VMOVUPS Y3, 32(R9)               // mx
	VMOVUPS Y4, 96(R9)               // Σw
	VMOVUPS Y5, 128(R9)              // Σw·x
	VCMPPS $0x04, Y2, Y3, Y10        // act = max != min
	VMOVUPS Y10, 224(R9)
	VSUBPS Y2, Y3, Y6
	VDIVPS Y6, Y14, Y7               // iscale = nmax / (max − min)
	VBROADCASTSS kone<>(SB), Y6
	VDIVPS Y7, Y6, Y8                // scale = 1 / iscale
	VMOVUPS Y8, 192(R9)
	VBROADCASTSS kqc<>+0(SB), Y9     // 1.5·2²³
	VPBROADCASTD kqc<>+4(SB), Y5     // mantissa mask
	VPBROADCASTD kqc<>+8(SB), Y4     // 2²²
	VXORPS Y3, Y3, Y3                // error
	XORQ DX, DX

kserr:
	VMOVUPS (R8)(DX*1), Y0           // x
	VSUBPS Y2, Y0, Y1
	VMULPS Y7, Y1, Y1                // iscale·(x − min)
	VADDPS Y9, Y1, Y1
	VPAND Y5, Y1, Y1
	VPSUBD Y4, Y1, Y1                // nearestInt
	VPMINSD Y15, Y1, Y1
	VPMAXSD Y12, Y1, Y1
	VCVTDQ2PS Y1, Y1                 // q
	VANDPS Y10, Y1, Y1
	VMOVUPS Y1, (R11)(DX*1)
	VMULPS Y8, Y1, Y1                // scale·q
	VADDPS Y2, Y1, Y1                // + min
	VSUBPS Y0, Y1, Y1                // − x
	VMULPS Y1, Y1, Y1
	VMULPS (R10)(DX*1), Y1, Y1       // w·diff²
	VADDPS Y1, Y3, Y3
	ADDQ $32, DX
	CMPQ DX, $1024
	JLT kserr

	VMOVUPS Y3, 160(R9)              // best
	VZEROUPPER
	RET

DATA q6idx<>+0(SB)/4, $0
DATA q6idx<>+4(SB)/4, $16
DATA q6idx<>+8(SB)/4, $32
DATA q6idx<>+12(SB)/4, $48
DATA q6idx<>+16(SB)/4, $64
DATA q6idx<>+20(SB)/4, $80
DATA q6idx<>+24(SB)/4, $96
DATA q6idx<>+28(SB)/4, $112
GLOBL q6idx<>(SB), RODATA|NOPTR, $32

DATA q6c<>+0(SB)/4, $0x26901d7d  // groupMaxEps, 1e-15
DATA q6c<>+4(SB)/4, $0xc2000000  // −32
DATA q6c<>+8(SB)/4, $0xffffffe0  // −32 (int)
DATA q6c<>+12(SB)/4, $31
DATA q6c<>+16(SB)/4, $32
GLOBL q6c<>(SB), RODATA|NOPTR, $20

// func qx6SetupAVX2(x, xt, wt, wvt *[QK_K]float32, s *q6State, isc *[16]float32)
//
// The first part of qx6Search for the 16 sub-blocks (lanes 0-7 in one
// register, 8-15 in another): transposed x, w = x², w·x, the first largest
// magnitude and its signed value in index order, the active mask
// (max|x| ≥ groupMaxEps), mx and the first inverse scale −32/max (0 in
// inactive lanes), and best, scale, bisc zeroed.
TEXT ·qx6SetupAVX2(SB), NOSPLIT, $0-48
	MOVQ x+0(FP), SI
	MOVQ xt+8(FP), R8
	MOVQ wt+16(FP), DI
	MOVQ wvt+24(FP), R10
	MOVQ s+32(FP), R9
	MOVQ isc+40(FP), R11
	VMOVDQU q6idx<>(SB), Y15           // lanes 0-7
	VPCMPEQD Y0, Y0, Y0
	VPSRLD $25, Y0, Y0                 // 127 …
	VPADDD Y0, Y15, Y14
	VPCMPEQD Y0, Y0, Y0
	VPSUBD Y0, Y14, Y14                // … + 1: lanes 8-15 start at 128
	VBROADCASTSS kabs<>(SB), Y13
	VXORPS Y2, Y2, Y2                  // amax 0-7
	VXORPS Y3, Y3, Y3                  // amax 8-15
	VXORPS Y4, Y4, Y4                  // max 0-7
	VXORPS Y5, Y5, Y5                  // max 8-15
	XORQ AX, AX
	XORQ DX, DX

q6srow:
	LEAQ (SI)(AX*1), BX
	VPCMPEQD Y12, Y12, Y12
	VGATHERDPS Y12, (BX)(Y15*4), Y0
	VPCMPEQD Y12, Y12, Y12
	VGATHERDPS Y12, (BX)(Y14*4), Y1
	VMOVUPS Y0, (R8)(DX*1)
	VMOVUPS Y1, 32(R8)(DX*1)
	VMULPS Y0, Y0, Y6                  // w
	VMULPS Y1, Y1, Y7
	VMOVUPS Y6, (DI)(DX*1)
	VMOVUPS Y7, 32(DI)(DX*1)
	VMULPS Y0, Y6, Y6                  // w·x
	VMULPS Y1, Y7, Y7
	VMOVUPS Y6, (R10)(DX*1)
	VMOVUPS Y7, 32(R10)(DX*1)
	VANDPS Y13, Y0, Y6                 // |x|
	VANDPS Y13, Y1, Y7
	VCMPPS $0x11, Y6, Y2, Y8           // amax < |x|
	VCMPPS $0x11, Y7, Y3, Y9
	VBLENDVPS Y8, Y6, Y2, Y2
	VBLENDVPS Y9, Y7, Y3, Y3
	VBLENDVPS Y8, Y0, Y4, Y4
	VBLENDVPS Y9, Y1, Y5, Y5
	ADDQ $4, AX
	ADDQ $64, DX
	CMPQ AX, $64
	JLT q6srow

	VBROADCASTSS q6c<>+0(SB), Y0
	VCMPPS $0x12, Y2, Y0, Y8           // act = eps ≤ amax
	VCMPPS $0x12, Y3, Y0, Y9
	VMOVUPS Y8, 256(R9)
	VMOVUPS Y9, 288(R9)
	VANDPS Y8, Y4, Y4
	VANDPS Y9, Y5, Y5
	VMOVUPS Y4, 0(R9)                  // mx
	VMOVUPS Y5, 32(R9)
	VBROADCASTSS q6c<>+4(SB), Y0
	VDIVPS Y4, Y0, Y6                  // −32 / max
	VDIVPS Y5, Y0, Y7
	VANDPS Y8, Y6, Y6
	VANDPS Y9, Y7, Y7
	VMOVUPS Y6, (R11)
	VMOVUPS Y7, 32(R11)
	VXORPS Y0, Y0, Y0
	VMOVUPS Y0, 64(R9)
	VMOVUPS Y0, 96(R9)
	VMOVUPS Y0, 128(R9)
	VMOVUPS Y0, 160(R9)
	VMOVUPS Y0, 192(R9)
	VMOVUPS Y0, 224(R9)
	VZEROUPPER
	RET

// func q6QuantsAVX2(l *[QK_K]int8, x *[QK_K]float32, d *[16]float32)
//
// q6QuantsGo: for every sub-block j with d[j] != 0, l = clamp(nearestInt(
// x/d), −32, 31) + 32 with the reference's bit trick, exact for every input.
TEXT ·q6QuantsAVX2(SB), NOSPLIT, $0-24
	MOVQ l+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ d+16(FP), R8
	VPBROADCASTD kqc<>+0(SB), Y15
	VPBROADCASTD kqc<>+4(SB), Y14
	VPBROADCASTD kqc<>+8(SB), Y13
	VPBROADCASTD q6c<>+8(SB), Y12      // −32
	VPBROADCASTD q6c<>+12(SB), Y11     // 31
	VPBROADCASTD q6c<>+16(SB), Y10     // 32
	VMOVDQU kqperm<>(SB), Y9
	VXORPS X8, X8, X8
	XORQ R12, R12

q6qtop:
	VMOVSS (R8)(R12*4), X0
	VUCOMISS X8, X0
	JP q6qdo
	JE q6qnext
q6qdo:
	VBROADCASTSS X0, Y0
	VMOVUPS 0(SI), Y2
	VMOVUPS 32(SI), Y3
	VDIVPS Y0, Y2, Y2
	VDIVPS Y0, Y3, Y3
	VADDPS Y15, Y2, Y2
	VADDPS Y15, Y3, Y3
	VPAND Y14, Y2, Y2
	VPAND Y14, Y3, Y3
	VPSUBD Y13, Y2, Y2
	VPSUBD Y13, Y3, Y3
	VPMINSD Y11, Y2, Y2
	VPMINSD Y11, Y3, Y3
	VPMAXSD Y12, Y2, Y2
	VPMAXSD Y12, Y3, Y3
	VPADDD Y10, Y2, Y2
	VPADDD Y10, Y3, Y3
	VPACKSSDW Y3, Y2, Y2
	VPACKUSWB Y2, Y2, Y2
	VPERMD Y2, Y9, Y2
	VMOVDQU X2, (DI)

q6qnext:
	ADDQ $64, SI
	ADDQ $16, DI
	INCQ R12
	CMPQ R12, $16
	JLT q6qtop
	VZEROUPPER
	RET

DATA ksExp<>+0(SB)/4, $0x7f800000
GLOBL ksExp<>(SB), RODATA|NOPTR, $4

// func allFiniteAVX2(x *float32, n int) bool
// Whether none of the n values (a multiple of 64) has all exponent bits
// set (NaN or ±Inf).
TEXT ·allFiniteAVX2(SB), NOSPLIT, $0-17
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	SHRQ $6, CX
	VPBROADCASTD ksExp<>(SB), Y15
	VPXOR Y8, Y8, Y8

afloop:
#define AFEIGHT(off) \
	VPAND off(SI), Y15, Y0 \
	VPCMPEQD Y15, Y0, Y0 \
	VPOR Y0, Y8, Y8

	AFEIGHT(0)
	AFEIGHT(32)
	AFEIGHT(64)
	AFEIGHT(96)
	AFEIGHT(128)
	AFEIGHT(160)
	AFEIGHT(192)
	AFEIGHT(224)
#undef AFEIGHT
	ADDQ $256, SI
	DECQ CX
	JNZ afloop
	VPTEST Y8, Y8
	SETEQ ret+16(FP)
	VZEROUPPER
	RET

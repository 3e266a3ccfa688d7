//go:build !purego

#include "textflag.h"

// |x| mask
DATA ctabs32<>+0(SB)/4, $0x7fffffff
DATA ctabs32<>+4(SB)/4, $0x7fffffff
DATA ctabs32<>+8(SB)/4, $0x7fffffff
DATA ctabs32<>+12(SB)/4, $0x7fffffff
DATA ctabs32<>+16(SB)/4, $0x7fffffff
DATA ctabs32<>+20(SB)/4, $0x7fffffff
DATA ctabs32<>+24(SB)/4, $0x7fffffff
DATA ctabs32<>+28(SB)/4, $0x7fffffff
GLOBL ctabs32<>(SB), RODATA|NOPTR, $32

// MaxFloat32: a larger |x| is ±Inf or NaN
DATA ctmaxfin<>+0(SB)/4, $0x7f7fffff
DATA ctmaxfin<>+4(SB)/4, $0x7f7fffff
DATA ctmaxfin<>+8(SB)/4, $0x7f7fffff
DATA ctmaxfin<>+12(SB)/4, $0x7f7fffff
DATA ctmaxfin<>+16(SB)/4, $0x7f7fffff
DATA ctmaxfin<>+20(SB)/4, $0x7f7fffff
DATA ctmaxfin<>+24(SB)/4, $0x7f7fffff
DATA ctmaxfin<>+28(SB)/4, $0x7f7fffff
GLOBL ctmaxfin<>(SB), RODATA|NOPTR, $32

// 1
DATA ctone<>+0(SB)/4, $0x00000001
DATA ctone<>+4(SB)/4, $0x00000001
DATA ctone<>+8(SB)/4, $0x00000001
DATA ctone<>+12(SB)/4, $0x00000001
DATA ctone<>+16(SB)/4, $0x00000001
DATA ctone<>+20(SB)/4, $0x00000001
DATA ctone<>+24(SB)/4, $0x00000001
DATA ctone<>+28(SB)/4, $0x00000001
GLOBL ctone<>(SB), RODATA|NOPTR, $32

// E4M3 rounding bias below the 3 kept mantissa bits
DATA ctrnd<>+0(SB)/4, $0x0007ffff
DATA ctrnd<>+4(SB)/4, $0x0007ffff
DATA ctrnd<>+8(SB)/4, $0x0007ffff
DATA ctrnd<>+12(SB)/4, $0x0007ffff
DATA ctrnd<>+16(SB)/4, $0x0007ffff
DATA ctrnd<>+20(SB)/4, $0x0007ffff
DATA ctrnd<>+24(SB)/4, $0x0007ffff
DATA ctrnd<>+28(SB)/4, $0x0007ffff
GLOBL ctrnd<>(SB), RODATA|NOPTR, $32

// 120<<3: rebias of exponent and mantissa
DATA ct960<>+0(SB)/4, $0x000003c0
DATA ct960<>+4(SB)/4, $0x000003c0
DATA ct960<>+8(SB)/4, $0x000003c0
DATA ct960<>+12(SB)/4, $0x000003c0
DATA ct960<>+16(SB)/4, $0x000003c0
DATA ct960<>+20(SB)/4, $0x000003c0
DATA ct960<>+24(SB)/4, $0x000003c0
DATA ct960<>+28(SB)/4, $0x000003c0
GLOBL ct960<>(SB), RODATA|NOPTR, $32

// sign, exponent and top 3 mantissa bits
DATA cthigh<>+0(SB)/4, $0xfff00000
DATA cthigh<>+4(SB)/4, $0xfff00000
DATA cthigh<>+8(SB)/4, $0xfff00000
DATA cthigh<>+12(SB)/4, $0xfff00000
DATA cthigh<>+16(SB)/4, $0xfff00000
DATA cthigh<>+20(SB)/4, $0xfff00000
DATA cthigh<>+24(SB)/4, $0xfff00000
DATA cthigh<>+28(SB)/4, $0xfff00000
GLOBL cthigh<>(SB), RODATA|NOPTR, $32

// 16384.0 (2^14), also its bit pattern
DATA ct16384<>+0(SB)/4, $0x46800000
DATA ct16384<>+4(SB)/4, $0x46800000
DATA ct16384<>+8(SB)/4, $0x46800000
DATA ct16384<>+12(SB)/4, $0x46800000
DATA ct16384<>+16(SB)/4, $0x46800000
DATA ct16384<>+20(SB)/4, $0x46800000
DATA ct16384<>+24(SB)/4, $0x46800000
DATA ct16384<>+28(SB)/4, $0x46800000
GLOBL ct16384<>(SB), RODATA|NOPTR, $32

// just below 2^-6, the smallest normal E4M3
DATA ctnorm<>+0(SB)/4, $0x3c7fffff
DATA ctnorm<>+4(SB)/4, $0x3c7fffff
DATA ctnorm<>+8(SB)/4, $0x3c7fffff
DATA ctnorm<>+12(SB)/4, $0x3c7fffff
DATA ctnorm<>+16(SB)/4, $0x3c7fffff
DATA ctnorm<>+20(SB)/4, $0x3c7fffff
DATA ctnorm<>+24(SB)/4, $0x3c7fffff
DATA ctnorm<>+28(SB)/4, $0x3c7fffff
GLOBL ctnorm<>(SB), RODATA|NOPTR, $32

// just below 448
DATA ctsat<>+0(SB)/4, $0x43dfffff
DATA ctsat<>+4(SB)/4, $0x43dfffff
DATA ctsat<>+8(SB)/4, $0x43dfffff
DATA ctsat<>+12(SB)/4, $0x43dfffff
DATA ctsat<>+16(SB)/4, $0x43dfffff
DATA ctsat<>+20(SB)/4, $0x43dfffff
DATA ctsat<>+24(SB)/4, $0x43dfffff
DATA ctsat<>+28(SB)/4, $0x43dfffff
GLOBL ctsat<>(SB), RODATA|NOPTR, $32

// E4M3 code of 448
DATA ct7e<>+0(SB)/4, $0x0000007e
DATA ct7e<>+4(SB)/4, $0x0000007e
DATA ct7e<>+8(SB)/4, $0x0000007e
DATA ct7e<>+12(SB)/4, $0x0000007e
DATA ct7e<>+16(SB)/4, $0x0000007e
DATA ct7e<>+20(SB)/4, $0x0000007e
DATA ct7e<>+24(SB)/4, $0x0000007e
DATA ct7e<>+28(SB)/4, $0x0000007e
GLOBL ct7e<>(SB), RODATA|NOPTR, $32

// 448.0
DATA ct448<>+0(SB)/4, $0x43e00000
DATA ct448<>+4(SB)/4, $0x43e00000
DATA ct448<>+8(SB)/4, $0x43e00000
DATA ct448<>+12(SB)/4, $0x43e00000
DATA ct448<>+16(SB)/4, $0x43e00000
DATA ct448<>+20(SB)/4, $0x43e00000
DATA ct448<>+24(SB)/4, $0x43e00000
DATA ct448<>+28(SB)/4, $0x43e00000
GLOBL ct448<>(SB), RODATA|NOPTR, $32

// 1.5·2^23
DATA ctmagic<>+0(SB)/4, $0x4b400000
DATA ctmagic<>+4(SB)/4, $0x4b400000
DATA ctmagic<>+8(SB)/4, $0x4b400000
DATA ctmagic<>+12(SB)/4, $0x4b400000
DATA ctmagic<>+16(SB)/4, $0x4b400000
DATA ctmagic<>+20(SB)/4, $0x4b400000
DATA ctmagic<>+24(SB)/4, $0x4b400000
DATA ctmagic<>+28(SB)/4, $0x4b400000
GLOBL ctmagic<>(SB), RODATA|NOPTR, $32

// bits of 1.5·2^23 − 128: bits(q + 1.5·2^23) − this = q + 128
DATA ctoff8<>+0(SB)/4, $0x4b3fff80
DATA ctoff8<>+4(SB)/4, $0x4b3fff80
DATA ctoff8<>+8(SB)/4, $0x4b3fff80
DATA ctoff8<>+12(SB)/4, $0x4b3fff80
DATA ctoff8<>+16(SB)/4, $0x4b3fff80
DATA ctoff8<>+20(SB)/4, $0x4b3fff80
DATA ctoff8<>+24(SB)/4, $0x4b3fff80
DATA ctoff8<>+28(SB)/4, $0x4b3fff80
GLOBL ctoff8<>(SB), RODATA|NOPTR, $32

// bits of 1.5·2^23 − 8
DATA ctoff4<>+0(SB)/4, $0x4b3ffff8
DATA ctoff4<>+4(SB)/4, $0x4b3ffff8
DATA ctoff4<>+8(SB)/4, $0x4b3ffff8
DATA ctoff4<>+12(SB)/4, $0x4b3ffff8
DATA ctoff4<>+16(SB)/4, $0x4b3ffff8
DATA ctoff4<>+20(SB)/4, $0x4b3ffff8
DATA ctoff4<>+24(SB)/4, $0x4b3ffff8
DATA ctoff4<>+28(SB)/4, $0x4b3ffff8
GLOBL ctoff4<>(SB), RODATA|NOPTR, $32

// 127.0
DATA ctq8max<>+0(SB)/4, $0x42fe0000
DATA ctq8max<>+4(SB)/4, $0x42fe0000
DATA ctq8max<>+8(SB)/4, $0x42fe0000
DATA ctq8max<>+12(SB)/4, $0x42fe0000
DATA ctq8max<>+16(SB)/4, $0x42fe0000
DATA ctq8max<>+20(SB)/4, $0x42fe0000
DATA ctq8max<>+24(SB)/4, $0x42fe0000
DATA ctq8max<>+28(SB)/4, $0x42fe0000
GLOBL ctq8max<>(SB), RODATA|NOPTR, $32

// -128.0
DATA ctq8min<>+0(SB)/4, $0xc3000000
DATA ctq8min<>+4(SB)/4, $0xc3000000
DATA ctq8min<>+8(SB)/4, $0xc3000000
DATA ctq8min<>+12(SB)/4, $0xc3000000
DATA ctq8min<>+16(SB)/4, $0xc3000000
DATA ctq8min<>+20(SB)/4, $0xc3000000
DATA ctq8min<>+24(SB)/4, $0xc3000000
DATA ctq8min<>+28(SB)/4, $0xc3000000
GLOBL ctq8min<>(SB), RODATA|NOPTR, $32

// 7.0
DATA ctq4max<>+0(SB)/4, $0x40e00000
DATA ctq4max<>+4(SB)/4, $0x40e00000
DATA ctq4max<>+8(SB)/4, $0x40e00000
DATA ctq4max<>+12(SB)/4, $0x40e00000
DATA ctq4max<>+16(SB)/4, $0x40e00000
DATA ctq4max<>+20(SB)/4, $0x40e00000
DATA ctq4max<>+24(SB)/4, $0x40e00000
DATA ctq4max<>+28(SB)/4, $0x40e00000
GLOBL ctq4max<>(SB), RODATA|NOPTR, $32

// -8.0
DATA ctq4min<>+0(SB)/4, $0xc1000000
DATA ctq4min<>+4(SB)/4, $0xc1000000
DATA ctq4min<>+8(SB)/4, $0xc1000000
DATA ctq4min<>+12(SB)/4, $0xc1000000
DATA ctq4min<>+16(SB)/4, $0xc1000000
DATA ctq4min<>+20(SB)/4, $0xc1000000
DATA ctq4min<>+24(SB)/4, $0xc1000000
DATA ctq4min<>+28(SB)/4, $0xc1000000
GLOBL ctq4min<>(SB), RODATA|NOPTR, $32

// VPSHUFB: the low byte of each dword, lane 0 to bytes 0-3, lane 1 to bytes 4-7 of lane 1
DATA ctshuf<>+0(SB)/4, $0x0c080400
DATA ctshuf<>+4(SB)/4, $0x80808080
DATA ctshuf<>+8(SB)/4, $0x80808080
DATA ctshuf<>+12(SB)/4, $0x80808080
DATA ctshuf<>+16(SB)/4, $0x80808080
DATA ctshuf<>+20(SB)/4, $0x0c080400
DATA ctshuf<>+24(SB)/4, $0x80808080
DATA ctshuf<>+28(SB)/4, $0x80808080
GLOBL ctshuf<>(SB), RODATA|NOPTR, $32

// VPMADDUBSW weights 1, 16: two nibbles to one byte
DATA ctnib<>+0(SB)/4, $0x10011001
DATA ctnib<>+4(SB)/4, $0x10011001
DATA ctnib<>+8(SB)/4, $0x10011001
DATA ctnib<>+12(SB)/4, $0x10011001
DATA ctnib<>+16(SB)/4, $0x10011001
DATA ctnib<>+20(SB)/4, $0x10011001
DATA ctnib<>+24(SB)/4, $0x10011001
DATA ctnib<>+28(SB)/4, $0x10011001
GLOBL ctnib<>(SB), RODATA|NOPTR, $32

// |x| mask for float64
DATA ctabs64<>+0(SB)/8, $0x7fffffffffffffff
DATA ctabs64<>+8(SB)/8, $0x7fffffffffffffff
DATA ctabs64<>+16(SB)/8, $0x7fffffffffffffff
DATA ctabs64<>+24(SB)/8, $0x7fffffffffffffff
GLOBL ctabs64<>(SB), RODATA|NOPTR, $32

// One element group of decodeAVX2, after the load of 8 values into Y0:
// keep max|x| in Y1 and OR into Y3 the lanes whose |x| is above MaxFloat32.
#define DECMAX \
	VPAND Y13, Y0, Y0 \
	VMAXPS Y0, Y1, Y1 \
	VPCMPGTD Y14, Y0, Y0 \
	VPOR Y0, Y3, Y3

// The end of a group: store the horizontal maximum of Y1 at (R9).
#define DECGROUP \
	VEXTRACTF128 $1, Y1, X0 \
	VMAXPS X0, X1, X1 \
	VPERMILPS $0x4e, X1, X0 \
	VMAXPS X0, X1, X1 \
	VPERMILPS $0xb1, X1, X0 \
	VMAXPS X0, X1, X1 \
	VMOVSS X1, (R9) \
	ADDQ $4, R9

// func decodeAVX2(dst *float32, src *byte, n, group int, gmax *float32, mode int) bool
TEXT ·decodeAVX2(SB), NOSPLIT, $0-49
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), DX
	MOVQ group+24(FP), R8
	MOVQ gmax+32(FP), R9
	MOVQ mode+40(FP), R10
	VMOVDQU ctabs32<>(SB), Y13
	VMOVDQU ctmaxfin<>(SB), Y14
	VPXOR Y3, Y3, Y3
	CMPQ R10, $1
	JEQ f16group
	JA f32group

bf16group:
	VPXOR Y1, Y1, Y1
	MOVQ R8, CX

bf16loop:
	VPMOVZXWD (SI), Y0
	VPSLLD $16, Y0, Y0
	VMOVUPS Y0, (DI)
	DECMAX
	ADDQ $16, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ bf16loop
	DECGROUP
	SUBQ R8, DX
	JNZ bf16group
	JMP decdone

f16group:
	VPXOR Y1, Y1, Y1
	MOVQ R8, CX

f16loop:
	VCVTPH2PS (SI), Y0
	VMOVUPS Y0, (DI)
	DECMAX
	ADDQ $16, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ f16loop
	DECGROUP
	SUBQ R8, DX
	JNZ f16group
	JMP decdone

f32group:
	CMPQ R10, $3
	JEQ scangroup
	VPXOR Y1, Y1, Y1
	MOVQ R8, CX

f32loop:
	VMOVUPS (SI), Y0
	VMOVUPS Y0, (DI)
	DECMAX
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JNZ f32loop
	DECGROUP
	SUBQ R8, DX
	JNZ f32group
	JMP decdone

scangroup:
	VPXOR Y1, Y1, Y1
	MOVQ R8, CX

scanloop:
	VMOVUPS (SI), Y0
	DECMAX
	ADDQ $32, SI
	SUBQ $8, CX
	JNZ scanloop
	DECGROUP
	SUBQ R8, DX
	JNZ scangroup

decdone:
	VPTEST Y3, Y3
	SETEQ ret+48(FP)
	VZEROUPPER
	RET

// STATS continues the statistics of addStats over 8 values, x in Y0 and
// y in Y7, with Y14 = (xx0, xx1, yy0, yy1), Y13 = (xy0, xy1, ee0, ee1),
// Y12 = max|x−y| and Y11 the float64 |x| mask. The pairs (0, 1), (2, 3),
// (4, 5), (6, 7) are added in that order, even element to lane 0, odd to
// lane 1, as the Go code does: Y14 gets (xx, yy) of pair 0 (VINSERTF128
// of the low halves), then of pair 1 (VPERM2F128 of the high halves), and
// so on. Products are rounded before the sums (no FMA). The maximum, whose
// order does not matter, takes |x−y| four lanes at a time; VMAXPD keeps
// Y12 on a tie of zeros, so it is never −0. It uses Y1-Y6 and Y8-Y10.
#define STATS \
	VCVTPS2PD X0, Y1 \
	VEXTRACTF128 $1, Y0, X2 \
	VCVTPS2PD X2, Y2 \
	VCVTPS2PD X7, Y3 \
	VEXTRACTF128 $1, Y7, X4 \
	VCVTPS2PD X4, Y4 \
	VSUBPD Y3, Y1, Y5 \
	VSUBPD Y4, Y2, Y6 \
	VANDPD Y11, Y5, Y8 \
	VMAXPD Y12, Y8, Y12 \
	VANDPD Y11, Y6, Y8 \
	VMAXPD Y12, Y8, Y12 \
	VMULPD Y1, Y1, Y8 \
	VMULPD Y3, Y3, Y9 \
	VINSERTF128 $1, X9, Y8, Y10 \
	VADDPD Y10, Y14, Y14 \
	VPERM2F128 $0x31, Y9, Y8, Y10 \
	VADDPD Y10, Y14, Y14 \
	VMULPD Y3, Y1, Y8 \
	VMULPD Y5, Y5, Y9 \
	VINSERTF128 $1, X9, Y8, Y10 \
	VADDPD Y10, Y13, Y13 \
	VPERM2F128 $0x31, Y9, Y8, Y10 \
	VADDPD Y10, Y13, Y13 \
	VMULPD Y2, Y2, Y8 \
	VMULPD Y4, Y4, Y9 \
	VINSERTF128 $1, X9, Y8, Y10 \
	VADDPD Y10, Y14, Y14 \
	VPERM2F128 $0x31, Y9, Y8, Y10 \
	VADDPD Y10, Y14, Y14 \
	VMULPD Y4, Y2, Y8 \
	VMULPD Y6, Y6, Y9 \
	VINSERTF128 $1, X9, Y8, Y10 \
	VADDPD Y10, Y13, Y13 \
	VPERM2F128 $0x31, Y9, Y8, Y10 \
	VADDPD Y10, Y13, Y13

// Load the statistics from (AX) into Y14, Y13, Y12; Y11 = float64 |x| mask.
#define STATSLOAD \
	VMOVUPD 0(AX), Y14 \
	VMOVUPD 32(AX), Y13 \
	VBROADCASTSD 64(AX), Y12 \
	VMOVDQU ctabs64<>(SB), Y11

// Store them back, with the maximum reduced to one value.
#define STATSSTORE \
	VMOVUPD Y14, 0(AX) \
	VMOVUPD Y13, 32(AX) \
	VEXTRACTF128 $1, Y12, X0 \
	VMAXPD X0, X12, X12 \
	VPERMILPD $1, X12, X0 \
	VMAXPD X0, X12, X12 \
	VMOVSD X12, 64(AX)

// Pack the low bytes of the 8 dwords of Y8 into the low 8 bytes of X8.
#define PACK8 \
	VPSHUFB ctshuf<>(SB), Y8, Y8 \
	VEXTRACTI128 $1, Y8, X9 \
	VPOR X9, X8, X8

// func quantFP8AVX2(q *byte, y *float32, yinc int, x *float32, n int, s float32, acc *statAcc)
//
// F32ToF8E4M3 on v = x/s, with a = |v| and the sign apart:
//   a > 0x43dfffff (≥ 448): code 0x7e, value 448;
//   a > 0x3c7fffff (≥ 2^-6): t = a + 0x7ffff + (a>>20)&1, code (t>>20) − 960,
//     value t with the low 20 bits cleared;
//   else: r = a + 16384 (float32), code bits(r) − bits(16384), value r − 16384;
// then the sign goes into bit 7 of the code and bit 31 of the value, and
// y = value·s, which is F8E4M3ToF32(code)·s. (v is finite: no NaN case.)
TEXT ·quantFP8AVX2(SB), NOSPLIT, $0-56
	MOVQ q+0(FP), DI
	MOVQ y+8(FP), BX
	MOVQ yinc+16(FP), R8
	MOVQ x+24(FP), SI
	MOVQ n+32(FP), CX
	VBROADCASTSS s+40(FP), Y15
	MOVQ acc+48(FP), AX
	STATSLOAD

fp8loop:
	VMOVUPS (SI), Y0
	VDIVPS Y15, Y0, Y1
	VPAND ctabs32<>(SB), Y1, Y2
	VPXOR Y2, Y1, Y3
	VPSRLD $20, Y2, Y4
	VPAND ctone<>(SB), Y4, Y4
	VPADDD ctrnd<>(SB), Y2, Y5
	VPADDD Y4, Y5, Y5
	VPSRLD $20, Y5, Y6
	VPSUBD ct960<>(SB), Y6, Y6
	VPAND cthigh<>(SB), Y5, Y5
	VADDPS ct16384<>(SB), Y2, Y7
	VPSUBD ct16384<>(SB), Y7, Y8
	VSUBPS ct16384<>(SB), Y7, Y7
	VPCMPGTD ctnorm<>(SB), Y2, Y9
	VPBLENDVB Y9, Y6, Y8, Y8
	VPBLENDVB Y9, Y5, Y7, Y7
	VPCMPGTD ctsat<>(SB), Y2, Y9
	VPBLENDVB Y9, ct7e<>(SB), Y8, Y8
	VPBLENDVB Y9, ct448<>(SB), Y7, Y7
	VPOR Y3, Y7, Y7
	VPSRLD $24, Y3, Y3
	VPOR Y3, Y8, Y8
	VMULPS Y15, Y7, Y7
	VMOVUPS Y7, (BX)
	PACK8
	VMOVQ X8, (DI)
	STATS
	ADDQ $32, SI
	ADDQ R8, BX
	ADDQ $8, DI
	SUBQ $8, CX
	JNZ fp8loop

	STATSSTORE
	VZEROUPPER
	RET

// The integer quantization of 8 values from (SI) with the scale in Y15,
// clamped to [QMIN, QMAX]: y to (BX), y in Y7, the codes q + 2^(bits−1) in
// the dwords of Y8.
#define QINT(QMAX, QMIN, OFF) \
	VMOVUPS (SI), Y0 \
	VDIVPS Y15, Y0, Y1 \
	VMINPS QMAX, Y1, Y1 \
	VMAXPS QMIN, Y1, Y1 \
	VADDPS ctmagic<>(SB), Y1, Y1 \
	VPSUBD OFF, Y1, Y8 \
	VSUBPS ctmagic<>(SB), Y1, Y7 \
	VMULPS Y15, Y7, Y7 \
	VMOVUPS Y7, (BX)

// func quantInt8AVX2(out *byte, y *float32, yinc int, x *float32, n, group int, scales *float32, acc *statAcc)
TEXT ·quantInt8AVX2(SB), NOSPLIT, $0-64
	MOVQ out+0(FP), DI
	MOVQ y+8(FP), BX
	MOVQ yinc+16(FP), R8
	MOVQ x+24(FP), SI
	MOVQ n+32(FP), DX
	MOVQ group+40(FP), R10
	MOVQ scales+48(FP), R9
	MOVQ acc+56(FP), AX
	STATSLOAD

i8group:
	VBROADCASTSS (R9), Y15
	ADDQ $4, R9
	MOVQ R10, CX

i8loop:
	QINT(ctq8max<>(SB), ctq8min<>(SB), ctoff8<>(SB))
	PACK8
	VMOVQ X8, (DI)
	STATS
	ADDQ $32, SI
	ADDQ R8, BX
	ADDQ $8, DI
	SUBQ $8, CX
	JNZ i8loop
	SUBQ R10, DX
	JNZ i8group

	STATSSTORE
	VZEROUPPER
	RET

// func quantInt4AVX2(out *byte, y *float32, yinc int, x *float32, n, group int, scales *float32, acc *statAcc)
TEXT ·quantInt4AVX2(SB), NOSPLIT, $0-64
	MOVQ out+0(FP), DI
	MOVQ y+8(FP), BX
	MOVQ yinc+16(FP), R8
	MOVQ x+24(FP), SI
	MOVQ n+32(FP), DX
	MOVQ group+40(FP), R10
	MOVQ scales+48(FP), R9
	MOVQ acc+56(FP), AX
	STATSLOAD

i4group:
	VBROADCASTSS (R9), Y15
	ADDQ $4, R9
	MOVQ R10, CX

i4loop:
	QINT(ctq4max<>(SB), ctq4min<>(SB), ctoff4<>(SB))
	PACK8
	VPMADDUBSW ctnib<>(SB), X8, X8
	VPACKUSWB X8, X8, X8
	VMOVD X8, (DI)
	STATS
	ADDQ $32, SI
	ADDQ R8, BX
	ADDQ $4, DI
	SUBQ $8, CX
	JNZ i4loop
	SUBQ R10, DX
	JNZ i4group

	STATSSTORE
	VZEROUPPER
	RET

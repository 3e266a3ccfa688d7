package ggml

import (
	"github.com/gantry-dev/gantry/compress/internal/simd"

	"encoding/binary"
	"math"
)

// groupMaxEps is ggml's GROUP_MAX_EPS: a group whose largest magnitude is
// below it counts as all zero.
const groupMaxEps float32 = 1e-15

// nearestInt is ggml's nearest_int: adding 1.5·2^23 rounds to an integer in
// the float32 mantissa (ties to even), which is then read back from the bits.
// It is exact for |v| ≤ 4194303; outside that range it returns what ggml's
// version returns, so out-of-range inputs still give identical bytes.
// The explicit conversion rounds a product passed as v before the addition,
// so the compiler cannot fuse the two into an FMA after inlining.
func nearestInt(v float32) int32 {
	f := float32(v) + 12582912
	return int32(math.Float32bits(f)&0x007fffff) - 0x00400000
}

func sqrt32(v float32) float32 { return float32(math.Sqrt(float64(v))) }

// makeQKX2 is make_qkx2_quants with use_mad = false: it searches nstep+1
// candidate scales for the (scale, min) pair that minimises the weighted
// squared error of x ≈ scale·L + min, L in [0, nmax]. It returns the scale
// and −min, and leaves the chosen L in l.
func makeQKX2(nmax int32, x, weights []float32, l, laux []uint8, rmin, rdelta float32, nstep int) (scale, negMin float32) {
	n := len(x)
	weights = weights[:n]
	l = l[:n]
	laux = laux[:n]
	min, max := x[0], x[0]
	sumW := weights[0]
	sumX := float32(sumW * x[0]) // explicit: no fusion with the += below
	for i := 1; i < n; i++ {
		if x[i] < min {
			min = x[i]
		}
		if x[i] > max {
			max = x[i]
		}
		w := weights[i]
		sumW += w
		sumX += float32(w * x[i])
	}
	if min > 0 {
		min = 0
	}
	if max == min {
		for i := range l {
			l[i] = 0
		}
		return 0, -min
	}
	fnmax := float32(nmax)
	iscale := fnmax / (max - min)
	scale = 1 / iscale
	var bestError float32
	for i := 0; i < n; i++ {
		q := clampInt(nearestInt(iscale*(x[i]-min)), 0, nmax)
		l[i] = uint8(q)
		diff := float32(float32(scale*float32(q))+min) - x[i]
		bestError += float32(weights[i] * float32(diff*diff))
	}
	for is := 0; is <= nstep; is++ {
		iscale = float32(float32(rmin+float32(rdelta*float32(is)))+fnmax) / (max - min)
		var sumL, sumL2, sumXL float32
		for i := 0; i < n; i++ {
			q := clampInt(nearestInt(iscale*(x[i]-min)), 0, nmax)
			laux[i] = uint8(q)
			w := weights[i]
			wl := float32(w * float32(q)) // explicit: no fusion into sumL's add
			sumL += wl
			sumL2 += float32(wl * float32(q))
			sumXL += float32(wl * x[i])
		}
		d := float32(sumW*sumL2) - float32(sumL*sumL)
		if d > 0 {
			thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / d
			thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / d
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var curError float32
			for i := 0; i < n; i++ {
				diff := float32(float32(thisScale*float32(laux[i]))+thisMin) - x[i]
				curError += float32(weights[i] * float32(diff*diff))
			}
			if curError < bestError {
				copy(l, laux)
				bestError = curError
				scale = thisScale
				min = thisMin
			}
		}
	}
	return scale, -min
}

func clampInt(v, lo, hi int32) int32 {
	if v > hi {
		v = hi
	}
	if v < lo {
		v = lo
	}
	return v
}

// packScaleMinK4 stores the 6-bit scale ls and min lm of sub-block j in the
// 12-byte scales field shared by Q4_K and Q5_K.
func packScaleMinK4(s *[12]byte, j int, ls, lm uint8) {
	if j < 4 {
		s[j] = ls
		s[j+4] = lm
	} else {
		s[j+4] = ls&0xF | (lm&0xF)<<4
		s[j-4] |= (ls >> 4) << 6
		s[j] |= (lm >> 4) << 6
	}
}

// scaleMinK4 is get_scale_min_k4.
// kScaleMins fills dm with the scales d·sc (dm[0:8]) and mins dmin·m
// (dm[8:16]) of the eight sub-blocks of a Q4_K or Q5_K super-block that
// starts with x, as dequantizeQ4KGo and dequantizeQ5KGo compute them.
func kScaleMins(dm *[16]float32, x []byte) {
	d, dmin := getF16(x[0:]), getF16(x[2:])
	sc := (*[12]byte)(x[4:16])
	for j := 0; j < QK_K/32; j++ {
		s, m := scaleMinK4(sc, j)
		dm[j], dm[8+j] = d*float32(s), dmin*float32(m)
	}
}

// q6Scales fills ds with d·sc[k] for the sixteen scales of a Q6_K block
// x, as dequantizeQ6KGo computes them.
func q6Scales(ds *[16]float32, x *[210]byte) {
	d := getF16(x[208:])
	for k := range ds {
		ds[k] = d * float32(int8(x[192+k]))
	}
}

func scaleMinK4(s *[12]byte, j int) (sc, m uint8) {
	if j < 4 {
		return s[j] & 63, s[j+4] & 63
	}
	return s[j+4]&0xF | (s[j-4]>>6)<<4, s[j+4]>>4 | (s[j]>>6)<<4
}

// kScales is the part shared by quantize_row_q4_K_ref and
// quantize_row_q5_K_ref: per 32-value sub-block weights, the scale search,
// the 6-bit scales and mins, and the requantization with the rounded
// scales. It fills scales (12 bytes), returns d and dmin as fp16 bits, and
// leaves the quants in l.
func kScales(x *[QK_K]float32, nmax int32, rmin, rdelta float32, nstep int, sc *[12]byte, l *[QK_K]uint8, t *qkScratch) (dh, dminh uint16) {
	var (
		laux    [32]uint8
		weights [QK_K]float32
		mins    [QK_K / 32]float32
		scales  [QK_K / 32]float32
	)
	var maxScale, maxMin float32
	if kSearch && simd.Current() >= simd.SSE2 && allFinite(x[:]) {
		scales, mins = qkx2Search(nmax, x, l, rmin, rdelta, nstep, t)
	} else {
		kWeights(x, &weights)
		for j := 0; j < QK_K/32; j++ {
			scales[j], mins[j] = makeQKX2(nmax, x[32*j:32*j+32], weights[32*j:32*j+32], l[32*j:32*j+32], laux[:], rmin, rdelta, nstep)
		}
	}
	for j := 0; j < QK_K/32; j++ {
		if scales[j] > maxScale {
			maxScale = scales[j]
		}
		if mins[j] > maxMin {
			maxMin = mins[j]
		}
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	*sc = [12]byte{}
	for j := 0; j < QK_K/32; j++ {
		ls := uint8(nearestInt(invScale * scales[j]))
		lm := uint8(nearestInt(invMin * mins[j]))
		ls = min(63, ls)
		lm = min(63, lm)
		packScaleMinK4(sc, j, ls, lm)
	}
	dh = FP32ToFP16(maxScale / 63)
	dminh = FP32ToFP16(maxMin / 63)
	df, dminf := f16Table[dh], f16Table[dminh]
	var d, dm [QK_K / 32]float32
	for j := 0; j < QK_K/32; j++ {
		s, m := scaleMinK4(sc, j)
		d[j] = df * float32(s)
		dm[j] = float32(dminf * float32(m)) // explicit: no fusion with x+dm below
	}
	kQuants(l, x, &d, &dm, nmax)
	return dh, dminh
}

// kWeights are the importance weights of the Q4_K/Q5_K searches without an
// imatrix: sqrt(Σx²/32) + |x| within each sub-block of 32.
func kWeights(x, weights *[QK_K]float32) {
	for j := 0; j < QK_K/32; j++ {
		xs := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range xs {
			sumX2 += float32(v * v)
		}
		avX := sqrt32(sumX2 / 32)
		for i, v := range xs {
			weights[32*j+i] = avX + abs32(v)
		}
	}
}

// kQuantsGo is the last step of kScales: the quants of every sub-block j
// with d[j] != 0 for its final scale and min (the others keep the search's).
func kQuantsGo(l *[QK_K]uint8, x *[QK_K]float32, d, dm *[QK_K / 32]float32, nmax int32) {
	for j := 0; j < QK_K/32; j++ {
		if d[j] == 0 {
			continue
		}
		for i := 32 * j; i < 32*j+32; i++ {
			l[i] = uint8(clampInt(nearestInt((x[i]+dm[j])/d[j]), 0, nmax))
		}
	}
}

// q6QuantsGo is the last step of quantizeQ6K: the quants of every
// sub-block j with d[j] != 0 for its final scale (the others keep the
// search's).
func q6QuantsGo(l *[QK_K]int8, x *[QK_K]float32, d *[QK_K / 16]float32) {
	for j := 0; j < QK_K/16; j++ {
		if d[j] == 0 {
			continue
		}
		for i := 16 * j; i < 16*j+16; i++ {
			l[i] = int8(clampInt(nearestInt(x[i]/d[j]), -32, 31) + 32)
		}
	}
}

// quantizeQ4K is quantize_row_q4_K_ref. Layout: f16 d, f16 dmin,
// scales[12], qs[128].
func quantizeQ4K(dst []byte, src []float32) {
	var (
		l [QK_K]uint8
		t qkScratch
	)
	for ; len(src) >= QK_K; src, dst = src[QK_K:], dst[144:] {
		x := (*[QK_K]float32)(src)
		y := (*[144]byte)(dst)
		dh, dminh := kScales(x, 15, -1, 0.1, 20, (*[12]byte)(y[4:16]), &l, &t)
		binary.LittleEndian.PutUint16(y[0:], dh)
		binary.LittleEndian.PutUint16(y[2:], dminh)
		packQ4K((*[128]byte)(y[16:144]), &l)
	}
}

// packQ4KGo packs the 4-bit codes l: byte 32k+i holds code 64k+i in its
// low nibble and code 64k+32+i in its high nibble.
func packQ4KGo(q *[128]byte, l *[QK_K]uint8) {
	for j := 0; j < QK_K; j += 64 {
		for i := 0; i < 32; i++ {
			q[j/2+i] = l[j+i] | l[j+i+32]<<4
		}
	}
}

func dequantizeQ4KGo(dst []float32, src []byte) {
	for ; len(dst) >= QK_K; src, dst = src[144:], dst[QK_K:] {
		x := (*[144]byte)(src)
		y := (*[QK_K]float32)(dst)
		d, dmin := getF16(x[0:]), getF16(x[2:])
		sc := (*[12]byte)(x[4:16])
		q := x[16:144]
		for j := 0; j < QK_K/64; j++ {
			s1, m1 := scaleMinK4(sc, 2*j)
			s2, m2 := scaleMinK4(sc, 2*j+1)
			d1, mm1 := d*float32(s1), dmin*float32(m1)
			d2, mm2 := d*float32(s2), dmin*float32(m2)
			for i := 0; i < 32; i++ {
				b := q[32*j+i]
				y[64*j+i] = float32(d1*float32(b&15)) - mm1
				y[64*j+32+i] = float32(d2*float32(b>>4)) - mm2
			}
		}
	}
}

// quantizeQ5K is quantize_row_q5_K_ref. Layout: f16 d, f16 dmin,
// scales[12], qh[32], qs[128].
func quantizeQ5K(dst []byte, src []float32) {
	var (
		l [QK_K]uint8
		t qkScratch
	)
	for ; len(src) >= QK_K; src, dst = src[QK_K:], dst[176:] {
		x := (*[QK_K]float32)(src)
		y := (*[176]byte)(dst)
		dh, dminh := kScales(x, 31, -0.5, 0.1, 15, (*[12]byte)(y[4:16]), &l, &t)
		binary.LittleEndian.PutUint16(y[0:], dh)
		binary.LittleEndian.PutUint16(y[2:], dminh)
		packQ5K((*[160]byte)(y[16:176]), &l)
	}
}

// packQ5KGo packs the 5-bit codes l (≤ 31, as kScales clamps them) into
// qh (q[0:32]) and the low nibbles (q[32:160], as packQ4KGo): the
// reference's "if (l > 15) { l -= 16; qh |= m; }" without branches on
// random bits; bit 4 of code 32k+j is bit k of qh[j].
func packQ5KGo(q *[160]byte, l *[QK_K]uint8) {
	qh, ql := q[0:32], q[32:160]
	for j := 0; j < 32; j++ {
		l0, l1, l2, l3 := l[j], l[j+32], l[j+64], l[j+96]
		l4, l5, l6, l7 := l[j+128], l[j+160], l[j+192], l[j+224]
		qh[j] = l0>>4 | l1>>4<<1 | l2>>4<<2 | l3>>4<<3 | l4>>4<<4 | l5>>4<<5 | l6>>4<<6 | l7>>4<<7
		ql[j] = l0&15 | l1&15<<4
		ql[j+32] = l2&15 | l3&15<<4
		ql[j+64] = l4&15 | l5&15<<4
		ql[j+96] = l6&15 | l7&15<<4
	}
}

func dequantizeQ5KGo(dst []float32, src []byte) {
	for ; len(dst) >= QK_K; src, dst = src[176:], dst[QK_K:] {
		x := (*[176]byte)(src)
		y := (*[QK_K]float32)(dst)
		d, dmin := getF16(x[0:]), getF16(x[2:])
		sc := (*[12]byte)(x[4:16])
		qh := x[16:48]
		ql := x[48:176]
		for j := 0; j < QK_K/64; j++ {
			s1, m1 := scaleMinK4(sc, 2*j)
			s2, m2 := scaleMinK4(sc, 2*j+1)
			d1, mm1 := d*float32(s1), dmin*float32(m1)
			d2, mm2 := d*float32(s2), dmin*float32(m2)
			sh := uint(2 * j) // bits 2j and 2j+1 of qh[i] are the fifth bits
			for i := 0; i < 32; i++ {
				b := ql[32*j+i]
				h1 := (qh[i] >> sh & 1) << 4 // shifts, not branches: the bits are random
				h2 := (qh[i] >> (sh + 1) & 1) << 4
				y[64*j+i] = float32(d1*float32(b&15+h1)) - mm1
				y[64*j+32+i] = float32(d2*float32(b>>4+h2)) - mm2
			}
		}
	}
}

// makeQX6 is make_qx_quants(16, 32, x, L, rmse_type=1, NULL): weights x²,
// a first guess at iscale = −32/max and 18 more candidates around it.
// L gets the quants offset by 32; the return value is the scale.
func makeQX6(x []float32, l []int8) float32 {
	const nmax = 32
	x = x[:16]
	l = l[:16]
	var max, amax float32
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax = a
			max = v
		}
	}
	if amax < groupMaxEps {
		for i := range l {
			l[i] = 0
		}
		return 0
	}
	iscale := -nmax / max
	var sumLX, sumL2 float32
	for i, v := range x {
		q := clampInt(nearestInt(iscale*v), -nmax, nmax-1)
		l[i] = int8(q + nmax)
		w := v * v
		fq := float32(q)
		sumLX += float32(float32(w*v) * fq)
		sumL2 += float32(float32(w*fq) * fq)
	}
	var scale float32
	if sumL2 != 0 {
		scale = sumLX / sumL2
	}
	best := scale * sumLX
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -float32(nmax+float32(0.1*float32(is))) / max
		sumLX, sumL2 = 0, 0
		for _, v := range x {
			q := clampInt(nearestInt(iscale*v), -nmax, nmax-1)
			w := v * v
			fq := float32(q)
			sumLX += float32(float32(w*v) * fq)
			sumL2 += float32(float32(w*fq) * fq)
		}
		if sumL2 > 0 && float32(sumLX*sumLX) > float32(best*sumL2) {
			for i, v := range x {
				l[i] = int8(nmax + clampInt(nearestInt(iscale*v), -nmax, nmax-1))
			}
			scale = sumLX / sumL2
			best = scale * sumLX
		}
	}
	return scale
}

// quantizeQ6K is quantize_row_q6_K_ref. Layout: ql[128], qh[64],
// int8 scales[16], f16 d.
func quantizeQ6K(dst []byte, src []float32) {
	var (
		l      [QK_K]int8
		scales [QK_K / 16]float32
		t      q6Scratch
	)
	for ; len(src) >= QK_K; src, dst = src[QK_K:], dst[210:] {
		x := (*[QK_K]float32)(src)
		y := (*[210]byte)(dst)
		var maxScale, maxAbsScale float32
		searched := kSearch && simd.Current() >= simd.SSE2 && allFinite(x[:])
		if searched {
			qx6Search(x, &scales, &t)
		} else {
			for ib := 0; ib < QK_K/16; ib++ {
				scales[ib] = makeQX6(x[16*ib:16*ib+16], l[16*ib:16*ib+16])
			}
		}
		for _, s := range scales {
			if a := abs32(s); a > maxAbsScale {
				maxAbsScale = a
				maxScale = s
			}
		}
		if maxAbsScale < groupMaxEps {
			*y = [210]byte{}
			continue
		}
		iscale := -128 / maxScale
		dh := FP32ToFP16(1 / iscale)
		binary.LittleEndian.PutUint16(y[208:], dh)
		sc := y[192:208]
		for ib := range scales {
			sc[ib] = byte(int8(min(127, nearestInt(iscale*scales[ib]))))
		}
		df := f16Table[dh]
		var d [QK_K / 16]float32
		for j := range d {
			d[j] = df * float32(int8(sc[j]))
			if d[j] == 0 && searched {
				qx6Quants(x, &l, j, &t) // the search's, as makeQX6 leaves them
			}
		}
		q6Quants(&l, x, &d)
		packQ6K((*[192]byte)(y[0:192]), &l)
	}
}

// packQ6KGo packs the 6-bit codes l (0…63) into ql (q[0:128]) and qh
// (q[128:192]): for each half j of 128 codes and i < 32, ql[j/2+i] holds
// the low nibbles of codes j+i and j+i+64, ql[j/2+i+32] those of j+i+32
// and j+i+96, and qh[j/4+i] the high two bits of all four.
func packQ6KGo(q *[192]byte, l *[QK_K]int8) {
	ql, qh := q[0:128], q[128:192]
	for j := 0; j < QK_K; j += 128 {
		for i := 0; i < 32; i++ {
			q1 := uint8(l[j+i]) & 0xF
			q2 := uint8(l[j+i+32]) & 0xF
			q3 := uint8(l[j+i+64]) & 0xF
			q4 := uint8(l[j+i+96]) & 0xF
			ql[j/2+i] = q1 | q3<<4
			ql[j/2+i+32] = q2 | q4<<4
			qh[j/4+i] = uint8(l[j+i])>>4 | (uint8(l[j+i+32])>>4)<<2 |
				(uint8(l[j+i+64])>>4)<<4 | (uint8(l[j+i+96])>>4)<<6
		}
	}
}

func dequantizeQ6KGo(dst []float32, src []byte) {
	for ; len(dst) >= QK_K; src, dst = src[210:], dst[QK_K:] {
		x := (*[210]byte)(src)
		y := (*[QK_K]float32)(dst)
		d := getF16(x[208:])
		for n := 0; n < 2; n++ {
			ql := x[64*n : 64*n+64]
			qh := x[128+32*n : 128+32*n+32]
			sc := x[192+8*n : 192+8*n+8]
			yy := y[128*n : 128*n+128]
			for i := 0; i < 32; i++ {
				is := i / 16
				q1 := float32(int32(ql[i]&0xF|(qh[i]>>0&3)<<4) - 32)
				q2 := float32(int32(ql[i+32]&0xF|(qh[i]>>2&3)<<4) - 32)
				q3 := float32(int32(ql[i]>>4|(qh[i]>>4&3)<<4) - 32)
				q4 := float32(int32(ql[i+32]>>4|(qh[i]>>6&3)<<4) - 32)
				yy[i] = float32(d*float32(int8(sc[is]))) * q1
				yy[i+32] = float32(d*float32(int8(sc[is+2]))) * q2
				yy[i+64] = float32(d*float32(int8(sc[is+4]))) * q3
				yy[i+96] = float32(d*float32(int8(sc[is+6]))) * q4
			}
		}
	}
}

package ggml

// The scale searches of the K-quants (makeQKX2 for Q4_K/Q5_K, makeQX6 for
// Q6_K) try 16 to 21 candidate scales per sub-block, and for each one sum a
// few products over the sub-block in index order. Those in-order float sums
// cannot be reassociated without changing the result, so instead of
// vectorising within a sub-block, the searches below run all sub-blocks of
// a super-block side by side: the values are stored transposed (row i holds
// element i of every sub-block), each SIMD lane is one sub-block, and every
// lane computes exactly the scalar operations of the reference code, in the
// same order. The results are bit-for-bit those of makeQKX2 and makeQX6.
//
// One substitution is made: clamp(nearestInt(y), lo, hi) becomes
// round(clamp(y, lo, hi)) with round(v) = (v + 1.5·2²³) − 1.5·2²³. Both give
// the same integer (as a float32) whenever y is finite and |y| < 2²²; the
// callers check that (finite inputs, bounded scales) and fall back to the
// scalar code for a block or lane where it does not hold.

// kSearch enables qkx2Search and qx6Search; tests turn it off to get the
// scalar reference.
var kSearch = true

// qkLanes holds the per-sub-block (lane) inputs and outputs of the Q4_K/Q5_K
// kernels. The assembly depends on this layout.
type qkLanes struct {
	isc  [8]float32 // candidate inverse scale
	mn   [8]float32 // current min (≤ 0)
	nmax [4]float32 // nmax in every element
	sL   [8]float32 // Σ w·L
	sL2  [8]float32 // Σ w·L·L
	sXL  [8]float32 // Σ w·L·x
	ts   [8]float32 // candidate scale for the error
	tm   [8]float32 // candidate min for the error
	ce   [8]float32 // Σ w·(ts·L+tm−x)²
}

// qkScratch is the working memory of qkx2Search.
type qkScratch struct {
	xt, wt, fq [QK_K]float32 // transposed: [8*i+k] is element i of sub-block k
	bq         [QK_K]float32 // the best candidate's quants so far, transposed
	ln         qkLanes
	st         qkState
}

// qkx2SumsGo is the portable qkx2Sums: for every lane k, with
// L = round(clamp(isc·(x−mn), 0, nmax)) stored in fq, the sums Σw·L,
// Σ(w·L)·L and Σ(w·L)·x in index order.
func qkx2SumsGo(xt, wt, fq *[QK_K]float32, ln *qkLanes) {
	nmax := ln.nmax[0]
	for k := 0; k < 8; k++ {
		isc, mn := ln.isc[k], ln.mn[k]
		var sL, sL2, sXL float32
		for i := 0; i < 32; i++ {
			x := xt[8*i+k]
			f := roundClamp(float32(isc*float32(x-mn)), 0, nmax)
			fq[8*i+k] = f
			wl := float32(wt[8*i+k] * f)
			sL += wl
			sL2 += float32(wl * f)
			sXL += float32(wl * x)
		}
		ln.sL[k], ln.sL2[k], ln.sXL[k] = sL, sL2, sXL
	}
}

// qkx2ErrorsGo is the portable qkx2Errors: Σ w·((ts·L+tm)−x)² per lane.
func qkx2ErrorsGo(xt, wt, fq *[QK_K]float32, ln *qkLanes) {
	for k := 0; k < 8; k++ {
		ts, tm := ln.ts[k], ln.tm[k]
		var ce float32
		for i := 0; i < 32; i++ {
			d := float32(float32(ts*fq[8*i+k])+tm) - xt[8*i+k]
			ce += float32(wt[8*i+k] * float32(d*d))
		}
		ln.ce[k] = ce
	}
}

// roundClamp is round(clamp(y, lo, hi)) as the SIMD code computes it
// (MAXPS, MINPS, add and subtract 1.5·2²³).
func roundClamp(y, lo, hi float32) float32 {
	if !(y > lo) { // MAXPS returns the second operand unless y > lo
		y = lo
	}
	if !(y < hi) {
		y = hi
	}
	return float32(y+12582912) - 12582912
}

// allFiniteGo reports whether x holds no NaN or ±Inf. v − v is 0 for
// finite v and NaN otherwise, and a NaN sticks in the sum; four sums keep
// the adds out of one dependency chain.
func allFiniteGo(x []float32) bool {
	var a0, a1, a2, a3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		a0 += x[i] - x[i]
		a1 += x[i+1] - x[i+1]
		a2 += x[i+2] - x[i+2]
		a3 += x[i+3] - x[i+3]
	}
	for ; i < len(x); i++ {
		a0 += x[i] - x[i]
	}
	return a0+a1+a2+a3 == 0
}

// qkState is the per-lane state of qkx2Search between candidates. The
// AVX2 loop depends on this layout.
type qkState struct {
	mn, mx, lo, sumW, sumX, best, scale [8]float32
	act                                 [8]uint32 // all ones in active lanes
}

// qkx2Search is makeQKX2 (with kWeights' weights) on the 8 sub-blocks of a
// super-block whose values are all finite. It fills l and returns the
// scales and the negated mins, bit-for-bit as 8 makeQKX2 calls.
func qkx2Search(nmax int32, x *[QK_K]float32, l *[QK_K]uint8, rmin, rdelta float32, nstep int, t *qkScratch) (scales, negMins [8]float32) {
	s := &t.st
	fnmax := float32(nmax)
	if qkx2Setup(x, t, nmax) {
		for k := 0; k < 8; k++ {
			if s.act[k] == 0 {
				*(*[32]uint8)(l[32*k : 32*k+32]) = [32]uint8{}
				scales[k], negMins[k] = 0, -s.mn[k]
				s.mn[k], s.mx[k], s.sumW[k], s.sumX[k] = 0, 0, 0, 0
			}
		}
	} else {
		var w [QK_K]float32
		kWeights(x, &w)
		qkx2SetupGo(nmax, x, &w, l, t, &scales, &negMins)
	}
	t.ln.nmax = [4]float32{fnmax, fnmax, fnmax, fnmax}
	for is := 0; is <= nstep; is++ {
		// The AVX2 loop runs the candidates from is on until one needs
		// the scalar rounding in some lane; that one is done below.
		if is = qkx2Loop(t, fnmax, rmin, rdelta, is, nstep); is > nstep {
			break
		}
		qkx2Step(nmax, rmin, rdelta, is, t)
	}
	for k := 0; k < 8; k++ {
		if s.act[k] != 0 {
			scales[k], negMins[k] = s.scale[k], -s.mn[k]
			for i := 0; i < 32; i++ {
				l[32*k+i] = uint8(t.bq[8*i+k])
			}
		}
	}
	return scales, negMins
}

// qkx2SetupGo is the first part of qkx2Search: the transposed copies, the
// per-lane state and the first candidate of every lane; it fills l,
// scales and negMins for the inactive (constant) lanes.
func qkx2SetupGo(nmax int32, x, w *[QK_K]float32, l *[QK_K]uint8, t *qkScratch, scales, negMins *[8]float32) {
	s := &t.st
	*s = qkState{}
	fnmax := float32(nmax)
	for k := 0; k < 8; k++ {
		xs := (*[32]float32)(x[32*k : 32*k+32])
		ws := (*[32]float32)(w[32*k : 32*k+32])
		ls := (*[32]uint8)(l[32*k : 32*k+32])
		min, max := xs[0], xs[0]
		sw := ws[0]
		sx := float32(sw * xs[0])
		for i := 1; i < 32; i++ {
			if xs[i] < min {
				min = xs[i]
			}
			if xs[i] > max {
				max = xs[i]
			}
			sw += ws[i]
			sx += float32(ws[i] * xs[i])
		}
		s.lo[k] = min
		if min > 0 {
			min = 0
		}
		for i := 0; i < 32; i++ {
			t.xt[8*i+k] = xs[i]
			t.wt[8*i+k] = ws[i]
		}
		if max == min {
			*ls = [32]uint8{}
			for i := 0; i < 32; i++ {
				t.bq[8*i+k] = 0
			}
			scales[k], negMins[k] = 0, -min
			continue
		}
		s.act[k] = ^uint32(0)
		s.mn[k], s.mx[k], s.sumW[k], s.sumX[k] = min, max, sw, sx
		iscale := fnmax / (max - min)
		s.scale[k] = 1 / iscale
		var bestError float32
		for i := 0; i < 32; i++ {
			q := clampInt(nearestInt(iscale*(xs[i]-min)), 0, nmax)
			t.bq[8*i+k] = float32(q)
			diff := float32(float32(s.scale[k]*float32(q))+min) - xs[i]
			bestError += float32(ws[i] * float32(diff*diff))
		}
		s.best[k] = bestError
	}
}

// qkx2Step tries candidate is of qkx2Search on every lane, with the
// 4-lane kernels and the scalar rounding in lanes whose range needs it.
func qkx2Step(nmax int32, rmin, rdelta float32, is int, t *qkScratch) {
	const limit = 1 << 21
	s, ln := &t.st, &t.ln
	num := float32(float32(rmin+float32(rdelta*float32(is))) + float32(nmax))
	var scalar [8]bool
	anyScalar := false
	for k := 0; k < 8; k++ {
		if s.act[k] == 0 {
			ln.isc[k], ln.mn[k] = 0, 0
			continue
		}
		isc := num / (s.mx[k] - s.mn[k])
		ln.isc[k], ln.mn[k] = isc, s.mn[k]
		// y = isc·(x−mn) lies between these two (rounding is monotonic).
		a, b := float32(isc*float32(s.lo[k]-s.mn[k])), float32(isc*float32(s.mx[k]-s.mn[k]))
		if !(a > -limit && a < limit && b > -limit && b < limit) {
			scalar[k], anyScalar = true, true
		}
	}
	qkx2Sums(&t.xt, &t.wt, &t.fq, ln)
	if anyScalar {
		for k := 0; k < 8; k++ {
			if scalar[k] {
				qkx2LaneScalar(nmax, k, t)
			}
		}
	}
	anyOK := false
	var ok [8]bool
	for k := 0; k < 8; k++ {
		ln.ts[k], ln.tm[k] = 0, 0
		if s.act[k] == 0 {
			continue
		}
		sL, sL2, sXL := ln.sL[k], ln.sL2[k], ln.sXL[k]
		d := float32(s.sumW[k]*sL2) - float32(sL*sL)
		if d > 0 {
			thisScale := (float32(s.sumW[k]*sXL) - float32(s.sumX[k]*sL)) / d
			thisMin := (float32(sL2*s.sumX[k]) - float32(sL*sXL)) / d
			if thisMin > 0 {
				thisMin = 0
				thisScale = sXL / sL2
			}
			ln.ts[k], ln.tm[k] = thisScale, thisMin
			ok[k], anyOK = true, true
		}
	}
	if !anyOK {
		return
	}
	qkx2Errors(&t.xt, &t.wt, &t.fq, ln)
	for k := 0; k < 8; k++ {
		if ok[k] && ln.ce[k] < s.best[k] {
			for i := 0; i < 32; i++ {
				t.bq[8*i+k] = t.fq[8*i+k]
			}
			s.best[k] = ln.ce[k]
			s.scale[k] = ln.ts[k]
			s.mn[k] = ln.tm[k]
		}
	}
}

// qkx2LaneScalar redoes lane k of qkx2Sums with the reference operations
// (nearestInt, integer clamp), for a candidate whose range the SIMD
// rounding does not cover.
func qkx2LaneScalar(nmax int32, k int, t *qkScratch) {
	ln := &t.ln
	isc, mn := ln.isc[k], ln.mn[k]
	var sL, sL2, sXL float32
	for i := 0; i < 32; i++ {
		x := t.xt[8*i+k]
		q := clampInt(nearestInt(isc*(x-mn)), 0, nmax)
		f := float32(q)
		t.fq[8*i+k] = f
		wl := float32(t.wt[8*i+k] * f)
		sL += wl
		sL2 += float32(wl * f)
		sXL += float32(wl * x)
	}
	ln.sL[k], ln.sL2[k], ln.sXL[k] = sL, sL2, sXL
}

// q6Scratch is the working memory of qx6Search.
type q6Scratch struct {
	xt, wt, wvt   [QK_K]float32 // transposed: [16*i+k] is element i of sub-block k
	isc, sLX, sL2 [16]float32
	st            q6State
}

// q6State is the per-lane state of qx6Search between candidates. The AVX2
// loop depends on this layout.
type q6State struct {
	mx, best, scale, bisc [16]float32 // bisc: the best candidate's inverse scale
	act                   [16]uint32  // all ones in active lanes
}

// q6Nums are the numerators of qx6Search's candidate inverse scales,
// −(32 + 0.1·is) for is = −9…−1, 1…9, computed as makeQX6 does.
var q6Nums = func() (n [18]float32) {
	j := 0
	for is := -9; is <= 9; is++ {
		if is != 0 {
			n[j] = -float32(32 + float32(0.1*float32(is)))
			j++
		}
	}
	return n
}()

// qx6SumsGo is the portable qx6Sums: per lane k, with
// L = round(clamp(isc·x, −32, 31)), Σ(w·x)·L and Σ(w·L)·L in index order.
func qx6SumsGo(xt, wt, wvt *[QK_K]float32, isc, sLX, sL2 *[16]float32) {
	for k := 0; k < 16; k++ {
		var a, b float32
		for i := 0; i < 16; i++ {
			f := roundClamp(float32(isc[k]*xt[16*i+k]), -32, 31)
			a += float32(wvt[16*i+k] * f)
			b += float32(float32(wt[16*i+k]*f) * f)
		}
		sLX[k], sL2[k] = a, b
	}
}

// qx6Search is makeQX6 on the 16 sub-blocks of a super-block whose values
// are all finite: it fills scales bit-for-bit as 16 makeQX6 calls, and
// leaves the best candidate of every sub-block in t.st for qx6Quants, which
// gives the quants makeQX6 would have left.
// With finite x, |isc·x| ≤ 32.9 (isc = −(32+0.1·is)/max, |x| ≤ |max|), so
// the SIMD rounding always applies.
func qx6Search(x *[QK_K]float32, scales *[16]float32, t *q6Scratch) {
	const nmax = 32
	s := &t.st
	if !qx6Setup(x, t) {
		*s = q6State{}
		for k := 0; k < 16; k++ {
			xs := (*[16]float32)(x[16*k : 16*k+16])
			var max, amax float32
			for i, v := range xs {
				if a := abs32(v); a > amax {
					amax = a
					max = v
				}
				w := v * v
				t.xt[16*i+k] = v
				t.wt[16*i+k] = w
				t.wvt[16*i+k] = float32(w * v)
			}
			t.isc[k] = 0
			if amax < groupMaxEps {
				continue
			}
			s.act[k] = ^uint32(0)
			s.mx[k] = max
			t.isc[k] = -nmax / max
		}
	}
	qx6Sums(&t.xt, &t.wt, &t.wvt, &t.isc, &t.sLX, &t.sL2)
	for k := 0; k < 16; k++ {
		if s.act[k] == 0 {
			continue
		}
		var scale float32
		if t.sL2[k] != 0 {
			scale = t.sLX[k] / t.sL2[k]
		}
		s.scale[k] = scale
		s.best[k] = scale * t.sLX[k]
		s.bisc[k] = t.isc[k]
	}
	if !qx6Loop(t) {
		for _, num := range q6Nums {
			for k := 0; k < 16; k++ {
				if s.act[k] != 0 {
					t.isc[k] = num / s.mx[k]
				}
			}
			qx6Sums(&t.xt, &t.wt, &t.wvt, &t.isc, &t.sLX, &t.sL2)
			for k := 0; k < 16; k++ {
				sumLX, sumL2 := t.sLX[k], t.sL2[k]
				if s.act[k] != 0 && sumL2 > 0 && float32(sumLX*sumLX) > float32(s.best[k]*sumL2) {
					s.bisc[k] = t.isc[k]
					s.scale[k] = sumLX / sumL2
					s.best[k] = s.scale[k] * sumLX
				}
			}
		}
	}
	*scales = s.scale
}

// qx6Quants writes sub-block k's quants of the best candidate qx6Search
// found, with the reference rounding.
func qx6Quants(x *[QK_K]float32, l *[QK_K]int8, k int, t *q6Scratch) {
	const nmax = 32
	if t.st.act[k] == 0 {
		*(*[16]int8)(l[16*k : 16*k+16]) = [16]int8{}
		return
	}
	isc := t.st.bisc[k]
	for i := 16 * k; i < 16*k+16; i++ {
		l[i] = int8(nmax + clampInt(nearestInt(isc*x[i]), -nmax, nmax-1))
	}
}

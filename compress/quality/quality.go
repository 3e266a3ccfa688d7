package quality

import (
	"math"
	"sort"
)

// Stats accumulates error statistics between original values x and their
// reconstruction y. The zero value is ready to use.
type Stats struct {
	N      int64   // number of values
	SumXX  float64 // Σx²
	SumYY  float64 // Σy²
	SumXY  float64 // Σxy
	SumEE  float64 // Σ(x−y)²
	MaxAbs float64 // max |x−y|
}

// Add accumulates one slice pair. x and y must have the same length.
func (s *Stats) Add(x, y []float32) {
	var xx, yy, xy, ee, mx float64
	y = y[:len(x)]
	for i, a := range x {
		fa, fb := float64(a), float64(y[i])
		e := fa - fb
		xx += fa * fa
		yy += fb * fb
		xy += fa * fb
		ee += e * e
		if e < 0 {
			e = -e
		}
		if e > mx {
			mx = e
		}
	}
	s.N += int64(len(x))
	s.SumXX += xx
	s.SumYY += yy
	s.SumXY += xy
	s.SumEE += ee
	if mx > s.MaxAbs {
		s.MaxAbs = mx
	}
}

// Merge adds the totals of o into s.
func (s *Stats) Merge(o Stats) {
	s.N += o.N
	s.SumXX += o.SumXX
	s.SumYY += o.SumYY
	s.SumXY += o.SumXY
	s.SumEE += o.SumEE
	if o.MaxAbs > s.MaxAbs {
		s.MaxAbs = o.MaxAbs
	}
}

// RelRMSE is sqrt(Σ(x−y)²/Σx²): 0 for a perfect copy. An all-zero original
// reconstructed exactly gives 0; reconstructed inexactly gives +Inf.
func (s Stats) RelRMSE() float64 {
	if s.SumEE == 0 {
		return 0
	}
	if s.SumXX == 0 {
		return math.Inf(1)
	}
	return math.Sqrt(s.SumEE / s.SumXX)
}

// Cosine is Σxy/(|x||y|): 1 for identical directions. Two all-zero vectors
// count as identical (1).
func (s Stats) Cosine() float64 {
	if s.SumXX == 0 && s.SumYY == 0 {
		return 1
	}
	if s.SumXX == 0 || s.SumYY == 0 {
		return 0
	}
	return s.SumXY / (math.Sqrt(s.SumXX) * math.Sqrt(s.SumYY))
}

// Tensor is the error report for one tensor.
type Tensor struct {
	Name    string  `json:"name"`
	Type    string  `json:"type"` // the type written, e.g. "q4_K" or "fp8"
	Params  int64   `json:"params"`
	RelRMSE float64 `json:"rel_rmse"`
	MaxAbs  float64 `json:"max_abs_error"`
	Cosine  float64 `json:"cosine"`
	Stats   Stats   `json:"-"`
}

// NewTensor turns accumulated stats into a report row.
func NewTensor(name, typ string, s Stats) Tensor {
	return Tensor{Name: name, Type: typ, Params: s.N, RelRMSE: s.RelRMSE(), MaxAbs: s.MaxAbs, Cosine: s.Cosine(), Stats: s}
}

// Report is the per-tensor table plus the whole-model summary over the
// quantized tensors. Tensors copied unchanged are not listed.
type Report struct {
	Tensors []Tensor `json:"tensors"`
	Summary Tensor   `json:"summary"`
}

// NewReport sorts the rows by name and computes the summary, whose error
// figures are over all quantized values together (not a mean of means).
func NewReport(rows []Tensor) Report {
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	var all Stats
	for _, r := range rows {
		all.Merge(r.Stats)
	}
	return Report{Tensors: rows, Summary: NewTensor("(model)", "", all)}
}

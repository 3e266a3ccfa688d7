package quality

import (
	"math"
	"testing"
)

func TestStats(t *testing.T) {
	var s Stats
	// x = (3, 4), y = (3, 3): error (0, 1); Σx² = 25, Σe² = 1 -> rel RMSE 1/5.
	// cos = (9+12)/(5·sqrt(18)) = 21/(5·4.2426) = 0.98995.
	s.Add([]float32{3, 4}, []float32{3, 3})
	if got := s.RelRMSE(); math.Abs(got-0.2) > 1e-12 {
		t.Errorf("RelRMSE = %v, want 0.2", got)
	}
	if got := s.MaxAbs; got != 1 {
		t.Errorf("MaxAbs = %v, want 1", got)
	}
	if got, want := s.Cosine(), 21/(5*math.Sqrt(18)); math.Abs(got-want) > 1e-12 {
		t.Errorf("Cosine = %v, want %v", got, want)
	}
	var a, b Stats
	a.Add([]float32{3}, []float32{3})
	b.Add([]float32{4}, []float32{3})
	a.Merge(b)
	if a != s {
		t.Errorf("merged %+v, want %+v", a, s)
	}
	var z Stats
	z.Add([]float32{0, 0}, []float32{0, 0})
	if z.RelRMSE() != 0 || z.Cosine() != 1 {
		t.Errorf("zero tensor: rmse %v cos %v", z.RelRMSE(), z.Cosine())
	}
	r := NewReport([]Tensor{NewTensor("b", "q8_0", s), NewTensor("a", "q8_0", b)})
	if r.Tensors[0].Name != "a" || r.Summary.Params != 3 {
		t.Errorf("report %+v", r)
	}
}

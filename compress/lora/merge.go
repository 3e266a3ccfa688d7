package lora

import (
	"context"
	"fmt"
	"math"
)

// job merges one base tensor, streaming it in chunks of rows.
type job struct {
	name       string
	rows, cols int
	// readBase decodes base rows [row0, row0+n) into dst (n·cols values).
	readBase func(row0, n int, dst []float64) error
	// load returns the tensor's steps, loading the adapters' matrices;
	// called once, when the tensor's turn comes, so that only one
	// tensor's matrices are in memory at a time.
	load func(ctx context.Context) ([]step, error)
	// encode rounds src once to the base dtype into dst and returns the
	// index of the first non-finite result, or -1.
	encode    func(dst []byte, src []float64) int
	elemBytes int
	write     func(p []byte) error
}

func (j *job) run(ctx context.Context) error {
	steps, err := j.load(ctx)
	if err != nil {
		return err
	}
	for _, s := range steps {
		if s.f != nil && (len(s.f.l) != j.rows*s.f.rank || len(s.f.r) != s.f.rank*j.cols) {
			return fmt.Errorf("tensor %s: internal error: factors do not fit", j.name)
		}
	}
	n := chunkRows(j.cols)
	acc := make([]float64, n*j.cols)
	d := make([]float64, j.cols)
	out := make([]byte, n*j.cols*j.elemBytes)
	for row0 := 0; row0 < j.rows; row0 += n {
		if err := ctx.Err(); err != nil {
			return err
		}
		m := min(n, j.rows-row0)
		a := acc[:m*j.cols]
		if err := j.readBase(row0, m, a); err != nil {
			return err
		}
		for _, s := range steps {
			if s.repl != nil {
				if err := s.repl(ctx, row0, a); err != nil {
					return err
				}
			}
			if s.f != nil {
				applyDelta(a, row0, m, j.cols, s.f, d)
			}
		}
		o := out[:m*j.cols*j.elemBytes]
		if i := j.encode(o, a); i >= 0 {
			row, col := row0+i/j.cols, i%j.cols
			return fmt.Errorf("tensor %s: merged value at [%d, %d] is %v, which does not fit the base dtype: %w", j.name, row, col, a[i], ErrNonFinite)
		}
		if err := j.write(o); err != nil {
			return err
		}
	}
	return nil
}

// widen converts float32 values to float64, failing on a non-finite one.
func widen(dst []float64, src []float32, what string, off int) error {
	for i, v := range src {
		if !finite32(v) {
			return fmt.Errorf("%s: element %d is %v: %w", what, off+i, v, ErrNonFinite)
		}
		dst[i] = float64(v)
	}
	return nil
}

// matrix is a dense row-major float32 matrix read from an adapter file.
type matrix struct {
	rows, cols int
	v          []float32
}

// toF64 returns m (or its transpose) as float64 values, checking they are
// finite.
func (m matrix) toF64(transpose bool, what string) ([]float64, error) {
	out := make([]float64, len(m.v))
	for i, v := range m.v {
		if !finite32(v) {
			return nil, fmt.Errorf("%s: element %d is %v: %w", what, i, v, ErrNonFinite)
		}
		if transpose {
			r, c := i/m.cols, i%m.cols
			out[c*m.rows+r] = float64(v)
		} else {
			out[i] = float64(v)
		}
	}
	return out, nil
}

// lowRank builds the factors of delta = scale · L·R for a base of the given
// rows, from L (rows×rank, or its transpose) and R (rank×cols, or its
// transpose).
func lowRank(l matrix, lT bool, r matrix, rT bool, scale float64, lname, rname string) (*factors, error) {
	lv, err := l.toF64(lT, lname)
	if err != nil {
		return nil, err
	}
	rv, err := r.toF64(rT, rname)
	if err != nil {
		return nil, err
	}
	rank := l.cols
	if lT {
		rank = l.rows
	}
	return &factors{rank: rank, l: lv, r: rv, scale: scale}, nil
}

func isFinite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// loadSteps is a job's load: it makes each of the tensor's steps (reading
// the adapters' matrices) when the job runs.
func loadSteps(steps []func(context.Context) (step, error)) func(context.Context) ([]step, error) {
	return func(ctx context.Context) ([]step, error) {
		out := make([]step, 0, len(steps))
		for _, mk := range steps {
			s, err := mk(ctx)
			if err != nil {
				return nil, err
			}
			out = append(out, s)
		}
		return out, nil
	}
}

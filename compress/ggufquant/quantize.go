package ggufquant

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf"
	"github.com/gantry-dev/gantry/compress/internal/simd"
	"github.com/gantry-dev/gantry/compress/quality"
	"golang.org/x/sync/errgroup"
)

// Options configure Quantize.
type Options struct {
	// Type is the target: q8_0, q4_0, q4_1, q5_0, q5_1, q4_k_s, q4_k_m,
	// q5_k_s, q5_k_m, q6_k; q4_k and q5_k mean q4_k_m and q5_k_m.
	Type string
	// Threads is the number of quantizing goroutines; 0 means GOMAXPROCS.
	// The output does not depend on it.
	Threads int
	// Pure quantizes every eligible tensor to the base type (llama-quantize
	// --pure): no per-tensor mix. A tensor whose rows do not fit the base
	// type's blocks still falls back (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K →
	// Q8_0, else F16), as llama.cpp does.
	Pure bool
	// Skip lists path.Match globs of tensor names to copy unchanged.
	Skip []string
	// AllowNonFinite accepts NaN and ±Inf values instead of failing: in
	// tensors that are quantized and in F32/F16/BF16 tensors copied
	// unchanged (norms, skipped tensors) alike.
	AllowNonFinite bool
	// LeaveOutput keeps output.weight as is (--leave-output-tensor).
	LeaveOutput bool
	// Progress, if set, is called from one goroutine with the number of
	// input tensor-data bytes handled so far, after each chunk is written.
	Progress func(bytesDone int64)
	// InputName names the input in errors; "input" if empty.
	InputName string
	// Profile, if set, receives where the time went once Quantize returns.
	// Measuring costs a few per cent.
	Profile *Profile
}

// chunkValues is the target number of values per unit of work. Work is
// split at row boundaries, so a unit holds max(1, chunkValues/ne0) rows;
// memory in flight is bounded by one unit per thread, not by the model or
// tensor size.
const chunkValues = 1 << 18

// copyChunk is the unit for tensors copied unchanged.
const copyChunk = 1 << 20

// tileValues is how many values of a unit are decoded, checked, quantized,
// dequantized and measured at a time: the float32 copies of a tile (16 KiB
// each) stay in the first-level cache between the steps, so the unit's
// data is swept once. It is a multiple of every block size (256) and of
// the error sums' four lanes.
const tileValues = 4096

// NonFiniteError reports a NaN or infinite weight.
type NonFiniteError struct {
	File   string
	Tensor string
	Index  int64 // element index in the tensor
	Offset int64 // byte offset of the element in the input file
	Value  float32
}

func (e *NonFiniteError) Error() string {
	return fmt.Sprintf("%s: tensor %q: offset %d: element %d is %v (set AllowNonFinite to accept it)",
		e.File, e.Tensor, e.Offset, e.Index, e.Value)
}

// unit is one piece of work: a run of whole rows of a tensor to quantize,
// or a run of bytes of a tensor to copy.
type unit struct {
	tensor int   // index into plan.Tensors
	first  int64 // first element (quantize) or byte (copy) in the tensor
	n      int64 // elements (quantize) or bytes (copy)
	inOff  int64 // absolute input offset
	outOff int64 // offset in the output tensor's data
}

// Quantize reads the GGUF model in (inSize bytes), quantizes it as
// llama-quantize would with opts, and writes the result to the file out,
// atomically (temporary file + rename). It returns the error report of the
// quantized tensors.
func Quantize(ctx context.Context, in io.ReaderAt, inSize int64, out string, opts Options) (quality.Report, error) {
	name := opts.InputName
	if name == "" {
		name = "input"
	}
	f, err := gguf.Read(ctx, in, inSize, name)
	if err != nil {
		return quality.Report{}, fmt.Errorf("quantize %s: %w", name, err)
	}
	plan, err := MakePlan(f.KV, f.Tensors, opts)
	if err != nil {
		return quality.Report{}, fmt.Errorf("quantize %s: %w", name, err)
	}
	outTensors := make([]gguf.TensorInfo, len(plan.Tensors))
	for i, tp := range plan.Tensors {
		outTensors[i] = gguf.TensorInfo{Name: tp.Name, Shape: tp.Shape, Type: tp.To}
	}
	fw, err := gguf.Create(ctx, out, plan.KV, outTensors)
	if err != nil {
		return quality.Report{}, fmt.Errorf("quantize %s: %w", name, err)
	}
	defer fw.Abort()
	stats, err := run(ctx, f, plan, fw, opts)
	if err != nil {
		return quality.Report{}, fmt.Errorf("quantize %s: %w", name, err)
	}
	if err := fw.Commit(ctx); err != nil {
		return quality.Report{}, fmt.Errorf("quantize %s: %w", name, err)
	}
	var rows []quality.Tensor
	for i, tp := range plan.Tensors {
		if tp.Action == ActionQuantize {
			rows = append(rows, quality.NewTensor(tp.Name, tp.To.String(), stats[i]))
		}
	}
	return quality.NewReport(rows), nil
}

// run cuts the tensors into units, in file order, and lets Threads
// workers take them in that order. A worker reads its unit's input with one
// pread, runs it tile by tile through decode, check, quantize, dequantize
// and error sums, and writes the output with one pwrite at the unit's fixed
// offset (WriteTensorAt), so nothing waits for the slowest unit and no
// output passes through another goroutine. The error sums of each unit are
// kept apart and merged in unit order at the end, so the report does not
// depend on the thread count; if units fail, the first one in file order
// is the error, as with one thread.
func run(ctx context.Context, f *gguf.File, plan *Plan, fw *gguf.FileWriter, opts Options) ([]quality.Stats, error) {
	threads := opts.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	units, err := cut(f, plan)
	if err != nil {
		return nil, err
	}
	adviseSequential(f.ReaderAt())
	var (
		next     atomic.Int64
		stop     atomic.Int64 // units at or after stop are not started
		errs     = make([]error, len(units))
		ustats   = make([]quality.Stats, len(units))
		progress sync.Mutex
		done     int64
	)
	stop.Store(int64(len(units)))
	fail := func(i int64, err error) {
		errs[i] = err
		for {
			s := stop.Load()
			if i >= s || stop.CompareAndSwap(s, i) {
				return
			}
		}
	}
	var prof *Profile
	if opts.Profile != nil {
		prof = &Profile{}
	}
	start := time.Now()
	g, ctx := errgroup.WithContext(ctx)
	for t := 0; t < threads; t++ {
		w := &worker{f: f, plan: plan, fw: fw, opts: &opts}
		if prof != nil {
			w.prof = &Profile{}
		}
		g.Go(func() error {
			defer func() {
				if w.prof != nil {
					progress.Lock()
					prof.add(w.prof)
					progress.Unlock()
				}
			}()
			for {
				if err := ctx.Err(); err != nil {
					return err
				}
				i := next.Add(1) - 1
				if i >= stop.Load() {
					return nil
				}
				u := &units[i]
				st, err := w.do(u)
				if err != nil {
					fail(i, err)
					continue
				}
				ustats[i] = st
				progress.Lock()
				done += w.inLen(u)
				if opts.Progress != nil {
					opts.Progress(done)
				}
				progress.Unlock()
			}
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	stats := make([]quality.Stats, len(plan.Tensors))
	for i := range units {
		stats[units[i].tensor].Merge(ustats[i])
	}
	if prof != nil {
		prof.Wall = time.Since(start)
		prof.Threads = threads
		prof.SIMD = simd.Current().String()
		*opts.Profile = *prof
	}
	return stats, nil
}

// cut lists the units of every tensor in file order.
func cut(f *gguf.File, plan *Plan) ([]unit, error) {
	var units []unit
	for ti, tp := range plan.Tensors {
		src := &f.Tensors[tp.Index]
		base := f.DataOffset + src.Offset
		if tp.Action == ActionCopy {
			size := src.Bytes()
			for off := int64(0); off < size; off += copyChunk {
				units = append(units, unit{tensor: ti, first: off, n: min(copyChunk, size-off), inOff: base + off, outOff: off})
			}
			continue
		}
		ne0 := tp.Shape[0]
		if ne0 <= 0 {
			// MakePlan refuses such shapes; never divide by zero below.
			return nil, fmt.Errorf("tensor %q: ne0 = %d", tp.Name, ne0)
		}
		rows := src.Rows()
		per := max(1, chunkValues/ne0)
		esize := src.Type.TypeSize()
		for r := int64(0); r < rows; r += per {
			k := min(per, rows-r)
			outOff, err := tp.To.RowSize(r * ne0)
			if err != nil {
				return nil, fmt.Errorf("tensor %q: %w", tp.Name, err)
			}
			units = append(units, unit{tensor: ti, first: r * ne0, n: k * ne0, inOff: base + r*ne0*esize, outOff: outOff})
		}
	}
	return units, nil
}

// worker owns the buffers of one thread: a unit's input and output, and
// the float32 values of one tile before and after quantization.
type worker struct {
	f      *gguf.File
	plan   *Plan
	fw     *gguf.FileWriter
	opts   *Options
	prof   *Profile // nil unless profiling
	noprof Profile  // where an unprofiled worker's laps go (never read)

	in, out []byte
	x, y    [tileValues]float32
}

func (w *worker) inLen(u *unit) int64 {
	tp := &w.plan.Tensors[u.tensor]
	if tp.Action == ActionCopy {
		return u.n
	}
	return u.n * tp.From.TypeSize()
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// do reads, converts and writes one unit and returns its error sums.
func (w *worker) do(u *unit) (quality.Stats, error) {
	tp := &w.plan.Tensors[u.tensor]
	t0 := w.now()
	w.in = grow(w.in, int(w.inLen(u)))
	if n, err := w.f.ReaderAt().ReadAt(w.in, u.inOff); n < len(w.in) {
		return quality.Stats{}, fmt.Errorf("read %s at offset %d: %w", w.f.Name, u.inOff, err)
	}
	t0 = w.lap(t0, &w.p().Read)
	var st quality.Stats
	out := w.in
	if tp.Action == ActionCopy {
		if !w.opts.AllowNonFinite {
			if err := checkCopy(w.f, tp, u, w.in); err != nil {
				return quality.Stats{}, err
			}
		}
		t0 = w.lap(t0, &w.p().Check)
	} else {
		var err error
		if st, out, err = w.quantize(u, tp); err != nil {
			return quality.Stats{}, err
		}
		t0 = w.now()
	}
	if err := w.fw.WriteTensorAt(u.tensor, u.outOff, out); err != nil {
		return quality.Stats{}, err
	}
	w.lap(t0, &w.p().Write)
	if w.prof != nil {
		w.prof.BytesIn += int64(len(w.in))
		w.prof.BytesOut += int64(len(out))
	}
	return st, nil
}

// quantize runs one unit through the tiles and returns its error sums and
// its output blocks.
func (w *worker) quantize(u *unit, tp *TensorPlan) (quality.Stats, []byte, error) {
	esize := tp.From.TypeSize()
	size, err := tp.To.RowSize(u.n)
	if err != nil {
		return quality.Stats{}, nil, fmt.Errorf("tensor %q: %w", tp.Name, err)
	}
	w.out = grow(w.out, int(size))
	var acc statSums
	p := w.p()
	for t := int64(0); t < u.n; t += tileValues {
		k := min(tileValues, u.n-t)
		x, y := w.x[:k], w.y[:k]
		t0 := w.now()
		finite := false // known finite, so the check can be skipped
		if src := w.in[t*esize : (t+k)*esize]; tp.From == ggml.F16 {
			finite = ggml.DecodeF16Finite(x, src) // the check rides along
		} else if err := ggml.Dequantize(tp.From, x, src); err != nil {
			return quality.Stats{}, nil, fmt.Errorf("tensor %q: %w", tp.Name, err)
		}
		t0 = w.lap(t0, &p.Decode)
		if !w.opts.AllowNonFinite && !finite {
			if i := firstNonFinite(x); i >= 0 {
				return quality.Stats{}, nil, &NonFiniteError{File: w.f.Name, Tensor: tp.Name, Index: u.first + t + int64(i),
					Offset: u.inOff + (t+int64(i))*esize, Value: x[i]}
			}
			t0 = w.lap(t0, &p.Check)
		}
		// t is a multiple of tileValues and so of the block size.
		ob, _ := tp.To.RowSize(t)
		oe, _ := tp.To.RowSize(t + k)
		ob2 := w.out[ob:oe]
		if ggml.FusesDequantize(tp.To) {
			// One kernel dequantizes while the quants are in registers;
			// its time is all quantize.
			if _, err := ggml.QuantizeDequantize(tp.To, ob2, y, x); err != nil {
				return quality.Stats{}, nil, fmt.Errorf("tensor %q: %w", tp.Name, err)
			}
			t0 = w.lap(t0, &p.Quantize)
		} else {
			if tp.To == ggml.F16 {
				ggml.EncodeF16(ob2, x)
			} else if _, err := ggml.Quantize(tp.To, ob2, x); err != nil {
				return quality.Stats{}, nil, fmt.Errorf("tensor %q: %w", tp.Name, err)
			}
			t0 = w.lap(t0, &p.Quantize)
			if err := ggml.Dequantize(tp.To, y, ob2); err != nil {
				return quality.Stats{}, nil, fmt.Errorf("tensor %q: %w", tp.Name, err)
			}
			t0 = w.lap(t0, &p.Dequantize)
		}
		acc.add(x, y)
		w.lap(t0, &p.Errors)
	}
	return acc.stats(u.n), w.out, nil
}

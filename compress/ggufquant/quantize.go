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
// workers take them in that order, two at a time (two units to quantize
// run in step, see doPair). A worker reads its unit's input with one
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
	// finish records unit i's outcome.
	finish := func(w *worker, i int64, st quality.Stats, err error) {
		if err != nil {
			fail(i, err)
			return
		}
		ustats[i] = st
		progress.Lock()
		done += w.inLen(&units[i])
		if opts.Progress != nil {
			opts.Progress(done)
		}
		progress.Unlock()
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
				i := next.Add(2) - 2
				if i >= stop.Load() {
					return nil
				}
				if i+1 < int64(len(units)) && i+1 < stop.Load() && quantizes(plan, &units[i]) && quantizes(plan, &units[i+1]) {
					st1, st2, err1, err2 := w.doPair(&units[i], &units[i+1])
					finish(w, i, st1, err1)
					if err1 == nil {
						finish(w, i+1, st2, err2)
					}
					continue
				}
				for j := i; j < min(i+2, int64(len(units))) && j < stop.Load(); j++ {
					st, err := w.do(&units[j])
					finish(w, j, st, err)
				}
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

// quantizes reports whether u is a unit to quantize (not to copy).
func quantizes(plan *Plan, u *unit) bool { return plan.Tensors[u.tensor].Action != ActionCopy }

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

// worker owns the buffers of one thread: those of two units in flight
// (see doPair).
type worker struct {
	f      *gguf.File
	plan   *Plan
	fw     *gguf.FileWriter
	opts   *Options
	prof   *Profile // nil unless profiling
	noprof Profile  // where an unprofiled worker's laps go (never read)

	s [2]slot
}

// slot holds one unit in flight: its input and output, the float32 values
// of one tile before and after quantization, and its error sums.
type slot struct {
	in, out []byte
	have    int // bytes of in read so far
	x, y    [tileValues]float32
	acc     statSums
}

// readPiece is how much of a unit to quantize is read at a time, just
// ahead of the tiles that decode it: small enough that two units' pieces
// are still in the second-level cache when they are decoded.
const readPiece = 256 << 10

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

// read reads u's input into s.in, whole.
func (w *worker) read(s *slot, u *unit) error {
	s.in, s.have = grow(s.in, int(w.inLen(u))), 0
	return w.readTo(s, u, len(s.in))
}

// readTo reads s.in up to at least byte end, in pieces of readPiece.
func (w *worker) readTo(s *slot, u *unit, end int) error {
	if end <= s.have {
		return nil
	}
	t0 := w.now()
	end = min(max(end, s.have+readPiece), len(s.in))
	if n, err := w.f.ReaderAt().ReadAt(s.in[s.have:end], u.inOff+int64(s.have)); n < end-s.have {
		return fmt.Errorf("read %s at offset %d: %w", w.f.Name, u.inOff+int64(s.have), err)
	}
	s.have = end
	w.lap(t0, &w.p().Read)
	return nil
}

// write writes a unit's output at its fixed offset.
func (w *worker) write(u *unit, out, in []byte) error {
	t0 := w.now()
	if err := w.fw.WriteTensorAt(u.tensor, u.outOff, out); err != nil {
		return err
	}
	w.lap(t0, &w.p().Write)
	if w.prof != nil {
		w.prof.BytesIn += int64(len(in))
		w.prof.BytesOut += int64(len(out))
	}
	return nil
}

// do reads, converts and writes one unit and returns its error sums.
func (w *worker) do(u *unit) (quality.Stats, error) {
	s := &w.s[0]
	tp := &w.plan.Tensors[u.tensor]
	var st quality.Stats
	var out []byte
	if tp.Action == ActionCopy {
		if err := w.read(s, u); err != nil {
			return quality.Stats{}, err
		}
		out = s.in
		if !w.opts.AllowNonFinite {
			t0 := w.now()
			if err := checkCopy(w.f, tp, u, s.in); err != nil {
				return quality.Stats{}, err
			}
			w.lap(t0, &w.p().Check)
		}
	} else {
		if err := w.begin(s, u); err != nil {
			return quality.Stats{}, err
		}
		for t := int64(0); t < u.n; t += tileValues {
			k, err := w.tile(s, u, t)
			if err != nil {
				return quality.Stats{}, err
			}
			t0 := w.now()
			s.acc.add(s.x[:k], s.y[:k])
			w.lap(t0, &w.p().Errors)
		}
		st, out = s.acc.stats(u.n), s.out
	}
	return st, w.write(u, out, s.in)
}

// doPair is do for two units to quantize, u1 before u2 in file order,
// held in step tile by tile so that their error sums run in one loop
// (addPair): each unit's sums are one chain per lane, which on its own
// waits on the latency of every addition; two independent units fill
// each other's waits. Each unit gets the very bits of do. If u1 fails,
// u2 is dropped (u1's error comes first in file order anyway); if u2
// fails, u1 still completes.
func (w *worker) doPair(u1, u2 *unit) (st1, st2 quality.Stats, err1, err2 error) {
	s1, s2 := &w.s[0], &w.s[1]
	if err1 = w.begin(s1, u1); err1 != nil {
		return
	}
	err2 = w.begin(s2, u2)
	n2 := u2.n
	if err2 != nil {
		n2 = 0
	}
	for t := int64(0); t < max(u1.n, n2); t += tileValues {
		var k1, k2 int
		if t < u1.n {
			if k1, err1 = w.tile(s1, u1, t); err1 != nil {
				return
			}
		}
		if t < n2 {
			if k2, err2 = w.tile(s2, u2, t); err2 != nil {
				n2 = 0
			}
		}
		t0 := w.now()
		addPair(&s1.acc, s1.x[:k1], s1.y[:k1], &s2.acc, s2.x[:k2], s2.y[:k2])
		w.lap(t0, &w.p().Errors)
	}
	if err1 = w.write(u1, s1.out, s1.in); err1 != nil {
		return
	}
	st1 = s1.acc.stats(u1.n)
	if err2 == nil {
		err2 = w.write(u2, s2.out, s2.in)
		st2 = s2.acc.stats(u2.n)
	}
	return
}

// begin sizes s's input and output for unit u, to quantize, and clears
// its sums; tile reads the input as it goes.
func (w *worker) begin(s *slot, u *unit) error {
	tp := &w.plan.Tensors[u.tensor]
	size, err := tp.To.RowSize(u.n)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", tp.Name, err)
	}
	s.in, s.have = grow(s.in, int(w.inLen(u))), 0
	s.out = grow(s.out, int(size))
	s.acc = statSums{}
	return nil
}

// tile runs the tile of unit u at value t (a multiple of tileValues)
// through decode, check, quantize and dequantize: the quantized blocks go
// to s.out, the values before and after to s.x and s.y. It returns the
// tile's length.
func (w *worker) tile(s *slot, u *unit, t int64) (int, error) {
	tp := &w.plan.Tensors[u.tensor]
	esize := tp.From.TypeSize()
	p := w.p()
	k := min(tileValues, u.n-t)
	x, y := s.x[:k], s.y[:k]
	if err := w.readTo(s, u, int((t+k)*esize)); err != nil {
		return 0, err
	}
	t0 := w.now()
	finite := false // known finite, so the check can be skipped
	if src := s.in[t*esize : (t+k)*esize]; tp.From == ggml.F16 {
		finite = ggml.DecodeF16Finite(x, src) // the check rides along
	} else if err := ggml.Dequantize(tp.From, x, src); err != nil {
		return 0, fmt.Errorf("tensor %q: %w", tp.Name, err)
	}
	t0 = w.lap(t0, &p.Decode)
	if !w.opts.AllowNonFinite && !finite {
		if i := firstNonFinite(x); i >= 0 {
			return 0, &NonFiniteError{File: w.f.Name, Tensor: tp.Name, Index: u.first + t + int64(i),
				Offset: u.inOff + (t+int64(i))*esize, Value: x[i]}
		}
		t0 = w.lap(t0, &p.Check)
	}
	// t is a multiple of tileValues and so of the block size.
	ob, _ := tp.To.RowSize(t)
	oe, _ := tp.To.RowSize(t + k)
	ob2 := s.out[ob:oe]
	if ggml.FusesDequantize(tp.To) {
		// One kernel dequantizes while the quants are in registers;
		// its time is all quantize.
		if _, err := ggml.QuantizeDequantize(tp.To, ob2, y, x); err != nil {
			return 0, fmt.Errorf("tensor %q: %w", tp.Name, err)
		}
		w.lap(t0, &p.Quantize)
		return int(k), nil
	}
	if tp.To == ggml.F16 {
		ggml.EncodeF16(ob2, x)
	} else if _, err := ggml.Quantize(tp.To, ob2, x); err != nil {
		return 0, fmt.Errorf("tensor %q: %w", tp.Name, err)
	}
	t0 = w.lap(t0, &p.Quantize)
	if err := ggml.Dequantize(tp.To, y, ob2); err != nil {
		return 0, fmt.Errorf("tensor %q: %w", tp.Name, err)
	}
	w.lap(t0, &p.Dequantize)
	return int(k), nil
}

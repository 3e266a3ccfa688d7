package ggufquant

import (
	"context"
	"fmt"
	"io"
	"runtime"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf"
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
}

// chunkValues is the target number of values per unit of work. Work is
// split at row boundaries, so a unit holds max(1, chunkValues/ne0) rows;
// memory in flight is bounded by a few units per thread, not by the model
// or tensor size.
const chunkValues = 1 << 18

// copyChunk is the unit for tensors copied unchanged.
const copyChunk = 1 << 20

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

type job struct {
	seq    int
	tensor int   // index into plan.Tensors
	first  int64 // first element
	n      int64 // elements (or bytes for a copy)
	inOff  int64 // absolute input offset
	in     []byte
	out    []byte // what to write
	stats  quality.Stats
	err    error
	done   chan struct{}
	bufs   *buffers
}

type buffers struct {
	in  []byte
	x   []float32
	y   []float32
	out []byte
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

// run streams every tensor through a bounded pipeline: one goroutine reads
// units of work in output order, Threads goroutines convert and quantize
// them, and the calling goroutine writes them back in order. At most
// `inflight` units exist at a time, each with its own buffers.
func run(ctx context.Context, f *gguf.File, plan *Plan, w io.Writer, opts Options) ([]quality.Stats, error) {
	threads := opts.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	inflight := 2*threads + 2
	g, ctx := errgroup.WithContext(ctx)
	work := make(chan *job, inflight)
	ordered := make(chan *job, inflight)
	free := make(chan *buffers, inflight)
	for i := 0; i < inflight; i++ {
		free <- &buffers{}
	}

	// Reader: cut tensors into units and read their bytes.
	g.Go(func() error {
		defer close(work)
		defer close(ordered)
		seq := 0
		emit := func(j *job) error {
			var b *buffers
			select {
			case b = <-free:
			case <-ctx.Done():
				return ctx.Err()
			}
			j.bufs, j.seq, j.done = b, seq, make(chan struct{})
			seq++
			b.in = grow(b.in, int(j.inLen(plan)))
			j.in = b.in[:j.inLen(plan)]
			if n, err := f.ReaderAt().ReadAt(j.in, j.inOff); n < len(j.in) {
				return fmt.Errorf("read %s at offset %d: %w", f.Name, j.inOff, err)
			}
			select {
			case ordered <- j:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case work <- j:
			case <-ctx.Done():
				return ctx.Err()
			}
			return nil
		}
		for ti, tp := range plan.Tensors {
			src := &f.Tensors[tp.Index]
			base := f.DataOffset + src.Offset
			if tp.Action == ActionCopy {
				size := src.Bytes()
				for off := int64(0); off < size; off += copyChunk {
					if err := emit(&job{tensor: ti, first: off, n: min(copyChunk, size-off), inOff: base + off}); err != nil {
						return err
					}
				}
				continue
			}
			ne0 := tp.Shape[0]
			if ne0 <= 0 {
				// MakePlan refuses such shapes; never divide by zero below.
				return fmt.Errorf("tensor %q: ne0 = %d", tp.Name, ne0)
			}
			rows := src.Rows()
			per := max(1, chunkValues/ne0)
			esize := src.Type.TypeSize()
			for r := int64(0); r < rows; r += per {
				k := min(per, rows-r)
				j := &job{tensor: ti, first: r * ne0, n: k * ne0, inOff: base + r*ne0*esize}
				if err := emit(j); err != nil {
					return err
				}
			}
		}
		return nil
	})

	// Workers.
	for i := 0; i < threads; i++ {
		g.Go(func() error {
			for j := range work {
				j.err = process(f, plan, j, opts)
				close(j.done)
			}
			return nil
		})
	}

	// Writer, in order.
	stats := make([]quality.Stats, len(plan.Tensors))
	var done int64
	g.Go(func() error {
		for j := range ordered {
			select {
			case <-j.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			if j.err != nil {
				return j.err
			}
			if _, err := w.Write(j.out); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			stats[j.tensor].Merge(j.stats)
			done += int64(len(j.in))
			j.in, j.out = nil, nil
			free <- j.bufs
			if opts.Progress != nil {
				opts.Progress(done)
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return stats, nil
}

func (j *job) inLen(plan *Plan) int64 {
	tp := &plan.Tensors[j.tensor]
	if tp.Action == ActionCopy {
		return j.n
	}
	return j.n * tp.From.TypeSize()
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// process converts one unit to float32, checks it, quantizes it and
// measures the error of the result.
func process(f *gguf.File, plan *Plan, j *job, opts Options) error {
	tp := &plan.Tensors[j.tensor]
	if tp.Action == ActionCopy {
		if !opts.AllowNonFinite {
			if err := checkCopy(f, tp, j); err != nil {
				return err
			}
		}
		j.out = j.in
		return nil
	}
	b := j.bufs
	b.x = grow(b.x, int(j.n))
	x := b.x
	if err := ggml.Dequantize(tp.From, x, j.in); err != nil {
		return fmt.Errorf("tensor %q: %w", tp.Name, err)
	}
	if !opts.AllowNonFinite {
		if i := firstNonFinite(x); i >= 0 {
			return &NonFiniteError{File: f.Name, Tensor: tp.Name, Index: j.first + int64(i),
				Offset: j.inOff + int64(i)*tp.From.TypeSize(), Value: x[i]}
		}
	}
	n, err := tp.To.RowSize(j.n)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", tp.Name, err)
	}
	b.out = grow(b.out, int(n))
	if tp.To == ggml.F16 {
		ggml.EncodeF16(b.out, x)
	} else if _, err := ggml.Quantize(tp.To, b.out, x); err != nil {
		return fmt.Errorf("tensor %q: %w", tp.Name, err)
	}
	j.out = b.out
	b.y = grow(b.y, int(j.n))
	if err := ggml.Dequantize(tp.To, b.y, b.out); err != nil {
		return fmt.Errorf("tensor %q: %w", tp.Name, err)
	}
	j.stats = errorStats(x, b.y)
	return nil
}

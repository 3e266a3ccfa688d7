package ggufquant

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Profile is where a Quantize spent its time. The stage durations are
// summed over the worker threads, so with N threads they add up to about
// N × Wall when the workers are never idle.
type Profile struct {
	Wall    time.Duration
	Threads int
	SIMD    string // the kernels' instruction set (simd level)

	Read       time.Duration // pread of the input
	Decode     time.Duration // F16/BF16/F32 → float32
	Check      time.Duration // the NaN/Inf check (of copied tensors too)
	Quantize   time.Duration // float32 → blocks
	Dequantize time.Duration // blocks → float32, for the error report
	Errors     time.Duration // the error sums
	Write      time.Duration // pwrite of the output

	BytesIn, BytesOut int64 // tensor data read and written
}

func (p *Profile) add(q *Profile) {
	p.Read += q.Read
	p.Decode += q.Decode
	p.Check += q.Check
	p.Quantize += q.Quantize
	p.Dequantize += q.Dequantize
	p.Errors += q.Errors
	p.Write += q.Write
	p.BytesIn += q.BytesIn
	p.BytesOut += q.BytesOut
}

// Stages lists the stage names and durations in pipeline order.
func (p *Profile) Stages() []Stage {
	return []Stage{
		{"read", p.Read}, {"decode", p.Decode}, {"check", p.Check}, {"quantize", p.Quantize},
		{"dequantize", p.Dequantize}, {"errors", p.Errors}, {"write", p.Write},
	}
}

// Stage is one step of the pipeline and the time spent in it.
type Stage struct {
	Name string
	Time time.Duration
}

// WriteTo prints the profile as a table: each stage's time, its share of
// the threads' total time, and its throughput in input bytes.
func (p *Profile) WriteTo(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	tw := tabwriter.NewWriter(cw, 0, 0, 2, ' ', tabwriter.AlignRight)
	total := time.Duration(p.Threads) * p.Wall
	fmt.Fprintf(tw, "stage\ttime\tshare\tMB/s of input\t\n")
	var sum time.Duration
	for _, s := range p.Stages() {
		sum += s.Time
		fmt.Fprintf(tw, "%s\t%.3f s\t%.1f%%\t%s\t\n", s.Name, s.Time.Seconds(), share(s.Time, total), rate(p.BytesIn, s.Time))
	}
	fmt.Fprintf(tw, "other (scheduling, idle)\t%.3f s\t%.1f%%\t\t\n", (total - sum).Seconds(), share(total-sum, total))
	tw.Flush()
	fmt.Fprintf(cw, "wall %.3f s, %d threads, simd %s: %d MB in, %d MB out, %s MB/s\n",
		p.Wall.Seconds(), p.Threads, p.SIMD, p.BytesIn/1e6, p.BytesOut/1e6, rate(p.BytesIn, p.Wall))
	return cw.n, cw.err
}

func share(d, total time.Duration) float64 {
	if total <= 0 {
		return 0
	}
	return 100 * float64(d) / float64(total)
}

func rate(bytes int64, d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", float64(bytes)/1e6/d.Seconds())
}

type countWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countWriter) Write(b []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
	return n, err
}

// p is where the worker's laps go.
func (w *worker) p() *Profile {
	if w.prof != nil {
		return w.prof
	}
	return &w.noprof
}

// now is the time, when profiling.
func (w *worker) now() time.Time {
	if w.prof == nil {
		return time.Time{}
	}
	return time.Now()
}

// lap adds the time since t0 to d, when profiling, and returns now.
func (w *worker) lap(t0 time.Time, d *time.Duration) time.Time {
	if w.prof == nil {
		return t0
	}
	t := time.Now()
	*d += t.Sub(t0)
	return t
}

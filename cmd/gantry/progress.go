package main

import (
	"context"
	"io"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// progressBar shows bytes, rate and ETA on a terminal. On anything else it
// is silent: CI logs and pipes get the result, not the animation.
type progressBar struct {
	p   *mpb.Progress
	bar *mpb.Bar
}

func newProgressBar(ctx context.Context, w io.Writer, tty bool, name string, total int64) *progressBar {
	if !tty || total <= 0 {
		return &progressBar{}
	}
	p := mpb.NewWithContext(ctx, mpb.WithOutput(w), mpb.WithWidth(40))
	bar := p.AddBar(total,
		mpb.PrependDecorators(decor.Name(name+" "), decor.CountersKibiByte("% .1f / % .1f")),
		mpb.AppendDecorators(decor.AverageSpeed(decor.SizeB1024(0), " % .1f"), decor.Name("  ETA "), decor.AverageETA(decor.ET_STYLE_GO)),
	)
	return &progressBar{p: p, bar: bar}
}

// Set reports bytes done.
func (b *progressBar) Set(done int64) {
	if b.bar != nil {
		b.bar.SetCurrent(done)
	}
}

// Done completes (ok) or drops (failure) the bar and waits for it to draw.
func (b *progressBar) Done(ok bool) {
	if b.bar == nil {
		return
	}
	if ok {
		b.bar.SetTotal(-1, true)
	} else {
		b.bar.Abort(true)
	}
	b.p.Wait()
}

package registry

import (
	"os"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// pushProgress drains go-containerregistry's progress updates into a
// progress bar (bytes and rate) on a terminal and into the OnProgress
// callback. remote.Write sends an update per read and closes the channel
// when it returns, so the drain goroutine always ends.
type pushProgress struct {
	updates chan v1.Update
	done    chan struct{}
	last    v1.Update
}

func (r *Remote) startProgress(ref string) *pushProgress {
	p := &pushProgress{updates: make(chan v1.Update, 64), done: make(chan struct{})}
	out := r.opts.Progress
	if out == nil && isTerminal(os.Stderr) {
		out = os.Stderr
	}
	var (
		container *mpb.Progress
		bar       *mpb.Bar
		once      sync.Once
	)
	go func() {
		defer close(p.done)
		for u := range p.updates {
			if u.Error != nil {
				continue
			}
			p.last = u
			if r.opts.OnProgress != nil {
				r.opts.OnProgress(u.Complete, u.Total)
			}
			if out == nil {
				continue
			}
			once.Do(func() {
				// Auto refresh: out was chosen as a terminal, or given on purpose.
				container = mpb.New(mpb.WithOutput(out), mpb.WithAutoRefresh())
				bar = container.New(u.Total, mpb.BarStyle(),
					mpb.PrependDecorators(decor.Name("push "+ref+" ")),
					mpb.AppendDecorators(
						decor.Counters(decor.SizeB1024(0), "% .1f / % .1f"),
						decor.Name("  "),
						decor.AverageSpeed(decor.SizeB1024(0), "% .1f"),
					))
			})
			bar.SetTotal(u.Total, false)
			bar.SetCurrent(u.Complete)
		}
		if bar != nil {
			bar.SetTotal(-1, true) // complete (or abandon) the bar at its current count
			container.Wait()
		}
	}()
	return p
}

// wait returns the bytes counted once remote.Write has closed the channel.
func (p *pushProgress) wait() int64 {
	<-p.done
	return p.last.Total
}

package reconcile

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/spec"
)

// prestage pulls a canary's model image on the nodes the plan names,
// through the target, and says how it went. A pull that times out or
// fails is not an error: the shards are applied anyway (their pods pull
// the image themselves), and the note says so.
func (e *Engine) prestage(ctx context.Context, ps Prestager, namespace, release string, p planner.PrestageSpec) (string, error) {
	if ps == nil {
		return "", nil // planned against a target that can; nothing to do here
	}
	res, err := ps.Prestage(ctx, namespace, release, p)
	if err != nil {
		return "", err
	}
	note := prestageNote(p, res)
	e.mu.Lock()
	if e.prestaged == nil {
		e.prestaged = map[string][2]string{}
	}
	e.prestaged[release] = [2]string{p.Version, note}
	e.mu.Unlock()
	e.log().Info("prestaged", "release", release, "version", p.Version, "image", spec.MaskURLCredentials(p.Image), "result", note)
	return note, nil
}

// prestageNote says in words how a prestage went.
func prestageNote(p planner.PrestageSpec, res PrestageResult) string {
	var parts []string
	if len(res.Ready) > 0 {
		parts = append(parts, "pulled on "+strings.Join(res.Ready, ", "))
	}
	if len(res.TimedOut) > 0 {
		parts = append(parts, fmt.Sprintf("still pulling after %s on %s (shards applied anyway)", p.Timeout, strings.Join(res.TimedOut, ", ")))
	}
	if len(res.Failed) > 0 {
		nodes := make([]string, 0, len(res.Failed))
		for n := range res.Failed {
			nodes = append(nodes, n)
		}
		sort.Strings(nodes)
		var fs []string
		for _, n := range nodes {
			fs = append(fs, n+": "+spec.MaskURLCredentials(res.Failed[n]))
		}
		parts = append(parts, "failed on "+strings.Join(fs, "; ")+" (shards applied anyway)")
	}
	if len(parts) == 0 {
		return "nothing to pull"
	}
	return "version " + p.Version + ": " + strings.Join(parts, "; ")
}

// lastPrestage is how the last prestage of release's version went ("":
// none ran in this process).
func (e *Engine) lastPrestage(release, version string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p, ok := e.prestaged[release]; ok && p[0] == version {
		return p[1]
	}
	return ""
}

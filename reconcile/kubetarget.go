package reconcile

import (
	"context"
	"log/slog"
	"strings"
	"sync"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile/kube"
	"github.com/gantry-dev/gantry/schedule"
	"github.com/gantry-dev/gantry/spec"
)

// KubeTarget is a Kubernetes cluster: GPU nodes and managed objects are
// observed with one List per kind, or from informers once StartCache has
// run (the daemon), and objects are applied by server-side apply (field
// manager "gantry"), dry-run first, so unchanged objects keep their
// resourceVersion. Writes never trust the cache.
type KubeTarget struct {
	Client *kube.Client
	// Force takes fields over from other appliers instead of failing.
	Force bool
	Log   *slog.Logger

	mu     sync.Mutex
	shards map[string][]kube.ShardStatus // by release, from the last Observe
}

func (t *KubeTarget) log() *slog.Logger {
	if t.Log != nil {
		return t.Log
	}
	return slog.Default()
}

// StartCache starts the client's informers (Nodes, GPU pods, then the
// managed objects of the namespace the first Observe names) for as long as
// ctx lives, so that a reconcile reads listers instead of listing. When
// they cannot sync the target keeps listing and the error says why.
func (t *KubeTarget) StartCache(ctx context.Context) error {
	return t.Client.StartCache(ctx, kube.CacheOptions{})
}

// Observe reads the cluster.
func (t *KubeTarget) Observe(ctx context.Context, cfg *spec.Config) ([]planner.Object, []schedule.Node, error) {
	obs, err := t.Client.Observe(ctx, cfg.Settings.Namespace, cfg.Pools)
	if err != nil {
		return nil, nil, err
	}
	for _, s := range obs.Skipped {
		t.log().Debug("GPU node not used", "node", s.Name, "reason", s.Reason)
	}
	shards := map[string][]kube.ShardStatus{}
	for _, s := range obs.Shards {
		shards[s.Release] = append(shards[s.Release], s)
	}
	t.mu.Lock()
	t.shards = shards
	t.mu.Unlock()
	return obs.Objects, obs.Nodes, nil
}

// Apply applies the actions, the namespace first and deletions last.
func (t *KubeTarget) Apply(ctx context.Context, namespace string, actions []planner.Action) error {
	cs, err := t.Client.Apply(ctx, namespace, actions, kube.ApplyOptions{Force: t.Force})
	for _, c := range cs {
		if c.Outcome != kube.Unchanged {
			t.log().Info("applied", "object", c.String())
		}
	}
	return err
}

var _ Prestager = (*KubeTarget)(nil)

// Prestage pulls the model image on p.Nodes with a short-lived pod per
// node (kube.Client.Prestage): it waits until each pod is done or
// p.Timeout passed, deletes the finished pods and leaves the ones still
// pulling for the next call of the same version to reuse.
func (t *KubeTarget) Prestage(ctx context.Context, namespace, release string, p planner.PrestageSpec) (PrestageResult, error) {
	r, err := t.Client.Prestage(ctx, namespace, release, p)
	out := PrestageResult{Ready: r.Ready, TimedOut: r.TimedOut, Failed: r.Failed}
	if err == nil {
		// The engine logs the outcome ("prestaged"); only the failures
		// are worth a warning of their own.
		for n, why := range out.Failed {
			t.log().Warn("prestage failed", "release", release, "version", p.Version, "node", n, "reason", why)
		}
	}
	return out, err
}

// ReleaseHealth says how the release's shards were doing when last
// observed: healthy, progressing or degraded, and why.
func (t *KubeTarget) ReleaseHealth(release string) (state, reason string, known bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	shards, ok := t.shards[release]
	if !ok {
		return "", "", false
	}
	state = StateSynced
	var notes []string
	for _, s := range shards {
		switch s.State {
		case kube.Degraded:
			state = StateDegraded
			notes = append(notes, s.String())
		case kube.Progressing:
			if state != StateDegraded {
				state = StateProgressing
			}
			notes = append(notes, s.String())
		}
	}
	if len(notes) == 0 {
		return state, "all shards available", true
	}
	return state, strings.Join(notes, "; "), true
}

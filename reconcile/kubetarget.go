package reconcile

import (
	"context"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile/kube"
	"github.com/gantry-dev/gantry/schedule"
	"github.com/gantry-dev/gantry/spec"
)

// KubeTarget is a Kubernetes cluster: GPU nodes and managed objects are
// observed with one List per kind, and objects are applied by server-side
// apply (field manager "gantry"), dry-run first, so unchanged objects keep
// their resourceVersion.
type KubeTarget struct {
	Client *kube.Client
	// Force takes fields over from other appliers instead of failing.
	Force bool
}

// Observe reads the cluster.
func (t KubeTarget) Observe(ctx context.Context, cfg *spec.Config) ([]planner.Object, []schedule.Node, error) {
	obs, err := t.Client.Observe(ctx, cfg.Settings.Namespace, cfg.Pools)
	if err != nil {
		return nil, nil, err
	}
	return obs.Objects, obs.Nodes, nil
}

// Apply applies the actions, the namespace first and deletions last.
func (t KubeTarget) Apply(ctx context.Context, namespace string, actions []planner.Action) error {
	_, err := t.Client.Apply(ctx, namespace, actions, kube.ApplyOptions{Force: t.Force})
	return err
}

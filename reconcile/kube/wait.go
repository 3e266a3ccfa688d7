package kube

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-dev/gantry/planner"
)

// ShardState is where a shard Deployment's rollout stands.
type ShardState string

const (
	// Progressing: the rollout is under way (or has not been observed by
	// the deployment controller yet).
	Progressing ShardState = "progressing"
	// Healthy: every replica runs the current template and is available.
	Healthy ShardState = "healthy"
	// Degraded: the deployment controller gave up (progress deadline
	// exceeded) or cannot create pods (ReplicaFailure), or the Deployment
	// is gone.
	Degraded ShardState = "degraded"
)

// ShardStatus is the rollout state of one shard Deployment.
type ShardStatus struct {
	Namespace string
	Name      string
	Release   string
	Node      string
	State     ShardState
	// Desired is spec.replicas; Updated, Ready and Available count the
	// replicas of the current template that are so.
	Desired, Updated, Ready, Available int
	// Message says why the shard is not healthy ("" when it is).
	Message string
}

func (s ShardStatus) String() string {
	out := fmt.Sprintf("%s/%s: %s (%d/%d available)", s.Namespace, s.Name, s.State, s.Available, s.Desired)
	if s.Message != "" {
		out += ": " + s.Message
	}
	return out
}

// Sentinel outcomes of WaitRollout, for callers that roll back or retry.
var (
	ErrRolloutTimeout = errors.New("rollout timed out")
	ErrDegraded       = errors.New("rollout degraded")
)

// WaitRollout waits until every Deployment among objs is healthy or
// degraded, or until timeout, reading their status with one List per
// namespace every poll interval. It returns the last status of each shard,
// sorted by namespace and name, and an error wrapping ErrDegraded when a
// shard is degraded, ErrRolloutTimeout when one is still progressing at
// the deadline, or the API error. Objects of other kinds are ignored.
func (c *Client) WaitRollout(ctx context.Context, objs []planner.Object, timeout time.Duration) ([]ShardStatus, error) {
	want := map[string][]string{} // namespace -> names
	for _, o := range objs {
		if o.Kind == "Deployment" {
			want[o.Namespace] = append(want[o.Namespace], o.Name)
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	// The timeout is a timer rather than a context deadline, so that an API
	// error is never confused with the rollout being slow: each List is
	// bounded by the client's request timeout and by ctx.
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(c.poll)
	defer tick.Stop()
	for {
		statuses, err := c.shardStatuses(ctx, want)
		if err != nil {
			return statuses, err
		}
		if done, err := rolloutOutcome(statuses); done {
			return statuses, err
		}
		select {
		case <-ctx.Done():
			return statuses, fmt.Errorf("wait for rollout: %w", ctx.Err())
		case <-deadline.C:
			var slow []string
			for _, s := range statuses {
				if s.State == Progressing {
					slow = append(slow, s.String())
				}
			}
			return statuses, fmt.Errorf("wait for rollout: %w after %s: %s", ErrRolloutTimeout, timeout, strings.Join(slow, "; "))
		case <-tick.C:
		}
	}
}

// rolloutOutcome says whether every shard reached a final state, and the
// error to return if so.
func rolloutOutcome(statuses []ShardStatus) (bool, error) {
	var bad []string
	for _, s := range statuses {
		switch s.State {
		case Progressing:
			return false, nil
		case Degraded:
			bad = append(bad, s.String())
		}
	}
	if len(bad) > 0 {
		return true, fmt.Errorf("wait for rollout: %w: %s", ErrDegraded, strings.Join(bad, "; "))
	}
	return true, nil
}

func (c *Client) shardStatuses(ctx context.Context, want map[string][]string) ([]ShardStatus, error) {
	var out []ShardStatus
	for ns, names := range want {
		l, err := c.typed.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{
			LabelSelector: planner.LabelManagedBy + "=" + planner.ManagedBy,
		})
		if err != nil {
			return nil, fmt.Errorf("wait for rollout: list deployments in %s: %w", ns, err)
		}
		live := map[string]*appsv1.Deployment{}
		for i := range l.Items {
			live[l.Items[i].Name] = &l.Items[i]
		}
		for _, name := range names {
			d, ok := live[name]
			if !ok {
				out = append(out, ShardStatus{Namespace: ns, Name: name, State: Degraded, Message: "the Deployment does not exist"})
				continue
			}
			out = append(out, shardStatus(d))
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

// shardStatus reads a Deployment's rollout state the way `kubectl rollout
// status` does, and adds Degraded from the controller's conditions.
func shardStatus(d *appsv1.Deployment) ShardStatus {
	s := ShardStatus{
		Namespace: d.Namespace, Name: d.Name,
		Release: d.Labels[planner.LabelRelease], Node: shardNode(d.Annotations, d.Labels),
		Desired: 1, Updated: int(d.Status.UpdatedReplicas), Ready: int(d.Status.ReadyReplicas), Available: int(d.Status.AvailableReplicas),
	}
	if d.Spec.Replicas != nil {
		s.Desired = int(*d.Spec.Replicas)
	}
	set := func(st ShardState, format string, args ...any) ShardStatus {
		s.State, s.Message = st, fmt.Sprintf(format, args...)
		return s
	}
	if d.Generation > d.Status.ObservedGeneration {
		return set(Progressing, "the deployment controller has not observed generation %d yet", d.Generation)
	}
	for _, c := range d.Status.Conditions {
		switch {
		case c.Type == appsv1.DeploymentProgressing && c.Status == corev1.ConditionFalse && c.Reason == "ProgressDeadlineExceeded":
			return set(Degraded, "progress deadline exceeded: %s", c.Message)
		case c.Type == appsv1.DeploymentReplicaFailure && c.Status == corev1.ConditionTrue:
			return set(Degraded, "replica failure (%s): %s", c.Reason, c.Message)
		}
	}
	switch total := int(d.Status.Replicas); {
	case s.Updated < s.Desired:
		return set(Progressing, "%d of %d replicas updated", s.Updated, s.Desired)
	case total > s.Updated:
		return set(Progressing, "%d old replicas pending termination", total-s.Updated)
	case s.Available < s.Desired:
		return set(Progressing, "%d of %d updated replicas available", s.Available, s.Desired)
	}
	s.State = Healthy
	return s
}

// shardNode is the node a shard pins: the full name from the annotation,
// else the label (which may be cut for long names).
func shardNode(annotations, labels map[string]string) string {
	if n := annotations[planner.AnnotationNode]; n != "" {
		return n
	}
	return labels[planner.LabelNode]
}

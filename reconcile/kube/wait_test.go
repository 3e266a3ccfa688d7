package kube

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-dev/gantry/planner"
)

func TestShardStatus(t *testing.T) {
	three := int32(3)
	base := func(mut func(d *appsv1.Deployment)) *appsv1.Deployment {
		d := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "chat-a1", Namespace: "llm", Generation: 2,
				Labels: map[string]string{planner.LabelRelease: "chat", planner.LabelNode: "a1"}},
			Spec: appsv1.DeploymentSpec{Replicas: &three},
			Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 3, UpdatedReplicas: 3, ReadyReplicas: 3, AvailableReplicas: 3,
				Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable"}}},
		}
		if mut != nil {
			mut(d)
		}
		return d
	}
	for _, tc := range []struct {
		name  string
		d     *appsv1.Deployment
		state ShardState
		msg   string
	}{
		{"all replicas updated and available", base(nil), Healthy, ""},
		{"controller has not seen the new spec", base(func(d *appsv1.Deployment) { d.Generation = 3 }), Progressing, "not observed generation 3"},
		{"new pods being created", base(func(d *appsv1.Deployment) { d.Status.UpdatedReplicas = 1 }), Progressing, "1 of 3 replicas updated"},
		// 4 pods: 3 new + 1 old still terminating (maxSurge 1)
		{"old pod still there", base(func(d *appsv1.Deployment) { d.Status.Replicas = 4 }), Progressing, "1 old replicas"},
		{"new pods loading weights", base(func(d *appsv1.Deployment) { d.Status.AvailableReplicas = 2 }), Progressing, "2 of 3 updated replicas available"},
		{"progress deadline exceeded", base(func(d *appsv1.Deployment) {
			d.Status.UpdatedReplicas = 1
			d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse, Reason: "ProgressDeadlineExceeded", Message: `ReplicaSet "chat-a1-7d9" has timed out progressing.`}}
		}), Degraded, "progress deadline exceeded: ReplicaSet"},
		{"pods cannot be created", base(func(d *appsv1.Deployment) {
			d.Status.Conditions = append(d.Status.Conditions, appsv1.DeploymentCondition{Type: appsv1.DeploymentReplicaFailure, Status: corev1.ConditionTrue, Reason: "FailedCreate", Message: "exceeded quota"})
		}), Degraded, "replica failure (FailedCreate): exceeded quota"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := shardStatus(tc.d)
			if s.State != tc.state || !strings.Contains(s.Message, tc.msg) || (tc.msg == "" && s.Message != "") {
				t.Errorf("got %s %q, want %s containing %q", s.State, s.Message, tc.state, tc.msg)
			}
			if s.Release != "chat" || s.Node != "a1" || s.Desired != 3 {
				t.Errorf("identity: %+v", s)
			}
		})
	}
}

// setStatus writes a Deployment's status as the deployment controller
// would, which nothing does in the test control plane.
func setStatus(t *testing.T, ns, name string, mut func(d *appsv1.Deployment)) {
	t.Helper()
	ctx := context.Background()
	apps := admin(t).AppsV1().Deployments(ns)
	d, err := apps.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n := *d.Spec.Replicas
	d.Status = appsv1.DeploymentStatus{
		ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n,
		Conditions: []appsv1.DeploymentCondition{
			{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable"},
			{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable"},
		},
	}
	if mut != nil {
		mut(d)
	}
	if _, err := apps.UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestWaitRollout(t *testing.T) {
	c := cluster(t)
	ctx := context.Background()
	ns := namespaceName(t)
	testNodes(t, ns, 2)
	cfg := specs(t, ns, map[string]int{"chat": 3})
	p, _ := reconcile(t, c, cfg, ApplyOptions{})
	var objs []planner.Object
	var shards []string
	for _, a := range p.Actions {
		objs = append(objs, *a.Object)
		if a.Object.Kind == "Deployment" {
			shards = append(shards, a.Object.Name)
		}
	}

	// Nothing has run the pods yet.
	got, err := c.WaitRollout(ctx, objs, 300*time.Millisecond)
	if !errors.Is(err, ErrRolloutTimeout) {
		t.Fatalf("no controller: %v, want ErrRolloutTimeout", err)
	}
	t.Logf("timeout: %v", err)
	if len(got) != len(shards) || got[0].State != Progressing {
		t.Errorf("statuses %v, want %d progressing shards", got, len(shards))
	}

	for _, name := range shards {
		setStatus(t, ns, name, nil)
	}
	got, err = c.WaitRollout(ctx, objs, 5*time.Second)
	if err != nil {
		t.Fatalf("all shards available: %v", err)
	}
	for _, s := range got {
		if s.State != Healthy || s.Release != "chat" {
			t.Errorf("%v, want healthy", s)
		}
	}
	obs, err := c.Observe(ctx, ns, cfg.Pools)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range obs.Shards {
		if s.State != Healthy {
			t.Errorf("observe: %v, want healthy", s)
		}
	}

	setStatus(t, ns, shards[0], func(d *appsv1.Deployment) {
		d.Status.UpdatedReplicas = 0
		d.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionFalse,
			Reason: "ProgressDeadlineExceeded", Message: "ReplicaSet has timed out progressing."}}
	})
	got, err = c.WaitRollout(ctx, objs, 5*time.Second)
	if !errors.Is(err, ErrDegraded) || !strings.Contains(err.Error(), shards[0]) {
		t.Fatalf("deadline exceeded: %v, want ErrDegraded naming %s", err, shards[0])
	}
	t.Logf("degraded: %v", err)
	if got[0].State != Degraded {
		t.Errorf("%v, want degraded", got[0])
	}
}

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/google/uuid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/gantry-dev/gantry/reconcile/kube"
)

// kubeFlags say how to reach the cluster.
type kubeFlags struct {
	kubeconfig, context string
	forceConflicts      bool
	leaderElect         bool
	leaseNamespace      string
	leaseName           string
	resolveImages       bool // plan only; run keeps its own flag
}

// restConfig loads the kubeconfig (--kubeconfig, KUBECONFIG, ~/.kube/config)
// or, inside a pod, the service account.
func (k *kubeFlags) restConfig() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if k.kubeconfig != "" {
		rules.ExplicitPath = k.kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: k.context}).ClientConfig()
	if err == nil {
		return cfg, nil
	}
	if in, inErr := rest.InClusterConfig(); inErr == nil {
		return in, nil
	}
	return nil, fmt.Errorf("kubernetes: no kubeconfig and not in a cluster: %w", err)
}

func (k *kubeFlags) client() (*kube.Client, *rest.Config, error) {
	cfg, err := k.restConfig()
	if err != nil {
		return nil, nil, err
	}
	c, err := kube.New(cfg)
	return c, cfg, err
}

// leaseNamespace is where the Lease lives: the flag, the pod's namespace,
// or gantry-system.
func (k *kubeFlags) namespace() string {
	if k.leaseNamespace != "" {
		return k.leaseNamespace
	}
	if b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil && len(b) > 0 {
		return string(b)
	}
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	return "gantry-system"
}

// leaderLoop runs work only while this process holds the Lease, so that
// two replicas never reconcile at once. Losing the lease cancels work's
// context; the process then campaigns again until ctx ends.
func leaderLoop(ctx context.Context, cfg *rest.Config, k *kubeFlags, onLeading func(bool), work func(context.Context)) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	id := host + "_" + uuid.NewString()
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: k.leaseName, Namespace: k.namespace()},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			ReleaseOnCancel: true,
			LeaseDuration:   15 * time.Second,
			RenewDeadline:   10 * time.Second,
			RetryPeriod:     2 * time.Second,
			Name:            k.leaseName,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) {
					slog.Info("leading: reconciling", "lease", k.namespace()+"/"+k.leaseName, "identity", id)
					onLeading(true)
					work(lctx)
				},
				OnStoppedLeading: func() {
					onLeading(false)
					slog.Info("not leading", "identity", id)
				},
				OnNewLeader: func(leader string) {
					if leader != id {
						slog.Info("another replica leads; standing by", "leader", leader)
					}
				},
			},
		})
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		le.Run(ctx)
	}
	return nil
}

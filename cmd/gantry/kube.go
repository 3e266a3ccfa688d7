package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/google/uuid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/gantry-dev/gantry/reconcile"
	"github.com/gantry-dev/gantry/reconcile/kube"
	"github.com/gantry-dev/gantry/spec"
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
	cfg, err := kube.RESTConfig(k.kubeconfig, k.context, false)
	if err == nil {
		return cfg, nil
	}
	if in, inErr := kube.RESTConfig("", "", true); inErr == nil {
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

// fleetJobsConfig is the cluster a fleet's build jobs (quantize { runner
// = "job" }) run in: the daemon's own (its kube flags: --kubeconfig,
// KUBECONFIG, ~/.kube/config or its pod), else the lease cluster's block.
// Without either it returns why, for the error of a release that needs a
// job.
func fleetJobsConfig(cfg *spec.Config, k *kubeFlags) (*rest.Config, error) {
	own, err := k.restConfig()
	if err == nil {
		return own, nil
	}
	if name := cfg.Settings.LeaseCluster; name != "" {
		if c, ok := cfg.Cluster(name); ok {
			rc, lerr := clusterRESTConfig(*c)
			if lerr == nil {
				return rc, nil
			}
			return nil, fmt.Errorf(`runner = "job" needs a cluster to run build jobs in: the daemon has none (%v), and the lease %v`, err, lerr)
		}
	}
	return nil, fmt.Errorf(`runner = "job" needs a cluster to run build jobs in: give the daemon one (--kubeconfig, KUBECONFIG, ~/.kube/config or its pod) or set gantry { lease_cluster = "NAME" }: %v`, err)
}

// noJobs is the JobRunner of a fleet with no cluster for build jobs: only
// a release that needs one fails, saying why.
type noJobs struct{ err error }

func (n noJobs) RunBuild(context.Context, reconcile.BuildJob) error { return n.err }

// clusterCaches makes the daemon read each cluster of a fleet from
// informers, as it does a single cluster: mk's KubeTargets start their
// caches in the background, retried every cacheRetry until they sync (a
// cluster down at start-up lists until then), and stopped when the
// engine replaces the cluster's Target (its block changed) or ctx ends.
// Other targets pass through.
func clusterCaches(ctx context.Context, mk func(context.Context, spec.Cluster) (reconcile.Target, error)) func(context.Context, spec.Cluster) (reconcile.Target, error) {
	var mu sync.Mutex
	stops := map[string]context.CancelFunc{}
	return func(rctx context.Context, c spec.Cluster) (reconcile.Target, error) {
		t, err := mk(rctx, c)
		kt, ok := t.(*reconcile.KubeTarget)
		if err != nil || !ok {
			return t, err
		}
		cctx, stop := context.WithCancel(ctx)
		mu.Lock()
		if prev := stops[c.Name]; prev != nil {
			prev()
		}
		stops[c.Name] = stop
		mu.Unlock()
		go func() {
			for {
				err := kt.StartCache(cctx)
				if err == nil || cctx.Err() != nil {
					return
				}
				slog.Warn("kube: the cluster's reconciles list until its informers sync", "cluster", c.Name, "err", err, "retry", cacheRetry)
				select {
				case <-cctx.Done():
					return
				case <-time.After(cacheRetry):
				}
			}
		}()
		return kt, nil
	}
}

// cacheRetry is how long clusterCaches waits before starting the
// informers of a cluster again.
var cacheRetry = time.Minute

// evalRunner runs gate evals that name an image as Kubernetes Jobs in the
// cluster rc reaches (where build Jobs run), under the build Jobs'
// service account. They get none of the build Jobs' secrets
// (--job-env-secret holds the Git token): an evaluator needs only the
// model image, mounted by digest.
func (j *jobFlags) evalRunner(rc *rest.Config) (*reconcile.KubeEvals, error) {
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &reconcile.KubeEvals{Client: cs, ServiceAccount: j.serviceAccount}, nil
}

// wireEvalJobs gives e the eval Job runner of the cluster rc reaches: next
// to e.BuildJobs wherever the kube target sets it up.
func wireEvalJobs(e *reconcile.Engine, rc *rest.Config, j *jobFlags) error {
	r, err := j.evalRunner(rc)
	if err != nil {
		return fmt.Errorf("eval jobs: %w", err)
	}
	e.EvalJobs = r
	return nil
}

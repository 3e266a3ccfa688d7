package kube

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/spec"
)

// LabelPrestage marks the pods Prestage starts ("true").
const LabelPrestage = "gantry.dev/prestage"

// prestageGate is a readiness gate nothing ever sets, so that a prestage
// pod is never Ready: it carries the release and version labels that the
// release's Services select, and must never become one of their
// endpoints, not even for the moment its container runs.
const prestageGate = "gantry.dev/prestage"

// DefaultPrestageTimeout is how long Prestage waits when the spec says
// nothing (the spec's default prestage_timeout).
const DefaultPrestageTimeout = 30 * time.Minute

// prestageDeadline bounds a prestage pod's life on its node
// (activeDeadlineSeconds): one still pulling after a day is not going to,
// and a version no longer wanted does not pull forever. The next Prestage
// of its version finds it failed, says so and deletes it.
const prestageDeadline int64 = 24 * 60 * 60

// prestageWorkers bounds the pod creations in flight; the client's rate
// limit bounds the requests.
const prestageWorkers = 16

// PrestageResult is how a prestage ended, node by node (the same as
// reconcile.PrestageResult, which this package cannot import).
type PrestageResult struct {
	// Ready are the nodes whose pod succeeded: they hold the image now.
	Ready []string
	// TimedOut are the nodes whose pod had not finished when the wait
	// ended; their pods are left to go on pulling.
	TimedOut []string
	// Failed are the nodes whose pod failed, with the reason.
	Failed map[string]string
}

// PrestagePodName names the prestage pod of a release's version on a node:
// "prestage-" and planner.VersionedShardName, cut with a hash of all three
// so that it stays within 63 characters and unique.
func PrestagePodName(release, node, version string) string {
	name := "prestage-" + planner.VersionedShardName(release, node, version)
	if len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(release + "\x00" + node + "\x00" + version))
	suffix := "-" + hex.EncodeToString(sum[:])[:10]
	if v := strings.Trim(nonDNSLabel.ReplaceAllString(strings.ToLower(version), "-"), "-"); v != "" && len(v) <= 16 {
		suffix += "-" + v
	}
	return strings.TrimRight(name[:63-len(suffix)], "-") + suffix
}

var nonDNSLabel = regexp.MustCompile(`[^a-z0-9-]+`)

// Prestage pulls p.Image on each of p.Nodes before its shards need it: it
// starts one short-lived pod per node in namespace (PrestagePodName; an
// existing one, say from a call that was killed or timed out, is reused,
// so a retry costs no second pull), waits until every pod has succeeded
// or failed, or p.Timeout passed (DefaultPrestageTimeout when 0), then
// deletes the pods that finished. Pods still pulling are left running:
// the next Prestage of the same version reuses them. Pods of a version
// that is never prestaged again stay until their activeDeadlineSeconds (a
// day), then fail; nothing else collects them yet.
//
// A pod is pinned to its node (kubernetes.io/hostname, p.Hostnames or the
// node name), tolerates the nvidia.com/gpu taint as shards do, requests
// 10m CPU and 16Mi of memory and no GPU, and exits at once: a modelcar
// runs the model image with `sh -c "exit 0"`; a modelpack mounts it as an
// image volume at /models in a container of p.RuntimeImage that does the
// same, which pulls the runtime image too. Its labels are Gantry's
// (managed-by, release, gantry.dev/version, gantry.dev/prestage=true); it
// is a Pod, a kind Observe never lists as a managed object, so no plan
// ever updates or prunes it, and a readiness gate keeps it out of the
// release's Services.
//
// It returns an error, with what it knows so far, when ctx ends or a pod
// cannot be created or read; the pods are left for the next call. Image
// references are never logged or returned with credentials.
func (c *Client) Prestage(ctx context.Context, namespace, release string, p planner.PrestageSpec) (PrestageResult, error) {
	var res PrestageResult
	switch {
	case namespace == "":
		return res, fmt.Errorf("prestage: no namespace")
	case release == "":
		return res, fmt.Errorf("prestage: no release")
	case p.Version == "":
		return res, fmt.Errorf("prestage %s: no version", release)
	case p.Image == "":
		return res, fmt.Errorf("prestage %s: no image", release)
	case p.Packaging != "modelcar" && p.RuntimeImage == "":
		return res, fmt.Errorf("prestage %s: no runtime image to mount the model image in", release)
	}
	nodes := dedupe(p.Nodes)
	if len(nodes) == 0 {
		return res, nil
	}
	// A first release into a cluster prestages before its objects are
	// applied: the namespace may not exist yet.
	if _, err := c.ensureNamespace(ctx, namespace); err != nil {
		return res, fmt.Errorf("prestage %s: %w", release, deadlineError(ctx, err))
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = DefaultPrestageTimeout
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	log := slog.With("release", release, "version", p.Version, "namespace", namespace)
	log.Debug("prestage: pulling", "image", maskText(p.Image), "nodes", len(nodes), "timeout", timeout)

	pods := c.typed.CoreV1().Pods(namespace)
	// Create every pod, a few at a time. One that exists is used as it
	// is; the wait below reads them all.
	var mu sync.Mutex
	foreign := map[string]string{} // node -> why its pod is not ours
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(prestageWorkers)
	for _, n := range nodes {
		g.Go(func() error {
			pod := prestagePod(namespace, release, n, p)
			_, err := pods.Create(gctx, pod, metav1.CreateOptions{FieldManager: FieldManager})
			if !apierrors.IsAlreadyExists(err) {
				if err != nil {
					return fmt.Errorf("prestage %s on %s: create pod %s: %w", release, n, pod.Name, maskedError{err})
				}
				return nil
			}
			live, err := pods.Get(gctx, pod.Name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err): // gone since: the wait creates it again
				return nil
			case err != nil:
				return fmt.Errorf("prestage %s on %s: get pod %s: %w", release, n, pod.Name, maskedError{err})
			}
			if !isPrestagePod(live, release, p.Version) {
				mu.Lock()
				foreign[n] = fmt.Sprintf("a pod named %s exists that is not Gantry's prestage pod of %s version %s; delete or rename it",
					pod.Name, release, p.Version)
				mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return res, err
	}

	res.Failed = map[string]string{}
	for n, why := range foreign {
		res.Failed[n] = why
	}
	done := map[string]*corev1.Pod{} // node -> its finished pod
	poll := min(c.poll, 500*time.Millisecond)
	for {
		live, err := c.listPrestagePods(ctx, namespace, release, p.Version)
		if err != nil {
			return partial(res, done, nodes), err
		}
		var missing []string
		for _, n := range nodes {
			if _, ok := res.Failed[n]; ok || done[n] != nil {
				continue
			}
			pod, ok := live[PrestagePodName(release, n, p.Version)]
			switch {
			case !ok:
				missing = append(missing, n) // deleted by someone, or gone after a terminating one
			case pod.DeletionTimestamp != nil:
				// Going away (deleted by an earlier call or a person):
				// created again once it is gone.
			case pod.Status.Phase == corev1.PodSucceeded:
				done[n] = pod
			case pod.Status.Phase == corev1.PodFailed:
				done[n] = pod
				res.Failed[n] = podFailure(pod)
			default:
				if why, ok := hopeless(pod); ok {
					done[n] = pod
					res.Failed[n] = why
				}
			}
		}
		for _, n := range missing {
			pod := prestagePod(namespace, release, n, p)
			if _, err := pods.Create(ctx, pod, metav1.CreateOptions{FieldManager: FieldManager}); err != nil && !apierrors.IsAlreadyExists(err) {
				return partial(res, done, nodes), fmt.Errorf("prestage %s on %s: create pod %s: %w", release, n, pod.Name, maskedError{err})
			}
		}
		if len(done)+len(foreign) == len(nodes) {
			break
		}
		select {
		case <-ctx.Done():
			return partial(res, done, nodes), fmt.Errorf("prestage %s: %w", release, ctx.Err())
		case <-deadline.C:
			res = partial(res, done, nodes)
			waiting := map[string]string{}
			for _, n := range res.TimedOut {
				if pod, ok := live[PrestagePodName(release, n, p.Version)]; ok {
					if why := waitingReason(pod); why != "" {
						waiting[n] = why
					}
				}
			}
			log.Info("prestage: not pulled within the timeout; their pods go on pulling, and the next prestage of this version reuses them",
				"timeout", timeout, "nodes", res.TimedOut, "waiting", waiting)
			c.deleteFinished(namespace, done, log)
			return res, nil
		case <-time.After(poll):
		}
	}
	res = partial(res, done, nodes)
	c.deleteFinished(namespace, done, log)
	return res, nil
}

// partial fills Ready from the finished pods and TimedOut with the rest,
// each sorted; Failed is nil when empty.
func partial(res PrestageResult, done map[string]*corev1.Pod, nodes []string) PrestageResult {
	res.Ready, res.TimedOut = nil, nil
	for _, n := range nodes {
		_, failed := res.Failed[n]
		switch {
		case failed:
		case done[n] != nil:
			res.Ready = append(res.Ready, n)
		default:
			res.TimedOut = append(res.TimedOut, n)
		}
	}
	if len(res.Failed) == 0 {
		res.Failed = nil
	}
	return res
}

// deleteFinished deletes the pods that succeeded or failed, each with a
// UID precondition (a pod created again since is not touched), on its own
// deadline. A pod left behind (a failed delete, or a call whose context
// ended before it got here) costs nothing but its object: the next call
// for the version finds it finished, reports it and deletes it.
func (c *Client) deleteFinished(namespace string, done map[string]*corev1.Pod, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pods := c.typed.CoreV1().Pods(namespace)
	var g errgroup.Group
	g.SetLimit(prestageWorkers)
	for _, pod := range done {
		g.Go(func() error {
			uid := pod.UID
			err := pods.Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				log.Warn("prestage: could not delete a finished pod; the next prestage of this version deletes it", "pod", pod.Name, "err", maskedError{err})
			}
			return nil
		})
	}
	_ = g.Wait()
}

// listPrestagePods returns the prestage pods of the release's version in
// namespace, by name.
func (c *Client) listPrestagePods(ctx context.Context, namespace, release, version string) (map[string]*corev1.Pod, error) {
	sel := fmt.Sprintf("%s=%s,%s=true,%s=%s,%s=%s", planner.LabelManagedBy, planner.ManagedBy, LabelPrestage,
		planner.LabelRelease, release, planner.LabelVersion, version)
	out := map[string]*corev1.Pod{}
	opts := metav1.ListOptions{LabelSelector: sel, Limit: pageSize}
	for {
		l, err := c.typed.CoreV1().Pods(namespace).List(ctx, opts)
		if err != nil {
			return out, fmt.Errorf("prestage %s: list pods in %s: %w", release, namespace, deadlineError(ctx, maskedError{err}))
		}
		for i := range l.Items {
			out[l.Items[i].Name] = &l.Items[i]
		}
		if l.Continue == "" {
			return out, nil
		}
		opts.Continue = l.Continue
	}
}

func isPrestagePod(p *corev1.Pod, release, version string) bool {
	l := p.Labels
	return l[planner.LabelManagedBy] == planner.ManagedBy && l[LabelPrestage] == "true" &&
		l[planner.LabelRelease] == release && l[planner.LabelVersion] == version
}

// prestagePod is the pod that pulls p's image on node. See Prestage.
func prestagePod(namespace, release, node string, p planner.PrestageSpec) *corev1.Pod {
	host := node
	if h := p.Hostnames[node]; h != "" {
		host = h
	}
	no := false
	grace := int64(5)
	deadline := prestageDeadline
	requests := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")}
	pull := corev1.Container{
		Name:            "pull",
		Image:           p.Image,
		Command:         []string{"sh", "-c", "exit 0"},
		ImagePullPolicy: corev1.PullIfNotPresent,
		Resources:       corev1.ResourceRequirements{Requests: requests},
	}
	var volumes []corev1.Volume
	if p.Packaging != "modelcar" {
		pull.Image = p.RuntimeImage
		pull.VolumeMounts = []corev1.VolumeMount{{Name: "model", MountPath: "/models", ReadOnly: true}}
		volumes = []corev1.Volume{{Name: "model", VolumeSource: corev1.VolumeSource{
			Image: &corev1.ImageVolumeSource{Reference: p.Image, PullPolicy: corev1.PullIfNotPresent},
		}}}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      PrestagePodName(release, node, p.Version),
			Namespace: namespace,
			Labels: map[string]string{
				planner.LabelManagedBy: planner.ManagedBy,
				planner.LabelRelease:   release,
				planner.LabelVersion:   p.Version,
				LabelPrestage:          "true",
			},
			Annotations: map[string]string{planner.AnnotationNode: node},
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			NodeSelector:                  map[string]string{"kubernetes.io/hostname": host},
			Tolerations:                   []corev1.Toleration{{Key: planner.GPUResource, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
			ReadinessGates:                []corev1.PodReadinessGate{{ConditionType: prestageGate}},
			AutomountServiceAccountToken:  &no,
			EnableServiceLinks:            &no,
			TerminationGracePeriodSeconds: &grace,
			ActiveDeadlineSeconds:         &deadline,
			Containers:                    []corev1.Container{pull},
			Volumes:                       volumes,
		},
	}
}

// podFailure says why a failed pod failed: its container's termination,
// else the pod's reason and message.
func podFailure(p *corev1.Pod) string {
	for _, cs := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		t := cs.State.Terminated
		if t == nil || t.ExitCode == 0 {
			continue
		}
		return maskText(joinNonEmpty(fmt.Sprintf("container %s %s (exit code %d)", cs.Name, orDefault(t.Reason, "terminated"), t.ExitCode), t.Message))
	}
	if why := joinNonEmpty(p.Status.Reason, p.Status.Message); why != "" {
		return maskText(why)
	}
	if why := waitingReason(p); why != "" {
		return why
	}
	return "the pod failed"
}

// hopeless reports a pending pod that can never pull: an image reference
// the runtime refuses. Everything else (a pull backing off, a node not
// there yet) may still come right and waits for the timeout.
func hopeless(p *corev1.Pod) (string, bool) {
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && (w.Reason == "InvalidImageName" || w.Reason == "ErrImageNeverPull") {
			return maskText(joinNonEmpty("container "+cs.Name+" "+w.Reason, w.Message)), true
		}
	}
	return "", false
}

// waitingReason is why a pod's container has not run yet, masked.
func waitingReason(p *corev1.Pod) string {
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			return maskText(joinNonEmpty(w.Reason, w.Message))
		}
	}
	if p.Status.Phase == corev1.PodPending {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
				return maskText(joinNonEmpty("unschedulable", c.Message))
			}
		}
	}
	return ""
}

// imageUserinfo finds credentials in image references written into text:
// "user:pass@registry.example.com/repo" (no scheme, which
// spec.MaskURLCredentials needs). A digest ("repo@sha256:...") has no
// slash after its @ and is left alone.
var imageUserinfo = regexp.MustCompile(`(^|[\s"'(\[=])([^\s"'/@\[\]()]+)@([^\s"'/@]+/)`)

// maskText hides the credentials of URLs and of image references in s.
func maskText(s string) string {
	s = spec.MaskURLCredentials(s)
	return imageUserinfo.ReplaceAllString(s, "${1}"+spec.MaskedUserinfo+"@${3}")
}

// maskedError is an API error whose text has credentials masked (a
// validation error quotes the image); errors.Is and As see the original.
type maskedError struct{ err error }

func (e maskedError) Error() string { return maskText(e.err.Error()) }
func (e maskedError) Unwrap() error { return e.err }

func joinNonEmpty(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, ": ")
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// deadlineError is err, with ctx's error joined when ctx ended it. The
// client's rate limiter refuses to wait past ctx's deadline before the
// deadline passes ("would exceed context deadline", the request never
// sent); then it waits for the deadline, so that the caller sees that
// its context stopped the call.
func deadlineError(ctx context.Context, err error) error {
	if ctx.Err() == nil && strings.Contains(err.Error(), "would exceed context deadline") {
		<-ctx.Done()
	}
	if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	return err
}

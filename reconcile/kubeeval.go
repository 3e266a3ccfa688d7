package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/spec"
)

// Labels and annotations of eval Jobs.
const (
	LabelEval         = "gantry.dev/eval"
	AnnotationEvalKey = "gantry.dev/eval-key"
	// EvalMountPath is where an eval Job's pod sees the model image.
	EvalMountPath = "/models"
	// EvalTerminationLog is the file an eval Job's container writes its
	// metrics to (GANTRY_METRICS): the container's termination message.
	EvalTerminationLog = "/dev/termination-log"
)

// KubeEvals runs gate evals as Kubernetes Jobs: the eval's image with the
// build's model image mounted at /models as an image volume (by digest,
// as the model pods mount it). The metrics are the JSON object the
// container wrote to GANTRY_METRICS (its termination message), else the
// last JSON object line of its log. A Job is named by release, eval and
// eval key (the build's content key and the evaluator's spec), so a
// restarted daemon finds the Job it started instead of starting another.
type KubeEvals struct {
	Client kubernetes.Interface
	// ServiceAccount runs the Jobs' pods ("" is the namespace default);
	// the pods do not mount its token.
	ServiceAccount string
	// Poll is how often the Job is checked; default 5s.
	Poll time.Duration
	// Grace is how long past the eval's timeout (the Job's
	// activeDeadlineSeconds) the daemon waits for the Job controller to
	// report; default 2m. Then it deletes the Job.
	Grace time.Duration
	// TTL is the Jobs' ttlSecondsAfterFinished; default 24h, so that a
	// daemon down while its Job finished still finds the result.
	TTL time.Duration
	// LogLines is how many lines of the pod's log are read for the
	// metrics when the container wrote no termination message; default 100.
	LogLines int64
}

// EvalJobName is the Job of one eval of one release on one build: eval
// key ek (planner.EvalKey). At most 63 characters.
func EvalJobName(release, eval, ek string) string {
	cut := func(s string, n int) string {
		s = strings.Trim(nonName.ReplaceAllString(strings.ToLower(s), "-"), "-")
		if len(s) > n {
			s = strings.TrimRight(s[:n], "-")
		}
		return s
	}
	return "gantry-eval-" + cut(release, 20) + "-" + cut(eval, 18) + "-" + ek[:10]
}

// RunEval creates the eval Job (or finds it), waits until it has
// finished and returns the metrics it reported. A Job found failed from
// an earlier run is replaced, so that a retry runs the eval again.
func (k *KubeEvals) RunEval(ctx context.Context, job EvalJob) (map[string]float64, error) {
	poll, grace := k.Poll, k.Grace
	if poll <= 0 {
		poll = 5 * time.Second
	}
	if grace <= 0 {
		grace = 2 * time.Minute
	}
	timeout := job.Eval.Timeout
	if timeout <= 0 {
		timeout = spec.DefaultEvalTimeout
	}
	waitCtx, cancel := context.WithTimeout(ctx, timeout+grace)
	defer cancel()
	if err := k.ensureNamespace(waitCtx, job.Namespace); err != nil {
		return nil, err
	}
	jobs := k.Client.BatchV1().Jobs(job.Namespace)
	name := EvalJobName(job.Release, job.Eval.Name, job.EvalKey)
	want, err := k.jobSpec(job, name, timeout)
	if err != nil {
		return nil, err
	}
	created := true
	if _, err := jobs.Create(waitCtx, want, metav1.CreateOptions{FieldManager: "gantry"}); apierrors.IsAlreadyExists(err) {
		created = false
	} else if err != nil {
		return nil, fmt.Errorf("create job %s/%s: %w", job.Namespace, name, err)
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		j, err := jobs.Get(waitCtx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			// Deleted under us (or by TTL before this daemon read it): run it again.
			if _, err := jobs.Create(waitCtx, want, metav1.CreateOptions{FieldManager: "gantry"}); err != nil && !apierrors.IsAlreadyExists(err) {
				return nil, fmt.Errorf("create job %s/%s: %w", job.Namespace, name, err)
			}
			created = true
		case err != nil && waitCtx.Err() == nil:
			return nil, fmt.Errorf("job %s/%s: %w", job.Namespace, name, err)
		case err == nil:
			if done, ferr := finished(j); done {
				if ferr == nil {
					return k.metrics(waitCtx, job.Namespace, name)
				}
				if !created {
					// A failure of an earlier attempt: replace the Job.
					if err := k.replace(waitCtx, job.Namespace, name, want); err != nil {
						return nil, err
					}
					created = true
					break
				}
				return nil, fmt.Errorf("eval job %s/%s failed: %w%s", job.Namespace, name, ferr, k.message(waitCtx, job.Namespace, name))
			}
		}
		select {
		case <-waitCtx.Done():
			if ctx.Err() != nil {
				// The daemon stops: the Job runs on and the next daemon finds it.
				return nil, fmt.Errorf("eval job %s/%s: %w", job.Namespace, name, ctx.Err())
			}
			k.delete(job.Namespace, name)
			return nil, fmt.Errorf("eval job %s/%s did not finish within its timeout %s (deleted)", job.Namespace, name, timeout)
		case <-t.C:
		}
	}
}

func (k *KubeEvals) ensureNamespace(ctx context.Context, ns string) error {
	if _, err := k.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		// Evals run before any object is applied: the namespace may not
		// exist yet.
		obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{planner.LabelManagedBy: planner.ManagedBy}}}
		if _, err := k.Client.CoreV1().Namespaces().Create(ctx, obj, metav1.CreateOptions{FieldManager: "gantry"}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace %s: %w", ns, err)
		}
	}
	return nil
}

// replace deletes the Job name (and its pods) and creates want.
func (k *KubeEvals) replace(ctx context.Context, ns, name string, want *batchv1.Job) error {
	jobs := k.Client.BatchV1().Jobs(ns)
	bg := metav1.DeletePropagationBackground
	if err := jobs.Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete failed eval job %s/%s: %w", ns, name, err)
	}
	for {
		_, err := jobs.Create(ctx, want, metav1.CreateOptions{FieldManager: "gantry"})
		if err == nil {
			return nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create job %s/%s: %w", ns, name, err)
		}
		select { // the deletion is still under way (finalizers)
		case <-ctx.Done():
			return fmt.Errorf("replace eval job %s/%s: %w", ns, name, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// delete removes a Job that outran its timeout, with its pods.
func (k *KubeEvals) delete(ns, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	bg := metav1.DeletePropagationBackground
	_ = k.Client.BatchV1().Jobs(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg})
}

// evalPods are the Job's pods, the newest first.
func (k *KubeEvals) evalPods(ctx context.Context, ns, name string) ([]corev1.Pod, error) {
	pods, err := k.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + name})
	if err != nil {
		return nil, err
	}
	items := pods.Items
	sort.SliceStable(items, func(i, j int) bool {
		return items[j].CreationTimestamp.Before(&items[i].CreationTimestamp)
	})
	return items, nil
}

// metrics reads a succeeded Job's metrics: the eval container's
// termination message, else the tail of its log.
func (k *KubeEvals) metrics(ctx context.Context, ns, name string) (map[string]float64, error) {
	pods, err := k.evalPods(ctx, ns, name)
	if err != nil {
		return nil, fmt.Errorf("eval job %s/%s: list pods: %w", ns, name, err)
	}
	var errs []error
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			t := cs.State.Terminated
			if cs.Name != "eval" || t == nil || t.ExitCode != 0 {
				continue
			}
			if obj, ok := lastJSONObject([]byte(t.Message)); ok {
				m, err := parseMetrics(obj)
				if err != nil {
					return nil, fmt.Errorf("eval job %s/%s: termination message: %w", ns, name, err)
				}
				return m, nil
			}
			lines := k.LogLines
			if lines <= 0 {
				lines = 100
			}
			log, err := k.logTail(ctx, ns, p.Name, lines)
			if err != nil {
				errs = append(errs, fmt.Errorf("pod %s: log: %w", p.Name, err))
				continue
			}
			obj, ok := lastJSONObject(log)
			if !ok {
				return nil, fmt.Errorf("eval job %s/%s wrote no JSON object to %s and printed none", ns, name, EvalTerminationLog)
			}
			m, err := parseMetrics(obj)
			if err != nil {
				return nil, fmt.Errorf("eval job %s/%s printed: %w", ns, name, err)
			}
			return m, nil
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("eval job %s/%s: no metrics: %w", ns, name, errors.Join(errs...))
	}
	return nil, fmt.Errorf("eval job %s/%s succeeded but no pod of it has a terminated eval container (removed?)", ns, name)
}

func (k *KubeEvals) logTail(ctx context.Context, ns, pod string, lines int64) ([]byte, error) {
	rc, err := k.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: "eval", TailLines: &lines}).Stream(ctx)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, 1<<20))
}

// message is the failed eval container's termination message (with
// FallbackToLogsOnError, the tail of its log when it wrote none).
func (k *KubeEvals) message(ctx context.Context, ns, name string) string {
	pods, err := k.evalPods(ctx, ns, name)
	if err != nil {
		return ""
	}
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
				msg := fmt.Sprintf(": exit code %d", t.ExitCode)
				if t.Reason != "" {
					msg += " (" + t.Reason + ")"
				}
				if m := strings.TrimSpace(t.Message); m != "" {
					msg += ": " + m
				}
				return msg
			}
		}
	}
	return ""
}

func (k *KubeEvals) jobSpec(job EvalJob, name string, timeout time.Duration) (*batchv1.Job, error) {
	ev := job.Eval
	res := corev1.ResourceRequirements{Requests: corev1.ResourceList{}}
	for rn, raw := range map[corev1.ResourceName]string{corev1.ResourceCPU: ev.CPU, corev1.ResourceMemory: ev.Memory} {
		if raw == "" {
			continue
		}
		q, err := resource.ParseQuantity(raw)
		if err != nil {
			return nil, fmt.Errorf("release %s: eval %s: %s %q: %w", job.Release, ev.Name, rn, raw, err)
		}
		res.Requests[rn] = q
		if rn == corev1.ResourceMemory {
			res.Limits = corev1.ResourceList{rn: q}
		}
	}
	var tolerations []corev1.Toleration
	if ev.GPUs > 0 {
		gpus := *resource.NewQuantity(int64(ev.GPUs), resource.DecimalSI)
		res.Requests[planner.GPUResource] = gpus
		if res.Limits == nil {
			res.Limits = corev1.ResourceList{}
		}
		res.Limits[planner.GPUResource] = gpus
		tolerations = []corev1.Toleration{{Key: planner.GPUResource, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}}
	}
	model := EvalMountPath
	if job.Format == "gguf" {
		model = EvalMountPath + "/model.gguf"
	}
	var env []corev1.EnvVar
	keys := make([]string, 0, len(ev.Env))
	for k := range ev.Env {
		if k != EnvModelDir && k != EnvModel && k != EnvMetrics {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, corev1.EnvVar{Name: k, Value: ev.Env[k]})
	}
	env = append(env,
		corev1.EnvVar{Name: EnvModelDir, Value: EvalMountPath},
		corev1.EnvVar{Name: EnvModel, Value: model},
		corev1.EnvVar{Name: EnvMetrics, Value: EvalTerminationLog},
	)
	role := "candidate"
	if job.Baseline {
		role = "baseline"
	}
	labels := map[string]string{planner.LabelManagedBy: planner.ManagedBy, planner.LabelRelease: job.Release,
		"app.kubernetes.io/component": "model-eval", LabelEval: labelValue(ev.Name)}
	c := corev1.Container{
		Name: "eval", Image: ev.Image, Command: ev.Command, Env: env, Resources: res,
		TerminationMessagePath:   EvalTerminationLog,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		VolumeMounts:             []corev1.VolumeMount{{Name: "model", MountPath: EvalMountPath, ReadOnly: true}},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: ptrTo(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
	pod := corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever, ServiceAccountName: k.ServiceAccount,
		// The evaluator has no business with the API.
		AutomountServiceAccountToken: ptrTo(false),
		Containers:                   []corev1.Container{c},
		Tolerations:                  tolerations,
		Volumes: []corev1.Volume{{Name: "model", VolumeSource: corev1.VolumeSource{
			Image: &corev1.ImageVolumeSource{Reference: job.Model, PullPolicy: corev1.PullIfNotPresent},
		}}},
	}
	ttl := k.TTL
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: job.Namespace, Labels: labels,
			Annotations: map[string]string{planner.AnnotationContentKey: job.ContentKey, AnnotationEvalKey: job.EvalKey,
				"gantry.dev/eval-role": role}},
		Spec: batchv1.JobSpec{
			BackoffLimit: ptrTo(int32(0)),
			// The eval's timeout bounds the run, its image pulls included.
			ActiveDeadlineSeconds:   ptrTo(int64(max(timeout/time.Second, 1))),
			TTLSecondsAfterFinished: ptrTo(int32(ttl / time.Second)),
			Template:                corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod},
		},
	}, nil
}

// labelValue makes s a valid label value (63 characters of [a-z0-9-_.]).
func labelValue(s string) string {
	s = strings.Trim(nonName.ReplaceAllString(strings.ToLower(s), "-"), "-")
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-")
	}
	return s
}

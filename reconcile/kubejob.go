package reconcile

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/gantry-dev/gantry/planner"
)

// KubeJobs runs build jobs as Kubernetes Jobs: `gantry build` from the
// daemon's own image checks out the revision, quantizes, gates and pushes,
// so that quantization scales past the daemon's machine. A Job is named
// by release and content key, so a restarted daemon finds the Job it
// started instead of starting another.
type KubeJobs struct {
	Client kubernetes.Interface
	// Image runs `gantry build`; normally the daemon's own image.
	Image string
	// ServiceAccount runs the Job's pod ("" is the namespace default).
	ServiceAccount string
	// EnvSecret, if set, is a Secret whose keys become the pod's
	// environment (GANTRY_GIT_TOKEN for a private repository, say).
	EnvSecret string
	// RegistrySecret, if set, is a Secret holding a docker config.json
	// (key config.json) used to push.
	RegistrySecret string
	// Insecure passes --registry-insecure.
	Insecure bool
	// Poll is how often the Job is checked; default 5s.
	Poll time.Duration
	// Timeout bounds the wait; default 6h.
	Timeout time.Duration
}

var nonName = regexp.MustCompile(`[^a-z0-9-]+`)

// JobName is the Job of one release's build of one content key.
func JobName(release, key string) string {
	r := strings.Trim(nonName.ReplaceAllString(release, "-"), "-")
	if len(r) > 40 {
		r = strings.TrimRight(r[:40], "-")
	}
	return "gantry-build-" + r + "-" + key[:10]
}

// RunBuild creates the Job (or finds it) and waits until it succeeds or
// fails. A failure carries the pod's termination message, the tail of
// `gantry build`'s output.
func (k *KubeJobs) RunBuild(ctx context.Context, job BuildJob) error {
	poll, timeout := k.Poll, k.Timeout
	if poll <= 0 {
		poll = 5 * time.Second
	}
	if timeout <= 0 {
		timeout = 6 * time.Hour
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := k.Client.CoreV1().Namespaces().Get(ctx, job.Namespace, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		// The build runs before any object is applied, so the namespace
		// may not exist yet.
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: job.Namespace, Labels: map[string]string{planner.LabelManagedBy: planner.ManagedBy}}}
		if _, err := k.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{FieldManager: "gantry"}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create namespace %s: %w", job.Namespace, err)
		}
	}
	jobs := k.Client.BatchV1().Jobs(job.Namespace)
	name := JobName(job.Release, job.ContentKey)
	spec, err := k.jobSpec(job, name)
	if err != nil {
		return err
	}
	if _, err := jobs.Create(ctx, spec, metav1.CreateOptions{FieldManager: "gantry"}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create job %s/%s: %w", job.Namespace, name, err)
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		j, err := jobs.Get(ctx, name, metav1.GetOptions{})
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("job %s/%s: %w", job.Namespace, name, err)
		}
		if err == nil {
			if done, ferr := finished(j); done {
				if ferr != nil {
					return fmt.Errorf("job %s/%s failed: %w%s", job.Namespace, name, ferr, k.message(ctx, job.Namespace, name))
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("job %s/%s: %w", job.Namespace, name, ctx.Err())
		case <-t.C:
		}
	}
}

// finished reads a Job's outcome from its conditions and counts.
func finished(j *batchv1.Job) (bool, error) {
	for _, c := range j.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete, batchv1.JobSuccessCriteriaMet:
			return true, nil
		case batchv1.JobFailed, batchv1.JobFailureTarget:
			return true, fmt.Errorf("%s: %s", c.Reason, c.Message)
		}
	}
	if j.Status.Succeeded > 0 {
		return true, nil
	}
	return false, nil
}

// message returns the last failed pod's termination message.
func (k *KubeJobs) message(ctx context.Context, ns, name string) string {
	pods, err := k.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + name})
	if err != nil {
		return ""
	}
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			if t := cs.State.Terminated; t != nil && t.ExitCode != 0 && t.Message != "" {
				return ": " + strings.TrimSpace(t.Message)
			}
		}
	}
	return ""
}

func (k *KubeJobs) jobSpec(job BuildJob, name string) (*batchv1.Job, error) {
	args := []string{"build", "--repo", job.RepoURL, "--ref", job.Revision, "--release", job.Release, "--state-dir", "/work"}
	if job.Candidate {
		args = append(args, "--candidate")
	}
	if k.Insecure {
		args = append(args, "--registry-insecure")
	}
	res := corev1.ResourceRequirements{Requests: corev1.ResourceList{}}
	for rn, raw := range map[corev1.ResourceName]string{corev1.ResourceCPU: job.CPU, corev1.ResourceMemory: job.Memory} {
		if raw == "" {
			continue
		}
		q, err := resource.ParseQuantity(raw)
		if err != nil {
			return nil, fmt.Errorf("release %s: quantize %s %q: %w", job.Release, rn, raw, err)
		}
		res.Requests[rn] = q
		if rn == corev1.ResourceMemory {
			res.Limits = corev1.ResourceList{rn: q}
		}
	}
	labels := map[string]string{planner.LabelManagedBy: planner.ManagedBy, planner.LabelRelease: job.Release,
		"app.kubernetes.io/component": "model-build"}
	c := corev1.Container{
		Name: "build", Image: k.Image, Args: args, Resources: res,
		TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
		VolumeMounts:             []corev1.VolumeMount{{Name: "work", MountPath: "/work"}},
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot: ptrTo(true), AllowPrivilegeEscalation: ptrTo(false), ReadOnlyRootFilesystem: ptrTo(true),
			Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
	pod := corev1.PodSpec{
		RestartPolicy: corev1.RestartPolicyNever, ServiceAccountName: k.ServiceAccount,
		Containers: []corev1.Container{c},
		Volumes:    []corev1.Volume{{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
	}
	if k.EnvSecret != "" {
		pod.Containers[0].EnvFrom = []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: k.EnvSecret}}}}
	}
	if k.RegistrySecret != "" {
		pod.Volumes = append(pod.Volumes, corev1.Volume{Name: "registry", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: k.RegistrySecret}}})
		pod.Containers[0].VolumeMounts = append(pod.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "registry", MountPath: "/etc/gantry/registry", ReadOnly: true})
		pod.Containers[0].Env = append(pod.Containers[0].Env, corev1.EnvVar{Name: "DOCKER_CONFIG", Value: "/etc/gantry/registry"})
	}
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: job.Namespace, Labels: labels,
			Annotations: map[string]string{planner.AnnotationContentKey: job.ContentKey, planner.AnnotationRevision: job.Revision}},
		Spec: batchv1.JobSpec{
			BackoffLimit:            ptrTo(int32(1)),
			TTLSecondsAfterFinished: ptrTo(int32(24 * 3600)),
			Template:                corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod},
		},
	}, nil
}

func ptrTo[T any](v T) *T { return &v }

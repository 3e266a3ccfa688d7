package reconcile

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile/kube/kubetest"
	"github.com/gantry-dev/gantry/spec"
)

const evalDigest = "sha256:1111111111111111111111111111111111111111111111111111111111111111"

func klJob(ns string) EvalJob {
	ev := &spec.Eval{Name: "kl", Image: "ghcr.io/ggml-org/llama.cpp:full", Command: []string{"/bin/sh", "/evals/kl.sh"},
		Env: map[string]string{"KL_REFERENCE": "/ref/model.gguf", EnvMetrics: "/elsewhere"}, CPU: "2", Memory: "8Gi", GPUs: 1,
		Timeout: 10 * time.Minute, Max: map[string]float64{"kl_divergence": 0.05}}
	return EvalJob{Release: "tiny-chat", Namespace: ns, Eval: ev, ContentKey: candKey, EvalKey: planner.EvalKey(candKey, ev),
		Model: "registry.example/models/tiny-chat:candidate-cccccccccccc@" + evalDigest, Format: "gguf"}
}

// waitJob waits until the eval Job of job exists.
func waitJob(t *testing.T, cs kubernetes.Interface, job EvalJob, done <-chan evalOutcome) *batchv1.Job {
	t.Helper()
	name := EvalJobName(job.Release, job.Eval.Name, job.EvalKey)
	deadline := time.Now().Add(30 * time.Second)
	for {
		j, err := cs.BatchV1().Jobs(job.Namespace).Get(context.Background(), name, metav1.GetOptions{})
		if err == nil {
			return j
		}
		select {
		case o := <-done:
			t.Fatalf("RunEval returned before its Job appeared: %v %v", o.metrics, o.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Job %s: %v", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type evalOutcome struct {
	metrics map[string]float64
	err     error
}

func runEvalAsync(ctx context.Context, k *KubeEvals, job EvalJob) <-chan evalOutcome {
	out := make(chan evalOutcome, 1)
	go func() {
		m, err := k.RunEval(ctx, job)
		out <- evalOutcome{m, err}
	}()
	return out
}

// finishPod plays the kubelet and the Job controller (envtest runs
// neither): a pod of the Job whose eval container terminated with
// exitCode and message, then the Job's outcome.
func finishPod(t *testing.T, cs kubernetes.Interface, j *batchv1.Job, exitCode int32, message string) {
	t.Helper()
	ctx := context.Background()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: j.Name + "-x1", Namespace: j.Namespace, Labels: map[string]string{"job-name": j.Name}},
		Spec:       *j.Spec.Template.Spec.DeepCopy(),
	}
	pod, err := cs.CoreV1().Pods(j.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	phase := corev1.PodSucceeded
	if exitCode != 0 {
		phase = corev1.PodFailed
	}
	pod.Status = corev1.PodStatus{Phase: phase, ContainerStatuses: []corev1.ContainerStatus{{
		Name: "eval", Image: j.Spec.Template.Spec.Containers[0].Image, ImageID: "docker-pullable://x@" + evalDigest,
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exitCode, Message: message, StartedAt: now, FinishedAt: now}},
	}}}
	if _, err := cs.CoreV1().Pods(j.Namespace).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	j, err = cs.BatchV1().Jobs(j.Namespace).Get(ctx, j.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if exitCode == 0 {
		j.Status = batchv1.JobStatus{StartTime: &now, CompletionTime: &now, Succeeded: 1, Conditions: []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now},
		}}
	} else {
		j.Status = batchv1.JobStatus{StartTime: &now, Failed: 1, Conditions: []batchv1.JobCondition{
			{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit", LastTransitionTime: now},
			{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: "Job has reached the specified backoff limit", LastTransitionTime: now},
		}}
	}
	if _, err := cs.BatchV1().Jobs(j.Namespace).UpdateStatus(ctx, j, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestKubeEvalJob(t *testing.T) {
	if testing.Short() {
		t.Skip("envtest: a real kube-apiserver")
	}
	cs, err := kubetest.StartT(t, 1)[0].Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	job := klJob("ml-eval")
	k := &KubeEvals{Client: cs, Poll: 20 * time.Millisecond, ServiceAccount: "evals"}
	ctx1, stop := context.WithCancel(ctx)
	done := runEvalAsync(ctx1, k, job)
	j := waitJob(t, cs, job, done)

	// The spec: the model image by digest at /models, the eval's image,
	// command, environment and resources, no retries.
	if j.Name != EvalJobName("tiny-chat", "kl", job.EvalKey) || len(j.Name) > 63 || !strings.HasPrefix(j.Name, "gantry-eval-tiny-chat-kl-") {
		t.Errorf("job name %q", j.Name)
	}
	if j.Spec.BackoffLimit == nil || *j.Spec.BackoffLimit != 0 || j.Spec.TTLSecondsAfterFinished == nil || *j.Spec.TTLSecondsAfterFinished != 86400 ||
		j.Spec.ActiveDeadlineSeconds == nil || *j.Spec.ActiveDeadlineSeconds != 600 {
		t.Errorf("backoffLimit %v ttl %v activeDeadline %v", j.Spec.BackoffLimit, j.Spec.TTLSecondsAfterFinished, j.Spec.ActiveDeadlineSeconds)
	}
	if j.Annotations[planner.AnnotationContentKey] != candKey || j.Annotations[AnnotationEvalKey] != job.EvalKey || j.Labels[planner.LabelRelease] != "tiny-chat" || j.Labels[LabelEval] != "kl" {
		t.Errorf("job metadata %v %v", j.Labels, j.Annotations)
	}
	pod := j.Spec.Template.Spec
	if len(pod.Volumes) != 1 || pod.Volumes[0].Image == nil || pod.Volumes[0].Image.Reference != job.Model || !strings.HasSuffix(pod.Volumes[0].Image.Reference, "@"+evalDigest) {
		t.Fatalf("volumes %+v, want the model image by digest", pod.Volumes)
	}
	if pod.RestartPolicy != corev1.RestartPolicyNever || pod.ServiceAccountName != "evals" || pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Errorf("pod restartPolicy %s serviceAccount %q automount %v", pod.RestartPolicy, pod.ServiceAccountName, pod.AutomountServiceAccountToken)
	}
	if len(pod.Tolerations) != 1 || pod.Tolerations[0].Key != planner.GPUResource {
		t.Errorf("tolerations %+v", pod.Tolerations)
	}
	c := pod.Containers[0]
	if c.Image != "ghcr.io/ggml-org/llama.cpp:full" || strings.Join(c.Command, " ") != "/bin/sh /evals/kl.sh" ||
		len(c.VolumeMounts) != 1 || c.VolumeMounts[0].MountPath != "/models" || !c.VolumeMounts[0].ReadOnly {
		t.Errorf("container image %q command %q mounts %+v", c.Image, c.Command, c.VolumeMounts)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if env["GANTRY_MODEL_DIR"] != "/models" || env["GANTRY_MODEL"] != "/models/model.gguf" || env["GANTRY_METRICS"] != "/dev/termination-log" ||
		env["KL_REFERENCE"] != "/ref/model.gguf" || len(env) != 4 {
		t.Errorf("env %v", env)
	}
	if c.TerminationMessagePath != "/dev/termination-log" || c.TerminationMessagePolicy != corev1.TerminationMessageFallbackToLogsOnError {
		t.Errorf("termination message %q %q", c.TerminationMessagePath, c.TerminationMessagePolicy)
	}
	gpu := resource.MustParse("1")
	if c.Resources.Requests.Cpu().Cmp(resource.MustParse("2")) != 0 || c.Resources.Requests.Memory().Cmp(resource.MustParse("8Gi")) != 0 ||
		c.Resources.Requests.Name(planner.GPUResource, resource.DecimalSI).Cmp(gpu) != 0 ||
		c.Resources.Limits.Name(planner.GPUResource, resource.DecimalSI).Cmp(gpu) != 0 || c.Resources.Limits.Memory().Cmp(resource.MustParse("8Gi")) != 0 {
		t.Errorf("resources %+v", c.Resources)
	}

	// The daemon stops while the Job runs: the Job stays, and a restarted
	// daemon (a new runner) finds it instead of starting another.
	stop()
	if o := <-done; !errors.Is(o.err, context.Canceled) {
		t.Fatalf("stopped RunEval: %v %v", o.metrics, o.err)
	}
	k2 := &KubeEvals{Client: cs, Poll: 20 * time.Millisecond, ServiceAccount: "evals"}
	done = runEvalAsync(ctx, k2, job)
	time.Sleep(200 * time.Millisecond)
	list, err := cs.BatchV1().Jobs(job.Namespace).List(ctx, metav1.ListOptions{LabelSelector: planner.LabelRelease + "=tiny-chat"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].UID != j.UID {
		t.Fatalf("after a restart: %d Jobs, want the one started before", len(list.Items))
	}

	// The kubelet writes the termination message: the metrics.
	finishPod(t, cs, j, 0, `{"kl_divergence": 0.0123, "top1_agreement": 0.97}`)
	select {
	case o := <-done:
		if o.err != nil {
			t.Fatal(o.err)
		}
		if o.metrics["kl_divergence"] != 0.0123 || o.metrics["top1_agreement"] != 0.97 || len(o.metrics) != 2 {
			t.Fatalf("metrics %v", o.metrics)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("RunEval did not notice the Job finish")
	}
}

func TestKubeEvalJobFails(t *testing.T) {
	if testing.Short() {
		t.Skip("envtest: a real kube-apiserver")
	}
	cs, err := kubetest.StartT(t, 1)[0].Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	job := klJob("ml-eval-fail")
	k := &KubeEvals{Client: cs, Poll: 20 * time.Millisecond}
	done := runEvalAsync(ctx, k, job)
	j := waitJob(t, cs, job, done)
	finishPod(t, cs, j, 1, "Traceback (most recent call last):\nRuntimeError: CUDA out of memory")
	o := <-done
	if o.err == nil || !strings.Contains(o.err.Error(), "BackoffLimitExceeded") || !strings.Contains(o.err.Error(), "exit code 1") ||
		!strings.Contains(o.err.Error(), "CUDA out of memory") {
		t.Fatalf("err = %v, want the Job's failure with the pod's message", o.err)
	}

	// A retry replaces the failed Job instead of reporting its old failure.
	done = runEvalAsync(ctx, k, job)
	deadline := time.Now().Add(30 * time.Second)
	var again *batchv1.Job
	for again == nil {
		got, err := cs.BatchV1().Jobs(job.Namespace).Get(ctx, j.Name, metav1.GetOptions{})
		if err == nil && got.UID != j.UID {
			again = got
			break
		}
		select {
		case o := <-done:
			t.Fatalf("the retry returned without a new Job: %v %v", o.metrics, o.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the failed Job was not replaced")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The old pod is gone with its Job only under a garbage collector;
	// envtest has none.
	if err := cs.CoreV1().Pods(job.Namespace).Delete(ctx, j.Name+"-x1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	finishPod(t, cs, again, 0, `{"kl_divergence": 0.02}`)
	if o := <-done; o.err != nil || o.metrics["kl_divergence"] != 0.02 {
		t.Fatalf("retry: %v %v", o.metrics, o.err)
	}
}

// Metrics from the pod's log when the container wrote no termination
// message (client-go's fake serves every log as "fake logs").
func TestKubeEvalMetricsFromLog(t *testing.T) {
	cs := fake.NewClientset()
	ctx := context.Background()
	k := &KubeEvals{Client: cs}
	job := klJob("ml")
	name := EvalJobName(job.Release, job.Eval.Name, job.EvalKey)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name + "-a", Namespace: "ml", Labels: map[string]string{"job-name": name}},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{Name: "eval",
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}}}}}
	if _, err := cs.CoreV1().Pods("ml").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := k.metrics(ctx, "ml", name)
	if err == nil || !strings.Contains(err.Error(), "wrote no JSON object to /dev/termination-log and printed none") {
		t.Fatalf("err = %v", err)
	}
	pod.Status.ContainerStatuses[0].State.Terminated.Message = "loading model\n{\"perplexity\": 7.25}\n"
	if _, err := cs.CoreV1().Pods("ml").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	m, err := k.metrics(ctx, "ml", name)
	if err != nil || m["perplexity"] != 7.25 {
		t.Fatalf("metrics %v, %v", m, err)
	}
}

func TestEvalJobName(t *testing.T) {
	ek := strings.Repeat("e", 64)
	long := EvalJobName(strings.Repeat("very-long-release-name-", 5), "Perplexity On WikiText_2", ek)
	if len(long) > 63 || !strings.HasSuffix(long, "-eeeeeeeeee") || strings.Contains(long, "--") {
		t.Errorf("EvalJobName = %q (%d)", long, len(long))
	}
	if a, b := EvalJobName("chat", "kl", ek), EvalJobName("chat", "kl", strings.Repeat("f", 64)); a == b {
		t.Errorf("two eval keys share the Job name %q", a)
	}
}

// The engine's side: evaluate() runs an image eval as a Job on the
// candidate (pushed for it) and on the serving build, a restarted engine
// finds the Jobs the first one started, and the termination messages'
// metrics are checked against the bounds and cached.
func TestKubeEvalEngineRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("envtest: a real kube-apiserver")
	}
	cs, err := kubetest.StartT(t, 1)[0].Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	f := newEvalFixture(t)
	cfg := &spec.Config{Settings: spec.Settings{Namespace: "ml-engine", Registry: "registry.example/models"}}
	ev := spec.Eval{Name: "ppl", Image: "ghcr.io/ggml-org/llama.cpp:full", Timeout: 10 * time.Minute, Memory: "4Gi",
		Max: map[string]float64{"perplexity": 20}, MaxRatioToBaseline: map[string]float64{"perplexity": 1.02}}
	r := f.release(ev)
	baseRef := planner.ImageRepository(cfg, "chat") + ":" + planner.ImageTag(baseKey)
	b, err := modelFiles(model(t, filepath.Join(t.TempDir(), "base"), 1), "safetensors", nil)
	if err != nil {
		t.Fatal(err)
	}
	baseDigest, err := f.e.push(ctx, f.store, cfg, r, baseKey, baseRef, b)
	if err != nil {
		t.Fatal(err)
	}
	pushes := 0
	in := evalInput{Snap: f.snap, Cfg: cfg, Release: r, Key: candKey,
		Observed: planner.Observed{Objects: []planner.Object{serving("chat-n1", baseKey, "", 2)}},
		Push: func(context.Context) (string, string, error) {
			pushes++
			return "registry.example/models/chat:candidate", evalDigest, nil
		}}
	jobName := func(key string) string { return EvalJobName("chat", "ppl", planner.EvalKey(key, &r.Gate.Evals[0])) }
	type result struct {
		checks []planner.BoundCheck
		err    error
	}
	start := func(ctx context.Context, e *Engine) <-chan result {
		e.EvalJobs = &KubeEvals{Client: cs, Poll: 20 * time.Millisecond}
		out := make(chan result, 1)
		go func() {
			c, err := e.evaluate(ctx, f.store, in)
			out <- result{c, err}
		}()
		return out
	}
	get := func(name string) *batchv1.Job {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			j, err := cs.BatchV1().Jobs("ml-engine").Get(ctx, name, metav1.GetOptions{})
			if err == nil {
				return j
			}
			if time.Now().After(deadline) {
				t.Fatalf("no Job %s: %v", name, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	ctx1, stop := context.WithCancel(ctx)
	done := start(ctx1, f.e)
	cand := get(jobName(candKey))
	if ref := cand.Spec.Template.Spec.Volumes[0].Image.Reference; ref != "registry.example/models/chat:candidate@"+evalDigest {
		t.Errorf("candidate Job mounts %q", ref)
	}
	stop() // the daemon stops while the candidate's Job runs
	if res := <-done; !errors.Is(res.err, context.Canceled) {
		t.Fatalf("stopped evaluate: %+v", res)
	}

	e2 := &Engine{WorkDir: f.e.WorkDir, Log: f.e.Log}
	done = start(ctx, e2)
	time.Sleep(200 * time.Millisecond)
	if again := get(jobName(candKey)); again.UID != cand.UID {
		t.Fatal("the restarted engine started another candidate Job")
	}
	finishPod(t, cs, cand, 0, `{"perplexity": 10.4}`)
	base := get(jobName(baseKey))
	if ref := base.Spec.Template.Spec.Volumes[0].Image.Reference; ref != baseRef+"@"+baseDigest {
		t.Errorf("baseline Job mounts %q, want the serving build %s@%s", ref, baseRef, baseDigest)
	}
	finishPod(t, cs, base, 0, `{"perplexity": 10}`)
	var res result
	select {
	case res = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("evaluate did not return")
	}
	if res.err != nil {
		t.Fatal(res.err)
	}
	want := "eval ppl: perplexity = 10.4 exceeds 1.02 × baseline 10 = 10.2 by 0.2 (ratio 1.04)"
	if got := planner.Blocked(res.checks); got != want {
		t.Fatalf("blocked:\n got %q\nwant %q", got, want)
	}
	if pushes != 2 { // once per engine: the restarted one pushes again (the store skips what it has)
		t.Errorf("%d candidate pushes, want 2", pushes)
	}
	// Cached: a third evaluate starts no Job and pushes nothing.
	list, err := cs.BatchV1().Jobs("ml-engine").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e2.evaluate(ctx, f.store, in); err != nil {
		t.Fatal(err)
	}
	after, err := cs.BatchV1().Jobs("ml-engine").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 2 || len(after.Items) != 2 || pushes != 2 {
		t.Errorf("jobs %d then %d, pushes %d: a cached result ran something", len(list.Items), len(after.Items), pushes)
	}
}

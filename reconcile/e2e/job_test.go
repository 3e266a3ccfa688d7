package e2e

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf/ggufgen"
)

// TestBuildJob: a release with quantize { runner = "job" } is built by a
// Kubernetes Job running `gantry build`. envtest runs no Job controller,
// so the test plays the kubelet: it runs the Job's command itself and
// then marks the Job complete; the daemon waits for that and applies.
func TestBuildJob(t *testing.T) {
	need(t)
	const ns, product = "e2e-job", "A100-job"
	gpuNodes(t, product, 8, "job-a")
	g := newGitRemote(t)
	model := tinyModel(t, ggufgen.Config{Layers: 1, Embd: 128, FF: 256, Vocab: 128, Heads: 4, HeadsKV: 2, Type: ggml.F16, Seed: 11})
	hcl := strings.Replace(string(specs(ns, product, 1, "q8_0")), `method = "q8_0"`, `method = "q8_0"
    runner = "job"
    cpu    = "2"
    memory = "4Gi"`, 1)
	rev := g.commit("add chat", map[string][]byte{"gantry.hcl": []byte(hcl), "models/tiny.gguf": model})

	run := exec.Command(env.bin, "run", "--once", "--no-color", "--repo", g.url, "--target", "kube", "--kubeconfig", env.kubeconfig,
		"--state-dir", t.TempDir(), "--job-image", "gantry:e2e", "--job-env-secret", "gantry-git")
	var out strings.Builder
	run.Stdout, run.Stderr = &out, &out
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- run.Wait() }()
	defer run.Process.Kill()

	ctx := context.Background()
	jobs := admin(t).BatchV1().Jobs(ns)
	var job *batchv1.Job
	waitUntil(t, "the build Job", 60*time.Second, func() bool {
		select {
		case err := <-exited:
			t.Fatalf("gantry run exited before the Job appeared: %v\n%s", err, out.String())
		default:
		}
		list, err := jobs.List(ctx, metav1.ListOptions{LabelSelector: "gantry.dev/release=chat"})
		if err == nil && len(list.Items) == 1 {
			job = &list.Items[0]
			return true
		}
		return false
	})
	c := job.Spec.Template.Spec.Containers[0]
	args := strings.Join(c.Args, " ")
	if c.Image != "gantry:e2e" || !strings.Contains(args, "build --repo http://127.0.0.1:") || !strings.Contains(args, "--ref "+rev) ||
		!strings.Contains(args, "--release chat") || strings.Contains(args, gitPassword) {
		t.Fatalf("job container: image %q args %q", c.Image, args)
	}
	if c.Resources.Requests.Cpu().String() != "2" || c.Resources.Requests.Memory().String() != "4Gi" || c.EnvFrom[0].SecretRef.Name != "gantry-git" {
		t.Errorf("job resources %v envFrom %v", c.Resources, c.EnvFrom)
	}

	// Play the kubelet: run the Job's command (with credentials, which
	// the Job would take from its secret), then report success.
	buildArgs := append([]string(nil), c.Args...)
	for i := range buildArgs {
		if buildArgs[i] == "--repo" {
			buildArgs[i+1] = g.url
		}
		if buildArgs[i] == "--state-dir" {
			buildArgs[i+1] = t.TempDir()
		}
	}
	digest := strings.TrimSpace(gantry(t, buildArgs...))
	lines := strings.Split(digest, "\n")
	digest = lines[len(lines)-1]
	if !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("gantry build printed %q", digest)
	}
	select {
	case err := <-exited:
		t.Fatalf("the daemon did not wait for the Job: %v\n%s", err, out.String())
	default:
	}
	now := metav1.Now()
	job, err := jobs.Get(ctx, job.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	job.Status = batchv1.JobStatus{StartTime: &now, CompletionTime: &now, Succeeded: 1, Conditions: []batchv1.JobCondition{
		{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now},
	}}
	if _, err := jobs.UpdateStatus(ctx, job, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("gantry run --once: %v\n%s", err, out.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the daemon did not notice the Job finish:\n%s", out.String())
	}
	_, images := shards(t, ns)
	if refs := keys(images); len(refs) != 1 || !strings.HasSuffix(refs[0], "@"+digest) {
		t.Fatalf("shards use %v, want the job's %s", refs, digest)
	}
}

package e2e

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/reconcile/registry/registrytest"
)

// The parts every test shares, started once.
var env struct {
	bin        string // the gantry binary
	kubeconfig string
	rest       *rest.Config
	registry   string // host:port
	runtime    string // a runtime image pushed to the registry
	runtimeDig string // its digest
	err        error  // why a part is missing
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "gantry-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	env.err = setup(tmp)
	defer teardown()
	return m.Run()
}

var stops []func()

func teardown() {
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
}

func setup(tmp string) error {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return fmt.Errorf("KUBEBUILDER_ASSETS is not set; run export KUBEBUILDER_ASSETS=\"$(.ci/testbin.sh)\"")
	}
	if _, err := exec.LookPath("git"); err != nil {
		return fmt.Errorf("git is not installed")
	}
	host, stop, err := registrytest.Start()
	stops = append(stops, stop)
	if err != nil {
		return err
	}
	env.registry = host
	img, err := random.Image(1024, 1)
	if err != nil {
		return err
	}
	env.runtime = host + "/runtime/llama:server"
	if env.runtimeDig, err = registry.NewRemote(registry.Options{}).Write(context.Background(), env.runtime, img); err != nil {
		return fmt.Errorf("push the runtime image: %w", err)
	}

	// The Gateway API's HTTPRoute CRD, from the module cache, for
	// releases with traffic = "gateway".
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		return fmt.Errorf("find the gateway-api module: %w", err)
	}
	crd := filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard", "gateway.networking.k8s.io_httproutes.yaml")
	te := &envtest.Environment{CRDInstallOptions: envtest.CRDInstallOptions{Paths: []string{crd}, ErrorIfPathMissing: true}}
	cfg, err := te.Start()
	if err != nil {
		return fmt.Errorf("start envtest: %w", err)
	}
	stops = append(stops, func() { te.Stop() })
	env.rest = cfg
	user, err := te.AddUser(envtest.User{Name: "gantry-e2e", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	env.kubeconfig = filepath.Join(tmp, "kubeconfig")
	if err := os.WriteFile(env.kubeconfig, kc, 0o600); err != nil {
		return err
	}
	env.bin = filepath.Join(tmp, "gantry")
	if out, err := exec.Command("go", "build", "-o", env.bin, "github.com/gantry-dev/gantry/cmd/gantry").CombinedOutput(); err != nil {
		return fmt.Errorf("build gantry: %v\n%s", err, out)
	}
	return nil
}

// need fails (or, with -short, skips) a test when a part is missing.
func need(t *testing.T) {
	t.Helper()
	if env.err == nil {
		return
	}
	if testing.Short() {
		t.Skipf("end-to-end test: %v", env.err)
	}
	t.Fatalf("end-to-end test: %v", env.err)
}

func admin(t *testing.T) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(env.rest)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// gpuNodes creates Ready GPU nodes with GPU feature discovery labels.
func gpuNodes(t *testing.T, product string, gpus int, names ...string) {
	t.Helper()
	gpuNodesIn(t, admin(t), product, gpus, names...)
}

// gpuNodesIn is gpuNodes in the cluster cs reaches.
func gpuNodesIn(t *testing.T, cs kubernetes.Interface, product string, gpus int, names ...string) {
	t.Helper()
	ctx := context.Background()
	for _, name := range names {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			"kubernetes.io/hostname": name, "nvidia.com/gpu.product": product,
			"nvidia.com/gpu.memory": "81920", "nvidia.com/gpu.count": fmt.Sprint(gpus),
		}}}
		created, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cs.CoreV1().Nodes().Delete(context.Background(), name, metav1.DeleteOptions{}) })
		res := corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("512Gi"),
			"nvidia.com/gpu": *resource.NewQuantity(int64(gpus), resource.DecimalSI),
		}
		created.Status = corev1.NodeStatus{Capacity: res, Allocatable: res, Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: metav1.Now()}}}
		created, err = cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// Admission adds the not-ready taint; no node controller lifts it here.
		created.Spec.Taints = nil
		if _, err := cs.CoreV1().Nodes().Update(ctx, created, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

const (
	gitUser     = "gantry"
	gitPassword = "e2e-git-password-7c1d"
)

// gitRemote is a bare repository served over smart HTTP with basic auth,
// and a working copy to commit to it.
type gitRemote struct {
	url  string // with credentials
	work string
	t    *testing.T
}

func newGitRemote(t *testing.T) *gitRemote {
	t.Helper()
	root := t.TempDir()
	g := &gitRemote{t: t, work: filepath.Join(t.TempDir(), "work")}
	g.git(root, "init", "-q", "--bare", "-b", "main", "specs.git")
	g.git(filepath.Join(root, "specs.git"), "config", "http.receivepack", "true")
	execPath := strings.TrimSpace(g.git("", "--exec-path"))
	h := &cgi.Handler{Path: filepath.Join(execPath, "git-http-backend"), Env: []string{
		"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + t.TempDir()}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || u != gitUser || subtle.ConstantTimeCompare([]byte(p), []byte(gitPassword)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="e2e"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	g.url = strings.Replace(srv.URL, "http://", "http://"+gitUser+":"+gitPassword+"@", 1) + "/specs.git"
	g.git("", "clone", "-q", g.url, g.work)
	return g
}

func (g *gitRemote) git(dir string, args ...string) string {
	g.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+os.DevNull,
		"GIT_AUTHOR_NAME=Dev", "GIT_AUTHOR_EMAIL=dev@example.com", "GIT_COMMITTER_NAME=Dev", "GIT_COMMITTER_EMAIL=dev@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		g.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// commit writes files (nil content deletes) and pushes one commit.
func (g *gitRemote) commit(msg string, files map[string][]byte) string {
	g.t.Helper()
	for name, content := range files {
		p := filepath.Join(g.work, name)
		if content == nil {
			os.Remove(p)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			g.t.Fatal(err)
		}
		if err := os.WriteFile(p, content, 0o644); err != nil {
			g.t.Fatal(err)
		}
	}
	g.git(g.work, "add", "-A")
	g.git(g.work, "commit", "-q", "-m", msg)
	g.git(g.work, "-c", "http.postBuffer=1073741824", "push", "-q", "origin", "HEAD:main")
	return strings.TrimSpace(g.git(g.work, "rev-parse", "HEAD"))
}

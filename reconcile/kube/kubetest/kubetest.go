// Package kubetest starts independent Kubernetes control planes for
// tests: each Cluster is its own etcd and kube-apiserver process, started
// by controller-runtime's envtest from KUBEBUILDER_ASSETS, with its own
// data and certificates, so that a test can drive a fleet of clusters and
// take one API server away while the others answer.
//
//	clusters, err := kubetest.Start(ctx, 3, kubetest.WithGatewayAPI())
//	defer kubetest.CloseAll(clusters)
//	clusters[1].Stop()    // its API is unreachable; etcd keeps the data
//	clusters[1].Restart() // the same URL, certificates and data again
//
// In a test, StartT does the same, skips under -short without the
// binaries, and closes the clusters when the test ends. CountRequests
// counts a client's API requests, for benchmarks of requests per cluster.
//
// Nothing here logs or prints a rest.Config or a kubeconfig's contents.
package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// ErrNoAssets: KUBEBUILDER_ASSETS does not name the etcd and
// kube-apiserver binaries.
var ErrNoAssets = errors.New("KUBEBUILDER_ASSETS is not set: the control planes need etcd and kube-apiserver; " +
	"run `export KUBEBUILDER_ASSETS=\"$(.ci/testbin.sh)\"` (builds them once, then takes seconds), or pass -short to skip")

// Cluster is one control plane. Its methods are safe for concurrent use.
type Cluster struct {
	// Name is "cluster-0", "cluster-1", ... in the order Start returns.
	Name string
	// Config reaches the API server as an admin (system:masters). Copy it
	// (rest.CopyConfig) before changing it.
	Config *rest.Config
	// Kubeconfig is a kubeconfig file for Config (mode 0600, its one
	// context current), for a cluster block's kubeconfig or --kubeconfig.
	Kubeconfig string
	// Dir holds the plane's files: certificates, etcd's data, the
	// kubeconfig and the API server's log (apiserver.log). Close removes it.
	Dir string

	env *envtest.Environment
	log *os.File

	mu     sync.Mutex
	down   bool // Stop ran, Restart did not
	closed bool
}

type options struct {
	crds     []string
	gateway  bool
	parallel int
	apiArgs  map[string]string
	etcdArgs map[string]string
	timeout  time.Duration
}

// Option changes what Start starts.
type Option func(*options)

// WithCRDs installs the CustomResourceDefinitions in these files or
// directories of YAML into every cluster.
func WithCRDs(paths ...string) Option {
	return func(o *options) { o.crds = append(o.crds, paths...) }
}

// WithGatewayAPI installs the Gateway API's HTTPRoute CRD (from the module
// cache, see GatewayAPICRD) into every cluster, for traffic = "gateway".
func WithGatewayAPI() Option { return func(o *options) { o.gateway = true } }

// WithParallel bounds how many control planes start at once. Default: the
// number of CPUs (a start is mostly CPU: the API server builds its
// OpenAPI and fills etcd).
func WithParallel(n int) Option { return func(o *options) { o.parallel = n } }

// WithAPIServerArg sets a kube-apiserver flag (name without "--") in
// every cluster, replacing the default's value.
func WithAPIServerArg(name, value string) Option {
	return func(o *options) { o.apiArgs[name] = value }
}

// WithEtcdArg sets an etcd flag (name without "--") in every cluster.
func WithEtcdArg(name, value string) Option {
	return func(o *options) { o.etcdArgs[name] = value }
}

// WithStartTimeout bounds each process's start. Default 90s: planes
// starting side by side on a small machine are slow.
func WithStartTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// The defaults keep a plane small and fit for fleet tests of thousands of
// objects.
var (
	defaultAPIArgs = map[string]string{
		// envtest's default Service range is a /24: too few cluster IPs
		// for hundreds of releases.
		"service-cluster-ip-range": "10.0.0.0/16",
		"profiling":                "false",
	}
	defaultEtcdArgs = map[string]string{
		"quota-backend-bytes": fmt.Sprint(512 << 20), // of etcd's default 2 GiB
		"snapshot-count":      "5000",                // raft entries kept in memory between snapshots
	}
)

var quietOnce sync.Once

// Start starts n control planes, at most WithParallel at once, and returns
// them once every one answers (with the CRDs asked for installed). On
// error the planes already started are closed. ctx cancels the starts not
// yet begun.
func Start(ctx context.Context, n int, opts ...Option) ([]*Cluster, error) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		return nil, ErrNoAssets
	}
	// envtest logs through controller-runtime's logger, which complains
	// with a stack trace when no one set it: it logs nothing here.
	quietOnce.Do(func() { ctrllog.SetLogger(ctrllog.Log.WithSink(nil)) })
	o := options{parallel: runtime.NumCPU(), timeout: 90 * time.Second, apiArgs: map[string]string{}, etcdArgs: map[string]string{}}
	for k, v := range defaultAPIArgs {
		o.apiArgs[k] = v
	}
	for k, v := range defaultEtcdArgs {
		o.etcdArgs[k] = v
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.gateway {
		crd, err := GatewayAPICRD()
		if err != nil {
			return nil, err
		}
		o.crds = append(o.crds, crd)
	}
	out := make([]*Cluster, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(o.parallel, 1))
	for i := range out {
		g.Go(func() error {
			if err := gctx.Err(); err != nil {
				return err
			}
			c, err := start(fmt.Sprintf("cluster-%d", i), &o)
			out[i] = c // also on error: CloseAll cleans up what it can
			return err
		})
	}
	if err := g.Wait(); err != nil {
		CloseAll(out)
		return nil, err
	}
	return out, nil
}

// StartT is Start for a test: without KUBEBUILDER_ASSETS it skips under
// -short and fails otherwise, and the clusters close when t ends.
func StartT(t testing.TB, n int, opts ...Option) []*Cluster {
	t.Helper()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" && testing.Short() {
		t.Skip(ErrNoAssets)
	}
	cs, err := Start(context.Background(), n, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { CloseAll(cs) })
	return cs
}

// start starts one control plane in a new directory.
func start(name string, o *options) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "gantry-kubetest-"+name+"-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Name: name, Dir: dir}
	// A fixed certificate directory lets the API server restart: envtest
	// would otherwise make a new CA and the clients' config no longer
	// verifies. A fixed data directory keeps etcd's data for it.
	certDir, dataDir := filepath.Join(dir, "certs"), filepath.Join(dir, "etcd")
	for _, d := range []string{certDir, dataDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if c.log, err = os.Create(filepath.Join(dir, "apiserver.log")); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	api := &envtest.APIServer{CertDir: certDir, Out: c.log, Err: c.log}
	for k, v := range o.apiArgs {
		api.Configure().Set(k, v)
	}
	etcd := &envtest.Etcd{DataDir: dataDir}
	for k, v := range o.etcdArgs {
		etcd.Configure().Set(k, v)
	}
	c.env = &envtest.Environment{
		ControlPlane:             envtest.ControlPlane{APIServer: api, Etcd: etcd},
		CRDDirectoryPaths:        o.crds,
		ErrorIfCRDPathMissing:    true,
		ControlPlaneStartTimeout: o.timeout,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	cfg, err := c.env.Start()
	if err != nil {
		err = fmt.Errorf("kubetest: start %s: %w%s", name, err, logTail(c.log.Name()))
		c.env.Stop() // what did start
		c.log.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	c.Config = cfg
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, c.env.KubeConfig, 0o600); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// logTail is the end of the API server's log, for a start that failed.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "\nkube-apiserver log (end):\n" + string(b)
}

// Clientset is a typed client for the cluster, as admin.
func (c *Cluster) Clientset() (kubernetes.Interface, error) {
	return kubernetes.NewForConfig(c.Config)
}

// Stop stops the cluster's kube-apiserver and leaves etcd running: the API
// refuses connections while the data stays. Stopping a stopped cluster
// does nothing.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("kubetest: %s is closed", c.Name)
	}
	if c.down {
		return nil
	}
	if err := c.env.ControlPlane.APIServer.Stop(); err != nil {
		return fmt.Errorf("kubetest: stop the API server of %s: %w", c.Name, err)
	}
	c.down = true
	return nil
}

// Restart starts the kube-apiserver Stop stopped, on the same URL with the
// same certificates and data, and returns once it answers; clients made
// before reconnect. Restarting a running cluster does nothing.
func (c *Cluster) Restart() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return fmt.Errorf("kubetest: %s is closed", c.Name)
	}
	if !c.down {
		return nil
	}
	if err := c.env.ControlPlane.APIServer.Start(); err != nil {
		return fmt.Errorf("kubetest: restart the API server of %s: %w%s", c.Name, err, logTail(c.log.Name()))
	}
	c.down = false
	return nil
}

// Down reports whether the API server is stopped.
func (c *Cluster) Down() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.down
}

// Close stops both processes and removes the cluster's files. It may be
// called more than once.
func (c *Cluster) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	err := c.env.Stop()
	c.log.Close()
	return errors.Join(err, os.RemoveAll(c.Dir))
}

// CloseAll closes every cluster (nil entries skipped) and returns what
// failed.
func CloseAll(cs []*Cluster) error {
	var errs []error
	for _, c := range cs {
		if c != nil {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

var gatewayCRD struct {
	once sync.Once
	path string
	err  error
}

// GatewayAPICRD is the file of the Gateway API's HTTPRoute CRD (standard
// channel) in the module cache, where sigs.k8s.io/gateway-api, a
// dependency of the project, is.
func GatewayAPICRD() (string, error) {
	gatewayCRD.once.Do(func() {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
		if err != nil {
			gatewayCRD.err = fmt.Errorf("kubetest: find the gateway-api module: %w", err)
			return
		}
		gatewayCRD.path = filepath.Join(strings.TrimSpace(string(out)), "config", "crd", "standard", "gateway.networking.k8s.io_httproutes.yaml")
		if _, err := os.Stat(gatewayCRD.path); err != nil {
			gatewayCRD.err = fmt.Errorf("kubetest: the HTTPRoute CRD: %w", err)
		}
	})
	return gatewayCRD.path, gatewayCRD.err
}

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile"
	"github.com/gantry-dev/gantry/reconcile/dirtarget"
	"github.com/gantry-dev/gantry/reconcile/gitsource"
	"github.com/gantry-dev/gantry/reconcile/monitor"
	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/reconcile/server"
	"github.com/gantry-dev/gantry/spec"
)

// engineFlags configure an engine: shared by run and apply.
type engineFlags struct {
	repo, ref, target, state string
	insecure                 bool
	jobs                     int
	vars                     []string
	kube                     kubeFlags
	gitTokenFile, gitUser    string
	gitSSHKey                string
	trustedKeys              string
	resolveImages            bool
	job                      jobFlags
	gcKeep                   int  // run --gc-keep (gc.go)
	metricsPerRelease        bool // run --metrics-per-release

	restConfig *rest.Config         // set by engine for a kube target
	gitAuth    transport.AuthMethod // set by engine: credentials for fetch and write-back
}

func (f *engineFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.repo, "repo", ".", "the specs: a directory or a Git URL")
	fl.StringVar(&f.ref, "ref", "", "branch, tag or commit to track (Git URLs only)")
	fl.StringVar(&f.target, "target", "", "where objects go: kube (the cluster of the kubeconfig or the pod) or dir:PATH (default: the gantry block's target, else dir:<state-dir>/objects)")
	fl.StringVar(&f.gitTokenFile, "git-token-file", "", "file holding an https token for the repository (or set GANTRY_GIT_TOKEN)")
	fl.StringVar(&f.gitUser, "git-username", "gantry", "user name sent with the token (GitHub and GitLab accept any)")
	fl.StringVar(&f.gitSSHKey, "git-ssh-key-file", "", "private key for ssh:// and git@host: repositories (known hosts from SSH_KNOWN_HOSTS or ~/.ssh/known_hosts)")
	fl.StringVar(&f.trustedKeys, "trusted-keys", "", "armored OpenPGP public keys: apply only revisions whose commit is signed by one of them (Git URLs)")
	fl.BoolVar(&f.resolveImages, "resolve-images", true, "kube target: reference runtime images by the digest their tag has at apply time")
	f.job.register(fl)
	fl.StringVar(&f.kube.kubeconfig, "kubeconfig", "", "kubeconfig file (default: KUBECONFIG, ~/.kube/config, or the pod's service account)")
	fl.StringVar(&f.kube.context, "context", "", "kubeconfig context")
	fl.BoolVar(&f.kube.forceConflicts, "force-conflicts", false, "kube: take fields over from other server-side appliers instead of failing")
	fl.StringVar(&f.state, "state-dir", ".gantry", "Gantry's own files: the OCI layout (oci/), builds and sources (work/), Git cache (git/)")
	fl.BoolVar(&f.insecure, "registry-insecure", false, "allow plain HTTP to registries other than localhost")
	fl.IntVar(&f.jobs, "jobs", 2, "releases reconciled at once")
	fl.StringArrayVar(&f.vars, "var", nil, "set a variable, NAME=VALUE (repeatable)")
}

// engine builds the engine the flags describe. The registry and the
// target are chosen from the specs as they are at start-up.
func (a *app) engine(ctx context.Context, f *engineFlags) (*reconcile.Engine, *gitsource.Repo, error) {
	vars := map[string]string{}
	for _, kv := range f.vars {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, nil, fmt.Errorf("-var %q: want NAME=VALUE", kv)
		}
		vars[k] = v
	}
	e := &reconcile.Engine{Jobs: f.jobs, Vars: vars, WorkDir: filepath.Join(f.state, "work"), Log: slog.Default()}
	auth, err := gitsource.AuthFrom(f.gitUser, f.gitTokenFile, os.Getenv("GANTRY_GIT_TOKEN"), f.gitSSHKey)
	if err != nil {
		return nil, nil, err
	}
	f.gitAuth = auth
	var repo *gitsource.Repo
	if isGitURL(f.repo) {
		repo = &gitsource.Repo{URL: f.repo, Ref: f.ref}
		// Named without the credentials: a new token is the same clone.
		sum := sha256.Sum256([]byte(repo.RemoteURL() + "\x00" + f.ref))
		repo.Dir = filepath.Join(f.state, "git", hex.EncodeToString(sum[:8]))
		repo.Auth = f.gitAuth
		if f.trustedKeys != "" {
			keys, err := os.ReadFile(f.trustedKeys)
			if err != nil {
				return nil, nil, fmt.Errorf("--trusted-keys: %w", err)
			}
			repo.TrustedKeys = string(keys)
		}
		e.Source = reconcile.GitSource{Repo: repo}
	} else {
		if f.ref != "" {
			return nil, nil, fmt.Errorf("--ref applies only to a Git URL; %s is a directory", f.repo)
		}
		if f.trustedKeys != "" {
			return nil, nil, fmt.Errorf("--trusted-keys applies only to a Git URL; %s is a directory", f.repo)
		}
		e.Source = reconcile.DirSource{Dir: f.repo}
	}
	// Read the settings once to pick the drivers.
	snap, err := e.Source.Fetch(ctx)
	if err != nil {
		return nil, nil, err
	}
	cfg, diags := spec.Load(ctx, snap.Dir, spec.LoadOptions{Vars: vars})
	a.printDiags(cfg.Files, diags)
	if diags.HasErrors() {
		return nil, nil, exitError{1}
	}
	target := defaultTarget(f.target, cfg, f.state)
	if cfg.Fleet() {
		// A fleet: a Target per cluster block, made as the engine needs
		// it; the Lease lives in lease_cluster or the daemon's cluster.
		mk, err := fleetTargets(target, f.state, f.kube.forceConflicts)
		if err != nil {
			return nil, nil, err
		}
		e.ClusterTarget, e.MirrorFor = mk, mirrorStores(target, f.state, f.insecure)
		if target == "kube" {
			if f.restConfig, err = leaseConfig(cfg, &f.kube); err != nil {
				return nil, nil, err
			}
			if f.resolveImages {
				e.Resolver = reconcile.NewResolver(f.insecure)
			}
			if rc, why := fleetJobsConfig(cfg, &f.kube); rc != nil {
				if e.BuildJobs, err = f.job.runner(rc, f.insecure); err != nil {
					return nil, nil, err
				}
				if err := wireEvalJobs(e, rc, &f.job); err != nil {
					return nil, nil, err
				}
			} else {
				e.BuildJobs = noJobs{why}
			}
			if repo != nil {
				e.RepoURL = repo.RemoteURL()
			}
		}
	} else if target == "kube" {
		c, rc, err := f.kube.client()
		if err != nil {
			return nil, nil, err
		}
		f.restConfig = rc
		e.Target = &reconcile.KubeTarget{Client: c, Force: f.kube.forceConflicts}
		jobs, err := f.job.runner(rc, f.insecure)
		if err != nil {
			return nil, nil, err
		}
		e.BuildJobs = jobs
		if err := wireEvalJobs(e, rc, &f.job); err != nil {
			return nil, nil, err
		}
		if f.resolveImages {
			e.Resolver = reconcile.NewResolver(f.insecure)
		}
		if repo != nil {
			e.RepoURL = repo.RemoteURL()
		}
	} else {
		dir, ok := strings.CutPrefix(target, "dir:")
		if !ok || dir == "" {
			return nil, nil, fmt.Errorf("--target %q: want kube or dir:PATH", target)
		}
		e.Target = reconcile.DirTarget{Target: dirtarget.Target{Dir: dir, CacheDir: filepath.Join(f.state, "work")}}
	}
	st := stores{state: f.state, insecure: f.insecure}
	e.StoreFor = st.store // per reconcile: a registry change in Git needs no restart
	// oci:// model sources and modelcar bases live in registries, even
	// when the images Gantry builds go to the local layout.
	e.Images = registry.NewRemote(registry.Options{Insecure: f.insecure})
	e.Prime(snap, cfg, diags) // the first reconcile loads nothing again
	return e, repo, nil
}

func (a *app) runCmd() *cobra.Command {
	var (
		f          engineFlags
		once       bool
		interval   time.Duration
		listen     string
		secretFile string
		af         adjustFlags
		connQuery  string
		shardFlag  string
	)
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Keep the target equal to the specs (the reconcile daemon)",
		Long: `Run reconciles the target with the specs: for each release it quantizes the
model, gates it, pushes the image and applies the objects, then prunes what the
specs no longer want. With --once it does one pass, prints the result and exits
(non-zero if any release failed). Otherwise it keeps going: on every --interval
(with jitter), when a directory of specs changes on disk, and on a webhook.

On embedded defaults (no registry in the specs, no --target) images go to the
OCI layout <state-dir>/oci and objects to <state-dir>/objects as YAML.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			shard, err := parseShard(shardFlag, os.Getenv, os.Hostname)
			if err != nil {
				return err
			}
			e, repo, err := a.engine(ctx, &f)
			if err != nil {
				return err
			}
			e.Shard = shard
			f.kube.leaseName = shardLease(f.kube.leaseName, shard)
			if once {
				err := a.reconcileOnce(ctx, e)
				if err == nil {
					gcAfterReconcile(ctx, e, &f)
				}
				return err
			}
			secret, err := webhookSecret(secretFile)
			if err != nil {
				return err
			}
			if af.prometheus != "" && connQuery != "" {
				prom, err := monitor.NewProm(af.prometheus)
				if err != nil {
					return err
				}
				e.Connections = func(ctx context.Context) (map[string]float64, error) { return prom.Connections(ctx, connQuery) }
			}
			if kt, ok := e.Target.(*reconcile.KubeTarget); ok {
				// The daemon reads the cluster from informers once they
				// sync; until then, or if they never do, it lists.
				go func() {
					if err := kt.StartCache(ctx); err != nil {
						slog.Warn("kube: every reconcile lists", "err", err)
					}
				}()
			}
			if e.ClusterTarget != nil {
				e.ClusterTarget = clusterCaches(ctx, e.ClusterTarget) // a fleet's clusters likewise
			}
			return a.loop(ctx, e, repo, &f, &af, interval, listen, secret)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&once, "once", false, "reconcile once and exit")
	cmd.Flags().DurationVar(&interval, "interval", time.Minute, "time between reconciles (a resync even when nothing changed)")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "address of the status page, /metrics, /healthz, /readyz and /hooks/git")
	cmd.Flags().BoolVar(&f.kube.leaderElect, "leader-elect", true, "kube target: reconcile only while holding a Lease, so that replicas never act at once")
	cmd.Flags().StringVar(&f.kube.leaseNamespace, "leader-election-namespace", "", "namespace of the Lease (default: the pod's, else gantry-system)")
	cmd.Flags().StringVar(&f.kube.leaseName, "leader-election-id", "gantry", "name of the Lease (with --shard, the Lease is this id plus -INDEX)")
	cmd.Flags().StringVar(&shardFlag, "shard", "", "INDEX/COUNT: reconcile only the releases whose name hashes to shard INDEX of COUNT (auto/COUNT: INDEX is the ordinal ending POD_NAME or the hostname, as in a StatefulSet)")
	af.register(cmd)
	registerGCKeep(cmd.Flags(), &f.gcKeep)
	cmd.Flags().BoolVar(&f.metricsPerRelease, "metrics-per-release", false, "also export gantry_release_state{release,state} and a release label on the byte counters (9 series per release; default: counts by state only)")
	cmd.Flags().StringVar(&connQuery, "connections-query", "", "PromQL returning active connections by node label, the live load placement weighs (needs --prometheus)")
	cmd.Flags().StringVar(&secretFile, "webhook-secret-file", "", "file holding the webhook secret (or set GANTRY_WEBHOOK_SECRET); without one /hooks/git refuses every request")
	return cmd
}

// webhookSecret reads the secret from a file (trailing newline dropped)
// or GANTRY_WEBHOOK_SECRET. A file that is given but empty (or only white
// space) is an error, not a daemon whose webhook silently refuses every
// delivery; with no secret at all, the start says so once.
func webhookSecret(file string) ([]byte, error) {
	if file == "" {
		s := []byte(os.Getenv("GANTRY_WEBHOOK_SECRET"))
		if len(s) == 0 {
			slog.Warn("no webhook secret (--webhook-secret-file or GANTRY_WEBHOOK_SECRET): /hooks/git refuses every request; the interval still polls")
		}
		return s, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--webhook-secret-file: %w", err)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fmt.Errorf("--webhook-secret-file %s is empty: put the secret your Git host signs webhooks with in it, or leave the flag out", file)
	}
	return b, nil
}

// loop serves the status endpoints and reconciles until ctx ends: on a
// jittered interval, when the watched directory changes and on webhooks.
func (a *app) loop(ctx context.Context, e *reconcile.Engine, repo *gitsource.Repo, f *engineFlags, af *adjustFlags, interval time.Duration, listen string, secret []byte) error {
	trigger := make(chan struct{}, 1)
	poke := func() {
		select {
		case trigger <- struct{}{}:
		default:
		}
	}
	metrics := server.NewMetrics()
	metrics.PerRelease = f.metricsPerRelease
	registerShardMetric(metrics.Registry, e)
	e.Observer = metrics
	if repo != nil {
		repo.OnError = metrics.FetchError
	}
	srv := &server.Server{Status: e, Metrics: metrics, WebhookSecret: secret, Trigger: poke}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	httpSrv := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("status server stopped", "err", err)
		}
	}()
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = httpSrv.Shutdown(sctx)
	}()
	if !isGitURL(f.repo) {
		go func() {
			if err := watchSpecs(ctx, f.repo, f.state, e.ModelPaths, poke); err != nil {
				slog.Error("file watcher stopped; falling back to the interval", "err", err)
			}
		}()
	}
	slog.Info("gantry running", "repo", gitsource.Redact(f.repo), "interval", interval, "listen", ln.Addr().String())
	reconcileLoop := func(ctx context.Context) {
		for {
			res, err := e.Reconcile(ctx)
			if ctx.Err() != nil {
				return
			}
			metrics.Releases(res.Releases)
			srv.SetReady(true)
			if err != nil {
				slog.Error("reconcile failed", "revision", res.Revision, "err", err)
			} else {
				slog.Info("reconciled", "revision", res.Revision, "executed", res.Executed)
				gcAfterReconcile(ctx, e, f)
			}
			// Sharded, shard 0 autoscales and rolls back every release (one
			// writer is enough; the others fetch its commits), and each shard
			// decides the rollouts of its own releases, which only it observes.
			if af.prometheus != "" && repo != nil && err == nil {
				a.monitorRound(ctx, e, f, af, poke)
			}
			// ±10% jitter keeps a fleet of daemons from polling in lockstep.
			wait := interval + time.Duration(rand.Int64N(int64(interval)/5+1)) - interval/10
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			case <-trigger:
			}
		}
	}
	if f.restConfig != nil && f.kube.leaderElect {
		// A standby replica is ready: it serves and waits for the lease.
		srv.SetReady(true)
		err := leaderLoop(ctx, f.restConfig, &f.kube, func(bool) {}, reconcileLoop)
		slog.Info("shutting down")
		return err
	}
	reconcileLoop(ctx)
	slog.Info("shutting down")
	return nil
}

// monitorRound decides adjustments from Prometheus and commits them; the
// next fetch applies them like any commit, so a commit pokes the loop.
// Failures are logged and shown in the status, never fatal.
func (a *app) monitorRound(ctx context.Context, e *reconcile.Engine, f *engineFlags, af *adjustFlags, poke func()) {
	w := writeBack(f.repo, f.ref, f.state)
	w.Auth = f.gitAuth // the same credentials the source fetches with
	obs := observedBy(e)
	if obs.rolloutsOnly && len(obs.rollouts) == 0 {
		return // a shard other than 0 with no rollout to decide
	}
	out, rep, err := a.adjust(ctx, w, af, e.Vars, obs, false)
	if rep.Revision != "" {
		recordAnalyses(e, obs.rollouts, rep)
	}
	st := struct {
		monitor.Report
		Error   string             `json:"error,omitempty"`
		Commits []gitsource.Pushed `json:"commits,omitempty"`
	}{Report: rep, Commits: out.Commits}
	if err != nil {
		st.Error = err.Error()
		slog.Error("monitor: write-back failed", "err", err)
	}
	if rep.Unavailable != "" {
		slog.Warn("monitor: Prometheus is unavailable; nothing adjusted", "err", rep.Unavailable)
	}
	e.SetMonitor(st)
	for _, c := range out.Commits {
		slog.Info("monitor: committed an adjustment", "release", c.Release, "kind", c.Kind, "commit", c.Commit, "branch", c.Branch, "compare", c.CompareURL)
	}
	if len(out.Commits) > 0 {
		poke()
	}
}

// reconcileOnce runs one reconcile, prints it, and turns its outcome into
// the exit code: 1 when the specs are invalid, the plan is stale, or a
// release failed, was blocked, or is short of replicas (unplaceable,
// pending).
func (a *app) reconcileOnce(ctx context.Context, e *reconcile.Engine) error {
	res, err := e.Reconcile(ctx)
	if errors.Is(err, reconcile.ErrStalePlan) {
		return err
	}
	a.printResult(res)
	if err != nil {
		if errors.Is(err, reconcile.ErrInvalidSpecs) {
			fmt.Fprint(a.stderr, e.Status().Diagnostics)
		}
		return err
	}
	for _, r := range res.Releases {
		if !reconcile.Converged(r.State) {
			return exitError{1}
		}
	}
	return nil
}

func (a *app) printResult(res reconcile.Result) {
	if res.Plan != nil {
		_ = planner.WriteText(a.stdout, res.Plan, planner.TextOptions{Color: a.color})
	}
	if len(res.Releases) == 0 {
		return
	}
	rev := orNone(res.Revision)
	if res.Plan != nil && res.Plan.Uncommitted {
		rev += " + uncommitted changes"
	}
	fmt.Fprintf(a.stdout, "\nReconciled revision %s: %d actions executed.\n\n", rev, res.Executed)
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RELEASE\tSTATE\tIMAGE\tREASON")
	for _, r := range res.Releases {
		img := r.Image
		if r.Digest != "" {
			img = strings.SplitN(r.Image, ":", 2)[0] + "@" + shortDigest(r.Digest)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.State, img, r.Reason)
	}
	tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "(not a Git working copy)"
	}
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile"
	"github.com/gantry-dev/gantry/reconcile/dirtarget"
	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/spec"
)

func (a *app) planCmd() *cobra.Command {
	var (
		src          sourceFlags
		target       string
		state        string
		insecure     bool
		kf           kubeFlags
		format       string
		detailedExit bool
		out          string
	)
	cmd := &cobra.Command{
		Use:   "plan [PATH|GIT-URL]",
		Short: "Show what Gantry would change",
		Long: `Plan loads the specs, observes the target and prints the plan: what to build
(quantize, gate, push) and which Kubernetes objects to create, update or delete.
It changes nothing.

The target is where objects live, chosen as gantry run chooses it: --target,
else the gantry block's target, else dir:<state-dir>/objects, the YAML files
gantry run writes on embedded defaults. So gantry plan right after gantry run
shows "No changes." --target none plans against an empty live state (CI with
no cluster): the plan shows everything the specs want.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "."
			if len(args) == 1 {
				path = args[0]
			}
			switch format {
			case "text", "json", "markdown":
			default:
				return fmt.Errorf("--format %q: want text, json or markdown", format)
			}
			plan, err := a.plan(cmd.Context(), path, src, target, stores{state: state, insecure: insecure, kube: &kf})
			if err != nil {
				return err
			}
			if out != "" {
				var buf bytes.Buffer
				if err := planner.WriteJSON(&buf, plan); err != nil {
					return err
				}
				if err := spec.WriteFileAtomic(out, buf.Bytes()); err != nil {
					return fmt.Errorf("save plan: %w", err)
				}
			}
			switch format {
			case "json":
				err = planner.WriteJSON(a.stdout, plan)
			case "markdown":
				err = planner.WriteMarkdown(a.stdout, plan, 0)
			default:
				err = planner.WriteText(a.stdout, plan, planner.TextOptions{Color: a.color})
				if err == nil && out != "" {
					fmt.Fprintf(a.stdout, "\nSaved the plan to %s.\n", out)
				}
			}
			if err != nil {
				return err
			}
			if detailedExit && !plan.Empty() {
				return exitError{2}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&src.ref, "ref", "", "branch, tag or commit to check out (Git URLs only)")
	cmd.Flags().StringArrayVar(&src.vars, "var", nil, "set a variable, NAME=VALUE (repeatable)")
	cmd.Flags().StringVar(&target, "target", "", "where objects live: kube, dir:PATH or none (default: the gantry block's target, else dir:<state-dir>/objects, as gantry run)")
	cmd.Flags().StringVar(&kf.kubeconfig, "kubeconfig", "", "kubeconfig file (default: KUBECONFIG, ~/.kube/config, or the pod's service account)")
	cmd.Flags().StringVar(&kf.context, "context", "", "kubeconfig context")
	cmd.Flags().BoolVar(&kf.resolveImages, "resolve-images", true, "kube target: reference runtime images by the digest their tag has now")
	cmd.Flags().StringVar(&state, "state-dir", ".gantry", "where gantry run keeps the OCI layout (oci/) that a dir target's images live in")
	cmd.Flags().BoolVar(&insecure, "registry-insecure", false, "allow plain HTTP to registries other than localhost")
	cmd.Flags().StringVar(&format, "format", "text", "output format: text, json or markdown")
	cmd.Flags().BoolVar(&detailedExit, "detailed-exitcode", false, "exit 0 when there are no changes, 1 on error, 2 when there are changes")
	cmd.Flags().StringVarP(&out, "out", "o", "", "save the plan as JSON to FILE")
	return cmd
}

// stores says where model images are looked up.
type stores struct {
	state    string
	insecure bool
	kube     *kubeFlags
}

// store is the registry of the specs, or the local OCI layout.
func (s stores) store(cfg *spec.Config) registry.Store {
	if cfg.Settings.Registry != "" {
		return registry.NewRemote(registry.Options{Insecure: s.insecure})
	}
	return registry.NewLayout(filepath.Join(s.state, "oci"))
}

// plan loads, observes and builds.
func (a *app) plan(ctx context.Context, path string, src sourceFlags, target string, st stores) (*planner.Plan, error) {
	cfg, cleanup, err := a.load(ctx, path, src)
	defer cleanup()
	if err != nil {
		return nil, err
	}
	observed, err := observe(ctx, cfg, target, st)
	if err != nil {
		return nil, err
	}
	plan, err := planner.Build(*cfg, observed)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	return &plan, nil
}

// defaultTarget is the one rule for where objects live, for run, apply
// and plan alike: the flag, else the specs' gantry { target }, else the
// embedded default dir:<state>/objects.
func defaultTarget(flag string, cfg *spec.Config, state string) string {
	if flag != "" {
		return flag
	}
	if cfg.Settings.Target != "" {
		return cfg.Settings.Target
	}
	return "dir:" + filepath.Join(state, "objects")
}

// observe fills the observed state from the target and, with a target,
// the image store, exactly as gantry run and apply do, so that a saved
// plan can be checked against them. GPU nodes come from the static
// inventory in the specs.
func observe(ctx context.Context, cfg *spec.Config, target string, st stores) (planner.Observed, error) {
	obs, err := observeWorld(ctx, cfg, target, st)
	// The eval results the daemon's work directory holds: the plan
	// shows a cached candidate's values against its bounds.
	obs.Evals = reconcile.CachedEvals(filepath.Join(st.state, "work"), cfg, obs.Artifacts)
	return obs, err
}

func observeWorld(ctx context.Context, cfg *spec.Config, target string, st stores) (planner.Observed, error) {
	target = defaultTarget(target, cfg, st.state)
	obs := planner.Observed{Nodes: planner.StaticNodes(cfg)}
	if cfg.Fleet() && target != "none" {
		mk, err := fleetTargets(target, st.state, false)
		if err != nil {
			return obs, err
		}
		arts, err := reconcile.ObserveArtifacts(ctx, cfg, st.store(cfg))
		if err != nil {
			return obs, err
		}
		obs, err = reconcile.ObserveFleet(ctx, cfg, mk, mirrorStores(target, st.state, st.insecure), arts)
		if err != nil {
			return obs, err
		}
		if target == "kube" && st.kube.resolveImages {
			obs.Images = reconcile.ResolveImages(ctx, cfg, reconcile.NewResolver(st.insecure), slog.Default())
		}
		return obs, nil
	}
	switch {
	case target == "none":
	case strings.HasPrefix(target, "dir:"):
		dir := strings.TrimPrefix(target, "dir:")
		if dir == "" {
			return obs, fmt.Errorf("--target dir: needs a path, as in dir:./out")
		}
		objs, err := dirtarget.Target{Dir: dir, CacheDir: filepath.Join(st.state, "work")}.Observe(ctx) // reads run's cache, saves none
		if err != nil {
			return obs, err
		}
		obs.Objects = objs
		arts, err := reconcile.ObserveArtifacts(ctx, cfg, st.store(cfg))
		if err != nil {
			return obs, err
		}
		obs.Artifacts = arts
	case target == "kube":
		c, _, err := st.kube.client()
		if err != nil {
			return obs, err
		}
		o, err := c.Observe(ctx, cfg.Settings.Namespace, cfg.Pools)
		if err != nil {
			return obs, err
		}
		obs.Objects, obs.Nodes = o.Objects, o.Nodes
		arts, err := reconcile.ObserveArtifacts(ctx, cfg, st.store(cfg))
		if err != nil {
			return obs, err
		}
		obs.Artifacts = arts
		if st.kube.resolveImages {
			obs.Images = reconcile.ResolveImages(ctx, cfg, reconcile.NewResolver(st.insecure), slog.Default())
		}
	default:
		return obs, fmt.Errorf("--target %q: want kube, dir:PATH or none", target)
	}
	return obs, nil
}

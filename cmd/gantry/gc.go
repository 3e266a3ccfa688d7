package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile"
	"github.com/gantry-dev/gantry/reconcile/dirtarget"
	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/spec"
)

// defaultGCKeep is gantry gc's --keep and gantry run's --gc-keep: three
// images per release besides those in use, enough to roll back twice
// without a rebuild. Images are reproducible (same inputs, same digest),
// so what GC drops costs at most a rebuild, never a lost model, while a
// layout that never shrinks fills the disk (about 25 MB per build of the
// quickstart model alone).
const defaultGCKeep = 3

func (a *app) gcCmd() *cobra.Command {
	var (
		repo, state, target string
		vars                []string
		keep                int
		dryRun              bool
		kf                  kubeFlags
	)
	cmd := &cobra.Command{
		Use:   "gc",
		Short: "Remove model images of the local OCI layout that nothing uses",
		Long: `Gc shrinks the local OCI layout (<state-dir>/oci), where images go when the
specs configure no registry. It keeps every image the target's objects
reference (by their gantry.dev/model-digest annotation and any image@digest)
and the --keep newest images of each release, drops the other index entries
and removes the blobs no kept image uses, and temp files of pushes that died.

It is safe while gantry run, build or another gc use the same state dir: it
waits for pushes in flight and pushes wait for it, and an image being pushed
is never half removed. With --keep 0, though, an image pushed but not yet
applied is not referenced yet and goes (the next reconcile builds it again);
--keep 1 or more always keeps the newest of each release. With --dry-run it prints
what would go and removes nothing. A registry is not the local layout: clean
it with the registry's own garbage collector.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if keep < 0 {
				return fmt.Errorf("--keep %d: want 0 or more", keep)
			}
			cfg, cleanup, err := a.load(ctx, repo, sourceFlags{vars: vars})
			defer cleanup()
			if err != nil {
				return err
			}
			if cfg.Settings.Registry != "" {
				return fmt.Errorf("gc: the specs push images to the registry %s, not to the local layout %s; gc only collects the local layout (clean a registry with its own garbage collector)",
					cfg.Settings.Registry, filepath.Join(state, "oci"))
			}
			target = defaultTarget(target, cfg, state)
			objs, err := observeObjects(ctx, cfg, target, &kf)
			if err != nil {
				return fmt.Errorf("gc: %w", err)
			}
			lay := registry.NewLayout(filepath.Join(state, "oci"))
			res, err := lay.GC(ctx, registry.GCOptions{Referenced: referencedDigests(objs), Keep: keep, DryRun: dryRun})
			if err != nil {
				return err
			}
			a.printGC(lay.Dir, res)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&repo, "repo", ".", "the specs: a directory or a Git URL")
	fl.StringArrayVar(&vars, "var", nil, "set a variable, NAME=VALUE (repeatable)")
	fl.StringVar(&state, "state-dir", ".gantry", "Gantry's own files; the layout is <state-dir>/oci")
	fl.StringVar(&target, "target", "", "where the objects that reference images live: kube or dir:PATH (default: the gantry block's target, else dir:<state-dir>/objects)")
	fl.IntVar(&keep, "keep", defaultGCKeep, "newest images kept per release besides those objects reference (0: only those)")
	fl.BoolVar(&dryRun, "dry-run", false, "print what would be removed and remove nothing")
	fl.StringVar(&kf.kubeconfig, "kubeconfig", "", "kubeconfig file (default: KUBECONFIG, ~/.kube/config, or the pod's service account)")
	fl.StringVar(&kf.context, "context", "", "kubeconfig context")
	return cmd
}

// observeObjects reads the objects of the target: a directory of YAML or
// the cluster's managed objects. A target that cannot be read is an
// error: what it references is unknown, so nothing may be collected.
func observeObjects(ctx context.Context, cfg *spec.Config, target string, kf *kubeFlags) ([]planner.Object, error) {
	switch {
	case target == "kube":
		c, _, err := kf.client()
		if err != nil {
			return nil, err
		}
		o, err := c.Observe(ctx, cfg.Settings.Namespace, cfg.Pools)
		if err != nil {
			return nil, err
		}
		return o.Objects, nil
	case strings.HasPrefix(target, "dir:") && target != "dir:":
		return dirtarget.Target{Dir: strings.TrimPrefix(target, "dir:")}.Observe(ctx)
	default:
		return nil, fmt.Errorf("--target %q: want kube or dir:PATH", target)
	}
}

var digestRef = regexp.MustCompile(`@(sha256:[0-9a-f]{64})\b`)

// referencedDigests returns the image digests objs use, sorted: each
// object's gantry.dev/model-digest annotation and every "image@digest"
// string anywhere in its manifest (modelcar containers, image volumes).
func referencedDigests(objs []planner.Object) []string {
	seen := map[string]bool{}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, x := range v {
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		case string:
			for _, m := range digestRef.FindAllStringSubmatch(v, -1) {
				seen[m[1]] = true
			}
		}
	}
	for _, o := range objs {
		if d := o.Annotation(planner.AnnotationModelDigest); strings.HasPrefix(d, "sha256:") {
			seen[d] = true
		}
		walk(o.Manifest)
	}
	out := make([]string, 0, len(seen))
	for d := range seen {
		out = append(out, d)
	}
	slices.Sort(out)
	return out
}

func (a *app) printGC(dir string, res registry.GCResult) {
	verb := "Removed"
	if res.DryRun {
		verb = "Would remove"
	}
	for _, r := range res.Removed {
		fmt.Fprintf(a.stdout, "- %s\n", r)
	}
	images, attached := 0, 0
	for _, k := range res.Kept {
		// Signatures and attestations are tagged sha256-<digest>.sig
		// and .att, and stay with their image.
		if strings.Contains(k, ":sha256-") {
			attached++
		} else {
			images++
		}
	}
	kept := fmt.Sprintf("kept %d images", images)
	if attached > 0 {
		kept += fmt.Sprintf(" and %d signatures and attestations", attached)
	}
	fmt.Fprintf(a.stdout, "%s %d images, %d blobs and %d temp files from %s: %s freed; %s.\n",
		verb, len(res.Removed), res.Blobs, res.Temps, dir, humanBytes(res.Bytes), kept)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// registerGCKeep adds gantry run's --gc-keep.
func registerGCKeep(fl *pflag.FlagSet, keep *int) {
	fl.IntVar(keep, "gc-keep", defaultGCKeep, "after each successful reconcile on a dir target with the local OCI layout, remove images that no object uses, keeping this many newest per release (0: never; see gantry gc)")
}

// gcTimeout bounds the daemon's GC, most of it waiting for the layout's
// lock while another process (gantry build) pushes: the next reconcile
// tries again, so waiting longer gains nothing.
const gcTimeout = time.Minute

// gcAfterReconcile is gantry run's --gc-keep: after a successful
// reconcile on a dir target, collect the local layout, keeping what the
// objects reference. It does nothing for a kube target or when the images
// go to a registry (the releases' images are not under the local
// repository). Failures are logged: the reconcile itself succeeded.
func gcAfterReconcile(ctx context.Context, e *reconcile.Engine, f *engineFlags) {
	if f.gcKeep <= 0 {
		return
	}
	dt, ok := e.Target.(reconcile.DirTarget)
	if !ok {
		return
	}
	local := planner.ImageRepository(&spec.Config{}, "")
	for _, r := range e.Status().Releases {
		if r.Image != "" && !strings.HasPrefix(r.Image, local) {
			return // a registry: gc is for the local layout only
		}
	}
	ctx, cancel := context.WithTimeout(ctx, gcTimeout)
	defer cancel()
	objs, err := dt.Target.Observe(ctx)
	if err != nil {
		slog.Warn("gc: skipped: cannot read the objects", "err", err)
		return
	}
	lay := registry.NewLayout(filepath.Join(f.state, "oci"))
	res, err := lay.GC(ctx, registry.GCOptions{Referenced: referencedDigests(objs), Keep: f.gcKeep})
	if err != nil {
		slog.Warn("gc failed", "err", err)
		return
	}
	if len(res.Removed) > 0 || res.Blobs > 0 || res.Temps > 0 {
		slog.Info("gc: removed unused images", "dir", lay.Dir, "images", len(res.Removed), "blobs", res.Blobs, "temp_files", res.Temps, "bytes", res.Bytes)
	}
}

package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile"
	"github.com/gantry-dev/gantry/reconcile/gitsource"
	"github.com/gantry-dev/gantry/reconcile/monitor"
	"github.com/gantry-dev/gantry/spec"
)

// adjustFlags configure the monitor and write-back: shared by adjust and
// run.
type adjustFlags struct {
	prometheus string
	step       time.Duration
}

func (a *app) adjustCmd() *cobra.Command {
	var (
		repo, ref, state string
		tokenFile, user  string
		sshKey           string
		vars             []string
		af               adjustFlags
		dryRun           bool
	)
	cmd := &cobra.Command{
		Use:   "adjust",
		Short: "Decide autoscaling and rollbacks from Prometheus and commit them to Git",
		Long: `Adjust runs one round of what gantry run does after every reconcile: for each
release with an autoscale or rollback block it queries Prometheus, decides, edits
the release's HCL (only the attribute or blocks that change) and commits the
edit to the repository with a message that says why, then pushes it (write_back
mode "push") or pushes a gantry/adjust-<release> branch (mode "branch").

Rollouts (promote, abort) are decided by gantry run only: their analysis needs
the shards of each version and whether the step is in place, which only the
daemon observes. Adjust lists such releases and leaves them alone.

With --dry-run it prints the decisions and the diff it would commit, and
commits nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if af.prometheus == "" {
				return fmt.Errorf("--prometheus URL is required")
			}
			v, err := parseVars(vars)
			if err != nil {
				return err
			}
			w := writeBack(repo, ref, state)
			if w.Auth, err = gitsource.AuthFrom(user, tokenFile, os.Getenv("GANTRY_GIT_TOKEN"), sshKey); err != nil {
				return err
			}
			out, rep, err := a.adjust(cmd.Context(), w, &af, v, nil, dryRun)
			a.printAdjust(a.stdout, rep, out, dryRun)
			return err
		},
	}
	cmd.Flags().StringVar(&repo, "repo", "", "the specs' Git repository: a URL or the path of a repository Gantry may push to")
	cmd.Flags().StringVar(&ref, "ref", "", "branch to adjust (default: the remote's default branch)")
	cmd.Flags().StringVar(&state, "state-dir", ".gantry", "Gantry's own files; the write-back clone is kept under git/")
	cmd.Flags().StringArrayVar(&vars, "var", nil, "set a variable, NAME=VALUE (repeatable)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "print the decisions and the diff, commit nothing")
	cmd.Flags().StringVar(&tokenFile, "git-token-file", "", "file holding an https token for the repository (or set GANTRY_GIT_TOKEN)")
	cmd.Flags().StringVar(&user, "git-username", "gantry", "user name sent with the token")
	cmd.Flags().StringVar(&sshKey, "git-ssh-key-file", "", "private key for ssh repositories")
	af.register(cmd)
	_ = cmd.MarkFlagRequired("repo")
	return cmd
}

func (f *adjustFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.prometheus, "prometheus", "", "Prometheus base URL (http://host:9090) for autoscale and rollback queries")
	cmd.Flags().DurationVar(&f.step, "query-step", 15*time.Second, "resolution of the range queries over stabilization windows")
}

func parseVars(list []string) (map[string]string, error) {
	vars := map[string]string{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("-var %q: want NAME=VALUE", kv)
		}
		vars[k] = v
	}
	return vars, nil
}

// writeBack is the write-back for a repository, with its own clone under
// the state directory. The clone is named by the repository without
// credentials (a new token keeps the clone, and no name under the state
// directory is derived from a secret); the write-back itself keeps them
// out of the clone (gitsource.NewRemote).
func writeBack(repo, ref, state string) *gitsource.WriteBack {
	key := gitsource.Redact(repo)
	if rem, err := gitsource.NewRemote(repo, nil); err == nil {
		key = rem.URL
	}
	sum := sha256.Sum256([]byte(key + "\x00" + ref + "\x00writeback"))
	return &gitsource.WriteBack{URL: repo, Branch: ref, Dir: filepath.Join(state, "git", hex.EncodeToString(sum[:8])+"-writeback"), Log: slog.Default()}
}

// adjust runs one round: the write-back fetches, the monitor decides on
// what it fetched, and the write-back commits. After a lost push race the
// monitor decides again on the new head. The write_back settings come
// from the same revision the decision is made on.
//
// obs is what gantry run observed; nil for gantry adjust, which has no
// cluster to observe rollouts in: it reports releases with a rollout block
// and leaves them to gantry run.
func (a *app) adjust(ctx context.Context, w *gitsource.WriteBack, af *adjustFlags, vars map[string]string, obs *observed, dryRun bool) (gitsource.Outcome, monitor.Report, error) {
	prom, err := monitor.NewProm(af.prometheus)
	if err != nil {
		return gitsource.Outcome{}, monitor.Report{}, err
	}
	mon := &monitor.Monitor{Metrics: prom, Step: af.step}
	if obs != nil {
		mon.Rollouts, mon.Owns, mon.RolloutsOnly = obs.rollouts, obs.owns, obs.rolloutsOnly
	}
	var rep monitor.Report
	decide := func(ctx context.Context, dir, rev string, hist *gitsource.History) ([]gitsource.Change, error) {
		cfg, diags := spec.Load(ctx, dir, spec.LoadOptions{Vars: vars})
		if diags.HasErrors() {
			return nil, fmt.Errorf("the specs at %s are invalid; nothing adjusted: %s", short12(rev), diags.Error())
		}
		cfg.Revision = rev
		if err := configureWriteBack(w, cfg.Settings.WriteBack); err != nil {
			return nil, err
		}
		rep = mon.Decide(ctx, cfg, historyAdapter{hist})
		if obs != nil {
			checkAborts(ctx, dir, hist, vars, obs.rollouts, &rep)
		}
		return changesOf(rep.Decisions), nil
	}
	out, err := w.Write(ctx, decide, dryRun)
	return out, rep, err
}

// configureWriteBack applies the write_back block (validated: mode and
// author have defaults).
func configureWriteBack(w *gitsource.WriteBack, wb *spec.WriteBack) error {
	if wb == nil {
		wb = &spec.WriteBack{}
	}
	w.Mode, w.BranchPrefix, w.AuthorName, w.AuthorEmail = wb.Mode, wb.Branch, wb.AuthorName, wb.AuthorEmail
	w.SignKey = nil
	if wb.SigningKey != "" {
		key, err := gitsource.LoadSigningKey(wb.SigningKey)
		if err != nil {
			return err
		}
		w.SignKey = key
	}
	return nil
}

func changesOf(ds []monitor.Decision) []gitsource.Change {
	out := make([]gitsource.Change, 0, len(ds))
	for _, d := range ds {
		c := gitsource.Change{Release: d.Release, Kind: d.Kind, Message: d.Message()}
		switch d.Kind {
		case monitor.KindScale:
			c.Replicas = d.To
		case monitor.KindPromote, monitor.KindAbort:
			c.Version, c.Step = d.Version, d.To // an abort's To is its step
			if d.Kind == monitor.KindPromote {
				c.Wave = d.Wave
			}
		}
		if d.Rollout != nil {
			c.Restore = d.Rollout.Previous
		}
		out = append(out, c)
	}
	return out
}

// historyAdapter lets the monitor read gitsource's History (the two
// packages do not import each other).
type historyAdapter struct{ h *gitsource.History }

func (a historyAdapter) LastScale(release string, since time.Time) (time.Time, error) {
	return a.h.LastScale(release, since)
}

func (a historyAdapter) LastRollout(release string, since time.Time) (*monitor.Rollout, error) {
	r, err := a.h.LastRollout(release, since)
	if r == nil || err != nil {
		return nil, err
	}
	return &monitor.Rollout{Revision: r.Revision, Previous: r.Previous, Time: r.Time, ByRollback: r.ByRollback}, nil
}

func (a historyAdapter) StepStart(release, observed string, since time.Time) (monitor.StepStart, error) {
	s, err := a.h.StepStart(release, observed, since)
	return monitor.StepStart{Revision: s.Revision, Time: s.Time, Moved: s.AfterObserved}, err
}

func (a *app) printAdjust(w io.Writer, rep monitor.Report, out gitsource.Outcome, dryRun bool) {
	if rep.Unavailable != "" {
		fmt.Fprintf(w, "Prometheus is unavailable; nothing changes: %s\n\n", rep.Unavailable)
	}
	if len(rep.Releases) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "RELEASE\tKIND\tVALUE\tDECISION")
		for _, r := range rep.Releases {
			v := "-"
			if r.Value != nil {
				v = fmt.Sprintf("%g", *r.Value)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Release, r.Kind, v, r.Reason)
		}
		tw.Flush()
	}
	if out.Diff != "" {
		fmt.Fprintf(w, "\n%s", out.Diff)
	}
	for _, s := range out.Skipped {
		fmt.Fprintf(w, "\n%s: already in Git, nothing to commit\n", s)
	}
	if dryRun {
		if out.Diff != "" {
			fmt.Fprintf(w, "\nDry run: nothing committed (based on %s).\n", short12(out.Base))
		}
		return
	}
	for _, c := range out.Commits {
		fmt.Fprintf(w, "\nCommitted %s (%s %s) to %s.\n", short12(c.Commit), c.Kind, c.Release, c.Branch)
		if c.CompareURL != "" {
			fmt.Fprintf(w, "Open a pull request: %s\n", c.CompareURL)
		}
	}
	if len(out.Commits) == 0 && len(rep.Decisions) == 0 {
		fmt.Fprintln(w, "\nNo adjustments.")
	}
}

func short12(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// observed is what gantry run knows and gantry adjust does not: the
// rollouts of its last reconcile and, sharded, which releases are its own
// and whether it decides only their rollouts (shards other than 0).
type observed struct {
	rollouts     map[string]monitor.RolloutView
	owns         func(release string) bool
	rolloutsOnly bool
}

// observedBy is what the engine's last reconcile observed.
func observedBy(e *reconcile.Engine) *observed {
	obs := &observed{rollouts: rolloutViews(e.Status())}
	if e.Shard != nil {
		obs.owns, obs.rolloutsOnly = e.Shard.Owns, e.Shard.Index != 0
	}
	return obs
}

// checkAborts keeps an abort only if restoring the blocks it restores
// gives back the rollout's stable version. The monitor restores the
// model, runtime and quantize blocks of the commit before the last change
// of them; when the rollout began otherwise (a change of resources, or a
// person's second change on top of the canary) that is not the version
// that serves, and restoring it would start a third version instead of
// going back. Such an abort is dropped and the report says why: the canary
// stays at its step, never promoted, until a person restores the release.
func checkAborts(ctx context.Context, dir string, hist *gitsource.History, vars map[string]string, views map[string]monitor.RolloutView, rep *monitor.Report) {
	kept := rep.Decisions[:0]
	for _, d := range rep.Decisions {
		if d.Kind != monitor.KindAbort || d.Rollout == nil {
			kept = append(kept, d)
			continue
		}
		stable := views[d.Release].Stable
		got, err := restoredVersion(ctx, dir, hist, vars, d.Release, d.Rollout.Previous)
		if err == nil && got == stable {
			kept = append(kept, d)
			continue
		}
		why := fmt.Sprintf("restoring %s gives version %s, not the stable %s", short12(d.Rollout.Previous), got, stable)
		if err != nil {
			why = fmt.Sprintf("restoring %s: %v", short12(d.Rollout.Previous), err)
		}
		note := "; but " + why + ": restore the release by hand (the canary is not promoted meanwhile)"
		for i := range rep.Releases {
			if r := &rep.Releases[i]; r.Release == d.Release && r.Kind == monitor.KindRollout {
				r.Reason += note
				r.Changed = false
			}
		}
		for i := range rep.Rollouts {
			if a := &rep.Rollouts[i]; a.Release == d.Release {
				a.Reason += note
			}
		}
	}
	rep.Decisions = kept
}

// restoredVersion is the version the release would have with its blocks
// restored from revision previous: the edit is made in the checkout at
// dir, loaded, and undone.
func restoredVersion(ctx context.Context, dir string, hist *gitsource.History, vars map[string]string, release, previous string) (string, error) {
	file, err := spec.ReleaseFile(dir, release)
	if err != nil {
		return "", err
	}
	cur, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	next, err := hist.Restore(cur, previous, release)
	if err != nil {
		return "", err
	}
	info, err := os.Stat(file)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(file, next, info.Mode().Perm()); err != nil {
		return "", err
	}
	cfg, diags := spec.Load(ctx, dir, spec.LoadOptions{Vars: vars})
	if err := os.WriteFile(file, cur, info.Mode().Perm()); err != nil {
		return "", fmt.Errorf("undo the trial restore of %s: %w", file, err)
	}
	if diags.HasErrors() {
		return "", fmt.Errorf("the restored specs are invalid: %s", diags.Error())
	}
	for i := range cfg.Releases {
		if cfg.Releases[i].Name == release {
			return planner.Version(&cfg.Releases[i]), nil
		}
	}
	return "", fmt.Errorf("release %q is not in the restored specs", release)
}

// rolloutViews are the rollouts of the engine's last reconcile, as the
// monitor reads them: the planner's state of each release with a rollout
// block, at the revision reconciled.
func rolloutViews(st reconcile.Status) map[string]monitor.RolloutView {
	views := map[string]monitor.RolloutView{}
	for _, r := range st.Releases {
		ro := r.Rollout
		if ro == nil {
			continue
		}
		views[r.Name] = monitor.RolloutView{
			Revision: st.Revision, Phase: ro.Phase, Canary: ro.Canary, Stable: ro.Stable,
			Step: ro.Step, Steps: ro.Steps, Ready: ro.Ready, Wave: ro.Wave, Waves: ro.Waves,
			CanaryShards: ro.CanaryShards, StableShards: ro.StableShards,
		}
	}
	return views
}

// analysisOf is a monitor analysis as the engine's status shows it.
func analysisOf(a monitor.RolloutAnalysis) *reconcile.Analysis {
	out := &reconcile.Analysis{Time: a.Time, Decision: a.Decision, Reason: a.Reason,
		Failures: a.Failures, FailureLimit: a.FailureLimit, Metrics: []reconcile.MetricAnalysis{}}
	points := func(s []monitor.Sample) []reconcile.Point {
		if len(s) == 0 {
			return nil
		}
		p := make([]reconcile.Point, len(s))
		for i, x := range s {
			p[i] = reconcile.Point{T: x.Time, V: x.Value}
		}
		return p
	}
	for _, m := range a.Metrics {
		out.Metrics = append(out.Metrics, reconcile.MetricAnalysis{
			Name: m.Name, Bound: m.Bound, Canary: m.Canary, Stable: m.Stable, Pass: m.Pass,
			Samples: m.Samples, Needed: m.Needed,
			CanarySeries: points(m.CanarySeries), StableSeries: points(m.StableSeries),
		})
	}
	return out
}

// recordAnalyses hands the round's rollout analyses to the engine's
// status. A rollout with nothing left to analyse (at its last step,
// restoring, complete) has its old analysis cleared; one the round
// skipped otherwise (Git moved since the reconcile) keeps it.
func recordAnalyses(e *reconcile.Engine, views map[string]monitor.RolloutView, rep monitor.Report) {
	done := map[string]bool{}
	for _, a := range rep.Rollouts {
		e.SetAnalysis(a.Release, analysisOf(a))
		done[a.Release] = true
	}
	for name, v := range views {
		if !done[name] && (v.Phase != monitor.PhaseProgressing || v.Step >= v.Steps) {
			e.SetAnalysis(name, nil)
		}
	}
}

// Package monitor closes Gantry's loop through Git: it reads what
// production does from Prometheus and decides what to change in the specs.
//
// The decisions are pure functions of values (Policy.Decide for
// autoscaling, RollbackPolicy.Decide for rollbacks): the current replicas,
// the query's samples, the time of the last change, now and the settings.
// Prometheus (Prom) and Git history (the History interface, implemented by
// reconcile/gitsource) are thin drivers around them. The monitor never
// writes: a Decision is turned into a spec edit and a commit by
// gitsource.WriteBack, and the daemon applies it on its next fetch, like
// any other commit.
//
// Progressive delivery is decided the same way: DecideRollout is a pure
// function of the rollout block (steps, analysis), the rollout's state as
// the daemon observed it (RolloutView: step, Ready, phase, each version's
// shards), when the step began in Git (History.StepStart) and each
// metric's canary and stable samples over the step. It promotes (a commit
// that moves the rollout's step), aborts (a commit that restores the
// release's blocks, as a rollback does), holds or pauses. A rollout in
// progress takes precedence over the release's rollback block, and one
// round makes at most one decision per release.
//
// Prometheus being unreachable, or a query returning no data, is never a
// decision: nothing changes and the Report says why. For a rollout, no
// data is a pause, never a pass.
package monitor

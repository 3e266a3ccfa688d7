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
// Prometheus being unreachable, or a query returning no data, is never a
// decision: nothing changes and the Report says why.
package monitor

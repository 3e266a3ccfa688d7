package reconcile

import "sync"

// evalJobRunners holds each engine's EvalJobRunner until Engine has its
// EvalJobs field; evalJobs is the one place the engine reads it, so that
// the field replaces this map in one line.
var evalJobRunners sync.Map // *Engine -> EvalJobRunner

// SetEvalJobs makes r run e's gate evals that name an image, as Jobs
// (the kube target). Call it before the first reconcile.
func SetEvalJobs(e *Engine, r EvalJobRunner) {
	if r == nil {
		evalJobRunners.Delete(e)
		return
	}
	evalJobRunners.Store(e, r)
}

// evalJobs is the engine's EvalJobRunner; nil runs every eval locally.
func (e *Engine) evalJobs() EvalJobRunner {
	r, _ := evalJobRunners.Load(e)
	j, _ := r.(EvalJobRunner)
	return j
}

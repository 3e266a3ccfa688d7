// Package reconcile is Gantry's loop: load the specs, observe the world,
// build a plan and carry it out through drivers, then report.
//
// What it promises:
//
//   - Invalid specs execute nothing; the status carries the diagnostics.
//   - For each release: quantize, gate, push, then apply its objects, so a
//     Deployment never references a model image that is not pushed. The
//     releases run concurrently (bounded); one release failing, its gate
//     blocking or its push failing, does not stop the others. Prunes of
//     removed releases come last, after every release has run.
//   - Every side effect is keyed by content: a reconcile of an unchanged
//     repository on an unchanged world quantizes, pushes and applies
//     nothing. Quantized builds are cached in the work directory by content
//     key, so a crash between quantize and push does not quantize again.
//   - A failed release is retried with exponential backoff, and the status
//     says when.
//
// The drivers are small interfaces declared here (Source, Target) plus
// registry.Store; their implementations live in the sub-packages:
// dirtarget (objects as YAML files), gitsource (Git), registry (OCI
// registries and layouts) and kube (the Kubernetes API).
package reconcile

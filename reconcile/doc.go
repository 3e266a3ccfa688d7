// Package reconcile is Gantry's loop: load the specs, observe the world,
// build a plan and carry it out through drivers. Its sub-packages are the
// drivers: dirtarget (Kubernetes objects as YAML files, the embedded
// default), and, as they land, gitsource, kube, registry and monitor.
package reconcile

// Package scaletest writes the spec repositories of Gantry's scale tests
// and benchmarks (issue 11): many releases of one tiny model over many
// static nodes, the same world for the engine's benchmarks in reconcile
// and for the binary's in cmd/gantry.
package scaletest

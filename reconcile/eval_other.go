//go:build !unix

package reconcile

import "os/exec"

// killGroup: without process groups, cancellation kills the evaluator
// process (exec.CommandContext's default).
func killGroup(*exec.Cmd) {}

func reapGroup(*exec.Cmd) {}

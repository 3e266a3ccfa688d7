//go:build unix && !linux

package reconcile

import "syscall"

// dieWithParent does nothing where there is no parent-death signal: an
// evaluator of a daemon killed with SIGKILL runs until it ends.
func dieWithParent(*syscall.SysProcAttr) {}

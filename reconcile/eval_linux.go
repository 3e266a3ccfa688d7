package reconcile

import "syscall"

// dieWithParent makes a local evaluator get SIGKILL when the daemon that
// started it dies (kill -9 included), instead of running on unowned.
func dieWithParent(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }

//go:build linux || darwin || freebsd || openbsd || netbsd || dragonfly

package registry

import (
	"errors"
	"os"
	"syscall"
)

// flock tries flock(2) without blocking: ok is false when another open
// file description holds a conflicting lock.
func flock(f *os.File, exclusive bool) (ok bool, err error) {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	for {
		err = syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}

// errReadOnly is what creating a lock file fails with on a read-only mount.
var errReadOnly error = syscall.EROFS

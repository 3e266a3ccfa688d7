//go:build unix

package gguf

import (
	"os"

	"golang.org/x/sys/unix"
)

// lockTemp takes an exclusive flock on f, held until f is closed or the
// process dies.
func lockTemp(f *os.File) { _ = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) }

// stale reports whether no process holds the lock on the file at name.
func stale(name string) bool {
	f, err := os.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	return unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil
}

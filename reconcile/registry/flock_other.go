//go:build !(linux || darwin || freebsd || openbsd || netbsd || dragonfly)

package registry

import (
	"errors"
	"os"
)

// flock is a no-op where flock(2) is missing: the layout is then locked
// only between goroutines of one process.
func flock(*os.File, bool) (bool, error) { return true, nil }

// errReadOnly is what creating a lock file fails with on a read-only mount.
var errReadOnly = errors.New("read-only file system")

package writeback

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// Size makes f size bytes long, its new bytes zeros, with the disk blocks
// allocated up front (fallocate) where the filesystem can: pwrites into
// allocated blocks skip the per-page block reservation of a delayed
// allocation (ext4's write path took 0.24 s instead of 0.40 s for a 1.17 GB
// output), and a disk too small fails here, before any work, with ENOSPC.
// The file is truncated to size first, so a longer one shrinks; a
// filesystem without fallocate keeps that sparse file, as other systems
// do.
func Size(f *os.File, size int64) error {
	if err := f.Truncate(size); err != nil || size == 0 {
		return err
	}
	err := unix.Fallocate(int(f.Fd()), 0, 0, size)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) {
		return f.Truncate(size)
	}
	if err != nil {
		return &os.PathError{Op: "fallocate", Path: f.Name(), Err: err}
	}
	return nil
}

package ggufquant

import (
	"io"

	"golang.org/x/sys/unix"
)

// adviseSequential tells the kernel that the input file will be read from
// start to end, so that its readahead reads ahead of the workers while they
// compute (the overlap of reading and computing for a cold input).
func adviseSequential(r io.ReaderAt) {
	if f, ok := r.(interface{ Fd() uintptr }); ok {
		_ = unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_SEQUENTIAL)
	}
}

//go:build !linux

package ggufquant

import "io"

func adviseSequential(io.ReaderAt) {}

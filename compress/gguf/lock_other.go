//go:build !unix

package gguf

import "os"

func lockTemp(*os.File) {}

// stale is false: without flock a live writer cannot be told apart.
func stale(string) bool { return false }

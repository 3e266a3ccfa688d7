// Package writeback syncs a file in the background while it is being
// written with pwrite, for the converters that write a large output at
// fixed offsets and sync it before renaming it into place.
//
// Without it every byte of the output stays dirty in the page cache until
// the final sync: the disk idles while the workers compute, the final sync
// writes the whole file while nothing else runs, and once the dirty pages
// pass the kernel's (or the cgroup's) limit the writers are throttled in
// the middle of the run. A Syncer is told how many bytes were written and
// every Every bytes nudges one goroutine that syncs the file; a nudge while
// a sync runs is folded into the next one, so the writers never wait for
// the disk. Stop ends the goroutine and returns the first sync error, which
// the caller must treat as a failed write.
package writeback

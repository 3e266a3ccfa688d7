package gguf

// SetFlushEvery makes fw sync in the background every n bytes; call it
// before the first WriteTensorAt.
func SetFlushEvery(fw *FileWriter, n int64) { fw.every = n }

// BackgroundSyncs is how many syncs fw's background writeback has done.
func BackgroundSyncs(fw *FileWriter) int64 {
	if fw.wb == nil {
		return 0
	}
	return fw.wb.Syncs()
}

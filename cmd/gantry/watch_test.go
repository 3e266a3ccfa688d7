package main

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// The daemon's own output does not wake it up: a log file in the spec
// directory and writes into a state dir inside it are not changes; an
// *.hcl file and a model the specs name are (the bug: about three
// reconciles a second, forever, with `gantry run > gantry.log`).
func TestWatchOnlyWhatTheSpecsRead(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state") // not hidden: --state-dir state
	for _, d := range []string{filepath.Join(dir, "models", "m"), filepath.Join(state, "work")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "releases.hcl"), "")
	write(filepath.Join(dir, "models", "m", "model.safetensors"), "x")
	models := func() []string { return []string{filepath.Join(dir, "models", "m")} }

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int64
	done := make(chan error, 1)
	go func() { done <- watchSpecs(ctx, dir, state, models, func() { calls.Add(1) }) }()
	time.Sleep(300 * time.Millisecond) // let the watcher start

	log, err := os.OpenFile(filepath.Join(dir, "gantry.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	for i := 0; i < 20; i++ {
		if _, err := log.WriteString(`{"level":"INFO","msg":"reconciled"}` + "\n"); err != nil {
			t.Fatal(err)
		}
		write(filepath.Join(state, "work", "x.json"), "{}")
		write(filepath.Join(dir, "notes.txt"), "x")
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // past the debounce
	if got := calls.Load(); got != 0 {
		t.Fatalf("a log file, a state dir and a stray file woke the daemon %d times", got)
	}

	waitFor := func(what string, want int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for calls.Load() < want && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if got := calls.Load(); got < want {
			t.Fatalf("%s: %d calls, want %d", what, got, want)
		}
	}
	write(filepath.Join(dir, "models", "m", "model.safetensors"), "y")
	waitFor("a model file the specs name", 1)
	time.Sleep(500 * time.Millisecond)
	write(filepath.Join(dir, "releases.hcl"), "# edited")
	waitFor("an .hcl file", 2)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

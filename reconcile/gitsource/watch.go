package gitsource

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch calls changed after files below dir change, once per burst: the
// call comes debounce after the last event, so an editor's save (write,
// rename, chmod) reconciles once. Hidden directories (.git, .gantry) are
// not watched. It returns when ctx is done.
func Watch(ctx context.Context, dir string, debounce time.Duration, changed func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	defer w.Close()
	add := func(root string) error {
		return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() {
				return nil
			}
			if p != root && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return w.Add(p)
		})
	}
	if err := add(dir); err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	var timer *time.Timer
	fire := make(chan struct{}, 1)
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if strings.HasPrefix(filepath.Base(ev.Name), ".") {
				continue // editor swap files, atomic-write temp files
			}
			if ev.Has(fsnotify.Create) {
				_ = add(ev.Name) // a new directory: watch it too (a file: fails harmlessly)
			}
			if timer != nil {
				timer.Stop()
			}
			timer = time.AfterFunc(debounce, func() {
				select {
				case fire <- struct{}{}:
				default:
				}
			})
		case <-fire:
			changed()
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			return fmt.Errorf("watch %s: %w", dir, err)
		}
	}
}

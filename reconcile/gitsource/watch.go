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
// rename, chmod) reconciles once. Hidden directories (.git, .gantry) and
// the directories skip names (a state dir inside the specs) are not
// watched. Only events on paths relevant accepts count (nil: every path):
// the daemon passes the *.hcl files and the model paths the specs read, so
// that a log file written into the tree does not wake it up. It returns
// when ctx is done.
func Watch(ctx context.Context, dir string, debounce time.Duration, relevant func(path string) bool, skip []string, changed func()) error {
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
			if p != root && (strings.HasPrefix(d.Name(), ".") || skipped(p, skip)) {
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
			if skipped(ev.Name, skip) {
				continue
			}
			if ev.Has(fsnotify.Create) {
				_ = add(ev.Name) // a new directory: watch it too (a file: fails harmlessly)
			}
			if relevant != nil && !relevant(ev.Name) {
				continue
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

// skipped reports whether p is one of dirs or below one.
func skipped(p string, dirs []string) bool {
	for _, d := range dirs {
		if Within(p, d) {
			return true
		}
	}
	return false
}

// Within reports whether path p is dir or lies below it, comparing
// cleaned absolute paths.
func Within(p, dir string) bool {
	ap, err1 := filepath.Abs(p)
	ad, err2 := filepath.Abs(dir)
	if err1 != nil || err2 != nil {
		return false
	}
	rel, err := filepath.Rel(ad, ap)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

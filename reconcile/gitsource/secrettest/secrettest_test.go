package secrettest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// recorder is a testing.TB that keeps what the checks report.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper()                      {}
func (r *recorder) Errorf(f string, args ...any) { r.errs = append(r.errs, fmt.Sprintf(f, args...)) }
func (r *recorder) Fatal(args ...any)            { r.errs = append(r.errs, fmt.Sprint(args...)) }

// The checks find a planted secret in each of its forms, and a user name
// in a Git config; a clean tree passes.
func TestFindsPlantedSecrets(t *testing.T) {
	const user, secret = "alice", "t0k/en:x@y"
	for i, form := range Forms(user, secret) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "state.json"), []byte("before "+form+" after"), 0o644); err != nil {
			t.Fatal(err)
		}
		r := &recorder{TB: t}
		if files, _ := RequireNoFile(r, dir, user, secret); files != 1 || len(r.errs) == 0 {
			t.Errorf("form %d (%q): %d files, reports %q", i, form, files, r.errs)
		}
		r = &recorder{TB: t}
		RequireNotShown(r, "the log", "x "+form, user, secret)
		if len(r.errs) == 0 {
			t.Errorf("form %d (%q) shown but not reported", i, form)
		}
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, ".git"), 0o755)
	os.WriteFile(filepath.Join(dir, ".git", "config"), []byte("url = https://alice@host/x.git\n"), 0o644)
	r := &recorder{TB: t}
	if _, configs := RequireNoFile(r, dir, user, secret); configs != 1 || len(r.errs) != 1 {
		t.Errorf("a config naming the user: %d configs, reports %q", configs, r.errs)
	}
	os.WriteFile(filepath.Join(dir, ".git", "config"), []byte("url = https://host/x.git\n"), 0o644)
	r = &recorder{TB: t}
	if RequireNoFile(r, dir, user, secret); len(r.errs) != 0 {
		t.Errorf("a clean tree reports %q", r.errs)
	}
}

package gitsource

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The tests build repositories with the real git CLI and read them with
// go-git, so what Checkout sees is what a user's git would have written.

// requireGit skips the test when git is not installed.
func requireGit(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not in PATH")
	}
}

// gitEnv isolates git from the machine's configuration (no global or system
// config, so no signing, hooks or templates) and gives commits an identity
// and fixed dates, so the tests work on a fresh machine.
func gitEnv(t *testing.T) []string {
	t.Helper()
	// Drop the caller's GIT_* variables: under a hook, GIT_DIR and
	// GIT_INDEX_FILE would point these commands at the caller's repository.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GIT_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL="+os.DevNull,
		"HOME="+t.TempDir(),
		"GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Gantry Test",
		"GIT_AUTHOR_EMAIL=test@gantry.invalid",
		"GIT_AUTHOR_DATE=2024-01-01T00:00:00Z",
		"GIT_COMMITTER_NAME=Gantry Test",
		"GIT_COMMITTER_EMAIL=test@gantry.invalid",
		"GIT_COMMITTER_DATE=2024-01-01T00:00:00Z",
	)
}

// runGit runs git in dir and returns its trimmed standard output.
func runGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv(t)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// fixture is a repository made by newFixture, with the commits its refs
// point at.
type fixture struct {
	dir string // the working copy

	tagged  string // first commit: tags v1 (annotated) and v1-light
	trunk   string // tip of the default branch "trunk"
	feature string // tip of branch "feature", which forked at tagged
	nested  string // tip of branch "team/nested", a name with a slash
}

// release is the content of release.hcl at each commit of the fixture.
var release = map[string]string{
	"tagged":  "version = 1\n",
	"trunk":   "version = 2\n",
	"feature": "version = 1\nfeature = true\n",
	"nested":  "version = 3\n",
}

// newFixture makes a repository whose default branch is "trunk" (neither
// main nor master, so nothing can pass by guessing):
//
//	tagged (v1, v1-light) -- trunk
//	      \-- feature
//	      \-- team/nested
func newFixture(t *testing.T) fixture {
	t.Helper()
	requireGit(t)
	dir := filepath.Join(t.TempDir(), "specs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := fixture{dir: dir}
	commit := func(content, msg string) string {
		t.Helper()
		write(t, filepath.Join(dir, "release.hcl"), content)
		runGit(t, dir, "add", "release.hcl")
		runGit(t, dir, "commit", "-q", "-m", msg)
		return runGit(t, dir, "rev-parse", "HEAD")
	}
	runGit(t, dir, "init", "-q", "--initial-branch=trunk")
	f.tagged = commit(release["tagged"], "first")
	runGit(t, dir, "tag", "-a", "v1", "-m", "release 1")
	runGit(t, dir, "tag", "v1-light")
	runGit(t, dir, "checkout", "-q", "-b", "feature")
	f.feature = commit(release["feature"], "feature")
	runGit(t, dir, "checkout", "-q", "-b", "team/nested", f.tagged)
	f.nested = commit(release["nested"], "nested")
	runGit(t, dir, "checkout", "-q", "trunk")
	f.trunk = commit(release["trunk"], "second")
	return f
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

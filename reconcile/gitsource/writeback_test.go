package gitsource

import (
	"bytes"
	"context"
	"net/url"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

const wbSpec = `# Release specs. Comments stay.
release "chat" {
  model {
    source = "oci://example.com/chat@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    format = "gguf"
  }
  runtime {
    image = "llama:1"
  }
  replicas = 3 # autoscaled
}

release "other" {
  model {
    source = "oci://example.com/other@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    format = "gguf"
  }
  runtime {
    image = "llama:1"
  }
}
`

// runGitNow is runGit with the real clock: the history's cooldown and
// rollback windows look at commit times.
func runGitNow(t *testing.T, dir string, args ...string) string {
	t.Helper()
	var env []string
	for _, kv := range gitEnv(t) {
		if !strings.HasPrefix(kv, "GIT_AUTHOR_DATE=") && !strings.HasPrefix(kv, "GIT_COMMITTER_DATE=") {
			env = append(env, kv)
		}
	}
	cmd := exec.Command("git", args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// wbRemote is a bare repository of specs (branch main) served over smart
// HTTP with basic auth, plus a person's clone made with the git CLI.
type wbRemote struct {
	url   string // with credentials
	bare  string
	human string // a person's working copy
}

func newWBRemote(t *testing.T) wbRemote {
	t.Helper()
	requireGit(t)
	root := t.TempDir()
	bare := filepath.Join(root, "specs.git")
	runGit(t, root, "init", "-q", "--bare", "--initial-branch=main", bare)
	runGit(t, bare, "config", "receive.denyNonFastForwards", "true")
	runGit(t, bare, "config", "http.receivepack", "true")
	srv := newGitServer(t, root)
	r := wbRemote{url: srv.repoURL(t, url.UserPassword(httpUser, httpPassword), "/specs.git"), bare: bare, human: filepath.Join(t.TempDir(), "human")}
	runGit(t, "", "clone", "-q", bare, r.human)
	write(t, filepath.Join(r.human, "releases.hcl"), wbSpec)
	runGit(t, r.human, "add", ".")
	runGitNow(t, r.human, "commit", "-q", "-m", "first")
	runGit(t, r.human, "push", "-q", "origin", "HEAD:main")
	return r
}

// humanCommit edits releases.hcl in the person's clone with edit and
// pushes, as someone at a laptop would.
func (r wbRemote) humanCommit(t *testing.T, msg string, edit func(string) string) string {
	t.Helper()
	runGit(t, r.human, "pull", "-q", "--ff-only", "origin", "main")
	p := filepath.Join(r.human, "releases.hcl")
	write(t, p, edit(read(t, p)))
	runGitNow(t, r.human, "commit", "-q", "-am", msg)
	runGit(t, r.human, "push", "-q", "origin", "HEAD:main")
	return runGit(t, r.human, "rev-parse", "HEAD")
}

func (r wbRemote) show(t *testing.T, rev, file string) string {
	t.Helper()
	return runGit(t, r.bare, "show", rev+":"+file)
}

func (r wbRemote) writer(t *testing.T) *WriteBack {
	return &WriteBack{URL: r.url, Dir: filepath.Join(t.TempDir(), "wb"), AuthorName: "Gantry Bot", AuthorEmail: "bot@gantry.invalid", Backoff: time.Millisecond}
}

// scaleTo decides replicas n for chat, counting the calls.
func scaleTo(n int, calls *atomic.Int32) Decider {
	return func(ctx context.Context, dir, rev string, hist *History) ([]Change, error) {
		calls.Add(1)
		return []Change{{Release: "chat", Kind: "scale", Replicas: n, Message: "chat: scale 3 → " + strconv.Itoa(n) + " replicas\n\nbecause"}}, nil
	}
}

func TestWriteBackScale(t *testing.T) {
	r := newWBRemote(t)
	first := runGit(t, r.bare, "rev-parse", "main")
	w := r.writer(t)
	var calls atomic.Int32
	out, err := w.Write(context.Background(), scaleTo(5, &calls), false)
	if err != nil {
		t.Fatal(err)
	}
	head := runGit(t, r.bare, "rev-parse", "main")
	if len(out.Commits) != 1 || out.Commits[0].Commit != head || out.Base != first {
		t.Fatalf("outcome %+v; remote main %s", out, head)
	}
	if got, want := r.show(t, "main", "releases.hcl"), strings.Replace(wbSpec, "replicas = 3 # autoscaled", "replicas = 5 # autoscaled", 1); got != strings.TrimRight(want, "\n") {
		t.Errorf("releases.hcl after scale:\n%s", got)
	}
	msg := runGit(t, r.bare, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%B", "main")
	for _, want := range []string{"Gantry Bot <bot@gantry.invalid>|Gantry Bot <bot@gantry.invalid>|", "chat: scale 3 → 5 replicas", "Gantry-Adjustment: scale", "Gantry-Release: chat", "Gantry-Revision: " + first} {
		if !strings.Contains(msg, want) {
			t.Errorf("commit lacks %q:\n%s", want, msg)
		}
	}
	// git itself parses the trailers.
	if tr := runGit(t, r.bare, "log", "-1", "--format=%(trailers:key=Gantry-Adjustment,valueonly)", "main"); tr != "scale" {
		t.Errorf("git reads the trailer as %q", tr)
	}
	if !strings.Contains(out.Diff, "-  replicas = 3 # autoscaled") || !strings.Contains(out.Diff, "+  replicas = 5 # autoscaled") {
		t.Errorf("diff:\n%s", out.Diff)
	}

	// The same decision again is already in Git: no commit.
	out, err = w.Write(context.Background(), scaleTo(5, &calls), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Commits) != 0 || len(out.Skipped) != 1 || runGit(t, r.bare, "rev-parse", "main") != head {
		t.Errorf("repeat decision: %+v", out)
	}

	// The history sees the change and who made it.
	hist, err := NewHistory(w.Dir, head)
	if err != nil {
		t.Fatal(err)
	}
	at, err := hist.LastScale("chat", time.Now().Add(-time.Hour))
	if err != nil || at.IsZero() || time.Since(at) > time.Minute {
		t.Errorf("LastScale = %v, %v", at, err)
	}
	if at, _ := hist.LastScale("chat", time.Now().Add(time.Hour)); !at.IsZero() {
		t.Errorf("LastScale since the future = %v, want zero", at)
	}
	if ro, err := hist.LastRollout("chat", time.Now().Add(-time.Hour)); err != nil || ro == nil || ro.Revision != first || ro.Previous != "" {
		t.Errorf("LastRollout = %+v, %v; want the first commit, which created the release", ro, err)
	}
}

func TestWriteBackDryRun(t *testing.T) {
	r := newWBRemote(t)
	before := runGit(t, r.bare, "rev-parse", "main")
	var calls atomic.Int32
	out, err := r.writer(t).Write(context.Background(), scaleTo(4, &calls), true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.Diff, "+  replicas = 4 # autoscaled") || len(out.Commits) != 0 {
		t.Errorf("dry run: %+v", out)
	}
	if runGit(t, r.bare, "rev-parse", "main") != before {
		t.Error("dry run pushed")
	}
}

// A person pushes between Gantry's fetch and its push: Gantry's push is
// refused, it decides again on the new head, and both commits survive.
func TestWriteBackRace(t *testing.T) {
	r := newWBRemote(t)
	w := r.writer(t)
	var human string
	w.BeforePush = func(attempt int) {
		if attempt == 1 {
			human = r.humanCommit(t, "other: new image", func(s string) string {
				return strings.Replace(s, "release \"other\" {\n  model {", "release \"other\" {\n  # bumped by hand\n  model {", 1)
			})
		}
	}
	var calls atomic.Int32
	out, err := w.Write(context.Background(), scaleTo(6, &calls), false)
	if err != nil {
		t.Fatal(err)
	}
	if out.Attempts != 2 || calls.Load() != 2 {
		t.Errorf("attempts %d, decisions %d; want 2 and 2", out.Attempts, calls.Load())
	}
	head := runGit(t, r.bare, "rev-parse", "main")
	if parent := runGit(t, r.bare, "rev-parse", "main^"); parent != human || out.Base != human {
		t.Errorf("Gantry's commit is on %s (base %s), want on the human commit %s", parent, out.Base, human)
	}
	content := r.show(t, head, "releases.hcl")
	if !strings.Contains(content, "# bumped by hand") || !strings.Contains(content, "replicas = 6") {
		t.Errorf("after the race:\n%s", content)
	}
}

// The person changed the same release to what Gantry decided: after the
// race nothing is left to commit.
func TestWriteBackRaceSameDecision(t *testing.T) {
	r := newWBRemote(t)
	w := r.writer(t)
	var human string
	w.BeforePush = func(attempt int) {
		if attempt == 1 {
			human = r.humanCommit(t, "chat: 7 by hand", func(s string) string { return strings.Replace(s, "replicas = 3", "replicas = 7", 1) })
		}
	}
	var calls atomic.Int32
	out, err := w.Write(context.Background(), scaleTo(7, &calls), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Commits) != 0 || runGit(t, r.bare, "rev-parse", "main") != human {
		t.Errorf("outcome %+v; main should stay at the human commit", out)
	}
}

// A push that keeps losing gives up after Attempts, without forcing.
func TestWriteBackGivesUp(t *testing.T) {
	r := newWBRemote(t)
	w := r.writer(t)
	w.Attempts = 2
	n := 0
	w.BeforePush = func(int) {
		n++
		r.humanCommit(t, "busy", func(s string) string { return s + "# " + strconv.Itoa(n) + "\n" })
	}
	var calls atomic.Int32
	_, err := w.Write(context.Background(), scaleTo(5, &calls), false)
	if err == nil || !strings.Contains(err.Error(), "gave up after 2 attempts") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(r.show(t, "main", "releases.hcl"), "replicas = 5") {
		t.Error("a losing push landed")
	}
}

func TestWriteBackBranchMode(t *testing.T) {
	r := newWBRemote(t)
	main := runGit(t, r.bare, "rev-parse", "main")
	w := r.writer(t)
	w.Mode = ModeBranch
	var calls atomic.Int32
	out, err := w.Write(context.Background(), scaleTo(5, &calls), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Commits) != 1 || out.Commits[0].Branch != "gantry/adjust-chat" {
		t.Fatalf("outcome %+v", out)
	}
	if runGit(t, r.bare, "rev-parse", "main") != main {
		t.Error("branch mode moved main")
	}
	if got := r.show(t, "gantry/adjust-chat", "releases.hcl"); !strings.Contains(got, "replicas = 5") {
		t.Errorf("proposal:\n%s", got)
	}
	// Unchanged decision: the proposal is not pushed again.
	out, err = w.Write(context.Background(), scaleTo(5, &calls), false)
	if err != nil || len(out.Commits) != 0 {
		t.Errorf("second run: %+v, %v", out, err)
	}
	// A new decision replaces Gantry's own proposal.
	out, err = w.Write(context.Background(), scaleTo(6, &calls), false)
	if err != nil || len(out.Commits) != 1 || !strings.Contains(r.show(t, "gantry/adjust-chat", "releases.hcl"), "replicas = 6") {
		t.Errorf("new decision: %+v, %v", out, err)
	}
	if n := runGit(t, r.bare, "rev-list", "--count", "main..gantry/adjust-chat"); n != "2" {
		t.Errorf("the proposal moved forward by a merge: %s commits ahead of main, want 2", n)
	}
	// A person takes the proposal over: Gantry leaves the branch alone.
	runGitNow(t, r.human, "fetch", "-q", "origin", "gantry/adjust-chat")
	runGitNow(t, r.human, "checkout", "-q", "-b", "review", "FETCH_HEAD")
	write(t, filepath.Join(r.human, "releases.hcl"), strings.Replace(read(t, filepath.Join(r.human, "releases.hcl")), "replicas = 6", "replicas = 4", 1))
	runGitNow(t, r.human, "commit", "-q", "-am", "review: 4 is enough")
	runGitNow(t, r.human, "push", "-q", "origin", "HEAD:gantry/adjust-chat")
	runGitNow(t, r.human, "checkout", "-q", "main")
	theirs := runGit(t, r.bare, "rev-parse", "gantry/adjust-chat")
	out, err = w.Write(context.Background(), scaleTo(8, &calls), false)
	if err != nil || len(out.Commits) != 0 || len(out.Skipped) != 1 || !strings.Contains(out.Skipped[0], "left alone") {
		t.Errorf("taken-over proposal: %+v, %v", out, err)
	}
	if runGit(t, r.bare, "rev-parse", "gantry/adjust-chat") != theirs {
		t.Error("Gantry moved a branch a person committed to")
	}
}

func TestWriteBackRollback(t *testing.T) {
	r := newWBRemote(t)
	good := runGit(t, r.bare, "rev-parse", "main")
	bad := r.humanCommit(t, "chat: llama 2", func(s string) string { return strings.Replace(s, `image = "llama:1"`, `image = "llama:2"`, 1) })
	w := r.writer(t)
	var restore string
	decide := func(ctx context.Context, dir, rev string, hist *History) ([]Change, error) {
		ro, err := hist.LastRollout("chat", time.Now().Add(-time.Hour))
		if err != nil || ro == nil {
			t.Fatalf("LastRollout = %+v, %v", ro, err)
		}
		if ro.ByRollback {
			return nil, nil
		}
		restore = ro.Previous
		if ro.Revision != bad || ro.Previous != good {
			t.Errorf("rollout %+v, want %s after %s", ro, bad, good)
		}
		return []Change{{Release: "chat", Kind: "rollback", Restore: ro.Previous, Message: "chat: roll back"}}, nil
	}
	out, err := w.Write(context.Background(), decide, false)
	if err != nil || len(out.Commits) != 1 || restore != good {
		t.Fatalf("rollback: %+v, %v", out, err)
	}
	if got := r.show(t, "main", "releases.hcl"); got != r.show(t, good, "releases.hcl") {
		t.Errorf("after rollback:\n%s", got)
	}
	// Gantry's rollback is itself a rollout, marked as a rollback.
	if out, err := w.Write(context.Background(), decide, false); err != nil || len(out.Commits) != 0 {
		t.Errorf("second round: %+v, %v", out, err)
	}
}

func TestWriteBackSigned(t *testing.T) {
	r := newWBRemote(t)
	ent, err := openpgp.NewEntity("Gantry Bot", "", "bot@gantry.invalid", nil)
	if err != nil {
		t.Fatal(err)
	}
	var priv, pub bytes.Buffer
	aw, _ := armor.Encode(&priv, openpgp.PrivateKeyType, nil)
	if err := ent.SerializePrivate(aw, nil); err != nil {
		t.Fatal(err)
	}
	aw.Close()
	pw, _ := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	if err := ent.Serialize(pw); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	keyFile := filepath.Join(t.TempDir(), "key.asc")
	write(t, keyFile, priv.String())
	w := r.writer(t)
	if w.SignKey, err = LoadSigningKey(keyFile); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	out, err := w.Write(context.Background(), scaleTo(5, &calls), false)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := git.PlainOpen(w.Dir)
	if err != nil {
		t.Fatal(err)
	}
	c, err := repo.CommitObject(plumbing.NewHash(out.Commits[0].Commit))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Verify(pub.String()); err != nil {
		t.Errorf("signature does not verify: %v", err)
	}
	if _, err := LoadSigningKey(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("a missing key file loaded")
	}
	write(t, keyFile, pub.String())
	if _, err := LoadSigningKey(keyFile); err == nil || !strings.Contains(err.Error(), "no private key") {
		t.Errorf("public key only: %v", err)
	}
}

func TestCompareURL(t *testing.T) {
	for _, tc := range []struct{ remote, want string }{
		{"https://x-token:s3cret@github.com/acme/specs.git", "https://github.com/acme/specs/compare/main...gantry/adjust-chat?expand=1"},
		{"git@github.com:acme/specs.git", "https://github.com/acme/specs/compare/main...gantry/adjust-chat?expand=1"},
		{"https://gitlab.com/group/sub/specs", "https://gitlab.com/group/sub/specs/-/compare/main...gantry/adjust-chat"},
		{"https://gitlab.example.com/g/specs.git", "https://gitlab.example.com/g/specs/-/compare/main...gantry/adjust-chat"},
		{"https://git.example.com/specs.git", ""},
		{"/srv/git/specs.git", ""},
	} {
		if got := CompareURL(tc.remote, "main", "gantry/adjust-chat"); got != tc.want {
			t.Errorf("CompareURL(%q) = %q, want %q", tc.remote, got, tc.want)
		}
	}
}

func TestTrailer(t *testing.T) {
	msg := "chat: scale\n\nbody\n\nGantry-Adjustment: rollback\nGantry-Revision: abc\n"
	if Trailer(msg, TrailerAdjustment) != "rollback" || Trailer(msg, TrailerRevision) != "abc" || Trailer(msg, "Nope") != "" {
		t.Error("Trailer")
	}
}

package gitsource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage"
)

// TestClassifyPush: the errors go-git v5 returns for a push, built the
// way go-git builds them (its typed values, and the texts of its
// fmt.Errorf and of git-receive-pack's report status).
func TestClassifyPush(t *testing.T) {
	status := func(s string) error {
		rs := &packp.ReportStatus{UnpackStatus: "ok", CommandStatuses: []*packp.CommandStatus{{ReferenceName: "refs/heads/main", Status: s}}}
		return fmt.Errorf("push to http://127.0.0.1:1/specs.git main: %w", rs.Error())
	}
	for _, tc := range []struct {
		name string
		err  error
		want raceCause
	}{
		{"go-git fast-forward check", fmt.Errorf("push to x main: %w", fmt.Errorf("non-fast-forward update: %s", "refs/heads/main")), refMoved},
		{"receive-pack denyNonFastForwards", status("non-fast-forward"), refMoved},
		{"receive-pack ref transaction", status("failed to update ref"), refMoved},
		{"receive-pack lease", status("stale info"), refMoved},
		{"receive-pack branch created first", status("reference already exists"), refMoved},
		{"git ref transaction, moved", status("cannot lock ref 'refs/heads/main': is at 1111 but expected 2222"), refMoved},
		{"git ref transaction, locked", status("cannot lock ref 'refs/heads/main': Unable to create '/srv/specs.git/refs/heads/main.lock': File exists."), refLocked},
		{"older receive-pack, locked", status("failed to lock"), refLocked},
		{"typed: force needed", fmt.Errorf("push: %w", git.ErrForceNeeded), refMoved},
		{"typed: reference changed", fmt.Errorf("push: %w", storage.ErrReferenceHasChanged), refMoved},
		{"typed: non-fast-forward pull", fmt.Errorf("push: %w", git.ErrNonFastForwardUpdate), refMoved},
		{"hook declined", status("pre-receive hook declined"), notRace},
		{"protected branch", status("protected branch hook declined"), notRace},
		{"bad credentials", fmt.Errorf("push: %w", transport.ErrAuthenticationRequired), notRace},
		{"missing repository", fmt.Errorf("push: %w", transport.ErrRepositoryNotFound), notRace},
		{"unpack error", (&packp.ReportStatus{UnpackStatus: "index-pack abnormal exit"}).Error(), notRace},
		{"nil", nil, notRace},
	} {
		if got := classifyPush(tc.err); got != tc.want {
			t.Errorf("%s: classifyPush(%v) = %s, want %s", tc.name, tc.err, got, tc.want)
		}
	}
	// Only a push error is marked, and the mark keeps the error.
	err := pushError(status("failed to update ref"))
	var lost *raceLost
	if !errors.As(err, &lost) || lost.cause != refMoved || !strings.Contains(err.Error(), "failed to update ref") {
		t.Errorf("pushError = %#v", err)
	}
	if err := pushError(transport.ErrAuthenticationRequired); !errors.Is(err, transport.ErrAuthenticationRequired) || errors.As(err, &lost) {
		t.Errorf("pushError(bad credentials) = %#v", err)
	}
}

// logBuffer is a slog text log that tests can read.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }

// transports are the two ways a write-back reaches the bare repository
// of newWBRemote: smart HTTP with basic auth, and the file transport
// (go-git runs the system git-receive-pack).
var transports = []struct {
	name string
	url  func(wbRemote) string
}{
	{"http", func(r wbRemote) string { return r.url }},
	{"file", func(r wbRemote) string { return "file://" + r.bare }},
}

// git-receive-pack refuses the push with "failed to update ref" when the
// branch changes between the advertisement and the ref update (another
// push landed: here a pre-receive hook moves main, once) or when another
// push holds refs/heads/main.lock. Both are races: the write-back decides
// again on the new head and lands.
func TestWriteBackRetriesFailedToUpdateRef(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name+"/ref moved", func(t *testing.T) {
			r := newWBRemote(t)
			// A person's commit, already in the bare repository on a side
			// branch; the hook moves main to it during Gantry's push.
			human := r.humanCommit(t, "other: by hand", func(s string) string { return s + "# by hand\n" })
			runGit(t, r.bare, "update-ref", "refs/heads/side", human)
			runGit(t, r.bare, "update-ref", "refs/heads/main", human+"^")
			marker := filepath.Join(t.TempDir(), "moved")
			hook := fmt.Sprintf(`#!/bin/sh
cat >/dev/null
[ -e %[1]q ] && exit 0
touch %[1]q
# As another push would: outside this push's quarantine.
env -u GIT_QUARANTINE_PATH -u GIT_OBJECT_DIRECTORY -u GIT_ALTERNATE_OBJECT_DIRECTORIES git update-ref refs/heads/main %[2]s
`, marker, human)
			if err := os.WriteFile(filepath.Join(r.bare, "hooks", "pre-receive"), []byte(hook), 0o755); err != nil {
				t.Fatal(err)
			}
			var log logBuffer
			w := r.writer(t)
			w.URL, w.Log = tr.url(r), log.logger()
			var calls atomic.Int32
			out, err := w.Write(context.Background(), scaleTo(6, &calls), false)
			if err != nil {
				t.Fatalf("%v\nlog:\n%s", err, log.String())
			}
			if !strings.Contains(log.String(), "failed to update ref") || !strings.Contains(log.String(), `cause="the branch moved"`) {
				t.Errorf("the first push did not fail with receive-pack's \"failed to update ref\":\n%s", log.String())
			}
			if out.Attempts != 2 || calls.Load() != 2 || len(out.Commits) != 1 {
				t.Errorf("attempts %d, decisions %d, commits %+v; want 2, 2, one", out.Attempts, calls.Load(), out.Commits)
			}
			if parent := runGit(t, r.bare, "rev-parse", "main^"); parent != human || out.Base != human {
				t.Errorf("Gantry's commit is on %s (base %s), want on the moved head %s", parent, out.Base, human)
			}
			if c := r.show(t, "main", "releases.hcl"); !strings.Contains(c, "# by hand") || !strings.Contains(c, "replicas = 6") {
				t.Errorf("after the race:\n%s", c)
			}
		})
		t.Run(tr.name+"/ref locked", func(t *testing.T) {
			r := newWBRemote(t)
			lock := filepath.Join(r.bare, "refs", "heads", "main.lock")
			var log logBuffer
			w := r.writer(t)
			w.URL, w.Log = tr.url(r), log.logger()
			w.BeforePush = func(attempt int) {
				var err error
				switch attempt {
				case 1: // another push is updating main
					err = os.WriteFile(lock, nil, 0o644)
				case 2: // and it is done
					err = os.Remove(lock)
				}
				if err != nil {
					t.Error(err)
				}
			}
			before := runGit(t, r.bare, "rev-parse", "main")
			var calls atomic.Int32
			out, err := w.Write(context.Background(), scaleTo(5, &calls), false)
			if err != nil {
				t.Fatalf("%v\nlog:\n%s", err, log.String())
			}
			if !strings.Contains(log.String(), "failed to update ref") {
				t.Errorf("the first push did not fail with receive-pack's \"failed to update ref\":\n%s", log.String())
			}
			if out.Attempts != 2 || len(out.Commits) != 1 || runGit(t, r.bare, "rev-parse", "main^") != before {
				t.Errorf("attempts %d, commits %+v; want 2 and one on %s", out.Attempts, out.Commits, before)
			}
			if !strings.Contains(r.show(t, "main", "releases.hcl"), "replicas = 5") {
				t.Error("the retried push did not land")
			}
		})
	}
	// A hook that declines is not a race: no retry.
	t.Run("hook declined", func(t *testing.T) {
		r := newWBRemote(t)
		if err := os.WriteFile(filepath.Join(r.bare, "hooks", "pre-receive"), []byte("#!/bin/sh\necho 'main is frozen' >&2\nexit 1\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		w := r.writer(t)
		var calls atomic.Int32
		out, err := w.Write(context.Background(), scaleTo(5, &calls), false)
		if err == nil || !strings.Contains(err.Error(), "hook declined") || out.Attempts != 1 {
			t.Errorf("attempts %d, err %v; want one attempt and the hook's refusal", out.Attempts, err)
		}
	})
}

// Twenty write-backs, each with its own clone, push to one branch at once
// (each decides a different replica count, so each has a commit to
// land). Every one must land: lost races are retried, nothing is forced,
// no commit is lost.
func TestWriteBackConcurrentRace(t *testing.T) {
	if testing.Short() {
		t.Skip("twenty concurrent write-backs")
	}
	const writers = 20
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			r := newWBRemote(t)
			first := runGit(t, r.bare, "rev-parse", "main")
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			outs := make([]Outcome, writers)
			errs := make([]error, writers)
			var log logBuffer
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range writers {
				w := r.writer(t)
				w.URL, w.Log = tr.url(r), log.logger()
				w.Attempts, w.Backoff = 4*writers, 5*time.Millisecond
				wg.Go(func() {
					<-start
					var calls atomic.Int32
					outs[i], errs[i] = w.Write(ctx, scaleTo(10+i, &calls), false)
				})
			}
			close(start)
			wg.Wait()
			landed := map[string]bool{}
			for _, c := range strings.Fields(runGit(t, r.bare, "rev-list", first+"..main")) {
				landed[c] = true
			}
			retries, most := 0, 0
			for i := range writers {
				if errs[i] != nil {
					t.Errorf("writer %d: %v", i, errs[i])
					continue
				}
				if len(outs[i].Commits) != 1 || !landed[outs[i].Commits[0].Commit] {
					t.Errorf("writer %d: commits %+v not all on main", i, outs[i].Commits)
				}
				retries += outs[i].Attempts - 1
				most = max(most, outs[i].Attempts)
			}
			if len(landed) != writers {
				t.Errorf("%d commits on main after the first, want %d", len(landed), writers)
			}
			causes := map[string]int{}
			for _, c := range []string{"the branch moved", "the branch was locked"} {
				causes[c] = strings.Count(log.String(), `cause="`+c+`"`)
			}
			t.Logf("%d retries, at most %d attempts for one writer; causes %v; receive-pack \"failed to update ref\" %d times",
				retries, most, causes, strings.Count(log.String(), "failed to update ref"))
		})
	}
}

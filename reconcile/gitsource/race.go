package gitsource

import (
	"errors"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/storage"
)

// raceCause says why a push failed, as far as deciding again can help.
type raceCause int

const (
	// notRace: the push was refused for a reason a retry does not change
	// (a hook or a branch protection declined it, bad credentials, a
	// missing repository, a broken pack). Not retried.
	notRace raceCause = iota
	// refMoved: the branch moved between Gantry's fetch and its push.
	refMoved
	// refLocked: someone else was updating the branch at that moment.
	refLocked
)

func (c raceCause) String() string {
	switch c {
	case refMoved:
		return "the branch moved"
	case refLocked:
		return "the branch was locked"
	}
	return "rejected"
}

// raceLost marks a push that lost a race: Write fetches, decides again on
// the new head and pushes again.
type raceLost struct {
	cause raceCause
	err   error
}

func (e *raceLost) Error() string { return e.err.Error() }
func (e *raceLost) Unwrap() error { return e.err }

// pushError marks err, the failure of a push, as a lost race when
// classifyPush says so. Only push errors are classified: a fetch or a
// decision that fails is never retried as if it had raced.
func pushError(err error) error {
	if c := classifyPush(err); c != notRace {
		return &raceLost{cause: c, err: err}
	}
	return err
}

// Messages of a lost race that go-git passes on only as text, with where
// each comes from. go-git v5 has typed errors for a few local outcomes
// (checked with errors.Is below), but the outcome of a push arrives as a
// string: its own fast-forward check is a fmt.Errorf, and git-receive-pack's
// per-ref status ("ng refs/heads/main <reason>") becomes
// packp.CommandStatus.Error, a fmt.Errorf "command error on <ref>: <reason>".
var (
	movedMessages = []string{
		"non-fast-forward",                   // go-git's check before pushing ("non-fast-forward update: <ref>"), and receive-pack with receive.denyNonFastForwards
		"failed to update ref",               // receive-pack: the ref transaction failed, the ref is no longer at the old value the push was based on (also while another push holds its lock: receive-pack's status does not say which)
		"stale info",                         // a lease that no longer holds
		"reference already exists",           // older receive-pack, a branch another push created first
		"reference has changed concurrently", // storage.ErrReferenceHasChanged after it lost its type
		"but expected",                       // git's ref transaction: "cannot lock ref '<ref>': is at X but expected Y"
		"fetch first",                        // hosts that pass on git's advice
	}
	lockMessages = []string{
		"cannot lock ref",     // git's ref transaction, when the message reaches the status
		"failed to lock",      // older receive-pack's status
		".lock': File exists", // git: "Unable to create '<dir>/refs/heads/main.lock': File exists."
	}
)

// classifyPush says whether a push failure is a lost race, and which.
func classifyPush(err error) raceCause {
	if err == nil {
		return notRace
	}
	// Typed by go-git: a fetch refused without force, a reference that
	// changed under a compare-and-swap in the local clone.
	if errors.Is(err, git.ErrForceNeeded) || errors.Is(err, git.ErrNonFastForwardUpdate) || errors.Is(err, storage.ErrReferenceHasChanged) {
		return refMoved
	}
	msg := err.Error()
	for _, m := range lockMessages {
		if strings.Contains(msg, m) && !strings.Contains(msg, "but expected") {
			return refLocked
		}
	}
	for _, m := range movedMessages {
		if strings.Contains(msg, m) {
			return refMoved
		}
	}
	return notRace
}

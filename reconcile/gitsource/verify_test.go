package gitsource

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
)

func newKey(t *testing.T, name string) (*openpgp.Entity, string) {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", name+"@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return e, buf.String()
}

// TestVerifySignatures: with trusted keys, a signed revision is applied,
// an unsigned one or one signed by a stranger is refused before checkout.
func TestVerifySignatures(t *testing.T) {
	requireGit(t)
	ctx := context.Background()
	trusted, trustedPub := newKey(t, "release-bot")
	stranger, _ := newKey(t, "stranger")

	bare := filepath.Join(t.TempDir(), "specs.git")
	runGit(t, "", "init", "-q", "--bare", "--initial-branch=main", bare)
	work := filepath.Join(t.TempDir(), "work")
	wrepo, err := git.PlainInit(work, false)
	if err != nil {
		t.Fatal(err)
	}
	wt, _ := wrepo.Worktree()
	commit := func(content string, key *openpgp.Entity) string {
		t.Helper()
		write(t, filepath.Join(work, "release.hcl"), content)
		if _, err := wt.Add("release.hcl"); err != nil {
			t.Fatal(err)
		}
		sig := &object.Signature{Name: "Dev", Email: "dev@example.com", When: time.Unix(1700000000, 0)}
		h, err := wt.Commit(content, &git.CommitOptions{Author: sig, Committer: sig, SignKey: key})
		if err != nil {
			t.Fatal(err)
		}
		runGit(t, work, "push", "-q", "--force", bare, "HEAD:refs/heads/main")
		return h.String()
	}

	r := &Repo{URL: bare, Dir: filepath.Join(t.TempDir(), "cache"), TrustedKeys: trustedPub}
	signed := commit("version = 1\n", trusted)
	dir, rev, err := r.Fetch(ctx)
	if err != nil || rev != signed {
		t.Fatalf("signed revision: %s %v", rev, err)
	}

	unsigned := commit("version = 2\n", nil)
	_, _, err = r.Fetch(ctx)
	var se *SignatureError
	if !errors.As(err, &se) || se.Revision != unsigned || !strings.Contains(err.Error(), "not signed") {
		t.Fatalf("unsigned revision: %v", err)
	}
	// Refused before checkout: the working tree still has the trusted one.
	if got := read(t, filepath.Join(dir, "release.hcl")); got != "version = 1\n" {
		t.Errorf("the refused revision was checked out: %q", got)
	}

	commit("version = 3\n", stranger)
	if _, _, err = r.Fetch(ctx); !errors.As(err, &se) || !strings.Contains(err.Error(), "not from a trusted key") {
		t.Fatalf("stranger's revision: %v", err)
	}

	// Without trusted keys nothing is checked.
	open := &Repo{URL: bare, Dir: filepath.Join(t.TempDir(), "cache")}
	if _, _, err := open.Fetch(ctx); err != nil {
		t.Fatal(err)
	}
}

package gitsource

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAuthFromTokenFile(t *testing.T) {
	f, srv := newBareFixture(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(httpPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	auth, err := AuthFrom(httpUser, tokenFile, "", "")
	if err != nil {
		t.Fatal(err)
	}
	r := &Repo{URL: srv.repoURL(t, nil, "/specs.git"), Dir: filepath.Join(t.TempDir(), "cache"), Auth: auth}
	if _, rev, err := r.Fetch(context.Background()); err != nil || rev != f.trunk {
		t.Fatalf("fetch with a token file: %s %v", rev, err)
	}
	if a, err := AuthFrom("", "", "", ""); a != nil || err != nil {
		t.Errorf("no credentials: %v %v", a, err)
	}
	_, err = AuthFrom("", filepath.Join(t.TempDir(), "missing"), "", "")
	if err == nil || !strings.Contains(err.Error(), "--git-token-file") {
		t.Errorf("missing token file: %v", err)
	}
	keyFile := filepath.Join(t.TempDir(), "id")
	os.WriteFile(keyFile, []byte("not a key SECRETMATERIAL"), 0o600)
	_, err = AuthFrom("", "", "", keyFile)
	if err == nil || strings.Contains(err.Error(), "SECRETMATERIAL") {
		t.Errorf("bad ssh key: %v", err)
	}
}

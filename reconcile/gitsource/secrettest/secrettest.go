// Package secrettest is for tests that plant a Git credential and then
// look for it in every file written and every line printed. It is the one
// list of the forms a credential can be written down in.
package secrettest

import (
	"bytes"
	"encoding/base64"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Forms are the ways a secret can be written down: as is, escaped in a
// URL's userinfo, path or query, and as a basic-auth header's base64.
func Forms(user, secret string) []string {
	return []string{
		secret,
		url.PathEscape(secret),
		url.QueryEscape(secret),
		strings.TrimPrefix(url.UserPassword("x", secret).String(), "x:"),
		base64.StdEncoding.EncodeToString([]byte(user + ":" + secret)),
	}
}

// RequireNoFile walks every file under dir and fails the test for each
// that holds the secret in any form, and for each Git config (a file
// named config) that names the user. It returns how many files and Git
// configs it read, so that a caller can fail a walk that checked nothing.
func RequireNoFile(t testing.TB, dir, user, secret string) (files, configs int) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, form := range Forms(user, secret) {
			if bytes.Contains(b, []byte(form)) {
				t.Errorf("%s holds the secret (as %q)", p, form)
			}
		}
		if filepath.Base(p) == "config" {
			configs++
			if bytes.Contains(b, []byte(user)) {
				t.Errorf("%s names the user %q:\n%s", p, user, b)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, configs
}

// RequireNotShown fails the test when text (what: "the output", "the
// error") shows the secret in any form, or any of also.
func RequireNotShown(t testing.TB, what, text, user, secret string, also ...string) {
	t.Helper()
	for _, form := range append(Forms(user, secret), also...) {
		if strings.Contains(text, form) {
			t.Errorf("%s shows %q:\n%s", what, form, text)
		}
	}
}

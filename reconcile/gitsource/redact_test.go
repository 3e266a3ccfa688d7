package gitsource

import (
	"context"
	"strings"
	"testing"
)

// Redact shows scheme, host and path only: no user name (often a token),
// no password, no query, no fragment, whether the URL parses or not.
func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://user:s3cret@github.com/org/specs.git", "https://github.com/org/specs.git"},
		{"https://alice@github.com/org/specs.git", "https://github.com/org/specs.git"},        // a user name alone
		{"https://ghp_token123@github.com/org/specs.git", "https://github.com/org/specs.git"}, // token as user
		{"https://oauth2:glpat-x%2Fy@gitlab.com/g/specs.git", "https://gitlab.com/g/specs.git"},
		{"http://u:p@127.0.0.1:8080/specs.git?private_token=s3cret#frag", "http://127.0.0.1:8080/specs.git"},
		{"ssh://git@example.com:2222/specs.git", "ssh://example.com:2222/specs.git"},
		{"https://github.com/org/specs.git", "https://github.com/org/specs.git"},
		{"file:///srv/git/specs.git", "file:///srv/git/specs.git"},
		{"git@github.com:org/specs.git", "github.com:org/specs.git"}, // scp-like
		{"/srv/git/specs", "/srv/git/specs"},
		{"/srv/git/specs%zz", "/srv/git/specs%zz"}, // a local path, not a URL
		{"/srv/a@b:c/specs", "/srv/a@b:c/specs"},
		{"../specs", "../specs"},
		{"", ""},
		// Does not parse.
		{"https://user:s3cr%zzet@github.com/org/specs.git", "https://github.com/org/specs.git"},
		{"https://user:s3c/ret@github.com/org/specs.git", "https://github.com/org/specs.git"},
		{"https://user:s3cret@github.com/org/sp%zzecs.git", "https://github.com/org/sp%zzecs.git"},
		{"https://github.com/org/sp%zzecs.git?token=s3cret", "https://github.com/org/sp%zzecs.git"},
		{"https://github.com/org/sp%zzecs.git", "https://github.com/org/sp%zzecs.git"},
	} {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// A URL that does not parse fails before go-git, whose url.Parse error
// would quote it password and all.
func TestCheckoutInvalidURLKeepsSecret(t *testing.T) {
	for _, raw := range []string{
		"https://user:s3cr%zzet@127.0.0.1:1/specs.git", // an unescaped % in the password
		"https://user:s3cr/et@127.0.0.1:1/specs.git",   // an unescaped / in the password
		"https://user:s3cret@127.0.0.1:1/sp%zzecs.git",
		"https://user:s3cret@127.0.0.1:notaport/specs.git",
	} {
		_, err := Checkout(context.Background(), raw, "", t.TempDir())
		if err == nil {
			t.Fatalf("Checkout(%q) succeeded", raw)
		}
		if msg := err.Error(); strings.Contains(msg, "s3cr") || !strings.Contains(msg, "not a valid URL") {
			t.Errorf("Checkout(%q): %q, want a \"not a valid URL\" error without the password", raw, msg)
		}
	}
}

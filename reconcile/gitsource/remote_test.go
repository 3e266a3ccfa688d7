package gitsource

import (
	"fmt"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/google/go-cmp/cmp"
)

func TestNewRemote(t *testing.T) {
	token := &githttp.BasicAuth{Username: "gantry", Password: "from-token-file"}
	keys := &gitssh.PublicKeys{User: "git"}
	for _, tc := range []struct {
		name     string
		raw      string
		auth     transport.AuthMethod
		wantURL  string
		wantAuth transport.AuthMethod
	}{
		{"user and password", "https://alice:s3cret@git.example.com/specs.git", nil,
			"https://git.example.com/specs.git", &githttp.BasicAuth{Username: "alice", Password: "s3cret"}},
		{"token as user", "http://ghp_T0KEN@127.0.0.1:8080/specs.git", nil,
			"http://127.0.0.1:8080/specs.git", &githttp.BasicAuth{Username: "ghp_T0KEN"}},
		{"escaped password decoded", "https://u:p%2Fq%40r@git.example.com/specs.git", nil,
			"https://git.example.com/specs.git", &githttp.BasicAuth{Username: "u", Password: "p/q@r"}},
		{"a token file wins over the URL", "https://alice:s3cret@git.example.com/specs.git", token,
			"https://git.example.com/specs.git", token},
		{"no userinfo keeps the URL", "https://git.example.com/specs.git?x=1", token,
			"https://git.example.com/specs.git?x=1", token},
		{"ssh keeps the account, not the password", "ssh://deploy:s3cret@git.example.com:2222/specs.git", nil,
			"ssh://deploy@git.example.com:2222/specs.git", &gitssh.Password{User: "deploy", Password: "s3cret"}},
		{"ssh key wins", "ssh://deploy:s3cret@git.example.com/specs.git", keys,
			"ssh://deploy@git.example.com/specs.git", keys},
		{"ssh user only", "ssh://git@git.example.com/specs.git", nil, "ssh://git@git.example.com/specs.git", nil},
		{"file URL never stores one", "file://u:s3cret@/srv/specs.git", nil, "file:///srv/specs.git", nil},
		{"scp-like", "git@github.com:org/specs.git", keys, "git@github.com:org/specs.git", keys},
		{"local path", "/srv/git/specs", nil, "/srv/git/specs", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NewRemote(tc.raw, tc.auth)
			if err != nil {
				t.Fatal(err)
			}
			if got.URL != tc.wantURL {
				t.Errorf("URL = %q, want %q", got.URL, tc.wantURL)
			}
			if diff := cmp.Diff(authOf(tc.wantAuth), authOf(got.Auth)); diff != "" {
				t.Errorf("Auth (-want +got):\n%s", diff)
			}
			if strings.Contains(got.URL, "s3cret") || strings.Contains(got.URL, "T0KEN") {
				t.Errorf("URL %q holds the secret", got.URL)
			}
		})
	}
	// An explicit auth is passed on as given, not copied.
	if got, _ := NewRemote("ssh://deploy@git.example.com/specs.git", keys); got.Auth != keys {
		t.Errorf("the ssh key was replaced: %#v", got.Auth)
	}
	if _, err := NewRemote("https://u:s3cr%zzet@git.example.com/specs.git", nil); err == nil || strings.Contains(err.Error(), "s3cr") {
		t.Errorf("a URL that does not parse: %v", err)
	}
}

// authOf is what an auth method sends, comparable.
func authOf(a transport.AuthMethod) string {
	switch a := a.(type) {
	case nil:
		return "none"
	case *githttp.BasicAuth:
		return "basic " + a.Username + ":" + a.Password
	case *gitssh.Password:
		return "ssh-password " + a.User + ":" + a.Password
	case *gitssh.PublicKeys:
		return "ssh-key " + a.User
	}
	return fmt.Sprintf("%T", a)
}

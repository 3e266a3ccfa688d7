package gitsource

import (
	"fmt"
	"net/url"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// Remote is a Git repository as Gantry reaches it. URL is what Gantry
// stores (a clone's .git/config) and hands on (a build Job's --repo): it
// never holds a credential. Auth carries the credentials.
type Remote struct {
	URL  string
	Auth transport.AuthMethod
}

// NewRemote is the one place a Git remote is built from what a user gave:
// every clone, fetch and push in this package goes through it, so no
// caller can get a credential into .git/config by passing a raw URL.
//
// The userinfo of an http(s) URL (user:password, or a token standing in
// the user field) becomes basic auth and leaves the URL. An ssh:// URL
// keeps its user name, which is an account and not a secret (ssh needs
// it), and loses a password, which becomes password auth. Local paths and
// scp-like addresses (git@host:path) carry no password and pass as given.
//
// Precedence: auth, when not nil (AuthFrom: --git-ssh-key-file, then
// --git-token-file, then GANTRY_GIT_TOKEN), wins over credentials in the
// URL, which are then dropped unused. Either way they never reach URL.
//
// A URL with a scheme that does not parse is refused here, before go-git,
// whose url.Parse error would quote it, password and all.
func NewRemote(raw string, auth transport.AuthMethod) (Remote, error) {
	if !hasScheme(raw) {
		return Remote{URL: raw, Auth: auth}, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return Remote{}, fmt.Errorf("clone %s: not a valid URL (percent-encode special characters in the user name, password and path)", Redact(raw))
	}
	if u.User == nil {
		return Remote{URL: raw, Auth: auth}, nil
	}
	user := u.User.Username()
	pass, hasPass := u.User.Password()
	switch u.Scheme {
	case "ssh", "git+ssh", "ssh+git":
		if auth == nil && hasPass {
			auth = &gitssh.Password{User: user, Password: pass}
		}
		u.User = nil
		if user != "" {
			u.User = url.User(user)
		}
	case "http", "https":
		if auth == nil {
			auth = &githttp.BasicAuth{Username: user, Password: pass}
		}
		u.User = nil
	default: // file://, git://: nothing would send it; never store it
		u.User = nil
	}
	return Remote{URL: u.String(), Auth: auth}, nil
}

// scrubOrigin points an existing clone's origin at the remote's URL: a
// clone made before credentials were kept out of .git/config (or from a
// URL since changed) loses whatever its config said.
func scrubOrigin(repo *git.Repository, remoteURL string) error {
	cfg, err := repo.Config()
	if err != nil {
		return fmt.Errorf("read the clone's config: %w", err)
	}
	rc, ok := cfg.Remotes["origin"]
	if !ok {
		return fmt.Errorf("the clone has no remote origin")
	}
	if len(rc.URLs) == 1 && rc.URLs[0] == remoteURL {
		return nil
	}
	rc.URLs = []string{remoteURL}
	if err := repo.SetConfig(cfg); err != nil {
		return fmt.Errorf("rewrite the clone's origin: %w", err)
	}
	return nil
}

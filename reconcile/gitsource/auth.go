package gitsource

import (
	"fmt"
	"os"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// AuthFrom builds the credentials for fetching: an ssh key file, or an
// https token read from tokenFile (trailing newline dropped) or given as
// token. It returns nil when none is given (public repositories, or
// credentials in the URL). Errors never include the secret.
func AuthFrom(user, tokenFile, token, sshKeyFile string) (transport.AuthMethod, error) {
	if sshKeyFile != "" {
		keys, err := gitssh.NewPublicKeysFromFile("git", sshKeyFile, os.Getenv("GANTRY_GIT_SSH_PASSPHRASE"))
		if err != nil {
			return nil, fmt.Errorf("--git-ssh-key-file %s: cannot load the key: %w", sshKeyFile, err)
		}
		return keys, nil
	}
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--git-token-file: %w", err)
		}
		token = strings.TrimRight(string(b), "\r\n")
	}
	if token == "" {
		return nil, nil
	}
	if user == "" {
		user = "gantry"
	}
	return &githttp.BasicAuth{Username: user, Password: token}, nil
}

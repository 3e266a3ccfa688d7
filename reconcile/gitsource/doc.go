// Package gitsource reads release specs from Git with go-git: it checks out
// a branch, tag or commit of a repository (a local path, file://, https or
// ssh URL) into a directory and reports the commit it got. Later it also
// polls, verifies commit signatures and writes Gantry's own commits back.
//
// Credentials: every clone, fetch and push goes through NewRemote, which
// keeps credentials out of the URL a clone stores (.git/config) and sends
// them as auth instead; a clone made by an older Gantry with a token in its
// config is rewritten on its next use. A repository is named in errors and
// logs by Redact only: scheme://host/path, no user, password or query.
package gitsource

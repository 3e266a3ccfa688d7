// Package gitsource reads release specs from Git with go-git: it checks out
// a branch, tag or commit of a repository (a local path, file://, https or
// ssh URL) into a directory and reports the commit it got. Later it also
// polls, verifies commit signatures and writes Gantry's own commits back.
package gitsource

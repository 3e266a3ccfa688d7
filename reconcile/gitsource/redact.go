package gitsource

import (
	"net/url"
	"strings"
)

// Redact is how a Git URL reaches an error or a log line: scheme, host
// and path, with no user information at all (not even the user name,
// which is often a token), no query and no fragment. It never returns
// a password, also when raw does not parse: then everything between the
// scheme and the last @ goes, and so does anything from a ? or #. An
// scp-like address (git@host:path) loses its user; a local path passes.
func Redact(raw string) string {
	if !hasScheme(raw) {
		at, colon := strings.Index(raw, "@"), strings.Index(raw, ":")
		if at >= 0 && colon > at && isSCPLike(raw) {
			return raw[at+1:]
		}
		return raw
	}
	if u, err := url.Parse(raw); err == nil {
		u.User = nil
		u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = "", false, "", ""
		return u.String()
	}
	i := strings.Index(raw, "://") + len("://")
	rest := raw[i:]
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		rest = rest[at+1:]
	}
	if q := strings.IndexAny(rest, "?#"); q >= 0 {
		rest = rest[:q]
	}
	return raw[:i] + rest
}

// isSCPLike reports whether raw is an scp-like address, user@host:path,
// rather than a local path (git's rule: a colon before the first slash).
func isSCPLike(raw string) bool {
	colon := strings.Index(raw, ":")
	slash := strings.Index(raw, "/")
	return colon > 0 && (slash < 0 || colon < slash)
}

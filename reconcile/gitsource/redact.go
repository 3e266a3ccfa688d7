package gitsource

import "net/url"

// redactURL removes credentials from a URL before it reaches an error or a
// log line.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	u.User = url.User("REDACTED")
	return u.String()
}

// Package server is the daemon's HTTP face: the status page (plain HTML,
// no JavaScript), /api/status (the same as JSON), /metrics (Prometheus),
// /healthz and /readyz, and /hooks/git, which accepts GitHub and GitLab
// push webhooks and triggers an immediate fetch.
//
// Webhook secrets are compared in constant time and never logged; a bad
// signature gets 401 and is counted.
package server

// Package server is the daemon's HTTP face: the status page (plain HTML,
// no JavaScript), /api/status (the same as JSON), /metrics (Prometheus),
// /healthz and /readyz, and /hooks/git, which accepts GitHub and GitLab
// push webhooks and triggers an immediate fetch.
//
// Each stays bounded with the fleet: the page shows one page of releases
// (worst state first, filtered by state and name in its URL) and the
// nodes that host them, a page at a time; /api/status narrows to a
// release, a state, a name, a cluster or a page on request; /metrics
// counts releases by state, and has series per release only when asked.
//
// A release with a rollout gets a row under its own on the page: a step
// bar, both versions and the traffic, what comes next, and the last
// analysis with a small server-rendered SVG chart per metric (chartSVG);
// /metrics has a few gantry_rollout_ series per rollout, read from the
// status at each scrape. Releases without a rollout add nothing to either.
//
// A fleet (specs with cluster blocks) adds a cluster × release grid to
// the page: a column per cluster (its labels, whether it answered, its
// nodes and GPUs; an unreachable one marked), a cell per release there
// with its version, state, replicas and wave. ?cluster= narrows the page
// and /api/status to one cluster, and /metrics has gantry_cluster_up and
// gantry_cluster_releases{cluster, state}. Without cluster blocks none
// of it shows.
//
// Webhook secrets are compared in constant time and never logged; a bad
// signature gets 401 and is counted.
package server

package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"sync"
	"sync/atomic"
)

// Memo remembers which releases a Build found in sync: for each, the hash
// of everything its objects are rendered from (inputsHash) and the
// versions of its live objects then. A later Build with a Memo does not
// render or diff a release whose inputs hash and live object versions are
// the same as when it was found in sync: a no-op reconcile of a daemon
// does work proportional to what changed, not to the fleet.
//
// The memo only ever says "in sync", and only while nothing it was
// computed from changed. Any edit of a live object, by Gantry or anyone
// else (kubectl edit, a hand-edited YAML file), gives it a new version, so
// the release is rendered and diffed again and drift is still corrected.
// A live object whose version is unknown ("") disables the memo for its
// release. It lives in memory only: it never outlives the binary whose
// rendering it vouches for.
//
// A Memo is safe for concurrent use. A nil *Memo remembers nothing.
type Memo struct {
	mu      sync.Mutex
	entries map[string]memoEntry // by release name
	// skips counts releases Build did not render thanks to the memo, for
	// tests and benchmarks.
	skips atomic.Int64
}

type memoEntry struct {
	inputs string
	live   []idVersion
}

type idVersion struct{ id, version string }

// Skips is how many times a Build left a release unrendered because the
// memo vouched for it.
func (m *Memo) Skips() int64 {
	if m == nil {
		return 0
	}
	return m.skips.Load()
}

// inSync reports whether release was found in sync with these inputs and
// live objects.
func (m *Memo) inSync(release, inputs string, live []idVersion) bool {
	if m == nil || inputs == "" || live == nil {
		return false
	}
	m.mu.Lock()
	e, ok := m.entries[release]
	m.mu.Unlock()
	if ok && e.inputs == inputs && slices.Equal(e.live, live) {
		m.skips.Add(1)
		return true
	}
	return false
}

// remember records release as in sync with inputs and live, or forgets it
// when it is not.
func (m *Memo) remember(release, inputs string, live []idVersion, synced bool) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !synced || inputs == "" || live == nil {
		delete(m.entries, release)
		return
	}
	if m.entries == nil {
		m.entries = map[string]memoEntry{}
	}
	m.entries[release] = memoEntry{inputs: inputs, live: live}
}

// keep forgets the releases not in names (removed from the specs).
func (m *Memo) keep(names map[string]int) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for name := range m.entries {
		if _, ok := names[name]; !ok {
			delete(m.entries, name)
		}
	}
}

// inputsHash fingerprints what Render makes a release's objects from,
// except the revision (which Diff ignores): the whole release block, the
// namespace, the model image, the placement, the runtime digest and the
// hostnames of the placed nodes. "" if it cannot be computed.
func inputsHash(in RenderInput) string {
	hosts := map[string]string{}
	for node := range in.Placement {
		if h, ok := in.Hostnames[node]; ok {
			hosts[node] = h
		}
	}
	b, err := json.Marshal(struct {
		Release       any            `json:"release"`
		Namespace     string         `json:"namespace"`
		Model         Model          `json:"model"`
		Placement     map[string]int `json:"placement"`
		RuntimeDigest string         `json:"runtime_digest"`
		Hostnames     map[string]string
	}{in.Release, in.Namespace, in.Model, in.Placement, in.RuntimeDigest, hosts})
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// liveVersions lists the release's live objects with their versions, in
// ID order; nil when any version is unknown or when a live object is not
// one the release renders (a shard to delete, or an object another
// release renders): those cases are always planned in full.
func (p *Prepared) liveVersions(release string, rendered []string) []idVersion {
	ids := p.byRelease[release]
	if len(ids) == 0 {
		return nil
	}
	out := make([]idVersion, 0, len(ids))
	for _, id := range ids {
		o := p.live[id]
		if o.Version == "" || !slices.Contains(rendered, id) {
			return nil
		}
		out = append(out, idVersion{id, o.Version})
	}
	return out
}

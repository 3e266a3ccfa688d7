package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/gantry-dev/gantry/spec"
)

// ErrDigestMismatch: an image to mirror, or its copy, does not have the
// digest it must have.
var ErrDigestMismatch = errors.New("digest mismatch")

// Mirror copies the image srcRef of src, whose manifest digest must be
// digest, to dstRef (repository:tag) in dst, crane-style: the same
// manifest and blobs, written by dst.Write (remote.Write for a Remote), so
// that the copy has the same digest and a pod may reference either by it.
// Nothing is rebuilt or re-encoded.
//
// It is idempotent: when dst holds dstRef at digest already, it writes
// nothing; blobs dst has are not uploaded again (a Remote asks first).
// Two Mirrors of one image at once both succeed. The digest is checked
// before the copy (the source's manifest) and after it (dst's answer for
// dstRef); a mismatch is ErrDigestMismatch and, before, writes nothing.
// A dstRef that holds another digest is overwritten: the mirror follows
// the source.
//
// Errors name both references, with any user information masked. It
// returns digest.
func Mirror(ctx context.Context, src Source, srcRef string, dst Store, dstRef, digest string) (string, error) {
	// One copy into a registry at a time in this process: docker-registry
	// loses concurrent uploads of the same blob (DIGEST_INVALID,
	// MANIFEST_BLOB_UNKNOWN), and releases that share a model share its
	// blobs. The copy after the first finds what the first wrote.
	host, _, _ := strings.Cut(dstRef, "/")
	unlock := mirrorLocks.lock(host)
	defer unlock()
	d, err := mirror(ctx, src, srcRef, dst, dstRef, digest)
	if err != nil {
		return "", &mirrorError{msg: redactIn(err.Error(), srcRef, dstRef), err: err}
	}
	return d, nil
}

// mirrorLocks serialises Mirror per destination registry host.
var mirrorLocks hostLocks

// hostLocks is a mutex per host, made on first use and kept (hosts are
// few: a fleet's registry mirrors).
type hostLocks struct {
	mu    sync.Mutex
	hosts map[string]*sync.Mutex
}

// lock takes host's mutex and returns its unlock.
func (h *hostLocks) lock(host string) func() {
	h.mu.Lock()
	if h.hosts == nil {
		h.hosts = map[string]*sync.Mutex{}
	}
	m := h.hosts[host]
	if m == nil {
		m = &sync.Mutex{}
		h.hosts[host] = m
	}
	h.mu.Unlock()
	m.Lock()
	return m.Unlock
}

func mirror(ctx context.Context, src Source, srcRef string, dst Store, dstRef, digest string) (string, error) {
	from, to := srcRef, dstRef // Mirror masks their credentials
	if digest == "" {
		return "", fmt.Errorf("mirror %s to %s: no digest to check the copy by", from, to)
	}
	got, ok, err := dst.Has(ctx, dstRef)
	if err != nil {
		return "", fmt.Errorf("mirror %s to %s: look up the copy: %w", from, to, err)
	}
	if ok && got == digest {
		return digest, nil
	}
	img, err := src.Image(ctx, srcRef)
	if err != nil {
		return "", fmt.Errorf("mirror %s to %s: %w", from, to, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("mirror %s to %s: %w", from, to, err)
	}
	if d.String() != digest {
		return "", fmt.Errorf("mirror %s to %s: %w: the source has %s, want %s; nothing copied", from, to, ErrDigestMismatch, d, digest)
	}
	if got, err = dst.Write(ctx, dstRef, img); err != nil {
		return "", fmt.Errorf("mirror %s to %s: %w", from, to, err)
	}
	if got != digest {
		return "", fmt.Errorf("mirror %s to %s: %w: the copy was written as %s, want %s", from, to, ErrDigestMismatch, got, digest)
	}
	// Read it back: what a pod pulls is what the mirror answers for the tag.
	got, ok, err = dst.Has(ctx, dstRef)
	switch {
	case err != nil:
		return "", fmt.Errorf("mirror %s to %s: check the copy: %w", from, to, err)
	case !ok:
		return "", fmt.Errorf("mirror %s to %s: the copy is not there after the write", from, to)
	case got != digest:
		return "", fmt.Errorf("mirror %s to %s: %w: the copy reads back as %s, want %s", from, to, ErrDigestMismatch, got, digest)
	}
	return digest, nil
}

// MirrorRef is the reference of a model image's copy in a registry
// mirror (a repository prefix such as "mirror.eu:5000/models"): the
// prefix, the last path element of ref's repository, and ref's tag or
// digest. Model repositories end in the release's name
// (planner.ImageRepository), so this is planner.ClusterImageRef's rule:
//
//	MirrorRef("mirror.eu:5000/models", "registry.example/models/chat:ck-abc") == "mirror.eu:5000/models/chat:ck-abc"
func MirrorRef(mirror, ref string) string {
	repo, suffix := ref, ""
	if at := strings.Index(ref, "@"); at > strings.LastIndex(ref, "/") {
		repo, suffix = ref[:at], ref[at:] // @digest
	}
	if c := strings.LastIndex(repo, ":"); c > strings.LastIndex(repo, "/") {
		repo, suffix = repo[:c], repo[c:]+suffix // :tag
	}
	return strings.TrimSuffix(mirror, "/") + "/" + repo[strings.LastIndex(repo, "/")+1:] + suffix
}

// mirrorError is an error of Mirror whose text has the references'
// credentials masked, wherever the stores quoted them; errors.Is and As
// still see the cause.
type mirrorError struct {
	msg string
	err error
}

func (e *mirrorError) Error() string { return e.msg }
func (e *mirrorError) Unwrap() error { return e.err }

// redactIn masks in msg every ref of refs, and the user information of
// each on its own.
func redactIn(msg string, refs ...string) string {
	for _, ref := range refs {
		if r := redactRef(ref); r != ref {
			msg = strings.ReplaceAll(msg, ref, r)
			if u := userinfo(ref); len(u) > 1 {
				msg = strings.ReplaceAll(msg, u, spec.MaskedUserinfo)
			}
		}
	}
	return spec.MaskURLCredentials(msg)
}

// userinfo is the "user:password" before the host of a reference, bare
// or a URL; "" when there is none.
func userinfo(ref string) string {
	_, rest, ok := strings.Cut(ref, "://")
	if !ok {
		rest = ref
	}
	host, _, _ := strings.Cut(rest, "/")
	if at := strings.LastIndex(host, "@"); at >= 0 {
		return host[:at]
	}
	return ""
}

// redactRef is how an image reference reaches an error: the user
// information of a URL masked (spec.MaskURLCredentials), and so is a
// "user:password@" before the host of a bare reference.
func redactRef(ref string) string {
	if strings.Contains(ref, "://") {
		return spec.MaskURLCredentials(ref)
	}
	if u := userinfo(ref); u != "" || strings.HasPrefix(ref, "@") {
		return spec.MaskedUserinfo + ref[len(u):]
	}
	return ref
}

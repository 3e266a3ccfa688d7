package registry

import (
	"context"
	"fmt"

	"github.com/gantry-dev/gantry/spec"
)

// Mirror copies the image srcRef of src, whose manifest digest must be
// digest, to dstRef (repository:tag) in dst, crane-style: the same
// manifest and blobs, so that the copy has the same digest and a pod may
// reference either by it. It is idempotent (dst holding dstRef at digest
// writes nothing) and checks the digest before and after the copy.
func Mirror(ctx context.Context, src Source, srcRef string, dst Store, dstRef, digest string) (string, error) {
	from, to := spec.MaskURLCredentials(srcRef), spec.MaskURLCredentials(dstRef)
	if got, ok, err := dst.Has(ctx, dstRef); err != nil {
		return "", fmt.Errorf("mirror %s: %w", to, err)
	} else if ok && got == digest {
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
		return "", fmt.Errorf("mirror %s to %s: the source has digest %s, the plan wants %s; plan again", from, to, d, digest)
	}
	got, err := dst.Write(ctx, dstRef, img)
	if err != nil {
		return "", fmt.Errorf("mirror %s to %s: %w", from, to, err)
	}
	if got != digest {
		return "", fmt.Errorf("mirror %s to %s: the copy has digest %s, not %s", from, to, got, digest)
	}
	return got, nil
}

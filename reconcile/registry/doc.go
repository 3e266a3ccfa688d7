// Package registry packages models as OCI images, pushes them, observes
// which exist, and pulls them back, with go-containerregistry and no Docker
// daemon.
//
// Two packagings, chosen per release (model.packaging):
//
//   - BuildModelPack: a CNCF ModelPack model artifact (artifactType
//     application/vnd.cncf.model.manifest.v1+json, config
//     application/vnd.cncf.model.config.v1+json with descriptor{name,
//     version, revision}, config{format, precision, quantization, paramSize}
//     and modelfs{type: layers, diffIds}). One uncompressed tar layer per
//     file, typed weight, weight.config or doc, annotated with
//     org.cncf.model.filepath and org.opencontainers.image.title. Kubernetes
//     image volumes and ModelPack tools (modctl) mount it.
//   - BuildModelcar: KServe's modelcar, a base image plus the files under
//     /models, one layer per file, built with mutate.Append. Pushed to the
//     registry its base came from, the base's blobs are mounted, not
//     downloaded.
//
// What it promises:
//
//   - Reproducible: the same Model (and base) gives the same digest. Tars
//     have sorted entries, mtime 0, uid/gid 0, fixed modes; no timestamps
//     are recorded. Provenance (release, content key, source model digest,
//     quantize parameters, Git revision) goes into manifest annotations,
//     so a different revision is a different digest; the planner pushes a
//     content key once, so the first revision that built it is recorded.
//   - Streaming: layers are read from disk when hashed and again when
//     written, never held in memory (see BENCHMARKS.md, "registry"). A
//     process hashes each version of a file once: releases sharing a model
//     file reuse its layer's digest while the file is unchanged.
//   - Idempotent: Store.Write skips blobs the store has, so re-pushing an
//     unchanged model uploads nothing: against a registry that is one
//     manifest HEAD (same digest under the tag: done), or blob HEADs and
//     a manifest PUT under a new tag.
//
// Stores (Store: Has, Write): Remote, a registry, with authn.DefaultKeychain,
// parallel uploads, a progress bar on a terminal, bounded jittered retries
// of network errors and 5xx, and an immediate ErrUnauthorized on 401/403
// whose message holds no credentials; Layout, an OCI image layout directory
// (DefaultLayoutDir), the embedded default with no registry. Any number of
// Layout values, goroutines and processes may write one layout at once:
// index.json is updated under a lock (in-process mutex per directory plus
// flock) and replaced atomically; blobs are verified temp files renamed
// into place; a push holds the blob lock shared until its entry is
// recorded, so Layout.GC (exclusive) never sweeps a blob in flight, and
// temp files of killed processes are removed on the next write. Layout is
// a Batcher: in a batch, Write keeps index entries in memory (seen by Has
// and Image) and flushes them in O(log N) rewrites of index.json rather
// than one per push, holding the blob lock shared while any is pending.
// Observe
// turns Has into the planner's Observed.Artifacts, keyed by reference. Pull (and PullRef for
// "oci://REF") extracts either packaging into a directory, verifying
// digests, atomically.
//
// Provenance (attest.go, sign.go, verify.go): an image REPO@sha256:<hex>
// gets its attestation as an OCI image manifest tagged
// REPO:sha256-<hex>.att, artifactType application/vnd.in-toto+json, with
// subject = the image, so it is both cosign's .att and an OCI 1.1
// referrer (a registry without the referrers API, such as distribution
// 2.8, gets go-containerregistry's fallback index REPO:sha256-<hex>); its
// one layer is the DSSE envelope (application/vnd.dsse.envelope.v1+json)
// of the in-toto statement, or the bare statement
// (application/vnd.in-toto+json) when nothing signs it. A signing key adds
// cosign's key-based signature: REPO:sha256-<hex>.sig, one layer
// application/vnd.dev.cosign.simplesigning.v1+json per signature with the
// base64 signature in dev.cosignproject.cosign/signature, so that cosign
// verify --key and verify-attestation --key accept both. In a Layout they
// are index entries like any image (Layout.Write, its lock and batch);
// GC keeps them with their image and does not count them against Keep.
// Verify, VerifySignature and VerifyAttestation check them with a public
// key; everything read back is bounded and parsed as untrusted.
//
// Tags are the planner's (planner.ImageTag of the content key); the
// Deployment references the digest Write returns.
package registry

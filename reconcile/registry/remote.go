package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Sentinel errors a caller may branch on, with errors.Is.
var (
	// ErrNotFound: the registry or layout does not have the reference.
	ErrNotFound = errors.New("not found")
	// ErrUnauthorized: the registry refused the credentials (HTTP 401 or
	// 403). It is never retried.
	ErrUnauthorized = errors.New("access denied")
	// ErrUnavailable: the registry could not be reached, or kept failing
	// with 5xx, after every retry.
	ErrUnavailable = errors.New("registry unavailable")
)

// Options configure a Remote. The zero value is usable; each field says
// its default.
type Options struct {
	// Insecure allows plain HTTP (and falls back from HTTPS) for every
	// registry host, the --registry-insecure flag. localhost and 127.0.0.1
	// are plain HTTP without it, as go-containerregistry does. Default false.
	Insecure bool
	// Jobs is how many blobs are uploaded at once. Default 4.
	Jobs int
	// Keychain finds credentials per registry. Default
	// authn.DefaultKeychain: ~/.docker/config.json (or $DOCKER_CONFIG) and
	// the credential helpers it names.
	Keychain authn.Keychain
	// Transport carries the HTTP requests. Default remote.DefaultTransport.
	Transport http.RoundTripper
	// Retry bounds the retries of a request that failed with a network
	// error or a 408, 429 or 5xx. Default DefaultRetry.
	Retry Retry
	// Progress is where the push progress bar is drawn. Default: standard
	// error when it is a terminal, otherwise nowhere (quiet in CI and logs).
	Progress io.Writer
	// OnProgress, if set, is called as bytes are written with the bytes
	// done and the total of the push (blobs the registry already has count
	// as done). Default none.
	OnProgress func(complete, total int64)
	// Logger gets a debug line per push (bytes, time). Default slog.Default().
	Logger *slog.Logger
}

// Retry is a bounded, jittered exponential backoff: wait Initial, then
// Initial×Factor, ... each ±Jitter, for at most Attempts tries in all.
type Retry struct {
	Attempts int
	Initial  time.Duration
	Factor   float64
	Jitter   float64 // fraction of each wait added at random
}

// DefaultRetry tries 5 times over about 15 s (1 s, 2 s, 4 s, 8 s): long
// enough to ride out a registry restart, short enough to fail a reconcile
// loop clearly instead of hanging it.
var DefaultRetry = Retry{Attempts: 5, Initial: time.Second, Factor: 2, Jitter: 0.2}

// Remote is a store in an OCI distribution registry.
type Remote struct {
	opts Options
}

var _ Store = (*Remote)(nil)

// NewRemote returns a registry store with o's settings, defaults filled.
func NewRemote(o Options) *Remote {
	if o.Jobs <= 0 {
		o.Jobs = 4
	}
	if o.Keychain == nil {
		o.Keychain = authn.DefaultKeychain
	}
	if o.Transport == nil {
		o.Transport = remote.DefaultTransport
	}
	if o.Retry.Attempts <= 0 {
		o.Retry = DefaultRetry
	}
	if o.Retry.Factor < 1 {
		o.Retry.Factor = 1
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Remote{opts: o}
}

func (r *Remote) parse(ref string) (name.Reference, error) {
	var nopts []name.Option
	if r.opts.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	return name.ParseReference(ref, nopts...)
}

func (r *Remote) remoteOptions(ctx context.Context, extra ...remote.Option) []remote.Option {
	b := r.opts.Retry
	o := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(r.opts.Keychain),
		remote.WithTransport(r.opts.Transport),
		remote.WithJobs(r.opts.Jobs),
		remote.WithUserAgent("gantry"),
		remote.WithRetryBackoff(remote.Backoff{Duration: b.Initial, Factor: b.Factor, Jitter: b.Jitter, Steps: b.Attempts}),
		remote.WithRetryPredicate(retryable),
	}
	return append(o, extra...)
}

// retryable says which failures are worth another try: network errors,
// including a refused connection (a registry being restarted), and the
// temporary statuses (408, 429, 5xx). Never 401/403/404, never a
// cancelled context.
func retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return te.Temporary()
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var t interface{ Temporary() bool }
	if errors.As(err, &t) && t.Temporary() {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// classify turns a go-containerregistry error into one with a sentinel and
// a message a person can act on. For 401/403 it drops the registry's
// response body: the status and the host are enough, and nothing the
// client sent (credentials) can leak through it.
func classify(ref name.Reference, err error) error {
	if err == nil {
		return nil
	}
	host := ref.Context().RegistryStr()
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%w: registry %s answered %d %s; check the credentials for %s in the docker config (docker login %s) or its credential helper",
				ErrUnauthorized, host, te.StatusCode, http.StatusText(te.StatusCode), host, host)
		case http.StatusNotFound:
			return fmt.Errorf("%w: %v", ErrNotFound, err)
		}
		if te.Temporary() {
			return fmt.Errorf("%w: %s kept failing after retries: %v", ErrUnavailable, host, err)
		}
		return err
	}
	if retryable(err) {
		return fmt.Errorf("%w: %s could not be reached after retries: %w", ErrUnavailable, host, err)
	}
	return err
}

// Has reports whether the registry has ref. It asks for the tag with a
// HEAD, then checks that the digest it got resolves too (a HEAD by
// digest), so a tag left pointing at a deleted manifest reads as absent.
func (r *Remote) Has(ctx context.Context, ref string) (string, bool, error) {
	tag, err := r.parse(ref)
	if err != nil {
		return "", false, fmt.Errorf("look up %s: %w", ref, err)
	}
	desc, err := remote.Head(tag, r.remoteOptions(ctx)...)
	if err != nil {
		err = classify(tag, err)
		if errors.Is(err, ErrNotFound) {
			return "", false, nil
		}
		return "", false, fmt.Errorf("look up %s: %w", ref, err)
	}
	byDigest := tag.Context().Digest(desc.Digest.String())
	got, err := remote.Head(byDigest, r.remoteOptions(ctx)...)
	if err != nil {
		err = classify(tag, err)
		if errors.Is(err, ErrNotFound) {
			return "", false, nil
		}
		return "", false, fmt.Errorf("look up %s: %w", byDigest, err)
	}
	if got.Digest != desc.Digest {
		return "", false, fmt.Errorf("look up %s: registry answered digest %s for %s", ref, got.Digest, byDigest)
	}
	return desc.Digest.String(), true, nil
}

// Write pushes img as ref (repo:tag) and returns its digest. Blobs the
// registry already has are not uploaded (HEAD first); blobs of a base
// image pulled from another repository of the same registry are mounted
// rather than copied. Layers stream from disk in parallel (Options.Jobs).
func (r *Remote) Write(ctx context.Context, ref string, img v1.Image) (string, error) {
	tag, err := r.parse(ref)
	if err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	dig, err := img.Digest()
	if err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	start := time.Now()
	// remote.Write closes the progress channel on every path once its
	// options are valid, and ours always are (a keychain, no authenticator).
	prog := r.startProgress(ref)
	err = remote.Write(tag, img, r.remoteOptions(ctx, remote.WithProgress(prog.updates))...)
	bytes := prog.wait()
	if err != nil {
		return "", fmt.Errorf("push %s: %w", ref, classify(tag, err))
	}
	// Debug: the caller reports the push; this adds bytes and timing.
	r.opts.Logger.LogAttrs(ctx, slog.LevelDebug, "pushed model image",
		slog.String("ref", ref), slog.String("digest", dig.String()),
		slog.Int64("bytes", bytes), slog.Duration("took", time.Since(start)))
	return dig.String(), nil
}

// Image returns ref from the registry: a base image for BuildModelcar (its
// layers stay mountable) or an image to Pull. A multi-platform index
// resolves to linux/amd64.
func (r *Remote) Image(ctx context.Context, ref string) (v1.Image, error) {
	rr, err := r.parse(ref)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ref, err)
	}
	img, err := remote.Image(rr, r.remoteOptions(ctx)...)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ref, classify(rr, err))
	}
	return img, nil
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

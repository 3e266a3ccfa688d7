package registry

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/gantry-dev/gantry/planner"
)

// fastRetry keeps failing tests quick; the behaviour is the same as the
// default's, only the waits are shorter.
var fastRetry = Retry{Attempts: 5, Initial: 20 * time.Millisecond, Factor: 2, Jitter: 0.2}

// bigFiles adds a 3 MiB weight file so that uploads are not trivial.
func bigFiles() map[string]string {
	files := map[string]string{}
	for k, v := range testFiles {
		files[k] = v
	}
	b := make([]byte, 3<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	files["model-big.safetensors"] = string(b)
	return files
}

// Push, then push the same model again: the second push uploads nothing
// (only HEADs). Then observe it and pull it by digest.
func TestRealPushRepushPull(t *testing.T) {
	reg := needRegistry(t)
	ctx := context.Background()
	p := newProxy(t, reg)
	rem := NewRemote(Options{Logger: quiet, Retry: fastRetry})
	files := bigFiles()
	dir := writeModelDir(t, files)
	key := strings.Repeat("ab", 32)
	ref := p.host() + "/models/tiny-chat:" + planner.ImageTag(key)

	img, err := BuildModelPack(ctx, testModel(dir, files))
	if err != nil {
		t.Fatal(err)
	}
	dig, err := rem.Write(ctx, ref, img)
	if err != nil {
		t.Fatal(err)
	}
	first := p.requests()
	if up := uploads(first); len(up) < len(files) {
		t.Fatalf("first push: %d upload requests for %d files; are uploads bypassing the proxy?\n%s", len(up), len(files), strings.Join(first, "\n"))
	}

	// A fresh build of the same files: same digest, nothing uploaded.
	img2, err := BuildModelPack(ctx, testModel(writeModelDir(t, files), files))
	if err != nil {
		t.Fatal(err)
	}
	dig2, err := rem.Write(ctx, ref, img2)
	if err != nil {
		t.Fatal(err)
	}
	second := p.requests()
	if dig2 != dig {
		t.Errorf("re-push digest %s, first %s", dig2, dig)
	}
	if up := uploads(second); len(up) != 0 {
		t.Errorf("re-push uploaded: %v", up)
	}
	var manifestPuts, other int
	for _, r := range second {
		switch {
		case strings.HasPrefix(r, "HEAD "):
		case strings.HasPrefix(r, "PUT ") && strings.Contains(r, "/manifests/"):
			manifestPuts++
		case r == "GET /v2/":
		default:
			other++
		}
	}
	// go-containerregistry HEADs the manifest first and, finding the same
	// digest under the tag, stops there; a registry without that answer
	// would see blob HEADs and one manifest PUT.
	if manifestPuts > 1 || other != 0 {
		t.Errorf("re-push: %d manifest PUTs, %d other requests, want at most 1 and 0:\n%s", manifestPuts, other, strings.Join(second, "\n"))
	}
	t.Logf("first push %d requests (%d uploads); re-push %d requests: %s", len(first), len(uploads(first)), len(second), strings.Join(second, ", "))

	// Under another tag the manifest is new but every blob is there: blob
	// HEADs and one manifest PUT, no upload.
	if _, err := rem.Write(ctx, p.host()+"/models/tiny-chat:again", img2); err != nil {
		t.Fatal(err)
	}
	third := p.requests()
	if up := uploads(third); len(up) != 0 {
		t.Errorf("push under a new tag uploaded: %v", up)
	}
	puts := 0
	for _, r := range third {
		if strings.HasPrefix(r, "PUT ") && strings.Contains(r, "/manifests/again") {
			puts++
		}
	}
	if puts != 1 {
		t.Errorf("push under a new tag: %d manifest PUTs:\n%s", puts, strings.Join(third, "\n"))
	}

	// Observe: present by tag, absent for another key.
	arts, err := Observe(ctx, rem, []string{ref, p.host() + "/models/tiny-chat:" + planner.ImageTag(strings.Repeat("cd", 32))})
	if err != nil {
		t.Fatal(err)
	}
	if len(arts) != 1 || arts[ref].Digest != dig || arts[ref].Ref != ref {
		t.Errorf("Observe = %v", arts)
	}

	// Pull by digest, straight from the registry.
	dest := filepath.Join(t.TempDir(), "pulled")
	if err := PullRef(ctx, OCIScheme+reg+"/models/tiny-chat@"+dig, dest, Options{Logger: quiet}); err != nil {
		t.Fatal(err)
	}
	sameTree(t, files, dest)
}

// A modelcar pushed into repository B of the registry its base lives in
// (repository A) mounts the base's blobs: a POST with mount= and from=, no
// GET of a base layer.
func TestRealCrossRepoMount(t *testing.T) {
	reg := needRegistry(t)
	ctx := context.Background()
	p := newProxy(t, reg)
	rem := NewRemote(Options{Logger: quiet, Retry: fastRetry})

	base, err := random.Image(64<<10, 3)
	if err != nil {
		t.Fatal(err)
	}
	baseRef := p.host() + "/base/busybox:1.36"
	if _, err := rem.Write(ctx, baseRef, base); err != nil {
		t.Fatal(err)
	}
	baseMan, _ := base.Manifest()
	p.requests()

	rbase, err := rem.Image(ctx, baseRef)
	if err != nil {
		t.Fatal(err)
	}
	dir := writeModelDir(t, testFiles)
	car, err := BuildModelcar(ctx, rbase, testModel(dir, testFiles))
	if err != nil {
		t.Fatal(err)
	}
	dig, err := rem.Write(ctx, p.host()+"/models/tiny-car:ck-1", car)
	if err != nil {
		t.Fatal(err)
	}
	reqs := p.requests()
	for _, l := range baseMan.Layers {
		mounted := false
		for _, r := range reqs {
			if strings.HasPrefix(r, "GET ") && strings.Contains(r, l.Digest.Hex) {
				t.Errorf("base layer downloaded: %s", r)
			}
			if strings.HasPrefix(r, "POST /v2/models/tiny-car/blobs/uploads/") && strings.Contains(r, "mount="+strings.ReplaceAll(l.Digest.String(), ":", "%3A")) && strings.Contains(r, "from=base%2Fbusybox") {
				mounted = true
			}
		}
		if !mounted {
			t.Errorf("base layer %s not mounted; requests:\n%s", l.Digest, strings.Join(reqs, "\n"))
		}
	}
	if t.Failed() {
		return
	}
	dest := filepath.Join(t.TempDir(), "car")
	if err := Pull(ctx, rem, reg+"/models/tiny-car@"+dig, dest); err != nil {
		t.Fatal(err)
	}
	sameTree(t, testFiles, dest)
}

// The registry goes down mid-push (503 on blob uploads) and comes back: the
// push retries and succeeds. A registry that stays down fails with
// ErrUnavailable after the bounded retries.
func TestRealRetry(t *testing.T) {
	reg := needRegistry(t)
	ctx := context.Background()
	dir := writeModelDir(t, testFiles)
	img, err := BuildModelPack(ctx, testModel(dir, testFiles))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("down mid-push", func(t *testing.T) {
		p := newProxy(t, reg)
		uploadsSeen := 0
		p.fail = func(n int, r *http.Request) bool {
			if r.Method == http.MethodPut || r.Method == http.MethodPatch {
				uploadsSeen++
				return uploadsSeen <= 3 // the first three uploads hit a registry that is down
			}
			return false
		}
		rem := NewRemote(Options{Logger: quiet, Retry: fastRetry, Jobs: 1})
		dig, err := rem.Write(ctx, p.host()+"/models/retry:ck-1", img)
		if err != nil {
			t.Fatalf("push did not recover: %v", err)
		}
		if p.failed != 3 {
			t.Errorf("%d requests failed, want 3", p.failed)
		}
		if got, ok, err := NewRemote(Options{Logger: quiet}).Has(ctx, reg+"/models/retry:ck-1"); !ok || err != nil || got != dig {
			t.Errorf("after recovery Has = %s %v %v", got, ok, err)
		}
	})

	t.Run("stays down", func(t *testing.T) {
		p := newProxy(t, reg)
		p.fail = func(int, *http.Request) bool { return true }
		rem := NewRemote(Options{Logger: quiet, Retry: Retry{Attempts: 3, Initial: 10 * time.Millisecond, Factor: 2}})
		start := time.Now()
		_, err := rem.Write(ctx, p.host()+"/models/retry:ck-2", img)
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
		if p.failed < 3 || time.Since(start) > 10*time.Second {
			t.Errorf("%d attempts in %v", p.failed, time.Since(start))
		}
		t.Logf("error after %d attempts in %v: %v", p.failed, time.Since(start).Round(time.Millisecond), err)
	})

	t.Run("connection refused", func(t *testing.T) {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := l.Addr().String()
		l.Close() // nothing listens here now
		rem := NewRemote(Options{Logger: quiet, Retry: Retry{Attempts: 3, Initial: 10 * time.Millisecond, Factor: 2}})
		_, err := rem.Write(ctx, addr+"/models/retry:ck-3", img)
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
		_, _, err = rem.Has(ctx, addr+"/models/retry:ck-3")
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Has: err = %v, want ErrUnavailable", err)
		}
		t.Logf("error: %v", err)
	})
}

// A registry that wants other credentials fails the push at once, with a
// message that names the host and holds no password. The credentials come
// from the docker config through authn.DefaultKeychain.
func TestRealAuth(t *testing.T) {
	reg := needRegistry(t)
	ctx := context.Background()
	p := newProxy(t, reg)
	p.user, p.pw = "gantry", "s3cret-Pa55w0rd"
	dir := writeModelDir(t, testFiles)
	img, err := BuildModelPack(ctx, testModel(dir, testFiles))
	if err != nil {
		t.Fatal(err)
	}
	dockerConfig := func(pw string) {
		d := t.TempDir()
		auth := base64.StdEncoding.EncodeToString([]byte("gantry:" + pw))
		cfg := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, p.host(), auth)
		if err := os.WriteFile(filepath.Join(d, "config.json"), []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("DOCKER_CONFIG", d)
	}
	// The default retry would wait seconds; a 401 must not wait at all.
	rem := NewRemote(Options{Logger: quiet})

	for name, pw := range map[string]string{"wrong password": "wr0ng-Pa55w0rd", "no credentials": ""} {
		t.Run(name, func(t *testing.T) {
			if pw != "" {
				dockerConfig(pw)
			} else {
				t.Setenv("DOCKER_CONFIG", t.TempDir())
			}
			p.requests()
			start := time.Now()
			_, err := rem.Write(ctx, p.host()+"/models/auth:ck-1", img)
			took := time.Since(start)
			if !errors.Is(err, ErrUnauthorized) {
				t.Fatalf("err = %v, want ErrUnauthorized", err)
			}
			if took > 900*time.Millisecond {
				t.Errorf("took %v: a 401 was retried", took)
			}
			msg := err.Error()
			for _, secret := range []string{p.pw, "wr0ng-Pa55w0rd", base64.StdEncoding.EncodeToString([]byte("gantry:wr0ng-Pa55w0rd"))} {
				if strings.Contains(msg, secret) {
					t.Errorf("error message leaks a credential: %s", msg)
				}
			}
			if !strings.Contains(msg, p.host()) || !strings.Contains(msg, "401") {
				t.Errorf("error message should name the host and the status: %s", msg)
			}
			t.Logf("%d requests in %v: %s", len(p.requests()), took.Round(time.Millisecond), msg)
		})
	}

	t.Run("right password", func(t *testing.T) {
		dockerConfig(p.pw)
		if _, err := rem.Write(ctx, p.host()+"/models/auth:ck-1", img); err != nil {
			t.Fatal(err)
		}
	})
}

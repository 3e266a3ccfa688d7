package registry

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rssChildEnv, when set, makes the test binary a child that pushes one big
// file and reports its peak RSS (see TestBigPushRSS).
const rssChildEnv = "GANTRY_REGISTRY_RSS_CHILD"

// bigResult is what the child reports, as one JSON line.
type bigResult struct {
	Bytes       int64   `json:"bytes"`
	BuildSec    float64 `json:"build_s"`  // BuildModelPack: the hashing pass
	PushSec     float64 `json:"push_s"`   // first remote Write (upload)
	RepushSec   float64 `json:"repush_s"` // a new build and Write of the same file
	VmHWMKiB    int64   `json:"vmhwm_kib"`
	LayerDigest string  `json:"digest"`
}

const bigResultPrefix = "GANTRY-BIG-RESULT "

// TestBigPushRSS pushes a 2 GiB file to the real registry in a child
// process and checks the child's peak RSS (VmHWM): the layer must stream
// from disk. It also times a plain loopback TCP copy of the same bytes to
// compare throughput. Gated: GANTRY_BIG=1 (it writes 2 GiB twice: the
// file and the registry's copy).
//
//	GANTRY_BIG=1 go test ./reconcile/registry -run TestBigPushRSS -v -count=1
func TestBigPushRSS(t *testing.T) {
	if os.Getenv("GANTRY_BIG") != "1" {
		t.Skip("set GANTRY_BIG=1 to push a 2 GiB file and measure peak RSS")
	}
	reg := needRegistry(t)
	size := int64(2 << 30)
	if s := os.Getenv("GANTRY_BIG_BYTES"); s != "" {
		size, _ = strconv.ParseInt(s, 10, 64)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "model.safetensors")
	writeBigFile(t, file, size)

	loop := loopbackCopy(t, file)
	t.Logf("loopback TCP copy of %d bytes: %.2fs, %.0f MiB/s", size, loop.Seconds(), float64(size)/(1<<20)/loop.Seconds())

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), rssChildEnv+"=1", "GANTRY_BIG_FILE="+file, "GANTRY_BIG_REF="+reg+"/models/big:ck-rss")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var res bigResult
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, bigResultPrefix) {
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, bigResultPrefix)), &res); err != nil {
				t.Fatal(err)
			}
		}
	}
	if res.Bytes == 0 {
		t.Fatalf("child reported nothing:\n%s", out)
	}
	mib := float64(res.Bytes) / (1 << 20)
	t.Logf("hash pass %.2fs (%.0f MiB/s); push %.2fs (%.0f MiB/s); re-push (hash + HEAD) %.2fs; peak RSS (VmHWM) %.1f MiB",
		res.BuildSec, mib/res.BuildSec, res.PushSec, mib/res.PushSec, res.RepushSec, float64(res.VmHWMKiB)/1024)
	if res.VmHWMKiB > 200<<10 {
		t.Errorf("peak RSS %d KiB: the layer does not stream", res.VmHWMKiB)
	}
}

// writeBigFile writes size bytes: a 1 MiB pseudo-random block, repeated.
func writeBigFile(t *testing.T, path string, size int64) {
	t.Helper()
	block := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range block {
		block[i] = byte(r.Uint32())
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	for n := int64(0); n < size; n += int64(len(block)) {
		b := block
		if size-n < int64(len(b)) {
			b = b[:size-n]
		}
		if _, err := w.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// loopbackCopy sends the file over a 127.0.0.1 TCP connection to a reader
// that discards it: the ceiling a push over loopback could reach.
func loopbackCopy(t *testing.T, path string) time.Duration {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		_, err = io.Copy(io.Discard, c)
		c.Close()
		done <- err
	}()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(c, f); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return time.Since(start)
}

// rssChild is the child side of TestBigPushRSS: build, push, push again,
// report VmHWM.
func rssChild() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "child:", err); return 1 }
	ctx := context.Background()
	file, ref := os.Getenv("GANTRY_BIG_FILE"), os.Getenv("GANTRY_BIG_REF")
	fi, err := os.Stat(file)
	if err != nil {
		return fail(err)
	}
	m := Model{Release: "big", Format: "safetensors", Files: []File{{Path: "model.safetensors", Source: file}}}
	rem := NewRemote(Options{Logger: quiet})
	res := bigResult{Bytes: fi.Size()}

	start := time.Now()
	img, err := BuildModelPack(ctx, m)
	if err != nil {
		return fail(err)
	}
	res.BuildSec = time.Since(start).Seconds()
	start = time.Now()
	dig, err := rem.Write(ctx, ref, img)
	if err != nil {
		return fail(err)
	}
	res.PushSec = time.Since(start).Seconds()
	res.LayerDigest = dig

	start = time.Now()
	img, err = BuildModelPack(ctx, m)
	if err != nil {
		return fail(err)
	}
	if _, err := rem.Write(ctx, ref, img); err != nil {
		return fail(err)
	}
	res.RepushSec = time.Since(start).Seconds()

	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return fail(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			res.VmHWMKiB, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	b, _ := json.Marshal(res)
	fmt.Println(bigResultPrefix + string(b))
	return 0
}

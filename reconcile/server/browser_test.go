package server

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStatusPageInChromium loads the status page in headless Chromium, as
// a person would see it: the DOM after parsing must hold the grid and the
// release states, and a screenshot is saved in the test's temp dir.
func TestStatusPageInChromium(t *testing.T) {
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		if testing.Short() {
			t.Skip("chromium not installed (-short)")
		}
		t.Fatal("chromium is not installed: apt-get install chromium (.ci/run does)")
	}
	_, ts, _ := newTestServer(t)
	dir := t.TempDir()
	chrome := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir=" + filepath.Join(dir, "profile"), "--window-size=1280,900"}
		out, err := exec.CommandContext(ctx, bin, append(base, args...)...).Output()
		if err != nil {
			t.Fatalf("chromium %v: %v", args, err)
		}
		return string(out)
	}
	dom := chrome("--dump-dom", ts.URL+"/")
	for _, want := range []string{
		`<tr id="node-gpu-a">`, `<td class="num used">2</td>`,
		`<td class="state blocked" data-state="blocked">blocked</td>`,
		`<td class="state synced" data-state="synced">synced</td>`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered DOM lacks %q", want)
		}
	}
	shot := filepath.Join(dir, "status.png")
	chrome("--screenshot="+shot, ts.URL+"/")
	info, err := os.Stat(shot)
	if err != nil || info.Size() < 5000 {
		t.Fatalf("screenshot: %v", err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, info.Size())
}

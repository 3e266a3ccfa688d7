package server

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// chromium returns a function that runs headless Chromium with args, and
// how long it took.
func chromium(t *testing.T) func(args ...string) (string, time.Duration) {
	t.Helper()
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
	dir := t.TempDir()
	return func(args ...string) (string, time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir=" + filepath.Join(dir, "profile"), "--window-size=1280,900"}
		start := time.Now()
		out, err := exec.CommandContext(ctx, bin, append(base, args...)...).Output()
		if err != nil {
			t.Fatalf("chromium %v: %v", args, err)
		}
		return string(out), time.Since(start)
	}
}

// TestStatusPageInChromium loads the status page in headless Chromium, as
// a person would see it: the DOM after parsing must hold the grid and the
// release states, and a screenshot is saved in the test's temp dir.
func TestStatusPageInChromium(t *testing.T) {
	chrome := chromium(t)
	_, ts, _ := newTestServer(t)
	dom, _ := chrome("--dump-dom", ts.URL+"/")
	for _, want := range []string{
		`<tr id="node-gpu-a">`, `<td class="num used">2</td>`,
		`<td class="state blocked" data-state="blocked">blocked</td>`,
		`<td class="state synced" data-state="synced">synced</td>`,
		`<form id="filter" method="get" action="/">`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered DOM lacks %q", want)
		}
	}
	shot := filepath.Join(t.TempDir(), "status.png")
	chrome("--screenshot="+shot, ts.URL+"/")
	info, err := os.Stat(shot)
	if err != nil || info.Size() < 5000 {
		t.Fatalf("screenshot: %v", err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, info.Size())
}

// TestStatusPageInChromiumAtScale loads the page of 10,000 releases on
// 5,000 nodes, filtered and paged, and checks what Chromium parsed: the
// pager, the filter as asked, one page of rows. Chromium's wall time
// (process start included) is logged, not asserted: this machine is
// shared.
func TestStatusPageInChromiumAtScale(t *testing.T) {
	chrome := chromium(t)
	ts := httptest.NewServer((&Server{Status: fixedStatus(bigStatus(10000, 5000))}).Handler())
	defer ts.Close()

	chrome("--dump-dom", "about:blank") // a warm profile, for the baseline below
	_, blank := chrome("--dump-dom", "about:blank")
	dom, took := chrome("--dump-dom", ts.URL+"/")
	t.Logf("/ at 10,000 releases: Chromium loaded and dumped it in %v, %v more than about:blank (%d bytes of DOM)", took, took-blank, len(dom))
	if got := rowStates(dom); len(got) != defaultPerPage || got[0] != "failed" {
		t.Errorf("DOM has %d release rows (first %v), want %d, failed first", len(got), got[:min(1, len(got))], defaultPerPage)
	}
	for _, want := range []string{
		`<span>page 1 of 100</span>`, `<a href="/?page=2" rel="next">next ›</a>`,
		`<select name="state">`, `<input type="search" name="q"`, `>200 failed</a>`,
		`<table id="grid">`, `<th>Releases (GPUs)</th>`,
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("DOM of / lacks %q", want)
		}
	}

	dom, took = chrome("--dump-dom", ts.URL+"/?state=blocked&q=model-0&page=2")
	t.Logf("/?state=blocked&q=model-0&page=2: %v, %v more than about:blank", took, took-blank)
	// 114 blocked, all named model-0…: page 2 holds the last 14.
	if got := rowStates(dom); len(got) != 14 || !strings.Contains(dom, "Releases 101–114 of 114 that match (of 10000)") {
		t.Errorf("filtered page 2 has %d rows", len(got))
	}
	for _, want := range []string{`<option value="blocked" selected="">blocked</option>`, `value="model-0"`,
		`href="/?q=model-0&amp;state=blocked" rel="prev"`} {
		if !strings.Contains(dom, want) {
			t.Errorf("DOM of the filtered page lacks %q", want)
		}
	}
}

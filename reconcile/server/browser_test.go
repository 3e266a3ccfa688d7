package server

import (
	"bytes"
	"context"
	"errors"
	"image/png"
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
		var out []byte
		var err error
		for attempt := 1; ; attempt++ {
			out, err = exec.CommandContext(ctx, bin, append(base, args...)...).Output()
			// Killed by a signal of its own (a segfault on a loaded
			// machine) is the browser crashing, not the page: once more.
			var ee *exec.ExitError
			if err != nil && ctx.Err() == nil && attempt < 3 && errors.As(err, &ee) && !ee.Exited() {
				t.Logf("chromium %v crashed (%v); running it again", args, err)
				continue
			}
			break
		}
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
	screenshot(t, chrome, "status.png", ts.URL+"/")
}

// screenshot has Chromium save a screenshot of url as name in the
// test's temp dir, checks it is a picture of something (5 kB or more),
// keeps a copy in $GANTRY_SCREENSHOT_DIR when that is set, and returns
// the PNG.
func screenshot(t *testing.T, chrome func(args ...string) (string, time.Duration), name, url string, args ...string) []byte {
	t.Helper()
	shot := filepath.Join(t.TempDir(), name)
	chrome(append([]string{"--screenshot=" + shot}, append(args, url)...)...)
	png, err := os.ReadFile(shot)
	if err != nil || len(png) < 5000 {
		t.Fatalf("screenshot: %v (%d bytes)", err, len(png))
	}
	t.Logf("screenshot: %s (%d bytes)", shot, len(png))
	if dir := os.Getenv("GANTRY_SCREENSHOT_DIR"); dir != "" {
		keep := filepath.Join(dir, name)
		if err := os.WriteFile(keep, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("kept: %s", keep)
	}
	return png
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

// TestRolloutInChromium loads a status page with two rollouts in headless
// Chromium: chat at step 2 of 3, holding, with two charted metrics of an
// hour each, and rerank paused because Prometheus is unreachable. The
// parsed DOM must hold the step bars, both charts' polylines and the
// pause with its reason, and no script. The screenshot is saved in the
// test's temp dir, and kept in $GANTRY_SCREENSHOT_DIR when that is set.
func TestRolloutInChromium(t *testing.T) {
	chrome := chromium(t)
	ts := httptest.NewServer((&Server{Status: fixedStatus(rolloutStatus()), Metrics: NewMetrics()}).Handler())
	defer ts.Close()
	dom, _ := chrome("--dump-dom", ts.URL+"/")
	chat := section(dom, `<tr class="rollout" id="rollout-chat">`, "</tr>")
	rerank := section(dom, `<tr class="rollout" id="rollout-rerank">`, "</tr>")
	for _, want := range []string{
		`<span class="stepbar" role="img" aria-label="step 2 of 3">`,
		`<span class="seg done" title="step 1: done">1</span>`,
		`<span class="seg current ready" title="step 2: now, ready">2</span>`,
		`<span class="seg" title="step 3">3</span>`,
		`<span class="decision hold">hold</span>`, `50% of traffic to the canary`,
	} {
		if !strings.Contains(chat, want) {
			t.Errorf("chat's rollout in the DOM lacks %q", want)
		}
	}
	// Two charts, each with a stable and a canary line; the ratio
	// bound of latency_p99 is a dashed polyline, the absolute bound of
	// error_rate a dashed line.
	charts := strings.Split(chat, `<svg class="chart"`)[1:]
	if len(charts) != 2 {
		t.Fatalf("chat has %d charts in the DOM, want 2", len(charts))
	}
	for i, c := range charts {
		for _, want := range []string{`<polyline class="stable" points="`, `<polyline class="canary" points="`, `stroke-dasharray="4 3"`, `>-1h</text>`, `>now</text>`} {
			if !strings.Contains(c, want) {
				t.Errorf("chart %d lacks %q", i, want)
			}
		}
	}
	for _, want := range []string{
		`aria-label="step 1 of 4"`, `<span class="seg current paused" title="step 1: now, not ready yet">1</span>`,
		`paused: Prometheus unreachable: Get "http://prometheus:9090/api/v1/query": dial tcp 10.0.0.9:9090: connect: connection refused`,
		`>no data</text>`,
	} {
		if !strings.Contains(rerank, want) {
			t.Errorf("rerank's rollout in the DOM lacks %q", want)
		}
	}
	if strings.Contains(dom, "<script") {
		t.Error("the page has a <script>")
	}

	screenshot(t, chrome, "rollout.png", ts.URL+"/", "--window-size=1280,1100")
}

// TestFleetInChromium loads a fleet's status page in headless Chromium:
// three clusters, us-1 unreachable, chat in all three at wave 2 of 3,
// embed in two, rerank blocked in one. The parsed DOM must hold the
// cluster × release grid cell by cell, and the screenshot must show it:
// the unreachable column's red top border is drawn across it. The screenshot is
// saved in the test's temp dir, and kept in $GANTRY_SCREENSHOT_DIR when
// that is set.
func TestFleetInChromium(t *testing.T) {
	chrome := chromium(t)
	ts := httptest.NewServer((&Server{Status: fixedStatus(fleetStatus()), Metrics: NewMetrics()}).Handler())
	defer ts.Close()
	dom, _ := chrome("--dump-dom", ts.URL+"/")
	grid := section(dom, `<table id="clusters">`, "</table>")
	if grid == "" {
		t.Fatalf("no cluster grid in the DOM:\n%s", dom)
	}
	for _, want := range []string{
		`<th id="cluster-eu-1" class="cluster"><a href="/?cluster=eu-1">eu-1</a><div class="labels">region=eu, tier=prod</div>`,
		`<th id="cluster-us-1" class="cluster unreachable">`,
		`<span class="state progressing">progressing</span> <span class="replicas">×2</span> <span class="wave">wave 2</span>`,
		`<code class="version">a1b2c3d4→5f3a9c1e</code>`,
		`<td class="none unreachable"></td>`,
		`<td class="cell" data-state="blocked"`,
	} {
		if !strings.Contains(grid, want) {
			t.Errorf("the grid in the DOM lacks %q", want)
		}
	}
	// The parser kept the grid's shape: a header and three rows of four
	// cells (the release, then eu-1, eu-2, us-1).
	rows := strings.Split(grid, "<tr")[1:]
	if len(rows) != 4 {
		t.Fatalf("the grid has %d rows in the DOM, want 4", len(rows))
	}
	for _, r := range rows[1:] {
		if n := strings.Count(r, "<td"); n != 4 {
			t.Errorf("a grid row has %d cells in the DOM, want 4: %s", n, r)
		}
	}
	if !strings.Contains(dom, `<tr id="node-eu-2/gpu-a" class="cluster-first">`) || strings.Contains(dom, "<script") {
		t.Error("the node grid lacks its clusters, or the page has a script")
	}

	img, err := png.Decode(bytes.NewReader(screenshot(t, chrome, "fleet.png", ts.URL+"/", "--window-size=1280,1400")))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	// The unreachable column's 3px top border, #cf222e, is the one long
	// run of that red: text in it is short and antialiased.
	run, longest := 0, 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		run = 0
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r>>8 == 0xcf && g>>8 == 0x22 && bl>>8 == 0x2e {
				run++
				longest = max(longest, run)
			} else {
				run = 0
			}
		}
	}
	if longest < 100 {
		t.Errorf("the screenshot's longest run of the unreachable column's red is %dpx: the grid did not draw", longest)
	}
	t.Logf("the unreachable column's border: %dpx wide", longest)
}

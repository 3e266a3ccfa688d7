package server

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile"
	"github.com/gantry-dev/gantry/schedule"
)

type fixedStatus reconcile.Status

func (f fixedStatus) Status() reconcile.Status { return reconcile.Status(f) }

func sampleStatus() reconcile.Status {
	return reconcile.Status{
		Revision: "0123456789abcdef0123", Time: time.Now().Add(-5 * time.Second), Duration: 1200 * time.Millisecond, Phase: "success",
		Releases: []reconcile.ReleaseStatus{
			{Name: "chat", State: reconcile.StateSynced, Reason: "up to date", Image: "r/chat:ck-1", Digest: "sha256:abcdef0123456789", Replicas: 3, GPUsPerReplica: 1,
				Placement: schedule.Placement{"gpu-a": 2, "gpu-b": 1}},
			{Name: "embed", State: reconcile.StateBlocked, Reason: "release embed: blocked by gate: relative RMSE 0.2 exceeds max_error 0.1", Image: "r/embed:ck-2", Replicas: 1},
		},
		Nodes: []reconcile.NodeUse{
			{Name: "gpu-a", Pool: "a100", GPUs: 8, Used: 1, Releases: map[string]int{"chat": 2}},
			{Name: "gpu-b", Pool: "l4", GPUs: 4, Releases: map[string]int{"chat": 1}},
		},
		Plan: &planner.Plan{FormatVersion: "1", Actions: []planner.Action{}},
	}
}

func newTestServer(t *testing.T) (*Server, *httptest.Server, *int) {
	t.Helper()
	triggered := 0
	s := &Server{Status: fixedStatus(sampleStatus()), Metrics: NewMetrics(), WebhookSecret: []byte("s3cret-hook"), Trigger: func() { triggered++ }}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ts, &triggered
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestStatusPageAndAPI(t *testing.T) {
	s, ts, _ := newTestServer(t)
	code, page := get(t, ts.URL+"/")
	if code != 200 {
		t.Fatalf("GET / = %d", code)
	}
	for _, want := range []string{
		`id="revision">0123456789ab<`,
		`<tr id="release-embed">`, `data-state="blocked"`, "exceeds max_error 0.1",
		// grid: gpu-a has chat 2 GPUs, 1 used by others, 8 - 1 - 2 = 5 free.
		`<tr id="node-gpu-a">`, `<td class="num used">2</td>`, `<td class="num">5</td><td class="num">8</td>`,
		"No changes.",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	code, body := get(t, ts.URL+"/api/status")
	var st reconcile.Status
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || len(st.Releases) != 2 || st.Nodes[0].Releases["chat"] != 2 {
		t.Errorf("/api/status = %d %s", code, body)
	}
	if code, _ := get(t, ts.URL+"/readyz"); code != 503 {
		t.Errorf("readyz before ready = %d", code)
	}
	s.SetReady(true)
	if code, _ := get(t, ts.URL+"/readyz"); code != 200 {
		t.Errorf("readyz = %d", code)
	}
	if code, _ := get(t, ts.URL+"/healthz"); code != 200 {
		t.Errorf("healthz = %d", code)
	}
}

func post(t *testing.T, url string, headers map[string]string, body string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func sign(secret, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func TestWebhook(t *testing.T) {
	var logs bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(&logs, nil)))
	defer slog.SetDefault(prev)

	s, ts, triggered := newTestServer(t)
	hook := ts.URL + "/hooks/git"
	body := `{"ref":"refs/heads/main"}`
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    int
	}{
		{"github ok", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": sign("s3cret-hook", body)}, 202},
		{"github bad signature", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": sign("wrong", body)}, 401},
		{"github no signature", map[string]string{"X-GitHub-Event": "push"}, 401},
		{"github ping", map[string]string{"X-GitHub-Event": "ping", "X-Hub-Signature-256": sign("s3cret-hook", body)}, 204},
		{"gitlab ok", map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "s3cret-hook"}, 202},
		{"gitlab bad token", map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "s3cret-hooK"}, 401},
		{"unknown provider", map[string]string{}, 401},
	} {
		if got := post(t, hook, tc.headers, body); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	if *triggered != 2 {
		t.Errorf("triggered %d fetches, want 2", *triggered)
	}
	if got := testutil.ToFloat64(s.Metrics.webhooks.WithLabelValues("github", "unauthorized")); got != 2 {
		t.Errorf("github unauthorized count = %v", got)
	}
	if got := testutil.ToFloat64(s.Metrics.webhooks.WithLabelValues("gitlab", "accepted")); got != 1 {
		t.Errorf("gitlab accepted count = %v", got)
	}
	if strings.Contains(logs.String(), "s3cret") {
		t.Errorf("the webhook secret reached the logs:\n%s", logs.String())
	}
	// No secret configured: every hook is refused.
	open := httptest.NewServer((&Server{Status: fixedStatus(sampleStatus())}).Handler())
	defer open.Close()
	if got := post(t, open.URL+"/hooks/git", map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": ""}, body); got != 401 {
		t.Errorf("no secret configured: %d", got)
	}
	if code, _ := get(t, hook); code != 405 {
		t.Errorf("GET /hooks/git = %d", code)
	}
}

func TestMetrics(t *testing.T) {
	for _, perRelease := range []bool{false, true} {
		s, ts, _ := newTestServer(t)
		s.Metrics.PerRelease = perRelease
		s.Metrics.Reconciled("success", time.Second, "abc")
		s.Metrics.Reconciled("error", time.Second, "def")
		s.Metrics.Quantized("chat", 100)
		s.Metrics.Pushed("chat", 100)
		s.Metrics.FetchError(nil)
		s.Metrics.Releases(sampleStatus().Releases)
		_, body := get(t, ts.URL+"/metrics")
		want := []string{
			`gantry_reconcile_total{result="success"} 1`,
			`gantry_revision_info{revision="def"} 1`,
			`gantry_releases{state="blocked"} 1`,
			`gantry_releases{state="synced"} 1`,
			`gantry_releases{state="failed"} 0`,
			`gantry_git_fetch_errors_total 1`,
			`gantry_reconcile_duration_seconds_count{result="error"} 1`,
		}
		absent := []string{`revision="abc"`}
		if perRelease {
			want = append(want,
				`gantry_release_state{release="embed",state="blocked"} 1`,
				`gantry_release_state{release="embed",state="synced"} 0`,
				`gantry_quantized_bytes_total{release="chat"} 100`,
				`gantry_pushed_bytes_total{release="chat"} 100`)
		} else {
			want = append(want, `gantry_quantized_bytes_total{release=""} 100`, `gantry_pushed_bytes_total{release=""} 100`)
			absent = append(absent, `gantry_release_state{`, `release="chat"`)
		}
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("per-release %v: /metrics lacks %q", perRelease, w)
			}
		}
		for _, a := range absent {
			if strings.Contains(body, a) {
				t.Errorf("per-release %v: /metrics has %q", perRelease, a)
			}
		}
	}
}

// The default /api/status is what it was, with total and counts added:
// clients (gantry's daemon test, scripts) read every release from it.
func TestAPIStatusDefaultAndOneRelease(t *testing.T) {
	_, ts, _ := newTestServer(t)
	code, body := get(t, ts.URL+"/api/status")
	var m map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &m) != nil {
		t.Fatalf("/api/status = %d %s", code, body)
	}
	for _, k := range []string{"revision", "time", "duration_ns", "phase", "releases", "nodes", "plan", "total", "counts"} {
		if _, ok := m[k]; !ok {
			t.Errorf("/api/status lacks %q", k)
		}
	}
	if !strings.Contains(body, `"state": "synced"`) || len(m["releases"].([]any)) != 2 || len(m["nodes"].([]any)) != 2 || m["total"] != 2.0 {
		t.Errorf("/api/status: %s", body)
	}

	code, body = get(t, ts.URL+"/api/status?release=embed")
	var one apiStatus
	// embed has no placement: no node hosts it.
	if code != 200 || json.Unmarshal([]byte(body), &one) != nil || len(one.Releases) != 1 || one.Releases[0].State != "blocked" ||
		len(one.Nodes) != 0 || one.Counts["synced"] != 1 {
		t.Errorf("?release=embed = %d %s", code, body)
	}
	if code, body := get(t, ts.URL+"/api/status?release=emb"); code != 404 || !strings.Contains(body, `"error":"release \"emb\" not found"`) {
		t.Errorf("?release=emb = %d %s", code, body)
	}

	_, page := get(t, ts.URL+"/?release=chat")
	if !strings.Contains(page, `<tr id="release-chat">`) || strings.Contains(page, `<tr id="release-embed">`) || !strings.Contains(page, `id="clear"`) {
		t.Errorf("/?release=chat shows other releases, or no way back")
	}
}

// A sharded daemon's page says which shard it is and what it owns, and
// names the objects it refused to prune.
func TestStatusPageShard(t *testing.T) {
	st := sampleStatus()
	st.Shard = &reconcile.ShardStatus{Index: 1, Count: 3, Releases: []string{"chat", "embed"}, Others: 7,
		NotPruned: []string{"Deployment/llm/old-gpu-a (0-of-2)"}}
	_, page := get(t, httptestURL(t, st)+"/")
	for _, want := range []string{`id="shard">Shard 1 of 3: 2 releases here, 7 on other shards.`, "Deployment/llm/old-gpu-a (0-of-2)"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	_, page = get(t, httptestURL(t, sampleStatus())+"/")
	if strings.Contains(page, `id="shard"`) {
		t.Error("an unsharded daemon's page shows a shard")
	}
}

func httptestURL(t *testing.T, st reconcile.Status) string {
	t.Helper()
	ts := httptest.NewServer((&Server{Status: fixedStatus(st), Metrics: NewMetrics()}).Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

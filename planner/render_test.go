package planner_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/gantry-dev/gantry/planner"
)

// renderAll renders p in every view, text with and without color.
func renderAll(t *testing.T, p *planner.Plan) (text, js, md string) {
	t.Helper()
	var tb, cb, jb, mb bytes.Buffer
	if err := planner.WriteText(&tb, p, planner.TextOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := planner.WriteText(&cb, p, planner.TextOptions{Color: true}); err != nil {
		t.Fatal(err)
	}
	if err := planner.WriteJSON(&jb, p); err != nil {
		t.Fatal(err)
	}
	if err := planner.WriteMarkdown(&mb, p, 0); err != nil {
		t.Fatal(err)
	}
	return tb.String() + cb.String(), jb.String(), mb.String()
}

// TestURLCredentialsNeverRendered plants credentials in URLs whose names
// do not look secret, in every place a value reaches a plan: env values and
// args of a new object, a changed env value, the model source a quantize
// action names. No rendering may show them; the rest of the URL stays.
func TestURLCredentialsNeverRendered(t *testing.T) {
	cfg := quickstart(t)
	r := &cfg.Releases[0]
	r.Runtime.Env = map[string]string{"DATABASE_URL": "postgres://app:pw_PLANTED_1@db/x", "LOG": "info"}
	r.Runtime.Args = append(r.Runtime.Args, "--hub", "https://user:tok_PLANTED_2@hub.example.com/models")
	g := &cfg.Releases[1]
	g.Model.Source = "https://ci:PLANTED_3@models.example.com/tiny.gguf"

	// A first plan creates everything.
	p := build(t, cfg, planner.Observed{})
	text, js, md := renderAll(t, &p)
	for view, out := range map[string]string{"text": text, "json": js, "markdown": md} {
		if strings.Contains(out, "PLANTED") {
			t.Errorf("%s plan shows a credential:\n%s", view, out)
		}
	}
	if !strings.Contains(js, "postgres://***@db/x") || !strings.Contains(js, "https://***@hub.example.com/models") {
		t.Errorf("masked URLs lost their host:\n%s", js)
	}
	if !strings.Contains(text, "quantize https://***@models.example.com/tiny.gguf") {
		t.Errorf("quantize subject not masked as expected:\n%s", text)
	}
	// The plan itself, a value, still holds what it will apply.
	if b, _ := json.Marshal(p); !strings.Contains(string(b), "pw_PLANTED_1") {
		t.Error("masking changed the plan it was given")
	}

	// Then the world has it, and the URL changes: once only its password,
	// once its host too.
	w := newWorld(t)
	w.apply(cfg, build(t, cfg, w.observed(cfg)))
	for _, tc := range []struct {
		name, dsn, want string
	}{
		{"password only", "postgres://app:pw_PLANTED_4@db/x", `env[0].value: (sensitive) -> (sensitive)`},
		{"host too", "postgres://app:pw_PLANTED_5@db2/x", `env[0].value: "postgres://***@db/x" -> "postgres://***@db2/x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := cfg
			cfg.Releases = append(cfg.Releases[:0:0], cfg.Releases...)
			cfg.Releases[0].Runtime.Env = map[string]string{"DATABASE_URL": tc.dsn, "LOG": "info"}
			p := build(t, cfg, w.observed(cfg))
			if p.Empty() {
				t.Fatal("no update planned")
			}
			text, js, md := renderAll(t, &p)
			for view, out := range map[string]string{"text": text, "json": js, "markdown": md} {
				if strings.Contains(out, "PLANTED") {
					t.Errorf("%s plan shows a credential:\n%s", view, out)
				}
			}
			if !strings.Contains(text, tc.want) || !strings.Contains(md, tc.want) {
				t.Errorf("change not shown as %s:\n%s", tc.want, text)
			}
		})
	}
}

// TestNoChangesOnce: an empty plan says "No changes." once, and no line of
// zeros after it.
func TestNoChangesOnce(t *testing.T) {
	cfg := quickstart(t)
	w := newWorld(t)
	w.apply(cfg, build(t, cfg, w.observed(cfg)))
	p := build(t, cfg, w.observed(cfg))
	if !p.Empty() {
		t.Fatalf("plan has %d actions", len(p.Actions))
	}
	var text, md bytes.Buffer
	if err := planner.WriteText(&text, &p, planner.TextOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := planner.WriteMarkdown(&md, &p, 0); err != nil {
		t.Fatal(err)
	}
	for view, out := range map[string]string{"text": text.String(), "markdown": md.String()} {
		if n := strings.Count(out, "No changes."); n != 1 {
			t.Errorf("%s says No changes. %d times:\n%s", view, n, out)
		}
		if strings.Contains(out, "0 to add") || strings.Contains(out, "Build:") {
			t.Errorf("%s adds a summary to an empty plan:\n%s", view, out)
		}
	}
	golden(t, "empty.txt", text.String())
	golden(t, "empty.md", md.String())
}

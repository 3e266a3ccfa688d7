package spec

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestSetRolloutPositionGolden runs SetRolloutPosition on each release of
// testdata/rollout/position.in.hcl and compares the results with the
// golden files beside it (refresh with -update). Lines outside the edited
// rollout block must stay byte for byte, comments included.
func TestSetRolloutPositionGolden(t *testing.T) {
	dir := filepath.Join("testdata", "rollout")
	src := readFile(t, filepath.Join(dir, "position.in.hcl"))
	for _, tc := range []struct {
		release string
		step    int
		version string
		// changed are the only input lines (trimmed) that may differ,
		// when the line count stays; nil when lines are added.
		changed []string
	}{
		{release: "fresh", step: 1, version: "3f2a1c9d"},
		{release: "moving", step: 2, version: "3f2a1c9d", changed: []string{
			`step    = 1          # promoted by gantry`,
			`version = "00000000" /* the old canary */`,
		}},
		{release: "oneline", step: 1, version: "abcdef01"},
		{release: "half", step: 3, version: "0123abcd"},
	} {
		t.Run(tc.release, func(t *testing.T) {
			got, err := SetRolloutPosition(src, tc.release, tc.version, tc.step)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join(dir, "position-"+tc.release+".golden"), string(got))
			want := "step=" + strconv.Itoa(tc.step) + ` version="` + tc.version + `"`
			checkPositionEdit(t, src, got, tc.release, want, tc.changed,
				[]string{"# canary first", "# no position yet", "// one pod", "# promoted by gantry", "/* the old canary */"},
				[]string{"fresh", "moving", "oneline", "half", "norollout"},
				func(b []byte) ([]byte, error) { return SetRolloutPosition(b, tc.release, tc.version, tc.step) })
		})
	}
}

// checkPositionEdit checks got, an edit of release's position in src:
// only the changed lines (trimmed) differ when changed is not nil (nil:
// lines were added), every one of comments survives, the position reads
// back as want, making the edit again (redo) is no change, and no other
// of releases changed.
func checkPositionEdit(t *testing.T, src, got []byte, release, want string, changed, comments, releases []string, redo func([]byte) ([]byte, error)) {
	t.Helper()
	if changed != nil {
		a, b := strings.Split(string(src), "\n"), strings.Split(string(got), "\n")
		if len(a) != len(b) {
			t.Fatalf("line count %d -> %d, want unchanged", len(a), len(b))
		}
		allowed := map[string]bool{}
		for _, c := range changed {
			allowed[c] = true
		}
		for i := range a {
			if a[i] != b[i] && !allowed[strings.TrimSpace(a[i])] {
				t.Errorf("line %d changed: %q -> %q", i+1, a[i], b[i])
			}
		}
	}
	for _, c := range comments {
		if !bytes.Contains(got, []byte(c)) {
			t.Errorf("comment %q lost", c)
		}
	}
	p, ok, err := ReleasePartsOf(got, "x.hcl", release)
	if err != nil || !ok {
		t.Fatalf("ReleasePartsOf: %v %v", ok, err)
	}
	if p.Position != want {
		t.Errorf("Position = %q, want %q", p.Position, want)
	}
	again, err := redo(got)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(string(got), string(again)); d != "" {
		t.Errorf("second edit changed the file (-first +second):\n%s", d)
	}
	for _, other := range releases {
		if other == release {
			continue
		}
		before, _, _ := ReleasePartsOf(src, "x.hcl", other)
		after, _, _ := ReleasePartsOf(got, "x.hcl", other)
		if before != after {
			t.Errorf("release %s changed: %+v -> %+v", other, before, after)
		}
	}
}

func TestRolloutPositionParts(t *testing.T) {
	src := readFile(t, filepath.Join("testdata", "rollout", "position.in.hcl"))
	for release, want := range map[string]string{
		"fresh":     "",
		"moving":    `step=1 version="00000000"`,
		"oneline":   "",
		"half":      "step=1",
		"norollout": "",
	} {
		p, ok, err := ReleasePartsOf(src, "position.in.hcl", release)
		if err != nil || !ok {
			t.Fatalf("%s: %v %v", release, ok, err)
		}
		if p.Position != want {
			t.Errorf("%s: Position = %q, want %q", release, p.Position, want)
		}
	}
	// Spacing is not a change of position.
	p, _, _ := ReleasePartsOf(bytes.ReplaceAll(src, []byte(`step    = 1  `), []byte(`step=1`)), "x.hcl", "moving")
	if p.Position != `step=1 version="00000000"` {
		t.Errorf("re-spaced Position = %q", p.Position)
	}
}

func TestSetRolloutPositionErrors(t *testing.T) {
	src := readFile(t, filepath.Join("testdata", "rollout", "position.in.hcl"))
	for _, tc := range []struct {
		name, src, release, version string
		step                        int
		want                        string
	}{
		{"missing release", string(src), "nope", "3f2a1c9d", 1, `release "nope": not defined in this file`},
		{"no rollout block", string(src), "norollout", "3f2a1c9d", 1, `release "norollout": no rollout block`},
		{"step 0", string(src), "fresh", "3f2a1c9d", 0, "rollout step must be at least 1, got 0"},
		{"bad version", string(src), "fresh", "3F2A1C9D", 1, `rollout version must be 8 lowercase hex digits, got "3F2A1C9D"`},
		{"short version", string(src), "fresh", "3f2a", 1, "8 lowercase hex digits"},
		{"broken file", "release \"x\" {", "x", "3f2a1c9d", 1, "parse spec.hcl"},
		{"two rollout blocks", "release \"x\" {\n  rollout {\n  }\n  rollout {\n  }\n}\n", "x", "3f2a1c9d", 1, "more than one rollout block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := SetRolloutPosition([]byte(tc.src), tc.release, tc.version, tc.step)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// Small shapes of rollout blocks: empty, one-line, brace after a comment.
func TestSetRolloutPositionShapes(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{
			"empty one-line",
			"release \"x\" {\n  rollout {}\n}\n",
			"release \"x\" {\n  rollout {\n    step = 2\n    version = \"3f2a1c9d\"\n  }\n}\n",
		},
		{
			"one-line with step",
			"release \"x\" {\n  rollout { step = 1 } # keep\n}\n",
			"release \"x\" {\n  rollout {\n    step = 2\n    version = \"3f2a1c9d\"\n  } # keep\n}\n",
		},
		{
			"empty multi-line",
			"release \"x\" {\n  rollout {\n  }\n}\n",
			"release \"x\" {\n  rollout {\n    step = 2\n    version = \"3f2a1c9d\"\n  }\n}\n",
		},
		{
			"result would not parse",
			"release \"x\" {\n  rollout {\n    step = 1; version = \"00000000\"\n  }\n}\n",
			"",
		},
		{
			"crlf",
			"release \"x\" {\r\n  rollout {\r\n    version = \"00000000\"\r\n  }\r\n}\r\n",
			"release \"x\" {\r\n  rollout {\r\n    version = \"3f2a1c9d\"\r\n    step = 2\r\n  }\r\n}\r\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SetRolloutPosition([]byte(tc.in), "x", "3f2a1c9d", 2)
			if tc.want == "" {
				if err == nil {
					t.Errorf("no error for input that does not parse, got %q", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, string(got)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

// FuzzSetRolloutPosition edits arbitrary files: an edit either fails or
// gives a file that parses, reads back as the position written, and
// keeps every byte before the rollout block.
func FuzzSetRolloutPosition(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "rollout", "position.in.hcl")); err == nil {
		f.Add(b, "moving", 2)
	}
	f.Add([]byte("release \"x\" {\n  rollout { steps = [] }\n}\n"), "x", 1)
	f.Add([]byte("release \"x\" {\r\n\trollout {\r\n\t\tstep = 1 # c\r\n\t}\r\n}\r\n"), "x", 3)
	f.Fuzz(func(t *testing.T, src []byte, release string, step int) {
		out, err := SetRolloutPosition(src, release, "3f2a1c9d", step)
		if err == nil {
			checkFuzzedEdit(t, src, out, release, "step="+strconv.Itoa(step)+` version="3f2a1c9d"`)
		}
	})
}

// checkFuzzedEdit checks out, a position edit of release in src that
// succeeded: it reads back as the position want, and every byte before
// the rollout block's opening brace stays.
func checkFuzzedEdit(t *testing.T, src, out []byte, release, want string) {
	t.Helper()
	p, ok, err := ReleasePartsOf(out, "out.hcl", release)
	if err != nil || !ok {
		t.Fatalf("edited file: %v %v", ok, err)
	}
	if p.Position != want {
		t.Errorf("Position = %q, want %q", p.Position, want)
	}
	blk, _, _ := findRelease(src, "in.hcl", release)
	ro := firstBlock(blk.Body, "rollout")
	if at := ro.OpenBraceRange.End.Byte; !bytes.Equal(src[:at], out[:at]) {
		t.Errorf("bytes before the rollout block changed")
	}
}

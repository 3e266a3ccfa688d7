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

// TestSetRolloutWaveGolden runs SetRolloutWave on each release of
// testdata/rollout/wave.in.hcl and compares the results with the golden
// files beside it (refresh with -update). Only the position's lines may
// change, and every comment stays.
func TestSetRolloutWaveGolden(t *testing.T) {
	dir := filepath.Join("testdata", "rollout")
	src := readFile(t, filepath.Join(dir, "wave.in.hcl"))
	releases := []string{"fresh", "moving", "oneline", "half"}
	for _, tc := range []struct {
		release    string
		wave, step int
		version    string
		changed    []string // the only input lines that may differ, when the line count stays
	}{
		{release: "fresh", wave: 1, step: 1, version: "3f2a1c9d"},
		{release: "moving", wave: 2, step: 1, version: "3f2a1c9d", changed: []string{
			`wave    = 1          # promoted by gantry`,
			`step    = 2          # the last step of the wave`,
			`version = "00000000" /* the old canary */`,
		}},
		{release: "oneline", wave: 1, step: 1, version: "abcdef01"},
		{release: "half", wave: 3, step: 1, version: "0123abcd"},
	} {
		t.Run(tc.release, func(t *testing.T) {
			got, err := SetRolloutWave(src, tc.release, tc.version, tc.wave, tc.step)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join(dir, "wave-"+tc.release+".golden"), string(got))
			want := "wave=" + strconv.Itoa(tc.wave) + " step=" + strconv.Itoa(tc.step) + ` version="` + tc.version + `"`
			checkPositionEdit(t, src, got, tc.release, want, tc.changed,
				[]string{"# staging first", "# no position yet", "// one pod", "# a wave of its own", "# promoted by gantry", "# the last step of the wave", "/* the old canary */"},
				releases,
				func(b []byte) ([]byte, error) { return SetRolloutWave(b, tc.release, tc.version, tc.wave, tc.step) })
			// A step promotion inside the wave keeps the wave.
			next, err := SetRolloutPosition(got, tc.release, tc.version, tc.step+1)
			if err != nil {
				t.Fatal(err)
			}
			p, _, _ := ReleasePartsOf(next, "x.hcl", tc.release)
			if want := "wave=" + strconv.Itoa(tc.wave) + " step=" + strconv.Itoa(tc.step+1) + ` version="` + tc.version + `"`; p.Position != want {
				t.Errorf("after SetRolloutPosition: Position = %q, want %q", p.Position, want)
			}
		})
	}
}

// The wave is part of the position a history walker compares.
func TestRolloutWavePositionParts(t *testing.T) {
	src := readFile(t, filepath.Join("testdata", "rollout", "wave.in.hcl"))
	for release, want := range map[string]string{
		"fresh":   "",
		"moving":  `wave=1 step=2 version="00000000"`,
		"oneline": "",
		"half":    "step=1",
	} {
		p, ok, err := ReleasePartsOf(src, "wave.in.hcl", release)
		if err != nil || !ok {
			t.Fatalf("%s: %v %v", release, ok, err)
		}
		if p.Position != want {
			t.Errorf("%s: Position = %q, want %q", release, p.Position, want)
		}
	}
	// Moving to the next wave is a change of position.
	a, _, _ := ReleasePartsOf(src, "x.hcl", "moving")
	next, err := SetRolloutWave(src, "moving", "00000000", 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := ReleasePartsOf(next, "x.hcl", "moving")
	if a.Position == b.Position {
		t.Errorf("wave 1 → 2 left Position %q", a.Position)
	}
}

func TestSetRolloutWaveErrors(t *testing.T) {
	src := string(readFile(t, filepath.Join("testdata", "rollout", "wave.in.hcl")))
	for _, tc := range []struct {
		name, src, release, version string
		wave, step                  int
		want                        string
	}{
		{"missing release", src, "nope", "3f2a1c9d", 1, 1, `release "nope": not defined in this file`},
		{"wave 0", src, "fresh", "3f2a1c9d", 0, 1, "rollout wave must be at least 1, got 0"},
		{"wave negative", src, "fresh", "3f2a1c9d", -3, 1, "rollout wave must be at least 1, got -3"},
		{"step 0", src, "fresh", "3f2a1c9d", 1, 0, "rollout step must be at least 1, got 0"},
		{"bad version", src, "fresh", "HEAD", 1, 1, `rollout version must be 8 lowercase hex digits, got "HEAD"`},
		{"no rollout block", "release \"x\" {\n}\n", "x", "3f2a1c9d", 1, 1, `release "x": no rollout block`},
		{"broken file", "release \"x\" {", "x", "3f2a1c9d", 1, 1, "parse spec.hcl"},
		{"two rollout blocks", "release \"x\" {\n  rollout {\n  }\n  rollout {\n  }\n}\n", "x", "3f2a1c9d", 1, 1, "more than one rollout block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := SetRolloutWave([]byte(tc.src), tc.release, tc.version, tc.wave, tc.step)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// Small shapes: an empty one-line block, one with an attribute, CRLF, tabs.
func TestSetRolloutWaveShapes(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{
			"empty one-line",
			"release \"x\" {\n  rollout {}\n}\n",
			"release \"x\" {\n  rollout {\n    wave = 2\n    step = 1\n    version = \"3f2a1c9d\"\n  }\n}\n",
		},
		{
			"one-line with waves",
			"release \"x\" {\n  rollout { waves = [[\"a\"], [\"b\"]] } # keep\n}\n",
			"release \"x\" {\n  rollout {\n    waves = [[\"a\"], [\"b\"]]\n    wave = 2\n    step = 1\n    version = \"3f2a1c9d\"\n  } # keep\n}\n",
		},
		{
			"crlf, version there",
			"release \"x\" {\r\n  rollout {\r\n    version = \"00000000\"\r\n  }\r\n}\r\n",
			"release \"x\" {\r\n  rollout {\r\n    version = \"3f2a1c9d\"\r\n    wave = 2\r\n    step = 1\r\n  }\r\n}\r\n",
		},
		{
			"tabs, wave there",
			"release \"x\" {\n\trollout {\n\t\twave = 1 # w\n\t}\n}\n",
			"release \"x\" {\n\trollout {\n\t\twave = 2 # w\n\t\tstep = 1\n\t\tversion = \"3f2a1c9d\"\n\t}\n}\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SetRolloutWave([]byte(tc.in), "x", "3f2a1c9d", 2, 1)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, string(got)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

// A wave promotion of the fleet example loads, at the position written.
func TestSetRolloutWaveLoads(t *testing.T) {
	src := readFile(t, filepath.Join("testdata", "fleet", "ok", "main.hcl"))
	out, err := SetRolloutWave(src, "chat", "0badcafe", 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	cfg, diags := loadRollout(t, string(out))
	if diags.HasErrors() {
		t.Fatal(renderDiags(t, cfg.Files, diags))
	}
	r, _ := cfg.Release("chat")
	if ro := r.Rollout; *ro.Wave != 3 || *ro.Step != 1 || ro.Version != "0badcafe" {
		t.Errorf("position: wave %d step %d version %q", *ro.Wave, *ro.Step, ro.Version)
	}
	if !bytes.Contains(out, []byte("wave       = 3     # promoted by gantry")) {
		t.Errorf("the wave line lost its comment or alignment:\n%s", out)
	}
}

// FuzzSetRolloutWave edits arbitrary files: an edit either fails or gives
// a file that parses, reads back as the position written, and keeps
// every byte before the rollout block.
func FuzzSetRolloutWave(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "rollout", "wave.in.hcl")); err == nil {
		f.Add(b, "moving", 2, 1)
	}
	if b, err := os.ReadFile(filepath.Join("testdata", "fleet", "ok", "main.hcl")); err == nil {
		f.Add(b, "chat", 3, 1)
	}
	f.Add([]byte("release \"x\" {\n  rollout { waves = [] }\n}\n"), "x", 1, 1)
	f.Add([]byte("release \"x\" {\r\n\trollout {\r\n\t\twave = 1 # c\r\n\t}\r\n}\r\n"), "x", 3, 2)
	f.Fuzz(func(t *testing.T, src []byte, release string, wave, step int) {
		out, err := SetRolloutWave(src, release, "3f2a1c9d", wave, step)
		if err == nil {
			checkFuzzedEdit(t, src, out, release, "wave="+strconv.Itoa(wave)+" step="+strconv.Itoa(step)+` version="3f2a1c9d"`)
		}
	})
}

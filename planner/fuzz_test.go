package planner_test

import (
	"bytes"
	"os"
	"testing"

	"github.com/gantry-dev/gantry/planner"
)

// FuzzReadJSON: a saved plan file is input from disk; reading must never
// panic, and what it accepts must render in every view.
func FuzzReadJSON(f *testing.F) {
	if b, err := os.ReadFile("testdata/quickstart.json"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(`{"format_version":"1","actions":[{"action":"update","changes":[{"path":"a","old":1}]}]}`))
	f.Add([]byte(`{"format_version":"2"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := planner.ReadJSON(bytes.NewReader(data))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := planner.WriteText(&out, p, planner.TextOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := planner.WriteMarkdown(&out, p, 0); err != nil {
			t.Fatal(err)
		}
		if err := planner.WriteJSON(&out, p); err != nil {
			t.Fatal(err)
		}
	})
}

package spec

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const messy = `# keep this comment
release "chat" {
    replicas=3
  model {
  source = "m.gguf" # and this one
      format="gguf"
  }
}
`

func TestFormatFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "main.hcl")
	writeFile(t, path, messy)
	writeFile(t, filepath.Join(dir, "ok.hcl"), "node_pool \"a\" {}\n")

	res, diags, err := FormatFiles(context.Background(), dir, false)
	if err != nil || diags.HasErrors() {
		t.Fatal(err, diags)
	}
	var changed []string
	for _, r := range res {
		if r.Changed() {
			changed = append(changed, filepath.Base(r.Path))
		}
	}
	if strings.Join(changed, ",") != "main.hcl" {
		t.Fatalf("changed = %v", changed)
	}
	if b, _ := os.ReadFile(path); string(b) != messy {
		t.Fatal("check mode wrote the file")
	}
	golden(t, filepath.Join("testdata", "fmt.diff.golden"), UnifiedDiff("main.hcl", res[0].Original, res[0].Formatted))

	if _, _, err := FormatFiles(context.Background(), dir, true); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	golden(t, filepath.Join("testdata", "fmt.golden"), string(got))
	if !strings.Contains(string(got), "# keep this comment") || !strings.Contains(string(got), "# and this one") {
		t.Error("comments lost")
	}
	// Formatting is idempotent.
	res, _, _ = FormatFiles(context.Background(), dir, false)
	for _, r := range res {
		if r.Changed() {
			t.Errorf("%s changes on a second pass", r.Path)
		}
	}
}

func TestFormatRefusesBrokenSource(t *testing.T) {
	if _, diags := Format("x.hcl", []byte("release \"a\" {\n")); !diags.HasErrors() {
		t.Fatal("formatted a file that does not parse")
	}
}

func TestUnifiedDiff(t *testing.T) {
	a := "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n"
	b := "1\n2\nthree\n4\n5\n6\n7\n8\n9\n10\n11\n12\n13\n"
	got := UnifiedDiff("f", []byte(a), []byte(b))
	want := `--- old/f
+++ new/f
@@ -1,6 +1,6 @@
 1
 2
-3
+three
 4
 5
 6
@@ -10,3 +10,4 @@
 10
 11
 12
+13
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if UnifiedDiff("f", []byte(a), []byte(a)) != "" {
		t.Error("diff of equal inputs")
	}
}

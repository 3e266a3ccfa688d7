package spec

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
)

// WriteDiagnostics prints diags with hcl.NewDiagnosticTextWriter, adding
// what that writer leaves out: the column, as file:line:col (which editors
// and CI annotations can jump to), and a caret line under the subject.
func WriteDiagnostics(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics, width uint, color bool) error {
	for _, d := range diags {
		var buf bytes.Buffer
		if err := hcl.NewDiagnosticTextWriter(&buf, files, width, color).WriteDiagnostic(d); err != nil {
			return err
		}
		out := buf.String()
		if s := d.Subject; s != nil {
			out = strings.Replace(out,
				fmt.Sprintf("  on %s line %d", s.Filename, s.Start.Line),
				fmt.Sprintf("  on %s:%d:%d", s.Filename, s.Start.Line, s.Start.Column), 1)
			out = addCaret(out, files[s.Filename], *s)
		}
		if _, err := io.WriteString(w, out); err != nil {
			return err
		}
	}
	return nil
}

// addCaret inserts a line of carets under the subject's first source line.
func addCaret(out string, f *hcl.File, s hcl.Range) string {
	if f == nil {
		return out
	}
	lines := bytes.Split(f.Bytes, []byte("\n"))
	if s.Start.Line < 1 || s.Start.Line > len(lines) {
		return out
	}
	src := lines[s.Start.Line-1]
	prefix := fmt.Sprintf("%4d: ", s.Start.Line)
	i := strings.Index(out, "\n"+prefix)
	if i < 0 {
		return out
	}
	end := strings.IndexByte(out[i+1:], '\n')
	if end < 0 {
		return out
	}
	at := i + 1 + end + 1
	// Keep tabs before the column so the caret lines up under them.
	var pad strings.Builder
	col := 1
	for _, r := range string(src) {
		if col >= s.Start.Column {
			break
		}
		if r == '\t' {
			pad.WriteByte('\t')
		} else {
			pad.WriteByte(' ')
		}
		col++
	}
	n := 1
	if s.End.Line == s.Start.Line && s.End.Column > s.Start.Column {
		n = s.End.Column - s.Start.Column
	} else if s.End.Line != s.Start.Line {
		n = max(1, utf8.RuneCount(src)-(s.Start.Column-1))
	}
	caret := strings.Repeat(" ", len(prefix)) + pad.String() + strings.Repeat("^", n) + "\n"
	return out[:at] + caret + out[at:]
}

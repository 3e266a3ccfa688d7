package spec

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// WriteDiagnostics prints diags with hcl.NewDiagnosticTextWriter, adding
// what that writer leaves out: the column, as file:line:col (which editors
// and CI annotations can jump to), and a caret line under the subject.
//
// Secrets are masked on the way: the source lines it shows have the values
// of secret-looking attributes and the user information of URLs replaced by
// '*' (see maskSource), and so do the variable values hcl adds ("with
// var.x as ...") and the detail text.
func WriteDiagnostics(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics, width uint, color bool) error {
	files = maskedFiles(files)
	for _, d := range diags {
		d = maskedDiagnostic(d)
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

// maskedDiagnostic is a copy of d without secrets in its text or in the
// values hcl prints beside it.
func maskedDiagnostic(d *hcl.Diagnostic) *hcl.Diagnostic {
	c := *d
	c.Summary = MaskURLCredentials(c.Summary)
	c.Detail = MaskURLCredentials(c.Detail)
	c.EvalContext = maskedEvalContext(c.EvalContext)
	return &c
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

// unclosedSummary is what hcl says when a file ends inside a block.
const unclosedSummary = "Unclosed configuration block"

// unclosedBlock points at the block whose closing brace is most likely the
// missing one. hcl matches braces by count, so a missing "}" in a nested
// block is taken from its parent, the parent's from the grandparent, and
// hcl reports the outermost block, often far from the mistake. Indentation
// tells where the person meant each block to end: a "}" that starts a line
// less indented than the line that opened its block belongs to an outer
// block. The last block so mismatched (or, without one, the innermost block
// still open at the end of the file) is the likely culprit. It returns nil
// when that is the block hcl already reports.
func unclosedBlock(filename string, src []byte, reported hcl.Range) *hcl.Diagnostic {
	toks, _ := hclsyntax.LexConfig(src, filename, hcl.InitialPos)
	type open struct {
		tok    hclsyntax.Token
		indent int
	}
	var (
		stack   []open
		suspect *open
		closer  hclsyntax.Token // the brace that closed suspect, if any
	)
	for _, t := range toks {
		switch t.Type {
		case hclsyntax.TokenOBrace, hclsyntax.TokenTemplateInterp, hclsyntax.TokenTemplateControl:
			stack = append(stack, open{tok: t, indent: indentOf(src, t.Range.Start.Byte)})
		case hclsyntax.TokenCBrace, hclsyntax.TokenTemplateSeqEnd:
			if len(stack) == 0 {
				continue
			}
			o := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			first := indentOf(src, t.Range.Start.Byte) == t.Range.Start.Column-1
			if t.Range.Start.Line != o.tok.Range.Start.Line && first && t.Range.Start.Column-1 < o.indent &&
				(suspect == nil || o.tok.Range.Start.Byte > suspect.tok.Range.Start.Byte) {
				suspect, closer = &o, t
			}
		}
	}
	if len(stack) > 0 {
		if last := stack[len(stack)-1]; suspect == nil || last.tok.Range.Start.Byte > suspect.tok.Range.Start.Byte {
			suspect, closer = &last, hclsyntax.Token{}
		}
	}
	if suspect == nil || suspect.tok.Range.Start.Byte == reported.Start.Byte {
		return nil
	}
	r := suspect.tok.Range
	what := "This block"
	if h := blockHeader(src, r); h != "" {
		what = "This " + h + " block"
	}
	detail := fmt.Sprintf("%s, opened at %s:%d:%d, is never closed", what, filename, r.Start.Line, r.Start.Column)
	if closer.Type != 0 {
		detail += fmt.Sprintf(". hcl matched it with the \"}\" at %s:%d:%d, but that brace is indented like an outer block, so the \"}\" of this one is probably missing.", filename, closer.Range.Start.Line, closer.Range.Start.Column)
	} else {
		detail += " before the end of the file."
	}
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Missing closing brace", Detail: detail, Subject: r.Ptr()}
}

// indentOf is the number of blank bytes that start the line holding
// offset.
func indentOf(src []byte, offset int) int {
	start := bytes.LastIndexByte(src[:min(offset, len(src))], '\n') + 1
	n := 0
	for start+n < len(src) && (src[start+n] == ' ' || src[start+n] == '\t') {
		n++
	}
	return n
}

// blockHeader is the text before an opening brace on its line when that is
// a block header (release "chat", runtime), or "" for an object value
// (env = {) or anything else.
func blockHeader(src []byte, brace hcl.Range) string {
	if brace.Start.Byte >= len(src) || src[brace.Start.Byte] != '{' {
		return ""
	}
	start := bytes.LastIndexByte(src[:brace.Start.Byte], '\n') + 1
	h := strings.TrimSpace(string(src[start:brace.Start.Byte]))
	if h == "" || strings.ContainsAny(h, "=:({[") || len(h) > 80 {
		return ""
	}
	return h
}

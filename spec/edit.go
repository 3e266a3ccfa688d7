package spec

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

// Programmatic edits of spec files. Gantry writes its own decisions back
// to Git as ordinary commits, so an edit must touch only what it changes:
// comments, ordering and formatting of the rest of the file stay byte for
// byte, and the diff a reviewer sees is one line (scale) or the release's
// rollout blocks (rollback).

// RolloutBlocks are the blocks of a release whose change is a rollout,
// the ones a rollback restores.
var RolloutBlocks = []string{"model", "runtime", "quantize"}

// ReleaseFile returns the *.hcl file below root (in Files order) that
// defines the release.
func ReleaseFile(root, release string) (string, error) {
	files, err := Files(root)
	if err != nil {
		return "", err
	}
	for _, p := range files {
		src, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		if _, ok, _ := findRelease(src, p, release); ok {
			return p, nil
		}
	}
	return "", fmt.Errorf("release %q: not defined in any *.hcl file below %s", release, root)
}

// ReleaseParts is what history comparisons look at in one release block.
type ReleaseParts struct {
	// Replicas is the source text of the replicas expression ("" when the
	// attribute is absent).
	Replicas string
	// Rollout is the release's model, runtime and quantize blocks, each
	// canonically formatted, so that a whitespace-only edit is no change.
	Rollout string
}

// ReleasePartsOf finds the release in one file's source. ok is false when
// the file does not define it; an error means the file does not parse.
func ReleasePartsOf(src []byte, filename, release string) (parts ReleaseParts, ok bool, err error) {
	blk, ok, err := findRelease(src, filename, release)
	if !ok {
		return ReleaseParts{}, false, err
	}
	if a, ok := blk.Body.Attributes["replicas"]; ok {
		parts.Replicas = string(bytes.TrimSpace(a.Expr.Range().SliceBytes(src)))
	}
	var b bytes.Buffer
	for _, typ := range RolloutBlocks {
		if inner := firstBlock(blk.Body, typ); inner != nil {
			b.Write(hclwrite.Format(inner.Range().SliceBytes(src)))
			b.WriteByte('\n')
		}
	}
	parts.Rollout = b.String()
	return parts, true, nil
}

// SetReplicas sets replicas = n in the release's block of src. The new
// value's tokens come from hclwrite and replace exactly the old
// expression's bytes, found by parsing; when the attribute is absent, a
// line is added before the block's closing brace. hclwrite's own
// File.Bytes is not used on the whole file because it re-spaces some
// lines it did not change (a line comment after an aligned attribute that
// is followed by a block comment, for one).
func SetReplicas(src []byte, release string, n int) ([]byte, error) {
	if n < 0 {
		return nil, fmt.Errorf("release %q: replicas cannot be negative, got %d", release, n)
	}
	blk, ok, err := findRelease(src, "spec.hcl", release)
	if err != nil {
		return nil, fmt.Errorf("release %q: %w", release, err)
	}
	if !ok {
		return nil, fmt.Errorf("release %q: not defined in this file", release)
	}
	value := hclwrite.TokensForValue(cty.NumberIntVal(int64(n))).Bytes()
	var start, end int
	if a, ok := blk.Body.Attributes["replicas"]; ok {
		r := a.Expr.Range()
		start, end = r.Start.Byte, r.End.Byte
	} else {
		// Start of the closing brace's line, indented one level deeper
		// than the block.
		end = blk.CloseBraceRange.Start.Byte
		for end > 0 && (src[end-1] == ' ' || src[end-1] == '\t') {
			end--
		}
		start = end
		indent := lineIndent(src, blk.TypeRange.Start.Byte) + "  "
		if end == 0 || src[end-1] != '\n' {
			indent = "\n" + indent // "release "x" { }" on one line
		}
		value = append(append([]byte(indent+"replicas = "), value...), '\n')
	}
	out := make([]byte, 0, len(src)+len(value))
	out = append(append(append(out, src[:start]...), value...), src[end:]...)
	if _, diags := hclsyntax.ParseConfig(out, "edited.hcl", hcl.InitialPos); diags.HasErrors() {
		return nil, fmt.Errorf("release %q: edited file does not parse: %s", release, diags.Error())
	}
	return out, nil
}

// RestoreRelease returns current with the release's model, runtime and
// quantize blocks replaced by their text in previous (an earlier revision
// of the file defining the release). A block that previous lacks is
// removed; one that only previous has is added after the model block.
// Everything else, the release's replicas and autoscale included, stays
// byte for byte: a rollback reverts what was rolled out, not what the
// autoscaler decided since.
func RestoreRelease(current, previous []byte, release string) ([]byte, error) {
	cur, ok, err := findRelease(current, "current.hcl", release)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("release %q: not defined in the current file", release)
	}
	prev, ok, err := findRelease(previous, "previous.hcl", release)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("release %q: not defined in the previous file", release)
	}
	type splice struct {
		start, end int
		text       []byte
	}
	var edits []splice
	model := firstBlock(cur.Body, "model")
	for _, typ := range RolloutBlocks {
		c, p := firstBlock(cur.Body, typ), firstBlock(prev.Body, typ)
		switch {
		case c != nil && p != nil:
			r := c.Range()
			edits = append(edits, splice{r.Start.Byte, r.End.Byte, p.Range().SliceBytes(previous)})
		case c != nil:
			start, end := wholeLines(current, c.Range())
			edits = append(edits, splice{start, end, nil})
		case p != nil && model != nil:
			at := model.Range().End.Byte
			indent := lineIndent(current, model.Range().Start.Byte)
			text := append([]byte("\n\n"+indent), p.Range().SliceBytes(previous)...)
			edits = append(edits, splice{at, at, text})
		case p != nil:
			return nil, fmt.Errorf("release %q: the current file has no model block to restore %s after", release, typ)
		}
	}
	// Apply from the end so that earlier offsets stay valid.
	out := append([]byte(nil), current...)
	sort.Slice(edits, func(i, j int) bool { return edits[i].start < edits[j].start })
	for i := len(edits) - 1; i >= 0; i-- {
		e := edits[i]
		out = append(out[:e.start:e.start], append(append([]byte(nil), e.text...), out[e.end:]...)...)
	}
	if _, diags := hclsyntax.ParseConfig(out, "restored.hcl", hcl.InitialPos); diags.HasErrors() {
		return nil, fmt.Errorf("release %q: restored file does not parse: %s", release, diags.Error())
	}
	return out, nil
}

// findRelease parses src and returns the release block named release.
func findRelease(src []byte, filename, release string) (*hclsyntax.Block, bool, error) {
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, false, fmt.Errorf("parse %s: %s", filename, diags.Error())
	}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		return nil, false, nil
	}
	for _, b := range body.Blocks {
		if b.Type == "release" && len(b.Labels) == 1 && b.Labels[0] == release {
			return b, true, nil
		}
	}
	return nil, false, nil
}

func firstBlock(body *hclsyntax.Body, typ string) *hclsyntax.Block {
	for _, b := range body.Blocks {
		if b.Type == typ {
			return b
		}
	}
	return nil
}

// wholeLines widens r to the lines it covers (their indentation and the
// final newline) and, when that leaves two blank lines in a row, one of
// them.
func wholeLines(src []byte, r hcl.Range) (int, int) {
	start, end := r.Start.Byte, r.End.Byte
	for start > 0 && (src[start-1] == ' ' || src[start-1] == '\t') {
		start--
	}
	if end < len(src) && src[end] == '\n' {
		end++
	}
	blankBefore := start >= 2 && src[start-1] == '\n' && src[start-2] == '\n'
	if blankBefore && end < len(src) && src[end] == '\n' {
		end++
	}
	return start, end
}

// lineIndent is the whitespace that starts the line holding offset.
func lineIndent(src []byte, offset int) string {
	i := offset
	for i > 0 && src[i-1] != '\n' {
		i--
	}
	j := i
	for j < len(src) && (src[j] == ' ' || src[j] == '\t') {
		j++
	}
	return string(src[i:j])
}

// RelPath is path relative to root with forward slashes, as Git names it.
func RelPath(root, path string) (string, error) {
	rel, err := filepath.Rel(root, path)
	if err != nil {
		return "", err
	}
	return filepath.ToSlash(rel), nil
}

package spec

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

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
	// Position is the rollout block's wave, step and version attributes,
	// each canonically formatted (`step=2 version="3f2a1c9d"`, or
	// `wave=2 step=1 version="3f2a1c9d"` with waves), so that a walker of
	// history sees when a promotion moved the rollout; "" when the
	// release has no rollout block or none of them.
	Position string
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
	parts.Position = rolloutPosition(src, blk)
	return parts, true, nil
}

// rolloutPosition is ReleaseParts.Position of a release block.
func rolloutPosition(src []byte, blk *hclsyntax.Block) string {
	ro := firstBlock(blk.Body, "rollout")
	if ro == nil {
		return ""
	}
	var fields []string
	for _, name := range []string{"wave", "step", "version"} {
		if a, ok := ro.Body.Attributes[name]; ok {
			text := bytes.TrimSpace(hclwrite.Format(bytes.TrimSpace(a.Expr.Range().SliceBytes(src))))
			fields = append(fields, name+"="+string(text))
		}
	}
	return strings.Join(fields, " ")
}

// SetRolloutPosition sets step = step and version = "version" in the
// rollout block of the release's block in src: the position a promotion
// commit records. Like SetReplicas it replaces exactly the bytes of an
// old expression; an absent attribute gets a line before the rollout
// block's closing brace, indented one level deeper than the block (a
// one-line rollout block is opened onto lines for that). Every other
// byte, comments included, stays. step must be at least 1 and version
// eight lowercase hex digits, as Load requires.
func SetRolloutPosition(src []byte, release, version string, step int) ([]byte, error) {
	if err := checkPosition(release, version, step); err != nil {
		return nil, err
	}
	return setRolloutAttrs(src, release, []rolloutAttr{
		{"step", cty.NumberIntVal(int64(step))},
		{"version", cty.StringVal(version)},
	})
}

// SetRolloutWave sets wave = wave, step = step and version = "version"
// in the rollout block of the release's block in src, in one edit: the
// position a wave promotion commit records (the rollout of version is
// at step step of wave wave, both 1-based). It edits as
// SetRolloutPosition does, and an absent attribute's line is added in
// the order wave, step, version. wave and step must be at least 1.
func SetRolloutWave(src []byte, release, version string, wave, step int) ([]byte, error) {
	if wave < 1 {
		return nil, fmt.Errorf("release %q: rollout wave must be at least 1, got %d", release, wave)
	}
	if err := checkPosition(release, version, step); err != nil {
		return nil, err
	}
	return setRolloutAttrs(src, release, []rolloutAttr{
		{"wave", cty.NumberIntVal(int64(wave))},
		{"step", cty.NumberIntVal(int64(step))},
		{"version", cty.StringVal(version)},
	})
}

// checkPosition checks a position's step and version as Load does.
func checkPosition(release, version string, step int) error {
	if step < 1 {
		return fmt.Errorf("release %q: rollout step must be at least 1, got %d", release, step)
	}
	if !isRolloutVersion(version) {
		return fmt.Errorf("release %q: rollout version must be 8 lowercase hex digits, got %q", release, version)
	}
	return nil
}

// rolloutAttr is an attribute of a rollout block and the value an edit
// gives it.
type rolloutAttr struct {
	name  string
	value cty.Value
}

// setRolloutAttrs sets attrs in the rollout block of the release's block
// in src, as SetRolloutPosition describes.
func setRolloutAttrs(src []byte, release string, attrs []rolloutAttr) ([]byte, error) {
	blk, ok, err := findRelease(src, "spec.hcl", release)
	if err != nil {
		return nil, fmt.Errorf("release %q: %w", release, err)
	}
	if !ok {
		return nil, fmt.Errorf("release %q: not defined in this file", release)
	}
	var ro *hclsyntax.Block
	for _, b := range blk.Body.Blocks {
		if b.Type != "rollout" {
			continue
		}
		if ro != nil {
			return nil, fmt.Errorf("release %q: more than one rollout block (%s and %s)", release, ro.DefRange(), b.DefRange())
		}
		ro = b
	}
	if ro == nil {
		return nil, fmt.Errorf("release %q: no rollout block", release)
	}
	var edits []splice
	var added []string // absent attributes' lines, without indentation
	for _, kv := range attrs {
		value := hclwrite.TokensForValue(kv.value).Bytes()
		if a, ok := ro.Body.Attributes[kv.name]; ok {
			r := a.Expr.Range()
			edits = append(edits, splice{r.Start.Byte, r.End.Byte, value})
		} else {
			added = append(added, kv.name+" = "+string(value))
		}
	}
	if len(added) > 0 {
		indent := lineIndent(src, ro.TypeRange.Start.Byte)
		inner := indent + "  "
		if strings.HasSuffix(indent, "\t") {
			inner = indent + "\t" // a file indented with tabs stays so
		}
		nl := "\n"
		if bytes.Contains(src, []byte("\r\n")) {
			nl = "\r\n"
		}
		var lines strings.Builder
		for _, l := range added {
			lines.WriteString(inner + l + nl)
		}
		open, closing := ro.OpenBraceRange.End.Byte, ro.CloseBraceRange.Start.Byte
		if !bytes.Contains(src[open:closing], []byte("\n")) {
			// A one-line block holds one attribute at most: put its body
			// on a line of its own, then the new lines, then the brace.
			first, last := open, closing
			for first < last && (src[first] == ' ' || src[first] == '\t') {
				first++
			}
			for last > first && (src[last-1] == ' ' || src[last-1] == '\t') {
				last--
			}
			if first == last {
				edits = append(edits, splice{open, closing, []byte(nl + lines.String() + indent)})
			} else {
				edits = append(edits,
					splice{open, first, []byte(nl + inner)},
					splice{last, closing, []byte(nl + lines.String() + indent)})
			}
		} else {
			// Start of the closing brace's line.
			end := closing
			for end > 0 && (src[end-1] == ' ' || src[end-1] == '\t') {
				end--
			}
			text := lines.String()
			if end == 0 || src[end-1] != '\n' {
				text = nl + text
			}
			edits = append(edits, splice{end, end, []byte(text)})
		}
	}
	out := applySplices(src, edits)
	if _, diags := hclsyntax.ParseConfig(out, "edited.hcl", hcl.InitialPos); diags.HasErrors() {
		return nil, fmt.Errorf("release %q: edited file does not parse: %s", release, diags.Error())
	}
	return out, nil
}

// isRolloutVersion reports whether s is a rollout version as Gantry
// writes it: eight lowercase hex digits (planner.Version).
func isRolloutVersion(s string) bool {
	if len(s) != 8 {
		return false
	}
	for _, c := range []byte(s) {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
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
	out := applySplices(current, edits)
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

// splice replaces the bytes [start, end) of a source with text.
type splice struct {
	start, end int
	text       []byte
}

// applySplices returns src with the edits made, in order of start (those
// at one offset in the order given); the edits do not overlap.
func applySplices(src []byte, edits []splice) []byte {
	sort.SliceStable(edits, func(i, j int) bool { return edits[i].start < edits[j].start })
	out := make([]byte, 0, len(src)+64)
	at := 0
	for _, e := range edits {
		out = append(append(out, src[at:e.start]...), e.text...)
		at = e.end
	}
	return append(out, src[at:]...)
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

package planner

import (
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"

	"github.com/gantry-dev/gantry/spec"
)

// TextOptions changes the text view.
type TextOptions struct {
	Color bool // ANSI colors, for a terminal
}

const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiGreen  = "\x1b[32m"
	ansiYellow = "\x1b[33m"
	ansiRed    = "\x1b[31m"
	ansiCyan   = "\x1b[36m"
)

type painter bool

func (p painter) paint(code, s string) string {
	if !p {
		return s
	}
	return code + s + ansiReset
}

func (p painter) action(t ActionType) string {
	switch t {
	case Create:
		return p.paint(ansiGreen, "+")
	case Update:
		return p.paint(ansiYellow, "~")
	case Delete:
		return p.paint(ansiRed, "-")
	}
	return p.paint(ansiCyan, "*")
}

// WriteText renders the plan for a person, in the manner of terraform plan.
// Like every rendering it shows Masked(p), never a secret.
func WriteText(w io.Writer, p *Plan, opts TextOptions) error {
	p = Masked(p)
	c := painter(opts.Color)
	var b strings.Builder
	if p.Empty() {
		b.WriteString(c.paint(ansiBold, "No changes.") + " The cluster matches the specs")
		if p.Revision != "" {
			fmt.Fprintf(&b, " at %s", revisionText(p))
		}
		b.WriteString(".\n")
	} else {
		b.WriteString("Gantry will perform the following actions")
		if p.Revision != "" {
			fmt.Fprintf(&b, " for revision %s", revisionText(p))
		}
		b.WriteString(":\n")
		b.WriteString("  (" + c.paint(ansiCyan, "*") + " build, " + c.paint(ansiGreen, "+") + " create, " + c.paint(ansiYellow, "~") + " update, " + c.paint(ansiRed, "-") + " destroy)\n")
		release, cluster := "\x00", ""
		for _, a := range byCluster(p.Actions) {
			if a.Cluster != cluster {
				cluster, release = a.Cluster, "\x00"
				fmt.Fprintf(&b, "\n  %s\n", c.paint(ansiBold, "## cluster "+a.Cluster))
			}
			if a.Release != release {
				release = a.Release
				fmt.Fprintf(&b, "\n  %s\n", c.paint(ansiBold, "# release "+a.Release))
			}
			writeTextAction(&b, c, a)
		}
	}
	if len(p.Releases) > 0 {
		b.WriteString("\nPlacement:\n")
		width := 0
		for _, r := range p.Releases {
			width = max(width, len(r.Name))
		}
		for _, r := range p.Releases {
			fmt.Fprintf(&b, "  %-*s  %s\n", width, r.Name, placementString(r))
			for _, cp := range r.Clusters {
				fmt.Fprintf(&b, "  %-*s    %s\n", width, "", clusterPlacementString(cp))
			}
		}
	}
	if lines := rolloutsText(p); len(lines) > 0 {
		b.WriteString("\nRollouts:\n")
		for _, l := range lines {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	for _, wmsg := range p.Warnings {
		fmt.Fprintf(&b, "\n%s %s\n", c.paint(ansiYellow+ansiBold, "Warning:"), wmsg)
	}
	// "No changes." above says it all; a line of zeros would say it twice.
	if !p.Empty() {
		s := p.Summary()
		fmt.Fprintf(&b, "\n%s\n", c.paint(ansiBold, fmt.Sprintf("Plan: %d to add, %d to change, %d to destroy.", s.Add, s.Change, s.Destroy)))
		if s.Quantize+s.Gate+s.Push+s.Fuse+s.Eval > 0 {
			fmt.Fprintf(&b, "Build: %s.\n", buildCounts(s))
		}
		if s.Mirror > 0 {
			copies := "copies"
			if s.Mirror == 1 {
				copies = "copy"
			}
			fmt.Fprintf(&b, "Mirror: %d image %s into registry mirrors.\n", s.Mirror, copies)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeTextAction(b *strings.Builder, c painter, a Action) {
	if a.Type.IsBuild() {
		fmt.Fprintf(b, "  %s %s %s\n", c.action(a.Type), a.Type, a.Subject)
	} else {
		fmt.Fprintf(b, "  %s %s\n", c.action(a.Type), a.Subject)
	}
	fmt.Fprintf(b, "      %s\n", a.Reason)
	switch a.Type {
	case Create:
		for _, kv := range highlights(a.Object) {
			fmt.Fprintf(b, "      %s %s = %s\n", c.paint(ansiGreen, "+"), kv[0], kv[1])
		}
	case Update:
		for _, ch := range a.Changes {
			if ch.Old == nil {
				fmt.Fprintf(b, "      %s %s = %s\n", c.paint(ansiGreen, "+"), ch.Path, fmtValue(ch.New, ch.Sensitive))
				continue
			}
			fmt.Fprintf(b, "      %s %s: %s -> %s\n", c.paint(ansiYellow, "~"), ch.Path, fmtValue(ch.Old, ch.Sensitive), fmtValue(ch.New, ch.Sensitive))
		}
	}
}

// highlights are the fields of a new object a reviewer wants to see.
func highlights(o *Object) [][2]string {
	if o == nil {
		return nil
	}
	var out [][2]string
	add := func(label string, v any) {
		if v != nil {
			out = append(out, [2]string{label, fmtValue(v, false)})
		}
	}
	spec, _ := o.Manifest["spec"].(map[string]any)
	switch o.Kind {
	case "Deployment":
		add("replicas", spec["replicas"])
		add("node", shardNode(*o))
		tpl, _ := spec["template"].(map[string]any)
		pod, _ := tpl["spec"].(map[string]any)
		containers, _ := pod["containers"].([]any)
		for _, ci := range containers {
			cm, _ := ci.(map[string]any)
			add(fmt.Sprintf("container %v image", cm["name"]), cm["image"])
			if res, ok := cm["resources"].(map[string]any); ok {
				if lim, ok := res["limits"].(map[string]any); ok {
					add("gpus", lim[GPUResource])
				}
			}
		}
		vols, _ := pod["volumes"].([]any)
		for _, vi := range vols {
			vm, _ := vi.(map[string]any)
			if img, ok := vm["image"].(map[string]any); ok {
				add("model image", img["reference"])
			}
		}
	case "Service":
		if ports, ok := spec["ports"].([]any); ok && len(ports) > 0 {
			pm, _ := ports[0].(map[string]any)
			add("port", pm["port"])
		}
	}
	return out
}

// fmtValue renders a JSON-shaped value compactly. Sensitive values are
// never shown, nor the credentials of a URL.
func fmtValue(v any, sensitive bool) string {
	if sensitive {
		return Redacted
	}
	switch t := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("%q", spec.MaskURLCredentials(t))
	}
	b, err := json.Marshal(maskValue(v))
	if err != nil {
		return spec.MaskURLCredentials(fmt.Sprint(v))
	}
	return string(b)
}

func placementString(r ReleasePlan) string {
	nodes := sortedKeys(r.Placement)
	var parts []string
	total := 0
	for _, n := range nodes {
		mark := ""
		if slices.Contains(r.ImageLocal, n) {
			mark = "*"
		}
		parts = append(parts, fmt.Sprintf("%s×%d%s", n, r.Placement[n], mark))
		total += r.Placement[n]
	}
	s := fmt.Sprintf("%d/%d replicas", total, r.Replicas)
	if len(parts) > 0 {
		s += ": " + strings.Join(parts, ", ")
	}
	if len(r.ImageLocal) > 0 {
		s += " (* model image already on the node)"
	}
	if r.Unplaced != nil {
		s += fmt.Sprintf(" (%d unplaced)", r.Unplaced.Count)
	}
	if len(r.Moving) > 0 {
		s += " (kept until replaced: " + strings.Join(r.Moving, ", ") + ")"
	}
	return s
}

// byCluster orders a fleet plan's actions for reading: the builds (no
// cluster) first, then cluster by cluster, each in plan order (release
// by release). A plan without clusters stays as it is.
func byCluster(actions []Action) []Action {
	out := slices.Clone(actions)
	slices.SortStableFunc(out, func(a, b Action) int { return strings.Compare(a.Cluster, b.Cluster) })
	return out
}

// clusterPlacementString is one cluster's line under a release's
// placement in a fleet.
func clusterPlacementString(cp ClusterPlan) string {
	if cp.Unreachable != "" {
		return fmt.Sprintf("%s: unreachable (%s); left as it is", cp.Name, cp.Unreachable)
	}
	var parts []string
	for _, n := range sortedKeys(cp.Placement) {
		parts = append(parts, fmt.Sprintf("%s×%d", n, cp.Placement[n]))
	}
	s := fmt.Sprintf("%s: %s", cp.Name, plural(cp.Replicas, "replica"))
	if len(parts) > 0 {
		s += " on " + strings.Join(parts, ", ")
	}
	if cp.Wave > 0 {
		s += fmt.Sprintf(" (wave %d", cp.Wave)
		if cp.Rollout != nil {
			s += ", " + cp.Rollout.Phase
		}
		s += ")"
	}
	return s
}

func shortRev(r string) string {
	if len(r) > 12 {
		return r[:12]
	}
	return r
}

// WriteJSON renders the plan as indented JSON in the documented schema.
// Map keys are sorted, so the output is stable. It writes Masked(p): a saved
// plan never carries a secret either.
func WriteJSON(w io.Writer, p *Plan) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(Masked(p))
}

// Masked returns the copy of p that every rendering shows, so that a plan
// printed, posted on a pull request or saved never carries a secret:
//   - changes marked Sensitive, and env entries with secret-looking names
//     inside objects, become Redacted (secret_env is rendered as a
//     secretKeyRef and carries no value to begin with);
//   - the user information of every URL in any string (subjects, reasons,
//     warnings, image references, object fields, changed values) becomes
//     "***", as in "postgres://***@db/x", whatever the field is named;
//   - a change that only the credentials of a URL make is Sensitive, since
//     masked it would read as no change at all.
//
// p is not modified. A saved plan holds masked values; compare a fresh
// plan with it through Masked too.
func Masked(p *Plan) *Plan {
	q := *p
	q.Warnings = maskStrings(p.Warnings)
	if p.Releases != nil {
		q.Releases = make([]ReleasePlan, len(p.Releases))
		for i, r := range p.Releases {
			r.Image = spec.MaskURLCredentials(r.Image)
			q.Releases[i] = r
		}
	}
	if p.Actions != nil {
		q.Actions = make([]Action, len(p.Actions))
	}
	for i, a := range p.Actions {
		a.Subject = spec.MaskURLCredentials(a.Subject)
		a.Reason = spec.MaskURLCredentials(a.Reason)
		if a.Object != nil {
			o := *a.Object
			if m, ok := maskValue(o.Manifest).(map[string]any); ok {
				o.Manifest = m
			}
			a.Object = &o
		}
		if len(a.Changes) > 0 {
			cs := make([]FieldChange, len(a.Changes))
			for j, c := range a.Changes {
				if !c.Sensitive {
					old, new := maskValue(c.Old), maskValue(c.New)
					// Only credentials changed: say that a hidden value
					// changed, not that nothing did.
					c.Sensitive = c.Old != nil && reflect.DeepEqual(old, new) && !reflect.DeepEqual(c.Old, c.New)
					c.Old, c.New = old, new
				}
				if c.Sensitive {
					if c.Old != nil {
						c.Old = Redacted
					}
					c.New = Redacted
				}
				cs[j] = c
			}
			a.Changes = cs
		}
		q.Actions[i] = a
	}
	return &q
}

func maskStrings(in []string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = spec.MaskURLCredentials(s)
	}
	return out
}

// maskValue deep-copies a JSON-shaped value, replacing the value of
// secret-looking env entries with Redacted and the user information of URLs
// in strings with "***".
func maskValue(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = maskValue(e)
		}
		if name, ok := t["name"].(string); ok && spec.LooksSecret(name) {
			if _, ok := t["value"]; ok {
				out["value"] = Redacted
			}
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = maskValue(e)
		}
		return out
	case string:
		return spec.MaskURLCredentials(t)
	}
	return v
}

// Redacted replaces a secret value in rendered plans.
const Redacted = "(sensitive)"

// ReadJSON reads a plan written by WriteJSON (gantry plan -out).
func ReadJSON(r io.Reader) (*Plan, error) {
	var p Plan
	dec := json.NewDecoder(r)
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("read plan: %w", err)
	}
	if p.FormatVersion != FormatVersion {
		return nil, fmt.Errorf("read plan: format_version %q, this gantry reads %q", p.FormatVersion, FormatVersion)
	}
	return &p, nil
}

// MarkdownLimit is GitHub's limit on the length of a comment.
const MarkdownLimit = 65536

// WriteMarkdown renders the plan for a pull-request comment. Each release's
// details fold into <details>; when the whole would pass limit characters
// (MarkdownLimit when 0), details are cut, last release first, and a note
// says what was cut.
func WriteMarkdown(w io.Writer, p *Plan, limit int) error {
	p = Masked(p)
	if limit <= 0 {
		limit = MarkdownLimit
	}
	s := p.Summary()
	var head strings.Builder
	head.WriteString("### Gantry plan")
	if p.Revision != "" {
		fmt.Fprintf(&head, " for `%s`", shortRev(p.Revision))
		if p.Uncommitted {
			head.WriteString(" + uncommitted changes")
		}
	}
	head.WriteString("\n\n")
	if p.Empty() {
		head.WriteString("**No changes.** The cluster matches the specs.\n")
	} else {
		fmt.Fprintf(&head, "**Plan: %d to add, %d to change, %d to destroy.**", s.Add, s.Change, s.Destroy)
		if s.Quantize+s.Gate+s.Push+s.Fuse+s.Eval > 0 {
			fmt.Fprintf(&head, " Build: %s.", buildCounts(s))
		}
		head.WriteString("\n")
	}
	// The head is budgeted too, so that a plan with thousands of releases
	// still leaves room for details: at most 20 warnings, and table rows
	// up to a third of the limit.
	const maxWarnings = 20
	for i, wmsg := range p.Warnings {
		if i == maxWarnings {
			fmt.Fprintf(&head, "\n> [!WARNING]\n> ...and %d more warnings; run `gantry plan` to see them all.\n", len(p.Warnings)-maxWarnings)
			break
		}
		fmt.Fprintf(&head, "\n> [!WARNING]\n> %s\n", mdEscape(wmsg))
	}
	if len(p.Releases) > 0 {
		head.WriteString("\n| Release | Replicas | Placement | Model image |\n|---|---|---|---|\n")
		for i, r := range p.Releases {
			if head.Len() > limit/3 {
				fmt.Fprintf(&head, "| ...and %d more releases | | | |\n", len(p.Releases)-i)
				break
			}
			img := r.Image
			if r.Digest != "" {
				img += "@" + short(r.Digest)
			}
			fmt.Fprintf(&head, "| `%s` | %d | %s | `%s` |\n", r.Name, r.Replicas, mdEscape(placementString(r)), img)
		}
	}

	rolloutHead := false
	for _, r := range p.Releases {
		lines := rolloutText(r)
		if len(lines) == 0 || head.Len() > limit/3 {
			continue
		}
		if !rolloutHead {
			head.WriteString("\n**Rollouts**\n\n```\n")
			rolloutHead = true
		}
		for _, l := range lines {
			head.WriteString(strings.ReplaceAll(l, "```", "ʼʼʼ") + "\n")
		}
	}
	if rolloutHead {
		head.WriteString("```\n")
	}

	// One folded section per release, in plan order.
	type section struct{ release, body string }
	var sections []section
	idx := map[string]int{}
	for _, a := range p.Actions {
		i, ok := idx[a.Release]
		if !ok {
			i = len(sections)
			idx[a.Release] = i
			sections = append(sections, section{release: a.Release})
		}
		var b strings.Builder
		writeTextAction(&b, painter(false), a)
		// Unindented, so that GitHub colors + and - lines in a diff block.
		for _, line := range strings.SplitAfter(b.String(), "\n") {
			sections[i].body += strings.TrimPrefix(line, "  ")
		}
	}
	render := func(sec section) string {
		counts := map[ActionType]int{}
		for _, a := range p.Actions {
			if a.Release == sec.release {
				counts[a.Type]++
			}
		}
		var parts []string
		for _, t := range []ActionType{Fuse, Quantize, Gate, Eval, Push, Prestage, Create, Update, Delete} {
			if counts[t] > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", counts[t], t))
			}
		}
		return fmt.Sprintf("\n<details><summary><code>%s</code>: %s</summary>\n\n```diff\n%s```\n\n</details>\n",
			sec.release, strings.Join(parts, ", "), strings.ReplaceAll(sec.body, "```", "ʼʼʼ"))
	}
	body := make([]string, len(sections))
	total := head.Len()
	for i, sec := range sections {
		body[i] = render(sec)
		total += len(body[i])
	}
	const noteRoom = 400
	cut := 0
	for i := len(body) - 1; i >= 0 && total+noteRoom > limit; i-- {
		total -= len(body[i])
		stub := fmt.Sprintf("\n- `%s`: details cut\n", sections[i].release)
		body[i] = stub
		total += len(stub)
		cut++
	}
	var out strings.Builder
	out.WriteString(head.String())
	for _, b := range body {
		out.WriteString(b)
	}
	if cut > 0 {
		fmt.Fprintf(&out, "\n> [!NOTE]\n> The details of %d of %d releases were cut to stay under GitHub's %d-character comment limit. Run `gantry plan` for the full plan.\n", cut, len(sections), MarkdownLimit)
	}
	res := out.String()
	if len(res) > limit { // the summary table alone is too long
		res = res[:limit-200]
		res = res[:strings.LastIndexByte(res, '\n')+1] + "\n> [!NOTE]\n> This plan was cut to stay under GitHub's comment limit. Run `gantry plan` for the full plan.\n"
	}
	_, err := io.WriteString(w, res)
	return err
}

func mdEscape(s string) string {
	r := strings.NewReplacer("|", "\\|", "<", "&lt;", ">", "&gt;")
	return r.Replace(s)
}

// revisionText is the short revision, and says when the plan is of a
// working copy's edits rather than of the commit itself.
func revisionText(p *Plan) string {
	if p.Uncommitted {
		return shortRev(p.Revision) + " + uncommitted changes"
	}
	return shortRev(p.Revision)
}

// buildCounts is the build summary: fuse and eval counts appear only when
// a plan has them, so that plans without adapters or evals read as before.
func buildCounts(s Summary) string {
	var parts []string
	if s.Fuse > 0 {
		parts = append(parts, fmt.Sprintf("%d to fuse", s.Fuse))
	}
	parts = append(parts, fmt.Sprintf("%d to quantize", s.Quantize), fmt.Sprintf("%d to gate", s.Gate))
	if s.Eval > 0 {
		parts = append(parts, fmt.Sprintf("%d to evaluate", s.Eval))
	}
	return strings.Join(append(parts, fmt.Sprintf("%d to push", s.Push)), ", ")
}

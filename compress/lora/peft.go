package lora

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strings"
)

// PEFTConfig is the part of a PEFT adapter_config.json that Merge uses.
type PEFTConfig struct {
	// R is the default rank (r) and Alpha the default lora_alpha.
	R     int
	Alpha float64
	// RSLoRA is use_rslora: the scaling is Alpha/√r instead of Alpha/r.
	RSLoRA bool
	// FanInFanOut is fan_in_fan_out: the base stores the weights
	// transposed, (in, out), as GPT-2's Conv1D does.
	FanInFanOut bool
	// TargetModules is the list form of target_modules; TargetRegex the
	// string form (a regular expression the module name must match
	// whole); AllLinear is target_modules = "all-linear". All are empty
	// when target_modules is null.
	TargetModules []string
	TargetRegex   string
	AllLinear     bool
	// LayersToTransform restricts a list of target_modules to these layer
	// indices (nil: all layers).
	LayersToTransform []int
	// RankPattern and AlphaPattern are the per-module overrides, in the
	// file's order (PEFT uses the first key that matches).
	RankPattern  []RankOverride
	AlphaPattern []AlphaOverride
	// ModulesToSave lists the modules whose full tensors the adapter saves
	// and which replace the base's.
	ModulesToSave []string
}

// RankOverride is one rank_pattern entry.
type RankOverride struct {
	Pattern string
	R       int
	re      *regexp.Regexp
}

// AlphaOverride is one alpha_pattern entry.
type AlphaOverride struct {
	Pattern string
	Alpha   float64
	re      *regexp.Regexp
}

// ConfigError is an error in adapter_config.json. Its message names the
// field and the position but never the value of a string field: configs
// are written by hand and values may hold anything, including secrets.
type ConfigError struct {
	Field  string // top-level field, "" for the document
	Offset int64  // byte offset of the value (or of the problem)
	Line   int    // 1-based
	Col    int    // 1-based, in bytes
	Msg    string
	Err    error // ErrUnsupported for a refusal, else nil
}

func (e *ConfigError) Error() string {
	s := fmt.Sprintf("adapter_config.json:%d:%d: ", e.Line, e.Col)
	if e.Field != "" {
		s += e.Field + ": "
	}
	return s + e.Msg
}

func (e *ConfigError) Unwrap() error { return e.Err }

// knownPEFTTypes are peft_type values that are not LoRA; they are named in
// the refusal (anything else is not echoed).
var knownPEFTTypes = []string{
	"ADALORA", "ADAPTION_PROMPT", "BOFT", "BONE", "C3A", "CPT", "DELORA", "FOURIERFT", "FROD", "GRALORA", "HRA", "IA3",
	"LN_TUNING", "LOHA", "LOKR", "MISS", "MULTITASK_PROMPT_TUNING", "OFT", "OSF", "P_TUNING", "PEANUT", "POLY",
	"PREFIX_TUNING", "PROMPT_TUNING", "PVERA", "RANDLORA", "ROAD", "SHIRA", "TINYLORA", "TRAINABLE_TOKENS", "UNILORA",
	"VBLORA", "VERA", "WAVEFT", "XLORA",
}

// ParsePEFTConfig parses adapter_config.json and refuses what Merge cannot
// merge exactly: other PEFT types, DoRA, QALoRA, trained biases (bias,
// lora_bias), layer replication, trainable tokens, LoRA on parameters
// (target_parameters), activated LoRA, Arrow routing, and initialisations
// that change the base weights (PiSSA, OLoRA, CorDA, LoftQ) unless they
// were converted back to plain LoRA when saved. It is pure: errors are
// *ConfigError with the line and column of the offending value.
func ParsePEFTConfig(data []byte) (PEFTConfig, error) {
	p := &cfgParser{data: data}
	fields, err := p.fields()
	if err != nil {
		return PEFTConfig{}, err
	}
	var c PEFTConfig
	get := func(name string) (json.RawMessage, int64, bool) {
		f, ok := fields[name]
		return f.raw, f.off, ok
	}
	// The type first: a LoHa config must be refused as LoHa, not for a
	// missing r.
	raw, off, ok := get("peft_type")
	if !ok {
		return c, p.errAt("peft_type", 0, nil, "missing (a PEFT adapter_config.json names its peft_type)")
	}
	var pt string
	if json.Unmarshal(raw, &pt) != nil {
		return c, p.errAt("peft_type", off, nil, "want a string")
	}
	if pt != "LORA" {
		if slices.Contains(knownPEFTTypes, pt) {
			return c, p.errAt("peft_type", off, ErrUnsupported, "%s adapters are not LoRA; only peft_type LORA can be merged", pt)
		}
		return c, p.errAt("peft_type", off, ErrUnsupported, "unsupported value; only LORA can be merged")
	}

	// Refusals: flags that change the math.
	for _, name := range []string{"use_dora", "use_qalora", "lora_bias"} {
		raw, off, ok := get(name)
		if !ok || isNull(raw) {
			continue
		}
		var b bool
		if json.Unmarshal(raw, &b) != nil {
			return c, p.errAt(name, off, nil, "want true or false")
		}
		if b {
			why := map[string]string{
				"use_dora":   "DoRA rescales every column of the merged weight by a trained magnitude; merge it with PEFT",
				"use_qalora": "QALoRA pools the input features in groups and only applies to GPTQ layers",
				"lora_bias":  "the adapter trains a bias for lora_B, which a weight merge does not carry",
			}[name]
			return c, p.errAt(name, off, ErrUnsupported, "refused: %s", why)
		}
	}
	if raw, off, ok := get("bias"); ok && !isNull(raw) {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return c, p.errAt("bias", off, nil, "want a string")
		}
		switch s {
		case "none":
		case "all", "lora_only":
			return c, p.errAt("bias", off, ErrUnsupported, "refused: %q trains the biases of the base, which are not merged; train with bias=\"none\"", s)
		default:
			return c, p.errAt("bias", off, ErrUnsupported, "unsupported value; want \"none\"")
		}
	}
	// Fields that must be absent, null, empty or false.
	for _, name := range []string{"layer_replication", "trainable_token_indices", "target_parameters", "alora_invocation_tokens", "arrow_config"} {
		raw, off, ok := get(name)
		if !ok || isEmpty(raw) {
			continue
		}
		why := map[string]string{
			"layer_replication":       "the adapter stacks copies of base layers, which changes the model's structure",
			"trainable_token_indices": "trainable tokens store rows of the embedding apart from it",
			"target_parameters":       "LoRA on bare parameters (e.g. MoE experts) is not supported",
			"alora_invocation_tokens": "activated LoRA applies only after its invocation tokens and cannot be merged",
			"arrow_config":            "Arrow routes between several LoRA experts per token and cannot be merged",
		}[name]
		return c, p.errAt(name, off, ErrUnsupported, "refused: %s", why)
	}
	if raw, off, ok := get("init_lora_weights"); ok && !isNull(raw) {
		var b bool
		var s string
		switch {
		case json.Unmarshal(raw, &b) == nil:
		case json.Unmarshal(raw, &s) == nil:
			switch {
			case s == "gaussian" || s == "eva" || s == "orthogonal":
			case s == "olora" || s == "corda" || s == "loftq" || strings.HasPrefix(s, "pissa"):
				family := map[string]string{"olora": "OLoRA", "corda": "CorDA", "loftq": "LoftQ"}[s]
				if family == "" {
					family = "PiSSA" // the value is not echoed: pissa_niter_<n> or anything after "pissa"
				}
				return c, p.errAt("init_lora_weights", off, ErrUnsupported,
					"refused: %s initialisation changes the base weights during training; save the adapter with path_initial_model_for_weight_conversion to get a plain LoRA adapter", family)
			default:
				return c, p.errAt("init_lora_weights", off, ErrUnsupported, "unsupported value")
			}
		default:
			return c, p.errAt("init_lora_weights", off, nil, "want true, false or a string")
		}
	}

	// The math.
	raw, off, ok = get("r")
	if !ok {
		c.R = 8 // PEFT's default
	} else if err := unmarshalPositiveInt(raw, &c.R); err != nil {
		return c, p.errAt("r", off, nil, "%v", err)
	}
	c.Alpha = 8
	if raw, off, ok := get("lora_alpha"); ok {
		if err := unmarshalFinite(raw, &c.Alpha); err != nil {
			return c, p.errAt("lora_alpha", off, nil, "%v", err)
		}
	}
	for _, bf := range []struct {
		name string
		dst  *bool
	}{{"use_rslora", &c.RSLoRA}, {"fan_in_fan_out", &c.FanInFanOut}} {
		raw, off, ok := get(bf.name)
		if !ok || isNull(raw) {
			continue
		}
		if json.Unmarshal(raw, bf.dst) != nil {
			return c, p.errAt(bf.name, off, nil, "want true or false")
		}
	}
	if raw, off, ok := get("target_modules"); ok && !isNull(raw) {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			if s == "all-linear" {
				c.AllLinear = true
			} else {
				if _, err := regexp.Compile(`^(?:` + s + `)$`); err != nil {
					return c, p.errAt("target_modules", off, nil, "not a regular expression Go's regexp (RE2) accepts")
				}
				c.TargetRegex = s
			}
		} else if json.Unmarshal(raw, &c.TargetModules) != nil {
			return c, p.errAt("target_modules", off, nil, "want a list of module names or a regular expression")
		}
	}
	if raw, off, ok := get("layers_to_transform"); ok && !isNull(raw) {
		var one int
		if json.Unmarshal(raw, &one) == nil {
			c.LayersToTransform = []int{one}
		} else if json.Unmarshal(raw, &c.LayersToTransform) != nil {
			return c, p.errAt("layers_to_transform", off, nil, "want a layer index or a list of them")
		}
		if c.TargetRegex != "" || c.AllLinear {
			return c, p.errAt("layers_to_transform", off, nil, "only applies to a list of target_modules")
		}
	}
	if raw, off, ok := get("modules_to_save"); ok && !isNull(raw) {
		if json.Unmarshal(raw, &c.ModulesToSave) != nil {
			return c, p.errAt("modules_to_save", off, nil, "want a list of module names")
		}
	}
	for _, pf := range []string{"rank_pattern", "alpha_pattern"} {
		raw, off, ok := get(pf)
		if !ok || isNull(raw) {
			continue
		}
		entries, err := orderedObject(raw)
		if err != nil {
			return c, p.errAt(pf, off, nil, "want an object of module patterns to numbers")
		}
		for i, e := range entries {
			re, err := regexp.Compile(`^(?:.*\.)?(?:` + e.key + `)$`)
			if err != nil {
				return c, p.errAt(pf, off, nil, "key %d is not a regular expression Go's regexp (RE2) accepts", i+1)
			}
			if pf == "rank_pattern" {
				var r int
				if err := unmarshalPositiveInt(e.val, &r); err != nil {
					return c, p.errAt(pf, off, nil, "value %d: %v", i+1, err)
				}
				c.RankPattern = append(c.RankPattern, RankOverride{Pattern: e.key, R: r, re: re})
			} else {
				var a float64
				if err := unmarshalFinite(e.val, &a); err != nil {
					return c, p.errAt(pf, off, nil, "value %d: %v", i+1, err)
				}
				c.AlphaPattern = append(c.AlphaPattern, AlphaOverride{Pattern: e.key, Alpha: a, re: re})
			}
		}
	}
	return c, nil
}

// RankAlpha returns the rank and alpha PEFT uses for the module (its name
// in the base model, e.g. "model.layers.0.self_attn.q_proj"): the first
// rank_pattern and alpha_pattern keys whose regular expression matches the
// end of the name at a dot boundary, else r and lora_alpha.
func (c *PEFTConfig) RankAlpha(module string) (int, float64) {
	r, a := c.R, c.Alpha
	for _, o := range c.RankPattern {
		if o.matches(module) {
			r = o.R
			break
		}
	}
	for _, o := range c.AlphaPattern {
		if o.matches(module) {
			a = o.Alpha
			break
		}
	}
	return r, a
}

// Scaling is s in W' = W + s·B·A for the module: alpha/r, or alpha/√r
// with use_rslora.
func (c *PEFTConfig) Scaling(module string) (rank int, s float64) {
	r, a := c.RankAlpha(module)
	if c.RSLoRA {
		return r, a / math.Sqrt(float64(r))
	}
	return r, a / float64(r)
}

func (o *RankOverride) matches(m string) bool {
	if o.re == nil {
		o.re = regexp.MustCompile(`^(?:.*\.)?(?:` + o.Pattern + `)$`)
	}
	return o.re.MatchString(m)
}

func (o *AlphaOverride) matches(m string) bool {
	if o.re == nil {
		o.re = regexp.MustCompile(`^(?:.*\.)?(?:` + o.Pattern + `)$`)
	}
	return o.re.MatchString(m)
}

// targets reports whether target_modules selects the module, as PEFT's
// check_target_module_exists does: a regular expression matches the whole
// name; a list entry equals the name or its dot-separated suffix.
func (c *PEFTConfig) targets(module string) bool {
	switch {
	case c.AllLinear:
		return true
	case c.TargetRegex != "":
		return regexp.MustCompile(`^(?:` + c.TargetRegex + `)$`).MatchString(module)
	}
	return slices.ContainsFunc(c.TargetModules, func(t string) bool { return moduleMatches(module, t) })
}

func moduleMatches(module, t string) bool {
	return module == t || strings.HasSuffix(module, "."+t)
}

// savedModule reports whether the module is in modules_to_save.
func (c *PEFTConfig) savedModule(module string) bool {
	return slices.ContainsFunc(c.ModulesToSave, func(t string) bool { return moduleMatches(module, t) })
}

// knownFields are the adapter_config.json fields Merge reads; only these
// names appear in errors about keys.
var knownFields = map[string]bool{
	"peft_type": true, "r": true, "lora_alpha": true, "use_rslora": true, "fan_in_fan_out": true,
	"target_modules": true, "layers_to_transform": true, "modules_to_save": true, "rank_pattern": true,
	"alpha_pattern": true, "use_dora": true, "use_qalora": true, "lora_bias": true, "bias": true,
	"layer_replication": true, "trainable_token_indices": true, "target_parameters": true,
	"alora_invocation_tokens": true, "arrow_config": true, "init_lora_weights": true,
}

type rawField struct {
	raw json.RawMessage
	off int64
}

type cfgParser struct{ data []byte }

func (p *cfgParser) errAt(field string, off int64, cause error, format string, args ...any) error {
	line, col := 1, 1
	for _, c := range p.data[:min(max(off, 0), int64(len(p.data)))] {
		if c == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return &ConfigError{Field: field, Offset: off, Line: line, Col: col, Msg: fmt.Sprintf(format, args...), Err: cause}
}

// fields splits the top-level object into raw values with their offsets.
// Duplicate keys are an error (encoding/json would keep the last silently,
// Python's json the last too, but a config that says two things is wrong).
func (p *cfgParser) fields() (map[string]rawField, error) {
	dec := json.NewDecoder(bytes.NewReader(p.data))
	dec.UseNumber()
	pos := func() int64 {
		i := dec.InputOffset()
		for i < int64(len(p.data)) {
			switch p.data[i] {
			case ' ', '\t', '\r', '\n', ':', ',':
				i++
				continue
			}
			break
		}
		return i
	}
	syntax := func(err error) error {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return p.errAt("", se.Offset, nil, "malformed JSON")
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return p.errAt("", int64(len(p.data)), nil, "unexpected end of JSON")
		}
		return p.errAt("", pos(), nil, "malformed JSON")
	}
	at := pos()
	t, err := dec.Token()
	if err != nil {
		return nil, syntax(err)
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return nil, p.errAt("", at, nil, "want a JSON object")
	}
	out := map[string]rawField{}
	for dec.More() {
		at := pos()
		t, err := dec.Token()
		if err != nil {
			return nil, syntax(err)
		}
		key, ok := t.(string)
		if !ok {
			return nil, p.errAt("", at, nil, "malformed JSON")
		}
		voff := pos()
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, syntax(err)
		}
		if _, dup := out[key]; dup {
			name := key
			if !knownFields[name] {
				name = "" // an unknown key is not echoed
			}
			return nil, p.errAt(name, at, nil, "a key appears twice")
		}
		out[key] = rawField{raw: raw, off: voff}
	}
	if _, err := dec.Token(); err != nil {
		return nil, syntax(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, p.errAt("", pos(), nil, "content after the JSON object")
	}
	return out, nil
}

func isIdent(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

type objEntry struct {
	key string
	val json.RawMessage
}

// orderedObject decodes a JSON object keeping its keys' order.
func orderedObject(raw json.RawMessage) ([]objEntry, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	t, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return nil, errors.New("not an object")
	}
	var out []objEntry
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, objEntry{key: t.(string), val: v})
	}
	return out, nil
}

func isNull(raw json.RawMessage) bool { return string(bytes.TrimSpace(raw)) == "null" }

// isEmpty: null, false, "", [], {} or 0.
func isEmpty(raw json.RawMessage) bool {
	switch string(bytes.TrimSpace(raw)) {
	case "null", "false", `""`, "0":
		return true
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return false
	}
	switch v := v.(type) {
	case []any:
		return len(v) == 0
	case map[string]any:
		return len(v) == 0
	}
	return false
}

func unmarshalPositiveInt(raw json.RawMessage, dst *int) error {
	var f float64
	if json.Unmarshal(raw, &f) != nil || f != math.Trunc(f) || f < 1 || f > 1<<20 {
		return errors.New("want a positive integer")
	}
	*dst = int(f)
	return nil
}

func unmarshalFinite(raw json.RawMessage, dst *float64) error {
	var f float64
	if json.Unmarshal(raw, &f) != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return errors.New("want a finite number")
	}
	*dst = f
	return nil
}

package spec

import (
	"bytes"
	"regexp"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// Secrets in Git are a mistake Gantry warns about, but it must not make them
// worse by copying them into CI logs and pull-request comments. Two kinds of
// value are masked wherever Gantry shows one: the value of anything whose
// name looks secret (LooksSecret), and the user information of a URL
// ("postgres://user:password@db/x"), whatever it is named. A cluster's
// kubeconfig is a path and shown, unless it holds what looks like a
// kubeconfig's contents (KubeconfigContents).

// urlUserinfo finds the user information of URLs inside any text: a scheme,
// "://", then everything up to the last "@" before the host ends. The user
// name goes too, since it is often a token itself.
var urlUserinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://)([^/?#\s"'<>\\]+)@`)

// commentWord and commentValue find NAME = value inside a comment: a name,
// then (anchored after it) an optional closing quote, = or :, and a quoted
// or bare value.
var (
	commentWord  = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_\-]*`)
	commentValue = regexp.MustCompile(`^"?\s*[=:]\s*("(?:[^"\\\n]|\\.)*"|[^\s,}\]]+)`)
)

// MaskedUserinfo replaces the user information of a URL.
const MaskedUserinfo = "***"

// MaskURLCredentials returns s with the user information of every URL in
// it replaced by "***": "postgres://u:pw@db/x" becomes "postgres://***@db/x".
// Text without credentials is returned unchanged.
func MaskURLCredentials(s string) string {
	if !urlUserinfo.MatchString(s) {
		return s
	}
	return urlUserinfo.ReplaceAllString(s, "${1}"+MaskedUserinfo+"@")
}

// maskedFiles returns files with the source of each one that holds a
// secret-looking value or a URL with credentials masked, byte for byte, so
// that positions into it stay valid. Files without either are shared.
func maskedFiles(files map[string]*hcl.File) map[string]*hcl.File {
	out := make(map[string]*hcl.File, len(files))
	for name, f := range files {
		out[name] = f
		if f == nil || f.Bytes == nil {
			continue
		}
		if m := maskSource(name, f.Bytes, f.Body); !bytes.Equal(m, f.Bytes) {
			c := *f
			c.Bytes = m
			out[name] = &c
		}
	}
	return out
}

// maskSource replaces with '*' the literal parts (strings, heredocs,
// numbers) of the values of secret-looking attributes and object keys, of
// variable blocks with a secret-looking name or sensitive = true, and the
// user information of every URL in a string. It never changes the length of
// src, nor a newline.
func maskSource(filename string, src []byte, body hcl.Body) []byte {
	toks, _ := hclsyntax.LexConfig(src, filename, hcl.InitialPos)
	out := bytes.Clone(src)
	maskLits := func(from, to int) {
		for _, t := range toks {
			if t.Range.Start.Byte < from || t.Range.End.Byte > to {
				continue
			}
			switch t.Type {
			case hclsyntax.TokenQuotedLit, hclsyntax.TokenStringLit, hclsyntax.TokenNumberLit:
				for i := t.Range.Start.Byte; i < t.Range.End.Byte; i++ {
					if out[i] != '\n' && out[i] != '\r' {
						out[i] = '*'
					}
				}
			}
		}
	}
	for i := 0; i < len(toks); i++ {
		name, next := keyAt(toks, i)
		if next < 0 || next >= len(toks) {
			continue
		}
		assign := toks[next].Type == hclsyntax.TokenEqual || toks[next].Type == hclsyntax.TokenColon
		switch {
		case assign && name == "secret_env" && toks[i].Type == hclsyntax.TokenIdent:
			// Names of Kubernetes Secrets, not secrets: shown, and
			// quoted by its diagnostics anyway.
			i = valueEnd(toks, next+1)
		case assign && (name == "kubeconfig" || name == "signing_key_file" || name == "verify_key_file") && toks[i].Type == hclsyntax.TokenIdent:
			// A kubeconfig or key file is a path, shown; pasted contents
			// (which Load refuses) are masked.
			end := valueEnd(toks, next+1)
			var text []byte
			for _, t := range toks[next+1 : max(end, next+1)] {
				if t.Type == hclsyntax.TokenQuotedLit || t.Type == hclsyntax.TokenStringLit {
					text = append(text, t.Bytes...)
				}
			}
			if end > next+1 && (KubeconfigContents(string(text)) || bytes.Contains(text, []byte(`\n`))) {
				maskLits(toks[next+1].Range.Start.Byte, toks[end-1].Range.End.Byte)
			}
		case assign && LooksSecret(name):
			if end := valueEnd(toks, next+1); end > next+1 {
				maskLits(toks[next+1].Range.Start.Byte, toks[end-1].Range.End.Byte)
			}
		case name == "variable" && toks[i].Type == hclsyntax.TokenIdent && next+1 < len(toks):
			// variable "api_token" { ... }: everything in the block.
			if label, after := keyAt(toks, next); label != "" && LooksSecret(label) && after >= 0 && after < len(toks) && toks[after].Type == hclsyntax.TokenOBrace {
				if end := valueEnd(toks, after); end > after {
					maskLits(toks[after].Range.Start.Byte, toks[end-1].Range.End.Byte)
				}
			}
		}
	}
	// variable blocks marked sensitive = true: their default.
	if b, ok := body.(*hclsyntax.Body); ok {
		for _, blk := range b.Blocks {
			if blk.Type != "variable" {
				continue
			}
			if a, ok := blk.Body.Attributes["sensitive"]; ok {
				if v, d := a.Expr.Value(nil); !d.HasErrors() && v.Type() == cty.Bool && v.IsKnown() && !v.IsNull() && v.True() {
					if def, ok := blk.Body.Attributes["default"]; ok {
						r := def.Expr.Range()
						maskLits(r.Start.Byte, r.End.Byte)
					}
				}
			}
		}
	}
	for _, t := range toks {
		if t.Type != hclsyntax.TokenQuotedLit && t.Type != hclsyntax.TokenStringLit && t.Type != hclsyntax.TokenComment {
			continue
		}
		lit := out[t.Range.Start.Byte:t.Range.End.Byte]
		if t.Type == hclsyntax.TokenComment {
			// A line commented out is still in Git: # HF_TOKEN = "hf_...".
			for _, m := range commentWord.FindAllIndex(lit, -1) {
				if !LooksSecret(string(lit[m[0]:m[1]])) {
					continue
				}
				if v := commentValue.FindSubmatchIndex(lit[m[1]:]); v != nil {
					for i := m[1] + v[2]; i < m[1]+v[3]; i++ {
						if lit[i] != '"' {
							lit[i] = '*'
						}
					}
				}
			}
		}
		for _, m := range urlUserinfo.FindAllSubmatchIndex(lit, -1) {
			for i := m[4]; i < m[5]; i++ {
				lit[i] = '*'
			}
		}
	}
	return out
}

// keyAt reads an attribute name or object key at toks[i]: an identifier or
// a quoted string without interpolation. It returns the key and the index
// of the token after it, or next < 0.
func keyAt(toks hclsyntax.Tokens, i int) (name string, next int) {
	switch toks[i].Type {
	case hclsyntax.TokenIdent:
		return string(toks[i].Bytes), i + 1
	case hclsyntax.TokenOQuote:
		if i+2 < len(toks) && toks[i+1].Type == hclsyntax.TokenQuotedLit && toks[i+2].Type == hclsyntax.TokenCQuote {
			return string(toks[i+1].Bytes), i + 3
		}
		if i+1 < len(toks) && toks[i+1].Type == hclsyntax.TokenCQuote {
			return "", i + 2
		}
	}
	return "", -1
}

// valueEnd returns the index just past the expression that starts at
// toks[i]: the first newline or comma outside any bracket, string or
// heredoc, or the closer of the enclosing object.
func valueEnd(toks hclsyntax.Tokens, i int) int {
	depth := 0
	for j := i; j < len(toks); j++ {
		switch toks[j].Type {
		case hclsyntax.TokenOQuote, hclsyntax.TokenOHeredoc, hclsyntax.TokenOBrace, hclsyntax.TokenOBrack,
			hclsyntax.TokenOParen, hclsyntax.TokenTemplateInterp, hclsyntax.TokenTemplateControl:
			depth++
		case hclsyntax.TokenCQuote, hclsyntax.TokenCHeredoc, hclsyntax.TokenCBrace, hclsyntax.TokenCBrack,
			hclsyntax.TokenCParen, hclsyntax.TokenTemplateSeqEnd:
			depth--
			if depth < 0 {
				return j
			}
		case hclsyntax.TokenNewline, hclsyntax.TokenComma, hclsyntax.TokenEOF:
			if depth == 0 {
				return j
			}
		}
	}
	return len(toks)
}

// maskedEvalContext returns a copy of ctx whose secret-looking values, and
// the credentials of URLs in strings, are masked: hcl's diagnostic printer
// shows the values of the variables an expression refers to ("with
// var.db_url as ..."). Functions are shared.
func maskedEvalContext(ctx *hcl.EvalContext) *hcl.EvalContext {
	if ctx == nil {
		return nil
	}
	out := &hcl.EvalContext{Functions: ctx.Functions, Variables: make(map[string]cty.Value, len(ctx.Variables))}
	for name, v := range ctx.Variables {
		out.Variables[name] = maskValue(v, LooksSecret(name))
	}
	if p := ctx.Parent(); p != nil {
		// hcl's printer looks variables up through the parent chain; a
		// flat copy keeps what it can find.
		for name, v := range maskedEvalContext(p).Variables {
			if _, ok := out.Variables[name]; !ok {
				out.Variables[name] = v
			}
		}
	}
	return out
}

// maskValue masks strings inside v: wholly when their path has a
// secret-looking name (or secret is set), else the user information of URLs.
func maskValue(v cty.Value, secret bool) cty.Value {
	masked, err := cty.Transform(v, func(p cty.Path, v cty.Value) (cty.Value, error) {
		if v.IsMarked() || !v.IsKnown() || v.IsNull() || v.Type() != cty.String {
			return v, nil
		}
		if secret || pathLooksSecret(p) {
			return cty.StringVal("(sensitive)"), nil
		}
		return cty.StringVal(MaskURLCredentials(v.AsString())), nil
	})
	if err != nil {
		return cty.DynamicVal
	}
	return masked
}

func pathLooksSecret(p cty.Path) bool {
	for _, s := range p {
		switch s := s.(type) {
		case cty.GetAttrStep:
			if LooksSecret(s.Name) {
				return true
			}
		case cty.IndexStep:
			if s.Key.Type() == cty.String && s.Key.IsKnown() && !s.Key.IsNull() && LooksSecret(s.Key.AsString()) {
				return true
			}
		}
	}
	return false
}

package spec

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// Specs that validated but could not run, and secrets that reached
// diagnostics: each case here failed (validated, or printed the secret)
// before the fix.

const ociModel = `model {
    source = "oci://registry.example.com/m@sha256:0000000000000000000000000000000000000000000000000000000000000000"
    format = "gguf"
  }
  runtime {
    image = "x"
  }`

// loadSrc writes files into a fresh repository and loads it, returning the
// config, the diagnostics and their printed form.
func loadSrc(t *testing.T, files map[string]string, opts LoadOptions) (*Config, hcl.Diagnostics, string) {
	t.Helper()
	root := t.TempDir()
	for name, src := range files {
		writeFile(t, filepath.Join(root, name), src)
	}
	opts.NoEnv = true
	cfg, diags := Load(context.Background(), root, opts)
	return cfg, diags, renderDiags(t, cfg.Files, diags)
}

func TestReplicaMustFitOneNode(t *testing.T) {
	const pools = `
node_pool "a100" {
  reserve = 1
}
node_pool "mixed" {}
`
	const a100 = `
node "gpu-a1" {
  pool       = "a100"
  gpus       = 8
  gpu_memory = "80Gi"
}
`
	const mixed = `
node "gpu-many" {
  pool       = "mixed"
  gpus       = 8
  gpu_memory = "24Gi"
}
node "gpu-big" {
  pool       = "mixed"
  gpus       = 2
  gpu_memory = "80Gi"
}
`
	release := func(resources, placement string) string {
		return "release \"r\" {\n  " + ociModel + "\n  resources {\n" + resources + "\n  }\n" + placement + "\n}\n"
	}
	for _, tc := range []struct {
		name, nodes, resources, placement string
		want                              string // "" for no error
		at                                string // where the error points
	}{
		// 8 - reserve 1 = 7 GPUs per node.
		{"seven fit", a100, `gpus = 7`, `placement { pools = ["a100"] }`, "", ""},
		{"eight do not", a100, `gpus = 8`, `placement { pools = ["a100"] }`, "the best, gpu-a1, can give 7 (Insufficient nvidia.com/gpu: requested 8, reserved 1, capacity 8)", "resources.gpus"},
		{"sixteen do not", a100, `gpus = 16`, ``, "Each replica needs 16 GPUs on one node", "resources.gpus"},
		// gpu-many: 8 × 24Gi; gpu-big: 2 × 80Gi.
		{"many small", mixed, "gpus = 8\ngpu_memory = \"24Gi\"", ``, "", ""},
		{"few big", mixed, "gpus = 2\ngpu_memory = \"80Gi\"", ``, "", ""},
		{"many big fit nowhere", mixed, "gpus = 4\ngpu_memory = \"80Gi\"", `placement { pools = ["mixed"] }`, "gpu-many can give 8 GPUs but of 24Gi each, and gpu-big has 80Gi per GPU but can give only 2", "resources.gpus"},
		// Another pool has the room, but it is not allowed.
		{"other pool not allowed", a100 + mixed, "gpus = 4\ngpu_memory = \"80Gi\"", `placement { pools = ["mixed"] }`, "no node in pools mixed has both", "resources.gpus"},
		{"any pool", a100 + mixed, "gpus = 4\ngpu_memory = \"80Gi\"", ``, "", ""},
		{"memory alone", mixed, "gpus = 1\ngpu_memory = \"96Gi\"", ``, "the most any node in pools a100, mixed offers is 80Gi", "resources.gpu_memory"},
		// gpus defaults to 1 in a resources block; no GPU at all is fine.
		{"default one", a100, `cpu = "4"`, ``, "", ""},
		{"zero gpus", a100, `gpus = 0`, ``, "", ""},
		// No static inventory: the cluster decides, nothing is known.
		{"cluster mode", ``, "gpus = 64\ngpu_memory = \"640Gi\"", ``, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, diags, out := loadSrc(t, map[string]string{"main.hcl": pools + tc.nodes + release(tc.resources, tc.placement)}, LoadOptions{})
			if tc.want == "" {
				if diags.HasErrors() {
					t.Fatalf("unexpected errors:\n%s", out)
				}
				return
			}
			if !diags.HasErrors() || !strings.Contains(out, tc.want) {
				t.Fatalf("want an error with %q, got:\n%s", tc.want, out)
			}
			attr := strings.TrimPrefix(tc.at, "resources.")
			for _, d := range diags {
				if d.Severity != hcl.DiagError {
					continue
				}
				if d.Subject == nil {
					t.Fatalf("%s: no position", d.Summary)
				}
				f := diagsFile(t, out, d)
				if !strings.HasPrefix(strings.TrimSpace(f), attr) {
					t.Errorf("%s points at %q, want %s", d.Summary, f, tc.at)
				}
			}
		})
	}
}

// diagsFile is the source line of d's subject, from its printed form.
func diagsFile(t *testing.T, out string, d *hcl.Diagnostic) string {
	t.Helper()
	src, err := os.ReadFile(d.Subject.Filename)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(string(src), "\n")[d.Subject.Start.Line-1]
}

// TestQuickstartGPUsTooMany is the reported case: tiny-chat-gguf asks for
// 8 or 16 GPUs, the a100 nodes have 8 with 1 reserved.
func TestQuickstartGPUsTooMany(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "examples", "quickstart", "releases.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"8", "16"} {
		root := t.TempDir()
		if err := os.CopyFS(root, os.DirFS(filepath.Join("..", "examples", "quickstart"))); err != nil {
			t.Fatal(err)
		}
		edited := strings.Replace(string(src), "gpus       = 2", "gpus       = "+n, 1)
		writeFile(t, filepath.Join(root, "releases.hcl"), edited)
		cfg, diags := Load(context.Background(), root, LoadOptions{NoEnv: true})
		out := renderDiags(t, cfg.Files, diags)
		if !diags.HasErrors() || !strings.Contains(out, `in release "tiny-chat-gguf"`) || !strings.Contains(out, "gpus       = "+n) ||
			!strings.Contains(out, "Insufficient nvidia.com/gpu: requested "+n+", reserved 1, capacity 8") {
			t.Errorf("gpus = %s:\n%s", n, out)
		}
	}
}

func TestUndeclaredVariable(t *testing.T) {
	quick := filepath.Join("..", "examples", "quickstart")
	for _, tc := range []struct {
		name string
		root string
		vars map[string]string
		want []string
	}{
		{"typo", quick, map[string]string{"enviroment": "tok_PLANTED"}, []string{
			"Error: Value for undeclared variable", `A value for the variable "enviroment" was set with -var, but no variable block declares it. Did you mean "environment"?`}},
		{"unlike any", quick, map[string]string{"region": "eu"}, []string{`variable "region"`, "Declared variables: environment."}},
		{"none declared", "", map[string]string{"x": "1"}, []string{"The specs declare no variables."}},
		{"declared", quick, map[string]string{"environment": "prod"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := tc.root
			if root == "" {
				root = t.TempDir()
				writeFile(t, filepath.Join(root, "main.hcl"), "release \"r\" {\n  "+ociModel+"\n}\n")
			}
			cfg, diags := Load(context.Background(), root, LoadOptions{NoEnv: true, Vars: tc.vars})
			out := renderDiags(t, cfg.Files, diags)
			if tc.want == nil {
				if diags.HasErrors() {
					t.Fatal(out)
				}
				return
			}
			if !diags.HasErrors() {
				t.Fatal("an undeclared -var was accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "PLANTED") {
				t.Errorf("the value was printed:\n%s", out)
			}
		})
	}
}

func TestSniffBytes(t *testing.T) {
	st := func(n uint64, rest string) []byte {
		b := binary.LittleEndian.AppendUint64(nil, n)
		return append(b, rest...)
	}
	for _, tc := range []struct {
		name string
		head []byte
		size int64
		want sniffKind
	}{
		{"gguf", []byte("GGUF\x03\x00\x00\x00\x00"), 1000, sniffGGUF},
		{"gguf, short file", []byte("GGUF"), 4, sniffGGUF},
		{"safetensors", st(20, "{"), 28, sniffSafetensors},
		{"header past the end", st(21, "{"), 28, sniffUnknown},
		{"header too short", st(1, "{"), 28, sniffUnknown},
		{"no brace", st(20, "["), 28, sniffUnknown},
		{"huge length", st(1<<63, "{"), 28, sniffUnknown},
		{"empty", nil, 0, sniffUnknown},
		{"text", []byte("release \""), 100, sniffUnknown},
	} {
		if got := sniffBytes(tc.head, tc.size); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestModelOpenedOncePerPath: many releases share one model; validation
// reads its first bytes once per Load.
func TestModelOpenedOncePerPath(t *testing.T) {
	opens := map[string]int{}
	orig := openModel
	openModel = func(name string) (io.ReadCloser, error) {
		opens[filepath.Base(name)]++
		return orig(name)
	}
	defer func() { openModel = orig }()
	var src strings.Builder
	for _, name := range []string{"a", "b", "c", "d"} {
		model := "models/shared.gguf"
		if name == "d" {
			model = "./models/../models/other.gguf" // another spelling is another file only if it is one
		}
		src.WriteString("release \"" + name + "\" {\n  model {\n    source = \"" + model + "\"\n    format = \"gguf\"\n  }\n  runtime {\n    image = \"x\"\n  }\n}\n")
	}
	cfg, diags, out := loadSrc(t, map[string]string{
		"main.hcl":           src.String(),
		"models/shared.gguf": "GGUF\x03\x00\x00\x00",
		"models/other.gguf":  "GGUF\x03\x00\x00\x00",
	}, LoadOptions{})
	if diags.HasErrors() {
		t.Fatal(out)
	}
	if opens["shared.gguf"] != 1 || opens["other.gguf"] != 1 || len(opens) != 2 {
		t.Errorf("opens per file: %v, want 1 each", opens)
	}
	if d := cfg.Releases[0].Model.Digest; d == "" || cfg.Releases[1].Model.Digest != d {
		t.Errorf("digests %q, %q", d, cfg.Releases[1].Model.Digest)
	}
}

// FuzzModelFormat drives the loader over arbitrary model bytes, declared
// as either format: never a panic, and a GGUF file declared safetensors is
// always an error at the format attribute.
func FuzzModelFormat(f *testing.F) {
	f.Add([]byte("GGUF\x03\x00\x00\x00"))
	f.Add(binary.LittleEndian.AppendUint64(nil, 2))
	f.Add(append(binary.LittleEndian.AppendUint64(nil, 2), "{}"...))
	f.Add([]byte{})
	if b, err := os.ReadFile(filepath.Join("..", "testdata", "invalid", "format-mismatch", "models", "ckpt", "model.safetensors")); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, model []byte) {
		root := t.TempDir()
		writeFile(t, filepath.Join(root, "m.bin"), string(model))
		var src strings.Builder
		for _, format := range []string{"gguf", "safetensors"} {
			src.WriteString("release \"" + format + "\" {\n  model {\n    source = \"m.bin\"\n    format = \"" + format + "\"\n  }\n  runtime {\n    image = \"x\"\n  }\n}\n")
		}
		writeFile(t, filepath.Join(root, "main.hcl"), src.String())
		_, diags := Load(context.Background(), root, LoadOptions{NoEnv: true})
		if !diags.HasErrors() {
			t.Fatal("one file passed as both formats")
		}
		if bytes.HasPrefix(model, []byte("GGUF")) {
			found := false
			for _, d := range diags {
				found = found || (d.Summary == "Model format does not match the file" && d.Subject != nil && d.Subject.Start.Line == 13)
			}
			if !found {
				t.Errorf("GGUF declared safetensors: %v", diags)
			}
		}
	})
}

func TestUnclosedBlock(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  string
		want string // "line:col" of the block blamed, "" for none
	}{
		{"nested block", "release \"a\" {\n  runtime {\n    image = \"x\"\n\n  replicas = 1\n}\n", "2:11"},
		{"first of siblings", "release \"a\" {\n  model {\n    source = \"x\"\n  runtime {\n    image = \"x\"\n  }\n}\n", "2:9"},
		{"deep", "release \"a\" {\n  placement {\n    x = {\n      a = 1\n  }\n}\n", "3:9"},
		{"nothing closed: hcl names the innermost", "release \"a\" {\n  runtime {\n", ""},
		{"outer itself", "release \"a\" {\n  runtime {\n  }\n", ""},
		{"unindented", "release \"a\" {\nruntime {\nimage = \"x\"\n}\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, diags := hclsyntax.ParseConfig([]byte(tc.src), "main.hcl", hcl.InitialPos)
			var reported *hcl.Range
			for _, d := range diags {
				if d.Summary == unclosedSummary {
					reported = d.Subject
				}
			}
			if reported == nil {
				t.Fatalf("hcl did not report an unclosed block: %v", diags)
			}
			d := unclosedBlock("main.hcl", f.Bytes, *reported)
			got := ""
			if d != nil {
				got = strings.TrimPrefix(d.Subject.String(), "main.hcl:")
				got = got[:strings.IndexByte(got, '-')]
				got = strings.Replace(got, ",", ":", 1)
			}
			if got != tc.want {
				t.Errorf("blamed %q, want %q (%v)", got, tc.want, d)
			}
		})
	}
}

func TestMaskSource(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"attribute", `API_TOKEN = "abc"`, `API_TOKEN = "***"`},
		{"object key", `env = { HF_TOKEN = "hf_x", LOG = "info" }`, `env = { HF_TOKEN = "****", LOG = "info" }`},
		{"quoted key", `env = { "DB_PASSWORD" = "pw" }`, `env = { "DB_PASSWORD" = "**" }`},
		{"interpolation kept", `token = "a${var.x}b"`, `token = "*${var.x}*"`},
		{"number", `api_key = 12345`, `api_key = *****`},
		{"heredoc", "secret = <<EOT\nline1\nline2\nEOT\n", "secret = <<EOT\n*****\n*****\nEOT\n"},
		{"list", `credentials = ["a", "b"]`, `credentials = ["*", "*"]`},
		{"not secret", `image = "vllm"`, `image = "vllm"`},
		{"secret_env is references", `secret_env = { HF_TOKEN = "hf/token" }`, `secret_env = { HF_TOKEN = "hf/token" }`},
		{"url anywhere", `args = ["--db", "postgres://u:pw@db/x"]`, `args = ["--db", "postgres://****@db/x"]`},
		{"url user only", `source = "https://ghp_tok@github.com/m"`, `source = "https://*******@github.com/m"`},
		{"url without credentials", `source = "https://example.com/a@b"`, `source = "https://example.com/a@b"`},
		{"comment", `x = 1 # HF_TOKEN = "hf_x"`, `x = 1 # HF_TOKEN = "****"`},
		{"variable named secret", "variable \"db_password\" {\n  default = \"pw\"\n}\n", "variable \"db_password\" {\n  default = \"**\"\n}\n"},
		{"sensitive variable", "variable \"conn\" {\n  sensitive = true\n  default   = \"pw\"\n}\n", "variable \"conn\" {\n  sensitive = true\n  default   = \"**\"\n}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := hclsyntax.ParseConfig([]byte(tc.src), "main.hcl", hcl.InitialPos)
			var body hcl.Body
			if f != nil {
				body = f.Body
			}
			got := string(maskSource("main.hcl", []byte(tc.src), body))
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if len(got) != len(tc.src) {
				t.Errorf("length changed: %d -> %d", len(tc.src), len(got))
			}
		})
	}
}

// TestDiagnosticValuesMasked: hcl prints the values of the variables an
// expression refers to ("with var.x as ..."); those are masked too.
func TestDiagnosticValuesMasked(t *testing.T) {
	src := []byte("replicas = var.db_url + var.api_token + local.env.HF_TOKEN\n")
	f, diags := hclsyntax.ParseConfig(src, "main.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	attrs, _ := f.Body.JustAttributes()
	expr := attrs["replicas"].Expr
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{
		"var": cty.ObjectVal(map[string]cty.Value{
			"db_url":    cty.StringVal("postgres://app:pw_PLANTED1@db/x"),
			"api_token": cty.StringVal("tok_PLANTED2"),
		}),
		"local": cty.ObjectVal(map[string]cty.Value{"env": cty.MapVal(map[string]cty.Value{"HF_TOKEN": cty.StringVal("hf_PLANTED3")})}),
	}}
	d := &hcl.Diagnostic{
		Severity: hcl.DiagError, Summary: "Bad value", Detail: "from postgres://app:pw_PLANTED4@db/x",
		Subject: expr.Range().Ptr(), Expression: expr, EvalContext: ctx,
	}
	var buf bytes.Buffer
	if err := WriteDiagnostics(&buf, map[string]*hcl.File{"main.hcl": f}, hcl.Diagnostics{d}, 0, false); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Contains(out, "PLANTED") {
		t.Errorf("a secret was printed:\n%s", out)
	}
	for _, want := range []string{`var.db_url as "postgres://***@db/x"`, `var.api_token as "(sensitive)"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The caller's diagnostic is untouched.
	if !strings.Contains(d.Detail, "PLANTED4") {
		t.Error("WriteDiagnostics changed its input")
	}
}

func TestMaskURLCredentials(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://u:SECRET@db/x":                "postgres://***@db/x",
		"https://user:pw@host/path?q=a@b":         "https://***@host/path?q=a@b",
		"--db=postgres://u:p@ss@db:5432/x --x":    "--db=postgres://***@db:5432/x --x",
		"a https://t@h/ and ftp://u:p@f/":         "a https://***@h/ and ftp://***@f/",
		"https://example.com/x":                   "https://example.com/x",
		"mailto:someone@example.com":              "mailto:someone@example.com",
		"oci://registry.example.com/m@sha256:abc": "oci://registry.example.com/m@sha256:abc",
	} {
		if got := MaskURLCredentials(in); got != want {
			t.Errorf("MaskURLCredentials(%q) = %q, want %q", in, got, want)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/compress"
	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile/registry"
)

func gantry(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

const quickstart = "../../examples/quickstart"

func TestValidate(t *testing.T) {
	code, out, errs := gantry(t, "validate", quickstart)
	if code != 0 || !strings.Contains(out, "2 releases, 2 node pools, 3 nodes") {
		t.Fatalf("validate quickstart: %d %q %q", code, out, errs)
	}
	code, _, errs = gantry(t, "validate", "../../testdata/invalid/unknown-attribute")
	if code != 1 {
		t.Fatalf("invalid spec exit %d", code)
	}
	for _, want := range []string{"unknown-attribute/main.hcl:13:3", "13:   replica = 3", "^^^^^^^", `Did you mean "replicas"?`} {
		if !strings.Contains(errs, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errs)
		}
	}
}

func TestPlanDetailedExitCode(t *testing.T) {
	target := t.TempDir()
	code, out, errs := gantry(t, "plan", quickstart, "--target", "dir:"+target, "-detailed-exitcode")
	if code != 2 {
		t.Fatalf("exit %d, stderr %s", code, errs)
	}
	if !strings.Contains(out, "Plan: 5 to add, 0 to change, 0 to destroy.") || !strings.Contains(out, "Build: 2 to quantize, 1 to gate, 2 to push.") {
		t.Errorf("plan output:\n%s", out)
	}
	if code, _, _ := gantry(t, "plan", quickstart); code != 0 {
		t.Errorf("without -detailed-exitcode: exit %d", code)
	}
	// An invalid spec is exit 1 and plans nothing.
	if code, out, _ := gantry(t, "plan", "../../testdata/invalid/impossible-values", "-detailed-exitcode"); code != 1 || out != "" {
		t.Errorf("invalid spec: exit %d, stdout %q", code, out)
	}
}

func TestPlanFormatsAndOut(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plan.json")
	code, out, errs := gantry(t, "plan", quickstart, "--format", "json", "-out", file)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := planner.ReadJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Actions) != 10 || !strings.Contains(out, `"format_version": "2"`) {
		t.Errorf("saved plan has %d actions", len(p.Actions))
	}
	code, out, _ = gantry(t, "plan", quickstart, "-format=markdown")
	if code != 0 || !strings.HasPrefix(out, "### Gantry plan") || !strings.Contains(out, "<details>") {
		t.Errorf("markdown: %d\n%s", code, out)
	}
	if code, _, errs := gantry(t, "plan", quickstart, "--format", "yaml"); code != 1 || !strings.Contains(errs, "want text, json or markdown") {
		t.Errorf("bad format: %d %s", code, errs)
	}
	if code, _, errs := gantry(t, "plan", quickstart, "--target", "kube:prod"); code != 1 || !strings.Contains(errs, "dir:PATH") {
		t.Errorf("bad target: %d %s", code, errs)
	}
}

func TestFmt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "main.hcl")
	if err := os.WriteFile(path, []byte("node_pool \"a\" {\nweight=2\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := gantry(t, "fmt", "-check", "-diff", dir)
	if code != 3 || !strings.Contains(out, "main.hcl") || !strings.Contains(out, "+  weight = 2") {
		t.Fatalf("fmt -check: %d\n%s", code, out)
	}
	if code, _, _ := gantry(t, "fmt", dir); code != 0 {
		t.Fatalf("fmt: exit %d", code)
	}
	if b, _ := os.ReadFile(path); string(b) != "node_pool \"a\" {\n  weight = 2\n}\n" {
		t.Errorf("formatted:\n%s", b)
	}
	if code, out, _ := gantry(t, "fmt", "-check", dir); code != 0 || out != "" {
		t.Errorf("second check: %d %q", code, out)
	}
	if code, _, _ := gantry(t, "fmt", "-check", quickstart); code != 0 {
		t.Error("the quickstart is not formatted")
	}
}

func TestPlanGitURL(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	repo := t.TempDir()
	if err := os.CopyFS(repo, os.DirFS(quickstart)); err != nil {
		t.Fatal(err)
	}
	git := func(args ...string) string {
		cmd := exec.Command("git", append([]string{"-C", repo, "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("init", "-q", "-b", "main")
	git("add", ".")
	git("commit", "-q", "-m", "first")
	first := git("rev-parse", "HEAD")
	git("tag", "v1")
	if err := os.WriteFile(filepath.Join(repo, "releases.hcl"), []byte(strings.Replace(readFile(t, filepath.Join(repo, "releases.hcl")), "replicas = 3", "replicas = 4", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	git("commit", "-q", "-am", "scale")

	code, out, errs := gantry(t, "plan", "file://"+repo)
	if code != 0 || !strings.Contains(out, "4/4 replicas") {
		t.Fatalf("plan main: %d %s\n%s", code, errs, out)
	}
	code, out, errs = gantry(t, "plan", "file://"+repo, "--ref", "v1")
	if code != 0 || !strings.Contains(out, "3/3 replicas") || !strings.Contains(out, "revision "+first[:12]) {
		t.Fatalf("plan v1: %d %s\n%s", code, errs, out)
	}
	if code, _, errs := gantry(t, "plan", "file://"+repo, "--ref", "nope"); code != 1 || !strings.Contains(errs, `ref "nope"`) {
		t.Errorf("unknown ref: %d %s", code, errs)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestVersionAndTerraformFlags(t *testing.T) {
	if code, out, _ := gantry(t, "version"); code != 0 || !strings.HasPrefix(out, "gantry ") {
		t.Errorf("version: %d %q", code, out)
	}
	// -v is no long flag: it stays a (bad) shorthand, not --v.
	if code, _, errs := gantry(t, "plan", quickstart, "-v"); code != 1 || !strings.Contains(errs, "unknown shorthand flag: 'v'") {
		t.Errorf("-v: %d %s", code, errs)
	}
}

func TestQuantize(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "q8.gguf")
	code, stdout, errs := gantry(t, "quantize", "--in", quickstart+"/models/tiny-llama-f16.gguf", "--out", out, "--type", "q8_0", "--threads", "2")
	if code != 0 {
		t.Fatalf("gguf: exit %d: %s", code, errs)
	}
	if !strings.Contains(stdout, "blk.0.attn_q.weight") || !strings.Contains(stdout, "(model)") || !strings.Contains(stdout, "Quantized ") {
		t.Errorf("report:\n%s", stdout)
	}
	if errs != "" {
		t.Errorf("not a terminal, yet stderr has %q", errs)
	}
	if b, err := os.ReadFile(out); err != nil || string(b[:4]) != "GGUF" {
		t.Fatalf("output: %v", err)
	}

	code, stdout, errs = gantry(t, "quantize", "--in", quickstart+"/models/tiny-llama", "--out", filepath.Join(dir, "fp8"), "--type", "fp8", "--report", "json")
	if code != 0 {
		t.Fatalf("safetensors: exit %d: %s", code, errs)
	}
	var rep struct {
		Summary struct {
			RelRMSE float64 `json:"rel_rmse"`
			Params  int64   `json:"params"`
		} `json:"summary"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || rep.Summary.Params == 0 || rep.Summary.RelRMSE <= 0 || rep.Summary.RelRMSE > 0.1 {
		t.Errorf("json report %+v (%v):\n%s", rep, err, stdout)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--in", quickstart + "/models/tiny-llama", "--out", filepath.Join(dir, "x"), "--type", "q4_k_m"}, "use fp8, int8 or int4"},
		{[]string{"--in", quickstart + "/models/tiny-llama-f16.gguf", "--out", filepath.Join(dir, "y"), "--type", "int4"}, "is for safetensors checkpoints"},
		{[]string{"--in", quickstart + "/gantry.hcl", "--out", filepath.Join(dir, "z"), "--type", "q8_0"}, "neither a GGUF file nor a safetensors checkpoint"},
		{[]string{"--in", "nope.gguf", "--out", filepath.Join(dir, "z"), "--type", "q8_0"}, "no such file"},
		{[]string{"--out", "x"}, "--in, --out and --type are required"},
	} {
		code, _, errs := gantry(t, append([]string{"quantize"}, tc.args...)...)
		if code != 1 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want %q", tc.args, code, errs, tc.want)
		}
	}
}

// The planner keys artifacts by the quantizer's version; the two constants
// live apart because planner may not import compress.
func TestQuantizerVersionsAgree(t *testing.T) {
	if compress.Version != planner.QuantizerVersion {
		t.Fatalf("compress.Version %q != planner.QuantizerVersion %q", compress.Version, planner.QuantizerVersion)
	}
}

func TestRunOnceAndApplySavedPlan(t *testing.T) {
	state := t.TempDir()
	objects := filepath.Join(state, "objects")
	planFile := filepath.Join(state, "plan.json")
	common := []string{"--state-dir", state, "--target", "dir:" + objects}

	// Save a plan, apply it, and find that applying it again is refused.
	if code, _, errs := gantry(t, append([]string{"plan", quickstart, "-out", planFile}, common...)...); code != 0 {
		t.Fatalf("plan: %d %s", code, errs)
	}
	code, out, errs := gantry(t, append([]string{"apply", "--repo", quickstart, "-plan", planFile}, common...)...)
	if code != 0 || !strings.Contains(out, "built and pushed the model; applied 3 object changes") {
		t.Fatalf("apply: %d %s\n%s", code, errs, out)
	}
	code, _, errs = gantry(t, append([]string{"apply", "--repo", quickstart, "-plan", planFile}, common...)...)
	if code != 1 || !strings.Contains(errs, "the saved plan is stale") {
		t.Fatalf("stale plan: %d %s", code, errs)
	}

	// run --once on the converged world does nothing.
	code, out, errs = gantry(t, append([]string{"run", "--repo", quickstart, "--once"}, common...)...)
	if code != 0 || !strings.Contains(out, "No changes.") || !strings.Contains(out, "0 actions executed") {
		t.Fatalf("run --once: %d %s\n%s", code, errs, out)
	}
	entries, _ := os.ReadDir(objects)
	if len(entries) != 5 {
		t.Errorf("%d objects rendered, want 5", len(entries))
	}
	if code, _, _ := gantry(t, append([]string{"plan", quickstart, "-detailed-exitcode"}, common...)...); code != 0 {
		t.Errorf("plan after apply: exit %d, want 0", code)
	}
}

func TestQuantizeFromOCI(t *testing.T) {
	ctx := context.Background()
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	img, err := registry.BuildModelPack(ctx, registry.Model{
		Release: "tiny", Version: "v1", Format: "gguf",
		Files: []registry.File{{Path: "model.gguf", Source: quickstart + "/models/tiny-llama-f16.gguf"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ref := host + "/models/tiny:v1"
	if _, err := registry.NewRemote(registry.Options{}).Write(ctx, ref, img); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "q8.gguf")
	code, stdout, errs := gantry(t, "quantize", "--in", "oci://"+ref, "--out", out, "--type", "q8_0")
	if code != 0 || !strings.Contains(stdout, "Quantized 16 tensors") {
		t.Fatalf("exit %d: %s\n%s", code, errs, stdout)
	}
	if code, _, errs := gantry(t, "quantize", "--in", "oci://"+host+"/models/nope:v1", "--out", out, "--type", "q8_0"); code != 1 || !strings.Contains(errs, "nope") {
		t.Errorf("missing image: %d %s", code, errs)
	}
}

func TestRunRefusesUnsignedRevision(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not installed")
	}
	repo := t.TempDir()
	if err := os.CopyFS(repo, os.DirFS(quickstart)); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "."}, {"commit", "-q", "-m", "unsigned"}} {
		cmd := exec.Command("git", append([]string{"-C", repo, "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	e, err := openpgp.NewEntity("release-bot", "", "bot@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	var pub bytes.Buffer
	w, _ := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	e.Serialize(w)
	w.Close()
	keys := filepath.Join(t.TempDir(), "trusted.asc")
	os.WriteFile(keys, pub.Bytes(), 0o644)
	code, out, errs := gantry(t, "run", "--once", "--repo", "file://"+repo, "--trusted-keys", keys, "--state-dir", t.TempDir())
	if code != 1 || !strings.Contains(errs, "refused: the commit is not signed") || strings.Contains(out, "Plan:") {
		t.Fatalf("exit %d\nstdout %s\nstderr %s", code, out, errs)
	}
}

// TestDeployExampleArgs: the in-cluster Deployment in examples/deploy
// passes flags this gantry knows.
func TestDeployExampleArgs(t *testing.T) {
	exampleArgs(t, "../../examples/deploy/deployment.yaml")
}

// exampleArgs reads the first container's args of the workload manifest
// at path, and checks that they are a gantry run this gantry parses.
func exampleArgs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Args []string `json:"args"`
					} `json:"containers"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	if err := sigsyaml.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Spec.Template.Spec.Containers) == 0 {
		t.Fatalf("%s has no container", path)
	}
	args := d.Spec.Template.Spec.Containers[0].Args
	if len(args) < 2 || args[0] != "run" {
		t.Fatalf("args %q", args)
	}
	// --help stops before running, after the flags are parsed.
	if code, _, errs := gantry(t, append(args, "--help")...); code != 0 {
		t.Fatalf("gantry %v: exit %d: %s", args, code, errs)
	}
	return args
}

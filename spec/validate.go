package spec

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/gantry-dev/gantry/compress/vllm"
)

var (
	dnsLabelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	digestRE   = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
	envNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	secretish  = regexp.MustCompile(`(?i)(token|secret|password|passwd|api_?key|private_?key|credential)`)
)

// LooksSecret reports whether an environment variable's name suggests its
// value is a secret. Renderers redact such values.
func LooksSecret(name string) bool { return secretish.MatchString(name) }

// validator collects diagnostics for a decoded Config. Attribute ranges
// are looked up in the syntax tree on demand, only when a diagnostic needs
// one, so that the decoded types stay plain.
type validator struct {
	cfg   *Config
	diags hcl.Diagnostics
	// sniffed caches what each model path holds, by real path, so that a
	// model shared by many releases is opened once per Load.
	sniffed map[string]sniffResult
	// rooms caches roomIn by pool set.
	rooms map[string]poolRoom
	// blocks indexes each file's blocks by definition range, for attr.
	blocks map[string]map[hcl.Range]*hclsyntax.Block
	// clusterIdx is the cluster blocks by name.
	clusterIdx map[string]*Cluster
}

func (v *validator) errorf(subject hcl.Range, summary, format string, args ...any) {
	v.diags = append(v.diags, &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: fmt.Sprintf(format, args...), Subject: subject.Ptr()})
}

func (v *validator) warnf(subject hcl.Range, summary, format string, args ...any) {
	v.diags = append(v.diags, &hcl.Diagnostic{Severity: hcl.DiagWarning, Summary: summary, Detail: fmt.Sprintf(format, args...), Subject: subject.Ptr()})
}

// attr returns the range of the value of attribute name inside the block
// defined at def, or def itself when there is no such attribute.
func (v *validator) attr(def hcl.Range, name string) hcl.Range {
	if b := v.syntaxBlock(def); b != nil {
		if a, ok := b.Body.Attributes[name]; ok {
			return a.Expr.Range()
		}
	}
	return def
}

// block finds the block defined at def through an index of each file's blocks by their
// definition range, built on first use: attr is called for every release,
// and a scan of the file per call would cost releases × blocks.
func (v *validator) block(filename string, body *hclsyntax.Body, def hcl.Range) *hclsyntax.Block {
	idx, ok := v.blocks[filename]
	if !ok {
		blockIndexes.Add(1)
		idx = map[hcl.Range]*hclsyntax.Block{}
		indexBlocks(body, idx)
		if v.blocks == nil {
			v.blocks = map[string]map[hcl.Range]*hclsyntax.Block{}
		}
		v.blocks[filename] = idx
	}
	return idx[def]
}

// blockIndexes counts the files indexed by block, for tests.
var blockIndexes atomic.Int64

// indexBlocks records body's blocks, nested ones too, by definition
// range; the first in a depth-first walk wins.
func indexBlocks(body *hclsyntax.Body, idx map[hcl.Range]*hclsyntax.Block) {
	for _, b := range body.Blocks {
		if _, ok := idx[b.DefRange()]; !ok {
			idx[b.DefRange()] = b
		}
		indexBlocks(b.Body, idx)
	}
}

func validate(cfg *Config) hcl.Diagnostics {
	v := &validator{cfg: cfg}
	v.settings()
	v.pipelineSettings()
	v.clusters()
	pools := map[string]*NodePool{}
	for i := range cfg.Pools {
		p := &cfg.Pools[i]
		pools[p.Name] = p
		v.pool(p)
	}
	for i := range cfg.Nodes {
		v.node(&cfg.Nodes[i], pools)
		v.nodeCluster(&cfg.Nodes[i])
	}
	for i := range cfg.Releases {
		v.release(&cfg.Releases[i], pools)
	}
	return v.diags
}

func (v *validator) settings() {
	s := &v.cfg.Settings
	if s.Namespace == "" {
		s.Namespace = "gantry"
	} else if !dnsLabelRE.MatchString(s.Namespace) || len(s.Namespace) > 63 {
		v.errorf(v.attr(s.DefRange, "namespace"), "Invalid namespace", "%q is not a valid Kubernetes namespace: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit.", s.Namespace)
	}
	if s.Target != "" && s.Target != "kube" && !strings.HasPrefix(s.Target, "dir:") {
		v.errorf(v.attr(s.DefRange, "target"), "Invalid target", "target must be \"kube\" or \"dir:PATH\", not %q.", s.Target)
	}
	if wb := s.WriteBack; wb != nil {
		switch wb.Mode {
		case "":
			wb.Mode = "push"
		case "push", "branch":
		default:
			v.errorf(v.attr(wb.DefRange, "mode"), "Invalid write_back mode", "mode must be \"push\" or \"branch\", not %q.", wb.Mode)
		}
		if wb.AuthorName == "" {
			wb.AuthorName = "Gantry"
		}
		if wb.AuthorEmail == "" {
			wb.AuthorEmail = "gantry@localhost"
		}
	}
}

func (v *validator) pool(p *NodePool) {
	if p.Weight == nil {
		one := 1.0
		p.Weight = &one
	} else if *p.Weight <= 0 {
		v.errorf(v.attr(p.DefRange, "weight"), "Invalid pool weight", "weight must be greater than zero, got %g.", *p.Weight)
	}
	if p.Reserve < 0 {
		v.errorf(v.attr(p.DefRange, "reserve"), "Invalid reserve", "reserve is a number of GPUs and cannot be negative, got %d.", p.Reserve)
	}
}

func (v *validator) node(n *Node, pools map[string]*NodePool) {
	p, ok := pools[n.Pool]
	if !ok {
		v.unknownPool(v.attr(n.DefRange, "pool"), n.Pool)
	}
	if n.GPUs < 0 {
		v.errorf(v.attr(n.DefRange, "gpus"), "Invalid GPU count", "gpus cannot be negative, got %d.", n.GPUs)
	}
	mem, err := ParseMemory(n.GPUMemoryRaw)
	if err != nil {
		v.errorf(v.attr(n.DefRange, "gpu_memory"), "Invalid quantity", "gpu_memory: %s", sentence(err))
	}
	n.GPUMemory = mem
	if n.Connections < 0 {
		v.errorf(v.attr(n.DefRange, "connections"), "Invalid connections", "connections cannot be negative, got %g.", n.Connections)
	}
	if ok && p.Reserve > n.GPUs && n.GPUs >= 0 {
		v.warnf(n.DefRange, "Reserve exceeds node", "Pool %q reserves %d GPUs per node but node %q has only %d, so nothing can be placed on it.", n.Pool, p.Reserve, n.Name, n.GPUs)
	}
}

func (v *validator) unknownPool(r hcl.Range, name string) {
	var names []string
	for _, p := range v.cfg.Pools {
		names = append(names, p.Name)
	}
	detail := fmt.Sprintf("There is no node_pool named %q.", name)
	if len(names) > 0 {
		detail += fmt.Sprintf(" Declared pools: %s.", strings.Join(names, ", "))
	}
	v.errorf(r, "Unknown node pool", "%s", detail)
}

func (v *validator) release(r *Release, pools map[string]*NodePool) {
	if !dnsLabelRE.MatchString(r.Name) || len(r.Name) > 50 {
		v.errorf(r.DefRange, "Invalid release name", "%q cannot name Kubernetes objects: use at most 50 lowercase letters, digits and '-', starting and ending with a letter or digit.", r.Name)
	}
	if r.Replicas != nil && *r.Replicas < 0 {
		v.errorf(v.attr(r.DefRange, "replicas"), "Invalid replicas", "replicas cannot be negative, got %d.", *r.Replicas)
	}
	v.model(r)
	v.adapters(r)
	v.quantize(r)
	v.sparsity(r)
	v.gate(r)
	v.evals(r)
	v.runtime(r)
	v.engine(r)
	v.resources(r)
	v.placement(r, pools)
	v.releaseClusters(r)
	v.autoscale(r)
	v.rollout(r)
	if rb := r.Rollback; rb != nil {
		d, err := ParseDuration(rb.WindowRaw)
		if err != nil {
			v.errorf(v.attr(rb.DefRange, "window"), "Invalid duration", "window: %s", sentence(err))
		}
		rb.Window = d
		if strings.TrimSpace(rb.Query) == "" {
			v.errorf(v.attr(rb.DefRange, "query"), "Empty query", "rollback needs a PromQL query.")
		}
	}
}

func (v *validator) model(r *Release) {
	m := &r.Model
	switch m.Format {
	case "safetensors", "gguf":
	default:
		v.errorf(v.attr(m.DefRange, "format"), "Unsupported model format", "format must be \"safetensors\" or \"gguf\", not %q.", m.Format)
	}
	switch m.Packaging {
	case "":
		m.Packaging = "modelpack"
	case "modelpack", "modelcar":
	default:
		v.errorf(v.attr(m.DefRange, "packaging"), "Invalid packaging", "packaging must be \"modelpack\" (an OCI artifact mounted as an image volume) or \"modelcar\", not %q.", m.Packaging)
	}
	if m.Digest != "" && !digestRE.MatchString(m.Digest) {
		v.errorf(v.attr(m.DefRange, "digest"), "Invalid digest", "digest must be \"sha256:\" followed by 64 lowercase hex digits.")
	}
	src := v.attr(m.DefRange, "source")
	switch m.Kind() {
	case SourceHTTPS:
		if strings.HasPrefix(m.Source, "http://") {
			v.errorf(src, "Insecure model source", "Model sources must use https://, not http://.")
		}
		if m.Digest == "" {
			v.errorf(src, "Missing digest", "A model fetched over https must pin its content with digest = \"sha256:...\", so that the release is reproducible.")
		}
	case SourceOCI:
		ref := strings.TrimPrefix(m.Source, "oci://")
		if ref == "" {
			v.errorf(src, "Invalid model source", "oci:// needs an image reference, such as oci://registry.example.com/models/llama@sha256:....")
		} else if m.Digest == "" && !strings.Contains(ref, "@sha256:") {
			v.errorf(src, "Missing digest", "An oci:// model must be pinned, either by reference (@sha256:...) or with digest = \"sha256:...\".")
		}
	case SourcePath:
		if real := v.repoPath(src, "source", m.Source, true); real != "" {
			v.modelFormat(m, src, real)
		}
	}
}

// repoPath checks that p names an existing file inside the repository,
// lexically and after resolving symlinks, and returns its real path ("" when
// it has reported a problem or the file does not exist).
func (v *validator) repoPath(subject hcl.Range, attr, p string, mustExist bool) string {
	if p == "" {
		v.errorf(subject, "Empty path", "%s must name a file inside the repository.", attr)
		return ""
	}
	if filepath.IsAbs(p) || path.IsAbs(p) || (len(p) > 1 && p[1] == ':') {
		v.errorf(subject, "Path escapes the repository", "%s must be relative to the repository root, not the absolute path %q.", attr, p)
		return ""
	}
	clean := path.Clean(filepath.ToSlash(p))
	if clean == ".." || strings.HasPrefix(clean, "../") {
		v.errorf(subject, "Path escapes the repository", "%s %q points outside the repository.", attr, p)
		return ""
	}
	full := filepath.Join(v.cfg.Root, filepath.FromSlash(clean))
	real, err := filepath.EvalSymlinks(full)
	if err != nil {
		if mustExist {
			detail := fmt.Sprintf("%s %q does not exist in the repository.", attr, p)
			if !os.IsNotExist(err) {
				detail = fmt.Sprintf("%s %q: %s.", attr, p, err)
			}
			v.errorf(subject, "File not found", "%s", detail)
		}
		return ""
	}
	root, err := filepath.EvalSymlinks(v.cfg.Root)
	if err != nil {
		return ""
	}
	rel, err := filepath.Rel(root, real)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		v.errorf(subject, "Path escapes the repository", "%s %q is a symlink to a file outside the repository.", attr, p)
		return ""
	}
	return real
}

func (v *validator) quantize(r *Release) {
	q := r.Quantize
	if q == nil {
		return
	}
	if methods, ok := Methods[r.Model.Format]; ok && !slices.Contains(methods, q.Method) {
		other := "gguf"
		if r.Model.Format == "gguf" {
			other = "safetensors"
		}
		detail := fmt.Sprintf("Method %q does not apply to %s models. Methods for %s: %s.", q.Method, r.Model.Format, r.Model.Format, strings.Join(methods, ", "))
		if slices.Contains(Methods[other], q.Method) {
			detail = fmt.Sprintf("Method %q is for %s models, but this model is %s. Methods for %s: %s.", q.Method, other, r.Model.Format, r.Model.Format, strings.Join(methods, ", "))
		}
		v.errorf(v.attr(q.DefRange, "method"), "Quantize method does not fit the model format", "%s", detail)
	}
	if q.GroupSize != 0 {
		switch {
		case q.Method != "int4":
			v.errorf(v.attr(q.DefRange, "group_size"), "group_size does not apply", "group_size applies only to int4; %q has a fixed block size.", q.Method)
		default:
			if err := vllm.ValidGroupSize(q.GroupSize); err != nil {
				v.errorf(v.attr(q.DefRange, "group_size"), "Invalid group_size", "%s.", err)
			}
		}
	} else if q.Method == "int4" {
		q.GroupSize = vllm.DefaultGroupSize
	}
	badGlob := false
	for _, g := range q.Skip {
		if _, err := path.Match(g, ""); err != nil {
			v.errorf(v.attr(q.DefRange, "skip"), "Invalid glob", "skip pattern %q: %s.", g, err)
			badGlob = true
		}
	}
	if !badGlob && r.Model.Format == "safetensors" {
		// vLLM fuses q/k/v and gate/up: a skip must keep them together.
		if err := vllm.CheckSkip(q.Skip); err != nil {
			v.errorf(v.attr(q.DefRange, "skip"), "skip splits a fused layer", "%s.", err)
		}
	}
	switch q.Runner {
	case "":
		q.Runner = "local"
	case "local", "job":
	default:
		v.errorf(v.attr(q.DefRange, "runner"), "Invalid runner", "runner must be \"local\" or \"job\", not %q.", q.Runner)
	}
	if q.CPU != "" {
		if _, err := ParseCPU(q.CPU); err != nil {
			v.errorf(v.attr(q.DefRange, "cpu"), "Invalid quantity", "cpu: %s", sentence(err))
		}
	}
	if q.Memory != "" {
		if _, err := ParseMemory(q.Memory); err != nil {
			v.errorf(v.attr(q.DefRange, "memory"), "Invalid quantity", "memory: %s", sentence(err))
		}
	}
	if (q.CPU != "" || q.Memory != "") && q.Runner != "job" {
		v.warnf(v.attr(q.DefRange, "runner"), "cpu and memory apply to jobs", "quantize cpu and memory are what a quantize Job requests; with runner = %q they are not used.", q.Runner)
	}
}

func (v *validator) gate(r *Release) {
	g := r.Gate
	if g == nil {
		return
	}
	if g.MaxError != nil && *g.MaxError <= 0 {
		v.errorf(v.attr(g.DefRange, "max_error"), "Invalid max_error", "max_error is a relative RMSE and must be greater than zero, got %g.", *g.MaxError)
	}
	if len(g.Min) > 0 && g.EvalFile == "" {
		v.errorf(v.attr(g.DefRange, "min"), "Missing eval_file", "min compares metrics from an evaluation file; set eval_file to a JSON file in the repository.")
	}
	if g.EvalFile != "" {
		v.repoPath(v.attr(g.DefRange, "eval_file"), "eval_file", g.EvalFile, true)
	}
}

func (v *validator) runtime(r *Release) {
	rt := &r.Runtime
	if rt.Image == "" {
		v.errorf(v.attr(rt.DefRange, "image"), "Empty image", "runtime needs a container image.")
	}
	if rt.Port == 0 {
		rt.Port = 8000
	} else if rt.Port < 1 || rt.Port > 65535 {
		v.errorf(v.attr(rt.DefRange, "port"), "Invalid port", "port must be between 1 and 65535, got %d.", rt.Port)
	}
	if rt.HealthPath == "" {
		rt.HealthPath = "/health"
	} else if !strings.HasPrefix(rt.HealthPath, "/") {
		v.errorf(v.attr(rt.DefRange, "health_path"), "Invalid health_path", "health_path must start with '/', got %q.", rt.HealthPath)
	}
	for _, k := range sortedKeys(rt.Env) {
		if !envNameRE.MatchString(k) {
			v.errorf(v.attr(rt.DefRange, "env"), "Invalid environment variable name", "%q is not a valid environment variable name.", k)
		}
		if LooksSecret(k) && rt.Env[k] != "" {
			// No subject: the diagnostic printer would echo the source
			// line, and with it the secret, into CI logs. The position
			// goes into the text instead.
			r := v.attr(rt.DefRange, "env")
			v.diags = append(v.diags, &hcl.Diagnostic{
				Severity: hcl.DiagWarning, Summary: "Possible secret in Git",
				Detail: fmt.Sprintf("%s:%d:%d: %s looks like a secret, and its value is stored in Git. Put it in a Kubernetes Secret and use secret_env = { %s = \"SECRET/KEY\" } instead.",
					r.Filename, r.Start.Line, r.Start.Column, k, k),
			})
		}
	}
	for _, k := range sortedKeys(rt.SecretEnv) {
		if !envNameRE.MatchString(k) {
			v.errorf(v.attr(rt.DefRange, "secret_env"), "Invalid environment variable name", "%q is not a valid environment variable name.", k)
		}
		if _, dup := rt.Env[k]; dup {
			v.errorf(v.attr(rt.DefRange, "secret_env"), "Duplicate environment variable", "%s is set in both env and secret_env.", k)
		}
		name, key, ok := strings.Cut(rt.SecretEnv[k], "/")
		if !ok || !dnsLabelRE.MatchString(name) || key == "" {
			v.errorf(v.attr(rt.DefRange, "secret_env"), "Invalid secret reference", "secret_env %s must be \"SECRET-NAME/KEY\", got %q.", k, rt.SecretEnv[k])
		}
	}
}

func (v *validator) resources(r *Release) {
	res := r.Resources
	if res == nil {
		return
	}
	if res.GPUs != nil && *res.GPUs < 0 {
		v.errorf(v.attr(res.DefRange, "gpus"), "Invalid GPU count", "gpus cannot be negative, got %d.", *res.GPUs)
	}
	if res.GPUMemoryRaw != "" {
		m, err := ParseMemory(res.GPUMemoryRaw)
		if err != nil {
			v.errorf(v.attr(res.DefRange, "gpu_memory"), "Invalid quantity", "gpu_memory: %s", sentence(err))
		}
		res.GPUMemory = m
	}
	if res.CPU != "" {
		if _, err := ParseCPU(res.CPU); err != nil {
			v.errorf(v.attr(res.DefRange, "cpu"), "Invalid quantity", "cpu: %s", sentence(err))
		}
	}
	if res.Memory != "" {
		if _, err := ParseMemory(res.Memory); err != nil {
			v.errorf(v.attr(res.DefRange, "memory"), "Invalid quantity", "memory: %s", sentence(err))
		}
	}
}

func (v *validator) placement(r *Release, pools map[string]*NodePool) {
	var allowed []string
	if p := r.Placement; p != nil {
		for _, name := range p.Pools {
			if _, ok := pools[name]; !ok {
				v.unknownPool(v.attr(p.DefRange, "pools"), name)
			}
		}
		if p.MaxPerNode < 0 {
			v.errorf(v.attr(p.DefRange, "max_per_node"), "Invalid max_per_node", "max_per_node cannot be negative, got %d.", p.MaxPerNode)
		}
		allowed = slices.Clone(p.Pools)
	}
	if len(allowed) == 0 {
		for name := range pools {
			allowed = append(allowed, name)
		}
	}
	slices.Sort(allowed)
	v.fits(r, pools, allowed)
}

// poolRoom is the static nodes of a set of pools, with the best node
// for each resource alone (ties to the other resource, then to the first
// name). It is worked out once per set of pools and Load: releases share
// pool sets, and doing it per release would cost releases × nodes.
type poolRoom struct {
	nodes         []nodeRoom
	byMem, byGPUs nodeRoom
}

// roomIn returns the poolRoom of the sorted pool names allowed; key is
// their joined names.
func (v *validator) roomIn(pools map[string]*NodePool, allowed []string, key string) poolRoom {
	if r, ok := v.rooms[key]; ok {
		return r
	}
	var room poolRoom
	for _, n := range v.cfg.Nodes {
		p, ok := pools[n.Pool]
		if !ok || !slices.Contains(allowed, n.Pool) || n.GPUs < 0 {
			continue // unknown pools and bad counts are reported already
		}
		room.nodes = append(room.nodes, nodeRoom{name: n.Name, gpus: n.GPUs, reserve: p.Reserve, usable: max(0, n.GPUs-max(0, p.Reserve)), mem: n.GPUMemory})
	}
	if len(room.nodes) > 0 {
		room.byMem, room.byGPUs = room.nodes[0], room.nodes[0]
		for _, n := range room.nodes[1:] {
			if n.mem > room.byMem.mem || (n.mem == room.byMem.mem && n.usable > room.byMem.usable) {
				room.byMem = n
			}
			if n.usable > room.byGPUs.usable || (n.usable == room.byGPUs.usable && n.mem > room.byGPUs.mem) {
				room.byGPUs = n
			}
		}
	}
	if v.rooms == nil {
		v.rooms = map[string]poolRoom{}
	}
	v.rooms[key] = room
	return room
}

// nodeRoom is what one static node can give one replica.
type nodeRoom struct {
	name    string
	gpus    int   // capacity
	reserve int   // the pool's reserve
	usable  int   // gpus - reserve, at least 0
	mem     int64 // per GPU
}

// fits reports a per-replica request that no static node of the allowed
// pools can ever hold, even empty: a node fits only if it has enough GPUs
// after the pool's reserve and enough memory on each of them, both at
// once. With no static inventory the cluster decides, so nothing is said.
func (v *validator) fits(r *Release, pools map[string]*NodePool, allowed []string) {
	needMem, needGPUs := r.GPUMemory(), r.GPUCount()
	if (needMem == 0 && needGPUs <= 0) || len(v.cfg.Nodes) == 0 || r.Resources == nil {
		return
	}
	poolList := strings.Join(allowed, ", ")
	room := v.roomIn(pools, allowed, poolList)
	nodes, byMem, byGPUs := room.nodes, room.byMem, room.byGPUs
	res := r.Resources
	if len(nodes) == 0 {
		subject := res.DefRange
		if r.Placement != nil && len(r.Placement.Pools) > 0 {
			subject = v.attr(r.Placement.DefRange, "pools")
		}
		v.errorf(subject, "No node can hold a replica", "The static inventory has no node in pools %s, so no replica of this release can be placed.", poolList)
		return
	}
	memOK := needMem <= byMem.mem
	gpusOK := needGPUs <= byGPUs.usable
	if !memOK {
		v.errorf(v.attr(res.DefRange, "gpu_memory"), "GPU memory exceeds every node",
			"This release needs %s per GPU, but the most any node in pools %s offers is %s.",
			FormatBytes(needMem), poolList, FormatBytes(byMem.mem))
	}
	if !gpusOK {
		v.errorf(v.attr(res.DefRange, "gpus"), "GPUs exceed every node",
			"Each replica needs %d GPUs on one node, but no node in pools %s has that many: the best, %s, can give %d (%s).",
			needGPUs, poolList, byGPUs.name, byGPUs.usable, insufficientGPUs(needGPUs, byGPUs))
	}
	if !memOK || !gpusOK {
		return
	}
	for _, n := range nodes {
		if n.usable >= needGPUs && n.mem >= needMem {
			return
		}
	}
	// Each resource alone is somewhere, but never both on one node. The
	// node with the most GPUs lacks memory; of those with the memory, the
	// one with the most GPUs lacks GPUs.
	var roomy nodeRoom
	for _, n := range nodes {
		if n.mem >= needMem && (roomy.name == "" || n.usable > roomy.usable) {
			roomy = n
		}
	}
	v.errorf(v.attr(res.DefRange, "gpus"), "No node has both the GPUs and the GPU memory",
		"Each replica needs %d GPUs with %s each on one node, but no node in pools %s has both: %s can give %d GPUs but of %s each, and %s has %s per GPU but can give only %d (%s).",
		needGPUs, FormatBytes(needMem), poolList, byGPUs.name, byGPUs.usable, FormatBytes(byGPUs.mem),
		roomy.name, FormatBytes(roomy.mem), roomy.usable, insufficientGPUs(needGPUs, roomy))
}

// insufficientGPUs reads like the scheduler's rejection of an empty node.
func insufficientGPUs(need int, n nodeRoom) string {
	if n.reserve > 0 {
		return fmt.Sprintf("Insufficient nvidia.com/gpu: requested %d, reserved %d, capacity %d", need, n.reserve, n.gpus)
	}
	return fmt.Sprintf("Insufficient nvidia.com/gpu: requested %d, capacity %d", need, n.gpus)
}

func (v *validator) autoscale(r *Release) {
	a := r.Autoscale
	if a == nil {
		return
	}
	if a.Min < 0 {
		v.errorf(v.attr(a.DefRange, "min"), "Invalid min", "min cannot be negative, got %d.", a.Min)
	}
	if a.Min > a.Max {
		v.errorf(v.attr(a.DefRange, "max"), "min is greater than max", "autoscale min (%d) must not exceed max (%d).", a.Min, a.Max)
	}
	if a.Target <= 0 {
		v.errorf(v.attr(a.DefRange, "target"), "Invalid target", "target is the query value one replica should carry and must be greater than zero, got %g.", a.Target)
	}
	if strings.TrimSpace(a.Query) == "" {
		v.errorf(v.attr(a.DefRange, "query"), "Empty query", "autoscale needs a PromQL query.")
	}
	a.Cooldown = v.duration(a.DefRange, "cooldown", a.CooldownRaw, defaultCooldown)
	a.ScaleDownWindow = defaultScaleDownWindow
	for _, w := range []struct {
		name string
		raw  string
		dst  *time.Duration
	}{{"scale_up_window", a.ScaleUpWindowRaw, &a.ScaleUpWindow}, {"scale_down_window", a.ScaleDownWindowRaw, &a.ScaleDownWindow}} {
		if w.raw == "" {
			continue
		}
		if d, err := time.ParseDuration(w.raw); err == nil && d == 0 {
			*w.dst = 0 // no stabilization: a window may be zero
			continue
		}
		*w.dst = v.duration(a.DefRange, w.name, w.raw, *w.dst)
	}
	if t := a.Tolerance; t != nil && (*t < 0 || *t >= 1) {
		v.errorf(v.attr(a.DefRange, "tolerance"), "Invalid tolerance", "tolerance is a fraction of the target in [0, 1), such as 0.1 for ±10%%; got %g.", *t)
	}
	if a.MaxStep < 0 {
		v.errorf(v.attr(a.DefRange, "max_step"), "Invalid max_step", "max_step cannot be negative, got %d (0 means the default, max(4, current replicas)).", a.MaxStep)
	}
	if n := r.ReplicaCount(); r.Replicas != nil && n >= 0 && a.Min <= a.Max && (n < a.Min || n > a.Max) {
		v.warnf(v.attr(r.DefRange, "replicas"), "Replicas outside autoscale range", "replicas = %d is outside [%d, %d]; the autoscaler will move it into range.", n, a.Min, a.Max)
	}
}

// duration is the duration attribute name of the block defined at def,
// raw as written, or dflt when raw is empty. A raw that does not parse
// is an error, and its duration is what ParseDuration gave.
func (v *validator) duration(def hcl.Range, name, raw string, dflt time.Duration) time.Duration {
	if raw == "" {
		return dflt
	}
	d, err := ParseDuration(raw)
	if err != nil {
		v.errorf(v.attr(def, name), "Invalid duration", "%s: %s", name, sentence(err))
	}
	return d
}

// defaultCooldown is the quiet time after a change of replicas.
const defaultCooldown = 5 * time.Minute

const defaultScaleDownWindow = 5 * time.Minute

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// sentence ends an error's text with a full stop, unless it already ends
// with punctuation (a hint that asks "did you mean ...?").
func sentence(err error) string {
	s := err.Error()
	if strings.HasSuffix(s, ".") || strings.HasSuffix(s, "?") || strings.HasSuffix(s, "!") {
		return s
	}
	return s + "."
}

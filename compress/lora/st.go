package lora

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gantry-dev/gantry/compress/ggml"
	st "github.com/gantry-dev/gantry/compress/safetensors"
)

// PEFT's file names and key prefix.
const (
	peftConfigName  = "adapter_config.json"
	peftWeightsName = "adapter_model.safetensors"
	peftPrefix      = "base_model.model."
)

type stTensor struct {
	file *st.File
	info st.TensorInfo
}

// peftPair is one module's LoRA matrices in one adapter.
type peftPair struct {
	module    string // in the base model, e.g. model.layers.0.self_attn.q_proj
	a, b      string // the adapter's tensor names
	embedding bool   // lora_embedding_A/B: delta = (B·A)ᵀ
}

type peftAdapter struct {
	path  string
	scale float64
	cfg   PEFTConfig
	file  *st.File
	pairs map[string]*peftPair // by base tensor name
	saved map[string]string    // base tensor name -> adapter tensor name
}

func mergeSafetensors(ctx context.Context, base, out string, adapters []Adapter) (rep Report, err error) {
	info, err := os.Stat(base)
	if err != nil {
		return rep, fmt.Errorf("lora: %w", err)
	}
	if !info.IsDir() {
		return rep, fmt.Errorf("lora: %s: a safetensors base is a checkpoint directory", base)
	}
	shardNames, err := filepath.Glob(filepath.Join(base, "*.safetensors"))
	if err != nil {
		return rep, fmt.Errorf("lora: %w", err)
	}
	if len(shardNames) == 0 {
		return rep, fmt.Errorf("lora: %s: no .safetensors files", base)
	}
	slices.Sort(shardNames)
	var shards []*st.File
	defer func() {
		for _, f := range shards {
			f.Close()
		}
	}()
	baseT := map[string]stTensor{}
	for _, p := range shardNames {
		f, err := st.Open(p)
		if err != nil {
			return rep, fmt.Errorf("lora: base: %w", err)
		}
		shards = append(shards, f)
		for _, t := range f.Tensors() {
			if _, dup := baseT[t.Name]; dup {
				return rep, fmt.Errorf("lora: base: tensor %s is in two shards", t.Name)
			}
			baseT[t.Name] = stTensor{file: f, info: t}
		}
	}

	if cfg, err := os.ReadFile(filepath.Join(base, "config.json")); err == nil {
		var c map[string]json.RawMessage
		if json.Unmarshal(cfg, &c) == nil && c["quantization_config"] != nil && !isNull(c["quantization_config"]) {
			return rep, fmt.Errorf("lora: %s: the base is quantized (config.json has a quantization_config); merge into the unquantized checkpoint, then quantize: %w", base, ErrUnsupported)
		}
	}

	var ads []*peftAdapter
	defer func() {
		for _, a := range ads {
			a.file.Close()
		}
	}()
	for i, a := range adapters {
		pa, err := openPEFT(a, baseT)
		if pa != nil {
			ads = append(ads, pa)
		}
		if err != nil {
			return rep, fmt.Errorf("lora: adapter %d (%s): %w", i+1, a.Path, err)
		}
	}

	// Check every touched base tensor before writing anything.
	touched := map[string]bool{}
	for _, a := range ads {
		for n := range a.pairs {
			touched[n] = true
		}
		for n := range a.saved {
			touched[n] = true
		}
	}
	for n := range touched {
		t := baseT[n].info
		switch t.DType {
		case st.F16, st.BF16, st.F32:
		default:
			return rep, fmt.Errorf("lora: tensor %s: base dtype %s: only F16, BF16 and F32 tensors can be merged (merge into the unquantized checkpoint, then quantize): %w", n, t.DType, ErrUnsupported)
		}
	}

	absOut, err := filepath.Abs(out)
	if err != nil {
		return rep, fmt.Errorf("lora: %w", err)
	}
	if absBase, err := filepath.Abs(base); err == nil {
		if rel, err := filepath.Rel(absBase, absOut); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return rep, fmt.Errorf("lora: output %s is inside the base checkpoint %s", out, base)
		}
	}
	if fi, err := os.Stat(absOut); err == nil {
		ents, _ := os.ReadDir(absOut)
		if !fi.IsDir() || len(ents) > 0 {
			return rep, fmt.Errorf("lora: %s already exists", out)
		}
	}
	parent := filepath.Dir(absOut)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return rep, fmt.Errorf("lora: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(absOut)+".tmp-")
	if err != nil {
		return rep, fmt.Errorf("lora: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o755); err != nil {
		return rep, fmt.Errorf("lora: %w", err)
	}

	for _, f := range shards {
		n, err := writeShard(ctx, f, filepath.Join(tmp, filepath.Base(f.Name())), ads, &rep)
		rep.Bytes += n
		if err != nil {
			return rep, err
		}
	}
	skip := map[string]bool{}
	for _, p := range shardNames {
		skip[filepath.Base(p)] = true
	}
	if err := st.CopyTree(ctx, base, tmp, skip); err != nil {
		return rep, err
	}
	if err := syncDir(tmp); err != nil {
		return rep, err
	}
	os.Remove(absOut) // an empty directory is replaced; anything else makes Rename fail
	if err := os.Rename(tmp, absOut); err != nil {
		return rep, fmt.Errorf("lora: %w", err)
	}
	_ = syncDir(parent)
	return rep, nil
}

// openPEFT reads a PEFT adapter directory and matches its tensors to the
// base's.
func openPEFT(a Adapter, baseT map[string]stTensor) (*peftAdapter, error) {
	data, err := os.ReadFile(filepath.Join(a.Path, peftConfigName))
	if err != nil {
		return nil, err
	}
	cfg, err := ParsePEFTConfig(data)
	if err != nil {
		return nil, err
	}
	wpath := filepath.Join(a.Path, peftWeightsName)
	if _, err := os.Stat(wpath); err != nil {
		if _, err2 := os.Stat(filepath.Join(a.Path, "adapter_model.bin")); err2 == nil {
			return nil, fmt.Errorf("%s: only adapter_model.safetensors is read (pickled adapter_model.bin is not): %w", a.Path, ErrUnsupported)
		}
		return nil, err
	}
	f, err := st.Open(wpath)
	if err != nil {
		return nil, err
	}
	pa := &peftAdapter{path: a.Path, scale: a.Scale, cfg: cfg, file: f, pairs: map[string]*peftPair{}, saved: map[string]string{}}
	for _, t := range f.Tensors() {
		if err := pa.classify(t, baseT); err != nil {
			return pa, err
		}
	}
	for _, bn := range slices.Sorted(maps.Keys(pa.pairs)) {
		p := pa.pairs[bn]
		if p.a == "" || p.b == "" {
			have, miss := p.a, "B"
			if have == "" {
				have, miss = p.b, "A"
			}
			return pa, fmt.Errorf("tensor %s: adapter tensor %s has no lora_%s half: %w", bn, have, miss, ErrMissing)
		}
		if err := pa.checkShapes(bn, p, baseT[bn].info); err != nil {
			return pa, err
		}
	}
	if len(pa.pairs) == 0 && len(pa.saved) == 0 {
		return pa, fmt.Errorf("%s has no LoRA tensors: %w", peftWeightsName, ErrMissing)
	}
	// Every target module must exist in the base.
	modules := make([]string, 0, len(baseT))
	for n, t := range baseT {
		if len(t.info.Shape) == 2 && strings.HasSuffix(n, ".weight") {
			modules = append(modules, strings.TrimSuffix(n, ".weight"))
		}
	}
	for i, tm := range cfg.TargetModules {
		if !slices.ContainsFunc(modules, func(m string) bool { return moduleMatches(m, tm) }) {
			return pa, fmt.Errorf("%s: target_modules[%d] matches no module of the base model: %w", peftConfigName, i, ErrMissing)
		}
	}
	if cfg.TargetRegex != "" && !slices.ContainsFunc(modules, cfg.targets) {
		return pa, fmt.Errorf("%s: target_modules (a regular expression) matches no module of the base model: %w", peftConfigName, ErrMissing)
	}
	return pa, nil
}

// classify sorts one adapter tensor into a LoRA half or a saved module.
func (pa *peftAdapter) classify(t st.TensorInfo, baseT map[string]stTensor) error {
	if !t.DType.IsFloat() {
		return fmt.Errorf("adapter tensor %s: dtype %s is not a float type: %w", t.Name, t.DType, ErrUnsupported)
	}
	name := strings.TrimPrefix(t.Name, peftPrefix)
	segs := strings.Split(name, ".")
	for i, s := range segs {
		var half string
		var emb bool
		switch s {
		case "lora_A", "lora_B":
			half = s[5:]
			// rest: weight, or <adapter name>.weight
			rest := segs[i+1:]
			if !(len(rest) == 1 && rest[0] == "weight") && !(len(rest) == 2 && rest[1] == "weight") {
				return fmt.Errorf("adapter tensor %s: not a PEFT LoRA key (want …%s.weight): %w", t.Name, s, ErrUnsupported)
			}
		case "lora_embedding_A", "lora_embedding_B":
			half, emb = s[15:], true
			if len(segs[i+1:]) > 1 {
				return fmt.Errorf("adapter tensor %s: not a PEFT LoRA key: %w", t.Name, ErrUnsupported)
			}
		default:
			if strings.HasPrefix(s, "lora_") {
				what := "an unknown LoRA tensor"
				if s == "lora_magnitude_vector" {
					what = "a DoRA magnitude vector"
				}
				return fmt.Errorf("adapter tensor %s is %s, which Merge does not merge: %w", t.Name, what, ErrUnsupported)
			}
			continue
		}
		if i == 0 {
			return fmt.Errorf("adapter tensor %s: no module name: %w", t.Name, ErrUnsupported)
		}
		if len(t.Shape) != 2 {
			return fmt.Errorf("adapter tensor %s: shape %v, want a matrix: %w", t.Name, t.Shape, ErrShape)
		}
		module := strings.Join(segs[:i], ".")
		bn := module + ".weight"
		if _, ok := baseT[bn]; !ok {
			return fmt.Errorf("adapter tensor %s: the base has no tensor %s: %w", t.Name, bn, ErrMissing)
		}
		p := pa.pairs[bn]
		if p == nil {
			p = &peftPair{module: module, embedding: emb}
			pa.pairs[bn] = p
		}
		if p.embedding != emb {
			return fmt.Errorf("tensor %s: adapter mixes lora_embedding and lora matrices: %w", bn, ErrUnsupported)
		}
		dst := &p.a
		if half == "B" {
			dst = &p.b
		}
		if *dst != "" {
			return fmt.Errorf("tensor %s: adapter has two lora_%s tensors (%s, %s): %w", bn, half, *dst, t.Name, ErrUnsupported)
		}
		*dst = t.Name
		return nil
	}
	// A full tensor: modules_to_save (…module.weight, older files
	// …module.modules_to_save.<adapter>.weight) or an embedding saved with
	// save_embedding_layers (…module.base_layer.weight).
	if i := slices.Index(segs, "modules_to_save"); i > 0 && i+2 < len(segs) {
		segs = append(segs[:i:i], segs[i+2:]...)
	}
	viaBase := false
	if n := len(segs); n >= 3 && segs[n-2] == "base_layer" {
		segs = append(segs[:n-2:n-2], segs[n-1])
		viaBase = true
	}
	bn := strings.Join(segs, ".")
	bt, ok := baseT[bn]
	if !ok {
		return fmt.Errorf("adapter tensor %s: the base has no tensor %s: %w", t.Name, bn, ErrMissing)
	}
	module := bn
	if i := strings.LastIndexByte(bn, '.'); i > 0 {
		module = bn[:i]
	}
	if !viaBase && !pa.cfg.savedModule(module) {
		return fmt.Errorf("adapter tensor %s is neither a LoRA matrix nor in modules_to_save: %w", t.Name, ErrUnsupported)
	}
	if !slices.Equal(t.Shape, bt.info.Shape) {
		return fmt.Errorf("tensor %s: adapter's saved tensor %s is %s, base is %s: %w", bn, t.Name, dims(t.Shape), dims(bt.info.Shape), ErrShape)
	}
	if prev, dup := pa.saved[bn]; dup {
		return fmt.Errorf("tensor %s: adapter saves it twice (%s, %s): %w", bn, prev, t.Name, ErrUnsupported)
	}
	pa.saved[bn] = t.Name
	return nil
}

func (pa *peftAdapter) checkShapes(bn string, p *peftPair, base st.TensorInfo) error {
	at, _ := pa.file.Lookup(p.a)
	bt, _ := pa.file.Lookup(p.b)
	if _, ok := pa.saved[bn]; ok {
		return fmt.Errorf("tensor %s: adapter both replaces it and adds a delta: %w", bn, ErrUnsupported)
	}
	if len(base.Shape) != 2 {
		return fmt.Errorf("tensor %s: base shape %s is not a matrix: %w", bn, dims(base.Shape), ErrShape)
	}
	// A is r×in, B is out×r (for embeddings A is r×num_embeddings, B is
	// dim×r); B·A is out×in.
	ra, rb := at.Shape[0], bt.Shape[1]
	if ra != rb {
		return fmt.Errorf("tensor %s: lora_A has rank %d, lora_B rank %d: %w", bn, ra, rb, ErrShape)
	}
	if r, _ := pa.cfg.RankAlpha(p.module); int64(r) != ra {
		return fmt.Errorf("tensor %s: adapter matrices have rank %d, adapter_config.json says %d: %w", bn, ra, r, ErrShape)
	}
	rows, cols := bt.Shape[0], at.Shape[1]
	what := "B·A"
	if p.embedding || pa.cfg.FanInFanOut {
		rows, cols, what = cols, rows, "(B·A)ᵀ"
	}
	if rows != base.Shape[0] || cols != base.Shape[1] {
		return fmt.Errorf("tensor %s: adapter %s is %d×%d, base is %d×%d: %w", bn, what, rows, cols, base.Shape[0], base.Shape[1], ErrShape)
	}
	return nil
}

func dims(s []int64) string {
	p := make([]string, len(s))
	for i, d := range s {
		p[i] = fmt.Sprint(d)
	}
	return strings.Join(p, "×")
}

func readMatrix(ctx context.Context, f *st.File, name string) (matrix, error) {
	t, _ := f.Lookup(name)
	b, err := f.ReadTensor(ctx, name)
	if err != nil {
		return matrix{}, err
	}
	v := make([]float32, t.NumElements())
	if err := st.DecodeFloat32(v, b, t.DType); err != nil {
		return matrix{}, fmt.Errorf("adapter tensor %s: %w", name, err)
	}
	return matrix{rows: int(t.Shape[0]), cols: int(t.Shape[1]), v: v}, nil
}

// writeShard writes one output shard and returns its size.
func writeShard(ctx context.Context, in *st.File, path string, ads []*peftAdapter, rep *Report) (written int64, err error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, fmt.Errorf("lora: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("lora: %w", cerr)
		}
	}()
	cw := &countWriter{w: f}
	bw := bufio.NewWriterSize(cw, 1<<20)
	w, err := st.NewWriter(bw, in.Metadata(), in.Tensors())
	if err != nil {
		return 0, fmt.Errorf("lora: %s: %w", path, err)
	}
	for _, t := range in.Tensors() {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		var steps []func(ctx context.Context) (step, error)
		merged, replaced := false, false
		for _, a := range ads {
			if sn, ok := a.saved[t.Name]; ok {
				replaced = true
				steps = append(steps, a.replStep(t, sn))
			}
			if p, ok := a.pairs[t.Name]; ok {
				merged = true
				steps = append(steps, a.deltaStep(p))
			}
		}
		rep.Tensors++
		if len(steps) == 0 {
			sec, err := in.Section(t.Name)
			if err != nil {
				return 0, fmt.Errorf("lora: %w", err)
			}
			if _, err := io.Copy(w, sec); err != nil {
				return 0, fmt.Errorf("lora: tensor %s: %w", t.Name, err)
			}
			continue
		}
		if merged {
			rep.Merged++
		}
		if replaced {
			rep.Replaced++
		}
		j := stJob(in, t, w, steps)
		if err := j.run(ctx); err != nil {
			return 0, fmt.Errorf("lora: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		return 0, fmt.Errorf("lora: %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return 0, fmt.Errorf("lora: %w", err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("lora: %w", err)
	}
	return cw.n, nil
}

func stJob(in *st.File, t st.TensorInfo, w io.Writer, steps []func(context.Context) (step, error)) *job {
	// Rows of the last dimension (a replaced vector is one row).
	cols := 1
	if len(t.Shape) > 0 {
		cols = int(t.Shape[len(t.Shape)-1])
	}
	rows := int(t.NumElements()) / max(cols, 1)
	es := int(t.DType.Size())
	var raw []byte
	var f32 []float32
	return &job{
		name: t.Name, rows: rows, cols: cols, elemBytes: es,
		readBase: func(row0, n int, dst []float64) error {
			nb := n * cols * es
			if cap(raw) < nb {
				raw, f32 = make([]byte, nb), make([]float32, n*cols)
			}
			if err := in.ReadAt(t.Name, raw[:nb], int64(row0*cols*es)); err != nil {
				return err
			}
			if err := st.DecodeFloat32(f32[:n*cols], raw[:nb], t.DType); err != nil {
				return err
			}
			return widen(dst, f32[:n*cols], "tensor "+t.Name+" of the base", row0*cols)
		},
		load:   loadSteps(steps),
		encode: func(dst []byte, src []float64) int { return encodeST(dst, src, t.DType) },
		write: func(p []byte) error {
			_, err := w.Write(p)
			return err
		},
	}
}

func (pa *peftAdapter) deltaStep(p *peftPair) func(context.Context) (step, error) {
	return func(ctx context.Context) (step, error) {
		a, err := readMatrix(ctx, pa.file, p.a)
		if err != nil {
			return step{}, err
		}
		b, err := readMatrix(ctx, pa.file, p.b)
		if err != nil {
			return step{}, err
		}
		_, s := pa.cfg.Scaling(p.module)
		scale := pa.scale * s
		// Normal: delta = B·A, L = B (out×r), R = A (r×in).
		// Transposed (fan_in_fan_out, embeddings): delta = (B·A)ᵀ,
		// L = Aᵀ (in×r), R = Bᵀ (r×out).
		transposed := p.embedding || pa.cfg.FanInFanOut
		var f *factors
		if transposed {
			f, err = lowRank(a, true, b, true, scale, "adapter tensor "+p.a, "adapter tensor "+p.b)
		} else {
			f, err = lowRank(b, false, a, false, scale, "adapter tensor "+p.b, "adapter tensor "+p.a)
		}
		if err != nil {
			return step{}, err
		}
		return step{f: f}, nil
	}
}

func (pa *peftAdapter) replStep(t st.TensorInfo, name string) func(context.Context) (step, error) {
	return func(context.Context) (step, error) {
		at, _ := pa.file.Lookup(name)
		cols := 1
		if len(t.Shape) > 0 {
			cols = int(t.Shape[len(t.Shape)-1])
		}
		es := int(at.DType.Size())
		var raw []byte
		var f32 []float32
		return step{repl: func(ctx context.Context, row0 int, dst []float64) error {
			n := len(dst)
			if cap(raw) < n*es {
				raw, f32 = make([]byte, n*es), make([]float32, n)
			}
			if err := pa.file.ReadAt(name, raw[:n*es], int64(row0*cols*es)); err != nil {
				return err
			}
			if err := st.DecodeFloat32(f32[:n], raw[:n*es], at.DType); err != nil {
				return err
			}
			return widen(dst, f32[:n], "adapter tensor "+name, row0*cols)
		}}, nil
	}
}

// encodeST rounds src once to dt (F32, F16 or BF16).
func encodeST(dst []byte, src []float64, dt st.DType) int {
	switch dt {
	case st.F16:
		return encodeFloats(dst, src, ggml.F16)
	case st.BF16:
		return encodeFloats(dst, src, ggml.BF16)
	}
	return encodeFloats(dst, src, ggml.F32)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("lora: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("lora: sync %s: %w", dir, err)
	}
	return nil
}

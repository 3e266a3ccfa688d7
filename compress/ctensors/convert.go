package ctensors

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/gantry-dev/gantry/compress/internal/writeback"
	"github.com/gantry-dev/gantry/compress/quality"
	st "github.com/gantry-dev/gantry/compress/safetensors"
)

// Options control Convert.
type Options struct {
	// Scheme is "fp8" (FP8 E4M3 weights, per-channel float32 scales,
	// format float-quantized), "int8" (W8A16, per-channel, pack-quantized)
	// or "int4" (W4A16, groups of GroupSize, pack-quantized).
	Scheme string
	// GroupSize is the int4 group length along the input dimension:
	// 32, 64 or 128 (0 means 128), or -1 for one scale per output channel;
	// these are the sizes vLLM serves (see ValidGroupSize). Other schemes
	// take no group size (0).
	GroupSize int
	// Threads is the number of workers; 0 means GOMAXPROCS.
	Threads int
	// Skip lists path.Match globs of tensor names (e.g.
	// "model.layers.*.mlp.down_proj.weight") or module names
	// ("model.layers.0.*") kept unquantized.
	Skip []string
	// QuantizeEmbeddings and QuantizeLMHead quantize the token embedding
	// and the output head, which are kept unquantized by default. vLLM's
	// compressed-tensors loader does not quantize these layers: checkpoints
	// made with either option are for other consumers.
	QuantizeEmbeddings, QuantizeLMHead bool
	// AllowNonFinite accepts NaN and ±Inf in weights: scales are then set by
	// the finite values, ±Inf saturates, NaN becomes 0 (int) or NaN (fp8),
	// and non-finite values are left out of the error statistics; float
	// tensors copied unchanged (norms, lm_head, skipped layers) keep them.
	// Without it a non-finite value in any float tensor, quantized or
	// copied, is an error naming the tensor and its offset.
	AllowNonFinite bool
	// Progress, if set, is called with the number of input tensor bytes
	// processed so far. Calls are serialized and the count never decreases.
	Progress func(bytesDone int64)
}

// ErrNonFinite is wrapped by the error for a NaN or Inf weight.
var ErrNonFinite = errors.New("non-finite weight")

// ErrAlreadyQuantized is returned for a checkpoint whose config.json
// already has a quantization_config or whose tensors look quantized.
var ErrAlreadyQuantized = errors.New("checkpoint is already quantized")

type scheme struct {
	name      string // report type
	format    string // compressed-tensors format
	bits      int
	float     bool
	group     int // 0: per channel
	scaleType func(in st.DType) st.DType
}

func (o Options) scheme() (scheme, error) {
	if o.Scheme != "int4" && o.GroupSize != 0 {
		return scheme{}, fmt.Errorf("ctensors: group size %d: only int4 takes a group size (%s is channel-wise)", o.GroupSize, o.Scheme)
	}
	switch o.Scheme {
	case "fp8":
		return scheme{name: "fp8_e4m3", format: "float-quantized", bits: 8, float: true, scaleType: func(st.DType) st.DType { return st.F32 }}, nil
	case "int8":
		return scheme{name: "int8", format: "pack-quantized", bits: 8, scaleType: intScaleType}, nil
	case "int4":
		if err := ValidGroupSize(o.GroupSize); err != nil {
			return scheme{}, fmt.Errorf("ctensors: %w", err)
		}
		g := o.GroupSize
		switch g {
		case 0:
			g = DefaultGroupSize
		case -1:
			g = 0
		}
		name := "int4"
		if g > 0 {
			name = fmt.Sprintf("int4_g%d", g)
		}
		return scheme{name: name, format: "pack-quantized", bits: 4, group: g, scaleType: intScaleType}, nil
	}
	return scheme{}, fmt.Errorf("ctensors: scheme %q: want fp8, int8 or int4", o.Scheme)
}

// intScaleType stores integer-scheme scales in the weight's own float type,
// the dtype vLLM's WNA16 loader casts them to (params_dtype).
func intScaleType(in st.DType) st.DType {
	switch in {
	case st.BF16, st.F16, st.F32:
		return in
	}
	return st.F32
}

// unpackable says why a [rows, cols] weight does not fit the scheme's
// layout, or returns "" if it fits.
//
// Convert refuses such a layer rather than keeping it dense: the user asked
// for the scheme, and quietly leaving layers dense (with a group size that
// divides no layer, every layer) yields a checkpoint that is not what was
// asked for. Storing that one layer channel-wise instead is not an option
// either: the checkpoint has one config group with one strategy, and vLLM's
// Marlin kernel also needs in_features (per tensor-parallel partition) to be
// a multiple of the group size. The message says what to do instead: a
// group size that divides it, -1, or a skip of the layer and its fused
// siblings, which vLLM loads dense from quantization_config.ignore.
func (s scheme) unpackable(rows, cols int64) string {
	if rows <= 0 || cols <= 0 {
		return fmt.Sprintf("shape [%d, %d] has a zero dimension", rows, cols)
	}
	if s.float {
		return ""
	}
	if per := int64(32 / s.bits); cols%per != 0 {
		return fmt.Sprintf("in_features %d is not a multiple of %d (int%d codes are packed %d to an int32); skip the layer to keep it dense", cols, per, s.bits, per)
	}
	if s.group > 0 && cols%int64(s.group) != 0 {
		return fmt.Sprintf("in_features %d is not a multiple of the group size %d: use a group size that divides it, -1 (channel-wise), or skip the layer to keep it dense", cols, s.group)
	}
	return ""
}

const (
	kindCopy = iota
	kindQuant
)

// job is one input tensor and where its output goes.
type job struct {
	shard *shardJob
	in    st.TensorInfo
	kind  int
	// outputs, absolute offsets in the output file
	outOff, scaleOff, shapeOff int64
	scaleType                  st.DType
	rows, cols                 int64
	blocks                     []quality.Stats
}

type shardJob struct {
	inPath, outName string
	in              *st.File
	out             *os.File
	wb              *writeback.Syncer // out's background sync
	meta            map[string]string
	layout          []st.TensorInfo
	prefix          []byte
	jobs            []*job
}

// writeAt writes p at off of the output shard and counts it toward the
// shard's background sync.
func (sj *shardJob) writeAt(p []byte, off int64) (int, error) {
	n, err := sj.out.WriteAt(p, off)
	sj.wb.Wrote(int64(n))
	return n, err
}

// isEmbedding reports whether module names a token or position embedding.
func isEmbedding(module string) bool {
	last := module[strings.LastIndexByte(module, '.')+1:]
	return strings.Contains(last, "embed") || last == "wte" || last == "wpe"
}

func isLMHead(module string) bool {
	return module == "lm_head" || module == "embed_out" || strings.HasSuffix(module, ".lm_head")
}

func skipped(globs []string, name, module string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
		if ok, _ := path.Match(g, module); ok {
			return true
		}
	}
	return false
}

// Convert reads the Hugging Face checkpoint directory inDir and writes a
// compressed-tensors checkpoint that vLLM loads to outDir. See the package
// documentation for what is quantized and how. outDir must not exist or be
// an empty directory; it is built in a temporary directory next to it and
// renamed into place, so it appears complete or not at all.
func Convert(ctx context.Context, inDir, outDir string, opts Options) (rep quality.Report, err error) {
	sch, err := opts.scheme()
	if err != nil {
		return rep, err
	}
	if err := CheckSkip(opts.Skip); err != nil {
		return rep, fmt.Errorf("ctensors: %w", err)
	}
	threads := opts.Threads
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	absIn, err1 := filepath.Abs(inDir)
	absOut, err2 := filepath.Abs(outDir)
	if err := errors.Join(err1, err2); err != nil {
		return rep, fmt.Errorf("ctensors: %w", err)
	}
	if absIn == absOut || strings.HasPrefix(absOut, absIn+string(filepath.Separator)) {
		return rep, fmt.Errorf("ctensors: output %s is inside the input %s", outDir, inDir)
	}
	if ents, err := os.ReadDir(outDir); err == nil && len(ents) > 0 {
		return rep, fmt.Errorf("ctensors: output %s exists and is not empty", outDir)
	}

	config, err := readJSONMap(filepath.Join(inDir, "config.json"))
	if err != nil {
		return rep, err
	}
	if _, ok := config["quantization_config"]; ok {
		return rep, fmt.Errorf("ctensors: %s: %w (config.json has quantization_config)", inDir, ErrAlreadyQuantized)
	}

	// Find the weight files.
	indexName := "model.safetensors.index.json"
	var index map[string]any
	var shardNames []string
	if _, err := os.Stat(filepath.Join(inDir, indexName)); err == nil {
		index, err = readJSONMap(filepath.Join(inDir, indexName))
		if err != nil {
			return rep, err
		}
		wm, ok := index["weight_map"].(map[string]any)
		if !ok {
			return rep, fmt.Errorf("ctensors: %s: no weight_map object", indexName)
		}
		seen := map[string]bool{}
		for _, v := range wm {
			s, ok := v.(string)
			if !ok || s != filepath.Base(s) || !strings.HasSuffix(s, ".safetensors") {
				return rep, fmt.Errorf("ctensors: %s: bad shard name %v", indexName, v)
			}
			if !seen[s] {
				seen[s] = true
				shardNames = append(shardNames, s)
			}
		}
		sort.Strings(shardNames)
	} else if _, err := os.Stat(filepath.Join(inDir, "model.safetensors")); err == nil {
		shardNames = []string{"model.safetensors"}
	} else {
		return rep, fmt.Errorf("ctensors: %s: no model.safetensors or %s", inDir, indexName)
	}

	// Open and validate every shard, then plan the output.
	var shards []*shardJob
	defer func() {
		for _, s := range shards {
			s.in.Close()
			if s.out != nil {
				s.out.Close()
			}
		}
	}()
	var ignore []string
	// Every 2-D linear weight's module: quantized or not, and why not, for
	// the fused-layer check.
	linear, denseWhy := map[string]bool{}, map[string]string{}
	var linearOrder []string
	weightMap := map[string]string{}
	var totalOut, totalIn int64
	for _, name := range shardNames {
		f, err := st.Open(filepath.Join(inDir, name))
		if err != nil {
			return rep, fmt.Errorf("ctensors: %w", err)
		}
		sj := &shardJob{inPath: filepath.Join(inDir, name), outName: name, in: f, meta: f.Metadata()}
		shards = append(shards, sj)
		if index != nil {
			wm := index["weight_map"].(map[string]any)
			for _, t := range f.Tensors() {
				if wm[t.Name] != name {
					return rep, fmt.Errorf("ctensors: %s: tensor %q is in %s but the index says %v", indexName, t.Name, name, wm[t.Name])
				}
			}
		}
		for _, t := range f.Tensors() {
			if strings.HasSuffix(t.Name, ".weight_scale") || strings.HasSuffix(t.Name, ".weight_packed") {
				return rep, fmt.Errorf("ctensors: %s: tensor %q: %w", name, t.Name, ErrAlreadyQuantized)
			}
			j := &job{shard: sj, in: t, kind: kindCopy}
			if strings.HasSuffix(t.Name, ".weight") && len(t.Shape) == 2 {
				module := strings.TrimSuffix(t.Name, ".weight")
				emb, head := isEmbedding(module), isLMHead(module)
				float := t.DType == st.F16 || t.DType == st.BF16 || t.DType == st.F32 || t.DType == st.F64
				want := float && (!emb || opts.QuantizeEmbeddings) && (!head || opts.QuantizeLMHead)
				skip := skipped(opts.Skip, t.Name, module)
				if want && !skip {
					if why := sch.unpackable(t.Shape[0], t.Shape[1]); why != "" {
						return rep, fmt.Errorf("ctensors: %s: tensor %q: offset %d: cannot be %s: %s",
							sj.inPath, t.Name, f.DataStart()+t.Offsets[0], sch.name, why)
					}
					j.kind = kindQuant
					j.rows, j.cols = t.Shape[0], t.Shape[1]
				} else if !emb && !head {
					ignore = append(ignore, module) // a Linear left unquantized
				}
				if !emb && !head {
					linear[module] = j.kind == kindQuant
					linearOrder = append(linearOrder, module)
					switch {
					case skip:
						denseWhy[module] = "matches a skip pattern"
					case !float:
						denseWhy[module] = "dtype " + t.DType.String()
					}
				}
			}
			sj.jobs = append(sj.jobs, j)
			totalIn += t.Offsets[1] - t.Offsets[0]
		}
		// Output layout, in the reference writer's order.
		for _, j := range sj.jobs {
			t := j.in
			if j.kind == kindCopy {
				sj.layout = append(sj.layout, st.TensorInfo{Name: t.Name, DType: t.DType, Shape: t.Shape})
				continue
			}
			module := strings.TrimSuffix(t.Name, ".weight")
			j.scaleType = sch.scaleType(t.DType)
			groups := int64(1)
			if sch.group > 0 {
				groups = j.cols / int64(sch.group)
			}
			if sch.float {
				sj.layout = append(sj.layout, st.TensorInfo{Name: t.Name, DType: st.F8_E4M3, Shape: []int64{j.rows, j.cols}})
			} else {
				sj.layout = append(sj.layout,
					st.TensorInfo{Name: module + ".weight_packed", DType: st.I32, Shape: []int64{j.rows, j.cols * int64(sch.bits) / 32}},
					st.TensorInfo{Name: module + ".weight_shape", DType: st.I64, Shape: []int64{2}})
			}
			sj.layout = append(sj.layout, st.TensorInfo{Name: module + ".weight_scale", DType: j.scaleType, Shape: []int64{j.rows, groups}})
		}
		st.SortCanonical(sj.layout)
		if err := st.AssignOffsets(sj.layout); err != nil {
			return rep, fmt.Errorf("ctensors: %s: %w", name, err)
		}
		sj.prefix, err = st.EncodeHeader(sj.meta, sj.layout)
		if err != nil {
			return rep, fmt.Errorf("ctensors: %s: %w", name, err)
		}
		pos := map[string]int64{}
		for _, t := range sj.layout {
			pos[t.Name] = int64(len(sj.prefix)) + t.Offsets[0]
			weightMap[t.Name] = name
			totalOut += t.Offsets[1] - t.Offsets[0]
		}
		for _, j := range sj.jobs {
			module := strings.TrimSuffix(j.in.Name, ".weight")
			switch {
			case j.kind == kindCopy:
				j.outOff = pos[j.in.Name]
			case sch.float:
				j.outOff, j.scaleOff = pos[j.in.Name], pos[module+".weight_scale"]
			default:
				j.outOff, j.scaleOff, j.shapeOff = pos[module+".weight_packed"], pos[module+".weight_scale"], pos[module+".weight_shape"]
			}
		}
	}
	if len(weightMap) == 0 {
		return rep, fmt.Errorf("ctensors: %s: no tensors", inDir)
	}
	if err := checkFused(linear, denseWhy, linearOrder); err != nil {
		return rep, fmt.Errorf("ctensors: %s: %w", inDir, err)
	}

	// Build the output next to outDir.
	parent := filepath.Dir(absOut)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return rep, fmt.Errorf("ctensors: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(absOut)+".tmp-")
	if err != nil {
		return rep, fmt.Errorf("ctensors: %w", err)
	}
	// MkdirTemp makes the directory 0700; the checkpoint is an ordinary output.
	if err := os.Chmod(tmp, 0o755); err != nil {
		os.RemoveAll(tmp)
		return rep, fmt.Errorf("ctensors: %w", err)
	}
	defer func() {
		if err != nil {
			for _, sj := range shards {
				if sj.out != nil {
					sj.wb.Stop()
					sj.out.Close()
				}
			}
			os.RemoveAll(tmp)
		}
	}()
	for _, sj := range shards {
		f, err := os.Create(filepath.Join(tmp, sj.outName))
		if err != nil {
			return rep, fmt.Errorf("ctensors: %w", err)
		}
		sj.out = f
		sj.wb = writeback.Start(f, 0)
		size := int64(len(sj.prefix))
		if n := len(sj.layout); n > 0 {
			size += sj.layout[n-1].Offsets[1]
		}
		if err := writeback.Size(f, size); err != nil {
			return rep, fmt.Errorf("ctensors: %w", err)
		}
		if _, err := f.WriteAt(sj.prefix, 0); err != nil {
			return rep, fmt.Errorf("ctensors: %s: %w", sj.outName, err)
		}
	}

	if err := run(ctx, shards, sch, opts, threads); err != nil {
		return rep, err
	}
	for _, sj := range shards {
		if err := sj.wb.Stop(); err != nil {
			return rep, fmt.Errorf("ctensors: %s: %w", sj.outName, err)
		}
		if err := sj.out.Sync(); err != nil {
			return rep, fmt.Errorf("ctensors: %s: %w", sj.outName, err)
		}
		if err := sj.out.Close(); err != nil {
			return rep, fmt.Errorf("ctensors: %s: %w", sj.outName, err)
		}
		sj.out = nil
	}

	// config.json, the index, and every other file.
	slices.Sort(ignore)
	ignore = slices.Compact(ignore)
	if !opts.QuantizeLMHead && !slices.Contains(ignore, "lm_head") {
		ignore = append([]string{"lm_head"}, ignore...)
	}
	config["quantization_config"] = quantizationConfig(sch, opts, ignore)
	if err := writeJSON(filepath.Join(tmp, "config.json"), config); err != nil {
		return rep, err
	}
	if index != nil {
		md, _ := index["metadata"].(map[string]any)
		if md == nil {
			md = map[string]any{}
		}
		md["total_size"] = totalOut
		index["metadata"] = md
		wm := map[string]any{}
		for k, v := range weightMap {
			wm[k] = v
		}
		index["weight_map"] = wm
		if err := writeJSON(filepath.Join(tmp, indexName), index); err != nil {
			return rep, err
		}
	}
	skip := map[string]bool{"config.json": true, indexName: true}
	for _, s := range shardNames {
		skip[s] = true
	}
	if err := st.CopyTree(ctx, inDir, tmp, skip); err != nil {
		return rep, err
	}
	if err := st.SyncDir(tmp); err != nil {
		return rep, err
	}
	os.Remove(outDir) // an empty directory is replaced; anything else makes Rename fail
	if err := os.Rename(tmp, outDir); err != nil {
		return rep, fmt.Errorf("ctensors: %w", err)
	}
	_ = st.SyncDir(parent)

	var rows []quality.Tensor
	for _, sj := range shards {
		for _, j := range sj.jobs {
			if j.kind != kindQuant {
				continue
			}
			var s quality.Stats
			for _, b := range j.blocks {
				s.Merge(b)
			}
			rows = append(rows, quality.NewTensor(j.in.Name, sch.name, s))
		}
	}
	return quality.NewReport(rows), nil
}

// unit is one piece of work: a row block of a quantized tensor or a byte
// range of a copied one.
type unit struct {
	j        *job
	lo, hi   int64 // rows for kindQuant, bytes for kindCopy
	blockIdx int
}

const blockBytes = 1 << 20 // input bytes per unit

// run processes every tensor with threads workers. Each unit reads its input
// with ReadAt and writes its output with WriteAt at offsets fixed by the
// layout, so units are independent and the output does not depend on their
// order; per-block error statistics are merged in block order afterwards.
// Memory is bounded by threads × a few blocks, whatever the model size.
func run(ctx context.Context, shards []*shardJob, sch scheme, opts Options, threads int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	units := make(chan unit, threads)
	var (
		mu       sync.Mutex
		firstErr error
		done     int64
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	progress := func(n int64) {
		mu.Lock()
		done += n
		if opts.Progress != nil {
			opts.Progress(done)
		}
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for w := 0; w < threads; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var wk worker
			for u := range units {
				if ctx.Err() != nil {
					continue
				}
				n, err := wk.do(u, sch, opts)
				if err != nil {
					fail(err)
					continue
				}
				progress(n)
			}
		}()
	}
	// Produce units in file order.
feed:
	for _, sj := range shards {
		for _, j := range sj.jobs {
			size := j.in.Offsets[1] - j.in.Offsets[0]
			if j.kind == kindCopy {
				for lo := int64(0); lo < size; lo += blockBytes {
					select {
					case units <- unit{j: j, lo: lo, hi: min(lo+blockBytes, size)}:
					case <-ctx.Done():
						break feed
					}
				}
				continue
			}
			if !sch.float {
				var b [16]byte
				binary.LittleEndian.PutUint64(b[:], uint64(j.rows))
				binary.LittleEndian.PutUint64(b[8:], uint64(j.cols))
				if _, err := sj.writeAt(b[:], j.shapeOff); err != nil {
					fail(fmt.Errorf("ctensors: %s: %w", sj.outName, err))
					break feed
				}
			}
			rowBytes := j.cols * j.in.DType.Size()
			per := max(1, blockBytes/rowBytes)
			nb := int((j.rows + per - 1) / per)
			j.blocks = make([]quality.Stats, nb)
			for b := 0; b < nb; b++ {
				lo := int64(b) * per
				select {
				case units <- unit{j: j, lo: lo, hi: min(lo+per, j.rows), blockIdx: b}:
				case <-ctx.Done():
					break feed
				}
			}
		}
	}
	close(units)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// worker holds one goroutine's reusable buffers.
type worker struct {
	in       []byte
	b        rowBuf
	out      []byte
	scales   []float32
	scaleOut []byte
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

func (w *worker) do(u unit, sch scheme, opts Options) (int64, error) {
	j := u.j
	sj := j.shard
	if j.kind == kindCopy {
		w.in = grow(w.in, int(u.hi-u.lo))
		if err := sj.in.ReadAt(j.in.Name, w.in, u.lo); err != nil {
			return 0, fmt.Errorf("ctensors: %w", err)
		}
		if !opts.AllowNonFinite {
			if err := checkCopy(j, w.in, u.lo); err != nil {
				return 0, err
			}
		}
		if _, err := sj.writeAt(w.in, j.outOff+u.lo); err != nil {
			return 0, fmt.Errorf("ctensors: %s: %w", sj.outName, err)
		}
		return u.hi - u.lo, nil
	}
	cols := int(j.cols)
	nrows := int(u.hi - u.lo)
	esz := j.in.DType.Size()
	rowBytes := int64(cols) * esz
	w.in = grow(w.in, nrows*int(rowBytes))
	if err := sj.in.ReadAt(j.in.Name, w.in, u.lo*rowBytes); err != nil {
		return 0, fmt.Errorf("ctensors: %w", err)
	}
	w.b.x = grow(w.b.x, cols)
	w.b.y = grow(w.b.y, cols)
	groups := 1
	if sch.group > 0 {
		groups = cols / sch.group
	}
	group := cols
	if sch.group > 0 {
		group = sch.group
	}
	outRow := cols // fp8: one byte per value
	if !sch.float {
		outRow = cols * sch.bits / 8
		w.b.packed = grow(w.b.packed, cols*sch.bits/32)
	}
	w.out = grow(w.out, nrows*outRow)
	w.scales = grow(w.scales, groups)
	ssz := int(j.scaleType.Size())
	w.scaleOut = grow(w.scaleOut, nrows*groups*ssz)
	k := rowKernel{dt: j.in.DType, fp8: sch.float, bits: sch.bits, group: group, scaleType: j.scaleType, allow: opts.AllowNonFinite}
	var stats quality.Stats
	for r := 0; r < nrows; r++ {
		bad, err := k.row(w.out[r*outRow:(r+1)*outRow], w.scales, &w.b, w.in[int64(r)*rowBytes:], &stats)
		if err != nil {
			return 0, err
		}
		if bad >= 0 && !opts.AllowNonFinite {
			row := u.lo + int64(r)
			off := sj.in.DataStart() + j.in.Offsets[0] + (row*j.cols+int64(bad))*esz
			return 0, fmt.Errorf("ctensors: %s: tensor %q: offset %d: %w %g at [%d, %d]", sj.inPath, j.in.Name, off, ErrNonFinite, w.b.x[bad], row, bad)
		}
		if err := st.EncodeFloat32(w.scaleOut[r*groups*ssz:], w.scales, j.scaleType); err != nil {
			return 0, err
		}
	}
	if _, err := sj.writeAt(w.out, j.outOff+u.lo*int64(outRow)); err != nil {
		return 0, fmt.Errorf("ctensors: %s: %w", sj.outName, err)
	}
	if _, err := sj.writeAt(w.scaleOut, j.scaleOff+u.lo*int64(groups*ssz)); err != nil {
		return 0, fmt.Errorf("ctensors: %s: %w", sj.outName, err)
	}
	j.blocks[u.blockIdx] = stats
	return int64(nrows) * rowBytes, nil
}

// addFinite adds the pairs whose original is finite.
func addFinite(s *quality.Stats, x, y []float32) {
	for i, v := range x {
		if math.Abs(float64(v)) <= math.MaxFloat32 {
			s.Add(x[i:i+1], y[i:i+1])
		}
	}
}

// checkCopy refuses a NaN or ±Inf in a float tensor copied unchanged (a
// norm, lm_head, a skipped layer), as in a quantized one: b holds the
// tensor's bytes from byte lo on (units are 1 MiB, a multiple of every
// element size, so b starts on an element).
func checkCopy(j *job, b []byte, lo int64) error {
	i := st.FirstNonFinite(b, j.in.DType)
	if i < 0 {
		return nil
	}
	esz := j.in.DType.Size()
	elem := lo/esz + int64(i)
	off := j.shard.in.DataStart() + j.in.Offsets[0] + elem*esz
	val := "NaN or Inf"
	var v [1]float32
	if j.in.DType.IsFloat() && st.DecodeFloat32(v[:], b[int64(i)*esz:], j.in.DType) == nil {
		val = fmt.Sprint(v[0])
	}
	return fmt.Errorf("ctensors: %s: tensor %q (copied unchanged): offset %d: %w %s at %s",
		j.shard.inPath, j.in.Name, off, ErrNonFinite, val, unravel(elem, j.in.Shape))
}

// unravel writes a flat row-major element index as per-dimension indices,
// "[3, 5]", as the quantized path reports [row, col].
func unravel(i int64, shape []int64) string {
	idx := make([]string, len(shape))
	for d := len(shape) - 1; d >= 0; d-- {
		if shape[d] > 0 {
			idx[d] = strconv.FormatInt(i%shape[d], 10)
			i /= shape[d]
		}
	}
	return "[" + strings.Join(idx, ", ") + "]"
}

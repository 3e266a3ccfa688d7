package ggufquant

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/gantry-dev/gantry/compress/ggml"
	"github.com/gantry-dev/gantry/compress/gguf"
)

// Action says what happens to one tensor.
type Action int

const (
	ActionCopy     Action = iota // bytes copied unchanged
	ActionQuantize               // converted to another type
)

func (a Action) String() string {
	if a == ActionQuantize {
		return "quantize"
	}
	return "copy"
}

// TensorPlan is the decision for one tensor.
type TensorPlan struct {
	Name   string
	Shape  []int64
	From   ggml.Type
	To     ggml.Type // == From when copied
	Action Action
	Why    string // why it is copied, or which rule chose To
	// Index is the tensor's position in the input header.
	Index int
}

// Plan is what Quantize will write: the output metadata in order and the
// tensors in output order.
type Plan struct {
	Type    FileType
	KV      []gguf.KV
	Tensors []TensorPlan
}

// Metadata keys llama-quantize rewrites or drops.
const (
	keyQuantVersion = "general.quantization_version"
	keyFileType     = "general.file_type"
	quantVersion    = 2 // GGML_QNT_VERSION
)

var droppedKeys = map[string]bool{"split.no": true, "split.count": true, "split.tensors.count": true}

// MakePlan decides, as llama-quantize does, the output order, metadata and
// type of every tensor.
func MakePlan(kvs []gguf.KV, tensors []gguf.TensorInfo, opts Options) (*Plan, error) {
	ft, err := ParseType(opts.Type)
	if err != nil {
		return nil, err
	}
	for _, g := range opts.Skip {
		if _, err := path.Match(g, ""); err != nil {
			return nil, fmt.Errorf("skip pattern %q: %w", g, err)
		}
	}
	// Read refuses these already; a caller with hand-made infos must too,
	// or the row arithmetic of Quantize would divide by zero.
	for i := range tensors {
		t := &tensors[i]
		for d, n := range t.Shape {
			if n <= 0 {
				return nil, fmt.Errorf("tensor %q: shape %v: dimension %d is %d: %w", t.Name, t.Shape, d, n, gguf.ErrShape)
			}
		}
	}
	p := &Plan{Type: ft}
	for _, kv := range kvs {
		if kv.Key == keyQuantVersion || kv.Key == keyFileType || droppedKeys[kv.Key] {
			continue
		}
		p.KV = append(p.KV, kv)
	}
	p.KV = append(p.KV,
		gguf.KV{Key: keyQuantVersion, Value: uint32(quantVersion)},
		gguf.KV{Key: keyFileType, Value: ft.FType})

	order := make([]int, len(tensors))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		return weightLess(tensors[order[a]].Name, tensors[order[b]].Name)
	})

	st := newMixState(kvs, tensors)
	for _, i := range order {
		t := &tensors[i]
		tp := TensorPlan{Name: t.Name, Shape: t.Shape, From: t.Type, To: t.Type, Action: ActionCopy, Index: i}
		why, ok := quantizable(t, opts.LeaveOutput)
		if ok {
			to := ft.Base
			why = "base type"
			if !opts.Pure {
				to, why, err = st.tensorType(ft, t)
				if err != nil {
					return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
				}
			} else if to, why, err = fallback(to, why, t.Shape[0]); err != nil {
				// llama.cpp applies the shape fallback under --pure too.
				return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
			}
			switch {
			case skipped(t.Name, opts.Skip):
				why = "matches a skip pattern"
			case to == t.Type:
				why = "already " + to.String()
			case t.Type != ggml.F32 && t.Type != ggml.F16 && t.Type != ggml.BF16:
				return nil, fmt.Errorf("tensor %q: cannot quantize from %v (only f32, f16 and bf16; requantizing is not supported)", t.Name, t.Type)
			default:
				tp.To, tp.Action, tp.Why = to, ActionQuantize, why
				p.Tensors = append(p.Tensors, tp)
				continue
			}
		}
		tp.Why = why
		p.Tensors = append(p.Tensors, tp)
	}
	return p, nil
}

func skipped(name string, globs []string) bool {
	for _, g := range globs {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// quantizable is llama-quantize's filter of tensors that may change type.
func quantizable(t *gguf.TensorInfo, leaveOutput bool) (why string, ok bool) {
	name := t.Name
	// C++: name.rfind("weight") == name.size() - 6. With size_t arithmetic a
	// five-byte name also passes (npos == 5 − 6); kept for identical output.
	if !strings.HasSuffix(name, "weight") && len(name) != 5 {
		return "not a weight", false
	}
	if nDims(t.Shape) < 2 {
		return "fewer than 2 dimensions", false
	}
	if strings.Contains(name, "_norm.weight") {
		return "norm", false
	}
	if leaveOutput && name == "output.weight" {
		return "output tensor left as is", false
	}
	switch name {
	case "position_embd.weight", "token_types.weight":
		return "kept unquantized by llama-quantize", false
	}
	for _, s := range []string{
		"ffn_gate_inp.weight", "ssm_conv1d.weight",
		"time_mix_first.weight", "time_mix_w1.weight", "time_mix_w2.weight",
		"time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
		"attn_rel_b.weight",
	} {
		if strings.Contains(name, s) {
			return "kept unquantized by llama-quantize", false
		}
	}
	return "", true
}

// nDims is ggml_n_dims: trailing dimensions of size 1 do not count, and
// the result is at least 1.
func nDims(shape []int64) int {
	for i := len(shape) - 1; i >= 1; i-- {
		if shape[i] > 1 {
			return i + 1
		}
	}
	return 1
}

// layerOf is sscanf(name, "blk.%d.", &layer): −1 unless the name starts
// with "blk." followed by an optionally signed decimal (after optional
// white space).
func layerOf(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, "blk.")
	if !ok {
		return -1, false
	}
	s = strings.TrimLeft(s, " \t\n\v\f\r")
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	n, digits := 0, 0
	for digits < len(s) && '0' <= s[digits] && s[digits] <= '9' {
		n = n*10 + int(s[digits]-'0')
		if n > 1<<31 {
			n = 1 << 31
		}
		digits++
	}
	if digits == 0 {
		return -1, false
	}
	if neg {
		n = -n
	}
	return n, true
}

// weightLess is llama_model_loader's weight_name_comparer: by layer number
// (−1 outside the blocks), then by name bytewise.
func weightLess(a, b string) bool {
	la, _ := layerOf(a)
	lb, _ := layerOf(b)
	if la != lb {
		return la < lb
	}
	return a < b
}

// mixState carries the counters llama_tensor_get_type keeps while walking
// the tensors in output order.
type mixState struct {
	arch      string
	nLayer    int
	nExpert   int
	hasOutput bool
	is70B     bool
	nAttnV    int
	iAttnV    int
	iFFNDown  int
	iFFNGate  int
	iFFNUp    int
}

func u32Key(kvs []gguf.KV, key string) (int, bool) {
	for _, kv := range kvs {
		if kv.Key == key {
			switch v := kv.Value.(type) {
			case uint32:
				return int(v), true
			case int32:
				return int(v), true
			case uint64:
				return int(v), true
			}
		}
	}
	return 0, false
}

func newMixState(kvs []gguf.KV, tensors []gguf.TensorInfo) *mixState {
	st := &mixState{}
	for _, kv := range kvs {
		if kv.Key == "general.architecture" {
			st.arch, _ = kv.Value.(string)
		}
	}
	st.nLayer, _ = u32Key(kvs, st.arch+".block_count")
	st.nExpert, _ = u32Key(kvs, st.arch+".expert_count")
	heads, okH := u32Key(kvs, st.arch+".attention.head_count")
	headsKV, okKV := u32Key(kvs, st.arch+".attention.head_count_kv")
	if !okKV {
		headsKV = heads
	}
	// llama.cpp's model type 70B, which gives attn_v one more step: llama
	// with 80 layers and grouped-query attention, or qwen2 with 80 layers.
	st.is70B = (st.arch == "llama" && st.nLayer == 80 && okH && heads != headsKV) ||
		(st.arch == "qwen2" && st.nLayer == 80)
	for _, t := range tensors {
		if strings.Contains(t.Name, "attn_v.weight") || strings.Contains(t.Name, "attn_qkv.weight") ||
			strings.Contains(t.Name, "attn_kv_b.weight") {
			st.nAttnV++
		} else if t.Name == "output.weight" {
			st.hasOutput = true
		}
	}
	return st
}

func useMoreBits(i, n int) bool {
	return i < n/8 || i >= 7*n/8 || (i-n/8)%3 == 2
}

func (st *mixState) layerInfo(counter int, name string) (int, int, error) {
	if st.nExpert > 1 {
		l, ok := layerOf(name)
		if !ok {
			return 0, 0, fmt.Errorf("failed to determine layer")
		}
		if l < 0 || l >= st.nLayer {
			return 0, 0, fmt.Errorf("bad layer %d, must be in [0, %d)", l, st.nLayer)
		}
		return l, st.nLayer, nil
	}
	return counter, st.nLayer, nil
}

// tensorType is llama_tensor_get_type restricted to the file types this
// package supports (no importance matrix, no type overrides).
func (st *mixState) tensorType(ft FileType, t *gguf.TensorInfo) (ggml.Type, string, error) {
	name := t.Name
	ne0 := t.Shape[0]
	to := ft.Base
	why := "base type"
	falcon := st.arch == "falcon"
	switch {
	case name == "output.weight" || (!st.hasOutput && name == "token_embd.weight"):
		if falcon || ne0%to.BlockSize() != 0 {
			to, why = ggml.Q8_0, "output tensor"
		} else if to != ggml.Q8_0 {
			to, why = ggml.Q6_K, "output tensor"
		}
	case name == "token_embd.weight":
		// Only the IQ and TQ types change it.
	case strings.Contains(name, "attn_v.weight"):
		if (ft.Name == "Q4_K_M" || ft.Name == "Q5_K_M") && useMoreBits(st.iAttnV, st.nAttnV) {
			to, why = ggml.Q6_K, fmt.Sprintf("attn_v %d of %d gets more bits", st.iAttnV, st.nAttnV)
		} else if ft.Name == "Q4_K_S" && st.iAttnV < 4 {
			to, why = ggml.Q5_K, "one of the first 4 attn_v"
		}
		if st.is70B && (to == ggml.Q3_K || to == ggml.Q4_K) {
			to, why = ggml.Q5_K, "attn_v of a 70B model"
		}
		if st.nExpert == 8 {
			to, why = ggml.Q8_0, "attn_v of an 8-expert model"
		}
		st.iAttnV++
	case strings.Contains(name, "attn_k.weight"):
		if st.nExpert == 8 {
			to, why = ggml.Q8_0, "attn_k of an 8-expert model"
		}
	case strings.Contains(name, "attn_q.weight"):
	case strings.Contains(name, "ffn_down"):
		i, n, err := st.layerInfo(st.iFFNDown, name)
		if err != nil {
			return 0, "", err
		}
		switch {
		case ft.Name == "Q4_K_M":
			if falcon {
				switch {
				case i < n/16:
					to = ggml.Q6_K
				case useMoreBits(i, n):
					to = ggml.Q5_K
				default:
					to = ggml.Q4_K
				}
				why = "falcon ffn_down"
			} else if useMoreBits(i, n) {
				to, why = ggml.Q6_K, fmt.Sprintf("ffn_down %d of %d gets more bits", i, n)
			}
		case ft.Name == "Q5_K_M" && useMoreBits(i, n):
			to, why = ggml.Q6_K, fmt.Sprintf("ffn_down %d of %d gets more bits", i, n)
		case ft.Name == "Q4_K_S" && !falcon && i < n/8:
			to, why = ggml.Q5_K, "ffn_down in the first eighth"
		}
		st.iFFNDown++
	case strings.Contains(name, "attn_output.weight"):
		if !falcon && st.nExpert == 8 && (ft.Name == "Q4_K_S" || ft.Name == "Q4_K_M") {
			to, why = ggml.Q5_K, "attn_output of an 8-expert model"
		}
	case strings.Contains(name, "attn_qkv.weight"):
		switch ft.Name {
		case "Q4_K_M":
			to, why = ggml.Q5_K, "attn_qkv"
		case "Q5_K_M":
			to, why = ggml.Q6_K, "attn_qkv"
		}
	case strings.Contains(name, "ffn_gate"):
		if _, _, err := st.layerInfo(st.iFFNGate, name); err != nil {
			return 0, "", err
		}
		st.iFFNGate++
	case strings.Contains(name, "ffn_up"):
		if _, _, err := st.layerInfo(st.iFFNUp, name); err != nil {
			return 0, "", err
		}
		st.iFFNUp++
	}
	return fallback(to, why, ne0)
}

// fallback is llama.cpp's tensor_type_fallback: when a row of ne0 values is
// not a whole number of the chosen type's blocks, a K-quant falls back to a
// 32-block type (Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0), and anything that
// still does not fit, including a 32-block base type, becomes F16.
// llama.cpp applies it after the mix and also under --pure; checked byte for
// byte against llama_model_quantize of llama.cpp v0.5.0 (ggml 0.25.1).
// Older llama.cpp (such as c392e509, February 2025) had no fallback under
// --pure and threw "Unsupported tensor size encountered" for a 32-block
// type, so where it wrote a file at all the result is the same.
func fallback(to ggml.Type, why string, ne0 int64) (ggml.Type, string, error) {
	if ne0%to.BlockSize() == 0 {
		return to, why, nil
	}
	from := to
	switch to {
	case ggml.Q4_K:
		to = ggml.Q5_0
	case ggml.Q5_K:
		to = ggml.Q5_1
	case ggml.Q6_K:
		to = ggml.Q8_0
	default:
		if to.BlockSize() > 32 {
			return 0, "", fmt.Errorf("ne0 = %d is not a multiple of the %v block size: no fallback type", ne0, to)
		}
	}
	if ne0%to.BlockSize() != 0 {
		to = ggml.F16
	}
	return to, fmt.Sprintf("fallback from %v: ne0 = %d", from, ne0), nil
}

package ctensors

import (
	"fmt"
	"strings"

	"github.com/gantry-dev/gantry/compress/vllm"
)

// The rules of what vLLM can load live in compress/vllm, shared with spec
// validation; these aliases keep Convert's callers and messages short.
var (
	// GroupSizes are the int4 group sizes vLLM serves; see vllm.GroupSizes.
	GroupSizes = vllm.GroupSizes
	// ValidGroupSize is vllm.ValidGroupSize.
	ValidGroupSize = vllm.ValidGroupSize
	// CheckSkip is vllm.CheckSkip.
	CheckSkip = vllm.CheckSkip
)

// DefaultGroupSize is the int4 group size when none is given.
const DefaultGroupSize = vllm.DefaultGroupSize

// checkFused checks, on the model's layers, that the parts of every fused
// layer got the same decision (all quantized or all dense). quantized maps
// the module name of every 2-D linear weight to whether it is quantized.
// It returns an error naming the first dense part and a quantized sibling.
func checkFused(quantized map[string]bool, why map[string]string, order []string) error {
	for _, m := range order {
		i := strings.LastIndexByte(m, '.')
		prefix, c := m[:i+1], m[i+1:]
		for _, s := range vllm.FusedSiblings(c) {
			q, ok := quantized[prefix+s]
			if !ok || q == quantized[m] || quantized[m] {
				continue
			}
			return fmt.Errorf("layer %s is kept dense (%s) but its fused sibling %s is quantized: vLLM loads %s as one layer and refuses mixed schemes; skip all of them or none",
				m, why[m], prefix+s, vllm.FamilyName(c))
		}
	}
	return nil
}

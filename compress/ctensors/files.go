package ctensors

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

// QuantizationConfig returns the quantization_config object written into
// config.json, as llm-compressor writes it and vLLM's
// CompressedTensorsConfig reads it. The scheme is weight-only
// (input_activations null): vLLM serves it with CompressedTensorsW8A16Fp8
// (fp8, format float-quantized) or CompressedTensorsWNA16 (int8/int4,
// format pack-quantized; vLLM selects WNA16 only for pack-quantized, so
// int8 weight-only is packed four to an int32 rather than stored as
// int-quantized).
func QuantizationConfig(opts Options, ignore []string) (map[string]any, error) {
	sch, err := opts.scheme()
	if err != nil {
		return nil, err
	}
	return quantizationConfig(sch, opts, ignore), nil
}

func quantizationConfig(sch scheme, opts Options, ignore []string) map[string]any {
	typ := "int"
	if sch.float {
		typ = "float"
	}
	strategy := "channel"
	var groupSize any
	if sch.group > 0 {
		strategy = "group"
		groupSize = sch.group
	}
	targets := []string{"Linear"}
	if opts.QuantizeEmbeddings {
		targets = append(targets, "Embedding")
	}
	if ignore == nil {
		ignore = []string{}
	}
	return map[string]any{
		"config_groups": map[string]any{
			"group_0": map[string]any{
				"targets":            targets,
				"input_activations":  nil,
				"output_activations": nil,
				"weights": map[string]any{
					"num_bits":        sch.bits,
					"type":            typ,
					"symmetric":       true,
					"strategy":        strategy,
					"group_size":      groupSize,
					"dynamic":         false,
					"actorder":        nil,
					"block_structure": nil,
					"observer":        "minmax",
					"observer_kwargs": map[string]any{},
				},
			},
		},
		"format":                   sch.format,
		"global_compression_ratio": nil,
		"ignore":                   ignore,
		"kv_cache_scheme":          nil,
		"quant_method":             "compressed-tensors",
		"quantization_status":      "compressed",
	}
}

func readJSONMap(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ctensors: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber() // keep numbers exactly as written
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("ctensors: %s: %w", path, err)
	}
	if m == nil {
		return nil, fmt.Errorf("ctensors: %s: not a JSON object", path)
	}
	return m, nil
}

// writeJSON writes v as transformers does: sorted keys, two-space indent,
// a final newline, no HTML escaping.
func writeJSON(path string, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("ctensors: %s: %w", path, err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		return fmt.Errorf("ctensors: %w", err)
	}
	return nil
}

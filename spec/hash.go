package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// PodHash fingerprints everything in a release that shapes its pods: the
// model, quantization, runtime and resources. Replica counts, placement,
// autoscaling and rollback are left out on purpose: changing them must not
// look like a new version of the pods. The hash is of the canonical JSON
// of those fields, so it is stable across formatting and file moves.
func (r *Release) PodHash() string {
	v := struct {
		Model     Model      `json:"model"`
		Quantize  *Quantize  `json:"quantize"`
		Runtime   Runtime    `json:"runtime"`
		Resources *Resources `json:"resources"`
	}{r.Model, nil, r.Runtime, r.Resources}
	if r.Quantize != nil {
		// Where and with what the build runs does not shape the pods.
		q := *r.Quantize
		q.Runner, q.CPU, q.Memory = "", "", ""
		v.Quantize = &q
	}
	b, err := json.Marshal(v) // maps marshal with sorted keys
	if err != nil {
		panic("spec: marshal release: " + err.Error()) // plain data; cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

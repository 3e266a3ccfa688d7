//go:build !purego

package ggml

//go:noescape
func quantizeQ8_0AVX512(dst *byte, src *float32, nb int, vbmi bool) int

//go:noescape
func dequantizeQ8_0AVX512(dst *float32, src *byte, nb int)

//go:noescape
func decodeF16AVX512(dst *float32, src *byte, n int) bool

//go:noescape
func quantizeQx0AVX512(dst *byte, src *float32, nb int, p *qx0Params) int

//go:noescape
func decodeBF16AVX512(dst *float32, src *byte, n int)

//go:noescape
func quantizeQx1AVX512(dst *byte, src *float32, nb int, p *qx1Params) int

//go:noescape
func dequantizeLegacyAVX512(dst *float32, src *byte, nb int, p *dqParams)

//go:noescape
func quantizeDequantizeQ8_0AVX512(dst *byte, y, src *float32, nb int, vbmi bool) int

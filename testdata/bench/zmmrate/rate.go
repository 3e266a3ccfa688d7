//go:build amd64

package zmmrate

// ymm runs n iterations of 8 VADDPS and 7 VMULPS on YMM registers.
func ymm(n int)

// zmm runs n iterations of 8 VADDPS and 8 VMULPS on ZMM registers.
func zmm(n int)

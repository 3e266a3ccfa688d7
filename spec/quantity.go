package spec

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var quantityRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)$`)

var memorySuffixes = map[string]float64{
	"k":  1e3,
	"M":  1e6,
	"G":  1e9,
	"T":  1e12,
	"P":  1e15,
	"Ki": 1 << 10,
	"Mi": 1 << 20,
	"Gi": 1 << 30,
	"Ti": 1 << 40,
	"Pi": 1 << 50,
}

// ParseMemory parses a Kubernetes memory quantity ("80Gi", "40G", "512Mi")
// into bytes. Spellings a person might write but Kubernetes would reject,
// such as "40GB" or "40 Gi", are errors with a hint, so that what validates
// here also applies cleanly to the cluster. A bare number is refused too,
// although Kubernetes reads it as bytes: gpu_memory = 80 is a person meaning
// 80Gi far more often than somebody meaning 80 bytes.
func ParseMemory(s string) (int64, error) {
	m := quantityRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a memory quantity; write a number with a unit, such as 80Gi or 40G", s)
	}
	if m[2] == "" {
		return 0, fmt.Errorf("%q has no unit, so it would mean %s bytes; %s", s, m[1], bareMemoryHint(m[1]))
	}
	mult, ok := memorySuffixes[m[2]]
	if !ok {
		hint := ""
		if u, cut := strings.CutSuffix(m[2], "B"); cut {
			base := strings.ToUpper(strings.TrimSuffix(u, "i"))
			if base == "K" {
				base = "k"
			}
			if _, ok := memorySuffixes[base]; ok && base != "" {
				hint = fmt.Sprintf("; Kubernetes quantities have no B: write %s%s (powers of 10) or %s%si (powers of 2)",
					m[1], base, m[1], strings.ToUpper(base))
			}
		}
		return 0, fmt.Errorf("%q has an unknown unit %q; use one of k, M, G, T, P, Ki, Mi, Gi, Ti, Pi%s", s, m[2], hint)
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	v := f * mult
	if v > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	if v != math.Trunc(v) {
		return 0, fmt.Errorf("%q is not a whole number of bytes", s)
	}
	return int64(v), nil
}

// bareMemoryHint suggests a unit for a bare number: Gi for the small
// numbers people write meaning gibibytes ("80"), and for a large byte count
// the same amount in the shortest exact spelling ("85899345920" is "80Gi",
// "40000000000" is "40G").
func bareMemoryHint(num string) string {
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 1<<20 {
		return fmt.Sprintf("did you mean %q?", num+"Gi")
	}
	best := ""
	if b := FormatBytes(n); b != num {
		best = b
	}
	for _, u := range []struct {
		s string
		v int64
	}{{"P", 1e15}, {"T", 1e12}, {"G", 1e9}, {"M", 1e6}, {"k", 1e3}} {
		if n%u.v == 0 {
			if d := strconv.FormatInt(n/u.v, 10) + u.s; best == "" || len(d) < len(best) {
				best = d
			}
			break
		}
	}
	if best == "" {
		return "write it with a unit, such as 80Gi or 40G"
	}
	return fmt.Sprintf("did you mean %q?", best)
}

var cpuRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)(m?)$`)

// ParseCPU parses a Kubernetes CPU quantity ("4", "0.5", "500m") into
// millicores. A memory unit such as "40Gi" is an error.
func ParseCPU(s string) (int64, error) {
	m := cpuRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a CPU quantity; write cores (4, 0.5) or millicores (500m)", s)
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	if m[2] == "m" {
		if f != math.Trunc(f) {
			return 0, fmt.Errorf("%q: millicores must be whole", s)
		}
		return int64(f), nil
	}
	mc := f * 1000
	if mc != math.Trunc(mc) {
		return 0, fmt.Errorf("%q is finer than one millicore", s)
	}
	return int64(mc), nil
}

// ParseDuration parses a Go duration ("30s", "5m", "1h30m") that must be
// positive.
func ParseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; write a number with a unit such as 30s, 5m or 1h", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q must be greater than zero", s)
	}
	return d, nil
}

// FormatBytes renders a byte count in the largest binary unit that keeps it
// whole, as Kubernetes prints quantities ("80Gi").
func FormatBytes(n int64) string {
	for _, u := range []struct {
		s string
		v int64
	}{{"Pi", 1 << 50}, {"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if n >= u.v && n%u.v == 0 {
			return strconv.FormatInt(n/u.v, 10) + u.s
		}
	}
	return strconv.FormatInt(n, 10)
}

package spec

import (
	"strings"
	"testing"
	"time"
)

func TestParseMemory(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int64
		wantErr string
	}{
		{"80Gi", 80 << 30, ""},
		{"40G", 40e9, ""},
		{"512Mi", 512 << 20, ""},
		{"1.5Gi", 3 << 29, ""}, // 1.5 × 2^30 = 3 × 2^29
		{"0.5Ki", 512, ""},
		{"1.5k", 1500, ""},
		{"0.1Ki", 0, "not a whole number"},
		// A bare number would be bytes: refused, with the likely unit.
		{"80", 0, `"80" has no unit, so it would mean 80 bytes; did you mean "80Gi"?`},
		{"1024", 0, `did you mean "1024Gi"?`},
		{"0.5", 0, `did you mean "0.5Gi"?`},
		{"85899345920", 0, `did you mean "80Gi"?`}, // 80 × 2^30
		{"40000000000", 0, `did you mean "40G"?`},  // 40 × 10^9, not a power-of-2 multiple
		{"1234567", 0, "write it with a unit"},
		{"40GB", 0, "write 40G (powers of 10) or 40Gi"},
		{"40GiB", 0, "write 40G (powers of 10) or 40Gi"},
		{"40 Gi", 0, "not a memory quantity"},
		{"-1Gi", 0, "not a memory quantity"},
		{"forty", 0, "not a memory quantity"},
		{"", 0, "not a memory quantity"},
		{"99999999Pi", 0, "too large"},
	} {
		got, err := ParseMemory(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseMemory(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseMemory(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestParseCPU(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"4", 4000, true}, {"0.5", 500, true}, {"250m", 250, true},
		{"40Gi", 0, false}, {"0.0001", 0, false}, {"1.5m", 0, false}, {"", 0, false},
	} {
		got, err := ParseCPU(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseCPU(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseDuration(t *testing.T) {
	if d, err := ParseDuration("1h30m"); err != nil || d != 90*time.Minute {
		t.Errorf("1h30m = %v, %v", d, err)
	}
	for _, bad := range []string{"5 minutes", "0s", "-1m", "5"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for in, want := range map[int64]string{80 << 30: "80Gi", 1536 << 20: "1536Mi", 1000: "1000", 3 << 40: "3Ti"} {
		if got := FormatBytes(in); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", in, got, want)
		}
	}
}

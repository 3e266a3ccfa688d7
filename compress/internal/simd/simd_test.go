package simd

import "testing"

func TestLevels(t *testing.T) {
	ls := Supported()
	if ls[0] != Scalar || ls[len(ls)-1] != Detected() {
		t.Fatalf("Supported() = %v, Detected() = %v", ls, Detected())
	}
	for _, l := range ls {
		p, err := Parse(l.String())
		if err != nil || p != l {
			t.Fatalf("Parse(%q) = %v, %v", l.String(), p, err)
		}
		restore := Set(l)
		if Current() != l {
			t.Fatalf("after Set(%v), Current() = %v", l, Current())
		}
		restore()
	}
	if _, err := Parse("sse4"); err == nil {
		t.Fatal("Parse accepted sse4")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Set above Detected did not panic")
		}
	}()
	Set(Detected() + 1)
}

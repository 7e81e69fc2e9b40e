package listeners

import (
	"slices"
	"testing"
)

func TestSetHoldsEachFunctionUntilItsStop(t *testing.T) {
	var s Set[func() string]
	if got := s.All(); len(got) != 0 {
		t.Fatalf("an empty Set holds %d functions", len(got))
	}
	stopA := s.Add(func() string { return "a" })
	s.Add(func() string { return "b" })
	names := func() []string {
		var out []string
		for _, f := range s.All() {
			out = append(out, f())
		}
		slices.Sort(out)
		return out
	}
	if got := names(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("registered %v, want [a b]", got)
	}
	stopA()
	stopA() // twice is once
	if got := names(); !slices.Equal(got, []string{"b"}) {
		t.Errorf("after a's stop, registered %v, want [b]", got)
	}
}

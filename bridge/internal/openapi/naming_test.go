package openapi

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

var validOperationID = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// checkOperationID asserts what every operationId must be.
func checkOperationID(t testing.TB, parts []string, id string) {
	t.Helper()
	if !validOperationID.MatchString(id) {
		t.Errorf("OperationID(%q) = %q, want it to match %s", parts, id, validOperationID)
	}
	if len(id) > MaxOperationID {
		t.Errorf("OperationID(%q) = %q: %d characters, want at most %d", parts, id, len(id), MaxOperationID)
	}
}

func TestOperationIDSanitizes(t *testing.T) {
	for _, tc := range []struct {
		parts []string
		want  string
	}{
		{[]string{"get_current_time"}, "get_current_time"},
		{[]string{"getCurrentTime"}, "getCurrentTime"},
		{[]string{"get-sum"}, "get_sum"},
		{[]string{"dotted.name"}, "dotted_name"},
		{[]string{"spaced name"}, "spaced_name"},
		{[]string{"a~b"}, "a_b"},
		{[]string{"weird/Name-ü"}, "weird_Name"},
		{[]string{"__private__"}, "private"},
		{[]string{"-leading-and-trailing-"}, "leading_and_trailing"},
		{[]string{"1st"}, "_1st"},
		{[]string{"42"}, "_42"},
		{[]string{"-7up"}, "_7up"},
		{[]string{""}, "tool"},
		{[]string{"!!!"}, "tool"},
		{[]string{"日本語"}, "tool"},
		{[]string{"time", "get_current_time"}, "time_get_current_time"},
		{[]string{"my-server", "get-sum"}, "my_server_get_sum"},
		{[]string{"s", ""}, "s"},
		{[]string{"", "t"}, "t"},
		{[]string{"1", "t"}, "_1_t"},
		{nil, "tool"},
	} {
		var n Namer
		got := n.OperationID(tc.parts...)
		if got != tc.want {
			t.Errorf("OperationID(%q) = %q, want %q", tc.parts, got, tc.want)
		}
		checkOperationID(t, tc.parts, got)
	}
}

func TestOperationIDNeverStartsWithADigit(t *testing.T) {
	var n Namer
	for i := range 100 {
		name := fmt.Sprintf("%d-tool", i)
		id := n.OperationID(name)
		if id[0] >= '0' && id[0] <= '9' {
			t.Errorf("OperationID(%q) = %q starts with a digit", name, id)
		}
		checkOperationID(t, []string{name}, id)
	}
}

func TestOperationIDIsDeterministic(t *testing.T) {
	names := []string{"get-sum", "get_sum", "get.sum", "naïve", "naéve", strings.Repeat("x", 100), strings.Repeat("x", 100), "", "!", "tool"}
	run := func() []string {
		var n Namer
		out := make([]string, len(names))
		for i, name := range names {
			out[i] = n.OperationID(name)
		}
		return out
	}
	a, b := run(), run()
	for i := range a {
		if a[i] != b[i] {
			t.Errorf("OperationID(%q): %q then %q", names[i], a[i], b[i])
		}
	}
}

// A name that collides gets a suffix computed from its own name, so adding
// or removing an unrelated tool before it does not rename it.
func TestOperationIDCollisionSuffixDependsOnlyOnTheName(t *testing.T) {
	var a, b Namer
	a.OperationID("get_sum")
	idA := a.OperationID("get-sum")

	b.OperationID("get_sum")
	b.OperationID("unrelated")
	b.OperationID("another-one")
	idB := b.OperationID("get-sum")
	if idA != idB {
		t.Errorf("OperationID(\"get-sum\") after a collision = %q in one document, %q in another", idA, idB)
	}
}

func TestOperationIDIsUniqueUnderCollisions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		names [][]string
	}{
		{"hyphen and underscore", [][]string{{"get-sum"}, {"get_sum"}, {"get.sum"}, {"get sum"}, {"get/sum"}}},
		{"names that only differ in unicode", [][]string{{"naïve"}, {"naéve"}, {"na_ve"}, {"naöve"}, {"na😀ve"}}},
		{"names that sanitize to nothing", [][]string{{""}, {"!"}, {"日本"}, {"tool"}, {"___"}}},
		{"the same name twice", [][]string{{"dup"}, {"dup"}, {"dup"}}},
		{"parts joined differently", [][]string{{"a_b", "c"}, {"a", "b_c"}, {"a_b_c"}, {"a", "b", "c"}}},
		{"a name that looks like a suffixed one", [][]string{{"get_sum"}, {"get-sum"}, {"get_sum_00000000"}}},
		{"leading digits", [][]string{{"1a"}, {"_1a"}, {"-1a"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n Namer
			seen := map[string][]string{}
			for _, parts := range tc.names {
				id := n.OperationID(parts...)
				checkOperationID(t, parts, id)
				if prev, dup := seen[id]; dup {
					t.Errorf("OperationID(%q) = %q, already given to %q", parts, id, prev)
				}
				seen[id] = parts
			}
		})
	}
}

func TestOperationIDUniqueForManyNamesThatSanitizeAlike(t *testing.T) {
	var n Namer
	seen := map[string]string{}
	for i := range 300 {
		name := "search" + strings.Repeat("-", i+1) // all sanitize to "search"
		id := n.OperationID(name)
		checkOperationID(t, []string{name}, id)
		if prev, dup := seen[id]; dup {
			t.Fatalf("OperationID(%q) = %q, already given to %q", name, id, prev)
		}
		seen[id] = name
	}
	// and the same names once more, as a second document would see them
	var m Namer
	for i := range 300 {
		name := "search" + strings.Repeat("-", i+1)
		id := m.OperationID(name)
		if seen[id] != name {
			t.Errorf("OperationID(%q) = %q in a second document, was given to %q in the first", name, id, seen[id])
		}
	}
}

func TestOperationIDUniqueForManyIdenticalLongNames(t *testing.T) {
	var n Namer
	seen := map[string]bool{}
	name := strings.Repeat("very_long_tool_name_", 10)
	for range 50 {
		id := n.OperationID(name)
		checkOperationID(t, []string{name}, id)
		if seen[id] {
			t.Fatalf("OperationID(%q) = %q twice", name, id)
		}
		seen[id] = true
	}
}

func TestOperationIDTruncatesLongNamesWithAHash(t *testing.T) {
	long := strings.Repeat("a", 100)
	var n Namer
	id := n.OperationID(long)
	checkOperationID(t, []string{long}, id)
	if len(id) != MaxOperationID {
		t.Errorf("len = %d, want %d", len(id), MaxOperationID)
	}
	if !regexp.MustCompile(`^a+_[0-9a-f]{8}$`).MatchString(id) {
		t.Errorf("OperationID(100×a) = %q, want a prefix of the name and an 8-digit hash", id)
	}

	// Two long names sharing the first 64 characters get different ids.
	other := strings.Repeat("a", 99) + "b"
	id2 := n.OperationID(other)
	checkOperationID(t, []string{other}, id2)
	if id2 == id {
		t.Errorf("two different long names share the id %q", id)
	}

	// Exactly MaxOperationID is kept as it is; one more is not.
	var m Namer
	exact := strings.Repeat("b", MaxOperationID)
	if got := m.OperationID(exact); got != exact {
		t.Errorf("OperationID(%d×b) = %q, want it unchanged", MaxOperationID, got)
	}
	over := strings.Repeat("c", MaxOperationID+1)
	if got := m.OperationID(over); len(got) > MaxOperationID || got == over {
		t.Errorf("OperationID(%d×c) = %q", MaxOperationID+1, got)
	}
	// A digit-led name of exactly MaxOperationID grows by the "_" and must
	// be shortened again.
	digits := "1" + strings.Repeat("d", MaxOperationID-1)
	checkOperationID(t, []string{digits}, m.OperationID(digits))
	// Joined parts count as a whole.
	srv, tool := strings.Repeat("s", 40), strings.Repeat("t", 40)
	checkOperationID(t, []string{srv, tool}, m.OperationID(srv, tool))
}

func TestOperationIDZeroValueIsReady(t *testing.T) {
	n := new(Namer)
	if got := n.OperationID("x"); got != "x" {
		t.Errorf("OperationID(\"x\") = %q", got)
	}
}

func TestPathSegment(t *testing.T) {
	for _, tc := range []struct {
		name string
		want string // "" means: only check it is URL-safe
	}{
		{"get_current_time", "get_current_time"},
		{"get-sum", "get-sum"},
		{"dotted.name", "dotted.name"},
		{"a~b", "a~b"},
		{"MixedCase09", "MixedCase09"},
		{"...", "..."},
		{".hidden", ".hidden"},
		{"spaced name", "spaced_name"},
		{"weird/Name-ü", "weird_Name-"},
		{"q?x=1", "q_x_1"},
		{"100%", "100"},
		{"a#b", "a_b"},
		{".", "tool"},
		{"..", "tool"},
		{"", "tool"},
		{"日本語", "tool"},
		{"./..", ""},
		{" ../etc/passwd", ""},
		{"a/../b", ""},
	} {
		var n Namer
		got := n.PathSegment(tc.name)
		if tc.want != "" && got != tc.want {
			t.Errorf("PathSegment(%q) = %q, want %q", tc.name, got, tc.want)
		}
		checkSegment(t, tc.name, got)
	}
}

var segmentChars = regexp.MustCompile(`^[A-Za-z0-9._~-]+$`)

// checkSegment asserts seg can be used as a path segment as it is.
func checkSegment(t testing.TB, name, seg string) {
	t.Helper()
	if !segmentChars.MatchString(seg) || seg == "." || seg == ".." {
		t.Errorf("PathSegment(%q) = %q, not a plain URL path segment", name, seg)
	}
	if url.PathEscape(seg) != seg {
		t.Errorf("PathSegment(%q) = %q needs escaping", name, seg)
	}
}

func TestPathSegmentIsUnique(t *testing.T) {
	for _, tc := range []struct {
		name     string
		reserved []string
		names    []string
	}{
		{"sanitized alike", nil, []string{"spaced name", "spaced/name", "spaced?name", "spaced_name"}},
		{"dot segments and empty", nil, []string{".", "..", "", "tool", "日本"}},
		{"the same name twice", nil, []string{"dup", "dup", "dup"}},
		{"reserved names", []string{"openapi.json", "docs"}, []string{"openapi.json", "docs", "openapi.json"}},
		{"case differs", nil, []string{"Get", "get", "GET"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var n Namer
			seen := map[string]string{}
			for _, r := range tc.reserved {
				n.Reserve(r)
				seen[r] = "(reserved)"
			}
			for _, name := range tc.names {
				seg := n.PathSegment(name)
				checkSegment(t, name, seg)
				if prev, dup := seen[seg]; dup {
					t.Errorf("PathSegment(%q) = %q, already taken by %q", name, seg, prev)
				}
				seen[seg] = name
			}
		})
	}
}

func TestPathSegmentManyCollisions(t *testing.T) {
	var n Namer
	n.Reserve("openapi.json")
	seen := map[string]bool{"openapi.json": true}
	for i := range 300 {
		name := "tool" + strings.Repeat(" ", i+1)
		seg := n.PathSegment(name)
		checkSegment(t, name, seg)
		if seen[seg] {
			t.Fatalf("PathSegment(%q) = %q twice", name, seg)
		}
		seen[seg] = true
	}
}

func TestPathSegmentAndOperationIDAreIndependent(t *testing.T) {
	var n Namer
	if got := n.OperationID("x"); got != "x" {
		t.Fatalf("OperationID = %q", got)
	}
	if got := n.PathSegment("x"); got != "x" {
		t.Errorf("PathSegment(\"x\") after OperationID(\"x\") = %q, want \"x\"", got)
	}
	n.Reserve("y")
	if got := n.OperationID("y"); got != "y" {
		t.Errorf("OperationID(\"y\") after Reserve(\"y\") = %q, want \"y\"", got)
	}
}

// FuzzOperationID checks the naming rules on any name. Without -fuzz it
// runs the seeds only.
func FuzzOperationID(f *testing.F) {
	for _, s := range []string{
		"", "get_current_time", "get-sum", "get_sum", "dotted.name", "a~b", "spaced name", "weird/Name-ü",
		".", "..", "1st", "42", "naïve", "日本語", "😀", "\x00", "\xff\xfe", "_", "___", "-",
		strings.Repeat("a", 64), strings.Repeat("a", 65), "1" + strings.Repeat("a", 63), strings.Repeat("é", 100),
		"openapi.json", "tool", "tool_1234abcd",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		var n Namer
		id := n.OperationID(name)
		checkOperationID(t, []string{name}, id)
		var m Namer
		if again := m.OperationID(name); again != id {
			t.Fatalf("OperationID(%q) = %q, then %q", name, id, again)
		}
		// The same name and its variants in one document stay unique.
		seen := map[string]bool{id: true}
		for _, v := range []string{name, name + "-", "-" + name, strings.ToUpper(name), name} {
			vid := n.OperationID(v)
			checkOperationID(t, []string{v}, vid)
			if seen[vid] {
				t.Fatalf("OperationID(%q) = %q, already given out (first name %q)", v, vid, name)
			}
			seen[vid] = true
		}
		// Joined with a server name.
		checkOperationID(t, []string{"srv", name}, n.OperationID("srv", name))
		checkOperationID(t, []string{name, name}, n.OperationID(name, name))

		seg := n.PathSegment(name)
		checkSegment(t, name, seg)
		if urlSafeName(name) && seg != name {
			t.Errorf("PathSegment(%q) = %q, want the name itself", name, seg)
		}
		if seg2 := n.PathSegment(name); seg2 == seg {
			t.Fatalf("PathSegment(%q) = %q twice", name, seg)
		} else {
			checkSegment(t, name, seg2)
		}
	})
}

// urlSafeName is the test's own idea of a name kept as its path segment.
func urlSafeName(s string) bool {
	return s != "." && s != ".." && segmentChars.MatchString(s)
}

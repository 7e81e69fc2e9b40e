package jsonbody

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestCheckAcceptsWhatEveryParserReadsAlike(t *testing.T) {
	for _, body := range []string{
		`{}`,
		` {"timezone": "Europe/Warsaw", "n": -0.5e+3, "ok": true, "none": null, "list": [1, [2], {}]} `,
		`[]`, `"text"`, `0`, `-12.5E-7`, `true`, `false`, `null`,
		`{"a": {"a": {"a": 1}}}`, // the same name in nested objects
		`[{"a": 1}, {"a": 2}]`,   // and in sibling objects
		`{"\u00e9": 1, "é\u0301": 2}`,
		`{"emoji": "😀 \ud83d\ude00", "escapes": "\"\\\/\b\f\n\r\t"}`,
		"{\"tab\":\t1\r\n}",
		strings.Repeat("[", 128) + strings.Repeat("]", 128),
		`{"k00":0,"k01":1,"k02":2,"k03":3,"k04":4,"k05":5,"k06":6,"k07":7,"k08":8,"k09":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k17":17}`,
	} {
		if err := Check([]byte(body), 128); err != nil {
			t.Errorf("Check(%.40q) = %v, want nil", body, err)
		}
	}
}

func TestCheckRefusesWithTheOffsetOfTheFault(t *testing.T) {
	many := func(dup string) string {
		var b strings.Builder
		b.WriteString("{")
		for i := range 20 {
			fmt.Fprintf(&b, `"k%02d":%d,`, i, i)
		}
		b.WriteString(dup + `:0}`)
		return b.String()
	}
	for _, tc := range []struct {
		name, body string
		offset     int
		reason     string
		kind       Kind
	}{
		{"invalid UTF-8 in a value", "{\"a\":\"x\xffy\"}", 7, "invalid UTF-8 in a string", InvalidUTF8},
		{"invalid UTF-8 in a name", "{\"\xc3\":1}", 2, "invalid UTF-8 in a string", InvalidUTF8},
		{"a UTF-8-encoded surrogate", "[\"\xed\xa0\x80\"]", 2, "invalid UTF-8 in a string", InvalidUTF8},
		{"a repeated name", `{"a":1,"b":2,"a":3}`, 13, `the member name "a" appears twice in one object`, RepeatedName},
		{"a repeated name spelled with an escape", `{"a":1,"\u0061":2}`, 7, `the member name "\\u0061" appears twice in one object`, RepeatedName},
		{"a repeated name in a nested object", `{"x":{"a":1,"a":2}}`, 12, `the member name "a" appears twice in one object`, RepeatedName},
		{"a repeated name in a large object", many(`"k03"`), 171, `the member name "k03" appears twice in one object`, RepeatedName},
		{"nesting too deep", strings.Repeat("[", 129) + strings.Repeat("]", 129), 128, "nested more than 128 levels deep", TooDeep},
		{"objects nested too deep", strings.Repeat(`{"a":`, 129) + "1" + strings.Repeat("}", 129), 640, "nested more than 128 levels deep", TooDeep},
		{"nothing", "  ", 2, "no JSON value", Syntax},
		{"two values", `{} {}`, 3, "unexpected character '{' after the JSON value", Syntax},
		{"a trailing comma", `{"a":1,}`, 7, "unexpected character '}' in an object: want a member name in double quotes", Syntax},
		{"a control character", "\"a\nb\"", 2, "control character 0x0a in a string: escape it", Syntax},
		{"a bad escape", `"\x"`, 2, "invalid escape character 'x' in a string", Syntax},
		{"a short unicode escape", `"\u12"`, 1, `invalid \u escape in a string: want four hexadecimal digits`, Syntax},
		{"an unterminated string", `{"a":"b`, 7, "unexpected end of the body inside a string", Syntax},
		{"an unterminated object", `{"a":1`, 6, "unexpected end of the body inside an object", Syntax},
		{"a leading zero", `01`, 1, "unexpected character '1' after the JSON value", Syntax},
		{"a bare minus", `-`, 1, "unexpected end of the body in a number: want a digit", Syntax},
		{"a dot without digits", `1.`, 2, "unexpected end of the body in a number: want a digit after '.'", Syntax},
		{"an unquoted name", `{a:1}`, 1, "unexpected character 'a' in an object: want a member name in double quotes", Syntax},
		{"a misspelt literal", `[tru]`, 1, "unexpected character 't' where a value should start", Syntax},
		{"a missing colon", `{"a" 1}`, 5, "unexpected character '1' after a member name: want ':'", Syntax},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check([]byte(tc.body), 128)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Check(%q) = %v, want an *Error", tc.body, err)
			}
			if e.Offset != tc.offset || e.Reason != tc.reason || e.Kind != tc.kind {
				t.Errorf("Check(%q) = offset %d, kind %d, %q; want offset %d, kind %d, %q", tc.body, e.Offset, e.Kind, e.Reason, tc.offset, tc.kind, tc.reason)
			}
			if !strings.HasPrefix(err.Error(), fmt.Sprintf("byte offset %d: ", tc.offset)) {
				t.Errorf("message %q does not start with the offset", err)
			}
		})
	}
}

func TestCheckDoesNotAllocateForOrdinaryBodies(t *testing.T) {
	body := []byte(`{"timezone":"Europe/Warsaw","n":5,"flag":true,"list":[1,2,3],"obj":{"a":"b","c":[{"d":null}]}}`)
	if n := testing.AllocsPerRun(100, func() {
		if err := Check(body, 128); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Check allocates %v times per run, want 0", n)
	}
}

// oracle decides what Check must answer with encoding/json, which accepts
// invalid UTF-8 and repeated names: valid JSON, valid UTF-8, no repeated
// name (as encoding/json decodes names), no deeper nesting than maxDepth.
func oracle(b []byte, maxDepth int) bool {
	if !json.Valid(b) || !utf8.Valid(b) {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	type frame struct {
		names  map[string]bool
		object bool
		key    bool // the next string token of an object is a name
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{', '[':
				if top != nil && top.object {
					top.key = true
				}
				stack = append(stack, &frame{names: map[string]bool{}, object: v == '{', key: v == '{'})
				if len(stack) > maxDepth {
					return false
				}
			default:
				stack = stack[:len(stack)-1]
			}
		case string:
			if top != nil && top.object && top.key {
				if top.names[v] {
					return false
				}
				top.names[v] = true
				top.key = false
				continue
			}
			if top != nil && top.object {
				top.key = true
			}
		default:
			if top != nil && top.object {
				top.key = true
			}
		}
	}
}

func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":1,"a":2}`, `{"a":{"b":[1,2,{"c":"\u00e9"}]}}`, "\"\xff\"", `[[[[[]]]]]`,
		`{"\ud800":1,"\ufffd":2}`, `{"\ud83d\ude00":1,"😀":2}`, `-0.0e-0`, `{"a":1,"b":[true,false,null]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		const depth = 4
		err := Check(b, depth)
		if want := oracle(b, depth); (err == nil) != want {
			t.Fatalf("Check(%q) = %v; encoding/json says valid=%v", b, err, want)
		}
		var e *Error
		if err != nil && (!errors.As(err, &e) || e.Offset < 0 || e.Offset > len(b)) {
			t.Fatalf("Check(%q) = %v: want an *Error with an offset within the body", b, err)
		}
		// Members agrees with Check, for objects, and gives values that
		// are JSON values themselves, one level less deep.
		object := err == nil && bytes.TrimLeft(b, " \t\r\n")[0] == '{'
		merr := Members(b, depth, func(name string, value []byte) {
			if object && Check(value, depth-1) != nil {
				t.Fatalf("Members(%q) gave %q: %q, which is not a JSON value within %d levels", b, name, value, depth-1)
			}
		})
		if (merr == nil) != object {
			t.Fatalf("Members(%q) = %v; Check says %v", b, merr, err)
		}
	})
}

func BenchmarkCheck(b *testing.B) {
	small := []byte(`{"timezone":"Europe/Warsaw","n":5,"flag":true,"list":[1,2,3],"obj":{"a":"b"}}`)
	large := []byte(`{"data":"` + strings.Repeat("x", 1<<20) + `","items":[` + strings.Repeat(`{"k":1,"v":"abc"},`, 10000) + `1]}`)
	for _, bc := range []struct {
		name string
		body []byte
	}{{"small", small}, {"1MiB", large}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := Check(bc.body, 128); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"/json.Valid", func(b *testing.B) {
			b.SetBytes(int64(len(bc.body)))
			for b.Loop() {
				json.Valid(bc.body)
			}
		})
	}
}

func TestMembersAreTheTopLevelObjectsNamesAndValuesAsSent(t *testing.T) {
	type member struct{ name, value string }
	for _, tc := range []struct {
		body string
		want []member
		err  string // a part of the error; "" for none
	}{
		{body: `{}`},
		{body: " {\"a\" : 1 ,\"b\":{\"c\":[1, 2]},\r\n\"\\u0061\\n\":\"x\\\"y\", \"d\":null}\t",
			want: []member{{"a", "1"}, {"b", `{"c":[1, 2]}`}, {"a\n", `"x\"y"`}, {"d", "null"}}},
		{body: `{"big":12345678901234567890,"f":1.0e-400}`, want: []member{{"big", "12345678901234567890"}, {"f", "1.0e-400"}}},
		{body: ` [{"a":1}]`, err: "byte offset 1: not a JSON object"},
		{body: `"a"`, err: "not a JSON object"},
		{body: `{"a":1,"a":2}`, err: "appears twice"},
		{body: `{"a":1,"b":[}`, err: "unexpected"},
		{body: `{"a":[[[1]]]}`, err: "nested more than 3 levels deep"},
	} {
		var got []member
		err := Members([]byte(tc.body), 3, func(name string, value []byte) {
			got = append(got, member{name, string(value)})
		})
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("Members(%q) = %v, want an error saying %q", tc.body, err, tc.err)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("Members(%q) gave %q, want %q", tc.body, got, tc.want)
		}
	}
}

func TestRawMembersGiveNamesAsTheyStandAndAllocateNothingForPlainOnes(t *testing.T) {
	body := []byte(`{"a":1,"\u0061\n":"x","params":{"name":"echo"}}`)
	type member struct {
		name    string
		escaped bool
		value   string
	}
	var got []member
	if err := RawMembers(body, 3, func(name []byte, escaped bool, value []byte) {
		got = append(got, member{string(name), escaped, string(value)})
	}); err != nil {
		t.Fatal(err)
	}
	want := []member{{"a", false, "1"}, {`\u0061\n`, true, `"x"`}, {"params", false, `{"name":"echo"}`}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("RawMembers gave %v, want %v", got, want)
	}
	plain := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{}}}`)
	if n := testing.AllocsPerRun(100, func() {
		if err := RawMembers(plain, 3, func([]byte, bool, []byte) {}); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("RawMembers allocates %v times per run, want 0", n)
	}
}

func TestObjectAcceptsOnlyAnObjectCheckAccepts(t *testing.T) {
	for _, tc := range []struct{ body, err string }{
		{` {"a":[1,{"b":null}]} `, ""},
		{`[{"a":1}]`, "not a JSON object"},
		{`"a"`, "not a JSON object"},
		{`{"a":1,"a":2}`, "appears twice"},
		{`{"a":`, "unexpected end"},
	} {
		err := Object([]byte(tc.body), 3)
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("Object(%q) = %v, want an error saying %q", tc.body, err, tc.err)
		}
	}
}

// rawMember is a member as RawMembers and Split give it.
type rawMember struct {
	name    string
	escaped bool
	value   string
}

func splitOf(b []byte) []rawMember {
	var got []rawMember
	Split(b, func(name []byte, escaped bool, value []byte) {
		got = append(got, rawMember{string(name), escaped, string(value)})
	})
	return got
}

// splitAgrees fails t unless Split gives the members RawMembers gives, for
// b and for every object among its members' values, when b is an object
// RawMembers accepts.
func splitAgrees(t *testing.T, b []byte, depth int) {
	t.Helper()
	var want []rawMember
	if RawMembers(b, depth, func(name []byte, escaped bool, value []byte) {
		want = append(want, rawMember{string(name), escaped, string(value)})
	}) != nil {
		return
	}
	if got := splitOf(b); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Split(%q) gave %+v, RawMembers %+v", b, got, want)
	}
	for _, m := range want {
		if m.value[0] == '{' {
			splitAgrees(t, []byte(m.value), depth-1)
		}
	}
}

func TestSplitGivesTheMembersRawMembersGivesOfACheckedObject(t *testing.T) {
	for _, body := range []string{
		`{}`, ` { } `,
		`{"a":1,"\u0061\n":"x\"}","params":{"name":"echo","arguments":{"q":"[{\\"}"}}}`,
		"{\n\t\"n\" : -1.5e+3 ,\r\n \"t\":true,\"f\":false,\"z\":null , \"l\":[1,[2,{\"]\":\"}\"}],[]]}",
		`{"_meta":{"io.modelcontextprotocol/clientInfo":{"name":"c","version":"1"},"progressToken":7}}`,
		`{"s":"\\","u":"\ud83d\ude00😀"}`,
	} {
		splitAgrees(t, []byte(body), 8)
	}
}

func TestSplitReturnsOnBytesNoCheckAccepted(t *testing.T) {
	for _, body := range []string{
		``, `[`, `{`, `{"a`, `{"a"`, `{"a":`, `{"a":"`, `{"a":{`, `{"a":[1,{"b":"}`, `{"a":1,`, `{"a":1 "b":2}`,
		`{"a":\`, `"{"`, `{"a":tru`, `{1:2}`, `}`, `{"a":1}}`,
	} {
		splitOf([]byte(body)) // must return, and not panic
	}
}

func FuzzSplit(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":{"b":[1,2,{"c":"\u00e9"}]},"d":"}"}`, `{"\"":"\\\"","x":[{"]":"["}]}`, `{"a":1,"b":[true,false,null]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		splitOf(b) // returns on anything
		splitAgrees(t, b, 6)
	})
}

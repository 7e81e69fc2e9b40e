package bridge

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

func text(s string) upstream.Content { return upstream.Content{Type: "text", Text: s} }

func ptr[T any](v T) *T { return &v }

// jsonEq reports whether two JSON texts hold the same value, comparing
// numbers by their text.
func jsonEq(t *testing.T, a, b []byte) bool {
	t.Helper()
	decode := func(x []byte) any {
		var v any
		dec := json.NewDecoder(bytes.NewReader(x))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("decoding %s: %v", x, err)
		}
		return v
	}
	return reflect.DeepEqual(decode(a), decode(b))
}

var (
	testServer = &ServerConfig{Name: "time", ToolErrorStatus: http.StatusInternalServerError}
	plainTool  = &upstream.Tool{Name: "get_time"}
	typedTool  = &upstream.Tool{Name: "get_sum", OutputSchema: json.RawMessage(`{"type":"object","properties":{"sum":{"type":"number"}}}`)}
)

func TestRenderResult(t *testing.T) {
	for _, tc := range []struct {
		name string
		res  upstream.CallResult
		tool *upstream.Tool
		// body is the exact body wanted, unless same is set: then the
		// body must be the same JSON value.
		body string
		same bool
	}{
		// A single text that is JSON is that JSON value, verbatim.
		{name: "JSON number", res: upstream.CallResult{Content: []upstream.Content{text("42")}}, body: `42`},
		{name: "JSON float", res: upstream.CallResult{Content: []upstream.Content{text("-1.5e3")}}, body: `-1.5e3`},
		{name: "big integer stays exact", res: upstream.CallResult{Content: []upstream.Content{text("12345678901234567890")}}, body: `12345678901234567890`},
		{name: "big integer in an object stays exact", res: upstream.CallResult{Content: []upstream.Content{text(`{"id":12345678901234567890,"f":0.1000000000000000055511151231257827}`)}}, body: `{"id":12345678901234567890,"f":0.1000000000000000055511151231257827}`},
		{name: "JSON object", res: upstream.CallResult{Content: []upstream.Content{text(`{"time":"12:00","tz":"UTC"}`)}}, body: `{"time":"12:00","tz":"UTC"}`},
		{name: "JSON object keeps key order and duplicates", res: upstream.CallResult{Content: []upstream.Content{text(`{"b":1,"a":2,"b":3}`)}}, body: `{"b":1,"a":2,"b":3}`},
		{name: "JSON array", res: upstream.CallResult{Content: []upstream.Content{text(`[1,"two",null]`)}}, body: `[1,"two",null]`},
		{name: "JSON string literal", res: upstream.CallResult{Content: []upstream.Content{text(`"quoted"`)}}, body: `"quoted"`},
		{name: "true", res: upstream.CallResult{Content: []upstream.Content{text("true")}}, body: `true`},
		{name: "false", res: upstream.CallResult{Content: []upstream.Content{text("false")}}, body: `false`},
		{name: "null", res: upstream.CallResult{Content: []upstream.Content{text("null")}}, body: `null`},
		{name: "JSON with surrounding whitespace", res: upstream.CallResult{Content: []upstream.Content{text("\n  {\"a\": 1}\n")}}, body: `{"a": 1}`},

		// A single text that is not JSON is a JSON string.
		{name: "plain text", res: upstream.CallResult{Content: []upstream.Content{text("It is 12:00.")}}, body: `"It is 12:00."`},
		{name: "text needing escapes", res: upstream.CallResult{Content: []upstream.Content{text("line 1\nline \"2\"\t\\ <b>&</b> \x01")}}, same: true,
			body: `"line 1\nline \"2\"\t\\ \u003cb\u003e\u0026\u003c/b\u003e \u0001"`},
		{name: "unicode text", res: upstream.CallResult{Content: []upstream.Content{text("héllo 😀")}}, body: `"héllo 😀"`},
		{name: "empty text", res: upstream.CallResult{Content: []upstream.Content{text("")}}, body: `""`},
		{name: "blank text", res: upstream.CallResult{Content: []upstream.Content{text("  \n")}}, body: `"  \n"`},
		{name: "two JSON values", res: upstream.CallResult{Content: []upstream.Content{text("1 2")}}, body: `"1 2"`},
		{name: "truncated JSON", res: upstream.CallResult{Content: []upstream.Content{text(`{"a":`)}}, body: `"{\"a\":"`},
		{name: "NaN is not JSON", res: upstream.CallResult{Content: []upstream.Content{text("NaN")}}, body: `"NaN"`},
		{name: "unquoted word", res: upstream.CallResult{Content: []upstream.Content{text("nullable")}}, body: `"nullable"`},

		// Several items are an array, in order; none is [].
		{name: "several texts", res: upstream.CallResult{Content: []upstream.Content{text("first"), text(`{"n":2}`), text("3")}}, body: `["first",{"n":2},3]`},
		{name: "empty content", res: upstream.CallResult{Content: []upstream.Content{}}, body: `[]`},
		{name: "nil content", res: upstream.CallResult{}, body: `[]`},

		// Media: data: URIs, and always an array.
		{name: "single image is an array", res: upstream.CallResult{Content: []upstream.Content{{Type: "image", Data: "iVBORw0KGgo=", MIMEType: "image/png"}}}, body: `["data:image/png;base64,iVBORw0KGgo="]`},
		{name: "single audio is an array", res: upstream.CallResult{Content: []upstream.Content{{Type: "audio", Data: "UklGRg==", MIMEType: "audio/wav"}}}, body: `["data:audio/wav;base64,UklGRg=="]`},
		{name: "image without MIME type", res: upstream.CallResult{Content: []upstream.Content{{Type: "image", Data: "AAAA"}}}, body: `["data:application/octet-stream;base64,AAAA"]`},
		{name: "text and image", res: upstream.CallResult{Content: []upstream.Content{text("a chart:"), {Type: "image", Data: "AAAA", MIMEType: "image/jpeg"}}}, body: `["a chart:","data:image/jpeg;base64,AAAA"]`},

		// Resource links and embedded resources.
		{name: "resource link, all fields", res: upstream.CallResult{Content: []upstream.Content{{
			Type: "resource_link", URI: "file:///tmp/a.txt", Name: "a.txt", Title: "A", Description: "The file", MIMEType: "text/plain", Size: ptr(int64(12)),
		}}}, same: true, body: `{"type":"resource_link","uri":"file:///tmp/a.txt","name":"a.txt","title":"A","description":"The file","mimeType":"text/plain","size":12}`},
		{name: "resource link, required fields only", res: upstream.CallResult{Content: []upstream.Content{{
			Type: "resource_link", URI: "file:///tmp/a.txt", Name: "a.txt",
		}}}, same: true, body: `{"type":"resource_link","uri":"file:///tmp/a.txt","name":"a.txt"}`},
		{name: "resource link of size 0", res: upstream.CallResult{Content: []upstream.Content{{
			Type: "resource_link", URI: "file:///empty", Name: "empty", Size: ptr(int64(0)),
		}}}, same: true, body: `{"type":"resource_link","uri":"file:///empty","name":"empty","size":0}`},
		{name: "embedded text resource", res: upstream.CallResult{Content: []upstream.Content{{
			Type: "resource", Resource: &upstream.ResourceContents{URI: "mem://notes", MIMEType: "text/markdown", Text: ptr("# Notes")},
		}}}, same: true, body: `{"type":"resource","uri":"mem://notes","mimeType":"text/markdown","text":"# Notes"}`},
		{name: "embedded empty text resource", res: upstream.CallResult{Content: []upstream.Content{{
			Type: "resource", Resource: &upstream.ResourceContents{URI: "mem://empty", Text: ptr("")},
		}}}, same: true, body: `{"type":"resource","uri":"mem://empty","text":""}`},
		{name: "embedded blob", res: upstream.CallResult{Content: []upstream.Content{{
			Type: "resource", Resource: &upstream.ResourceContents{URI: "mem://logo", MIMEType: "image/png", Blob: ptr("iVBOR")},
		}}}, same: true, body: `{"type":"resource","uri":"mem://logo","mimeType":"image/png","data":"data:image/png;base64,iVBOR"}`},
		{name: "embedded blob without MIME type", res: upstream.CallResult{Content: []upstream.Content{{
			Type: "resource", Resource: &upstream.ResourceContents{URI: "mem://bin", Blob: ptr("AAAA")},
		}}}, same: true, body: `{"type":"resource","uri":"mem://bin","data":"data:application/octet-stream;base64,AAAA"}`},
		{name: "embedded resource without contents passes the item on", res: upstream.CallResult{Content: []upstream.Content{{
			Type: "resource", Raw: json.RawMessage(`{"type":"resource"}`),
		}}}, body: `{"type":"resource"}`},
		{name: "unknown content type passes the item on", res: upstream.CallResult{Content: []upstream.Content{{
			Type: "hologram", Raw: json.RawMessage(`{"type":"hologram","frames":[1,2]}`),
		}}}, body: `{"type":"hologram","frames":[1,2]}`},
		{name: "mixed items in order", res: upstream.CallResult{Content: []upstream.Content{
			text("see"), {Type: "resource_link", URI: "u:1", Name: "one"}, {Type: "x-new", Raw: json.RawMessage(`{"type":"x-new"}`)}, text("7"),
		}}, same: true, body: `["see",{"type":"resource_link","uri":"u:1","name":"one"},{"type":"x-new"},7]`},

		// Structured content.
		{name: "structured content with an output schema", tool: typedTool, res: upstream.CallResult{
			Content: []upstream.Content{text(`{"sum": 3}`)}, Structured: json.RawMessage(`{"sum":3,"big":12345678901234567890}`),
		}, body: `{"sum":3,"big":12345678901234567890}`},
		{name: "structured content is sent byte for byte", tool: typedTool, res: upstream.CallResult{
			Content: []upstream.Content{text("3")}, Structured: json.RawMessage(`{ "sum" : 3 ,"z":1,"a":2}`),
		}, body: `{ "sum" : 3 ,"z":1,"a":2}`},
		{name: "structured content with an output schema and no content", tool: typedTool, res: upstream.CallResult{
			Structured: json.RawMessage(`{"sum":3}`),
		}, body: `{"sum":3}`},
		{name: "structured content without output schema uses the content", res: upstream.CallResult{
			Content: []upstream.Content{text("three")}, Structured: json.RawMessage(`{"sum":3}`),
		}, body: `"three"`},
		{name: "structured content without output schema and without content", res: upstream.CallResult{
			Content: []upstream.Content{}, Structured: json.RawMessage(`{"sum":3}`),
		}, body: `{"sum":3}`},
		{name: "output schema without structured content uses the content", tool: typedTool, res: upstream.CallResult{
			Content: []upstream.Content{text(`{"sum":3}`)},
		}, body: `{"sum":3}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tool := tc.tool
			if tool == nil {
				tool = plainTool
			}
			body := renderResult(&tc.res, tool)
			if !json.Valid(body) {
				t.Fatalf("body is not valid JSON: %q", body)
			}
			if tc.same {
				if !jsonEq(t, body, []byte(tc.body)) {
					t.Errorf("body = %s, want %s", body, tc.body)
				}
			} else if string(body) != tc.body {
				t.Errorf("body = %s, want %s", body, tc.body)
			}
		})
	}
}

func TestRenderResultManyMediaItems(t *testing.T) {
	var content []upstream.Content
	for i := range 5 {
		content = append(content, upstream.Content{Type: []string{"image", "audio"}[i%2], Data: strings.Repeat("A", i*4), MIMEType: "x/y"})
	}
	body := renderResult(&upstream.CallResult{Content: content}, plainTool)
	if !json.Valid(body) {
		t.Fatalf("body %s", body)
	}
	var got []string
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body %s is not a list of strings: %v", body, err)
	}
	if len(got) != 5 {
		t.Fatalf("%d items, want 5", len(got))
	}
	for i, s := range got {
		if want := "data:x/y;base64," + strings.Repeat("A", i*4); s != want {
			t.Errorf("item %d = %q, want %q", i, s, want)
		}
	}
}

// errorBody is the body of an error response.
type errorBody struct {
	Detail struct {
		Message string          `json:"message"`
		Server  string          `json:"server"`
		Tool    string          `json:"tool"`
		Code    *int            `json:"code"`
		Data    json.RawMessage `json:"data"`
	} `json:"detail"`
}

func decodeError(t *testing.T, body []byte) errorBody {
	t.Helper()
	if !json.Valid(body) {
		t.Fatalf("body is not valid JSON: %q", body)
	}
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(body, &outer); err != nil {
		t.Fatalf("body %s is not an object: %v", body, err)
	}
	if len(outer) != 1 || outer["detail"] == nil {
		t.Fatalf("body %s: want exactly {\"detail\": ...}", body)
	}
	var e errorBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	return e
}

func TestRenderResultToolError(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		content []upstream.Content
		message string
	}{
		{"one text", 500, []upstream.Content{text("city not found")}, "city not found"},
		{"texts joined by newlines", 500, []upstream.Content{text("first"), {Type: "image", Data: "AAAA"}, text("second")}, "first\nsecond"},
		{"blank texts skipped", 500, []upstream.Content{text("  "), text("real")}, "real"},
		{"JSON text is a message, not a nested body", 500, []upstream.Content{text(`{"detail":{"message":"inner"}}`)}, `{"detail":{"message":"inner"}}`},
		{"special characters", 500, []upstream.Content{text("bad \"input\"\n\t<x>")}, "bad \"input\"\n\t<x>"},
		{"no text", 500, []upstream.Content{{Type: "image", Data: "AAAA"}}, "the tool reported an error without a message"},
		{"no content", 500, nil, "the tool reported an error without a message"},
		{"configured status", http.StatusBadRequest, []upstream.Content{text("nope")}, "nope"},
		{"configured status 200", http.StatusOK, []upstream.Content{text("nope")}, "nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &ServerConfig{Name: "weather", ToolErrorStatus: tc.status}
			res := &upstream.CallResult{Content: tc.content, IsError: true, Structured: json.RawMessage(`{"ignored":true}`)}
			w := httptest.NewRecorder()
			te := toolError(res, s, typedTool)
			if te.Outcome != OutcomeToolError {
				t.Errorf("outcome = %q, want %q", te.Outcome, OutcomeToolError)
			}
			writeError(w, te)
			if w.Code != tc.status {
				t.Errorf("status = %d, want %d", w.Code, tc.status)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			e := decodeError(t, w.Body.Bytes())
			if e.Detail.Message != tc.message {
				t.Errorf("message = %q, want %q", e.Detail.Message, tc.message)
			}
			if e.Detail.Server != "weather" || e.Detail.Tool != typedTool.Name {
				t.Errorf("server, tool = %q, %q; want weather, %s", e.Detail.Server, e.Detail.Tool, typedTool.Name)
			}
			if e.Detail.Code != nil || e.Detail.Data != nil {
				t.Errorf("code, data = %v, %s; want none for a tool error", e.Detail.Code, e.Detail.Data)
			}
		})
	}
}

// The status a Server gets from New is the default tool error status.
func TestRenderResultToolErrorDefaultStatus(t *testing.T) {
	s := &ServerConfig{Name: "s", Upstream: &fakeCaller{}}
	if _, err := New(Config{Servers: []*ServerConfig{s}, Single: true}); err != nil {
		t.Fatal(err)
	}
	if status := toolError(&upstream.CallResult{IsError: true}, s, plainTool).Status; status != DefaultToolErrorStatus {
		t.Errorf("status = %d, want %d", status, DefaultToolErrorStatus)
	}
}

// TestRenderContentFastPaths checks the shortcuts renderContent takes for
// texts and data URIs against what they stand for, on random strings of
// the characters that matter: a text is its JSON value when it is JSON,
// else a JSON string; media is the JSON string of its data: URI.
func TestRenderContentFastPaths(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pieces := []string{" ", "\t", "\n", "\v", "\f", "\r", "\u0085", "\u00a0", "\u2028", "{", "}", "[", "]", "\"", "a", "1", "-",
		"true", "null", "f", "<", "&", "\\", "\x00", "\x7f", "\xff", "é", ",", ":", "0", "e", "+", "/", "=", "image/png", "A", "z"}
	for range 100000 {
		var b strings.Builder
		for range r.IntN(8) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		s := b.String()
		want := mustJSON(s)
		if trimmed := bytes.TrimSpace([]byte(s)); len(trimmed) > 0 && json.Valid(trimmed) {
			want = trimmed
		}
		if got := renderContent(&upstream.Content{Type: "text", Text: s}); !bytes.Equal(got, want) {
			t.Fatalf("text %q: %s, want %s", s, got, want)
		}
		mime := pieces[r.IntN(len(pieces))]
		if r.IntN(3) == 0 {
			mime = ""
		}
		for _, typ := range []string{"image", "audio"} {
			c := &upstream.Content{Type: typ, MIMEType: mime, Data: s}
			if got, want := renderContent(c), mustJSON(dataURI(mime, s)); !bytes.Equal(got, want) {
				t.Fatalf("%s %q %q: %s, want %s", typ, mime, s, got, want)
			}
		}
	}
}

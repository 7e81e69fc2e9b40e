package upstream

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDecodeCallResultKeepsTheJSONOfItemsItsFieldsDoNotDescribe(t *testing.T) {
	tests := []struct {
		name    string
		result  string
		want    []Content // Raw compared as a string
		isError bool
		errText string
	}{
		{
			name:   "known types without their JSON",
			result: `{"content":[{"type":"text","text":"hi"},{"type":"image","mimeType":"image/png","data":"AA=="},{"type":"resource_link","uri":"file:///a","name":"a"}],"isError":true}`,
			want: []Content{{Type: "text", Text: "hi"}, {Type: "image", MIMEType: "image/png", Data: "AA=="},
				{Type: "resource_link", URI: "file:///a", Name: "a"}},
			isError: true,
		},
		{
			name:   "a newer type and a resource without its resource, as sent",
			result: `{"content":[{"type":"hologram","depth":3},{"type":"resource"},{"type":"resource","resource":{"uri":"file:///b","text":"b"}}]}`,
			want: []Content{{Type: "hologram", Raw: json.RawMessage(`{"type":"hologram","depth":3}`)},
				{Type: "resource", Raw: json.RawMessage(`{"type":"resource"}`)}, {Type: "resource"}},
		},
		{name: "no content", result: `{}`, want: []Content{}},
		{name: "a bad item is named", result: `{"content":[{"type":"text","text":"ok"},{"type":"text","text":5}]}`, errText: "content item 1: "},
		{name: "not an object", result: `[1]`, errText: "cannot unmarshal array"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := decodeCallResult(json.RawMessage(tc.result))
			if tc.errText != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errText) {
					t.Fatalf("error %v, want one with %q", err, tc.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.IsError != tc.isError || res.Content == nil || len(res.Content) != len(tc.want) {
				t.Fatalf("result %+v, want %d items, isError %v", res, len(tc.want), tc.isError)
			}
			for i, w := range tc.want {
				g := res.Content[i]
				if g.Type != w.Type || g.Text != w.Text || g.Data != w.Data || g.URI != w.URI || g.Name != w.Name || string(g.Raw) != string(w.Raw) {
					t.Errorf("item %d = %+v (Raw %s), want %+v (Raw %s)", i, g, g.Raw, w, w.Raw)
				}
				if w.Type == "resource" && w.Raw == nil && (g.Resource == nil || g.Resource.URI != "file:///b") {
					t.Errorf("item %d's resource = %+v", i, g.Resource)
				}
			}
		})
	}
}

func TestDecodeCallResultKeepsEachItemAndTheMetaAsSentWithoutCopies(t *testing.T) {
	items := []string{
		`{"type":"text","text":"hi","annotations":{"audience":["user"]}}`,
		`{ "type" : "image", "data":"AA==", "mimeType":"image/png", "_meta":{"k":1} }`,
		`{"type":"hologram","depth":3}`,
	}
	meta := `{"trace":"abc"}`
	b := json.RawMessage(`{"content":[` + strings.Join(items, ", ") + `],"_meta":` + meta + `}`)
	res, err := decodeCallResult(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Content) != len(items) {
		t.Fatalf("%d items, want %d", len(res.Content), len(items))
	}
	for i, want := range items {
		w := res.Content[i].Wire
		if string(w) != want {
			t.Errorf("item %d's Wire = %s, want %s", i, w, want)
		}
		if !within(w, b) {
			t.Errorf("item %d's Wire is a copy, not a part of the result's buffer", i)
		}
	}
	if string(res.Meta) != meta {
		t.Errorf("Meta = %s, want %s", res.Meta, meta)
	}
	if res, _ := decodeCallResult(json.RawMessage(`{"content":[]}`)); res.Meta != nil {
		t.Errorf("Meta of a result without one = %s, want nil", res.Meta)
	}
}

func TestWithinTellsAPartOfABufferFromACopy(t *testing.T) {
	whole := []byte("0123456789")
	for _, tc := range []struct {
		name string
		part []byte
		want bool
	}{
		{"a middle part", whole[2:5], true},
		{"the whole", whole, true},
		{"the last byte", whole[9:], true},
		{"a copy", []byte("234"), false},
		{"empty", whole[3:3], false},
	} {
		if got := within(tc.part, whole); got != tc.want {
			t.Errorf("%s: within = %v, want %v", tc.name, got, tc.want)
		}
	}
}

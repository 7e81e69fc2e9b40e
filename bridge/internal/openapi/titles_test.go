package openapi

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode"
)

// titlesOf returns where each schema title of a document is, by the class
// name a generator makes of it.
func titlesOf(t *testing.T, body []byte) map[string][]string {
	t.Helper()
	comps, _ := get(generic(t, body), "components", "schemas").(map[string]any)
	out := map[string][]string{}
	for _, name := range keysOf(comps) {
		walkSchema(comps[name], "#/components/schemas/"+name, func(m map[string]any, at string) {
			if title, ok := m["title"].(string); ok {
				key := strings.ToLower(strings.Map(func(r rune) rune {
					if unicode.IsLetter(r) || unicode.IsDigit(r) {
						return r
					}
					return -1
				}, title))
				out[key] = append(out[key], at)
			}
		})
	}
	return out
}

func TestBuildKeepsEachTitleOnce(t *testing.T) {
	// mcp-server-time's convert_time: TimeResult inlined twice.
	convert := Tool{
		Name:        "convert_time",
		InputSchema: json.RawMessage(`{"type":"object","title":"convert_timeArguments","properties":{"time":{"type":"string","title":"Time"}}}`),
		OutputSchema: json.RawMessage(`{"$defs":{"TimeResult":{"properties":{"timezone":{"title":"Timezone","type":"string"},"datetime":{"title":"Datetime","type":"string"}},"required":["timezone","datetime"],"title":"TimeResult","type":"object"}},` +
			`"properties":{"source":{"$ref":"#/$defs/TimeResult"},"target":{"$ref":"#/$defs/TimeResult"},"time_difference":{"title":"Time Difference","type":"string"}},` +
			`"required":["source","target","time_difference"],"title":"TimeConversionResult","type":"object"}`),
	}
	current := Tool{
		Name:         "get_current_time",
		InputSchema:  json.RawMessage(`{"type":"object","properties":{"timezone":{"type":"string","title":"Timezone"}}}`),
		OutputSchema: json.RawMessage(`{"properties":{"timezone":{"title":"Timezone","type":"string"}},"title":"Time Result","type":"object"}`),
	}
	d, err := Build(Info{Title: "time"}, []Operation{
		{Path: "/convert_time", OperationID: "convert_time", Tool: convert},
		{Path: "/get_current_time", OperationID: "get_current_time", Tool: current},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	b := d.JSON("/")
	loadAndValidate(t, b)
	for title, where := range titlesOf(t, b) {
		if len(where) > 1 {
			t.Errorf("title %q is at %v", title, where)
		}
	}
	m := generic(t, b)
	out := "components/schemas/convert_time_output"
	if got := get(m, strings.Split(out+"/properties/source/title", "/")...); got != "TimeResult" {
		t.Errorf("the first TimeResult lost its title: %v", got)
	}
	if got := get(m, strings.Split(out+"/properties/target/properties/timezone", "/")...); got == nil {
		t.Errorf("the second TimeResult lost more than its title: %s", b)
	}
	if got := get(m, strings.Split("components/schemas/get_current_time_output/title", "/")...); got != nil {
		t.Errorf("\"Time Result\" repeats TimeResult but kept its title")
	}
}

func TestCorpusDocumentsHaveUniqueTitles(t *testing.T) {
	for _, d := range corpusDocuments() {
		for title, where := range titlesOf(t, d.build(t).JSON("/")) {
			if len(where) > 1 {
				t.Errorf("%s: title %q is at %v", d.name, title, where)
			}
		}
	}
}

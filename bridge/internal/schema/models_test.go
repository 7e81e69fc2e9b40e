package schema

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// geminiKeywords are the keywords of google-genai's types.Schema that are
// also JSON Schema keywords: what an argument schema may use.
var geminiKeywords = map[string]bool{
	"type": true, "title": true, "description": true, "format": true, "pattern": true, "default": true, "example": true,
	"enum": true, "minLength": true, "maxLength": true, "minItems": true, "maxItems": true, "minProperties": true,
	"maxProperties": true, "minimum": true, "maximum": true, "properties": true, "required": true, "items": true,
	"additionalProperties": true, "anyOf": true,
}

// modelProblems lists what in a converted input schema google-genai's
// types.Schema would refuse (the Python check over the real corpus is
// bridge/internal/openapi's TestDocumentsSuitLLMProviders).
func modelProblems(v any, at string) []string {
	m, ok := v.(map[string]any)
	if !ok {
		return []string{at + ": not a schema object"}
	}
	var out []string
	for _, k := range sortedKeys(m) {
		val := m[k]
		if !geminiKeywords[k] {
			out = append(out, fmt.Sprintf("%s: keyword %s", at, k))
			continue
		}
		switch k {
		case "type":
			if _, ok := val.(string); !ok {
				out = append(out, fmt.Sprintf("%s: type %v is not one name", at, val))
			}
		case "enum":
			for _, e := range anyList(val) {
				if _, ok := e.(string); !ok {
					out = append(out, fmt.Sprintf("%s: enum value %v is not a string", at, e))
				}
			}
		case "properties":
			props, _ := val.(map[string]any)
			for _, name := range sortedKeys(props) {
				out = append(out, modelProblems(props[name], at+"/properties/"+name)...)
			}
		case "items":
			out = append(out, modelProblems(val, at+"/items")...)
		case "additionalProperties":
			if _, isBool := val.(bool); !isBool {
				out = append(out, modelProblems(val, at+"/additionalProperties")...)
			}
		case "anyOf":
			for i, b := range anyList(val) {
				out = append(out, modelProblems(b, fmt.Sprintf("%s/anyOf/%d", at, i))...)
			}
		}
	}
	return out
}

func TestInput_UsesOnlyWhatLLMProvidersTake(t *testing.T) {
	var cases []inputCase
	cases = append(cases, inputCases...)
	cases = append(cases, dialectCases...)
	for _, tc := range orderSensitive {
		cases = append(cases, inputCase{name: tc.name, raw: tc.raw})
	}
	for _, tc := range cases {
		if len(tc.raw) > 100000 {
			continue // slow to load, and made of keywords checked elsewhere
		}
		for _, p := range modelProblems(asJSON(t, Input(rawOf(tc.raw)).Schema), "") {
			t.Errorf("%s: %s", tc.name, p)
		}
	}
}

// modelCases show how each keyword outside the providers' subset is said.
var modelCases = []struct {
	name, raw string
	want      string // the converted schema
}{
	{
		name: "an optional nullable argument is documented without null",
		raw:  `{"type":"object","properties":{"a":{"type":["string","null"],"default":null},"b":{"anyOf":[{"type":"integer"},{"type":"null"}],"description":"B"}}}`,
		want: `{"properties":{"a":{"type":"string"},"b":{"description":"B","type":"integer"}},"type":"object"}`,
	},
	{
		name: "a required nullable argument keeps its type and says it may be null",
		raw:  `{"type":"object","properties":{"a":{"type":["string","null"],"description":"A."}},"required":["a"]}`,
		want: `{"properties":{"a":{"description":"A. May be null.","type":"string"}},"required":["a"],"type":"object"}`,
	},
	{
		name: "null among other types and in nested places",
		raw: `{"type":"object","properties":{"a":{"type":["string","integer","null"]},"l":{"type":"array","items":{"type":["string","null"]}},
			"o":{"type":"object","properties":{"x":{"type":["boolean","null"]}},"required":["x"]}}}`,
		want: `{"properties":{"a":{"anyOf":[{"type":"integer"},{"type":"string"}]},` +
			`"l":{"items":{"description":"May be null.","type":"string"},"type":"array"},` +
			`"o":{"properties":{"x":{"description":"May be null.","type":"boolean"}},"required":["x"],"type":"object"}},"type":"object"}`,
	},
	{
		name: "oneOf becomes anyOf, allOf is merged",
		raw: `{"type":"object","properties":{"u":{"oneOf":[{"type":"string"},{"type":"integer"}]},
			"m":{"allOf":[{"type":"object","properties":{"a":{"type":"string"}},"required":["a"]},{"properties":{"b":{"type":"integer"}},"required":["b"]}]}}}`,
		want: `{"properties":{"m":{"properties":{"a":{"type":"string"},"b":{"type":"integer"}},"required":["a","b"],"type":"object"},` +
			`"u":{"anyOf":[{"type":"string"},{"type":"integer"}]}},"type":"object"}`,
	},
	{
		name: "const and enums that are not strings are said in the description",
		raw: `{"type":"object","properties":{"k":{"const":"fixed"},"v":{"type":"integer","const":2},"l":{"type":"integer","enum":[1,2,3]},
			"s":{"type":"string","enum":["a","b",null]}}}`,
		want: `{"properties":{"k":{"enum":["fixed"],"type":"string"},"l":{"description":"One of: 1, 2, 3.","type":"integer"},` +
			`"s":{"enum":["a","b"],"type":"string"},"v":{"description":"Always 2.","type":"integer"}},"type":"object"}`,
	},
	{
		name: "bounds, multiples, unique items, deprecation and examples",
		raw: `{"type":"object","properties":{"i":{"type":"integer","exclusiveMinimum":0,"exclusiveMaximum":10},"n":{"type":"number","exclusiveMinimum":0.5,"multipleOf":0.25},
			"u":{"type":"array","items":{"type":"string"},"uniqueItems":true},"d":{"type":"string","deprecated":true,"description":"Old.","examples":["x","y"]}}}`,
		want: `{"properties":{"d":{"description":"Old. Deprecated.","example":"x","type":"string"},"i":{"maximum":9,"minimum":1,"type":"integer"},` +
			`"n":{"description":"Greater than 0.5. A multiple of 0.25.","type":"number"},"u":{"description":"Items must be unique.","items":{"type":"string"},"type":"array"}},"type":"object"}`,
	},
	{
		name: "tuples and pattern properties",
		raw: `{"type":"object","properties":{"p":{"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false},
			"e":{"type":"object","patternProperties":{"^[A-Z]+$":{"type":"string"}},"additionalProperties":false}}}`,
		want: `{"properties":{"e":{"additionalProperties":{"type":"string"},"description":"Keys matching \"^[A-Z]+$\" are allowed.","type":"object"},` +
			`"p":{"description":"Items by position: string, integer.","items":{"anyOf":[{"type":"string"},{"type":"integer"}]},"maxItems":2,"type":"array"}},"type":"object"}`,
	},
	{
		name: "what no provider reads is left out",
		raw: `{"type":"object","x-generator":"hand","properties":{"a":{"type":"string","x-order":1,"markdownDescription":"*a*","readOnly":true,
			"writeOnly":true,"contentMediaType":"text/plain","not":{"const":""},"pattern":"^(?!x)"}},
			"dependentRequired":{"a":["b"]},"if":{"required":["a"]},"then":{"required":["b"]},"propertyNames":{"maxLength":3}}`,
		want: `{"description":"If a is given, b must be given too.","properties":{"a":{"description":"Must match the pattern \"^(?!x)\".","type":"string"}},"type":"object"}`,
	},
}

func TestInput_SaysWhatProvidersCannotTakeInWords(t *testing.T) {
	for _, tc := range modelCases {
		t.Run(tc.name, func(t *testing.T) {
			res := Input(json.RawMessage(tc.raw))
			if err := validateInDocument(res); err != nil {
				t.Fatal(err)
			}
			if got := mustMarshal(res.Schema); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestInput_ANullLeftOutOfTheDocumentIsStillAccepted(t *testing.T) {
	raw := json.RawMessage(`{"type":"object","properties":{"a":{"type":["string","null"]},"b":{"anyOf":[{"type":"integer"},{"type":"null"}]}},"required":["b"]}`)
	doc := mustMarshal(Input(raw).Schema)
	if strings.Contains(doc, `"null"`) {
		t.Fatalf("the document still says null: %s", doc)
	}
	v, err := NewValidator(raw)
	if err != nil {
		t.Fatal(err)
	}
	if errs := v.Validate(json.RawMessage(`{"a":null,"b":null}`)); errs != nil {
		t.Errorf("nulls are refused: %v", errs)
	}
}

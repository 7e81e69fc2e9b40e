package schema

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// rootName is the component the converted schema is stored under in the
// documents the tests build around it.
const rootName = "Root"

// documentWith wraps a conversion result into a minimal OpenAPI 3.1
// document: the result's components plus the schema itself, used as a
// request body.
func documentWith(res Result) ([]byte, error) {
	comps := map[string]any{rootName: res.Schema}
	doc := map[string]any{
		"openapi": "3.1.0",
		"info":    map[string]any{"title": "test", "version": "1.0.0"},
		"paths": map[string]any{
			"/tool": map[string]any{"post": map[string]any{
				"operationId": "tool",
				"requestBody": map[string]any{"content": map[string]any{
					"application/json": map[string]any{"schema": map[string]any{"$ref": ComponentsPrefix + rootName}},
				}},
				"responses": map[string]any{"200": map[string]any{"description": "ok"}},
			}},
		},
		"components": map[string]any{"schemas": comps},
	}
	return json.Marshal(doc)
}

// validateInDocument loads the document around res with kin-openapi and
// validates it (OpenAPI 3.1 rules, since the document says 3.1.0).
func validateInDocument(res Result) error {
	if res.Schema == nil {
		return fmt.Errorf("nil schema")
	}
	b, err := documentWith(res)
	if err != nil {
		return fmt.Errorf("encoding the document: %w", err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		return fmt.Errorf("loading the document: %w\n%s", err, b)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return fmt.Errorf("validating the document: %w\n%s", err, b)
	}
	return nil
}

// asJSON returns s as generic JSON (numbers as json.Number).
func asJSON(t testing.TB, s any) map[string]any {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatalf("encoding the schema: %v", err)
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decoding the schema %s: %v", b, err)
	}
	return m
}

// at follows keys (object keys, or list indexes as decimal strings).
func at(v any, keys ...string) (any, bool) {
	for _, k := range keys {
		switch c := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = c[k]; !ok {
				return nil, false
			}
		case []any:
			var i int
			if _, err := fmt.Sscanf(k, "%d", &i); err != nil || i < 0 || i >= len(c) {
				return nil, false
			}
			v = c[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// want asserts the JSON value at keys equals the JSON literal lit.
func want(t *testing.T, got map[string]any, lit string, keys ...string) {
	t.Helper()
	v, ok := at(got, keys...)
	if !ok {
		t.Errorf("%s: missing, want %s; schema: %s", strings.Join(keys, "."), lit, mustMarshal(got))
		return
	}
	var w any
	dec := json.NewDecoder(strings.NewReader(lit))
	dec.UseNumber()
	if err := dec.Decode(&w); err != nil {
		t.Fatalf("bad literal %s: %v", lit, err)
	}
	if !reflect.DeepEqual(v, w) {
		t.Errorf("%s = %s, want %s", strings.Join(keys, "."), mustMarshal(v), lit)
	}
}

// absent asserts nothing is at keys.
func absent(t *testing.T, got map[string]any, keys ...string) {
	t.Helper()
	if v, ok := at(got, keys...); ok {
		t.Errorf("%s = %s, want it absent", strings.Join(keys, "."), mustMarshal(v))
	}
}

func mustMarshal(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("<%v>", err)
	}
	return string(b)
}

func hasWarning(res Result, sub string) bool {
	for _, w := range res.Warnings {
		if strings.Contains(w, sub) {
			return true
		}
	}
	return false
}

// deepSchema nests n object levels through "properties".
func deepSchema(n int) string {
	s := `{"type":"string"}`
	for range n {
		s = `{"type":"object","properties":{"a":` + s + `}}`
	}
	return s
}

// propertyDepth counts how many "properties" levels the schema has.
func propertyDepth(m map[string]any) int {
	n := 0
	for {
		p, ok := at(m, "properties", "a")
		if !ok {
			return n
		}
		m, ok = p.(map[string]any)
		if !ok {
			return n
		}
		n++
	}
}

// anyTypes is the anyOf of an optional argument that accepts anything.
const anyTypes = `[{"items":{},"type":"array"},{"type":"boolean"},{"type":"number"},{"type":"object"},{"type":"string"}]`

type inputCase struct {
	name string
	raw  string // "" is an absent schema (nil)
	// warn, when set, must appear in some warning; when empty, there must
	// be no warning at all.
	warn  string
	check func(t *testing.T, res Result, got map[string]any)
}

// inputCases are input schemas as MCP servers send them.
var inputCases = []inputCase{
	{
		name: "plain object",
		raw:  `{"type":"object","properties":{"city":{"type":"string","description":"City name"},"days":{"type":"integer"}},"required":["city"]}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"object"`, "type")
			want(t, got, `"string"`, "properties", "city", "type")
			want(t, got, `"City name"`, "properties", "city", "description")
			want(t, got, `"integer"`, "properties", "days", "type")
			want(t, got, `["city"]`, "required")
		},
	},
	{
		name: "object without properties",
		raw:  `{"type":"object"}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"object"`, "type")
			if res.Schema.Properties == nil {
				t.Error("Properties is nil, want an empty map so clients see an object with no arguments")
			}
		},
	},
	{
		name: "properties without type",
		raw:  `{"properties":{"q":{"type":"string"}}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"object"`, "type")
			want(t, got, `"string"`, "properties", "q", "type")
		},
	},
	{
		name: "absent schema",
		raw:  "",
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"object"`, "type")
			if res.Schema.Properties == nil || len(res.Schema.Properties) != 0 {
				t.Errorf("Properties = %v, want an empty map", res.Schema.Properties)
			}
		},
	},
	{
		name: "true",
		raw:  `true`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"object"`, "type")
			want(t, got, `true`, "additionalProperties")
		},
	},
	{
		name: "false",
		raw:  `false`,
		warn: "accepts nothing",
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"object"`, "type")
			want(t, got, `false`, "additionalProperties")
		},
	},
	{
		name: "draft-07 with $schema, $id and $comment",
		raw: `{"$schema":"http://json-schema.org/draft-07/schema#","$id":"https://example.com/args","$comment":"generated",
			"type":"object","properties":{"a":{"type":"string","$comment":"inner"}},"additionalProperties":false}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			absent(t, got, "$schema")
			absent(t, got, "$id")
			absent(t, got, "$comment")
			absent(t, got, "properties", "a", "$comment")
			want(t, got, `false`, "additionalProperties")
			want(t, got, `"string"`, "properties", "a", "type")
		},
	},
	{
		name: "$defs with $ref",
		raw: `{"type":"object","properties":{"user":{"$ref":"#/$defs/User"},"tags":{"type":"array","items":{"$ref":"#/$defs/Tag"}}},
			"$defs":{"User":{"type":"object","properties":{"name":{"type":"string"},"tag":{"$ref":"#/$defs/Tag"}}},"Tag":{"type":"string","enum":["a","b"]}}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"object"`, "properties", "user", "type")
			want(t, got, `"string"`, "properties", "user", "properties", "name", "type")
			want(t, got, `["a","b"]`, "properties", "user", "properties", "tag", "enum")
			want(t, got, `["a","b"]`, "properties", "tags", "items", "enum")
			absent(t, got, "$defs")
			noRefs(t, got)
		},
	},
	{
		name: "draft-07 definitions",
		raw: `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"n":{"$ref":"#/definitions/Num"}},
			"definitions":{"Num":{"type":"number","minimum":0}}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"number"`, "properties", "n", "type")
			want(t, got, `0`, "properties", "n", "minimum")
			absent(t, got, "definitions")
			noRefs(t, got)
		},
	},
	{
		name: "both $defs and definitions",
		raw: `{"type":"object","properties":{"a":{"$ref":"#/$defs/A"},"b":{"$ref":"#/definitions/B"}},
			"$defs":{"A":{"type":"string"}},"definitions":{"B":{"type":"integer"}}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"string"`, "properties", "a", "type")
			want(t, got, `"integer"`, "properties", "b", "type")
		},
	},
	{
		name: "definition names that need JSON-pointer escaping",
		raw: `{"type":"object","properties":{"a":{"$ref":"#/$defs/Page[Item]"},"b":{"$ref":"#/$defs/a~1b"},"c":{"$ref":"#/$defs/t~0x"},"d":{"$ref":"#/$defs/Größe"}},
			"$defs":{"Page[Item]":{"type":"string"},"a/b":{"type":"integer"},"t~x":{"type":"boolean"},"Größe":{"type":"number"}}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			for p, typ := range map[string]string{"a": `"string"`, "b": `"integer"`, "c": `"boolean"`, "d": `"number"`} {
				want(t, got, typ, "properties", p, "type")
			}
		},
	},
	{
		name: "definition names that differ only in characters a sanitizer would replace",
		raw: `{"type":"object","properties":{"a":{"$ref":"#/$defs/a b"},"b":{"$ref":"#/$defs/a_b"}},
			"$defs":{"a b":{"type":"string"},"a_b":{"type":"integer"}}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"string"`, "properties", "a", "type")
			want(t, got, `"integer"`, "properties", "b", "type")
		},
	},
	{
		name: "recursive definition",
		raw: `{"type":"object","properties":{"root":{"$ref":"#/$defs/Node"}},
			"$defs":{"Node":{"type":"object","properties":{"value":{"type":"string"},"children":{"type":"array","items":{"$ref":"#/$defs/Node"}}}}}}`,
		warn: "recursive",
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"string"`, "properties", "root", "properties", "value", "type")
			want(t, got, `"string"`, "properties", "root", "properties", "children", "items", "properties", "value", "type")
			cut, ok := at(got, "properties", "root", "properties", "children", "items", "properties", "children", "items")
			if !ok || !strings.Contains(mustMarshal(cut), "recursive") {
				t.Errorf("the recursion is not cut after two levels: %s", mustMarshal(got))
			}
			want(t, got, `"object"`, "properties", "root", "properties", "children", "items", "properties", "children", "items", "type")
			noRefs(t, got)
		},
	},
	{
		name: "recursion through the root",
		raw:  `{"type":"object","properties":{"name":{"type":"string"},"parent":{"$ref":"#"}}}`,
		warn: "recursive",
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"string"`, "properties", "parent", "properties", "name", "type")
			noRefs(t, got)
		},
	},
	{
		name: "anchor reference",
		raw:  `{"type":"object","properties":{"a":{"$ref":"#item"}},"$defs":{"Item":{"$anchor":"item","type":"string","minLength":2}}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"string"`, "properties", "a", "type")
			want(t, got, `2`, "properties", "a", "minLength")
			absent(t, got, "properties", "a", "$anchor")
		},
	},
	{
		name: "$ref with sibling keywords (pydantic style)",
		raw: `{"type":"object","properties":{"color":{"$ref":"#/$defs/Color","description":"The color","default":"red"}},
			"$defs":{"Color":{"type":"string","enum":["red","green"]}}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `["red","green"]`, "properties", "color", "enum")
			want(t, got, `"The color"`, "properties", "color", "description")
			want(t, got, `"red"`, "properties", "color", "default")
		},
	},
	{
		name: "optional reference through anyOf (pydantic Optional[Model])",
		raw: `{"type":"object","properties":{"m":{"anyOf":[{"$ref":"#/$defs/M"},{"type":"null"}],"default":null}},
			"$defs":{"M":{"type":"object","properties":{"x":{"type":"integer"}}}}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"object"`, "properties", "m", "type") // optional: null is the same as absent
			want(t, got, `"integer"`, "properties", "m", "properties", "x", "type")
			absent(t, got, "properties", "m", "anyOf")
		},
	},
	{
		name: "reference to a missing definition",
		raw:  `{"type":"object","properties":{"a":{"$ref":"#/$defs/Missing"}},"$defs":{"Other":{"type":"string"}}}`,
		warn: `"#/$defs/Missing"`,
		check: func(t *testing.T, res Result, got map[string]any) {
			absent(t, got, "properties", "a", "$ref")
			d, _ := at(got, "properties", "a", "description")
			if s, _ := d.(string); !strings.Contains(s, "#/$defs/Missing") {
				t.Errorf("description = %v, want it to mention the reference", d)
			}
		},
	},
	{
		name: "reference to a missing definition keeps its own description",
		raw:  `{"type":"object","properties":{"a":{"$ref":"#/$defs/Missing","description":"Mine"}}}`,
		warn: "#/$defs/Missing",
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"Mine"`, "properties", "a", "description")
		},
	},
	{
		name: "reference into properties (zod-to-json-schema)",
		raw:  `{"type":"object","properties":{"a":{"type":"string","maxLength":5},"b":{"$ref":"#/properties/a"},"c":{"anyOf":[{"type":"integer"},{"type":"object","properties":{"d":{"type":"boolean"}}}]},"e":{"$ref":"#/properties/c/anyOf/1"}}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"string"`, "properties", "a", "type")
			want(t, got, `"string"`, "properties", "b", "type")
			want(t, got, `5`, "properties", "b", "maxLength")
			want(t, got, `"boolean"`, "properties", "e", "properties", "d", "type")
			noRefs(t, got)
		},
	},
	{
		name: "nested $defs",
		raw:  `{"type":"object","properties":{"a":{"$defs":{"X":{"type":"string"}},"$ref":"#/properties/a/$defs/X"}}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"string"`, "properties", "a", "type")
			absent(t, got, "properties", "a", "$defs")
			absent(t, got, "properties", "a", "$ref")
		},
	},
	{
		name: "external reference",
		raw:  `{"type":"object","properties":{"a":{"$ref":"https://example.com/schemas/a.json"}}}`,
		warn: "https://example.com/schemas/a.json",
		check: func(t *testing.T, res Result, got map[string]any) {
			absent(t, got, "properties", "a", "$ref")
		},
	},
	{
		name: "additionalItems with schema items is dropped",
		raw:  `{"type":"object","properties":{"a":{"type":"array","items":{"type":"string"},"additionalItems":false}}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `{"type":"string"}`, "properties", "a", "items")
			absent(t, got, "properties", "a", "additionalItems")
		},
	},
	{
		name: "nested objects and arrays",
		raw: `{"type":"object","properties":{"order":{"type":"object","properties":{
			"lines":{"type":"array","items":{"type":"object","properties":{"sku":{"type":"string"},"qty":{"type":"integer","minimum":1}},"required":["sku"]}},
			"meta":{"type":"object","additionalProperties":{"type":"string"}}}}}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"integer"`, "properties", "order", "properties", "lines", "items", "properties", "qty", "type")
			want(t, got, `["sku"]`, "properties", "order", "properties", "lines", "items", "required")
			want(t, got, `{"type":"string"}`, "properties", "order", "properties", "meta", "additionalProperties")
		},
	},
	{
		name: "boolean subschemas",
		raw:  `{"type":"object","properties":{"any":true,"none":false,"list":{"type":"array","items":true}},"additionalProperties":false}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			// A property that accepts anything gets every type, so clients
			// that require a type keep it.
			want(t, got, anyTypes, "properties", "any", "anyOf")
			absent(t, got, "properties", "none") // no value is valid: not offered
			want(t, got, `{}`, "properties", "list", "items")
			want(t, got, `false`, "additionalProperties")
		},
	},
	{
		name: "string root",
		raw:  `{"type":"string","description":"A query"}`,
		warn: "not an object",
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"object"`, "type")
			want(t, got, `"string"`, "properties", "input", "type")
			want(t, got, `["input"]`, "required")
			want(t, got, `"A query"`, "description")
			if res.Wrapped != "input" {
				t.Errorf("Wrapped = %q, want input", res.Wrapped)
			}
		},
	},
	{
		name: "array root",
		raw:  `{"type":"array","items":{"type":"string"}}`,
		warn: "not an object",
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"object"`, "type")
			want(t, got, `{"type":"string"}`, "properties", "input", "items")
			absent(t, got, "items")
			if res.Wrapped != "input" {
				t.Errorf("Wrapped = %q, want input", res.Wrapped)
			}
		},
	},
	{
		name: "JSON that is not a schema",
		raw:  `[1,2,3]`,
		warn: "where a schema belongs",
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"object"`, "type")
			want(t, got, `true`, "additionalProperties")
		},
	},
	{
		name: "schema nested deeper than the limit",
		raw:  deepSchema(maxDepth + 10),
		warn: fmt.Sprintf("deeper than %d levels", maxDepth),
		check: func(t *testing.T, res Result, got map[string]any) {
			// Described to maxModelDepth levels below the arguments (the
			// output case below keeps maxDepth levels).
			if d := propertyDepth(got); d != maxModelDepth+1 {
				t.Errorf("the converted schema nests %d levels, want %d", d, maxModelDepth+1)
			}
		},
	},
	{
		name: "schema nested just within the limit",
		raw:  deepSchema(maxDepth - 1),
		check: func(t *testing.T, res Result, got map[string]any) {
			if d := propertyDepth(got); d != maxModelDepth+1 {
				t.Errorf("the converted schema nests %d levels, want %d", d, maxModelDepth+1)
			}
			desc, _ := at(got, strings.Split(strings.Repeat("properties/a/", maxModelDepth+1)+"description", "/")...)
			if !strings.Contains(fmt.Sprint(desc), "not described") {
				t.Errorf("the deepest described level says %q", desc)
			}
		},
	},
	{
		name: "deep nesting through combinators",
		raw:  strings.Repeat(`{"allOf":[`, 200) + `{}` + strings.Repeat(`]}`, 200),
		warn: "deeper than",
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"object"`, "type")
		},
	},
	{
		name: "invalid JSON",
		raw:  `{"type":"object","properties":`,
		warn: "not valid JSON",
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"object"`, "type")
			want(t, got, `true`, "additionalProperties")
		},
	},
	{
		name: "wrongly typed keyword",
		raw:  `{"type":"object","properties":{"a":{"type":"string","minLength":"3"}}}`,
		warn: `argument "a": its schema was dropped`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"object"`, "type")
		},
	},
	{
		name: "unknown type name",
		raw:  `{"type":"object","properties":{"a":{"type":"any"}}}`,
		warn: `argument "a": its schema was dropped`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"object"`, "type")
		},
	},
	{
		name: "combinator that is not a list",
		raw:  `{"type":"object","properties":{"a":{"anyOf":{"type":"string"}}}}`,
		warn: "anyOf is not a list",
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, anyTypes, "properties", "a", "anyOf") // dropped: a accepts anything
		},
	},
	{
		name: "properties that is not an object",
		raw:  `{"type":"object","properties":["a"]}`,
		warn: "properties is not an object",
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"object"`, "type")
		},
	},
	{
		name: "surrounding whitespace",
		raw:  " \n\t{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}}}\n ",
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"string"`, "properties", "a", "type")
		},
	},
	{
		name: "whitespace only",
		raw:  " \n ",
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"object"`, "type")
		},
	},
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func rawOf(s string) json.RawMessage {
	if s == "" {
		return nil
	}
	return json.RawMessage(s)
}

func TestInputConvertsRealWorldSchemas(t *testing.T) {
	for _, tc := range inputCases {
		t.Run(tc.name, func(t *testing.T) {
			res := Input(rawOf(tc.raw))
			if res.Schema == nil {
				t.Fatal("Schema is nil")
			}
			if !res.Schema.Type.Is(openapi3.TypeObject) {
				t.Errorf("type = %v, want object", res.Schema.Type)
			}
			switch {
			case tc.warn == "" && len(res.Warnings) > 0:
				t.Errorf("warnings = %q, want none", res.Warnings)
			case tc.warn != "" && !hasWarning(res, tc.warn):
				t.Errorf("warnings = %q, want one containing %q", res.Warnings, tc.warn)
			}
			noRefs(t, asJSON(t, res.Schema))
			if err := validateInDocument(res); err != nil {
				t.Fatalf("the result does not validate as part of an OpenAPI 3.1 document: %v", err)
			}
			if tc.check != nil {
				tc.check(t, res, asJSON(t, res.Schema))
			}
		})
	}
}

func TestInputIsDeterministic(t *testing.T) {
	for _, tc := range inputCases {
		a, b := Input(rawOf(tc.raw)), Input(rawOf(tc.raw))
		if ja, jb := mustMarshal(a.Schema), mustMarshal(b.Schema); ja != jb {
			t.Errorf("%s: two conversions differ:\n%s\n%s", tc.name, ja, jb)
		}
		if !reflect.DeepEqual(a.Warnings, b.Warnings) {
			t.Errorf("%s: warnings differ: %q vs %q", tc.name, a.Warnings, b.Warnings)
		}
	}
}

func TestInputDoesNotModifyItsArgument(t *testing.T) {
	for _, tc := range inputCases {
		raw := rawOf(tc.raw)
		before := bytes.Clone(raw)
		Input(raw)
		if !bytes.Equal(raw, before) {
			t.Errorf("%s: the raw schema changed", tc.name)
		}
	}
}

func TestInputWarningsAreNotRepeated(t *testing.T) {
	raw := `{"type":"object","properties":{"a":{"$ref":"#/$defs/X"},"b":{"$ref":"#/$defs/X"},"c":{"items":{"$ref":"#/$defs/X"}}}}`
	res := Input(json.RawMessage(raw))
	if len(res.Warnings) != 1 {
		t.Errorf("warnings = %q, want the unresolved reference once", res.Warnings)
	}
}

type outputCase struct {
	name  string
	raw   string
	warn  string
	check func(t *testing.T, res Result, got map[string]any)
}

var outputCases = []outputCase{
	{
		name: "schema nested deeper than the limit",
		raw:  deepSchema(maxDepth + 10),
		warn: fmt.Sprintf("deeper than %d levels", maxDepth),
		check: func(t *testing.T, res Result, got map[string]any) {
			if d := propertyDepth(got); d > maxDepth+1 || d < maxDepth-1 {
				t.Errorf("the converted schema nests %d levels, want about %d", d, maxDepth)
			}
		},
	},
	{
		name: "schema nested just within the limit",
		raw:  deepSchema(maxDepth - 1),
		check: func(t *testing.T, res Result, got map[string]any) {
			if d := propertyDepth(got); d != maxDepth-1 {
				t.Errorf("the converted schema nests %d levels, want %d", d, maxDepth-1)
			}
		},
	},
	{
		name: "absent schema",
		raw:  "",
		check: func(t *testing.T, res Result, got map[string]any) {
			if len(got) != 0 {
				t.Errorf("schema = %v, want {}", got)
			}
		},
	},
	{
		name: "object with definitions",
		raw: `{"type":"object","properties":{"items":{"type":"array","items":{"$ref":"#/$defs/Item"}}},"required":["items"],
			"$defs":{"Item":{"type":"object","properties":{"id":{"type":"integer"}}}}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"integer"`, "properties", "items", "items", "properties", "id", "type")
			noRefs(t, got)
		},
	},
	{
		name: "non-object output is kept",
		raw:  `{"type":"array","items":{"type":"string"}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"array"`, "type")
			want(t, got, `{"type":"string"}`, "items")
		},
	},
	{
		name: "nullable output",
		raw:  `{"type":"string","nullable":true}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `["string","null"]`, "type")
		},
	},
	{
		name: "invalid JSON",
		raw:  `{`,
		warn: "not valid JSON",
	},
}

// dialectCases are schemas of older drafts and of OpenAPI 3.0, and
// keywords OpenAPI does not know: output schemas keep what they say in
// OpenAPI 3.1's words (input schemas say it the way LLM providers take it:
// models_test.go).
var dialectCases = []inputCase{
	{
		name: "draft-04 boolean exclusive bounds",
		raw: `{"type":"object","properties":{
			"n":{"type":"number","minimum":0,"exclusiveMinimum":true},
			"m":{"type":"number","maximum":10,"exclusiveMaximum":true},
			"k":{"type":"number","minimum":1,"maximum":2,"exclusiveMinimum":false,"exclusiveMaximum":false},
			"o":{"type":"number","exclusiveMinimum":true}}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `0`, "properties", "n", "exclusiveMinimum")
			absent(t, got, "properties", "n", "minimum")
			want(t, got, `10`, "properties", "m", "exclusiveMaximum")
			absent(t, got, "properties", "m", "maximum")
			want(t, got, `1`, "properties", "k", "minimum")
			want(t, got, `2`, "properties", "k", "maximum")
			absent(t, got, "properties", "k", "exclusiveMinimum")
			absent(t, got, "properties", "k", "exclusiveMaximum")
			absent(t, got, "properties", "o", "exclusiveMinimum")
		},
	},
	{
		name: "2020-12 numeric exclusive bounds",
		raw:  `{"type":"object","properties":{"n":{"type":"number","exclusiveMinimum":0,"exclusiveMaximum":1.5}}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `0`, "properties", "n", "exclusiveMinimum")
			want(t, got, `1.5`, "properties", "n", "exclusiveMaximum")
		},
	},
	{
		name: "OpenAPI 3.0 nullable",
		raw: `{"type":"object","properties":{
			"s":{"type":"string","nullable":true},
			"l":{"type":["integer","null"],"nullable":true},
			"m":{"type":["integer","boolean"],"nullable":true},
			"f":{"type":"string","nullable":false}}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `["string","null"]`, "properties", "s", "type")
			want(t, got, `["integer","null"]`, "properties", "l", "type")
			want(t, got, `["integer","boolean","null"]`, "properties", "m", "type")
			want(t, got, `"string"`, "properties", "f", "type")
			for _, p := range []string{"s", "l", "m", "f"} {
				absent(t, got, "properties", p, "nullable")
			}
		},
	},
	{
		name: "draft-07 tuple items",
		raw: `{"type":"object","properties":{
			"closed":{"type":"array","items":[{"type":"string"},{"type":"integer"}],"additionalItems":false},
			"rest":{"type":"array","items":[{"type":"string"}],"additionalItems":{"type":"number"}},
			"open":{"type":"array","items":[{"$ref":"#/$defs/P"}]}},
			"$defs":{"P":{"type":"string"}}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `[{"type":"string"},{"type":"integer"}]`, "properties", "closed", "prefixItems")
			want(t, got, `{"not":{}}`, "properties", "closed", "items")
			absent(t, got, "properties", "closed", "additionalItems")
			want(t, got, `[{"type":"string"}]`, "properties", "rest", "prefixItems")
			want(t, got, `{"type":"number"}`, "properties", "rest", "items")
			want(t, got, `"string"`, "properties", "open", "prefixItems", "0", "type")
			// Open tuple: any further items, said explicitly for linters.
			want(t, got, `{}`, "properties", "open", "items")
		},
	},
	{
		name: "draft-07 dependencies",
		raw: `{"type":"object","properties":{"card":{"type":"string"},"billing":{"type":"string"},"name":{"type":"string"}},
			"dependencies":{"card":["billing"],"name":{"properties":{"title":{"type":"string"}},"required":["title"]}}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `{"card":["billing"]}`, "dependentRequired")
			want(t, got, `["title"]`, "dependentSchemas", "name", "required")
			absent(t, got, "dependencies")
			absent(t, got, "x-dependencies")
		},
	},
	{
		name: "unknown keywords become extensions",
		raw: `{"type":"object","markdownDescription":"**args**","x-order":1,
			"properties":{"a":{"type":"string","markdownDescription":"*a*","errorMessage":{"type":"must be text"},"example":"abc"}}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `"**args**"`, "x-markdownDescription")
			absent(t, got, "markdownDescription")
			want(t, got, `1`, "x-order")
			absent(t, got, "x-x-order")
			want(t, got, `"*a*"`, "properties", "a", "x-markdownDescription")
			want(t, got, `{"type":"must be text"}`, "properties", "a", "x-errorMessage")
		},
	},
	{
		name: "value keywords are kept",
		raw: `{"type":"object","properties":{
			"e":{"type":"string","enum":["a","b"],"format":"email","pattern":"^[a-z]+$","minLength":1,"maxLength":9,"default":"a","examples":["a","b"],"deprecated":true,"title":"E"},
			"n":{"type":"integer","minimum":1,"maximum":9,"const":3,"multipleOf":1},
			"l":{"type":"array","items":{"type":"string"},"minItems":1,"maxItems":3,"uniqueItems":true,"contains":{"const":"x"},"minContains":1,"maxContains":2},
			"o":{"type":"object","minProperties":1,"maxProperties":2,"readOnly":true},
			"w":{"type":"string","writeOnly":true,"contentMediaType":"image/png","contentEncoding":"base64"}}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			e := []struct{ lit, key string }{
				{`["a","b"]`, "enum"}, {`"email"`, "format"}, {`"^[a-z]+$"`, "pattern"}, {`1`, "minLength"},
				{`9`, "maxLength"}, {`"a"`, "default"}, {`["a","b"]`, "examples"}, {`true`, "deprecated"}, {`"E"`, "title"},
			}
			for _, k := range e {
				want(t, got, k.lit, "properties", "e", k.key)
			}
			want(t, got, `1`, "properties", "n", "minimum")
			want(t, got, `9`, "properties", "n", "maximum")
			want(t, got, `3`, "properties", "n", "const")
			want(t, got, `1`, "properties", "n", "multipleOf")
			want(t, got, `1`, "properties", "l", "minItems")
			want(t, got, `3`, "properties", "l", "maxItems")
			want(t, got, `true`, "properties", "l", "uniqueItems")
			want(t, got, `{"const":"x"}`, "properties", "l", "contains")
			want(t, got, `1`, "properties", "l", "minContains")
			want(t, got, `2`, "properties", "l", "maxContains")
			want(t, got, `1`, "properties", "o", "minProperties")
			want(t, got, `2`, "properties", "o", "maxProperties")
			want(t, got, `true`, "properties", "o", "readOnly")
			want(t, got, `true`, "properties", "w", "writeOnly")
			want(t, got, `"image/png"`, "properties", "w", "contentMediaType")
			want(t, got, `"base64"`, "properties", "w", "contentEncoding")
		},
	},
	{
		name: "2020-12 applicators are kept",
		raw: `{"type":"object","properties":{"a":{"type":"string"}},
			"patternProperties":{"^x-":{"type":"string"}},"propertyNames":{"maxLength":10},"unevaluatedProperties":false,
			"if":{"properties":{"a":{"const":"x"}}},"then":{"required":["a"]},"else":{"not":{"required":["a"]}},
			"allOf":[{"type":"object"}],"oneOf":[{"required":["a"]},{"required":["b"]}],"dependentRequired":{"a":["b"]}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `{"type":"string"}`, "patternProperties", "^x-")
			want(t, got, `{"maxLength":10}`, "propertyNames")
			want(t, got, `false`, "unevaluatedProperties")
			want(t, got, `{"const":"x"}`, "if", "properties", "a")
			want(t, got, `["a"]`, "then", "required")
			want(t, got, `["a"]`, "else", "not", "required")
			want(t, got, `[{"type":"object"}]`, "allOf")
			want(t, got, `[{"required":["a"]},{"required":["b"]}]`, "oneOf")
			want(t, got, `["b"]`, "dependentRequired", "a")
		},
	},
	{
		name: "type list",
		raw:  `{"type":"object","properties":{"v":{"type":["string","integer"]},"n":{"type":"null"}}}`,
		check: func(t *testing.T, res Result, got map[string]any) {
			want(t, got, `["string","integer"]`, "properties", "v", "type")
			want(t, got, `"null"`, "properties", "n", "type")
		},
	},
}

func TestOutputNormalizesDialects(t *testing.T) {
	for _, tc := range dialectCases {
		t.Run(tc.name, func(t *testing.T) {
			res := Output(rawOf(tc.raw))
			if len(res.Warnings) > 0 {
				t.Errorf("warnings = %q, want none", res.Warnings)
			}
			if err := validateInDocument(res); err != nil {
				t.Fatalf("the result does not validate as part of an OpenAPI 3.1 document: %v", err)
			}
			tc.check(t, res, asJSON(t, res.Schema))
		})
	}
}

func TestOutputConvertsSchemas(t *testing.T) {
	for _, tc := range outputCases {
		t.Run(tc.name, func(t *testing.T) {
			res := Output(rawOf(tc.raw))
			if res.Schema == nil {
				t.Fatal("Schema is nil")
			}
			switch {
			case tc.warn == "" && len(res.Warnings) > 0:
				t.Errorf("warnings = %q, want none", res.Warnings)
			case tc.warn != "" && !hasWarning(res, tc.warn):
				t.Errorf("warnings = %q, want one containing %q", res.Warnings, tc.warn)
			}
			if err := validateInDocument(res); err != nil {
				t.Fatalf("the result does not validate as part of an OpenAPI 3.1 document: %v", err)
			}
			if tc.check != nil {
				tc.check(t, res, asJSON(t, res.Schema))
			}
		})
	}
}

func TestOutputBooleanSchemas(t *testing.T) {
	for _, raw := range []string{"true", "false"} {
		res := Output(json.RawMessage(raw))
		if err := validateInDocument(res); err != nil {
			t.Errorf("%s: %v", raw, err)
		}
		if got := mustMarshal(res.Schema); got != raw {
			t.Errorf("Output(%s) = %s, want %s", raw, got, raw)
		}
	}
}

// The tests below describe behaviour the converter does not have yet; see
// the report that came with them.

// A root "$ref" to an object definition is how zod-to-json-schema (with a
// name), pydantic's TypeAdapter for recursive models and other generators
// describe arguments. The arguments must stay visible.
func TestInputRootRefToObjectDefinitionKeepsArguments(t *testing.T) {
	raw := `{"$ref":"#/$defs/Args","$defs":{"Args":{"type":"object","properties":{"query":{"type":"string"}},"required":["query"]}}}`
	res := Input(json.RawMessage(raw))
	if err := validateInDocument(res); err != nil {
		t.Fatalf("the result does not validate: %v", err)
	}
	if !res.Schema.Type.Is(openapi3.TypeObject) {
		t.Errorf("type = %v, want object", res.Schema.Type)
	}
	if len(res.Warnings) > 0 {
		t.Errorf("warnings = %q, want none: nothing is lost", res.Warnings)
	}
	want(t, asJSON(t, res.Schema), `"string"`, "properties", "query", "type")
	want(t, asJSON(t, res.Schema), `["query"]`, "required")
}

func TestOutputRootRefKeepsTheDefinition(t *testing.T) {
	raw := `{"$ref":"#/$defs/Result","$defs":{"Result":{"type":"object","properties":{"total":{"type":"integer"}}}}}`
	res := Output(json.RawMessage(raw))
	if err := validateInDocument(res); err != nil {
		t.Fatalf("the result does not validate: %v", err)
	}
	if len(res.Warnings) > 0 {
		t.Errorf("warnings = %q, want none", res.Warnings)
	}
	want(t, asJSON(t, res.Schema), `"integer"`, "properties", "total", "type")
}

// A $ref is a URI: in its fragment, a definition name with a space or
// other characters outside the URI syntax is percent-encoded (RFC 6901
// section 6).
func TestInputResolvesPercentEncodedRefs(t *testing.T) {
	raw := `{"type":"object","properties":{"a":{"$ref":"#/$defs/My%20Type"}},"$defs":{"My Type":{"type":"string"}}}`
	res := Input(json.RawMessage(raw))
	if err := validateInDocument(res); err != nil {
		t.Fatalf("the result does not validate: %v", err)
	}
	want(t, asJSON(t, res.Schema), `"string"`, "properties", "a", "type")
	if len(res.Warnings) > 0 {
		t.Errorf("warnings = %q, want none", res.Warnings)
	}
}

// `{}` accepts anything, exactly like `true`: nothing is lost by serving it
// as a free-form object, so it must not add a warning (which ends up in the
// tool's description as "could not be rendered exactly").
func TestInputEmptySchemaIsPermissiveWithoutWarning(t *testing.T) {
	res := Input(json.RawMessage(`{}`))
	if err := validateInDocument(res); err != nil {
		t.Fatalf("the result does not validate: %v", err)
	}
	if !res.Schema.Type.Is(openapi3.TypeObject) {
		t.Errorf("type = %v, want object", res.Schema.Type)
	}
	if len(res.Warnings) > 0 {
		t.Errorf("warnings = %q, want none, as for `true`", res.Warnings)
	}
}

// One keyword that kin-openapi rejects must not cost a tool all of its
// documented arguments: JSON Schema patterns are ECMA-262 (lookahead is
// fine there), and servers do send defaults that do not match the type or
// repeat a required name.
func TestInputKeepsArgumentsWhenOneKeywordIsRejected(t *testing.T) {
	for _, tc := range []struct{ name, raw string }{
		{"ECMA-262 lookahead pattern", `{"type":"object","properties":{"a":{"type":"string"},"pw":{"type":"string","pattern":"^(?=.*[0-9]).{8,}$"}}}`},
		{"default of the wrong type", `{"type":"object","properties":{"a":{"type":"string"},"n":{"type":"integer","default":"5"}}}`},
		{"required name repeated", `{"type":"object","properties":{"a":{"type":"string"}},"required":["a","a"]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := Input(json.RawMessage(tc.raw))
			if err := validateInDocument(res); err != nil {
				t.Fatalf("the result does not validate: %v", err)
			}
			got := asJSON(t, res.Schema)
			if _, ok := at(got, "properties", "a", "type"); !ok {
				t.Errorf("argument \"a\" is lost: schema %s (warnings %q)", mustMarshal(got), res.Warnings)
			}
			if len(res.Warnings) == 0 {
				t.Error("no warning, want one saying what was dropped")
			}
		})
	}
}

var converters = []struct {
	name string
	conv func(json.RawMessage) Result
}{{"Input", Input}, {"Output", Output}}

// convertSafely runs conv, turning a panic into an error.
func convertSafely(conv func(json.RawMessage) Result, raw string) (res Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return conv(json.RawMessage(raw)), nil
}

// noRefs fails if a converted schema still holds a reference anywhere.
func noRefs(t *testing.T, v any) {
	t.Helper()
	if s := mustMarshal(v); strings.Contains(s, `"$ref"`) || strings.Contains(s, `"$defs"`) {
		t.Errorf("the converted schema holds references: %s", s)
	}
}

// A null where a schema belongs is garbage, but garbage from one server
// must cost at most that tool's schema, never a panic (which takes every
// request to the server down with it, since the document is built on
// demand).
func TestInputNullSubschemaDoesNotPanic(t *testing.T) {
	for _, raw := range []string{
		`{"type":"object","properties":{"a":null}}`,
		`{"type":"object","properties":{"a":{"type":"string"},"b":{"anyOf":[{"type":"string"},null]}}}`,
		`{"type":"object","allOf":[null]}`,
		`{"type":"object","oneOf":[null]}`,
		`{"type":"object","patternProperties":{"^x":null}}`,
		`{"type":"object","dependentSchemas":{"a":null}}`,
		`{"type":"object","dependencies":{"a":null}}`,
		`{"type":"object","properties":{"t":{"type":"array","items":[null]}}}`,
		`{"type":"object","properties":{"t":{"type":"array","prefixItems":[null]}}}`,
		`{"type":"object","properties":{"a":{"$ref":"#/$defs/A"}},"$defs":{"A":{"properties":{"x":null}}}}`,
	} {
		for _, c := range converters {
			name, conv := c.name, c.conv
			res, err := convertSafely(conv, raw)
			if err != nil {
				t.Errorf("%s(%s): %v", name, raw, err)
				continue
			}
			if err := validateInDocument(res); err != nil {
				t.Errorf("%s(%s): %v", name, raw, err)
			}
		}
	}
}

// Keywords next to a $ref are merged with the referenced schema when the
// document is loaded, so they must be checked like any other keyword:
// otherwise the served document does not load.
func TestInputRefSiblingsNeverMakeAnInvalidDocument(t *testing.T) {
	for _, tc := range []struct{ name, raw string }{
		{"default outside the referenced enum", `{"type":"object","properties":{"unit":{"$ref":"#/$defs/Unit","default":"kelvin"}},
			"$defs":{"Unit":{"type":"string","enum":["celsius","fahrenheit"]}}}`},
		{"wrongly typed keyword", `{"type":"object","properties":{"name":{"$ref":"#/$defs/Name","minLength":"3"}},"$defs":{"Name":{"type":"string"}}}`},
		{"null in a combinator", `{"type":"object","properties":{"name":{"$ref":"#/$defs/Name","anyOf":[null]}},"$defs":{"Name":{"type":"string"}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, c := range converters {
				name, conv := c.name, c.conv
				res, err := convertSafely(conv, tc.raw)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				if err := validateInDocument(res); err != nil {
					t.Errorf("%s: %v", name, err)
				}
			}
		})
	}
}

// FuzzInput checks that no input schema can break a document: Input never
// panics, always yields an object schema, and the result always validates
// as part of an OpenAPI 3.1 document. Without -fuzz it runs the seeds only.
func FuzzInput(f *testing.F) {
	for _, tc := range inputCases {
		f.Add(tc.raw, `{}`)
	}
	for _, tc := range outputCases {
		f.Add(tc.raw, `{}`)
	}
	for _, s := range []string{
		`null`, `1`, `"x"`, `{"$ref":"#"}`, `{"$ref":"#/$defs/A","$defs":{"A":{"$ref":"#/$defs/A"}}}`,
		`{"type":"object","properties":{"a":{"$ref":5}}}`, `{"$defs":[]}`, `{"$defs":{"A":null}}`,
		`{"type":"object","properties":{"a":{"items":[true,false]}}}`, `{"type":"object","dependencies":{"a":"b"}}`,
		`{"type":"object","properties":{"a":{"type":"string","pattern":"("}}}`,
		`{"type":"object","properties":{"a":{"exclusiveMinimum":true,"minimum":"x"}}}`,
		`{"type":"object","required":[1]}`, `{"type":"object","properties":{"":{}},"$defs":{"":{}}}`,
		`{"type":["object","null"],"nullable":true}`, `{"type":"object","x-":1,"":2}`,
		`{"type":"object","properties":{"a":{"$ref":"#/$defs/a b"}},"$defs":{"a b":null,"a_b":{"type":"string"}}}`,
	} {
		f.Add(s, `{"a":"1","b":null}`)
	}
	// Every hard schema and every schema captured from a real server, with
	// its sample arguments.
	for _, h := range fixture.HardSchemas {
		f.Add(h.Schema, h.Sample)
	}
	for _, server := range fixture.CapturedServers() {
		for _, raw := range fixture.InputSchemas(fixture.Options{Captured: server}) {
			sample, err := fixture.SampleArguments(raw)
			if err != nil {
				sample = json.RawMessage(`{}`)
			}
			f.Add(string(raw), string(sample))
		}
	}
	f.Fuzz(func(t *testing.T, raw, args string) {
		res, err := convertSafely(Input, raw)
		if err != nil {
			t.Fatalf("Input(%q): %v", raw, err)
		}
		if res.Schema == nil {
			t.Fatal("nil schema")
		}
		if !res.Schema.Type.Is(openapi3.TypeObject) {
			t.Fatalf("Input(%q): type = %v, want object", raw, res.Schema.Type)
		}
		if err := validateInDocument(res); err != nil {
			t.Fatalf("Input(%q): %v", raw, err)
		}
		// Inlining may repeat definitions, within bounds.
		if size, bound := len(mustMarshal(res.Schema)), maxNodes*(len(raw)+256); size > bound {
			t.Fatalf("Input(%q): %d bytes of schema from %d bytes", raw, size, len(raw))
		}
		out, err := convertSafely(Output, raw)
		if err != nil {
			t.Fatalf("Output(%q): %v", raw, err)
		}
		if err := validateInDocument(out); err != nil {
			t.Fatalf("Output(%q): %v", raw, err)
		}
		v, err := NewValidator(json.RawMessage(raw))
		if err != nil || !json.Valid([]byte(args)) {
			return
		}
		errs := v.Validate(json.RawMessage(args))
		if len(errs) > maxArgumentErrors {
			t.Fatalf("%d argument errors, more than the bound", len(errs))
		}
		if errs != nil {
			if coerced, ok := v.Coerce(json.RawMessage(args)); ok && v.Validate(coerced) != nil {
				t.Fatalf("Coerce(%s) = %s, which does not validate", args, coerced)
			}
		}
	})
}

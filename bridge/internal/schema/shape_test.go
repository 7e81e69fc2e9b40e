package schema

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestInput_FlattensRootUnionsOfObjects(t *testing.T) {
	tests := []struct {
		name     string
		raw      string
		props    []string
		required string // JSON, "" for none
		note     string
	}{
		{
			name: "anyOf: union of the arguments, required by every branch",
			raw: `{"anyOf":[{"type":"object","properties":{"id":{"type":"integer"},"scope":{"type":"string"}},"required":["id","scope"]},
				{"type":"object","properties":{"name":{"type":"string"},"scope":{"type":"string"}},"required":["name","scope"]}]}`,
			props: []string{"id", "name", "scope"}, required: `["scope"]`, note: "one or more of these shapes: (id, scope) or (name, scope)",
		},
		{
			name: "oneOf with const discriminators: the differing schemas are combined",
			raw: `{"oneOf":[{"type":"object","properties":{"kind":{"const":"a"},"x":{"type":"integer"}},"required":["kind"]},
				{"type":"object","properties":{"kind":{"const":"b"},"y":{"type":"string"}},"required":["kind"]}]}`,
			props: []string{"kind", "x", "y"}, required: `["kind"]`, note: "exactly one",
		},
		{
			name: "allOf (pydantic v1 style): every branch's requirements hold",
			raw: `{"allOf":[{"$ref":"#/$defs/Base"},{"type":"object","properties":{"extra":{"type":"boolean"}},"required":["extra"]}],
				"$defs":{"Base":{"type":"object","properties":{"id":{"type":"integer"}},"required":["id"]}}}`,
			props: []string{"extra", "id"}, required: `["id","extra"]`,
		},
		{
			name:  "root properties next to a union are kept",
			raw:   `{"type":"object","properties":{"common":{"type":"string"}},"required":["common"],"anyOf":[{"properties":{"a":{"type":"string"}}},{"properties":{"b":{"type":"string"}}}]}`,
			props: []string{"a", "b", "common"}, required: `["common"]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Input(json.RawMessage(tt.raw))
			if err := validateInDocument(res); err != nil {
				t.Fatal(err)
			}
			got := asJSON(t, res.Schema)
			want(t, got, `"object"`, "type")
			for _, kw := range []string{"anyOf", "oneOf", "allOf"} {
				absent(t, got, kw)
			}
			props, _ := got["properties"].(map[string]any)
			if keys := sortedKeys(props); !slices.Equal(keys, tt.props) {
				t.Errorf("properties = %q, want %q", keys, tt.props)
			}
			if tt.required != "" {
				want(t, got, tt.required, "required")
			} else {
				absent(t, got, "required")
			}
			if tt.note != "" && !strings.Contains(res.Schema.Description, tt.note) {
				t.Errorf("description = %q, want it to say %q", res.Schema.Description, tt.note)
			}
		})
	}
}

func TestInput_ConflictingBranchSchemasBecomeAnAnyOf(t *testing.T) {
	res := Input(json.RawMessage(`{"anyOf":[{"type":"object","properties":{"v":{"type":"integer"}}},{"type":"object","properties":{"v":{"type":"string"}}}]}`))
	want(t, asJSON(t, res.Schema), `[{"type":"integer"},{"type":"string"}]`, "properties", "v", "anyOf")
}

func TestInput_AUnionWithANonObjectBranchIsWrapped(t *testing.T) {
	res := Input(json.RawMessage(`{"anyOf":[{"type":"object","properties":{"a":{"type":"string"}}},{"type":"string"}]}`))
	if res.Wrapped != WrapProperty {
		t.Fatalf("Wrapped = %q, want %q", res.Wrapped, WrapProperty)
	}
	want(t, asJSON(t, res.Schema), `[{"properties":{"a":{"type":"string"}},"type":"object"},{"type":"string"}]`, "properties", "input", "anyOf")
}

func TestInput_ANullableObjectRootIsAnObject(t *testing.T) {
	res := Input(json.RawMessage(`{"type":["object","null"],"properties":{"a":{"type":"string"}}}`))
	if res.Wrapped != "" || len(res.Warnings) > 0 {
		t.Fatalf("Wrapped = %q, warnings %q", res.Wrapped, res.Warnings)
	}
	want(t, asJSON(t, res.Schema), `"object"`, "type")
}

func TestInput_RenamesArgumentsLLMProvidersRefuse(t *testing.T) {
	long := strings.Repeat("x", 70)
	raw := `{"type":"object","properties":{"user-id":{"type":"integer"},"spaced name":{"type":"string"},"ünïcode":{},
		"$dollar":{},"9lives":{},"_private":{},"model_config":{},"` + long + `":{},"user_id":{"type":"string"}},
		"required":["user-id","model_config"]}`
	res := Input(json.RawMessage(raw))
	if err := validateInDocument(res); err != nil {
		t.Fatal(err)
	}
	got := asJSON(t, res.Schema)
	props, _ := got["properties"].(map[string]any)
	wire := map[string]string{} // documented name → wire name
	for name, p := range props {
		if !validArgumentName.MatchString(name) {
			t.Errorf("argument %q is still not a valid name", name)
		}
		for k := range p.(map[string]any) {
			if strings.HasPrefix(k, "x-") {
				t.Errorf("argument %q: its schema has the extension %s, which LLM providers refuse", name, k)
			}
		}
		w := name
		if renamed, ok := res.Renames[name]; ok {
			w = renamed
		}
		wire[name] = w
	}
	var wires []string
	for _, w := range wire {
		wires = append(wires, w)
	}
	slices.Sort(wires)
	wantWires := []string{"$dollar", "9lives", "_private", "model_config", "spaced name", "user-id", "user_id", long, "ünïcode"}
	slices.Sort(wantWires)
	if !slices.Equal(wires, wantWires) {
		t.Errorf("wire names = %q, want every original argument once: %q", wires, wantWires)
	}
	// Valid names are left alone, and the first comer keeps the plain form.
	for _, kept := range []string{"_private", "model_config", "user_id"} {
		if wire[kept] != kept {
			t.Errorf("%q was renamed", kept)
		}
	}
	if wire["spaced_name"] != "spaced name" {
		t.Errorf("\"spaced name\" did not become spaced_name: %v", wire)
	}
	req, _ := got["required"].([]any)
	for _, r := range req {
		if _, ok := props[r.(string)]; !ok {
			t.Errorf("required %q is not a documented argument", r)
		}
	}
	if len(req) != 2 {
		t.Errorf("required = %v", req)
	}
}

func TestInput_RequiredArgumentsWithoutSchemaAreOffered(t *testing.T) {
	res := Input(json.RawMessage(`{"type":"object","properties":{"a":{"type":"string"}},"required":["a","b"]}`))
	got := asJSON(t, res.Schema)
	if _, ok := at(got, "properties", "b"); !ok {
		t.Errorf("required argument b has no property: %s", mustMarshal(got))
	}
}

func TestInput_EveryArgumentGetsAType(t *testing.T) {
	res := Input(json.RawMessage(`{"type":"object","properties":{
		"free":{},"yes":true,"no":false,"colors":{"enum":["red","green"]},"mixed":{"enum":["a",1,null]},
		"one":{"const":3},"obj":{"properties":{"inner":{"description":"anything"}}},"list":{"items":{"type":"string"}},
		"text":{"minLength":1},"num":{"minimum":0},"union":{"anyOf":[{"type":"string"},{"type":"integer"}]}}}`))
	if err := validateInDocument(res); err != nil {
		t.Fatal(err)
	}
	got := asJSON(t, res.Schema)
	for prop, typ := range map[string]string{
		"colors": `"string"`, "one": `"integer"`, "obj": `"object"`, "list": `"array"`, "text": `"string"`, "num": `"number"`,
	} {
		want(t, got, typ, "properties", prop, "type")
	}
	// Several types are an anyOf of single types; null is left out of
	// optional arguments.
	for _, prop := range []string{"free", "yes"} {
		want(t, got, anyTypes, "properties", prop, "anyOf")
	}
	want(t, got, `[{"type":"integer"},{"type":"string"}]`, "properties", "mixed", "anyOf")
	want(t, got, `"One of: \"a\", 1, null."`, "properties", "mixed", "description")
	want(t, got, anyTypes, "properties", "obj", "properties", "inner", "anyOf")
	absent(t, got, "properties", "no") // no value is valid: not offered
	absent(t, got, "properties", "union", "type")
}

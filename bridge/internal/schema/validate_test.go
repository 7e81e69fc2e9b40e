package schema

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustValidator(t *testing.T, raw string) *Validator {
	t.Helper()
	v, err := NewValidator(json.RawMessage(raw))
	if err != nil {
		t.Fatalf("NewValidator(%s): %v", raw, err)
	}
	return v
}

func TestValidator_ReportsEachProblemWithItsPath(t *testing.T) {
	v := mustValidator(t, `{"type":"object","properties":{
		"n":{"type":"integer","minimum":1},
		"tags":{"type":"array","items":{"type":"string"}},
		"mode":{"enum":["fast","slow"]},
		"nested":{"type":"object","properties":{"a~b/c":{"type":"boolean"}}}},
		"required":["n"],"additionalProperties":false}`)
	tests := []struct {
		name, args string
		paths      []string
		says       string
	}{
		{"valid", `{"n":1,"tags":["a"],"mode":"fast","nested":{"a~b/c":true}}`, nil, ""},
		{"missing required", `{}`, []string{""}, "missing property 'n'"},
		{"wrong type", `{"n":"1"}`, []string{"/n"}, "want integer"},
		{"below the minimum", `{"n":0}`, []string{"/n"}, "minimum"},
		{"array item", `{"n":1,"tags":["a",2]}`, []string{"/tags/1"}, "want string"},
		{"enum", `{"n":1,"mode":"medium"}`, []string{"/mode"}, "fast"},
		{"escaped pointer", `{"n":1,"nested":{"a~b/c":"yes"}}`, []string{"/nested/a~0b~1c"}, "want boolean"},
		{"additional property", `{"n":1,"x":1}`, []string{""}, "additional"},
		{"several at once", `{"n":"x","tags":[1]}`, []string{"/n", "/tags/0"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := v.Validate(json.RawMessage(tt.args))
			if len(errs) != len(tt.paths) {
				t.Fatalf("errors = %+v, want %d at %q", errs, len(tt.paths), tt.paths)
			}
			for i, p := range tt.paths {
				if errs[i].Path != p {
					t.Errorf("error %d at %q, want %q", i, errs[i].Path, p)
				}
			}
			if tt.says != "" && !strings.Contains(errs[0].Message, tt.says) {
				t.Errorf("message %q does not say %q", errs[0].Message, tt.says)
			}
		})
	}
}

func TestValidator_HonoursTheSchemasDraft(t *testing.T) {
	// Draft-04 boolean exclusiveMinimum: 0 is excluded.
	v := mustValidator(t, `{"$schema":"http://json-schema.org/draft-04/schema#","type":"object",
		"properties":{"n":{"type":"number","minimum":0,"exclusiveMinimum":true}}}`)
	if errs := v.Validate(json.RawMessage(`{"n":0}`)); len(errs) == 0 {
		t.Error("draft-04: 0 passed an exclusive minimum of 0")
	}
	if errs := v.Validate(json.RawMessage(`{"n":0.5}`)); errs != nil {
		t.Errorf("draft-04: 0.5 failed: %+v", errs)
	}
	// Draft-07 dependencies.
	v = mustValidator(t, `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","dependencies":{"a":["b"]}}`)
	if errs := v.Validate(json.RawMessage(`{"a":1}`)); len(errs) == 0 {
		t.Error("draft-07: dependencies not enforced")
	}
}

func TestValidator_ResolvesReferencesInsideTheSchema(t *testing.T) {
	v := mustValidator(t, `{"type":"object","properties":{"a":{"$ref":"#/$defs/A"},"b":{"$ref":"#/properties/a"}},
		"$defs":{"A":{"type":"string","maxLength":2}}}`)
	if errs := v.Validate(json.RawMessage(`{"a":"ok","b":"too long"}`)); len(errs) != 1 || errs[0].Path != "/b" {
		t.Errorf("errors = %+v, want one at /b", errs)
	}
}

func TestValidator_NeverLoadsAnythingFromOutside(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "schema.json")
	if err := os.WriteFile(secret, []byte(`{"type":"string"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"file://" + secret, "https://example.com/schema.json", "other.json"} {
		_, err := NewValidator(json.RawMessage(`{"type":"object","properties":{"a":{"$ref":"` + ref + `"}}}`))
		if err == nil {
			t.Errorf("a schema referring to %s compiled: its target was loaded", ref)
		}
	}
}

func TestValidator_DoesNotEnforcePatternsGoCannotCompile(t *testing.T) {
	v := mustValidator(t, `{"type":"object","properties":{"pw":{"type":"string","pattern":"^(?=.*[0-9]).{8,}$"},"id":{"type":"string","pattern":"^[a-z]+$"}}}`)
	if len(v.Warnings) != 1 || !strings.Contains(v.Warnings[0], "not checked") {
		t.Errorf("warnings = %q, want one about the lookahead pattern", v.Warnings)
	}
	if errs := v.Validate(json.RawMessage(`{"pw":"short","id":"abc"}`)); errs != nil {
		t.Errorf("errors = %+v, want none: the lookahead pattern is not enforced", errs)
	}
	if errs := v.Validate(json.RawMessage(`{"id":"ABC"}`)); len(errs) != 1 {
		t.Errorf("errors = %+v, want the Go-compatible pattern enforced", errs)
	}
}

func TestValidator_RejectsInvalidSchemas(t *testing.T) {
	for _, raw := range []string{`{`, `{"type":"object","properties":{"a":{"type":"nonsense"}}}`, `{"minimum":"x"}`} {
		if _, err := NewValidator(json.RawMessage(raw)); err == nil {
			t.Errorf("NewValidator(%s) succeeded", raw)
		}
	}
}

func TestValidator_CoerceFixesWhatLLMsGetWrong(t *testing.T) {
	v := mustValidator(t, `{"type":"object","properties":{
		"n":{"type":"integer"},"x":{"type":"number"},"b":{"type":"boolean"},"s":{"type":"string"},
		"opt":{"type":"string"},"list":{"type":"array","items":{"type":"integer"}},
		"deep":{"type":"object","properties":{"k":{"type":"integer"}}},
		"either":{"type":["integer","null"]}},"required":["n"]}`)
	tests := []struct {
		name, args, want string
		ok               bool
	}{
		{"strings holding numbers and booleans", `{"n":"7","x":" 2.50 ","b":"true"}`, `{"b":true,"n":7,"x":2.50}`, true},
		{"null for an argument that takes none", `{"n":1,"opt":null}`, `{"n":1}`, true},
		{"nested and in lists", `{"n":1,"list":["1",2],"deep":{"k":"3"}}`, `{"deep":{"k":3},"list":[1,2],"n":1}`, true},
		{"null where null is allowed stays", `{"n":1,"either":null}`, ``, true},
		{"a string that is not a number", `{"n":"seven"}`, ``, false},
		{"a required argument given as null", `{"n":null}`, ``, false},
		{"strings stay strings", `{"n":1,"s":"7"}`, ``, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if errs := v.Validate(json.RawMessage(tt.args)); errs == nil {
				if tt.want != "" {
					t.Fatalf("%s is already valid", tt.args)
				}
				return
			}
			got, ok := v.Coerce(json.RawMessage(tt.args))
			if ok != tt.ok {
				t.Fatalf("Coerce(%s) = %s, %v; want ok %v", tt.args, got, ok, tt.ok)
			}
			if ok && string(got) != tt.want {
				t.Errorf("Coerce(%s) = %s, want %s", tt.args, got, tt.want)
			}
		})
	}
}

func TestSummary_NamesTheFirstProblemsAndCountsTheRest(t *testing.T) {
	errs := []ArgumentError{{"/a", "want integer"}, {"", "missing property 'b'"}, {"/c", "x"}, {"/d", "y"}, {"/e", "z"}}
	got := Summary(errs)
	for _, want := range []string{"/a: want integer", "the arguments: missing property 'b'", "/c: x", "(and 2 more)"} {
		if !strings.Contains(got, want) {
			t.Errorf("Summary = %q, want it to contain %q", got, want)
		}
	}
}

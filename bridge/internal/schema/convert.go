package schema

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// Result is a converted schema.
type Result struct {
	// Schema is the converted schema; it holds no reference.
	Schema *openapi3.Schema
	// Warnings says what could not be kept, for logs and descriptions.
	Warnings []string
	// Renames maps documented argument names to wire names, for top-level
	// arguments whose wire names LLM providers refuse (input schemas only).
	Renames map[string]string
	// Wrapped is the argument a non-object input is wrapped in; "" when the
	// input is an object (input schemas only).
	Wrapped string
	// JSON is Schema as a document holds it, and TitleKeys the keys of its
	// titles (see TitleKeys): what a document needs of it, encoded once.
	// Input and Output set them; a Result made otherwise has none.
	JSON      []byte
	TitleKeys []string
}

// ComponentsPrefix is where the document's named schemas live.
const ComponentsPrefix = "#/components/schemas/"

// Input converts a tool's input schema into the schema of a JSON request
// body: a flat object whose properties are the tool's arguments.
func Input(raw json.RawMessage) Result {
	if len(bytes.TrimSpace(raw)) == 0 {
		return encoded(Result{Schema: &openapi3.Schema{Type: &openapi3.Types{openapi3.TypeObject}, Properties: openapi3.Schemas{}}}, true)
	}
	return encoded(convert(raw, true), true)
}

// Output converts a tool's output schema (any JSON Schema).
func Output(raw json.RawMessage) Result {
	if len(bytes.TrimSpace(raw)) == 0 {
		return encoded(Result{Schema: &openapi3.Schema{}}, false)
	}
	return encoded(convert(raw, false), false)
}

// Encode returns s as a document holds it, and the keys of its titles.
func Encode(s *openapi3.Schema) ([]byte, []string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, nil, err
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, nil, err
	}
	return b, TitleKeys(v), nil
}

// encoded is res with its JSON set. A schema that cannot be encoded (no
// loaded schema is expected to be) is lost like one that cannot be
// converted.
func encoded(res Result, input bool) Result {
	var err error
	if res.JSON, res.TitleKeys, err = Encode(res.Schema); err == nil {
		return res
	}
	warnings := append(slices.Clone(res.Warnings), fmt.Sprintf("the schema could not be encoded (%v)", err))
	fb := fallback(input, warnings)
	fb.Wrapped = res.Wrapped
	fb.JSON, fb.TitleKeys, _ = Encode(fb.Schema)
	return fb
}

// converter holds one conversion's warnings.
type converter struct {
	warnings []string
	notes    []string
}

func (c *converter) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	for _, w := range c.warnings {
		if w == msg {
			return
		}
	}
	c.warnings = append(c.warnings, msg)
}

// convert runs the pipeline: decode, inline references, normalize, shape
// the input, and load the result the way clients load the document.
func convert(raw json.RawMessage, input bool) (res Result) {
	c := &converter{}
	defer func() {
		if r := recover(); r != nil { // kin-openapi on input nobody foresaw
			c.warn("the schema could not be converted (%v)", r)
			res = fallback(input, c.warnings)
		}
	}()
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		c.warn("the schema is not valid JSON (%v)", err)
		return fallback(input, c.warnings)
	}
	v = newInliner(v, c.warn).inline(v, 0)
	v = (&normalizer{warn: c.warn}).normalize(v, 0)
	if input {
		sh := &shaper{warn: c.warn, note: func(s string) { c.notes = append(c.notes, s) }}
		root, wrapped := sh.shape(v)
		res.Wrapped = wrapped
		res.Renames = renameArguments(root)
		if len(c.notes) > 0 {
			desc, _ := root["description"].(string)
			root["description"] = strings.TrimSpace(desc + "\n\n" + strings.Join(c.notes, " "))
		}
		v = forModels(root)
	}
	s, err := c.loadKeeping(v)
	if err != nil {
		c.warn("the schema is not valid in OpenAPI 3.1 (%v)", err)
		fb := fallback(input, c.warnings)
		fb.Wrapped = res.Wrapped // still what the server expects
		return fb
	}
	if input && s.Properties == nil {
		s.Properties = openapi3.Schemas{} // an object with no arguments, explicitly
	}
	res.Schema = s
	res.Warnings = c.warnings
	return res
}

// fallback is what a schema that could not be converted becomes.
func fallback(input bool, warnings []string) Result {
	if !input {
		return Result{Schema: &openapi3.Schema{}, Warnings: warnings}
	}
	return Result{Schema: &openapi3.Schema{
		Type:                 &openapi3.Types{openapi3.TypeObject},
		Properties:           openapi3.Schemas{},
		AdditionalProperties: openapi3.AdditionalProperties{Has: ptr(true)},
	}, Warnings: warnings}
}

func ptr[T any](v T) *T { return &v }

// loadKeeping loads the schema v the way a client loads the document. If it
// fails, each top-level property is tried alone: a failing one loses its
// default and examples (which kin-openapi checks against it), or else its
// schema, and the others are kept.
func (c *converter) loadKeeping(v any) (*openapi3.Schema, error) {
	s, err := load(v)
	if err == nil {
		return s, nil
	}
	root, _ := v.(map[string]any)
	props, _ := root["properties"].(map[string]any)
	if len(props) == 0 {
		return nil, err
	}
	for _, name := range sortedKeys(props) {
		one := overlay(root, map[string]any{"properties": map[string]any{name: props[name]}})
		delete(one, "required")
		_, perr := load(one)
		if perr == nil {
			continue
		}
		if p, ok := props[name].(map[string]any); ok {
			bare := withoutAnnotations(p)
			one["properties"] = map[string]any{name: bare}
			if _, err := load(one); err == nil {
				props[name] = bare
				c.warn("argument %q: its default and examples were dropped (%v)", name, perr)
				continue
			}
		}
		props[name] = map[string]any{}
		c.warn("argument %q: its schema was dropped, so it accepts anything (%v)", name, perr)
	}
	return load(root)
}

// load validates a schema inside a minimal OpenAPI 3.1 document and returns
// it as kin-openapi loaded it.
func load(v any) (*openapi3.Schema, error) {
	const name = "S"
	b, err := json.Marshal(map[string]any{
		"openapi":    "3.1.0",
		"info":       map[string]any{"title": "schema", "version": "0"},
		"paths":      map[string]any{},
		"components": map[string]any{"schemas": map[string]any{name: v}},
	})
	if err != nil {
		return nil, err
	}
	doc, err := openapi3.NewLoader().LoadFromData(b) // external references stay disallowed
	if err != nil {
		return nil, err
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, err
	}
	ref := doc.Components.Schemas[name]
	if ref == nil || ref.Value == nil {
		return nil, fmt.Errorf("the schema did not load")
	}
	return ref.Value, nil
}

// withoutAnnotations returns schema without the keywords that only
// illustrate it (default, examples), which kin-openapi checks against it.
func withoutAnnotations(schema map[string]any) map[string]any {
	c := make(map[string]any, len(schema))
	for k, v := range schema {
		switch k {
		case "default", "examples", "example":
		default:
			c[k] = v
		}
	}
	return c
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Package schema turns the JSON Schemas of MCP tools, as servers emit them
// (drafts 07 to 2020-12), into OpenAPI 3.1 schemas: definitions are hoisted
// into components and every reference is rewritten to point there, dialect
// drift is normalized, and keywords OpenAPI cannot hold become extensions.
// A schema that cannot be converted yields a permissive schema and a warning,
// never an error that would cost the other tools their documentation.
package schema

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// Result is a converted schema.
type Result struct {
	// Schema is the converted schema. Its references point into Components.
	Schema *openapi3.Schema
	// Components holds the definitions hoisted out of the schema, keyed by
	// their component name (already prefixed, so unique per tool).
	Components map[string]*openapi3.Schema
	// Warnings says what could not be kept, for logs and descriptions.
	Warnings []string
}

// ComponentsPrefix is where hoisted definitions live in the document.
const ComponentsPrefix = "#/components/schemas/"

// Input converts a tool's input schema into the schema of a JSON request
// body: always an object, so that clients which only read top-level
// properties (Open WebUI) see the arguments. prefix names the hoisted
// definitions; it must be unique per tool.
func Input(raw json.RawMessage, prefix string) Result {
	if len(bytes.TrimSpace(raw)) == 0 {
		return Result{Schema: emptyObject()}
	}
	res := convert(raw, prefix)
	if res.Schema.Always != nil {
		// true accepts anything; false would make the tool uncallable, which
		// the server will say better than the document.
		res.Schema = permissiveObject("")
		return res
	}
	s := res.Schema
	if s.Type == nil && len(s.Properties) > 0 {
		s.Type = &openapi3.Types{openapi3.TypeObject}
	}
	if s.Type == nil || !s.Type.Is(openapi3.TypeObject) {
		res.Warnings = append(res.Warnings, "the input schema is not a plain object schema; arguments are accepted as a free-form object")
		res.Schema = permissiveObject(s.Description)
		return res
	}
	if s.Properties == nil {
		s.Properties = openapi3.Schemas{}
	}
	return res
}

// Output converts a tool's output schema (any JSON Schema).
func Output(raw json.RawMessage, prefix string) Result {
	if len(bytes.TrimSpace(raw)) == 0 {
		return Result{Schema: &openapi3.Schema{}}
	}
	return convert(raw, prefix)
}

func emptyObject() *openapi3.Schema {
	return &openapi3.Schema{Type: &openapi3.Types{openapi3.TypeObject}, Properties: openapi3.Schemas{}}
}

func permissiveObject(description string) *openapi3.Schema {
	s := emptyObject()
	s.Description = description
	s.AdditionalProperties = openapi3.AdditionalProperties{Has: ptr(true)}
	return s
}

func ptr[T any](v T) *T { return &v }

// convert normalizes raw and decodes it into kin-openapi types, falling back
// to a permissive schema when the result is not valid OpenAPI 3.1.
func convert(raw json.RawMessage, prefix string) Result {
	res := Result{Components: map[string]*openapi3.Schema{}}
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		res.Warnings = append(res.Warnings, fmt.Sprintf("the schema is not valid JSON (%v)", err))
		res.Schema = &openapi3.Schema{}
		return res
	}
	c := &converter{prefix: prefix, refs: map[string]string{}}
	root, isMap := v.(map[string]any)
	if isMap {
		c.hoist(root, "$defs")
		c.hoist(root, "definitions")
	}
	out := c.walk(v, 0)
	defs := map[string]any{}
	for name, d := range c.defs {
		defs[name] = c.walk(d, 1)
	}
	res.Warnings = append(res.Warnings, c.warnings...)

	s, err := decode(out)
	if err != nil {
		res.Warnings = append(res.Warnings, fmt.Sprintf("the schema could not be converted (%v)", err))
		res.Schema = &openapi3.Schema{}
		return res
	}
	for name, d := range defs {
		ds, err := decode(d)
		if err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("definition %q could not be converted (%v)", name, err))
			ds = &openapi3.Schema{}
		}
		res.Components[name] = ds
	}
	res.Schema = s
	resolve(s, res.Components)
	for _, d := range res.Components {
		resolve(d, res.Components)
	}
	ctx := context.Background()
	if err := s.Validate(ctx, openapi3.IsOpenAPI31OrLater()); err != nil {
		res.Warnings = append(res.Warnings, fmt.Sprintf("the schema is not valid in OpenAPI 3.1 (%v)", err))
		return Result{Schema: &openapi3.Schema{}, Warnings: res.Warnings}
	}
	for name, d := range res.Components {
		if err := d.Validate(ctx, openapi3.IsOpenAPI31OrLater()); err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("definition %q is not valid in OpenAPI 3.1 (%v)", name, err))
			return Result{Schema: &openapi3.Schema{}, Warnings: res.Warnings}
		}
	}
	return res
}

func decode(v any) (*openapi3.Schema, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	s := &openapi3.Schema{}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, err
	}
	return s, nil
}

// maxDepth bounds how deep a schema may nest before the rest is replaced by
// a permissive schema, so a hostile schema cannot exhaust the stack.
const maxDepth = 64

// converter rewrites one schema.
type converter struct {
	prefix   string
	refs     map[string]string // local ref → component ref
	defs     map[string]any    // component name → raw definition
	warnings []string
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// hoist moves root[key] (a map of definitions) into components.
func (c *converter) hoist(root map[string]any, key string) {
	m, ok := root[key].(map[string]any)
	if !ok {
		return
	}
	delete(root, key)
	if c.defs == nil {
		c.defs = map[string]any{}
	}
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		comp := c.prefix + "__" + unsafeName.ReplaceAllString(name, "_")
		for c.defs[comp] != nil {
			comp += "_"
		}
		c.defs[comp] = m[name]
		c.refs["#/"+key+"/"+escapePointer(name)] = ComponentsPrefix + comp
	}
}

func escapePointer(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

// Keywords whose value is a schema, a list of schemas, or a map of them.
var (
	schemaKeywords = map[string]bool{
		"items": true, "additionalProperties": true, "not": true, "if": true, "then": true, "else": true,
		"contains": true, "propertyNames": true, "unevaluatedItems": true, "unevaluatedProperties": true,
		"contentSchema": true, "additionalItems": true,
	}
	schemaListKeywords = map[string]bool{"allOf": true, "anyOf": true, "oneOf": true, "prefixItems": true}
	schemaMapKeywords  = map[string]bool{"properties": true, "patternProperties": true, "dependentSchemas": true}
	// Keywords kept as they are.
	valueKeywords = map[string]bool{
		"type": true, "title": true, "description": true, "format": true, "enum": true, "const": true,
		"default": true, "examples": true, "deprecated": true, "readOnly": true, "writeOnly": true,
		"minimum": true, "maximum": true, "exclusiveMinimum": true, "exclusiveMaximum": true, "multipleOf": true,
		"minLength": true, "maxLength": true, "pattern": true, "minItems": true, "maxItems": true,
		"uniqueItems": true, "minContains": true, "maxContains": true, "required": true,
		"minProperties": true, "maxProperties": true, "dependentRequired": true,
		"contentMediaType": true, "contentEncoding": true, "$ref": true,
	}
	// Keywords dropped: identifiers and annotations that would make OpenAPI
	// tools treat the schema as a separate resource.
	droppedKeywords = map[string]bool{
		"$schema": true, "$id": true, "$anchor": true, "$comment": true, "$dynamicAnchor": true,
		"$dynamicRef": true, "$vocabulary": true, "$recursiveRef": true, "$recursiveAnchor": true,
	}
)

// walk returns a normalized copy of the schema v.
func (c *converter) walk(v any, depth int) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v // a boolean schema, or garbage that decoding will report
	}
	if depth > maxDepth {
		c.warn("the schema nests deeper than %d levels; deeper parts accept anything", maxDepth)
		return map[string]any{}
	}
	out := make(map[string]any, len(m))
	for k, val := range m {
		switch {
		case droppedKeywords[k]:
		case k == "$defs" || k == "definitions":
			c.warn("nested %s are not supported yet; references into them accept anything", k)
		case k == "nullable":
			// OpenAPI 3.0 style; handled with type below.
		case schemaKeywords[k]:
			out[k] = c.walk(val, depth+1)
		case schemaListKeywords[k]:
			list, ok := val.([]any)
			if !ok {
				c.warn("%s is not a list; dropped", k)
				continue
			}
			l := make([]any, len(list))
			for i, s := range list {
				l[i] = c.walk(s, depth+1)
			}
			out[k] = l
		case schemaMapKeywords[k]:
			mm, ok := val.(map[string]any)
			if !ok {
				c.warn("%s is not an object; dropped", k)
				continue
			}
			o := make(map[string]any, len(mm))
			for name, s := range mm {
				o[name] = c.walk(s, depth+1)
			}
			out[k] = o
		case valueKeywords[k]:
			out[k] = val
		case k == "dependencies": // draft-07: split by value kind
			if deps, ok := val.(map[string]any); ok {
				req, sch := map[string]any{}, map[string]any{}
				for name, d := range deps {
					if _, isList := d.([]any); isList {
						req[name] = d
					} else {
						sch[name] = c.walk(d, depth+1)
					}
				}
				if len(req) > 0 {
					out["dependentRequired"] = req
				}
				if len(sch) > 0 {
					out["dependentSchemas"] = sch
				}
			}
		case strings.HasPrefix(k, "x-"):
			out[k] = val
		default:
			out["x-"+k] = val // unknown to OpenAPI; kept as an extension
		}
	}
	c.fixDialect(m, out, depth)
	return out
}

// fixDialect rewrites keywords whose meaning changed between drafts.
func (c *converter) fixDialect(in, out map[string]any, depth int) {
	if ref, ok := out["$ref"].(string); ok {
		if target, ok := c.refs[ref]; ok {
			out["$ref"] = target
		} else {
			c.warn("reference %q cannot be resolved; it accepts anything", ref)
			delete(out, "$ref")
			if _, has := out["description"]; !has {
				out["description"] = fmt.Sprintf("(unresolved reference %s)", ref)
			}
		}
	}
	// Draft-04 boolean exclusive bounds become 2020-12 numbers.
	for _, b := range []struct{ excl, bound string }{{"exclusiveMinimum", "minimum"}, {"exclusiveMaximum", "maximum"}} {
		if flag, ok := out[b.excl].(bool); ok {
			delete(out, b.excl)
			if n, has := out[b.bound]; has && flag {
				out[b.excl] = n
				delete(out, b.bound)
			}
		}
	}
	// Draft-07 tuples: items as a list, additionalItems for the rest.
	if list, ok := in["items"].([]any); ok {
		l := make([]any, len(list))
		for i, s := range list {
			l[i] = c.walk(s, depth+1)
		}
		out["prefixItems"] = l
		delete(out, "items")
		if rest, ok := out["additionalItems"]; ok {
			out["items"] = rest
		}
	}
	delete(out, "additionalItems")
	// OpenAPI 3.0 nullable becomes a type array.
	if n, ok := in["nullable"].(bool); ok && n {
		switch t := out["type"].(type) {
		case string:
			out["type"] = []any{t, "null"}
		case []any:
			if !containsString(t, "null") {
				out["type"] = append(t, "null")
			}
		}
	}
}

func containsString(l []any, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
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

// resolve fills the Value of every component reference in s, so that the
// schema validates and documents without a loader round-trip.
func resolve(s *openapi3.Schema, comps map[string]*openapi3.Schema) {
	seen := map[*openapi3.Schema]bool{}
	var visit func(s *openapi3.Schema)
	var visitRef func(r *openapi3.SchemaRef)
	visitRef = func(r *openapi3.SchemaRef) {
		if r == nil {
			return
		}
		if name, ok := strings.CutPrefix(r.Ref, ComponentsPrefix); ok && r.Value == nil {
			if d, ok := comps[name]; ok {
				r.Value = d
			} else {
				r.Ref = ""
				r.Value = &openapi3.Schema{}
			}
		}
		visit(r.Value)
	}
	visit = func(s *openapi3.Schema) {
		if s == nil || seen[s] {
			return
		}
		seen[s] = true
		for _, l := range []openapi3.SchemaRefs{s.AllOf, s.AnyOf, s.OneOf, s.PrefixItems} {
			for _, r := range l {
				visitRef(r)
			}
		}
		for _, m := range []openapi3.Schemas{s.Properties, s.PatternProperties, s.DependentSchemas} {
			for _, r := range m {
				visitRef(r)
			}
		}
		for _, r := range []*openapi3.SchemaRef{s.Items, s.Not, s.If, s.Then, s.Else, s.Contains, s.PropertyNames, s.ContentSchema, s.AdditionalProperties.Schema, s.UnevaluatedItems.Schema, s.UnevaluatedProperties.Schema} {
			visitRef(r)
		}
	}
	visit(s)
}

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
	"net/url"
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
	if res.Schema.IsEmpty() && len(res.Warnings) == 0 {
		// {} accepts anything: a free-form object, as nothing was lost.
		res.Schema = permissiveObject("")
		return res
	}
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

// convert normalizes raw and decodes it into kin-openapi types. The result
// is loaded and validated the way a client loads the document (inside a
// small OpenAPI 3.1 document, references resolved), so it cannot make the
// document invalid: a top-level property whose schema fails loses its
// annotations or its schema, and a schema that still fails is replaced by a
// permissive one. The warnings say what was lost.
func convert(raw json.RawMessage, prefix string) (res Result) {
	defer func() {
		if r := recover(); r != nil { // kin-openapi on input nobody foresaw
			res = Result{Schema: &openapi3.Schema{}, Warnings: append(res.Warnings, fmt.Sprintf("the schema could not be converted (%v)", r))}
		}
	}()
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return Result{Schema: &openapi3.Schema{}, Warnings: []string{fmt.Sprintf("the schema is not valid JSON (%v)", err)}}
	}
	c := &converter{prefix: prefix, refs: map[string]string{}, defs: map[string]any{}}
	if root, ok := v.(map[string]any); ok {
		c.hoist(root, "$defs")
		c.hoist(root, "definitions")
		v = c.inlineRootRef(root)
	}
	out := c.walk(v, 0)
	defs := map[string]any{}
	for name, d := range c.defs {
		defs[name] = c.walk(d, 1)
	}

	res, err := load(prefix, out, defs)
	if err == nil {
		res.Warnings = c.warnings
		return res
	}
	root, ok := out.(map[string]any)
	props, _ := root["properties"].(map[string]any)
	if !ok || len(props) == 0 {
		c.warn("the schema is not valid in OpenAPI 3.1 (%v)", err)
		return Result{Schema: &openapi3.Schema{}, Warnings: c.warnings}
	}
	// Keep what can be kept, property by property.
	for _, name := range sortedKeys(props) {
		one := shallowCopy(root)
		one["properties"] = map[string]any{name: props[name]}
		delete(one, "required")
		_, perr := load(prefix, one, defs)
		if perr == nil {
			continue
		}
		if p, ok := props[name].(map[string]any); ok {
			bare := withoutAnnotations(p)
			one["properties"] = map[string]any{name: bare}
			if _, err := load(prefix, one, defs); err == nil {
				props[name] = bare
				c.warn("argument %q: its default and examples were dropped (%v)", name, perr)
				continue
			}
		}
		props[name] = map[string]any{}
		c.warn("argument %q: its schema was dropped, so it accepts anything (%v)", name, perr)
	}
	if res, err = load(prefix, root, defs); err == nil {
		res.Warnings = c.warnings
		return res
	}
	c.warn("the schema is not valid in OpenAPI 3.1 (%v)", err)
	return Result{Schema: &openapi3.Schema{}, Warnings: c.warnings}
}

// load validates the schema root (named name) and its definitions inside a
// minimal OpenAPI 3.1 document, and returns them as kin-openapi schemas with
// their references resolved.
func load(name string, root any, defs map[string]any) (Result, error) {
	schemas := make(map[string]any, len(defs)+1)
	for k, d := range defs {
		schemas[k] = d
	}
	schemas[name] = root
	b, err := json.Marshal(map[string]any{
		"openapi":    "3.1.0",
		"info":       map[string]any{"title": "schema", "version": "0"},
		"paths":      map[string]any{},
		"components": map[string]any{"schemas": schemas},
	})
	if err != nil {
		return Result{}, err
	}
	doc, err := openapi3.NewLoader().LoadFromData(b) // external references stay disallowed
	if err != nil {
		return Result{}, err
	}
	if err := doc.Validate(context.Background()); err != nil {
		return Result{}, err
	}
	res := Result{Components: map[string]*openapi3.Schema{}}
	for k, ref := range doc.Components.Schemas {
		if ref == nil || ref.Value == nil {
			return Result{}, fmt.Errorf("component %q did not load", k)
		}
		if k == name {
			res.Schema = ref.Value
		} else {
			res.Components[k] = ref.Value
		}
	}
	return res, nil
}

// inlineRootRef replaces a root that only references one of its own
// definitions by that definition, so that its properties stay at the top
// level where clients look for arguments.
func (c *converter) inlineRootRef(root map[string]any) map[string]any {
	ref, ok := root["$ref"].(string)
	if !ok {
		return root
	}
	comp, ok := strings.CutPrefix(c.refs[ref], ComponentsPrefix)
	def, isMap := c.defs[comp].(map[string]any)
	if !ok || !isMap {
		return root
	}
	inlined := shallowCopy(def)
	for k, v := range root {
		if _, has := inlined[k]; !has && k != "$ref" {
			inlined[k] = v
		}
	}
	return inlined
}

func shallowCopy(m map[string]any) map[string]any {
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// withoutAnnotations returns schema without the keywords that only
// illustrate it (default, examples), which kin-openapi checks against it.
func withoutAnnotations(schema map[string]any) map[string]any {
	c := shallowCopy(schema)
	delete(c, "default")
	delete(c, "examples")
	delete(c, "example")
	return c
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
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
		pointer := "#/" + key + "/" + escapePointer(name)
		c.refs[pointer] = ComponentsPrefix + comp
		// RFC 6901 §6: in a URI fragment, the pointer is percent-encoded.
		c.refs["#/"+key+"/"+url.PathEscape(escapePointer(name))] = ComponentsPrefix + comp
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
		if _, isBool := v.(bool); isBool {
			return v
		}
		c.warn("%s where a schema belongs; it accepts anything", describeJSON(v))
		return map[string]any{}
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
		case k == "items" && isList(val):
			// Draft-07 tuple: fixDialect turns it into prefixItems.
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
		case k == "required":
			req := uniqueStrings(val)
			if l, _ := val.([]any); len(req) != len(l) {
				c.warn("required lists an argument twice, or something that is not a name; kept once each, names only")
			}
			out[k] = req
		case k == "pattern":
			if p, ok := val.(string); ok {
				if _, err := regexp.Compile(p); err != nil {
					// ECMA-262 features such as lookahead; kept for readers.
					c.warn("pattern %q is not supported by Go's regexp syntax; kept as x-pattern", p)
					out["x-pattern"] = p
					continue
				}
			}
			out[k] = val
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

// uniqueStrings keeps the distinct strings of a required list.
func uniqueStrings(v any) []any {
	list, _ := v.([]any)
	out := make([]any, 0, len(list))
	seen := map[string]bool{}
	for _, x := range list {
		if s, ok := x.(string); ok && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func isList(v any) bool {
	_, ok := v.([]any)
	return ok
}

// describeJSON names the kind of a JSON value, for warnings.
func describeJSON(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case []any:
		return "a list"
	}
	return "a value"
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

package schema

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

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
		"minLength": true, "maxLength": true, "minItems": true, "maxItems": true,
		"uniqueItems": true, "minContains": true, "maxContains": true,
		"minProperties": true, "maxProperties": true, "dependentRequired": true,
		"contentMediaType": true, "contentEncoding": true,
	}
	// Keywords dropped: identifiers and references (all inlined by now)
	// that would make OpenAPI tools treat parts of the schema as separate
	// resources.
	droppedKeywords = map[string]bool{
		"$schema": true, "$id": true, "$anchor": true, "$comment": true, "$dynamicAnchor": true,
		"$dynamicRef": true, "$vocabulary": true, "$recursiveRef": true, "$recursiveAnchor": true,
		"$ref": true, "$defs": true, "definitions": true, "id": true,
	}
)

// normalizer rewrites an inlined schema into what OpenAPI 3.1 tools read
// well: draft-04 and draft-07 keywords in their 2020-12 form, nullable
// unions collapsed into type lists, keywords OpenAPI does not know kept as
// x- extensions.
type normalizer struct {
	warn func(format string, args ...any)
}

// normalize returns a normalized copy of the schema v. Keywords are
// visited in sorted order: warnings come in an order that depends only on
// the schema, and where two keywords end up under one name (foo kept as
// x-foo beside an x-foo of its own, draft-07 dependencies beside
// dependentRequired) the one the schema spelled that way wins.
func (c *normalizer) normalize(v any, depth int) any {
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
	for _, k := range sortedKeys(m) {
		val := m[k]
		switch {
		case droppedKeywords[k]:
		case k == "nullable":
			// OpenAPI 3.0 style; folded into type below.
		case k == "items" && isList(val):
			// Draft-07 tuple: fixDialect turns it into prefixItems.
		case schemaKeywords[k]:
			out[k] = c.normalize(val, depth+1)
		case schemaListKeywords[k]:
			list, ok := val.([]any)
			if !ok {
				c.warn("%s is not a list; dropped", k)
				continue
			}
			l := make([]any, len(list))
			for i, s := range list {
				l[i] = c.normalize(s, depth+1)
			}
			out[k] = l
		case schemaMapKeywords[k]:
			mm, ok := val.(map[string]any)
			if !ok {
				c.warn("%s is not an object; dropped", k)
				continue
			}
			o := make(map[string]any, len(mm))
			for _, name := range sortedKeys(mm) {
				o[name] = c.normalize(mm[name], depth+1)
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
					if _, taken := m["x-pattern"]; taken {
						c.warn("pattern %q is not supported by Go's regexp syntax; dropped", p)
						continue
					}
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
				for _, name := range sortedKeys(deps) {
					d := deps[name]
					if _, isList := d.([]any); isList {
						req[name] = d
					} else {
						sch[name] = c.normalize(d, depth+1)
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
	return withItems(collapseNullable(out))
}

// withItems gives a schema of type array an items schema (accepting
// anything) when it has none: the same meaning, and what OpenAPI linters and
// some generators require.
func withItems(m map[string]any) map[string]any {
	items, ok := m["items"]
	switch {
	case items == false:
		// No further items, said in a form linters do not mistake for a
		// missing items.
		m["items"] = map[string]any{"not": map[string]any{}}
	case !ok && typeIncludes(m["type"], "array"):
		m["items"] = map[string]any{}
	}
	return m
}

// typeIncludes reports whether a type keyword's value names t.
func typeIncludes(typ any, t string) bool {
	switch v := typ.(type) {
	case string:
		return v == t
	case []any:
		return containsString(v, t)
	}
	return false
}

// fixDialect rewrites keywords whose meaning changed between drafts.
func (c *normalizer) fixDialect(in, out map[string]any, depth int) {
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
			l[i] = c.normalize(s, depth+1)
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
		out["type"] = withNull(out["type"])
	}
}

// withNull adds "null" to a type keyword's value.
func withNull(t any) any {
	switch t := t.(type) {
	case string:
		if t == "null" {
			return t
		}
		return []any{t, "null"}
	case []any:
		if !containsString(t, "null") {
			return append(t, "null")
		}
	}
	return t
}

// collapseNullable turns anyOf/oneOf [T, {"type":"null"}], the way pydantic
// and zod say "T or null", into T with "null" in its type list: OpenAPI
// 3.1 readers and Swagger UI understand it, and clients that drop anyOf
// (Open WebUI's browser side) keep T's type.
func collapseNullable(m map[string]any) map[string]any {
	for _, kw := range []string{"anyOf", "oneOf"} {
		branches, ok := m[kw].([]any)
		if !ok || len(branches) != 2 {
			continue
		}
		var other map[string]any
		nulls := 0
		for _, b := range branches {
			bm, ok := b.(map[string]any)
			if !ok {
				return m
			}
			if isNullSchema(bm) {
				nulls++
			} else {
				other = bm
			}
		}
		t, typed := other["type"]
		if nulls != 1 || other == nil || !typed || hasComposition(other) {
			continue
		}
		out := make(map[string]any, len(m)+len(other))
		for k, v := range other {
			out[k] = v
		}
		for k, v := range m { // the outer schema's annotations win
			if k != kw {
				out[k] = v
			}
		}
		out["type"] = withNull(t)
		return out
	}
	return m
}

func isNullSchema(m map[string]any) bool {
	return len(m) == 1 && m["type"] == "null"
}

func hasComposition(m map[string]any) bool {
	_, a := m["anyOf"]
	_, o := m["oneOf"]
	_, l := m["allOf"]
	return a || o || l
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
	case json.Number, float64:
		return "a number"
	case []any:
		return "a list"
	}
	return fmt.Sprintf("a %T", v)
}

func containsString(l []any, s string) bool {
	for _, v := range l {
		if v == s {
			return true
		}
	}
	return false
}

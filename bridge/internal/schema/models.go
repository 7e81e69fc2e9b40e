package schema

import (
	"encoding/json"
	"fmt"
	"strings"
)

// An input schema is handed to LLM providers as it is: Open WebUI and the
// OpenAPI tool loaders of LLM frameworks pass each argument's schema on as
// a function parameter. Gemini takes only a subset of OpenAPI's schema
// keywords (google-genai's types.Schema refuses every other key, x-
// extensions included, and type lists such as ["string","null"]) and only
// strings in an enum, and one refused function fails the whole request.
// forModels therefore rewrites a converted input schema into that subset,
// which OpenAI and Anthropic take too. What the subset cannot say is said in
// the schema's description instead; arguments are still validated against
// the tool's original schema, so nothing a server accepts is refused.
//
// The approximations:
//   - null is dropped from the type of an optional property (leaving it out
//     means the same to the server); a required property that may be null
//     keeps its other type and says "May be null." in its description, as
//     does any other schema that may be null;
//   - a type list becomes an anyOf of single types;
//   - oneOf becomes anyOf, and allOf is merged into one schema;
//   - an enum that is not all strings, const, exclusive bounds, multipleOf,
//     uniqueItems, deprecated, dependentRequired, patternProperties' key
//     patterns and patterns Go cannot check are said in the description
//     (an integer's exclusive bound becomes an inclusive one); a string
//     const becomes a one-value enum;
//   - prefixItems becomes items that may match any position's schema;
//   - examples become the first example;
//   - a schema nested more than maxModelDepth levels below the arguments
//     is not described (OpenAI's structured outputs allow 10 levels, Gemini
//     refuses deep declarations, and code generators name a class after
//     every level and fail on file names that long): it keeps its type
//     and says so;
//   - not, if/then/else, contains, propertyNames, dependentSchemas,
//     unevaluated*, content*, readOnly, writeOnly and x- extensions are
//     left out.

// modelKeywords are the keywords kept as they are.
var modelKeywords = map[string]bool{
	"title": true, "description": true, "format": true, "pattern": true, "default": true,
	"minLength": true, "maxLength": true, "minItems": true, "maxItems": true,
	"minProperties": true, "maxProperties": true, "minimum": true, "maximum": true,
}

// forModels returns the input schema s rewritten for LLM providers.
func forModels(s map[string]any) map[string]any {
	return modelSchema(s, false, 0)
}

// maxModelDepth is how deeply the schemas below the arguments are
// described.
const maxModelDepth = 10

// modelSchema rewrites one schema. optional says it is the schema of a
// property its object does not require.
func modelSchema(s map[string]any, optional bool, depth int) map[string]any {
	out := map[string]any{}
	if depth > maxModelDepth {
		return notDescribed(s)
	}
	var notes []string
	note := func(format string, args ...any) { notes = append(notes, fmt.Sprintf(format, args...)) }
	types := typeList(s["type"])
	nullable := types["null"]
	delete(types, "null")

	for _, k := range sortedKeys(s) {
		v := s[k]
		switch k {
		case "type", "not", "if", "then", "else", "contains", "minContains", "maxContains", "propertyNames",
			"dependentSchemas", "unevaluatedItems", "unevaluatedProperties", "contentMediaType",
			"contentEncoding", "contentSchema", "readOnly", "writeOnly", "discriminator":
		case "properties":
			props, _ := v.(map[string]any)
			required := map[string]bool{}
			for _, r := range stringList(s["required"]) {
				required[r] = true
			}
			o := make(map[string]any, len(props))
			for _, name := range sortedKeys(props) {
				if p, ok := modelChild(props[name], !required[name], depth); ok {
					o[name] = p
				}
			}
			out[k] = o
		case "required":
			out[k] = v
		case "items", "additionalProperties":
			switch b, isBool := v.(bool); {
			case isBool && k == "additionalProperties":
				out[k] = b
			case isNothing(v): // an array that must be empty
				out["maxItems"] = json.Number("0")
			default:
				out[k], _ = modelChild(v, false, depth)
			}
		case "anyOf", "oneOf":
			var branches []any
			for _, b := range anyList(v) {
				if bm, ok := b.(map[string]any); ok && isNullSchema(bm) {
					nullable = true
					continue
				}
				if c, ok := modelChild(b, false, depth); ok {
					branches = append(branches, c)
				}
			}
			if prev, ok := out["anyOf"].([]any); ok { // anyOf and oneOf both: either holds
				branches = append(prev, branches...)
			}
			if len(branches) > 0 {
				out["anyOf"] = branches
			}
		case "allOf":
			for _, b := range anyList(v) {
				if c, ok := modelChild(b, false, depth); ok {
					mergeInto(out, c)
				}
			}
		case "const":
			if str, ok := v.(string); ok {
				out["enum"] = []any{str}
			} else if v == nil {
				nullable = true
			} else {
				note("Always %s.", compactJSON(v))
			}
			if len(types) == 0 && v != nil {
				types[jsonType(v)] = true
			}
		case "enum":
			values := anyList(v)
			var strs []any
			nulls := 0
			for _, e := range values {
				switch e := e.(type) {
				case nil:
					nulls++
				case string:
					strs = append(strs, e)
				}
			}
			nullable = nullable || nulls > 0
			switch {
			case len(strs) > 0 && len(strs)+nulls == len(values):
				out[k] = strs
			default:
				shown := make([]string, len(values))
				for i, e := range values {
					shown[i] = compactJSON(e)
				}
				note("One of: %s.", strings.Join(shown, ", "))
			}
		case "examples":
			if list := anyList(v); len(list) > 0 {
				out["example"] = list[0]
			}
		case "exclusiveMinimum", "exclusiveMaximum":
			bound(out, s, k, v, types, note)
		case "multipleOf":
			note("A multiple of %s.", compactJSON(v))
		case "uniqueItems":
			if v == true {
				note("Items must be unique.")
			}
		case "deprecated":
			if v == true {
				note("Deprecated.")
			}
		case "x-pattern":
			note("Must match the pattern %s.", compactJSON(v))
		case "dependentRequired":
			deps, _ := v.(map[string]any)
			for _, name := range sortedKeys(deps) {
				note("If %s is given, %s must be given too.", name, strings.Join(stringList(deps[name]), ", "))
			}
		case "prefixItems":
			var branches []any
			var shown []string
			for _, b := range anyList(v) {
				c, _ := modelChild(b, false, depth)
				branches = append(branches, c)
				shown = append(shown, describeType(c))
			}
			note("Items by position: %s.", strings.Join(shown, ", "))
			rest, hasRest := s["items"]
			switch {
			case hasRest && isNothing(rest):
				out["maxItems"] = json.Number(fmt.Sprint(len(branches)))
			case hasRest:
				c, _ := modelChild(rest, false, depth)
				branches = append(branches, c)
			}
			out["items"] = oneSchema(branches)
		case "patternProperties":
			pats, _ := v.(map[string]any)
			var branches []any
			for _, p := range sortedKeys(pats) {
				c, _ := modelChild(pats[p], false, depth)
				branches = append(branches, c)
				note("Keys matching %s are allowed.", compactJSON(p))
			}
			if _, ok := out["additionalProperties"].(map[string]any); !ok && len(branches) > 0 {
				out["additionalProperties"] = oneSchema(branches)
			}
		default:
			if modelKeywords[k] {
				out[k] = v
			}
			// Anything else (x- extensions) is left out.
		}
	}

	switch names := sortedKeys(types); {
	case len(names) == 1:
		out["type"] = names[0]
	case len(names) > 1:
		if items, ok := out["items"].(map[string]any); ok && len(items) == 0 {
			delete(out, "items") // the array branch says it
		}
		if _, has := out["anyOf"]; !has {
			branches := make([]any, len(names))
			for i, t := range names {
				branches[i] = withItems(map[string]any{"type": t})
			}
			out["anyOf"] = branches
		}
	case nullable && s["type"] == "null":
		out["type"] = "null"
		nullable = false
	}
	if nullable {
		if out["default"] == nil {
			delete(out, "default")
		}
		if !optional {
			note("May be null.")
		}
	}
	if len(notes) > 0 {
		desc, _ := out["description"].(string)
		out["description"] = strings.TrimSpace(desc + " " + strings.Join(notes, " "))
	}
	return withItems(out)
}

// notDescribed stands in for a schema nested too deeply to describe.
func notDescribed(s map[string]any) map[string]any {
	out := map[string]any{}
	desc, _ := s["description"].(string)
	out["description"] = strings.TrimSpace(fmt.Sprintf("%s (Nested more than %d levels deep, so not described here; the tool checks it.)", desc, maxModelDepth))
	if t, ok := s["type"].(string); ok && t != "null" {
		out["type"] = t
		if t == "object" {
			out["additionalProperties"] = true
		}
	}
	return withItems(out)
}

// modelChild rewrites a subschema; false (no value is valid) is left out.
func modelChild(v any, optional bool, depth int) (map[string]any, bool) {
	switch c := v.(type) {
	case map[string]any:
		return modelSchema(c, optional, depth+1), true
	case bool:
		return map[string]any{}, c
	}
	return map[string]any{}, true
}

// isNothing reports a schema no value is valid against: false, or the
// {"not":{}} normalize writes for it.
func isNothing(v any) bool {
	if v == false {
		return true
	}
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		return false
	}
	not, ok := m["not"].(map[string]any)
	return ok && len(not) == 0
}

// bound turns an exclusive bound into an inclusive one for integers, and
// into a note otherwise.
func bound(out, s map[string]any, k string, v any, types map[string]bool, note func(string, ...any)) {
	inclusive := map[string]string{"exclusiveMinimum": "minimum", "exclusiveMaximum": "maximum"}[k]
	n, ok := v.(json.Number)
	if i, err := n.Int64(); ok && err == nil && len(types) == 1 && types["integer"] && s[inclusive] == nil {
		if k == "exclusiveMinimum" {
			out[inclusive] = json.Number(fmt.Sprint(i + 1))
		} else {
			out[inclusive] = json.Number(fmt.Sprint(i - 1))
		}
		return
	}
	if k == "exclusiveMinimum" {
		note("Greater than %s.", compactJSON(v))
	} else {
		note("Less than %s.", compactJSON(v))
	}
}

// mergeInto lays the keywords of an allOf branch into out: properties and
// required are united, anything else out has already is kept.
func mergeInto(out, branch map[string]any) {
	for _, k := range sortedKeys(branch) {
		v := branch[k]
		switch k {
		case "properties":
			props, _ := out[k].(map[string]any)
			if props == nil {
				props = map[string]any{}
				out[k] = props
			}
			bp, _ := v.(map[string]any)
			for _, name := range sortedKeys(bp) {
				if _, has := props[name]; !has {
					props[name] = bp[name]
				}
			}
		case "required":
			out[k] = toAnyList(dedupe(append(stringList(out[k]), stringList(v)...)))
		default:
			if _, has := out[k]; !has {
				out[k] = v
			}
		}
	}
}

// oneSchema is a schema matching any of the given ones.
func oneSchema(branches []any) map[string]any {
	var distinct []any
	for _, b := range branches {
		dup := false
		for _, d := range distinct {
			if equalJSON(b, d) {
				dup = true
				break
			}
		}
		if !dup {
			distinct = append(distinct, b)
		}
	}
	switch len(distinct) {
	case 0:
		return map[string]any{}
	case 1:
		m, _ := distinct[0].(map[string]any)
		return m
	}
	return map[string]any{"anyOf": distinct}
}

// describeType names what a rewritten schema holds, for notes.
func describeType(m map[string]any) string {
	if t, ok := m["type"].(string); ok {
		return t
	}
	return "any value"
}

// typeList returns the names a type keyword lists.
func typeList(t any) map[string]bool {
	out := map[string]bool{}
	switch v := t.(type) {
	case string:
		out[v] = true
	case []any:
		for _, s := range stringList(v) {
			out[s] = true
		}
	}
	return out
}

func anyList(v any) []any {
	l, _ := v.([]any)
	return l
}

// compactJSON writes a value for a description.
func compactJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

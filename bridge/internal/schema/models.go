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
// property its object does not require; depth is how far below the
// arguments it is.
func modelSchema(s map[string]any, optional bool, depth int) map[string]any {
	if depth > maxModelDepth {
		return notDescribed(s)
	}
	m := &model{s: s, out: map[string]any{}, optional: optional, depth: depth, types: typeList(s["type"])}
	m.nullable = m.types["null"]
	delete(m.types, "null")
	for _, k := range sortedKeys(s) { // in order: a keyword may read what an earlier one wrote
		if rewrite, ok := keywordModels[k]; ok {
			rewrite(m, k, s[k])
		} else if modelKeywords[k] {
			m.out[k] = s[k]
		}
		// Anything else (x- extensions) is left out.
	}
	m.setType()
	m.setNullable()
	if len(m.notes) > 0 {
		desc, _ := m.out["description"].(string)
		m.out["description"] = strings.TrimSpace(desc + " " + strings.Join(m.notes, " "))
	}
	return withItems(m.out)
}

// model is one schema being rewritten by modelSchema.
type model struct {
	s        map[string]any // the schema
	out      map[string]any // what it becomes
	optional bool
	depth    int
	types    map[string]bool // the types it may have, null aside
	nullable bool            // it may be null
	notes    []string        // what the description adds
}

func (m *model) note(format string, args ...any) {
	m.notes = append(m.notes, fmt.Sprintf(format, args...))
}

// child rewrites a schema below this one.
func (m *model) child(v any, optional bool) (map[string]any, bool) {
	return modelChild(v, optional, m.depth)
}

// keywordModels rewrite the keywords that are neither kept as they are
// (modelKeywords) nor left out silently; each gets the keyword's name and
// value. It is filled in init, as the rewrites call modelSchema.
var keywordModels map[string]func(m *model, k string, v any)

func init() {
	keywordModels = map[string]func(m *model, k string, v any){
		"properties":           (*model).properties,
		"required":             keep,
		"items":                (*model).items,
		"additionalProperties": (*model).items,
		"anyOf":                (*model).anyOf,
		"oneOf":                (*model).anyOf,
		"allOf":                (*model).allOf,
		"const":                (*model).constant,
		"enum":                 (*model).enum,
		"examples":             (*model).examples,
		"exclusiveMinimum":     (*model).exclusiveBound,
		"exclusiveMaximum":     (*model).exclusiveBound,
		"multipleOf":           func(m *model, _ string, v any) { m.note("A multiple of %s.", compactJSON(v)) },
		"uniqueItems":          noteIfTrue("Items must be unique."),
		"deprecated":           noteIfTrue("Deprecated."),
		"x-pattern":            func(m *model, _ string, v any) { m.note("Must match the pattern %s.", compactJSON(v)) },
		"dependentRequired":    (*model).dependentRequired,
		"prefixItems":          (*model).prefixItems,
		"patternProperties":    (*model).patternProperties,
	}
	// Left out: the type is set from types once every keyword is read.
	for _, k := range []string{"type", "not", "if", "then", "else", "contains", "minContains", "maxContains",
		"propertyNames", "dependentSchemas", "unevaluatedItems", "unevaluatedProperties", "contentMediaType",
		"contentEncoding", "contentSchema", "readOnly", "writeOnly", "discriminator"} {
		keywordModels[k] = func(*model, string, any) {}
	}
}

func keep(m *model, k string, v any) { m.out[k] = v }

func noteIfTrue(text string) func(m *model, k string, v any) {
	return func(m *model, _ string, v any) {
		if v == true {
			m.note("%s", text)
		}
	}
}

func (m *model) properties(k string, v any) {
	props, _ := v.(map[string]any)
	required := map[string]bool{}
	for _, r := range stringList(m.s["required"]) {
		required[r] = true
	}
	o := make(map[string]any, len(props))
	for _, name := range sortedKeys(props) {
		if p, ok := m.child(props[name], !required[name]); ok {
			o[name] = p
		}
	}
	m.out[k] = o
}

// items rewrites items and additionalProperties.
func (m *model) items(k string, v any) {
	switch b, isBool := v.(bool); {
	case isBool && k == "additionalProperties":
		m.out[k] = b
	case isNothing(v): // an array that must be empty
		m.out["maxItems"] = json.Number("0")
	default:
		m.out[k], _ = m.child(v, false)
	}
}

// anyOf rewrites anyOf and oneOf: either holds, a null branch makes the
// schema nullable.
func (m *model) anyOf(_ string, v any) {
	var branches []any
	for _, b := range anyList(v) {
		if bm, ok := b.(map[string]any); ok && isNullSchema(bm) {
			m.nullable = true
			continue
		}
		if c, ok := m.child(b, false); ok {
			branches = append(branches, c)
		}
	}
	if prev, ok := m.out["anyOf"].([]any); ok { // anyOf and oneOf both
		branches = append(prev, branches...)
	}
	if len(branches) > 0 {
		m.out["anyOf"] = branches
	}
}

func (m *model) allOf(_ string, v any) {
	for _, b := range anyList(v) {
		if c, ok := m.child(b, false); ok {
			mergeInto(m.out, c)
		}
	}
}

// constant makes a string const a one-value enum, and says others.
func (m *model) constant(_ string, v any) {
	if str, ok := v.(string); ok {
		m.out["enum"] = []any{str}
	} else if v == nil {
		m.nullable = true
	} else {
		m.note("Always %s.", compactJSON(v))
	}
	if len(m.types) == 0 && v != nil {
		m.types[jsonType(v)] = true
	}
}

// enum keeps an enum of strings (and null), and says others.
func (m *model) enum(k string, v any) {
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
	m.nullable = m.nullable || nulls > 0
	if len(strs) > 0 && len(strs)+nulls == len(values) {
		m.out[k] = strs
		return
	}
	shown := make([]string, len(values))
	for i, e := range values {
		shown[i] = compactJSON(e)
	}
	m.note("One of: %s.", strings.Join(shown, ", "))
}

func (m *model) examples(_ string, v any) {
	if list := anyList(v); len(list) > 0 {
		m.out["example"] = list[0]
	}
}

func (m *model) exclusiveBound(k string, v any) { bound(m.out, m.s, k, v, m.types, m.note) }

func (m *model) dependentRequired(_ string, v any) {
	deps, _ := v.(map[string]any)
	for _, name := range sortedKeys(deps) {
		m.note("If %s is given, %s must be given too.", name, strings.Join(stringList(deps[name]), ", "))
	}
}

// prefixItems lets items match any position's schema, and says the order.
func (m *model) prefixItems(_ string, v any) {
	var branches []any
	var shown []string
	for _, b := range anyList(v) {
		c, _ := m.child(b, false)
		branches = append(branches, c)
		shown = append(shown, describeType(c))
	}
	m.note("Items by position: %s.", strings.Join(shown, ", "))
	rest, hasRest := m.s["items"]
	switch {
	case hasRest && isNothing(rest):
		m.out["maxItems"] = json.Number(fmt.Sprint(len(branches)))
	case hasRest:
		c, _ := m.child(rest, false)
		branches = append(branches, c)
	}
	m.out["items"] = oneSchema(branches)
}

// patternProperties lets other properties match any pattern's schema, and
// says the patterns.
func (m *model) patternProperties(_ string, v any) {
	pats, _ := v.(map[string]any)
	var branches []any
	for _, p := range sortedKeys(pats) {
		c, _ := m.child(pats[p], false)
		branches = append(branches, c)
		m.note("Keys matching %s are allowed.", compactJSON(p))
	}
	if _, ok := m.out["additionalProperties"].(map[string]any); !ok && len(branches) > 0 {
		m.out["additionalProperties"] = oneSchema(branches)
	}
}

// setType writes the type: one type, or an anyOf of one per type.
func (m *model) setType() {
	switch names := sortedKeys(m.types); {
	case len(names) == 1:
		m.out["type"] = names[0]
	case len(names) > 1:
		if items, ok := m.out["items"].(map[string]any); ok && len(items) == 0 {
			delete(m.out, "items") // the array branch says it
		}
		if _, has := m.out["anyOf"]; !has {
			branches := make([]any, len(names))
			for i, t := range names {
				branches[i] = withItems(map[string]any{"type": t})
			}
			m.out["anyOf"] = branches
		}
	case m.nullable && m.s["type"] == "null":
		m.out["type"] = "null"
		m.nullable = false
	}
}

// setNullable drops a null default, and says that a required schema may
// be null (an optional one may be left out instead).
func (m *model) setNullable() {
	if !m.nullable {
		return
	}
	if m.out["default"] == nil {
		delete(m.out, "default")
	}
	if !m.optional {
		m.note("May be null.")
	}
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

package schema

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// WrapProperty is the argument a non-object input is wrapped in.
const WrapProperty = "input"

// shaper turns a normalized input schema into the flat object clients read:
// Open WebUI takes the top-level properties of the body schema as the LLM
// function's parameters and ignores everything else.
type shaper struct {
	warn func(format string, args ...any)
	note func(text string) // adds to the schema's description
}

// shape returns the body schema, and the name a non-object input is
// wrapped in ("" when it is not).
func (s *shaper) shape(v any) (map[string]any, string) {
	switch r := v.(type) {
	case bool:
		if !r {
			s.warn("the input schema is false, which accepts nothing")
			return map[string]any{"type": "object", "properties": map[string]any{}, "additionalProperties": false}, ""
		}
		return freeForm(), ""
	case map[string]any:
		if len(r) == 0 {
			return freeForm(), ""
		}
		r = s.flatten(r)
		if !objectLike(r) {
			s.warn("the input is not an object; it is sent as the %q argument", WrapProperty)
			wrapped := map[string]any{
				"type":       "object",
				"properties": map[string]any{WrapProperty: r},
				"required":   []any{WrapProperty},
			}
			if d, ok := r["description"]; ok {
				wrapped["description"] = d
			}
			typeArguments(wrapped, 0)
			return wrapped, WrapProperty
		}
		r["type"] = "object" // also for ["object","null"]: arguments are never null
		s.dropImpossible(r)
		s.completeRequired(r)
		typeArguments(r, 0)
		return r, ""
	}
	return freeForm(), ""
}

// anyJSON is the type list of a value that may be anything.
var anyJSON = []any{"string", "number", "boolean", "object", "array", "null"}

// typeArguments gives every property schema below m a type, inferred from
// its keywords, or the list of all types when it accepts anything: clients
// and LLM providers take a property without a type as an error, or drop it.
func typeArguments(m map[string]any, depth int) {
	if depth > maxDepth {
		return
	}
	if props, ok := m["properties"].(map[string]any); ok {
		for name, p := range props {
			props[name] = typed(p)
			if pm, ok := props[name].(map[string]any); ok {
				typeArguments(pm, depth+1)
			}
		}
	}
	if items, ok := m["items"].(map[string]any); ok {
		typeArguments(items, depth+1)
	}
}

// typed returns a property schema with a type.
func typed(p any) any {
	switch v := p.(type) {
	case bool:
		if v {
			return withItems(map[string]any{"type": anyJSON})
		}
		return v
	case map[string]any:
		if _, has := v["type"]; has || composedOfTyped(v) {
			return v
		}
		return withItems(overlay(v, map[string]any{"type": inferType(v)}))
	}
	return p
}

// composedOfTyped reports an anyOf or oneOf whose members all have types,
// or an allOf with a typed member.
func composedOfTyped(m map[string]any) bool {
	for _, b := range anyList(m["allOf"]) {
		if bm, ok := b.(map[string]any); ok && bm["type"] != nil {
			return true
		}
	}
	for _, kw := range []string{"anyOf", "oneOf"} {
		list, ok := m[kw].([]any)
		if !ok || len(list) == 0 {
			continue
		}
		for _, b := range list {
			bm, ok := b.(map[string]any)
			if _, has := bm["type"]; !ok || !has {
				return false
			}
		}
		return true
	}
	return false
}

// inferType names the type a schema's keywords describe.
func inferType(m map[string]any) any {
	values, _ := m["enum"].([]any)
	if c, ok := m["const"]; ok {
		values = append(values, c)
	}
	if len(values) > 0 {
		var kinds []any
		for _, v := range values {
			if k := jsonType(v); !containsString(kinds, k) {
				kinds = append(kinds, k)
			}
		}
		if len(kinds) == 1 {
			return kinds[0]
		}
		return kinds
	}
	has := func(keys ...string) bool {
		for _, k := range keys {
			if _, ok := m[k]; ok {
				return true
			}
		}
		return false
	}
	switch {
	case has("properties", "additionalProperties", "patternProperties", "required", "minProperties", "maxProperties"):
		return "object"
	case has("items", "prefixItems", "minItems", "maxItems", "uniqueItems", "contains"):
		return "array"
	case has("minLength", "maxLength", "pattern", "format"):
		return "string"
	case has("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
		return "number"
	}
	return anyJSON
}

// jsonType names the JSON type of a decoded value.
func jsonType(v any) string {
	switch n := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case string:
		return "string"
	case json.Number:
		if _, err := n.Int64(); err == nil {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	}
	return "object"
}

func freeForm() map[string]any {
	return map[string]any{"type": "object", "properties": map[string]any{}, "additionalProperties": true}
}

// objectLike reports whether a schema describes JSON objects.
func objectLike(m map[string]any) bool {
	switch t := m["type"].(type) {
	case string:
		return t == "object"
	case []any:
		return containsString(t, "object")
	case nil:
		for _, k := range []string{"properties", "additionalProperties", "patternProperties", "required", "minProperties", "maxProperties"} {
			if _, ok := m[k]; ok {
				return true
			}
		}
	}
	return false
}

// flatten merges root compositions of objects into one object whose
// properties are the union of the branches'. For allOf every branch's
// required arguments are required; for anyOf and oneOf only those every
// branch requires. The precise schema is still what arguments are
// validated against.
func (s *shaper) flatten(root map[string]any) map[string]any {
	for _, kw := range []string{"allOf", "anyOf", "oneOf"} {
		branches, ok := root[kw].([]any)
		if !ok || len(branches) == 0 {
			continue
		}
		var maps []map[string]any
		for _, b := range branches {
			bm, ok := b.(map[string]any)
			if !ok || isNullSchema(bm) {
				continue
			}
			bm = s.flatten(bm)
			if !objectLike(bm) && !(len(bm) > 0 && onlyAnnotations(bm)) {
				return root // a branch is not an object: cannot flatten
			}
			maps = append(maps, bm)
		}
		if len(maps) == 0 {
			continue
		}
		props, _ := root["properties"].(map[string]any)
		if props == nil {
			props = map[string]any{}
		}
		var required []string
		if kw == "allOf" {
			required = stringList(root["required"])
		}
		for i, bm := range maps {
			bp, _ := bm["properties"].(map[string]any)
			for _, name := range sortedKeys(bp) {
				props[name] = unionSchema(props[name], bp[name])
			}
			br := stringList(bm["required"])
			switch {
			case kw == "allOf":
				required = append(required, br...)
			case i == 0:
				required = br
			default:
				required = intersect(required, br)
			}
		}
		if kw != "allOf" {
			required = append(stringList(root["required"]), required...)
			s.note(alternatives(kw, maps))
		}
		for _, bm := range maps { // a branch may require an argument it does not describe
			for _, name := range stringList(bm["required"]) {
				if _, ok := props[name]; !ok {
					props[name] = map[string]any{"description": "(required by one of the shapes; the tool gives no schema for it)"}
				}
			}
		}
		delete(root, kw)
		root["properties"] = props
		if len(required) > 0 {
			root["required"] = toAnyList(dedupe(required))
		}
		if _, has := root["type"]; !has {
			root["type"] = "object"
		}
	}
	return root
}

// onlyAnnotations reports a schema that constrains nothing.
func onlyAnnotations(m map[string]any) bool {
	for k := range m {
		switch k {
		case "title", "description", "examples", "deprecated":
		default:
			return false
		}
	}
	return true
}

// unionSchema combines two schemas given for the same property by
// different branches.
func unionSchema(a, b any) any {
	if a == nil {
		return b
	}
	if equalJSON(a, b) {
		return a
	}
	if am, ok := a.(map[string]any); ok {
		if list, ok := am["anyOf"].([]any); ok && len(am) == 1 {
			for _, x := range list {
				if equalJSON(x, b) {
					return a
				}
			}
			return map[string]any{"anyOf": append(list, b)}
		}
	}
	return map[string]any{"anyOf": []any{a, b}}
}

// alternatives describes the argument sets of a root anyOf or oneOf.
func alternatives(kw string, branches []map[string]any) string {
	var sets []string
	for _, b := range branches {
		bp, _ := b["properties"].(map[string]any)
		names := sortedKeys(bp)
		if req := stringList(b["required"]); len(req) > 0 {
			names = req
		}
		sets = append(sets, "("+strings.Join(names, ", ")+")")
	}
	which := "one or more"
	if kw == "oneOf" {
		which = "exactly one"
	}
	return fmt.Sprintf("The arguments match %s of these shapes: %s.", which, strings.Join(sets, " or "))
}

// dropImpossible removes arguments whose schema is false: no value is valid
// for them, so they are not offered.
func (s *shaper) dropImpossible(root map[string]any) {
	props, _ := root["properties"].(map[string]any)
	for _, name := range sortedKeys(props) {
		if props[name] == false {
			delete(props, name)
			if slices.Contains(stringList(root["required"]), name) {
				s.warn("argument %q is required but accepts no value; the tool cannot be called", name)
				root["required"] = toAnyList(slices.DeleteFunc(stringList(root["required"]), func(r string) bool { return r == name }))
			}
		}
	}
}

// completeRequired gives every required argument a property, so clients
// that only offer declared properties can send it.
func (s *shaper) completeRequired(root map[string]any) {
	props, _ := root["properties"].(map[string]any)
	for _, name := range stringList(root["required"]) {
		if props == nil {
			props = map[string]any{}
			root["properties"] = props
		}
		if _, ok := props[name]; !ok {
			props[name] = map[string]any{"description": "(required; the tool gives no schema for it)"}
		}
	}
}

// validArgumentName is what every LLM provider accepts as a parameter name
// (Vertex AI is the strictest).
var validArgumentName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)

// renameArguments gives top-level arguments whose names LLM providers
// refuse a valid name, and returns the renames (documented name → wire
// name). The argument schemas say nothing of it: they go to LLM providers
// as they are, and Gemini refuses any keyword it does not know.
func renameArguments(root map[string]any) map[string]string {
	props, _ := root["properties"].(map[string]any)
	var bad []string
	for name := range props {
		if !validArgumentName.MatchString(name) {
			bad = append(bad, name)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	sort.Strings(bad)
	renames := map[string]string{}
	for _, wire := range bad {
		name := argumentName(wire)
		if _, taken := props[name]; taken {
			name = withHash(name, wire)
		}
		props[name] = props[wire]
		delete(props, wire)
		renames[name] = wire
	}
	if req := stringList(root["required"]); len(req) > 0 {
		back := make(map[string]string, len(renames))
		for name, wire := range renames {
			back[wire] = name
		}
		for i, r := range req {
			if name, ok := back[r]; ok {
				req[i] = name
			}
		}
		root["required"] = toAnyList(req)
	}
	return renames
}

// argumentName makes a valid argument name of a wire name: "user-id"
// becomes "user_id".
func argumentName(wire string) string {
	var b strings.Builder
	for _, r := range wire {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	name := b.String()
	if name == "" || name[0] >= '0' && name[0] <= '9' {
		name = "_" + name
	}
	if len(name) > 64 {
		name = withHash(name, wire)
	}
	return name
}

// withHash shortens name to leave room for a hash of wire, and appends it.
func withHash(name, wire string) string {
	sum := sha256.Sum256([]byte(wire))
	suffix := "_" + hex.EncodeToString(sum[:4])
	if len(name)+len(suffix) > 64 {
		name = name[:64-len(suffix)]
	}
	return name + suffix
}

func stringList(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func toAnyList(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

func intersect(a, b []string) []string {
	set := map[string]bool{}
	for _, x := range b {
		set[x] = true
	}
	var out []string
	for _, x := range a {
		if set[x] {
			out = append(out, x)
		}
	}
	return out
}

func dedupe(l []string) []string {
	seen := map[string]bool{}
	out := l[:0:0]
	for _, x := range l {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func equalJSON(a, b any) bool {
	ab, err1 := json.Marshal(a)
	bb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ab) == string(bb)
}

package schema

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// Bounds on one converted schema, so that a hostile or accidental schema
// cannot exhaust memory, CPU or the stack.
const (
	// maxDepth is how deeply schemas may nest; deeper parts accept anything.
	maxDepth = 64
	// maxNodes is how many schema objects one conversion may produce.
	maxNodes = 10000
	// maxRecursion is how many times a definition may appear inside itself
	// along one path before the recursion is cut.
	maxRecursion = 2
	// maxAnchorScan bounds the search for $anchor names.
	maxAnchorScan = 10000
)

// inliner replaces every reference of one schema document by what it
// points at, so that the converted schema is self-contained: clients that
// resolve references only against #/components (Open WebUI) or by their
// last path segment, or not at all, all see the whole schema. Recursion is
// cut after maxRecursion expansions with a described permissive schema, so
// no consumer can loop.
type inliner struct {
	root    any
	anchors map[string]any
	active  map[string]int // reference targets being expanded on the current path
	nodes   int
	warn    func(format string, args ...any)
}

func newInliner(root any, warn func(string, ...any)) *inliner {
	in := &inliner{root: root, anchors: map[string]any{}, active: map[string]int{}, warn: warn}
	scanned := 0
	var scan func(v any)
	scan = func(v any) {
		if scanned++; scanned > maxAnchorScan {
			return
		}
		switch n := v.(type) {
		case map[string]any:
			if a, ok := n["$anchor"].(string); ok {
				in.anchor(a, n)
			}
			if id, ok := n["$id"].(string); ok && strings.HasPrefix(id, "#") && len(id) > 1 {
				in.anchor(id[1:], n) // draft-07 plain-name fragment
			}
			for _, k := range sortedKeys(n) {
				scan(n[k])
			}
		case []any:
			for _, c := range n {
				scan(c)
			}
		}
	}
	scan(root)
	return in
}

// anchor records the schema an anchor names. The schema is scanned in a
// fixed order, so of an anchor declared twice the same one always wins.
func (in *inliner) anchor(name string, schema map[string]any) {
	if _, dup := in.anchors[name]; dup {
		in.warn("the anchor %q is declared more than once; references to it use the first", name)
		return
	}
	in.anchors[name] = schema
}

// inline returns v with its references replaced. Keywords are visited in
// sorted order, so that which parts the node limit cuts, and the order of
// the warnings, depend only on the schema.
func (in *inliner) inline(v any, depth int) any {
	n, ok := v.(map[string]any)
	if !ok {
		return v // booleans and garbage are normalize's business
	}
	if depth > maxDepth {
		in.warn("the schema nests deeper than %d levels; deeper parts accept anything", maxDepth)
		return map[string]any{}
	}
	if in.nodes++; in.nodes > maxNodes {
		in.warn("the schema is larger than %d schema objects; the rest accepts anything", maxNodes)
		return map[string]any{"description": "(not shown: the schema is too large)"}
	}
	if ref, ok := n["$ref"].(string); ok {
		return in.inlineRef(n, ref, depth)
	}
	out := make(map[string]any, len(n))
	for _, k := range sortedKeys(n) {
		val := n[k]
		switch {
		case k == "$defs" || k == "definitions":
			// Reached through references, which are inlined.
		case schemaKeywords[k]:
			if list, isList := val.([]any); isList && k == "items" { // draft-07 tuple
				out[k] = in.inlineList(list, depth)
			} else {
				out[k] = in.inline(val, depth+1)
			}
		case schemaListKeywords[k]:
			if list, isList := val.([]any); isList {
				out[k] = in.inlineList(list, depth)
			} else {
				out[k] = val
			}
		case schemaMapKeywords[k] || k == "dependencies":
			if m, isMap := val.(map[string]any); isMap {
				o := make(map[string]any, len(m))
				for _, name := range sortedKeys(m) {
					o[name] = in.inline(m[name], depth+1)
				}
				out[k] = o
			} else {
				out[k] = val
			}
		default:
			out[k] = val
		}
	}
	return out
}

func (in *inliner) inlineList(list []any, depth int) []any {
	l := make([]any, len(list))
	for i, s := range list {
		l[i] = in.inline(s, depth+1)
	}
	return l
}

// inlineRef replaces a schema holding $ref by the target, with the
// schema's other keywords laid over it (2020-12 allows them next to $ref).
func (in *inliner) inlineRef(n map[string]any, ref string, depth int) any {
	siblings := make(map[string]any, len(n))
	for k, v := range n {
		if k != "$ref" {
			siblings[k] = v
		}
	}
	sib, _ := in.inline(siblings, depth).(map[string]any)

	target, key, err := in.lookup(ref)
	if err != nil {
		in.warn("%v; it accepts anything", err)
		if _, has := sib["description"]; !has {
			sib["description"] = fmt.Sprintf("(%v)", err)
		}
		return sib
	}
	if in.active[key] >= maxRecursion {
		in.warn("the schema is recursive (%s); the recursion is cut after %d levels", ref, maxRecursion)
		return overlay(recursionCut(target, ref), sib)
	}
	in.active[key]++
	resolved := in.inline(target, depth+1)
	in.active[key]--
	switch r := resolved.(type) {
	case map[string]any:
		return overlay(r, sib)
	case bool:
		if r && len(sib) > 0 {
			return sib
		}
	}
	return resolved
}

// overlay returns base with over's keywords laid over it.
func overlay(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

// recursionCut stands in for a recursive reference: the type of what it
// points at, accepting any content, described.
func recursionCut(target any, ref string) map[string]any {
	cut := map[string]any{
		"description": fmt.Sprintf("(recursive: the same shape as %s again, not expanded further; any value of this type is accepted)", ref),
	}
	if m, ok := target.(map[string]any); ok {
		if t, ok := m["type"]; ok {
			cut["type"] = t
			if t == "object" {
				cut["additionalProperties"] = true
			}
		}
	}
	return cut
}

// errExternalRef reports a reference outside the schema, which is never
// fetched: a tool list must not make the proxy reach out to the network.
var errExternalRef = errors.New("external reference not followed")

// pointerUnescaper unescapes a JSON pointer's reference token.
var pointerUnescaper = strings.NewReplacer("~1", "/", "~0", "~")

// lookup finds what a reference points at inside the schema document. It
// returns a key identifying the target.
func (in *inliner) lookup(ref string) (any, string, error) {
	frag, ok := strings.CutPrefix(ref, "#")
	if !ok {
		return nil, "", fmt.Errorf("reference %q: %w", ref, errExternalRef)
	}
	if frag != "" && !strings.HasPrefix(frag, "/") {
		if a, ok := in.anchors[frag]; ok {
			return a, "#" + frag, nil
		}
		return nil, "", fmt.Errorf("reference %q: no such anchor", ref)
	}
	if unescaped, err := url.PathUnescape(frag); err == nil {
		frag = unescaped
	}
	cur := in.root
	if frag != "" {
		for _, tok := range strings.Split(frag[1:], "/") {
			tok = pointerUnescaper.Replace(tok)
			switch c := cur.(type) {
			case map[string]any:
				next, ok := c[tok]
				if !ok {
					return nil, "", fmt.Errorf("reference %q: nothing at %q", ref, tok)
				}
				cur = next
			case []any:
				i, err := strconv.Atoi(tok)
				if err != nil || i < 0 || i >= len(c) {
					return nil, "", fmt.Errorf("reference %q: no item %q", ref, tok)
				}
				cur = c[i]
			default:
				return nil, "", fmt.Errorf("reference %q: nothing at %q", ref, tok)
			}
		}
	}
	return cur, "#" + frag, nil
}

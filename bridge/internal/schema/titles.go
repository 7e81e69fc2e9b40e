package schema

import "strings"

// DropRepeatedTitles removes, from JSON schemas decoded into generic
// values, every title that an earlier schema already has, so that the
// titles of one document are unique: code generators make a class of each
// titled object schema and name it by its title (openapi-python-client
// refuses a second class of the same name, and with it the operation that
// uses it), and the same definition inlined twice, or in two tools, would
// otherwise bring its title twice. Titles are compared the way class names
// are made of them, ignoring case and everything but letters and digits.
// The schemas are visited in the order given, each depth first in sorted
// keyword order, so the first occurrence keeps its title. A repeat is
// dropped rather than qualified: the generator then names the class by the
// schema's place (property and parent names), which is unique, where a
// made-up title would be neither the server's nor unique by construction.
// It reports whether it removed any.
func DropRepeatedTitles(schemas ...any) bool {
	return Titles{}.Drop(schemas...)
}

// Titles is the set of the titles a document's schemas already have, by
// the key DropRepeatedTitles compares them by; the zero value is empty.
type Titles map[string]bool

// Drop removes, from schemas decoded into generic values, every title t
// holds or an earlier one has, as DropRepeatedTitles does, and adds their
// titles to t. It reports whether it removed any.
func (t Titles) Drop(schemas ...any) bool {
	if t == nil {
		t = Titles{}
	}
	dropped := false
	for _, s := range schemas {
		walkTitles(s, func(m map[string]any, key string) {
			if t[key] {
				delete(m, "title")
				dropped = true
			}
			t[key] = true
		})
	}
	return dropped
}

// TitleKeys returns the keys of the titles of a schema decoded into a
// generic value, in the order Drop visits them, repeats included: whether
// Drop would remove any of its titles after others is known from them
// alone.
func TitleKeys(v any) []string {
	var keys []string
	walkTitles(v, func(_ map[string]any, key string) { keys = append(keys, key) })
	return keys
}

// walkTitles calls visit with every titled schema of v and its title's key,
// depth first in sorted keyword order.
func walkTitles(v any, visit func(m map[string]any, key string)) {
	var walk func(v any, depth int)
	walk = func(v any, depth int) {
		m, ok := v.(map[string]any)
		if !ok || depth > 2*maxDepth {
			return
		}
		if t, ok := m["title"].(string); ok {
			visit(m, titleKey(t))
		}
		for _, k := range sortedKeys(m) {
			switch val := m[k].(type) {
			case map[string]any:
				switch {
				case schemaKeywords[k]:
					walk(val, depth+1)
				case schemaMapKeywords[k] || k == "$defs":
					for _, name := range sortedKeys(val) {
						walk(val[name], depth+1)
					}
				}
			case []any:
				if schemaListKeywords[k] {
					for _, s := range val {
						walk(s, depth+1)
					}
				}
			}
		}
	}
	walk(v, 0)
}

// titleKey is what a title becomes in a class name, for comparison.
func titleKey(t string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(t) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127 {
			b.WriteRune(r)
		}
	}
	return b.String()
}

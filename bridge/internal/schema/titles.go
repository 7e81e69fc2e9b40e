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
	seen := map[string]bool{}
	dropped := false
	var walk func(v any, depth int)
	walk = func(v any, depth int) {
		m, ok := v.(map[string]any)
		if !ok || depth > 2*maxDepth {
			return
		}
		if t, ok := m["title"].(string); ok {
			key := titleKey(t)
			if seen[key] {
				delete(m, "title")
				dropped = true
			}
			seen[key] = true
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
	for _, s := range schemas {
		walk(s, 0)
	}
	return dropped
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

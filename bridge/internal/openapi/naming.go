package openapi

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// MaxOperationID is the longest operationId produced: LLM providers take
// function names of at most 64 characters.
const MaxOperationID = 64

// Namer hands out unique operationIds and path segments for one document.
// The zero value is ready to use.
type Namer struct {
	ids   map[string]bool
	paths map[string]bool
}

// OperationID returns a unique operationId made of the parts joined by
// "_", restricted to [A-Za-z0-9_] (the strictest rule among LLM providers),
// not starting with a digit, at most MaxOperationID long. A name that had
// to be shortened, or that collides with one handed out before, gets a short
// hash of the original appended, so what it becomes depends only on the name
// (though which of two colliding names keeps the plain form depends on which
// comes first).
func (n *Namer) OperationID(parts ...string) string {
	if n.ids == nil {
		n.ids = map[string]bool{}
	}
	original := strings.Join(parts, "\x00")
	id := sanitize(strings.Join(parts, "_"), false)
	if id == "" {
		id = "tool"
	}
	if id[0] >= '0' && id[0] <= '9' {
		id = "_" + id
	}
	if len(id) > MaxOperationID {
		id = withHash(id, original, MaxOperationID)
	}
	return claim(n.ids, id, original, MaxOperationID)
}

// PathSegment returns a unique URL path segment for a tool: the name
// itself when it is made of URL-safe characters, so that paths match the
// tool names users know, else a sanitized form.
func (n *Namer) PathSegment(name string) string {
	if n.paths == nil {
		n.paths = map[string]bool{}
	}
	seg := name
	if !urlSafe(name) {
		seg = sanitize(name, true)
		if seg == "" {
			seg = "tool"
		}
	}
	return claim(n.paths, seg, name, 0)
}

// Reserve marks a path segment as taken, for names the router uses itself.
func (n *Namer) Reserve(segment string) {
	if n.paths == nil {
		n.paths = map[string]bool{}
	}
	n.paths[segment] = true
}

// claim records name in taken, adding a hash of original (then a counter)
// while it collides. limit > 0 caps the length.
func claim(taken map[string]bool, name, original string, limit int) string {
	if !taken[name] {
		taken[name] = true
		return name
	}
	if limit == 0 {
		limit = len(name) + 9
	}
	candidate := withHash(name, original, limit)
	for i := 2; taken[candidate]; i++ {
		candidate = withHash(name, original+"\x00"+strconv.Itoa(i), limit)
	}
	taken[candidate] = true
	return candidate
}

// withHash returns name cut to fit limit with "_" and 8 hex digits of a
// hash of original appended.
func withHash(name, original string, limit int) string {
	sum := sha256.Sum256([]byte(original))
	suffix := "_" + hex.EncodeToString(sum[:4])
	if len(name)+len(suffix) > limit {
		name = name[:limit-len(suffix)]
	}
	return name + suffix
}

// sanitize replaces every character outside [A-Za-z0-9_] (plus "-" and "."
// when pathSafe) with "_" and trims underscores at both ends.
func sanitize(s string, pathSafe bool) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		case pathSafe && (r == '-' || r == '.'):
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	out := strings.Trim(b.String(), "_")
	if pathSafe {
		out = strings.Trim(out, ".")
	}
	return out
}

// urlSafe reports whether s can be a path segment as it is: only unreserved
// URL characters, and not a dot segment.
func urlSafe(s string) bool {
	if s == "" || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '-', r == '.', r == '_', r == '~':
		default:
			return false
		}
	}
	return true
}

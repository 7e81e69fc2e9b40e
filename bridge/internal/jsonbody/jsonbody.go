package jsonbody

import (
	"bytes"
	"fmt"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// Error says what is wrong with a body and where.
type Error struct {
	// Offset is the byte offset of the fault in the body.
	Offset int
	// Kind is the sort of fault.
	Kind Kind
	// Reason says what is wrong, such as "invalid UTF-8 in a string".
	Reason string
}

// Kind is a sort of fault, for a caller that answers each differently.
type Kind uint8

// The faults Check finds.
const (
	// Syntax: the body is not one JSON value.
	Syntax Kind = iota
	// InvalidUTF8: a string holds bytes that are not UTF-8.
	InvalidUTF8
	// RepeatedName: an object has the same member name twice.
	RepeatedName
	// TooDeep: arrays and objects nest deeper than the limit.
	TooDeep
)

func (e *Error) Error() string {
	return fmt.Sprintf("byte offset %d: %s", e.Offset, e.Reason)
}

// Check reports the first fault of b as an *Error, or nil when b is one
// JSON value, surrounded by white space at most, with valid UTF-8, unique
// member names in every object, and at most maxDepth nested arrays and
// objects.
func Check(b []byte, maxDepth int) error {
	c := checkers.Get().(*checker)
	defer c.release()
	return c.check(b, maxDepth, false)
}

// Members checks b as Check does and, when b is an object without fault,
// calls f with the name (decoded) and the value (as it stands in b) of
// each of its members, in order. It reports an error if b is not an
// object.
func Members(b []byte, maxDepth int, f func(name string, value []byte)) error {
	return RawMembers(b, maxDepth, func(name []byte, escaped bool, value []byte) {
		f(decodeName(name, escaped), value)
	})
}

// Object checks b as Check does, and reports an error if b is not an
// object.
func Object(b []byte, maxDepth int) error {
	c := checkers.Get().(*checker)
	defer c.release()
	return c.checkObject(b, maxDepth, false)
}

// RawMembers is Members with each name as it stands in b, quotes
// excluded: escaped reports whether it holds escapes, which are not
// decoded. It allocates nothing for a body whose objects have up to
// linearScanKeys members, none of them escaped.
func RawMembers(b []byte, maxDepth int, f func(name []byte, escaped bool, value []byte)) error {
	c := checkers.Get().(*checker)
	defer c.release()
	if err := c.checkObject(b, maxDepth, true); err != nil {
		return err
	}
	for _, m := range c.members {
		f(b[m.name.start:m.name.end], m.name.escaped, b[m.start:m.end])
	}
	return nil
}

// checkObject is check, and an error if b is not an object.
func (c *checker) checkObject(b []byte, maxDepth int, members bool) error {
	if err := c.check(b, maxDepth, members); err != nil {
		return err
	}
	if t := bytes.TrimLeft(b, " \t\r\n"); t[0] != '{' {
		return &Error{Offset: len(b) - len(t), Kind: Syntax, Reason: "not a JSON object"}
	}
	return nil
}

// release returns c to the pool, keeping no body alive, nor the room of
// an object with many members.
func (c *checker) release() {
	c.b = nil
	if cap(c.members) > 64*linearScanKeys {
		c.members = nil
	}
	checkers.Put(c)
}

// check is Check, noting in c.members, when members is set, each member
// of a top-level object.
func (c *checker) check(b []byte, maxDepth int, members bool) error {
	*c = checker{b: b, maxDepth: maxDepth, keys: c.keys[:0], members: c.members[:0], collect: members}
	c.skipSpace()
	if c.i == len(b) {
		return c.fail("no JSON value")
	}
	if err := c.value(0); err != nil {
		return err
	}
	c.skipSpace()
	if c.i != len(b) {
		return c.fail(fmt.Sprintf("unexpected %s after the JSON value", c.describe()))
	}
	return nil
}

// linearScanKeys is how many member names of one object are compared with
// each other directly; larger objects use a map.
const linearScanKeys = 16

// checkers are reused, with the room their keys and members grew to.
var checkers = sync.Pool{New: func() any {
	return &checker{keys: make([]key, 0, 4*linearScanKeys), members: make([]member, 0, linearScanKeys)}
}}

type checker struct {
	b        []byte
	i        int
	maxDepth int
	// keys holds the member names of the objects being read, innermost
	// last; each object uses keys[start:].
	keys []key
	// collect says to note each member of a top-level object in members.
	collect bool
	members []member
}

// member is a member of the top-level object: its name, and its value,
// b[start:end].
type member struct {
	name       key
	start, end int
}

// key is an object member's name as it stands in the body, b[start:end]
// (quotes excluded); escaped reports whether it holds escapes, in which
// case it is compared by what it decodes to. Offsets rather than a slice
// keep the pooled checkers free of pointers into old bodies.
type key struct {
	start, end int
	escaped    bool
}

func (c *checker) fail(reason string) error {
	return &Error{Offset: c.i, Kind: Syntax, Reason: reason}
}

// describe names the byte at the cursor for an error message.
func (c *checker) describe() string {
	if c.i >= len(c.b) {
		return "end of the body"
	}
	ch := c.b[c.i]
	if ch >= 0x20 && ch < 0x7f {
		return fmt.Sprintf("character %q", ch)
	}
	return fmt.Sprintf("byte 0x%02x", ch)
}

func (c *checker) skipSpace() { c.i = skipSpace(c.b, c.i) }

// value reads one value at the cursor; depth is the number of arrays and
// objects it is inside.
func (c *checker) value(depth int) error {
	if c.i >= len(c.b) {
		return c.fail("unexpected end of the body")
	}
	switch ch := c.b[c.i]; {
	case ch == '{':
		return c.object(depth + 1)
	case ch == '[':
		return c.array(depth + 1)
	case ch == '"':
		_, err := c.str()
		return err
	case ch == '-' || ('0' <= ch && ch <= '9'):
		return c.number()
	case ch == 't':
		return c.literal("true")
	case ch == 'f':
		return c.literal("false")
	case ch == 'n':
		return c.literal("null")
	}
	return c.fail(fmt.Sprintf("unexpected %s where a value should start", c.describe()))
}

func (c *checker) literal(word string) error {
	if len(c.b)-c.i < len(word) || string(c.b[c.i:c.i+len(word)]) != word {
		return c.fail(fmt.Sprintf("unexpected %s where a value should start", c.describe()))
	}
	c.i += len(word)
	return nil
}

func (c *checker) tooDeep(depth int) error {
	if depth > c.maxDepth {
		return &Error{Offset: c.i, Kind: TooDeep, Reason: fmt.Sprintf("nested more than %d levels deep", c.maxDepth)}
	}
	return nil
}

func (c *checker) array(depth int) error {
	if err := c.tooDeep(depth); err != nil {
		return err
	}
	c.i++ // [
	c.skipSpace()
	if c.i < len(c.b) && c.b[c.i] == ']' {
		c.i++
		return nil
	}
	for {
		c.skipSpace()
		if err := c.value(depth); err != nil {
			return err
		}
		c.skipSpace()
		if c.i >= len(c.b) {
			return c.fail("unexpected end of the body inside an array")
		}
		switch c.b[c.i] {
		case ',':
			c.i++
		case ']':
			c.i++
			return nil
		default:
			return c.fail(fmt.Sprintf("unexpected %s in an array: want ',' or ']'", c.describe()))
		}
	}
}

func (c *checker) object(depth int) error {
	if err := c.tooDeep(depth); err != nil {
		return err
	}
	c.i++ // {
	start := len(c.keys)
	defer func() { c.keys = c.keys[:start] }()
	var names map[string]bool // once the object has more than linearScanKeys members
	c.skipSpace()
	if c.i < len(c.b) && c.b[c.i] == '}' {
		c.i++
		return nil
	}
	for {
		c.skipSpace()
		if c.i >= len(c.b) || c.b[c.i] != '"' {
			return c.fail(fmt.Sprintf("unexpected %s in an object: want a member name in double quotes", c.describe()))
		}
		at := c.i
		k, err := c.str()
		if err != nil {
			return err
		}
		if names == nil && len(c.keys)-start < linearScanKeys {
			for _, seen := range c.keys[start:] {
				if c.sameName(seen, k) {
					return c.repeated(at, k)
				}
			}
			c.keys = append(c.keys, k)
		} else {
			if names == nil {
				names = make(map[string]bool, 2*linearScanKeys)
				for _, seen := range c.keys[start:] {
					names[c.decodeName(seen)] = true
				}
			}
			name := c.decodeName(k)
			if names[name] {
				return c.repeated(at, k)
			}
			names[name] = true
		}
		c.skipSpace()
		if c.i >= len(c.b) || c.b[c.i] != ':' {
			return c.fail(fmt.Sprintf("unexpected %s after a member name: want ':'", c.describe()))
		}
		c.i++
		c.skipSpace()
		value := c.i
		if err := c.value(depth); err != nil {
			return err
		}
		if depth == 1 && c.collect {
			c.members = append(c.members, member{name: k, start: value, end: c.i})
		}
		c.skipSpace()
		if c.i >= len(c.b) {
			return c.fail("unexpected end of the body inside an object")
		}
		switch c.b[c.i] {
		case ',':
			c.i++
		case '}':
			c.i++
			return nil
		default:
			return c.fail(fmt.Sprintf("unexpected %s in an object: want ',' or '}'", c.describe()))
		}
	}
}

// repeated is the error of a member name k, at offset at, that its object
// already has.
func (c *checker) repeated(at int, k key) error {
	return &Error{Offset: at, Kind: RepeatedName, Reason: fmt.Sprintf("the member name %s appears twice in one object", c.quoteName(k))}
}

// str reads a string at the cursor and returns its contents as they stand.
func (c *checker) str() (key, error) {
	c.i++ // "
	start := c.i
	escaped := false
	for c.i < len(c.b) {
		ch := c.b[c.i]
		switch {
		case ch == '"':
			k := key{start: start, end: c.i, escaped: escaped}
			c.i++
			return k, nil
		case ch == '\\':
			escaped = true
			if err := c.escape(); err != nil {
				return key{}, err
			}
		case ch < 0x20:
			return key{}, c.fail(fmt.Sprintf("control character 0x%02x in a string: escape it", ch))
		case ch < utf8.RuneSelf:
			c.i++
		default:
			r, size := utf8.DecodeRune(c.b[c.i:])
			if r == utf8.RuneError && size <= 1 {
				return key{}, &Error{Offset: c.i, Kind: InvalidUTF8, Reason: "invalid UTF-8 in a string"}
			}
			c.i += size
		}
	}
	return key{}, c.fail("unexpected end of the body inside a string")
}

// escape reads one escape sequence at the cursor.
func (c *checker) escape() error {
	if c.i+1 >= len(c.b) {
		c.i = len(c.b)
		return c.fail("unexpected end of the body inside a string")
	}
	switch c.b[c.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		c.i += 2
		return nil
	case 'u':
		if c.i+6 > len(c.b) || !isHex4(c.b[c.i+2:c.i+6]) {
			return c.fail(`invalid \u escape in a string: want four hexadecimal digits`)
		}
		c.i += 6
		return nil
	}
	c.i++
	return c.fail(fmt.Sprintf("invalid escape %s in a string", c.describe()))
}

func isHex4(b []byte) bool {
	for _, ch := range b[:4] {
		if !('0' <= ch && ch <= '9' || 'a' <= ch && ch <= 'f' || 'A' <= ch && ch <= 'F') {
			return false
		}
	}
	return true
}

func (c *checker) number() error {
	if c.b[c.i] == '-' {
		c.i++
	}
	switch {
	case c.i < len(c.b) && c.b[c.i] == '0':
		c.i++
	case c.i < len(c.b) && '1' <= c.b[c.i] && c.b[c.i] <= '9':
		c.digits()
	default:
		return c.fail(fmt.Sprintf("unexpected %s in a number: want a digit", c.describe()))
	}
	if c.i < len(c.b) && c.b[c.i] == '.' {
		c.i++
		if !c.digits() {
			return c.fail(fmt.Sprintf("unexpected %s in a number: want a digit after '.'", c.describe()))
		}
	}
	if c.i < len(c.b) && (c.b[c.i] == 'e' || c.b[c.i] == 'E') {
		c.i++
		if c.i < len(c.b) && (c.b[c.i] == '+' || c.b[c.i] == '-') {
			c.i++
		}
		if !c.digits() {
			return c.fail(fmt.Sprintf("unexpected %s in a number: want a digit in the exponent", c.describe()))
		}
	}
	return nil
}

// digits reads a run of digits and reports whether there was one.
func (c *checker) digits() bool {
	start := c.i
	for c.i < len(c.b) && '0' <= c.b[c.i] && c.b[c.i] <= '9' {
		c.i++
	}
	return c.i > start
}

// sameName reports whether two member names are the same once decoded.
func (c *checker) sameName(a, b key) bool {
	if !a.escaped && !b.escaped {
		return string(c.b[a.start:a.end]) == string(c.b[b.start:b.end])
	}
	return c.decodeName(a) == c.decodeName(b)
}

// decodeName returns what a member name decodes to.
func (c *checker) decodeName(k key) string {
	return decodeName(c.b[k.start:k.end], k.escaped)
}

// decodeName returns what b, a member name as it stands in a body (quotes
// excluded) decodes to. Its escapes were checked while reading it; a lone
// surrogate decodes to U+FFFD, as encoding/json decodes it.
func decodeName(b []byte, escaped bool) string {
	if !escaped {
		return string(b)
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		if b[i] != '\\' {
			out = append(out, b[i])
			i++
			continue
		}
		switch b[i+1] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hex4(b[i+2:])
			i += 6
			if utf16.IsSurrogate(r) && i+6 <= len(b) && b[i] == '\\' && b[i+1] == 'u' {
				if pair := utf16.DecodeRune(r, hex4(b[i+2:])); pair != utf8.RuneError {
					r = pair
					i += 6
				}
			}
			if utf16.IsSurrogate(r) {
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
			continue
		default: // '"', '\\', '/'
			out = append(out, b[i+1])
		}
		i += 2
	}
	return string(out)
}

func hex4(b []byte) rune {
	var r rune
	for _, ch := range b[:4] {
		r <<= 4
		switch {
		case ch <= '9':
			r |= rune(ch - '0')
		case ch <= 'F':
			r |= rune(ch - 'A' + 10)
		default:
			r |= rune(ch - 'a' + 10)
		}
	}
	return r
}

// quoteName quotes a member name for an error message, as it stands in
// the body, shortened when long.
func (c *checker) quoteName(k key) string {
	const max = 64
	raw := c.b[k.start:k.end]
	if len(raw) > max {
		return fmt.Sprintf("%q…", raw[:max])
	}
	return fmt.Sprintf("%q", raw)
}

// Split calls f with each member of b as RawMembers does, without checking
// b again: b must be an object that a check accepted, alone or inside a
// larger value (a member of a body RawMembers gave). It is the cheap way
// into the nested objects of a checked body. On bytes no check accepted,
// what it passes to f is unspecified, but it returns.
func Split(b []byte, f func(name []byte, escaped bool, value []byte)) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return
	}
	i++
	for {
		i = skipSpace(b, i)
		if i >= len(b) || b[i] != '"' {
			return // '}'
		}
		end, escaped := stringEnd(b, i)
		if end < 0 {
			return
		}
		name := b[i+1 : end-1]
		if i = skipSpace(b, end); i >= len(b) || b[i] != ':' {
			return
		}
		i = skipSpace(b, i+1)
		end = valueEnd(b, i)
		if end < 0 {
			return
		}
		f(name, escaped, b[i:end])
		if i = skipSpace(b, end); i >= len(b) || b[i] != ',' {
			return
		}
		i++
	}
}

// skipSpace returns the offset of the first byte from i on in b that is
// not white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the offset after the string that starts at b[i] (a
// quote), -1 if it does not end, and whether it holds escapes.
func stringEnd(b []byte, i int) (int, bool) {
	escaped := false
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			return i + 1, escaped
		}
	}
	return -1, escaped
}

// valueEnd returns the offset after the value that starts at b[i], -1 if
// it does not end.
func valueEnd(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		end, _ := stringEnd(b, i)
		return end
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				end, _ := stringEnd(b, i)
				if end < 0 {
					return -1
				}
				i = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return -1
	}
	for ; i < len(b); i++ { // a number or a literal
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return i
		}
	}
	return i
}

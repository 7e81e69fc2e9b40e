package schema

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// decodeInstance decodes the JSON the validator checks as
// jsonschema.UnmarshalJSON does (numbers as json.Number, objects as
// map[string]any, the last of repeated names winning), straight from the
// bytes: jsonschema.UnmarshalJSON reads them through a json.Decoder,
// whose buffer, grown by doubling, takes up to three times the arguments'
// size again and a kilobyte for the smallest. Whatever the fast decoding
// does not accept (invalid JSON, very deep nesting) is left to
// jsonschema.UnmarshalJSON, whose errors the validator reports.
func decodeInstance(b []byte) (any, error) {
	d := instanceDecoder{b: b}
	v, ok := d.value(0)
	if ok {
		d.space()
		if d.i == len(d.b) {
			return v, nil
		}
	}
	return jsonschema.UnmarshalJSON(bytes.NewReader(b))
}

// maxDecodeDepth bounds the fast decoding's recursion; deeper documents
// take the slow path, which has its own bound.
const maxDecodeDepth = 1000

// instanceDecoder is the fast decoding's state: the input and the offset
// of the next byte.
type instanceDecoder struct {
	b []byte
	i int
}

func (d *instanceDecoder) space() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// value decodes the value at the offset; ok is false where the slow path
// must decide.
func (d *instanceDecoder) value(depth int) (v any, ok bool) {
	d.space()
	if d.i >= len(d.b) || depth > maxDecodeDepth {
		return nil, false
	}
	switch c := d.b[d.i]; {
	case c == '{':
		return d.object(depth)
	case c == '[':
		return d.array(depth)
	case c == '"':
		return d.str()
	case c == '-' || c >= '0' && c <= '9':
		return d.number()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	}
	return nil, false
}

func (d *instanceDecoder) literal(word string) bool {
	if !bytes.HasPrefix(d.b[d.i:], []byte(word)) {
		return false
	}
	d.i += len(word)
	return true
}

func (d *instanceDecoder) object(depth int) (any, bool) {
	d.i++ // {
	m := map[string]any{}
	d.space()
	if d.i < len(d.b) && d.b[d.i] == '}' {
		d.i++
		return m, true
	}
	for {
		d.space()
		if d.i >= len(d.b) || d.b[d.i] != '"' {
			return nil, false
		}
		k, ok := d.str()
		if !ok {
			return nil, false
		}
		d.space()
		if d.i >= len(d.b) || d.b[d.i] != ':' {
			return nil, false
		}
		d.i++
		v, ok := d.value(depth + 1)
		if !ok {
			return nil, false
		}
		m[k.(string)] = v
		if end, ok := d.after('}'); !ok || end {
			return m, ok
		}
	}
}

func (d *instanceDecoder) array(depth int) (any, bool) {
	d.i++ // [
	a := []any{}
	d.space()
	if d.i < len(d.b) && d.b[d.i] == ']' {
		d.i++
		return a, true
	}
	for {
		v, ok := d.value(depth + 1)
		if !ok {
			return nil, false
		}
		a = append(a, v)
		if end, ok := d.after(']'); !ok || end {
			return a, ok
		}
	}
}

// after takes what follows a member or an element: a comma (more to come)
// or the closing byte (end); ok is false for anything else.
func (d *instanceDecoder) after(closing byte) (end, ok bool) {
	d.space()
	if d.i >= len(d.b) {
		return false, false
	}
	switch d.b[d.i] {
	case ',':
		d.i++
		return false, true
	case closing:
		d.i++
		return true, true
	}
	return false, false
}

// str decodes a string: as it is when it has no escape and is valid
// UTF-8, else through encoding/json.
func (d *instanceDecoder) str() (any, bool) {
	start := d.i
	d.i++ // "
	plain := true
	for d.i < len(d.b) {
		switch c := d.b[d.i]; {
		case c == '"':
			d.i++
			raw := d.b[start:d.i]
			if plain && utf8.Valid(raw) {
				return string(raw[1 : len(raw)-1]), true
			}
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return nil, false
			}
			return s, true
		case c == '\\':
			plain = false
			d.i += 2
		case c < 0x20:
			return nil, false
		default:
			d.i++
		}
	}
	return nil, false
}

// number takes a number by JSON's grammar, as its text.
func (d *instanceDecoder) number() (any, bool) {
	start := d.i
	if d.b[d.i] == '-' {
		d.i++
	}
	switch {
	case d.i < len(d.b) && d.b[d.i] == '0':
		d.i++
	case d.digits() == 0:
		return nil, false
	}
	if d.i < len(d.b) && d.b[d.i] == '.' {
		d.i++
		if d.digits() == 0 {
			return nil, false
		}
	}
	if d.i < len(d.b) && (d.b[d.i] == 'e' || d.b[d.i] == 'E') {
		d.i++
		if d.i < len(d.b) && (d.b[d.i] == '+' || d.b[d.i] == '-') {
			d.i++
		}
		if d.digits() == 0 {
			return nil, false
		}
	}
	return json.Number(d.b[start:d.i]), true
}

func (d *instanceDecoder) digits() int {
	n := 0
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
		n++
	}
	return n
}

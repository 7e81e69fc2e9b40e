package bridge

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/jsonbody"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/schema"
)

// member is one member of a JSON object, its value kept as sent.
type member struct {
	key   string
	value json.RawMessage
}

// members splits a JSON object into its members, in order, each value a
// part of obj rather than a copy.
func members(obj json.RawMessage) ([]member, error) {
	var out []member
	err := jsonbody.Members(obj, MaxBodyDepth, func(name string, value []byte) {
		out = append(out, member{key: name, value: value})
	})
	return out, err
}

// object joins members into a JSON object, values as they were sent.
func object(ms []member) json.RawMessage {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(m.key)
		b.Write(k)
		b.WriteByte(':')
		b.Write(m.value)
	}
	b.WriteByte('}')
	return b.Bytes()
}

// prepareArgs turns a request body into the arguments the server gets:
// unwrapped for a tool that takes a non-object input, with renamed
// arguments back under their wire names, validated against the tool's
// original input schema (and, for a lenient server, coerced when that makes
// them valid). It returns the answer to arguments it refuses.
func prepareArgs(body json.RawMessage, s *ServerConfig, rt *route) (json.RawMessage, *httpError) {
	args := body
	input, _ := rt.schemas()
	switch {
	case input.Wrapped != "":
		ms, err := members(body)
		if err != nil {
			return nil, invalidArgs(http.StatusBadRequest, err.Error())
		}
		found := false
		for _, m := range ms {
			if m.key == input.Wrapped {
				args, found = m.value, true
			}
		}
		if !found {
			return nil, invalidArgs(http.StatusUnprocessableEntity,
				fmt.Sprintf("this tool takes a single input, sent as the %q argument", input.Wrapped))
		}
	case len(input.Renames) > 0:
		ms, err := members(body)
		if err != nil {
			return nil, invalidArgs(http.StatusBadRequest, err.Error())
		}
		given := make(map[string]bool, len(ms))
		for _, m := range ms {
			given[m.key] = true
		}
		kept := ms[:0]
		for _, m := range ms {
			if wire, ok := input.Renames[m.key]; ok {
				if given[wire] {
					continue // sent under both names: the wire name wins
				}
				m.key = wire
			}
			kept = append(kept, m)
		}
		args = object(kept)
	}
	return checkArgs(args, s, rt)
}

// checkArgs validates arguments, as the server gets them, against the
// tool's original input schema, coercing them for a lenient server when
// that makes them valid. It returns the answer to arguments it refuses.
func checkArgs(args json.RawMessage, s *ServerConfig, rt *route) (json.RawMessage, *httpError) {
	v := rt.argsValidator()
	if v == nil {
		return args, nil
	}
	errs := v.Validate(args)
	if errs == nil {
		return args, nil
	}
	if s.LenientArgs {
		if coerced, ok := v.Coerce(args); ok {
			return coerced, nil
		}
	}
	e := invalidArgs(http.StatusUnprocessableEntity, schema.Summary(errs))
	e.Detail.Errors = errs
	return nil, e
}

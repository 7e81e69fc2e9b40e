package schema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Validator checks a tool's arguments against its original input schema,
// compiled once (see Cache). It is safe for concurrent use.
type Validator struct {
	schema *jsonschema.Schema
	// Warnings says what the validator cannot check (patterns Go's regexp
	// syntax does not support are not enforced).
	Warnings []string
}

// ArgumentError is one way arguments fail their schema.
type ArgumentError struct {
	// Path is a JSON pointer to the failing value; "" is the whole object.
	Path    string `json:"path"`
	Message string `json:"message"`
}

// maxArgumentErrors bounds the errors reported for one call.
const maxArgumentErrors = 10

var printer = message.NewPrinter(language.English)

// errNoLoading refuses every reference outside the schema: a tool list must
// not make the proxy read local files or reach out to the network.
var errNoLoading = errors.New("references outside the schema are not loaded")

type noLoader struct{}

func (noLoader) Load(string) (any, error) { return nil, errNoLoading }

// NewValidator compiles a tool's raw input schema, in the draft its
// $schema names (2020-12 when it names none). An error means the tool's
// arguments cannot be checked here; the server still checks them.
func NewValidator(raw json.RawMessage) (*Validator, error) {
	v := &Validator{}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("the input schema is not valid JSON: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.UseLoader(noLoader{})
	unchecked := map[string]bool{}
	c.UseRegexpEngine(func(pattern string) (jsonschema.Regexp, error) {
		re, err := regexp.Compile(pattern)
		if err != nil {
			// ECMA-262 features such as lookahead: not enforced here.
			if !unchecked[pattern] {
				unchecked[pattern] = true
				v.Warnings = append(v.Warnings, fmt.Sprintf("pattern %q is not checked (%v)", pattern, err))
			}
			return anything(pattern), nil
		}
		return re, nil
	})
	const url = "mcp-tool:///input-schema.json"
	if err := c.AddResource(url, doc); err != nil {
		return nil, fmt.Errorf("the input schema cannot be compiled: %w", err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		return nil, fmt.Errorf("the input schema cannot be compiled: %w", err)
	}
	v.schema = sch
	return v, nil
}

// anything is a pattern that is not enforced.
type anything string

func (a anything) String() string        { return string(a) }
func (anything) MatchString(string) bool { return true }

// Validate returns nil when args, a JSON object, satisfy the schema, and
// else what is wrong with them.
func (v *Validator) Validate(args json.RawMessage) []ArgumentError {
	inst, err := decodeInstance(args)
	if err != nil {
		return []ArgumentError{{Message: "the arguments are not valid JSON: " + err.Error()}}
	}
	return v.check(inst)
}

func (v *Validator) check(inst any) []ArgumentError {
	err := v.schema.Validate(inst)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []ArgumentError{{Message: err.Error()}}
	}
	var out []ArgumentError
	seen := map[ArgumentError]bool{}
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(out) >= maxArgumentErrors {
			return
		}
		if len(e.Causes) == 0 {
			ae := ArgumentError{Path: pointer(e.InstanceLocation), Message: e.ErrorKind.LocalizedString(printer)}
			if !seen[ae] {
				seen[ae] = true
				out = append(out, ae)
			}
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	if len(out) == 0 {
		out = append(out, ArgumentError{Message: ve.ErrorKind.LocalizedString(printer)})
	}
	return out
}

// pointerEscaper escapes a JSON pointer's reference token.
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// pointer makes a JSON pointer of an instance location.
func pointer(loc []string) string {
	var b strings.Builder
	for _, tok := range loc {
		b.WriteByte('/')
		b.WriteString(pointerEscaper.Replace(tok))
	}
	return b.String()
}

// Summary makes one line of errors, for the message an LLM reads first.
func Summary(errs []ArgumentError) string {
	parts := make([]string, 0, min(len(errs), 3))
	for _, e := range errs[:min(len(errs), 3)] {
		where := e.Path
		if where == "" {
			where = "the arguments"
		}
		parts = append(parts, where+": "+e.Message)
	}
	s := "the arguments do not match the tool's input schema: " + strings.Join(parts, "; ")
	if len(errs) > 3 {
		s += fmt.Sprintf(" (and %d more)", len(errs)-3)
	}
	return s
}

// maxCoerceRounds bounds the passes Coerce makes.
const maxCoerceRounds = 5

// Coerce makes invalid arguments valid the lenient way, for LLMs that send
// every value as a string: a string holding a number or a boolean becomes
// one where the schema wants it, and a null given for an argument that does
// not accept null is left out. It returns the coerced arguments, and false
// when they are still invalid (the caller then reports the original errors).
func (v *Validator) Coerce(args json.RawMessage) (json.RawMessage, bool) {
	inst, err := decodeInstance(args)
	if err != nil {
		return nil, false
	}
	for range maxCoerceRounds {
		err := v.schema.Validate(inst)
		if err == nil {
			out, err := json.Marshal(inst)
			return out, err == nil
		}
		var ve *jsonschema.ValidationError
		if !errors.As(err, &ve) {
			return nil, false
		}
		changed := false
		var fix func(e *jsonschema.ValidationError)
		fix = func(e *jsonschema.ValidationError) {
			for _, c := range e.Causes {
				fix(c)
			}
			t, ok := e.ErrorKind.(*kind.Type)
			if !ok {
				return
			}
			inst, changed = coerceAt(inst, e.InstanceLocation, t.Want, changed)
		}
		fix(ve)
		if !changed {
			return nil, false
		}
	}
	return nil, false
}

// coerceAt converts the value at loc to one of the wanted types, or drops a
// null member of an object. It reports whether it changed anything.
func coerceAt(inst any, loc []string, want []string, changed bool) (any, bool) {
	if len(loc) == 0 {
		return inst, changed
	}
	parent := inst
	for _, tok := range loc[:len(loc)-1] {
		parent = child(parent, tok)
	}
	last := loc[len(loc)-1]
	switch p := parent.(type) {
	case map[string]any:
		val, ok := p[last]
		if !ok {
			return inst, changed
		}
		if val == nil {
			delete(p, last)
			return inst, true
		}
		if c, ok := convertString(val, want); ok {
			p[last] = c
			return inst, true
		}
	case []any:
		i, err := strconv.Atoi(last)
		if err != nil || i < 0 || i >= len(p) {
			return inst, changed
		}
		if c, ok := convertString(p[i], want); ok {
			p[i] = c
			return inst, true
		}
	}
	return inst, changed
}

func child(v any, tok string) any {
	switch c := v.(type) {
	case map[string]any:
		return c[tok]
	case []any:
		if i, err := strconv.Atoi(tok); err == nil && i >= 0 && i < len(c) {
			return c[i]
		}
	}
	return nil
}

// convertString converts a string holding a number or boolean into one of
// the wanted types.
func convertString(v any, want []string) (any, bool) {
	s, ok := v.(string)
	if !ok {
		return nil, false
	}
	s = strings.TrimSpace(s)
	for _, w := range want {
		switch w {
		case "integer", "number":
			n := json.Number(s)
			if _, err := n.Float64(); err == nil && json.Valid([]byte(s)) {
				return n, true
			}
		case "boolean":
			if b, err := strconv.ParseBool(s); err == nil {
				return b, true
			}
		}
	}
	return nil, false
}

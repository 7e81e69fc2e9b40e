package schema

import (
	"encoding/json"
	"strings"
	"testing"
)

// Schemas of the validation benchmarks: a small flat one, and a nested one
// with $defs, references and nullable unions as pydantic writes them.
const (
	benchFlatSchema = `{"type":"object","properties":{"timezone":{"type":"string","description":"IANA timezone name"},
		"limit":{"type":"integer","minimum":1,"maximum":100},"verbose":{"type":"boolean"}},
		"required":["timezone"],"additionalProperties":false}`
	benchNestedSchema = `{"$defs":{"Address":{"properties":{"street":{"title":"Street","type":"string"},"city":{"title":"City","type":"string"},
		"zip_code":{"anyOf":[{"type":"string","pattern":"^[0-9]{5}$"},{"type":"null"}],"default":null,"title":"Zip Code"}},
		"required":["street","city"],"title":"Address","type":"object"},
		"Priority":{"enum":["low","normal","high"],"title":"Priority","type":"string"},
		"Item":{"properties":{"sku":{"type":"string","minLength":3},"quantity":{"type":"integer","minimum":1},"address":{"$ref":"#/$defs/Address"}},
		"required":["sku","quantity"],"type":"object"}},
		"properties":{"customer":{"title":"Customer","type":"string","minLength":1},"address":{"$ref":"#/$defs/Address"},
		"priority":{"$ref":"#/$defs/Priority","default":"normal"},"items":{"items":{"$ref":"#/$defs/Item"},"minItems":1,"title":"Items","type":"array"},
		"notes":{"anyOf":[{"type":"string"},{"type":"null"}],"default":null}},
		"required":["customer","address","items"],"title":"create_orderArguments","type":"object"}`
)

var benchArgs = []struct {
	name, schema, args string
	valid              bool
}{
	{"flat/valid", benchFlatSchema, `{"timezone":"Europe/Paris","limit":10,"verbose":true}`, true},
	{"flat/invalid", benchFlatSchema, `{"limit":"ten","verbose":"yes","extra":1}`, false},
	{"nested/valid", benchNestedSchema, `{"customer":"Ada","address":{"street":"1 Main St","city":"Paris","zip_code":"75001"},"priority":"high",
		"items":[{"sku":"ABC-1","quantity":2},{"sku":"XYZ-9","quantity":1,"address":{"street":"2 Side St","city":"Lyon","zip_code":null}}],"notes":null}`, true},
	{"nested/invalid", benchNestedSchema, `{"customer":"","address":{"street":"1 Main St","zip_code":"7500"},"priority":"urgent",
		"items":[{"sku":"A","quantity":0},{"quantity":"1"}],"notes":5}`, false},
	{"flat/1 MiB string", benchFlatSchema, `{"timezone":"` + strings.Repeat("x", 1<<20) + `","limit":10}`, true},
}

// BenchmarkValidate measures checking a call's arguments against the
// tool's compiled input schema, what prepareArgs does on every call.
func BenchmarkValidate(b *testing.B) {
	for _, bc := range benchArgs {
		b.Run(bc.name, func(b *testing.B) {
			v, err := NewValidator(json.RawMessage(bc.schema))
			if err != nil {
				b.Fatal(err)
			}
			args := json.RawMessage(bc.args)
			if errs := v.Validate(args); (errs == nil) != bc.valid {
				b.Fatalf("Validate(%s) = %v", bc.args, errs)
			}
			b.ReportAllocs()
			for b.Loop() {
				v.Validate(args)
			}
		})
	}
}

// BenchmarkNewValidator measures compiling a tool's input schema, done once
// per tool listing.
func BenchmarkNewValidator(b *testing.B) {
	for _, bc := range []struct{ name, schema string }{{"flat", benchFlatSchema}, {"nested", benchNestedSchema}} {
		b.Run(bc.name, func(b *testing.B) {
			raw := json.RawMessage(bc.schema)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := NewValidator(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

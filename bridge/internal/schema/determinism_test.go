package schema

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// bigProperty is a property schema of about n schema objects.
func bigProperty(n int) string {
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf(`{"type":"integer","minimum":%d}`, i)
	}
	return `{"anyOf":[` + strings.Join(items, ",") + `]}`
}

// orderSensitive are schemas whose conversion depended on Go's map order,
// converted 50 times each (the one at the node limit, slow to load, 5
// times: its four properties come in another order most times).
var orderSensitive = []struct {
	name, raw string
	times     int
}{
	{"warnings of sibling properties", `{"type":"object","properties":{"a":{"$ref":"#/$defs/A"},"b":{"$ref":"#/$defs/B"},
		"c":{"$ref":"https://example.com/c"},"d":{"type":"string","pattern":"(?=x)"},"e":{"type":"string","pattern":"(?!y)"}}}`, 0},
	{"an unknown keyword and its x- form", `{"type":"object","properties":{"a":{"type":"string","foo":1,"x-foo":2}}}`, 0},
	{"an unsupported pattern beside x-pattern", `{"type":"object","properties":{"a":{"type":"string","pattern":"(?=x)","x-pattern":"mine"}}}`, 0},
	{"dependencies beside dependentRequired", `{"type":"object","properties":{"a":{"type":"object",
		"dependencies":{"x":["y"]},"dependentRequired":{"x":["z"]}}}}`, 0},
	{"an $anchor declared twice", `{"type":"object","properties":{"p":{"$ref":"#a"}},
		"$defs":{"A":{"$anchor":"a","type":"string"},"B":{"$anchor":"a","type":"integer"},"C":{"$id":"#a","type":"boolean"}}}`, 0},
	{"the node limit", `{"type":"object","properties":{"a":` + bigProperty(maxNodes/3) + `,"b":` + bigProperty(maxNodes/3) +
		`,"c":` + bigProperty(maxNodes/3) + `,"d":` + bigProperty(maxNodes/3) + `}}`, 5},
	{"required arguments that accept nothing", `{"type":"object","properties":{"a":false,"b":false,"c":false},"required":["a","b","c"]}`, 0},
}

func TestConversionDoesNotDependOnMapOrder(t *testing.T) {
	for _, tc := range orderSensitive {
		t.Run(tc.name, func(t *testing.T) {
			for _, conv := range []struct {
				name string
				fn   func(json.RawMessage) Result
			}{{"input", Input}, {"output", Output}} {
				first := conv.fn(json.RawMessage(tc.raw))
				for i := 1; i < cmp.Or(tc.times, 50); i++ {
					again := conv.fn(json.RawMessage(tc.raw))
					if a, b := mustMarshal(first.Schema), mustMarshal(again.Schema); a != b {
						t.Fatalf("%s: conversion %d differs from the first:\n%.2000s\n%.2000s", conv.name, i+1, b, a)
					}
					if !slices.Equal(first.Warnings, again.Warnings) {
						t.Fatalf("%s: conversion %d warns %q, the first %q", conv.name, i+1, again.Warnings, first.Warnings)
					}
				}
			}
		})
	}
}

package schema

import (
	"bytes"
	"encoding/json"
	"reflect"
	"sync"
	"testing"
)

const (
	cacheSchemaA = `{"type":"object","properties":{"city":{"type":"string","title":"City"}},"required":["city"]}`
	cacheSchemaB = `{"type":"object","properties":{"city":{"type":"integer","title":"City"}},"required":["city"]}`
)

func TestCache_IdenticalSchemasAreConvertedOnce(t *testing.T) {
	c := NewCache(100, 1<<20)
	// Two tools' schemas: the same content, different bytes in memory.
	first := c.Input(json.RawMessage(cacheSchemaA))
	second := c.Input(json.RawMessage(bytes.Clone([]byte(cacheSchemaA))))
	if got := c.Misses(); got != 1 {
		t.Errorf("two identical schemas converted %d times, want 1", got)
	}
	if first.Schema != second.Schema {
		t.Error("the two tools do not share the conversion")
	}
	if want := Input(json.RawMessage(cacheSchemaA)); !reflect.DeepEqual(first, want) {
		t.Errorf("cached conversion %+v, want Input's %+v", first, want)
	}
	if first.JSON == nil || len(first.TitleKeys) != 1 {
		t.Errorf("cached conversion not encoded: JSON %s, titles %v", first.JSON, first.TitleKeys)
	}
}

func TestCache_AChangedSchemaIsConvertedAnew(t *testing.T) {
	c := NewCache(100, 1<<20)
	a := c.Input(json.RawMessage(cacheSchemaA))
	b := c.Input(json.RawMessage(cacheSchemaB))
	if got := c.Misses(); got != 2 {
		t.Errorf("two different schemas: %d conversions, want 2", got)
	}
	if typ := b.Schema.Properties["city"].Value.Type; !typ.Is("integer") {
		t.Errorf("the changed schema's city is %v, want the new integer (the first was %v)", typ, a.Schema.Properties["city"].Value.Type)
	}
	va, err := c.Validator(json.RawMessage(cacheSchemaA))
	if err != nil {
		t.Fatal(err)
	}
	vb, err := c.Validator(json.RawMessage(cacheSchemaB))
	if err != nil {
		t.Fatal(err)
	}
	args := json.RawMessage(`{"city":"Paris"}`)
	if errs := va.Validate(args); errs != nil {
		t.Errorf("the first schema refuses %s: %v", args, errs)
	}
	if errs := vb.Validate(args); errs == nil {
		t.Errorf("the changed schema accepts %s, a string for its integer", args)
	}
}

func TestCache_KindsAreKeptApart(t *testing.T) {
	c := NewCache(100, 1<<20)
	raw := json.RawMessage(`{"type":"string","title":"Name"}`)
	in, out := c.Input(raw), c.Output(raw)
	if in.Wrapped == "" {
		t.Errorf("the input conversion of a string schema is not wrapped: %+v", in)
	}
	if out.Wrapped != "" || !out.Schema.Type.Is("string") {
		t.Errorf("the output conversion %+v is not the schema itself", out)
	}
	if got := c.Misses(); got != 2 {
		t.Errorf("%d entries for an input and an output conversion, want 2", got)
	}
}

func TestCache_AnInvalidSchemaFailsAlike(t *testing.T) {
	c := NewCache(100, 1<<20)
	raw := json.RawMessage(`{"type":"object","properties":{"a":{"type":"strin"}}}`)
	for range 2 {
		v, err := c.Validator(raw)
		if v != nil || err == nil {
			t.Errorf("Validator of an invalid schema = %v, %v; want an error", v, err)
		}
	}
	if got := c.Misses(); got != 1 {
		t.Errorf("the invalid schema compiled %d times, want 1", got)
	}
	if _, err := NewValidator(raw); err == nil {
		t.Error("NewValidator accepts the invalid schema: the test checks nothing")
	}
}

func TestCache_ValidatorCompiledOnceUnderConcurrency(t *testing.T) {
	c := NewCache(100, 1<<20)
	const callers = 16
	got := make([]*Validator, callers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			v, err := c.Validator(json.RawMessage(cacheSchemaA))
			if err != nil {
				t.Error(err)
			}
			got[i] = v
		}()
	}
	close(start)
	wg.Wait()
	if n := c.Misses(); n != 1 {
		t.Errorf("%d compilations for %d concurrent callers, want 1", n, callers)
	}
	for i, v := range got {
		if v == nil || v != got[0] {
			t.Fatalf("caller %d got validator %p, caller 0 %p", i, v, got[0])
		}
	}
}

func TestCache_KeepsTheMostRecentlyUsedWithinBounds(t *testing.T) {
	schemas := []json.RawMessage{
		json.RawMessage(`{"type":"object","properties":{"a":{"type":"string"}}}`),
		json.RawMessage(`{"type":"object","properties":{"b":{"type":"string"}}}`),
		json.RawMessage(`{"type":"object","properties":{"c":{"type":"string"}}}`),
	}
	size := len(schemas[0])
	for _, tc := range []struct {
		name              string
		entries, bytes    int
		evictedIsComputed bool
	}{
		{"by number", 2, 1 << 20, true},
		{"by bytes", 100, 2 * size, true},
		{"within both", 100, 1 << 20, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCache(tc.entries, tc.bytes)
			c.Input(schemas[0])
			c.Input(schemas[1])
			c.Input(schemas[0]) // now the most recently used
			c.Input(schemas[2]) // evicts schemas[1] when bounded
			before := c.Misses()
			c.Input(schemas[0])
			if c.Misses() != before {
				t.Error("the most recently used entry was evicted")
			}
			c.Input(schemas[1])
			if recomputed := c.Misses() != before; recomputed != tc.evictedIsComputed {
				t.Errorf("least recently used entry converted again: %v, want %v", recomputed, tc.evictedIsComputed)
			}
			if max := min(tc.entries, tc.bytes/size); c.Len() > max {
				t.Errorf("%d entries kept, bound %d", c.Len(), max)
			}
		})
	}
}

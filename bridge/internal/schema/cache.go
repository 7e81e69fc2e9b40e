package schema

import (
	"container/list"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sync"
)

// Cache keeps what a tool's schemas become (their conversions and the
// validator of arguments) by the schemas' content, so that a schema is
// converted, validated and compiled once however many tools, listings and
// configurations have it: servers generated from an API give many tools
// the same schema, and a new listing or a reload mostly lists the schemas
// of the last one again. What it returns is shared: callers must not
// modify it.
// It keeps the entries used last, at most the number and the bytes of
// schemas it was made for. It is safe for concurrent use.
type Cache struct {
	maxEntries int
	maxBytes   int

	mu      sync.Mutex
	entries map[cacheKey]*list.Element // of *cacheEntry
	lru     list.List                  // most recently used first
	bytes   int                        // of the schemas of the entries

	// misses counts the entries made.
	misses int
}

// cacheKind is what a cache entry holds.
type cacheKind uint8

const (
	kindInput cacheKind = iota
	kindOutput
	kindValidator
)

type cacheKey struct {
	kind cacheKind
	sum  [sha256.Size]byte
}

// cacheEntry is computed once, by whoever asks first; the others wait.
type cacheEntry struct {
	key  cacheKey
	size int
	once sync.Once

	result    Result
	validator *Validator
	err       error
}

// NewCache returns a cache of at most maxEntries entries whose schemas
// total at most maxBytes.
func NewCache(maxEntries, maxBytes int) *Cache {
	return &Cache{maxEntries: maxEntries, maxBytes: maxBytes, entries: map[cacheKey]*list.Element{}}
}

// Input is Input(raw), converted once for every raw of the same content.
func (c *Cache) Input(raw json.RawMessage) Result {
	e := c.entry(kindInput, raw)
	e.once.Do(func() { e.result = Input(raw) })
	return e.result
}

// Output is Output(raw), converted once for every raw of the same content.
func (c *Cache) Output(raw json.RawMessage) Result {
	e := c.entry(kindOutput, raw)
	e.once.Do(func() { e.result = Output(raw) })
	return e.result
}

// Validator is NewValidator(raw), compiled once for every raw of the same
// content.
//
// A compilation that panics is an error like one that fails: the entry
// stays what every later caller gets.
func (c *Cache) Validator(raw json.RawMessage) (*Validator, error) {
	e := c.entry(kindValidator, raw)
	e.once.Do(func() {
		defer func() {
			if r := recover(); r != nil {
				e.validator, e.err = nil, fmt.Errorf("the input schema cannot be compiled (%v)", r)
			}
		}()
		e.validator, e.err = NewValidator(raw)
	})
	return e.validator, e.err
}

// entry returns the entry of raw for kind, made the most recently used,
// adding an empty one (and evicting the least recently used beyond the
// bounds) when there is none.
func (c *Cache) entry(kind cacheKind, raw json.RawMessage) *cacheEntry {
	key := cacheKey{kind: kind, sum: sha256.Sum256(raw)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[key]; ok {
		c.lru.MoveToFront(el)
		return el.Value.(*cacheEntry)
	}
	e := &cacheEntry{key: key, size: len(raw)}
	c.entries[key] = c.lru.PushFront(e)
	c.bytes += e.size
	c.misses++
	for c.lru.Len() > 1 && (c.lru.Len() > c.maxEntries || c.bytes > c.maxBytes) {
		last := c.lru.Back()
		old := c.lru.Remove(last).(*cacheEntry)
		delete(c.entries, old.key)
		c.bytes -= old.size
	}
	return e
}

// Len returns the number of entries kept.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// Misses returns how many entries were made since the cache was: how
// many conversions and compilations it did.
func (c *Cache) Misses() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.misses
}

package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/schema"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// scaleTools is the size of the large listings of the benchmarks below.
const scaleTools = 1000

// capturedListing returns a fresh listing of n tools as real servers write
// them: the tools captured in internal/fixture in turn, each copy under its
// own name, so that, as in servers generated from an API, many tools share
// a schema byte for byte (160 captured tools, 144 distinct input schemas).
// Every schema is a new copy, as a new listing decodes it.
func capturedListing(n int) *upstream.ToolSet {
	var raw []json.RawMessage
	for _, server := range fixture.CapturedServers() {
		raw = append(raw, fixture.CapturedTools(server)...)
	}
	set := &upstream.ToolSet{Server: upstream.ServerInfo{Name: "scale", Version: "1.0.0"}}
	for i := range n {
		var t struct {
			Name         string          `json:"name"`
			Description  string          `json:"description"`
			InputSchema  json.RawMessage `json:"inputSchema"`
			OutputSchema json.RawMessage `json:"outputSchema"`
			Annotations  json.RawMessage `json:"annotations"`
		}
		if err := json.Unmarshal(raw[i%len(raw)], &t); err != nil {
			panic(err)
		}
		set.Tools = append(set.Tools, &upstream.Tool{
			Name: fmt.Sprintf("%s_%04d", t.Name, i), Description: t.Description,
			InputSchema: bytes.Clone(t.InputSchema), OutputSchema: bytes.Clone(t.OutputSchema), Annotations: t.Annotations,
		})
	}
	return set
}

// identicalListing returns a fresh listing of n tools of one schema, the
// benchmark harness's (bench/echoserver -tools).
func identicalListing(n int) *upstream.ToolSet {
	const search = `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{
	"query":{"type":"string","description":"What to look for","minLength":1},
	"limit":{"type":"integer","minimum":1,"maximum":100,"default":10},
	"filter":{"$ref":"#/$defs/Filter"}},"required":["query"],
	"$defs":{"Filter":{"type":"object","properties":{"kind":{"enum":["a","b","c"]},"since":{"type":["string","null"],"format":"date-time"}}}}}`
	set := &upstream.ToolSet{Server: upstream.ServerInfo{Name: "scale", Version: "1.0.0"}}
	for i := range n {
		set.Tools = append(set.Tools, &upstream.Tool{Name: fmt.Sprintf("tool_%04d", i),
			Description: "A generated search tool.", InputSchema: json.RawMessage(search)})
	}
	return set
}

// relister is an in-memory server whose listing the benchmark replaces,
// as a server's new tool listing does; its tools answer at once.
type relister struct {
	set atomic.Pointer[upstream.ToolSet]
}

func (c *relister) Tools() *upstream.ToolSet { return c.set.Load() }
func (*relister) CallTool(context.Context, string, json.RawMessage) (*upstream.CallResult, error) {
	return &upstream.CallResult{Content: []upstream.Content{text("done")}}, nil
}
func (*relister) Status() upstream.Status { return upstream.Status{State: upstream.StateReady} }

// scaleListings are the listings of the benchmarks.
var scaleListings = []struct {
	name string
	list func(n int) *upstream.ToolSet
}{
	{"captured", capturedListing},
	{"identical", identicalListing},
}

// caches are the states of the schema cache the benchmarks start each
// listing with: empty, as in a new process, or holding the schemas of the
// last listing, as after a new listing or a reload.
var caches = []struct {
	name  string
	reset bool
}{{"cold", true}, {"relisted", false}}

// withCache runs f with an empty schema cache when reset, restoring the
// package's afterwards.
func withCache(reset bool, f func()) {
	if !reset {
		f()
		return
	}
	kept := schemaCache
	defer func() { schemaCache = kept }()
	schemaCache = schema.NewCache(4096, 4<<20)
	f()
}

// afterEachListing measures f after each of b's new listings of up,
// from an empty schema cache when reset, else from the cache a first
// listing filled.
func afterEachListing(b *testing.B, up *relister, list func(n int) *upstream.ToolSet, reset bool, f func()) {
	if !reset {
		up.set.Store(list(scaleTools))
		f()
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		up.set.Store(list(scaleTools))
		withCache(reset, func() {
			b.StartTimer()
			f()
		})
	}
}

// scaleBridge returns a single-server bridge of up.
func scaleBridge(b *testing.B, up *relister) *Bridge {
	br, err := New(Config{Single: true, Servers: []*ServerConfig{{Name: "scale", Upstream: up}}})
	if err != nil {
		b.Fatal(err)
	}
	return br
}

// getDocument asks br for the server's document.
func getDocument(b *testing.B, br *Bridge) int {
	w := httptest.NewRecorder()
	br.Serve(w, httptest.NewRequest(http.MethodGet, "/m/openapi.json", nil), "/openapi.json", "/m")
	if w.Code != http.StatusOK {
		b.Fatalf("GET openapi.json: %d %s", w.Code, w.Body)
	}
	return w.Body.Len()
}

// BenchmarkFirstDocument measures the first request for the document of a
// server with 1,000 tools after a new tool listing: reading the listing
// (names, routes), converting the schemas and building the document. It
// also reports the heap a listed tool keeps, its view and its share of the
// document, measured after a garbage collection.
func BenchmarkFirstDocument(b *testing.B) {
	for _, l := range scaleListings {
		for _, c := range caches {
			b.Run(l.name+"/"+c.name, func(b *testing.B) {
				up := &relister{}
				br := scaleBridge(b, up)
				var before, after runtime.MemStats
				size := 0
				withCache(true, func() {
					up.set.Store(l.list(scaleTools))
					runtime.GC()
					runtime.ReadMemStats(&before)
					size = getDocument(b, br)
					runtime.GC()
					runtime.ReadMemStats(&after)
				})
				afterEachListing(b, up, l.list, c.reset, func() { getDocument(b, br) })
				// Reported after the loop, which clears the metrics reported
				// before it.
				b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/scaleTools, "retained-B/tool")
				b.ReportMetric(float64(size)/scaleTools, "doc-B/tool")
			})
		}
	}
}

// BenchmarkFirstCall measures the first call of a tool after a new tool
// listing of 1,000 tools, before any document is asked for: reading the
// listing, preparing that tool's arguments check, and the call.
func BenchmarkFirstCall(b *testing.B) {
	for _, l := range scaleListings {
		for _, c := range caches {
			b.Run(l.name+"/"+c.name, func(b *testing.B) {
				up := &relister{}
				br := scaleBridge(b, up)
				set := l.list(scaleTools)
				tool := set.Tools[scaleTools/2]
				args, err := fixture.SampleArguments(tool.InputSchema)
				if err != nil {
					b.Fatal(err)
				}
				afterEachListing(b, up, l.list, c.reset, func() {
					if w := callTool(br, tool.Name, string(args)); w.Code != http.StatusOK {
						b.Fatalf("POST %s %s: %d %s", tool.Name, args, w.Code, w.Body)
					}
				})
			})
		}
	}
}

package bridge

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/schema"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// freshSchemaCache gives the test an empty schema cache, so that what it
// counts is its own; the package's is restored afterwards.
func freshSchemaCache(t *testing.T) *schema.Cache {
	kept := schemaCache
	schemaCache = schema.NewCache(4096, 4<<20)
	t.Cleanup(func() { schemaCache = kept })
	return schemaCache
}

// listingBridge returns a single-server bridge of a server listing tools,
// and the server, whose listing the test may replace.
func listingBridge(t *testing.T, log *zap.Logger, tools ...*upstream.Tool) (*Bridge, *relister) {
	t.Helper()
	up := &relister{}
	up.set.Store(&upstream.ToolSet{Tools: tools})
	b, err := New(Config{Single: true, Logger: log, Servers: []*ServerConfig{{Name: "s", Upstream: up}}})
	if err != nil {
		t.Fatal(err)
	}
	return b, up
}

// callTool calls a tool of b with args.
func callTool(b *Bridge, tool, args string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/m/"+tool, strings.NewReader(args))
	r.Header.Set("Content-Type", "application/json")
	b.Serve(w, r, "/"+tool, "/m")
	return w
}

// documentOf returns b's document, decoded.
func documentOf(t *testing.T, b *Bridge) map[string]any {
	t.Helper()
	w := httptest.NewRecorder()
	b.Serve(w, httptest.NewRequest(http.MethodGet, "/m/openapi.json", nil), "/openapi.json", "/m")
	if w.Code != http.StatusOK {
		t.Fatalf("GET openapi.json: %d %s", w.Code, w.Body)
	}
	var doc map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// argumentType is the type the document gives argument arg of tool.
func argumentType(doc map[string]any, tool, arg string) any {
	s, _ := doc["components"].(map[string]any)["schemas"].(map[string]any)[tool+"_input"].(map[string]any)
	p, _ := s["properties"].(map[string]any)[arg].(map[string]any)
	return p["type"]
}

const (
	citySchema   = `{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}`
	countSchema  = `{"type":"object","properties":{"city":{"type":"integer"}},"required":["city"]}`
	parisArgs    = `{"city":"Paris"}`
	noCityArgs   = `{"town":"Paris"}`
	invalidCode  = http.StatusUnprocessableEntity
	calledStatus = http.StatusOK
)

func TestView_ToolsOfOneSchemaAreEachValidatedAndDocumented(t *testing.T) {
	cache := freshSchemaCache(t)
	// Two tools of one schema, as a server sends them: equal bytes, apart.
	b, _ := listingBridge(t, nil,
		&upstream.Tool{Name: "weather", InputSchema: json.RawMessage(citySchema)},
		&upstream.Tool{Name: "forecast", InputSchema: json.RawMessage(strings.Clone(citySchema))},
		&upstream.Tool{Name: "count", InputSchema: json.RawMessage(countSchema)})
	for _, tc := range []struct {
		tool, args string
		want       int
	}{
		{"weather", noCityArgs, invalidCode},
		{"forecast", noCityArgs, invalidCode},
		{"weather", parisArgs, calledStatus},
		{"forecast", parisArgs, calledStatus},
		{"count", parisArgs, invalidCode},
		{"count", `{"city":7}`, calledStatus},
	} {
		if w := callTool(b, tc.tool, tc.args); w.Code != tc.want {
			t.Errorf("POST %s %s: %d %s, want %d", tc.tool, tc.args, w.Code, w.Body, tc.want)
		}
	}
	doc := documentOf(t, b)
	for tool, want := range map[string]string{"weather": "string", "forecast": "string", "count": "integer"} {
		if got := argumentType(doc, tool, "city"); got != want {
			t.Errorf("the document gives %s's city the type %v, want %s", tool, got, want)
		}
	}
	// Two input schemas converted, two validators compiled: one of each
	// for the two tools that share theirs.
	if got := cache.Misses(); got != 4 {
		t.Errorf("%d conversions and compilations, want 4", got)
	}
}

func TestView_AChangedSchemaIsSeenInTheNextListing(t *testing.T) {
	freshSchemaCache(t)
	b, up := listingBridge(t, nil, &upstream.Tool{Name: "weather", InputSchema: json.RawMessage(citySchema)})
	if w := callTool(b, "weather", parisArgs); w.Code != calledStatus {
		t.Fatalf("POST weather %s: %d %s", parisArgs, w.Code, w.Body)
	}
	if got := argumentType(documentOf(t, b), "weather", "city"); got != "string" {
		t.Fatalf("city is %v in the first listing's document, want string", got)
	}
	up.set.Store(&upstream.ToolSet{Tools: []*upstream.Tool{{Name: "weather", InputSchema: json.RawMessage(countSchema)}}})
	if w := callTool(b, "weather", parisArgs); w.Code != invalidCode {
		t.Errorf("POST weather %s after the schema changed to an integer city: %d %s, want %d", parisArgs, w.Code, w.Body, invalidCode)
	}
	if got := argumentType(documentOf(t, b), "weather", "city"); got != "integer" {
		t.Errorf("city is %v in the new listing's document, want integer", got)
	}
}

func TestView_ConcurrentFirstCallsCompileTheValidatorOnce(t *testing.T) {
	cache := freshSchemaCache(t)
	core, logs := observer.New(zapcore.WarnLevel)
	// A lookahead: Go's regexp cannot check it, which the compilation
	// warns about, once per route.
	const lookahead = `{"type":"object","properties":{"code":{"type":"string","pattern":"^(?=A)[A-Z]+$"}},"required":["code"]}`
	b, _ := listingBridge(t, zap.New(core), &upstream.Tool{Name: "check", InputSchema: json.RawMessage(lookahead)})
	const callers = 16
	codes := make([]int, callers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			args := `{"code":"ABC"}`
			if i%2 == 1 {
				args = `{}`
			}
			codes[i] = callTool(b, "check", args).Code
		}()
	}
	close(start)
	wg.Wait()
	for i, code := range codes {
		want := calledStatus
		if i%2 == 1 {
			want = invalidCode
		}
		if code != want {
			t.Errorf("caller %d: %d, want %d", i, code, want)
		}
	}
	warned := logs.FilterMessage("tool schema handled with losses").FilterFieldKey("warning").All()
	patterns := 0
	for _, e := range warned {
		if strings.Contains(e.ContextMap()["warning"].(string), "is not checked") {
			patterns++
		}
	}
	if patterns != 1 {
		t.Errorf("the unchecked pattern was told %d times by %d concurrent first calls, want once", patterns, callers)
	}
	// The input conversion (for the call's argument names) and the
	// validator.
	if got := cache.Misses(); got != 2 {
		t.Errorf("%d conversions and compilations, want 2", got)
	}
}

func TestView_ACallAfterAListingBuildsNoDocument(t *testing.T) {
	cache := freshSchemaCache(t)
	b, _ := listingBridge(t, nil,
		&upstream.Tool{Name: "weather", InputSchema: json.RawMessage(citySchema)},
		&upstream.Tool{Name: "count", InputSchema: json.RawMessage(countSchema)})
	if w := callTool(b, "weather", parisArgs); w.Code != calledStatus {
		t.Fatalf("POST weather: %d %s", w.Code, w.Body)
	}
	if got := b.docsBuilt.Load(); got != 0 {
		t.Errorf("a call built %d documents", got)
	}
	if got := cache.Misses(); got != 2 {
		t.Errorf("a call of one tool converted or compiled %d schemas, want its input's 2", got)
	}
	documentOf(t, b)
	documentOf(t, b)
	if got := b.docsBuilt.Load(); got != 1 {
		t.Errorf("two requests for the document built %d, want 1", got)
	}
}

package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// listCaller lists the tools it is given, or none yet when it has none;
// every call answers "ok <tool>".
type listCaller struct{ set *upstream.ToolSet }

func newListCaller(tools ...string) *listCaller {
	if len(tools) == 0 {
		return &listCaller{}
	}
	set := &upstream.ToolSet{Server: upstream.ServerInfo{Name: "list", Version: "1.0.0"}}
	for _, t := range tools {
		set.Tools = append(set.Tools, &upstream.Tool{Name: t, InputSchema: json.RawMessage(`{"type":"object"}`)})
	}
	return &listCaller{set: set}
}

func (c *listCaller) Tools() *upstream.ToolSet { return c.set }

func (*listCaller) CallTool(_ context.Context, tool string, _ json.RawMessage) (*upstream.CallResult, error) {
	return &upstream.CallResult{Content: []upstream.Content{text("ok " + tool)}}, nil
}

func (c *listCaller) Status() upstream.Status {
	if c.set == nil {
		return upstream.Status{State: upstream.StateStarting}
	}
	return upstream.Status{State: upstream.StateReady}
}

// recordingObserver records the calls it is told about.
type recordingObserver struct {
	mu     sync.Mutex
	events []string
}

func (o *recordingObserver) CallStarted(server, tool string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, "start "+server+" "+tool)
}

func (o *recordingObserver) CallFinished(server, tool string, outcome Outcome, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.events = append(o.events, fmt.Sprintf("finish %s %s %s", server, tool, outcome))
}

// routeCase is one request to a route table and what it must get.
type routeCase struct {
	method, rel string
	status      int
	allow       string // the Allow header wanted; "" for none
	body        string // the whole body wanted, or a part of it after "…"
}

// The messages of the 404s of the mount of time, other and down below.
const (
	mountNotFound = `{"detail":{"message":"no endpoint at \"%s\": the servers here are time, other, down; each serves POST \u003cserver\u003e/\u003ctool\u003e, ` +
		`\u003cserver\u003e/openapi.json and \u003cserver\u003e/docs, and openapi.json and docs here cover them all"}}`
	timeNotFound = `{"detail":{"message":"server \"time\" has no tool at \"%s\"; its tools are at: get_time, docs (POST)","server":"time"}}`
)

func TestRoutesOfAMountOfSeveralServers(t *testing.T) {
	const (
		doc     = "GET, HEAD, OPTIONS"
		tool    = "POST, OPTIONS"
		docTool = "GET, HEAD, POST, OPTIONS"
	)
	cases := []routeCase{
		// A tool answers POST alone.
		{"POST", "/time/get_time", 200, "", `"ok get_time"`},
		{"GET", "/time/get_time", 405, tool, `{"detail":{"message":"method GET is not allowed: call the tool with POST and a JSON object of its arguments as the body"}}`},
		{"HEAD", "/time/get_time", 405, tool, "…not allowed"},
		{"PUT", "/time/get_time", 405, tool, "…method PUT is not allowed"},
		{"OPTIONS", "/time/get_time", 204, tool, ""},
		// A tool at "docs" answers POST as the tool, GET as Swagger UI.
		{"POST", "/time/docs", 200, "", `"ok docs"`},
		{"GET", "/time/docs", 200, "", "…<title>time</title>"},
		{"HEAD", "/time/docs", 200, "", ""},
		{"OPTIONS", "/time/docs", 204, docTool, ""},
		{"DELETE", "/time/docs", 405, docTool, `{"detail":{"message":"method DELETE is not allowed here; use GET or HEAD or POST"}}`},
		// Without such a tool, docs is only Swagger UI.
		{"POST", "/other/docs", 405, doc, `{"detail":{"message":"method POST is not allowed here; use GET or HEAD"}}`},
		{"OPTIONS", "/other/docs", 204, doc, ""},
		{"GET", "/time/docs/", 301, "", ""},
		{"GET", "/time/docs/swagger-initializer.js", 200, "", "…SwaggerUIBundle"},
		{"POST", "/time/docs/swagger-initializer.js", 405, doc, "…use GET or HEAD"},
		{"GET", "/time/docs/nope.js", 404, "", `{"detail":{"message":"Not Found"}}`},
		// A server's document.
		{"GET", "/time/openapi.json", 200, "", `…{"servers":[{"url":"/m/time"}]`},
		{"HEAD", "/time/openapi.json", 200, "", ""},
		{"POST", "/time/openapi.json", 405, doc, "…use GET or HEAD"},
		{"OPTIONS", "/time/openapi.json", 204, doc, ""},
		// A server's consent pages.
		{"GET", "/time/oauth/authorize", 302, "", "…"},
		{"POST", "/time/oauth/authorize", 405, doc, "…use GET or HEAD"},
		{"OPTIONS", "/time/oauth/authorize", 204, doc, ""},
		{"GET", "/time/oauth/callback", 400, "", "…was not started in this browser"},
		{"POST", "/time/oauth/callback", 405, doc, "…use GET or HEAD"},
		{"GET", "/time/oauth/client-metadata.json", 200, "", `{"client_id":"https://x.example/m"}`},
		{"PATCH", "/time/oauth/client-metadata.json", 405, doc, "…use GET or HEAD"},
		// The mount's pages.
		{"GET", "/openapi.json", 200, "", `…"/time/docs":{"post"`},
		{"POST", "/openapi.json", 405, doc, "…use GET or HEAD"},
		{"OPTIONS", "/openapi.json", 204, doc, ""},
		{"GET", "/docs", 200, "", "…<title>MCP tools</title>"},
		{"POST", "/docs", 405, doc, "…use GET or HEAD"},
		{"GET", "/docs/swagger-initializer.js", 200, "", "…SwaggerUIBundle"},
		{"GET", "/health", 503, "", `…"status":"degraded"`},
		{"HEAD", "/health", 503, "", ""},
		{"POST", "/health", 405, doc, "…use GET or HEAD"},
		{"OPTIONS", "/health", 204, doc, ""},
		// A server that has not listed its tools yet: a call says why.
		{"POST", "/down/get_time", 503, "", `{"detail":{"message":"server \"down\" is starting; try again later","server":"down","tool":"get_time"}}`},
		{"GET", "/down/get_time", 405, tool, "…call the tool with POST"},
		{"OPTIONS", "/down/get_time", 204, tool, ""},
		{"GET", "/down/openapi.json", 503, "", `{"detail":{"message":"server \"down\" is starting; try again later","server":"down"}}`},
		{"GET", "/down/docs", 200, "", "…<title>down</title>"},
		// Paths nothing is at.
		{"POST", "/time/nope", 404, "", fmt.Sprintf(timeNotFound, "/nope")},
		{"GET", "/time/nope", 404, "", fmt.Sprintf(timeNotFound, "/nope")},
		{"OPTIONS", "/time/nope", 404, "", fmt.Sprintf(timeNotFound, "/nope")},
		{"POST", "/time/get_time/", 404, "", fmt.Sprintf(timeNotFound, "/get_time/")},
		{"POST", "/time/get_time/x", 404, "", fmt.Sprintf(timeNotFound, "/get_time/x")},
		{"POST", "/time", 404, "", fmt.Sprintf(timeNotFound, "")},
		{"GET", "/time/", 404, "", fmt.Sprintf(timeNotFound, "/")},
		{"GET", "/time/oauth", 404, "", fmt.Sprintf(timeNotFound, "/oauth")},
		{"GET", "/time/oauth/other", 404, "", fmt.Sprintf(timeNotFound, "/oauth/other")},
		{"GET", "/other/oauth/authorize", 404, "", `…server \"other\" has no tool at \"/oauth/authorize\"`},
		{"POST", "/down/a/b", 404, "", `{"detail":{"message":"server \"down\" has no tool at \"/a/b\"; see its openapi.json or docs for the tools it has","server":"down"}}`},
		{"POST", "/nope/get_time", 404, "", fmt.Sprintf(mountNotFound, "/nope/get_time")},
		{"POST", "/TIME/get_time", 404, "", fmt.Sprintf(mountNotFound, "/TIME/get_time")},
		{"GET", "", 404, "", fmt.Sprintf(mountNotFound, "")},
		{"GET", "/", 404, "", fmt.Sprintf(mountNotFound, "/")},
		{"GET", "/docs/nope.js", 404, "", `{"detail":{"message":"Not Found"}}`},
		// Unclean paths are not cleaned, nor redirected.
		{"POST", "//time/get_time", 404, "", fmt.Sprintf(mountNotFound, "//time/get_time")},
		{"POST", "/time//get_time", 404, "", fmt.Sprintf(timeNotFound, "//get_time")},
		{"POST", "/time/../time/get_time", 404, "", fmt.Sprintf(timeNotFound, "/../time/get_time")},
		{"POST", "/time/./get_time", 404, "", fmt.Sprintf(timeNotFound, "/./get_time")},
		{"GET", "/time/docs/../openapi.json", 404, "", fmt.Sprintf(timeNotFound, "/docs/../openapi.json")},
		{"GET", "/./openapi.json", 404, "", fmt.Sprintf(mountNotFound, "/./openapi.json")},
	}
	b, err := New(Config{Servers: []*ServerConfig{
		{Name: "time", Upstream: newListCaller("get_time", "docs"), Consent: &recordingConsent{}},
		{Name: "other", Upstream: newListCaller("get_time")},
		{Name: "down", Upstream: newListCaller()},
	}})
	if err != nil {
		t.Fatal(err)
	}
	testRoutes(t, b, cases)
}

func TestRoutesOfASingleServerMount(t *testing.T) {
	const (
		doc     = "GET, HEAD, OPTIONS"
		tool    = "POST, OPTIONS"
		docTool = "GET, HEAD, POST, OPTIONS"
	)
	notFound := `{"detail":{"message":"server \"s\" has no tool at \"%s\"; its tools are at: get_time, health (POST)","server":"s"}}`
	cases := []routeCase{
		{"POST", "/get_time", 200, "", `"ok get_time"`},
		{"GET", "/get_time", 405, tool, "…call the tool with POST"},
		{"OPTIONS", "/get_time", 204, tool, ""},
		{"GET", "/openapi.json", 200, "", `…{"servers":[{"url":"/m"}]`},
		{"POST", "/openapi.json", 405, doc, "…use GET or HEAD"},
		{"GET", "/docs", 200, "", "…<title>s</title>"},
		{"POST", "/docs", 405, doc, "…use GET or HEAD"},
		{"GET", "/docs/swagger-initializer.js", 200, "", "…SwaggerUIBundle"},
		{"GET", "/docs/", 301, "", ""},
		// A tool at "health" answers POST; GET is the health report.
		{"GET", "/health", 200, "", `…"status":"ready"`},
		{"POST", "/health", 200, "", `"ok health"`},
		{"OPTIONS", "/health", 204, docTool, ""},
		{"GET", "/oauth/authorize", 302, "", "…"},
		{"POST", "/oauth/callback", 405, doc, "…use GET or HEAD"},
		{"POST", "/nope", 404, "", fmt.Sprintf(notFound, "/nope")},
		{"GET", "", 404, "", fmt.Sprintf(notFound, "")},
		{"GET", "/", 404, "", fmt.Sprintf(notFound, "/")},
		{"POST", "//get_time", 404, "", fmt.Sprintf(notFound, "//get_time")},
		{"POST", "/../get_time", 404, "", fmt.Sprintf(notFound, "/../get_time")},
		{"POST", "/s/get_time", 404, "", fmt.Sprintf(notFound, "/s/get_time")},
	}
	b, err := New(Config{Servers: []*ServerConfig{{Name: "s", Upstream: newListCaller("get_time", "health"), Consent: &recordingConsent{}}}, Single: true})
	if err != nil {
		t.Fatal(err)
	}
	testRoutes(t, b, cases)
}

func testRoutes(t *testing.T, b *Bridge, cases []routeCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.method+" "+tc.rel, func(t *testing.T) {
			w := serve(b, tc.method, tc.rel, nil)
			if w.Code != tc.status {
				t.Fatalf("status = %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if got := w.Header().Get("Allow"); got != tc.allow {
				t.Errorf("Allow = %q, want %q", got, tc.allow)
			}
			if loc := w.Header().Get("Location"); loc != "" && w.Code != http.StatusFound && loc != "../docs" {
				t.Errorf("Location = %q", loc)
			}
			switch want, part := strings.CutPrefix(tc.body, "…"); {
			case part && !strings.Contains(w.Body.String(), want):
				t.Errorf("body = %s, want %s in it", w.Body, want)
			case !part && w.Body.String() != want:
				t.Errorf("body = %s\nwant   %s", w.Body, want)
			}
			if w.Code >= 400 && tc.method != http.MethodHead && tc.rel != "/health" {
				decodeError(t, w.Body.Bytes())
				if ct := w.Header().Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type = %q", ct)
				}
			}
			if w.Code == http.StatusServiceUnavailable && w.Header().Get("Retry-After") == "" && tc.rel != "/health" {
				t.Error("503 without Retry-After")
			}
		})
	}
}

// Every call the Observer is told about starts, then finishes with the
// same server and tool; requests that are not calls are not told.
func TestObserverSeesEveryCallOnce(t *testing.T) {
	obs := &recordingObserver{}
	b, err := New(Config{Observer: obs, Servers: []*ServerConfig{
		{Name: "time", Upstream: newListCaller("get_time")},
		{Name: "down", Upstream: newListCaller()},
		{Name: "busy", Upstream: newListCaller("get_time"), MaxConcurrent: 1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	release, _ := b.servers["busy"].slots.acquire(context.Background(), 0, nil)
	defer release()
	for _, rq := range []struct{ method, rel, body string }{
		{"POST", "/time/get_time", "{}"},
		{"POST", "/time/get_time", "[1]"},
		{"POST", "/down/get_time", "{}"},
		{"POST", "/busy/get_time", "{}"},
		{"GET", "/time/get_time", ""},
		{"POST", "/time/nope", "{}"},
		{"GET", "/time/openapi.json", ""},
	} {
		r := httptest.NewRequest(rq.method, "/m"+rq.rel, strings.NewReader(rq.body))
		b.Serve(httptest.NewRecorder(), r, rq.rel, "/m")
	}
	want := []string{
		"start time get_time", "finish time get_time ok",
		"start time get_time", "finish time get_time invalid_arguments",
		"start down ", "finish down  unavailable",
		"start busy get_time", "finish busy get_time rejected",
	}
	if !slices.Equal(obs.events, want) {
		t.Errorf("observed\n%q\nwant\n%q", obs.events, want)
	}
}

// A page serves on its own too, as if the mount were the root.
func TestAPageServesAsAtTheRoot(t *testing.T) {
	b, err := New(Config{Servers: []*ServerConfig{{Name: "time", Upstream: newListCaller("get_time")}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"POST", "/time/get_time", 200, `"ok get_time"`},
		{"GET", "/time/get_time", 405, `{"detail":{"message":"method GET is not allowed: call the tool with POST and a JSON object of its arguments as the body"}}`},
		{"GET", "/time/openapi.json", 200, `{"servers":[{"url":"/time"}]`},
	} {
		r := httptest.NewRequest(tc.method, tc.path, strings.NewReader("{}"))
		w := httptest.NewRecorder()
		b.mux.ServeHTTP(w, r)
		if w.Code != tc.status || !strings.HasPrefix(w.Body.String(), tc.body) {
			t.Errorf("%s %s: %d %s, want %d %s", tc.method, tc.path, w.Code, w.Body, tc.status, tc.body)
		}
	}
}

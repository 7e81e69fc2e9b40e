package bridge

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// resourceCaller is a listCaller with resources, prompts and completions.
type resourceCaller struct {
	*listCaller
}

func newResourceCaller(tools ...string) *resourceCaller {
	c := &resourceCaller{newListCaller(tools...)}
	c.set.Server.Resources, c.set.Server.Prompts, c.set.Server.Completions = true, true, true
	return c
}

func (*resourceCaller) ListResources(context.Context) ([]json.RawMessage, error) {
	return []json.RawMessage{json.RawMessage(`{"uri":"x://a","name":"a"}`)}, nil
}
func (*resourceCaller) ListResourceTemplates(context.Context) ([]json.RawMessage, error) {
	return nil, nil
}
func (*resourceCaller) ReadResource(_ context.Context, uri string) (json.RawMessage, error) {
	return json.RawMessage(`{"contents":[{"uri":"` + uri + `","text":"content of ` + uri + `"}]}`), nil
}
func (*resourceCaller) ListPrompts(context.Context) ([]json.RawMessage, error) {
	return []json.RawMessage{json.RawMessage(`{"name":"p"}`)}, nil
}
func (*resourceCaller) GetPrompt(_ context.Context, name string, _ map[string]string) (json.RawMessage, error) {
	return json.RawMessage(`{"messages":[{"role":"user","content":{"type":"text","text":"` + name + `"}}]}`), nil
}
func (*resourceCaller) Complete(_ context.Context, c upstream.Completion) (json.RawMessage, error) {
	return json.RawMessage(`{"completion":{"values":["` + c.Value + `"]}}`), nil
}

// serveBody serves a request of id (nil for none) with body; rel may
// carry a query.
func serveBody(b *Bridge, id *Identity, method, rel, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "/m"+rel, strings.NewReader(body))
	if id != nil {
		r = r.WithContext(WithIdentity(r.Context(), *id))
	}
	w := httptest.NewRecorder()
	path, _, _ := strings.Cut(rel, "?")
	b.Serve(w, r, path, "/m")
	return w
}

func TestEndpointsShareSegmentsWithToolsButComplete(t *testing.T) {
	for _, single := range []bool{true, false} {
		name := map[bool]string{true: "single", false: "several"}[single]
		t.Run(name, func(t *testing.T) {
			b, err := New(Config{Single: single, Servers: []*ServerConfig{{Name: "s", Upstream: newResourceCaller("resources", "prompts", "complete")}}})
			if err != nil {
				t.Fatal(err)
			}
			base := ""
			if !single {
				base = "/s"
			}
			for _, c := range []struct {
				method, path string
				status       int
				want         string
			}{
				{http.MethodGet, "/resources", 200, `{"resources":[{"uri":"x://a","name":"a"}],"resourceTemplates":[]}`},
				{http.MethodPost, "/resources", 200, `"ok resources"`},
				{http.MethodGet, "/prompts", 200, `{"prompts":[{"name":"p"}]}`},
				{http.MethodPost, "/prompts", 200, `"ok prompts"`},
				{http.MethodPost, "/prompts/p", 200, `"text":"p"`},
				// The tool named complete has another segment.
				{http.MethodPost, "/complete", 422, `ref.type`},
				{http.MethodPost, "/complete_" + hashSuffix("complete"), 200, `"ok complete"`},
				{http.MethodGet, "/resources/read?uri=x://b", 200, `content of x://b`},
				{http.MethodPost, "/resources/read", 405, ``},
			} {
				w := serveBody(b, nil, c.method, base+c.path, "")
				if w.Code != c.status || !strings.Contains(w.Body.String(), c.want) {
					t.Errorf("%s %s: %d %s, want %d with %s", c.method, c.path, w.Code, w.Body, c.status, c.want)
				}
			}
			doc := serve(b, http.MethodGet, base+"/openapi.json", nil).Body.String()
			for _, want := range []string{`"operationId":"list_resources"`, `"operationId":"complete"`, `"operationId":"complete_`} {
				if !strings.Contains(doc, want) {
					t.Errorf("the document lacks %s", want)
				}
			}
		})
	}
}

// hashSuffix is the hash the Namer appends to a name that collides.
func hashSuffix(name string) string {
	b, _ := New(Config{Single: true, Servers: []*ServerConfig{{Name: "s", Upstream: newListCaller(name)}}})
	v, _ := b.servers["s"].current(b.log)
	_, h, _ := strings.Cut(v.routes[0].segment, "_")
	return h
}

func TestEndpointsFollowTheAccessRules(t *testing.T) {
	callers := map[string]Caller{"time": newResourceCaller("get_current_time"), "memory": newResourceCaller("read_graph", "create_entities")}
	b, err := New(Config{Servers: []*ServerConfig{{Name: "time", Upstream: callers["time"]}, {Name: "memory", Upstream: callers["memory"]}},
		Access: Access{Rules: []Rule{{Subjects: []string{"*"}, Tools: []string{"memory/read_graph"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{http.MethodGet, "/memory/resources", 200},
		{http.MethodGet, "/memory/resources/read?uri=x://a", 200},
		{http.MethodPost, "/memory/prompts/p", 200},
		{http.MethodGet, "/time/resources", 403},
		{http.MethodGet, "/time/resources/read?uri=x://a", 403},
		{http.MethodGet, "/time/prompts", 403},
		{http.MethodPost, "/time/complete", 403},
	} {
		w := serveBody(b, &Identity{ID: "u"}, c.method, c.path, "")
		if w.Code != c.status {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, w.Code, w.Body, c.status)
		}
	}
	doc := serveAs(b, &Identity{ID: "u"}, http.MethodGet, "/openapi.json").Body.String()
	if !strings.Contains(doc, `"memory_list_resources"`) || strings.Contains(doc, `"time_list_resources"`) {
		t.Errorf("the caller's document lists the endpoints of servers it has no tool of, or not those it has: %s", doc)
	}
	own := serveAs(b, &Identity{ID: "u"}, http.MethodGet, "/time/openapi.json").Body.String()
	if strings.Contains(own, `list_resources`) {
		t.Errorf("the document of a server the caller has no tool of lists its endpoints: %s", own)
	}
}

func TestEndpointsOfACallerWithoutThemAreNotImplemented(t *testing.T) {
	lc := newListCaller("a")
	lc.set.Server.Resources = true
	b, err := New(Config{Single: true, Servers: []*ServerConfig{{Name: "s", Upstream: lc}}})
	if err != nil {
		t.Fatal(err)
	}
	if w := serve(b, http.MethodGet, "/resources", nil); w.Code != http.StatusNotImplemented {
		t.Errorf("GET resources: %d %s, want 501", w.Code, w.Body)
	}
	if doc := serve(b, http.MethodGet, "/openapi.json", nil).Body.String(); strings.Contains(doc, "list_resources") {
		t.Errorf("the document lists endpoints the server cannot serve")
	}
}

func TestContentHeaders(t *testing.T) {
	for _, c := range []struct {
		mime              string
		text              bool
		ctype, dispostion string
	}{
		{"text/plain", true, "text/plain; charset=utf-8", "inline"},
		{"text/plain; charset=latin1", true, "text/plain; charset=utf-8", "inline"},
		{"text/html", true, "text/html; charset=utf-8", "attachment"},
		{"image/svg+xml", false, "image/svg+xml", "attachment"},
		{"image/png", false, "image/png", "inline"},
		{"application/json", true, "application/json; charset=utf-8", "inline"},
		{"", true, "text/plain; charset=utf-8", "inline"},
		{"", false, "application/octet-stream", "attachment"},
		{"text/plain\r\nX-Evil: 1", true, "text/plain; charset=utf-8", "inline"},
		{"nonsense", false, "application/octet-stream", "attachment"},
	} {
		ctype, disp := contentHeaders(c.mime, c.text)
		if ctype != c.ctype || disp != c.dispostion {
			t.Errorf("%q (text %v): %q %q, want %q %q", c.mime, c.text, ctype, disp, c.ctype, c.dispostion)
		}
	}
}

func TestSafeFilename(t *testing.T) {
	for _, c := range []struct{ uri, want string }{
		{"file:///srv/data/report.pdf", "report.pdf"},
		{"demo://resource/static/document/architecture.md", "architecture.md"},
		{"x://a/%22quoted%22%0D%0ASet-Cookie:%20a=b", "_quoted___Set-Cookie_ a=b"},
		{"x://a/..", ""},
		{"urn:isbn:0451450523", "0451450523"},
		{"x://a/dir/", ""},
		{"x://a/r%C3%A9sum%C3%A9.txt", "résumé.txt"},
	} {
		if got := safeFilename(c.uri); got != c.want {
			t.Errorf("%q: %q, want %q", c.uri, got, c.want)
		}
	}
}

func TestEndpointRequestsAreAudited(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	b, err := New(Config{Servers: []*ServerConfig{{Name: "s", Upstream: newResourceCaller("a")}}, Audit: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		method, path, body, wantMethod string
		status                         int64
		outcome                        string
	}{
		{http.MethodGet, "/s/resources/read?uri=x://a", "", "resources/read", 200, "ok"},
		{http.MethodPost, "/s/prompts/nope", `{}`, "prompts/get", 404, "rejected"},
		{http.MethodPost, "/s/complete", `[1]`, "completion/complete", 422, "invalid_arguments"},
	} {
		w := serveBody(b, &Identity{ID: "u1"}, c.method, c.path, c.body)
		entries := logs.TakeAll()
		if len(entries) != 1 {
			t.Fatalf("%s %s: %d audit lines, want 1", c.method, c.path, len(entries))
		}
		f := entries[0].ContextMap()
		if entries[0].Message != "server request" || f["method"] != c.wantMethod || f["server"] != "s" || f["user"] != "u1" ||
			f["status"] != c.status || f["outcome"] != c.outcome || f["response_bytes"] != int64(w.Body.Len()) {
			t.Errorf("%s %s: %q %v (answer %d bytes)", c.method, c.path, entries[0].Message, f, w.Body.Len())
		}
	}
}

func TestEndpointsAskTheKeyOfCallsForGETToo(t *testing.T) {
	const key = "k-0123456789"
	b, err := New(Config{Single: true, Servers: []*ServerConfig{{Name: "s", Upstream: newResourceCaller("a")}}, Access: Access{Keys: []string{key}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		method, path string
		auth         string
		status       int
	}{
		{http.MethodGet, "/openapi.json", "", 200}, // documents stay public without protect_docs
		{http.MethodGet, "/resources", "", 401},
		{http.MethodGet, "/resources/read?uri=x://a", "", 401},
		{http.MethodHead, "/resources/read?uri=x://a", "", 401},
		{http.MethodGet, "/prompts", "", 401},
		{http.MethodPost, "/prompts/p", "", 401},
		{http.MethodPost, "/complete", "", 401},
		{http.MethodGet, "/resources/read?uri=x://a", "Bearer " + key, 200},
		{http.MethodGet, "/prompts", "Bearer " + key, 200},
		{http.MethodOptions, "/resources", "", 204},
	} {
		r := httptest.NewRequest(c.method, "/m"+c.path, strings.NewReader(""))
		if c.auth != "" {
			r.Header.Set("Authorization", c.auth)
		}
		w := httptest.NewRecorder()
		path, _, _ := strings.Cut(c.path, "?")
		b.Serve(w, r, path, "/m")
		if w.Code != c.status {
			t.Errorf("%s %s (%q): %d %s, want %d", c.method, c.path, c.auth, w.Code, w.Body, c.status)
		}
	}
}

// slowResources is a resourceCaller whose reads wait for their context.
type slowResources struct {
	*resourceCaller
	started chan struct{}
}

func (c *slowResources) ReadResource(ctx context.Context, _ string) (json.RawMessage, error) {
	c.started <- struct{}{}
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestEndpointsKeepTheServersTimeoutAndConcurrencyCap(t *testing.T) {
	c := &slowResources{newResourceCaller("a"), make(chan struct{}, 2)}
	b, err := New(Config{Single: true, Servers: []*ServerConfig{{Name: "s", Upstream: c, Timeout: 200 * time.Millisecond, MaxConcurrent: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- serveBody(b, nil, http.MethodGet, "/resources/read?uri=x://a", "") }()
	<-c.started
	if w := serveBody(b, nil, http.MethodGet, "/resources/read?uri=x://b", ""); w.Code != http.StatusTooManyRequests {
		t.Errorf("a read over the cap: %d %s, want 429", w.Code, w.Body)
	}
	if w := <-done; w.Code != http.StatusGatewayTimeout || !strings.Contains(w.Body.String(), "resources/read did not answer within 200ms") {
		t.Errorf("a read past the timeout: %d %s, want 504", w.Code, w.Body)
	}
}

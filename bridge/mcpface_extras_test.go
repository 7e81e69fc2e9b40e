package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mcpclient "github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/yosida95/uritemplate/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// extrasCaller is a faceCaller with resources, prompts and completions:
// it lists uris as resources and templates as templates, reads any URI as
// a text naming it, renders prompt p and completes with the value typed.
type extrasCaller struct {
	*faceCaller
	uris, templates []string

	mu    sync.Mutex
	reads []string
	refs  []string
}

func newExtrasCaller(uris, templates []string, tools ...string) *extrasCaller {
	c := &extrasCaller{faceCaller: newFaceCaller(tools...), uris: uris, templates: templates}
	c.set.Server.Resources, c.set.Server.Prompts, c.set.Server.Completions = true, true, true
	return c
}

func (c *extrasCaller) ListResources(context.Context) ([]json.RawMessage, error) {
	var l []json.RawMessage
	for _, u := range c.uris {
		l = append(l, mustJSON(map[string]any{"uri": u, "name": "r " + u, "mimeType": "text/plain", "size": 3}))
	}
	return l, nil
}

func (c *extrasCaller) ListResourceTemplates(context.Context) ([]json.RawMessage, error) {
	var l []json.RawMessage
	for _, u := range c.templates {
		l = append(l, mustJSON(map[string]any{"uriTemplate": u, "name": "t " + u}))
	}
	return l, nil
}

func (c *extrasCaller) ReadResource(_ context.Context, uri string) (json.RawMessage, error) {
	c.mu.Lock()
	c.reads = append(c.reads, uri)
	c.mu.Unlock()
	if strings.Contains(uri, "missing") {
		return nil, &upstream.RPCError{Code: codeResourceNotFound, Message: "Resource not found"}
	}
	return mustJSON(map[string]any{"contents": []any{map[string]any{"uri": uri, "mimeType": "text/plain", "text": "content of " + uri, "_meta": map[string]any{"k": 1}}}}), nil
}

func (c *extrasCaller) ListPrompts(context.Context) ([]json.RawMessage, error) {
	return []json.RawMessage{json.RawMessage(`{"name":"greet","description":"says hello","arguments":[{"name":"who","required":true}]}`)}, nil
}

func (c *extrasCaller) GetPrompt(_ context.Context, name string, args map[string]string) (json.RawMessage, error) {
	return mustJSON(map[string]any{"description": "hello", "messages": []any{
		map[string]any{"role": "user", "content": map[string]any{"type": "text", "text": name + " to " + args["who"]}},
		map[string]any{"role": "assistant", "content": map[string]any{"type": "resource_link", "uri": "x://a", "name": "a"}},
	}}), nil
}

func (c *extrasCaller) Complete(_ context.Context, comp upstream.Completion) (json.RawMessage, error) {
	c.mu.Lock()
	c.refs = append(c.refs, string(comp.Ref))
	c.mu.Unlock()
	return mustJSON(map[string]any{"completion": map[string]any{"values": []string{comp.Value + "1", comp.Value + "2"}, "hasMore": true}}), nil
}

func readMCP(t *testing.T, c interface {
	ReadResource(context.Context, mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error)
}, uri string) (string, error) {
	t.Helper()
	req := mcp.ReadResourceRequest{}
	req.Params.URI = uri
	res, err := c.ReadResource(context.Background(), req)
	if err != nil {
		return "", err
	}
	b, _ := json.Marshal(res.Contents)
	return string(b), nil
}

func TestMCPFaceServesResourcesPromptsAndCompletionsOfOneServer(t *testing.T) {
	c := newExtrasCaller([]string{"x://a", "file:///b%20c"}, []string{"x://t/{id}"}, "now")
	core, logs := observer.New(zap.InfoLevel)
	b, err := New(Config{Single: true, Audit: zap.New(core), Servers: []*ServerConfig{{Name: "s", Upstream: c}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := serveBridge(t, b)
	for _, era := range eras {
		t.Run(era.name, func(t *testing.T) {
			cl, init := initialize(t, srv.URL+"/m/mcp", era.protocol, nil)
			if era.protocol == mcp.LATEST_LEGACY_PROTOCOL_VERSION {
				caps := init.Capabilities
				if caps.Resources == nil || caps.Prompts == nil || caps.Completions == nil {
					t.Errorf("capabilities = %+v; want resources, prompts and completions", caps)
				}
			}
			ctx := context.Background()
			lr, err := cl.ListResources(ctx, mcp.ListResourcesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			var uris []string
			for _, r := range lr.Resources {
				uris = append(uris, r.URI)
			}
			if want := []string{"x://a", "file:///b%20c"}; !slices.Equal(uris, want) {
				t.Errorf("resources = %v, want %v", uris, want)
			}
			if lr.Resources[0].MIMEType != "text/plain" || lr.Resources[0].Size == nil {
				t.Errorf("a listed resource lost its fields: %+v", lr.Resources[0])
			}
			lt, err := cl.ListResourceTemplates(ctx, mcp.ListResourceTemplatesRequest{})
			if err != nil || len(lt.ResourceTemplates) != 1 || lt.ResourceTemplates[0].URITemplate.Raw() != "x://t/{id}" {
				t.Errorf("templates = %+v, %v; want the server's only", lt, err)
			}
			got, err := readMCP(t, cl, "x://t/42")
			if err != nil || !strings.Contains(got, `"text":"content of x://t/42"`) || !strings.Contains(got, `"_meta":{"k":1}`) {
				t.Errorf("read = %s, %v", got, err)
			}
			if _, err := readMCP(t, cl, "x://missing"); err == nil || !strings.Contains(err.Error(), "Resource not found") {
				t.Errorf("read of a missing resource: %v", err)
			}
			lp, err := cl.ListPrompts(ctx, mcp.ListPromptsRequest{})
			if err != nil || len(lp.Prompts) != 1 || lp.Prompts[0].Name != "greet" || len(lp.Prompts[0].Arguments) != 1 {
				t.Errorf("prompts = %+v, %v", lp, err)
			}
			gp := mcp.GetPromptRequest{}
			gp.Params.Name, gp.Params.Arguments = "greet", map[string]string{"who": "ann"}
			pr, err := cl.GetPrompt(ctx, gp)
			if err != nil {
				t.Fatal(err)
			}
			msgs, _ := json.Marshal(pr.Messages)
			if !strings.Contains(string(msgs), `"text":"greet to ann"`) || !strings.Contains(string(msgs), `"type":"resource_link"`) {
				t.Errorf("prompt messages = %s", msgs)
			}
			gp.Params.Arguments = nil
			if _, err := cl.GetPrompt(ctx, gp); err == nil || !strings.Contains(err.Error(), "missing who") {
				t.Errorf("a prompt without its required argument: %v", err)
			}
			cr := mcp.CompleteRequest{}
			cr.Params.Ref = mcp.PromptReference{Type: "ref/prompt", Name: "greet"}
			cr.Params.Argument.Name, cr.Params.Argument.Value = "who", "an"
			comp, err := cl.Complete(ctx, cr)
			if err != nil || !slices.Equal(comp.Completion.Values, []string{"an1", "an2"}) || !comp.Completion.HasMore {
				t.Errorf("completion = %+v, %v", comp, err)
			}
		})
	}
	var methods []string
	for _, e := range logs.FilterMessage("server request").All() {
		if e.ContextMap()["face"] == "mcp" {
			methods = append(methods, e.ContextMap()["method"].(string))
		}
	}
	for _, want := range []string{"resources/list", "resources/templates/list", "resources/read", "prompts/list", "prompts/get", "completion/complete"} {
		if !slices.Contains(methods, want) {
			t.Errorf("audit lines of the MCP face are of %v; want one of %s", methods, want)
		}
	}
}

func TestMCPFaceNamespacesResourcesAndPromptsOfSeveralServers(t *testing.T) {
	odd := []string{"x://a", "demo://r/1?q=a&b=c#frag", "file:///dir/with%2Fslash", "urn:isbn:0451450523", "weird thing é", "mcpo://nested/x://y", ""}
	one, two := newExtrasCaller(odd, []string{"x://t/{id}{?q}"}, "now"), newExtrasCaller([]string{"x://a"}, nil, "read")
	srv := serveAnnAndBob(t, one, "two.b", two)
	ctx := context.Background()
	ann := connect(t, srv.URL+"/m/mcp", "", map[string]string{"X-User": "ann"})
	lr, err := ann.ListResources(ctx, mcp.ListResourcesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var uris []string
	for _, r := range lr.Resources {
		uris = append(uris, r.URI)
	}
	for _, u := range odd {
		if !slices.Contains(uris, "mcpo://one/"+u) {
			t.Errorf("resources %q lack mcpo://one/%s", uris, u)
		}
	}
	if !slices.Contains(uris, "mcpo://two.b/x://a") {
		t.Errorf("resources %q lack the second server's", uris)
	}
	// Every listed URI reads back the server's resource.
	for _, u := range uris {
		got, err := readMCP(t, ann, u)
		if err != nil {
			t.Errorf("read %q: %v", u, err)
			continue
		}
		var contents []struct{ URI, Text string }
		_ = json.Unmarshal([]byte(got), &contents)
		_, orig, _ := strings.Cut(strings.TrimPrefix(u, "mcpo://"), "/")
		if len(contents) != 1 || contents[0].URI != u || contents[0].Text != "content of "+orig {
			t.Errorf("read %q = %s; want the server's %q under the face's URI", u, got, orig)
		}
	}
	lt, err := ann.ListResourceTemplates(ctx, mcp.ListResourceTemplatesRequest{})
	if err != nil || len(lt.ResourceTemplates) != 1 {
		t.Fatalf("templates = %+v, %v", lt, err)
	}
	tmpl := lt.ResourceTemplates[0].URITemplate
	if tmpl.Raw() != "mcpo://one/x://t/{id}{?q}" {
		t.Errorf("template = %s", tmpl.Raw())
	}
	vals := uritemplate.Values{}
	vals.Set("id", uritemplate.String("7"))
	vals.Set("q", uritemplate.String("a b"))
	expanded, _ := tmpl.Expand(vals)
	if got, err := readMCP(t, ann, expanded); err != nil || !strings.Contains(got, `content of x://t/7?q=a%20b`) {
		t.Errorf("read of the expanded template %q = %s, %v", expanded, got, err)
	}
	for _, bad := range []string{"x://a", "mcpo://three/x://a", "mcpo://one"} {
		if _, err := readMCP(t, ann, bad); err == nil || !strings.Contains(err.Error(), "mcpo://<server>/") {
			t.Errorf("read of %q: %v; want the form of the URIs", bad, err)
		}
	}
	lp, err := ann.ListPrompts(ctx, mcp.ListPromptsRequest{})
	var names []string
	for _, p := range lp.Prompts {
		names = append(names, p.Name)
	}
	if err != nil || !slices.Equal(names, []string{"one_greet", "two_b_greet"}) {
		t.Errorf("prompts = %v, %v", names, err)
	}
	gp := mcp.GetPromptRequest{}
	gp.Params.Name, gp.Params.Arguments = "two_b_greet", map[string]string{"who": "bob"}
	if pr, err := ann.GetPrompt(ctx, gp); err != nil || !strings.Contains(mustString(pr.Messages), "greet to bob") {
		t.Errorf("get of a prefixed prompt: %v", err)
	}
	cr := mcp.CompleteRequest{}
	cr.Params.Ref = mcp.ResourceReference{Type: "ref/resource", URI: "mcpo://one/x://t/{id}{?q}"}
	cr.Params.Argument.Name, cr.Params.Argument.Value = "id", "4"
	if _, err := ann.Complete(ctx, cr); err != nil || one.refs[len(one.refs)-1] != `{"type":"ref/resource","uri":"x://t/{id}{?q}"}` {
		t.Errorf("completion of a template: %v, refs %v", err, one.refs)
	}
	cr.Params.Ref = mcp.PromptReference{Type: "ref/prompt", Name: "two_b_greet"}
	if _, err := ann.Complete(ctx, cr); err != nil || two.refs[len(two.refs)-1] != `{"name":"greet","type":"ref/prompt"}` {
		t.Errorf("completion of a prompt: %v, refs %v", err, two.refs)
	}

	// bob is granted a tool of one only: he sees and reads its resources
	// and prompts, not two's.
	bob := connect(t, srv.URL+"/m/mcp", "", map[string]string{"X-User": "bob"})
	lr, err = bob.ListResources(ctx, mcp.ListResourcesRequest{})
	if err != nil || len(lr.Resources) != len(odd) {
		t.Errorf("bob's resources = %+v, %v; want one's only", lr, err)
	}
	if _, err := readMCP(t, bob, "mcpo://two.b/x://a"); err == nil || !strings.Contains(err.Error(), "not granted") {
		t.Errorf("bob's read of two's resource: %v", err)
	}
	if _, err := bob.GetPrompt(ctx, gp); err == nil || !strings.Contains(err.Error(), "not granted") {
		t.Errorf("bob's get of two's prompt: %v", err)
	}
	eve := connect(t, srv.URL+"/m/mcp", "", map[string]string{"X-User": "eve"})
	if lp, err := eve.ListPrompts(ctx, mcp.ListPromptsRequest{}); err != nil || len(lp.Prompts) != 0 {
		t.Errorf("eve, granted nothing, lists prompts %+v, %v", lp, err)
	}
}

// serveAnnAndBob serves a mount of servers one and two (named so), ann
// granted every tool and bob only one's "now".
func serveAnnAndBob(t *testing.T, one Caller, name string, two Caller) *httptest.Server {
	t.Helper()
	b, err := New(Config{
		Servers: []*ServerConfig{{Name: "one", Upstream: one}, {Name: name, Upstream: two}},
		Access: Access{Rules: []Rule{
			{Subjects: []string{"user:ann"}, Tools: []string{"*"}},
			{Subjects: []string{"user:bob"}, Tools: []string{"one/now"}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return serveBridge(t, b)
}

func mustString(v any) string { return string(mustJSON(v)) }

func TestMCPFaceLeavesOutWhatIsTurnedOff(t *testing.T) {
	c := newExtrasCaller([]string{"x://a"}, nil, "now")
	b, err := New(Config{Single: true, Servers: []*ServerConfig{{Name: "s", Upstream: c, DisableResources: true, DisablePrompts: true}}})
	if err != nil {
		t.Fatal(err)
	}
	cl, init := initialize(t, serveBridge(t, b).URL+"/m/mcp", "", nil)
	if init.Capabilities.Resources != nil || init.Capabilities.Prompts != nil || init.Capabilities.Completions != nil {
		t.Errorf("capabilities = %+v; want no resources, prompts or completions", init.Capabilities)
	}
	ctx := context.Background()
	if lr, err := cl.ListResources(ctx, mcp.ListResourcesRequest{}); err != nil || len(lr.Resources) != 0 {
		t.Errorf("resources = %+v, %v; want none", lr, err)
	}
	if _, err := readMCP(t, cl, "x://a"); err == nil || !strings.Contains(err.Error(), "turned off") {
		t.Errorf("a read with resources off: %v", err)
	}
	if len(c.reads) != 0 {
		t.Errorf("the server was asked to read %v", c.reads)
	}
}

func TestMCPFaceSaysWhyAServerIsDownForItsResources(t *testing.T) {
	c := newExtrasCaller([]string{"x://a"}, nil)
	c.state = upstream.StateStarting
	c.set = nil
	b, err := New(Config{Single: true, Servers: []*ServerConfig{{Name: "slowpoke", Upstream: c}}})
	if err != nil {
		t.Fatal(err)
	}
	cl := connect(t, serveBridge(t, b).URL+"/m/mcp", "", nil)
	if _, err := cl.ListResources(context.Background(), mcp.ListResourcesRequest{}); err == nil || !strings.Contains(err.Error(), `server "slowpoke" is starting`) {
		t.Errorf("resources/list of a starting server: %v; want why", err)
	}
	if _, err := readMCP(t, cl, "x://a"); err == nil || !strings.Contains(err.Error(), `server "slowpoke" is starting`) {
		t.Errorf("resources/read of a starting server: %v; want why", err)
	}
}

// noticingCaller is an extrasCaller whose server sends notices when the
// test says.
type noticingCaller struct {
	*extrasCaller
	mu sync.Mutex
	fs []func(upstream.Notice)
}

func (c *noticingCaller) Listen(f func(upstream.Notice)) func() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fs = append(c.fs, f)
	return func() {}
}

func (c *noticingCaller) send(method string, params map[string]any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.fs {
		f(upstream.Notice{Method: method, Params: params})
	}
}

// noticedClient connects a 2025-11-25 client of user to the endpoint at
// url, listening on its GET stream, at log level level, and returns what
// it is told: its log messages ("<level> <logger> <data>") and the
// list_changed notifications' methods.
func noticedClient(t *testing.T, url, user string, level mcp.LoggingLevel) chan string {
	t.Helper()
	cl, init := initialize(t, url, mcp.LATEST_LEGACY_PROTOCOL_VERSION, map[string]string{"X-User": user},
		transport.WithContinuousListening())
	if init.Capabilities.Logging == nil || !init.Capabilities.Resources.ListChanged || !init.Capabilities.Prompts.ListChanged {
		t.Errorf("capabilities = %+v; want logging and listChanged", init.Capabilities)
	}
	got := make(chan string, 64)
	cl.OnNotification(func(n mcp.JSONRPCNotification) {
		switch n.Method {
		case string(mcp.MethodNotificationMessage):
			p := n.Params.AdditionalFields
			got <- fmt.Sprintf("%v %v %v", p["level"], p["logger"], p["data"])
		case string(mcp.MethodNotificationResourcesListChanged), string(mcp.MethodNotificationPromptsListChanged):
			got <- n.Method
		}
	})
	if err := cl.SetLevel(context.Background(), mcp.SetLevelRequest{Params: mcp.SetLevelParams{Level: level}}); err != nil {
		t.Fatal(err)
	}
	return got
}

// collectNotices returns the n notices c is told within 5 s, and any more
// it is told within 300 ms after them.
func collectNotices(c chan string, n int) []string {
	var got []string
	timeout := time.After(5 * time.Second)
	for len(got) < n {
		select {
		case s := <-c:
			got = append(got, s)
		case <-timeout:
			return got
		}
	}
	select { // and no more
	case s := <-c:
		got = append(got, s)
	case <-time.After(300 * time.Millisecond):
	}
	return got
}

func TestMCPFacePassesOnListChangesAndLogMessages(t *testing.T) {
	one := &noticingCaller{extrasCaller: newExtrasCaller([]string{"x://a"}, nil, "now")}
	two := &noticingCaller{extrasCaller: newExtrasCaller([]string{"x://b"}, nil, "read")}
	url := serveAnnAndBob(t, one, "two", two).URL + "/m/mcp"
	ann, bob := noticedClient(t, url, "ann", mcp.LoggingLevelInfo), noticedClient(t, url, "bob", mcp.LoggingLevelWarning)
	time.Sleep(200 * time.Millisecond) // the GET streams open
	one.send("notifications/message", map[string]any{"level": "debug", "data": "too fine"})
	one.send("notifications/message", map[string]any{"level": "info", "logger": "db", "data": "one info"})
	two.send("notifications/message", map[string]any{"level": "error", "data": map[string]any{"two": "error"}})
	one.send("notifications/message", map[string]any{"level": "warning", "data": "one warning"})
	two.send("notifications/resources/list_changed", nil)
	one.send("notifications/prompts/list_changed", nil)
	wantAnn := []string{"info one/db one info", "error two map[two:error]", "warning one one warning",
		"notifications/resources/list_changed", "notifications/prompts/list_changed"}
	if got := collectNotices(ann, len(wantAnn)); !slices.Equal(got, wantAnn) {
		t.Errorf("ann got %q, want %q", got, wantAnn)
	}
	// bob is not granted two: none of its log messages; his level is warning.
	wantBob := []string{"warning one one warning", "notifications/resources/list_changed", "notifications/prompts/list_changed"}
	if got := collectNotices(bob, len(wantBob)); !slices.Equal(got, wantBob) {
		t.Errorf("bob got %q, want %q", got, wantBob)
	}
}

// perCallerCaller is an extrasCaller run as a server with a session per
// caller: the test sends the notices of a caller's session, and it keeps
// the votes on each caller's log level.
type perCallerCaller struct {
	*extrasCaller
	mu    sync.Mutex
	fs    []func(string, upstream.Notice)
	votes map[string]string // caller → level
}

func (c *perCallerCaller) ListenCallers(f func(string, upstream.Notice)) func() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fs = append(c.fs, f)
	return func() {}
}

func (c *perCallerCaller) SetCallerLogLevel(caller string, _ any, level string) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.votes == nil {
		c.votes = map[string]string{}
	}
	c.votes[caller] = level
	ch := make(chan struct{})
	close(ch)
	return ch
}

func (c *perCallerCaller) sendAs(caller, method string, params map[string]any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.fs {
		f(caller, upstream.Notice{Method: method, Params: params})
	}
}

func TestMCPFacePassesAPerCallerServersNoticesToTheirCallerOnly(t *testing.T) {
	c := &perCallerCaller{extrasCaller: newExtrasCaller([]string{"x://a"}, nil, "now")}
	b, err := New(Config{Single: true, Servers: []*ServerConfig{{Name: "s", Upstream: c}}})
	if err != nil {
		t.Fatal(err)
	}
	url := serveBridge(t, b).URL + "/m/mcp"
	ann, bob := noticedClient(t, url, "ann", mcp.LoggingLevelInfo), noticedClient(t, url, "bob", mcp.LoggingLevelWarning)
	time.Sleep(200 * time.Millisecond) // the GET streams open
	c.sendAs("ann", "notifications/resources/list_changed", nil)
	c.sendAs("bob", "notifications/message", map[string]any{"level": "info", "data": "under bob's level"})
	c.sendAs("bob", "notifications/message", map[string]any{"level": "error", "data": "bob's"})
	c.sendAs("ann", "notifications/message", map[string]any{"level": "info", "data": "ann's"})
	c.sendAs("carol", "notifications/prompts/list_changed", nil)
	if got, want := collectNotices(ann, 2), []string{"notifications/resources/list_changed", "info  ann's"}; !slices.Equal(got, want) {
		t.Errorf("ann got %q, want %q", got, want)
	}
	if got, want := collectNotices(bob, 1), []string{"error  bob's"}; !slices.Equal(got, want) {
		t.Errorf("bob got %q, want %q", got, want)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if want := map[string]string{"ann": "info", "bob": "warning"}; !maps.Equal(c.votes, want) {
		t.Errorf("the votes on the callers' levels are %v, want %v", c.votes, want)
	}
}

// subscribingCaller is a noticingCaller whose resources can be subscribed
// to, recording the subscriptions.
type subscribingCaller struct {
	*noticingCaller
	smu  sync.Mutex
	subs []string
}

func newSubscribingCaller(uris []string, tools ...string) *subscribingCaller {
	c := &subscribingCaller{noticingCaller: &noticingCaller{extrasCaller: newExtrasCaller(uris, nil, tools...)}}
	c.set.Server.Subscribe = true
	return c
}

func (c *subscribingCaller) SubscribeResource(_ context.Context, uri string) error {
	c.smu.Lock()
	defer c.smu.Unlock()
	c.subs = append(c.subs, "+"+uri)
	return nil
}

func (c *subscribingCaller) UnsubscribeResource(_ context.Context, uri string) error {
	c.smu.Lock()
	defer c.smu.Unlock()
	c.subs = append(c.subs, "-"+uri)
	return nil
}

func (c *subscribingCaller) subscriptions() []string {
	c.smu.Lock()
	defer c.smu.Unlock()
	return slices.Clone(c.subs)
}

func TestMCPFacePassesOnSubscriptionsAndUpdates(t *testing.T) {
	one, two := newSubscribingCaller([]string{"x://a"}, "now"), newSubscribingCaller([]string{"x://b"}, "read")
	srv := serveAnnAndBob(t, one, "two", two)
	ctx := context.Background()
	type client struct {
		*mcpclient.Client
		updates chan string
	}
	connectAs := func(user string) client {
		cl, init := initialize(t, srv.URL+"/m/mcp", mcp.LATEST_LEGACY_PROTOCOL_VERSION, map[string]string{"X-User": user},
			transport.WithContinuousListening())
		if init.Capabilities.Resources == nil || !init.Capabilities.Resources.Subscribe {
			t.Errorf("capabilities = %+v; want resources that can be subscribed to", init.Capabilities)
		}
		c := client{cl, make(chan string, 16)}
		cl.OnNotification(func(n mcp.JSONRPCNotification) {
			if n.Method == string(mcp.MethodNotificationResourceUpdated) {
				c.updates <- fmt.Sprint(n.Params.AdditionalFields["uri"])
			}
		})
		return c
	}
	subscribe := func(c client, uri string) error {
		return c.Subscribe(ctx, mcp.SubscribeRequest{Params: mcp.SubscribeParams{URI: uri}})
	}
	unsubscribe := func(c client, uri string) error {
		return c.Unsubscribe(ctx, mcp.UnsubscribeRequest{Params: mcp.UnsubscribeParams{URI: uri}})
	}
	ann, bob := connectAs("ann"), connectAs("bob")
	for _, c := range []client{ann, bob} {
		if err := subscribe(c, "mcpo://one/x://a"); err != nil {
			t.Fatal(err)
		}
	}
	if err := subscribe(bob, "mcpo://two/x://b"); err == nil || !strings.Contains(err.Error(), "not granted") {
		t.Errorf("bob's subscription to two's resource: %v", err)
	}
	if got := one.subscriptions(); !slices.Equal(got, []string{"+x://a"}) {
		t.Errorf("one was asked %v; want one subscription for both sessions", got)
	}
	time.Sleep(200 * time.Millisecond) // the GET streams open
	two.send("notifications/resources/updated", map[string]any{"uri": "x://b"})
	one.send("notifications/resources/updated", map[string]any{"uri": "x://a"})
	for name, c := range map[string]client{"ann": ann, "bob": bob} {
		select {
		case got := <-c.updates:
			if got != "mcpo://one/x://a" {
				t.Errorf("%s was told of %s", name, got)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s was not told of the update", name)
		}
	}
	if err := unsubscribe(ann, "mcpo://one/x://a"); err != nil {
		t.Fatal(err)
	}
	if got := one.subscriptions(); !slices.Equal(got, []string{"+x://a"}) {
		t.Errorf("one was asked %v; bob still follows x://a", got)
	}
	if err := subscribe(ann, "mcpo://one/x://c"); err != nil {
		t.Fatal(err)
	}
	if err := unsubscribe(bob, "mcpo://one/x://a"); err != nil {
		t.Fatal(err)
	}
	_ = ann.Close() // ends the session: nobody follows x://c
	deadline := time.Now().Add(5 * time.Second)
	want := []string{"+x://a", "+x://c", "-x://a", "-x://c"}
	for !slices.Equal(one.subscriptions(), want) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := one.subscriptions(); !slices.Equal(got, want) {
		t.Errorf("one was asked %v, want %v", got, want)
	}
}

func TestMCPFaceGivesTheAuthorizeLinkForAResourceOfAServerThatNeedsIt(t *testing.T) {
	remote := newExtrasCaller([]string{"x://a"}, nil)
	remote.state, remote.set = upstream.StateNeedsAuth, nil
	b, err := New(Config{Servers: []*ServerConfig{
		{Name: "remote", Upstream: remote, Consent: &recordingConsent{}},
		{Name: "local", Upstream: newExtrasCaller([]string{"x://b"}, nil, "now")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	cl := connect(t, serveBridge(t, b).URL+"/m/mcp", "", nil)
	list, err := cl.ListResources(context.Background(), mcp.ListResourcesRequest{})
	if err != nil || len(list.Resources) != 1 || list.Resources[0].URI != "mcpo://local/x://b" {
		t.Errorf("resources = %+v, %v; want those of the server that is ready", list, err)
	}
	if _, err := readMCP(t, cl, "mcpo://remote/x://a"); err == nil || !strings.Contains(err.Error(), `server "remote" needs authorization`) ||
		!strings.Contains(err.Error(), "/m/remote/oauth/authorize") {
		t.Errorf("a read of a server that needs authorization: %v; want the link", err)
	}
}

// elicitingCaller asks, for its tool "ask", the call's own client when
// there is one, as an Upstream does with an elicitation it ties to the
// call; "no one to ask" otherwise.
type elicitingCaller struct{ *faceCaller }

func (c elicitingCaller) CallTool(ctx context.Context, tool string, args json.RawMessage) (*upstream.CallResult, error) {
	fn := upstream.ElicitationFrom(ctx)
	if fn == nil {
		return &upstream.CallResult{Content: []upstream.Content{text("no one to ask")}}, nil
	}
	ans, err := fn(ctx, upstream.Elicitation{Server: "s", Mode: "form", Message: "Which color?",
		RequestedSchema: json.RawMessage(`{"type":"object","properties":{"color":{"type":"string"}},"required":["color"]}`)})
	if err != nil {
		return nil, err
	}
	return &upstream.CallResult{Content: []upstream.Content{text(fmt.Sprintf("%s %v", ans.Action, ans.Content))}}, nil
}

// colorPicker answers every elicitation with the color red.
type colorPicker struct{ asked []string }

func (p *colorPicker) Elicit(_ context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	p.asked = append(p.asked, req.Params.Message)
	return &mcp.ElicitationResult{ElicitationResponse: mcp.ElicitationResponse{Action: mcp.ElicitationResponseActionAccept,
		Content: map[string]any{"color": "red"}}}, nil
}

func TestMCPFacePassesAnElicitationOnToTheClientThatCalled(t *testing.T) {
	b, err := New(Config{Single: true, Servers: []*ServerConfig{{Name: "s", Upstream: elicitingCaller{newFaceCaller("ask")}}}})
	if err != nil {
		t.Fatal(err)
	}
	url := serveBridge(t, b).URL + "/m/mcp"
	cases := []struct {
		name, protocol string
		picker         *colorPicker
		want           string
	}{
		{"a client that declares elicitation", mcp.LATEST_LEGACY_PROTOCOL_VERSION, &colorPicker{}, "accept map[color:red]"},
		{"a client that does not", mcp.LATEST_LEGACY_PROTOCOL_VERSION, nil, "no one to ask"},
		// Asked in an input_required result, the call parked meanwhile.
		{"a 2026-07-28 client that declares elicitation", mcp.LATEST_PROTOCOL_VERSION, &colorPicker{}, "accept map[color:red]"},
		{"a 2026-07-28 client that does not", mcp.LATEST_PROTOCOL_VERSION, nil, "no one to ask"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var opts []mcpclient.ClientOption
			if tc.picker != nil {
				opts = append(opts, mcpclient.WithElicitationHandler(tc.picker))
			}
			cl, _ := initializeWith(t, url, tc.protocol, nil, opts)
			res, err := callMCPTool(cl, "ask", nil)
			if err != nil || len(res.Content) != 1 || res.Content[0].(mcp.TextContent).Text != tc.want {
				t.Fatalf("ask = %+v, %v; want %q", res, err, tc.want)
			}
			if tc.want != "no one to ask" && !slices.Equal(tc.picker.asked, []string{"Which color?"}) {
				t.Errorf("the client was asked %q", tc.picker.asked)
			}
		})
	}
}

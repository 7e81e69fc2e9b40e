package bridge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/openapi"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// faceCaller is a server whose tools answer what results holds for them,
// recording the arguments each call got.
type faceCaller struct {
	set     *upstream.ToolSet
	results map[string]*upstream.CallResult
	errs    map[string]error
	state   upstream.State

	mu   sync.Mutex
	args []string
}

func (c *faceCaller) Tools() *upstream.ToolSet { return c.set }

func (c *faceCaller) CallTool(ctx context.Context, tool string, args json.RawMessage) (*upstream.CallResult, error) {
	c.mu.Lock()
	c.args = append(c.args, string(args))
	c.mu.Unlock()
	if tool == "slow" {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if err := c.errs[tool]; err != nil {
		return nil, err
	}
	if r := c.results[tool]; r != nil {
		return r, nil
	}
	return &upstream.CallResult{Content: []upstream.Content{text("ok " + tool)}}, nil
}

func (c *faceCaller) Status() upstream.Status {
	if c.state != "" {
		return upstream.Status{State: c.state}
	}
	return upstream.Status{State: upstream.StateReady}
}

func newFaceCaller(tools ...string) *faceCaller {
	c := &faceCaller{set: &upstream.ToolSet{Server: upstream.ServerInfo{Name: "fake", Version: "1"}}}
	for _, t := range tools {
		c.set.Tools = append(c.set.Tools, &upstream.Tool{Name: t,
			InputSchema: json.RawMessage(`{"type":"object","properties":{"n":{"type":"integer"}}}`)})
	}
	return c
}

// raw is a content item as a server sends it.
func raw(s string) upstream.Content {
	var c upstream.Content
	_ = json.Unmarshal([]byte(s), &c)
	c.Raw = json.RawMessage(s)
	return c
}

// wireResult is a result as upstream reads it from a server: Raw and
// Meta, each item with its Wire, and the fields the REST face reads.
func wireResult(s string) *upstream.CallResult {
	var r struct {
		Content    []json.RawMessage `json:"content"`
		Structured json.RawMessage   `json:"structuredContent"`
		Meta       json.RawMessage   `json:"_meta"`
		IsError    bool              `json:"isError"`
	}
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		panic(err)
	}
	res := &upstream.CallResult{Structured: r.Structured, Meta: r.Meta, IsError: r.IsError, Raw: json.RawMessage(s)}
	for _, c := range r.Content {
		item := raw(string(c))
		item.Wire = c
		res.Content = append(res.Content, item)
	}
	return res
}

// serveBridge serves b at /m, as the Caddy handler does, with identity
// taken from the X-User header.
func serveBridge(t *testing.T, b *Bridge) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rel, ok := strings.CutPrefix(r.URL.Path, "/m")
		if !ok {
			http.NotFound(w, r)
			return
		}
		if u := r.Header.Get("X-User"); u != "" {
			r = r.WithContext(WithIdentity(r.Context(), Identity{ID: u}))
		}
		b.Serve(w, r, rel, "/m")
	}))
	t.Cleanup(func() { srv.Close(); b.Close() })
	return srv
}

// connect returns an initialized mcp-go client of url, pinned to protocol
// ("" negotiates).
func connect(t *testing.T, url, protocol string, headers map[string]string, opts ...transport.StreamableHTTPCOption) *client.Client {
	t.Helper()
	c, _ := initialize(t, url, protocol, headers, opts...)
	return c
}

// initialize is connect that also returns the initialize result.
func initialize(t *testing.T, url, protocol string, headers map[string]string, opts ...transport.StreamableHTTPCOption) (*client.Client, *mcp.InitializeResult) {
	t.Helper()
	return initializeWith(t, url, protocol, headers, nil, opts...)
}

// initializeWith is initialize with client options (the handlers of the
// client's capabilities) besides the protocol.
func initializeWith(t *testing.T, url, protocol string, headers map[string]string, copts []client.ClientOption, opts ...transport.StreamableHTTPCOption) (*client.Client, *mcp.InitializeResult) {
	t.Helper()
	tr, err := transport.NewStreamableHTTP(url, append(opts, transport.WithHTTPHeaders(headers))...)
	if err != nil {
		t.Fatal(err)
	}
	if protocol != "" {
		copts = append(copts, client.WithProtocolVersion(protocol))
	}
	c := client.NewClient(tr, copts...)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The transport, and its GET stream, live as long as the client.
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	req := mcp.InitializeRequest{}
	req.Params.ClientInfo = mcp.Implementation{Name: "face-test", Version: "1"}
	res, err := c.Initialize(ctx, req)
	if err != nil {
		t.Fatalf("initialize: %v", err)
	}
	return c, res
}

func toolNames(t *testing.T, c *client.Client) []string {
	t.Helper()
	res, err := c.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return names
}

func callMCPTool(c *client.Client, name string, args any) (*mcp.CallToolResult, error) {
	req := mcp.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = name, args
	return c.CallTool(context.Background(), req)
}

var eras = []struct{ name, protocol string }{
	{"2025-11-25", mcp.LATEST_LEGACY_PROTOCOL_VERSION},
	{"2026-07-28", mcp.LATEST_PROTOCOL_VERSION},
}

func TestMCPFaceOfASingleServerPassesResultsThrough(t *testing.T) {
	c := newFaceCaller("echo", "mcp", "rich", "fails", "rpc")
	c.results = map[string]*upstream.CallResult{
		"rich": wireResult(`{"content":[` +
			`{"type":"text","text":"hi","annotations":{"audience":["user"]}},` +
			`{"type":"image","data":"AAAA","mimeType":"image/png"},` +
			`{"type":"resource_link","uri":"file:///a","name":"a","_meta":{"k":1}}],` +
			`"structuredContent":{"n":12345678901234567890},"_meta":{"trace":"abc"}}`),
		"fails": {IsError: true, Content: []upstream.Content{raw(`{"type":"text","text":"no such city"}`)}},
	}
	c.errs = map[string]error{"rpc": &upstream.RPCError{Code: -32001, Message: "quota", Data: json.RawMessage(`{"left":0}`)}}
	obs := &faceObserver{}
	b, err := New(Config{Single: true, Observer: obs, Servers: []*ServerConfig{{Name: "time", Upstream: c}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := serveBridge(t, b)
	for _, era := range eras {
		t.Run(era.name, func(t *testing.T) {
			cl := connect(t, srv.URL+"/m/mcp", era.protocol, nil)
			if got, want := toolNames(t, cl), []string{"echo", "fails", "mcp", "rich", "rpc"}; !slices.Equal(got, want) {
				t.Errorf("tools = %v, want %v", got, want)
			}
			res, err := callMCPTool(cl, "rich", map[string]any{"n": 1})
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(res)
			for _, want := range []string{`"annotations":{"audience":["user"]}`, `"uri":"file:///a"`,
				`"structuredContent":{"n":12345678901234567890}`, `"trace":"abc"`, `"mimeType":"image/png"`} {
				if !bytes.Contains(got, []byte(want)) {
					t.Errorf("result %s lacks %s", got, want)
				}
			}
			res, err = callMCPTool(cl, "fails", nil)
			if err != nil || !res.IsError {
				t.Errorf("a tool error = %+v, %v; want a result with isError", res, err)
			}
			// mcp-go's client keeps only the message of a code it does
			// not know: the code and data are checked in mcperrors_test.go.
			_, err = callMCPTool(cl, "rpc", nil)
			if err == nil || err.Error() != "quota" {
				t.Errorf("an upstream JSON-RPC error = %v; want its own message", err)
			}
			res, err = callMCPTool(cl, "echo", map[string]any{"n": "not a number"})
			if err != nil || !res.IsError {
				t.Errorf("arguments against the schema = %+v, %v; want a tool error", res, err)
			}
		})
	}
	if got := obs.faces(); !slices.Contains(got, "mcp time/rich ok") || !slices.Contains(got, "mcp time/fails tool_error") {
		t.Errorf("the observer saw %v", got)
	}
	// A content type newer than mcp-go's client passes through too.
	c.results["rich"] = wireResult(`{"content":[{"type":"future_kind","x":[1,2]}]}`)
	msg, h := modern("tools/call", "rich")
	_, body := postMCP(t, srv.URL+"/m/mcp", msg, h)
	if !strings.Contains(body, `{"type":"future_kind","x":[1,2]}`) {
		t.Errorf("a content item of an unknown type became %s", body)
	}
	// The REST face moved the tool named like the endpoint elsewhere.
	var namer openapi.Namer
	namer.Reserve(MCPSegment)
	resp, err := http.Post(srv.URL+"/m/"+namer.PathSegment("mcp"), "application/json", strings.NewReader(`{}`))
	if err == nil {
		resp.Body.Close()
	}
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("POST mcp_2 = %v, %v; want the tool named mcp", resp, err)
	}
}

// faceObserver records "face server/tool outcome" of every call.
type faceObserver struct {
	mu    sync.Mutex
	calls []string
}

func (o *faceObserver) CallStarted(string, string) {}
func (o *faceObserver) CallFinished(server, tool string, outcome Outcome, took time.Duration) {
	o.CallFinishedOn("?", server, tool, outcome, took)
}
func (o *faceObserver) CallFinishedOn(face Face, server, tool string, outcome Outcome, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls = append(o.calls, string(face)+" "+server+"/"+tool+" "+string(outcome))
}
func (o *faceObserver) faces() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.calls)
}

func TestMCPFaceOfSeveralServersPrefixesAndGrants(t *testing.T) {
	b, err := New(Config{
		Servers: []*ServerConfig{
			{Name: "time", Upstream: newFaceCaller("now", "zone")},
			{Name: "files", Upstream: newFaceCaller("read", "write")},
		},
		Access: Access{Rules: []Rule{
			{Subjects: []string{"user:ann"}, Tools: []string{"*"}},
			{Subjects: []string{"user:bob"}, Tools: []string{"time/now", "files/read"}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := serveBridge(t, b)
	cases := []struct {
		name, path, user string
		want             []string
	}{
		{"every server, every tool", "/m/mcp", "ann", []string{"files_read", "files_write", "time_now", "time_zone"}},
		{"every server, granted tools", "/m/mcp", "bob", []string{"files_read", "time_now"}},
		{"one server", "/m/time/mcp", "ann", []string{"now", "zone"}},
		{"one server, granted tools", "/m/files/mcp", "bob", []string{"read"}},
		{"nobody granted", "/m/mcp", "eve", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cl := connect(t, srv.URL+tc.path, "", map[string]string{"X-User": tc.user})
			if got := toolNames(t, cl); !slices.Equal(got, tc.want) {
				t.Errorf("tools = %v, want %v", got, tc.want)
			}
		})
	}
	bob := connect(t, srv.URL+"/m/mcp", "", map[string]string{"X-User": "bob"})
	if res, err := callMCPTool(bob, "time_now", nil); err != nil || res.IsError {
		t.Errorf("a granted call = %+v, %v", res, err)
	}
	if _, err := callMCPTool(bob, "files_write", nil); err == nil {
		t.Error("a call of a tool not granted succeeded")
	}
}

func TestMCPFaceGivesTheServersInstructions(t *testing.T) {
	clock, files := newFaceCaller("now"), newFaceCaller("read")
	clock.set.Server.Instructions = "Times are in UTC."
	b, err := New(Config{Servers: []*ServerConfig{{Name: "time", Upstream: clock}, {Name: "files", Upstream: files}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := serveBridge(t, b)
	for _, era := range eras {
		for path, want := range map[string]string{
			"/m/time/mcp":  "Times are in UTC.",
			"/m/files/mcp": "",
			"/m/mcp":       "Server time (its tools are named time_<tool>):\nTimes are in UTC.",
		} {
			_, res := initialize(t, srv.URL+path, era.protocol, nil)
			if res.Instructions != want {
				t.Errorf("%s %s: instructions %q, want %q", era.name, path, res.Instructions, want)
			}
		}
	}
}

func TestMCPFaceSaysWhyAServerIsDown(t *testing.T) {
	c := &faceCaller{state: upstream.StateStarting}
	b, err := New(Config{Single: true, Servers: []*ServerConfig{{Name: "slowpoke", Upstream: c}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := serveBridge(t, b)
	cl := connect(t, srv.URL+"/m/mcp", "", nil)
	_, err = cl.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err == nil || !strings.Contains(err.Error(), `server "slowpoke" is starting`) {
		t.Errorf("tools/list of a starting server: %v; want why", err)
	}
	_, err = callMCPTool(cl, "anything", nil)
	if err == nil || !strings.Contains(err.Error(), `server "slowpoke" is starting`) {
		t.Errorf("tools/call of a starting server: %v; want why", err)
	}
}

func TestMCPFaceGivesTheAuthorizeLinkOfAServerThatNeedsIt(t *testing.T) {
	c := &faceCaller{state: upstream.StateNeedsAuth}
	b, err := New(Config{Servers: []*ServerConfig{
		{Name: "remote", Upstream: c, Consent: &recordingConsent{}},
		{Name: "time", Upstream: newFaceCaller("now")},
	}})
	if err != nil {
		t.Fatal(err)
	}
	cl := connect(t, serveBridge(t, b).URL+"/m/mcp", "", nil)
	if got := toolNames(t, cl); !slices.Equal(got, []string{"time_now"}) {
		t.Errorf("tools = %v: want those of the server that is ready", got)
	}
	_, err = callMCPTool(cl, "remote_search", nil)
	if err == nil || !strings.Contains(err.Error(), `server "remote" needs authorization`) ||
		!strings.Contains(err.Error(), "/m/remote/oauth/authorize") {
		t.Errorf("a call of a server that needs authorization: %v; want the link", err)
	}
}

func TestMCPFaceKeepsTheServersConcurrencyCap(t *testing.T) {
	c := newFaceCaller("slow", "echo")
	b, err := New(Config{Single: true, Servers: []*ServerConfig{{Name: "s", Upstream: c, MaxConcurrent: 1, Timeout: time.Second}}})
	if err != nil {
		t.Fatal(err)
	}
	url := serveBridge(t, b).URL + "/m/mcp"
	first, second := connect(t, url, "", nil), connect(t, url, "", nil)
	done := make(chan error)
	go func() {
		_, err := callMCPTool(first, "slow", nil)
		done <- err
	}()
	waitCalls := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		n := len(c.args)
		c.mu.Unlock()
		if n > 0 || time.Now().After(waitCalls) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, err = callMCPTool(second, "echo", nil)
	if err == nil || !strings.Contains(err.Error(), `server "s" is busy`) {
		t.Errorf("a call over max_concurrent: %v", err)
	}
	<-done
}

func TestMCPFaceTimesOutAsAnError(t *testing.T) {
	b, err := New(Config{Single: true, Servers: []*ServerConfig{{Name: "s", Upstream: newFaceCaller("slow"), Timeout: 100 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	cl := connect(t, serveBridge(t, b).URL+"/m/mcp", "", nil)
	_, err = callMCPTool(cl, "slow", nil)
	if err == nil || !strings.Contains(err.Error(), "did not answer within 100ms") {
		t.Errorf("a call past its timeout: %v", err)
	}
}

// postMCP sends one raw message to the endpoint.
func postMCP(t *testing.T, url, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	if h := header["Host"]; h != "" {
		req.Host = h
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// modern is a 2026-07-28 request of method, with the tool name (or "")
// and headers it needs.
func modern(method, name string) (string, map[string]string) {
	meta := `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",` +
		`"io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"raw","version":"1"}}`
	h := map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": method}
	params := "{" + meta + "}"
	if name != "" {
		params = `{"name":"` + name + `",` + meta + "}"
		h["Mcp-Name"] = name
	}
	return `{"jsonrpc":"2.0","id":7,"method":"` + method + `","params":` + params + `}`, h
}

const initMsg = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

func TestMCPFaceRefusesBadRequests(t *testing.T) {
	b, err := New(Config{Single: true, MaxBodyBytes: 1024,
		Access:  Access{Keys: []string{"k1"}, CORS: &CORS{Origins: []string{"https://chat.example"}}},
		Servers: []*ServerConfig{{Name: "s", Upstream: newFaceCaller("echo")}}})
	if err != nil {
		t.Fatal(err)
	}
	url := serveBridge(t, b).URL + "/m/mcp"
	key := map[string]string{"Authorization": "Bearer k1"}
	unknownMethod, unknownMethodHeader := modern("nope/nope", "")
	noTool, noToolHeader := modern("tools/call", "nope")
	with := func(extra map[string]string) map[string]string {
		h := map[string]string{"Authorization": "Bearer k1"}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	cases := []struct {
		name   string
		body   string
		header map[string]string
		status int
		want   string
	}{
		{"no key", initMsg, nil, http.StatusUnauthorized, "API key"},
		{"a wrong key", initMsg, map[string]string{"Authorization": "Bearer nope"}, http.StatusForbidden, "not valid"},
		{"an origin not allowed", initMsg, with(map[string]string{"Origin": "https://evil.example"}), http.StatusForbidden, `"code":-32600`},
		{"an allowed origin", initMsg, with(map[string]string{"Origin": "https://chat.example"}), http.StatusOK, `"protocolVersion"`},
		{"a page of this machine at this machine", initMsg, with(map[string]string{"Origin": "http://localhost:5173"}), http.StatusOK, `"protocolVersion"`},
		{"a page of this machine at a public name", initMsg,
			with(map[string]string{"Origin": "http://localhost:5173", "Host": "mcp.example.com"}), http.StatusForbidden, `"code":-32600`},
		{"a rebound name at this machine", initMsg,
			with(map[string]string{"Origin": "http://evil.example", "Host": "evil.example"}), http.StatusForbidden, `"code":-32600`},
		{"no origin", initMsg, key, http.StatusOK, `"protocolVersion"`},
		{"bad JSON", `{"jsonrpc":`, key, http.StatusBadRequest, `"code":-32700`},
		{"JSON that is not a message", `"hello"`, key, http.StatusBadRequest, `"code":-32700`},
		{"another JSON-RPC version", `{"jsonrpc":"1.0","id":1,"method":"initialize","params":{}}`, key, 0, `"code":-32600`},
		{"a batch", `[` + initMsg + `]`, key, http.StatusBadRequest, `"code":-32600`},
		{"a message too large", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"x":"` + strings.Repeat("a", 2000) + `"}}`,
			key, http.StatusRequestEntityTooLarge, "max_request_body"},
		{"an unknown session", `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`,
			with(map[string]string{"Mcp-Session-Id": "0f6c2a4e-95f1-4c43-9c7e-6a6c1d7c3c11.forged", "Mcp-Protocol-Version": "2025-11-25"}),
			http.StatusNotFound, "session"},
		{"an unknown method", unknownMethod, with(unknownMethodHeader), 0, `"code":-32601`},
		{"a tool that does not exist", noTool, with(noToolHeader), 0, `"code":-32602`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := postMCP(t, url, tc.body, tc.header)
			if tc.status != 0 && resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if !strings.Contains(body, tc.want) {
				t.Errorf("body %s lacks %s", body, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name, method, session string
		status                int
	}{
		{"a GET stream without a session", http.MethodGet, "", http.StatusBadRequest},
		{"a GET stream of a session not begun here", http.MethodGet, "0f6c2a4e-95f1-4c43-9c7e-6a6c1d7c3c11.forged", http.StatusNotFound},
		{"a DELETE of a session not begun here", http.MethodDelete, "0f6c2a4e-95f1-4c43-9c7e-6a6c1d7c3c11.forged", http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, url, nil)
			req.Header.Set("Authorization", "Bearer k1")
			req.Header.Set("Accept", "text/event-stream")
			if tc.session != "" {
				req.Header.Set("Mcp-Session-Id", tc.session)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(body), `"code":-32600`) {
				t.Errorf("%d %s, want %d with a JSON-RPC error", resp.StatusCode, body, tc.status)
			}
		})
	}
	t.Run("a GET needs the key too", func(t *testing.T) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("status %d, want 401", resp.StatusCode)
		}
	})
}

func TestMCPSessionsOutliveTheBridge(t *testing.T) {
	srv, reload := reloadable(t, func() Config {
		return Config{Single: true, Servers: []*ServerConfig{{Name: "s", Upstream: newFaceCaller("echo")}}}
	})
	cl := connect(t, srv.URL+"/m/mcp", mcp.LATEST_LEGACY_PROTOCOL_VERSION, nil)
	if _, err := callMCPTool(cl, "echo", nil); err != nil {
		t.Fatal(err)
	}
	reload()
	if res, err := callMCPTool(cl, "echo", nil); err != nil || res.IsError {
		t.Errorf("a call in a session begun before the reload = %+v, %v", res, err)
	}
	// A session the client ends (DELETE) is gone for good, and what its
	// client told the endpoint forgotten.
	sid := cl.GetSessionId()
	if _, ok := mcpSessions.recall(sid); !ok {
		t.Error("a live session's state is not kept")
	}
	if err := cl.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := mcpSessions.recall(sid); ok {
		t.Error("an ended session's state is still kept")
	}
	resp, body := postMCP(t, srv.URL+"/m/mcp", `{"jsonrpc":"2.0","id":9,"method":"tools/list"}`,
		map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-11-25"})
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("a request in an ended session: %d %s, want 404", resp.StatusCode, body)
	}
}

// changingCaller is a server whose tool listing the test replaces.
type changingCaller struct {
	faceCaller
	cur atomic.Pointer[upstream.ToolSet]
}

func (c *changingCaller) Tools() *upstream.ToolSet { return c.cur.Load() }

// list makes a new listing of tools.
func (c *changingCaller) list(tools ...string) {
	c.cur.Store(newFaceCaller(tools...).set)
}

func TestMCPFaceTellsListeningClientsTheToolsChanged(t *testing.T) {
	cases := []struct {
		name     string
		protocol string
		opts     []transport.StreamableHTTPCOption
		listen   bool // subscriptions/listen
	}{
		{"2025-11-25, the GET stream", mcp.LATEST_LEGACY_PROTOCOL_VERSION, []transport.StreamableHTTPCOption{transport.WithContinuousListening()}, false},
		{"2026-07-28, subscriptions/listen", mcp.LATEST_PROTOCOL_VERSION, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &changingCaller{}
			c.list("one")
			b, err := New(Config{Single: true, Servers: []*ServerConfig{{Name: "s", Upstream: c}}})
			if err != nil {
				t.Fatal(err)
			}
			cl := connect(t, serveBridge(t, b).URL+"/m/mcp", tc.protocol, nil, tc.opts...)
			changed := make(chan struct{}, 16)
			cl.OnNotification(func(n mcp.JSONRPCNotification) {
				if n.Method == string(mcp.MethodNotificationToolsListChanged) {
					changed <- struct{}{}
				}
			})
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if tc.listen {
				stop, err := cl.ListenAsync(ctx, mcp.SubscriptionFilter{ToolsListChanged: true}, func(err error) { t.Errorf("listen: %v", err) })
				if err != nil {
					t.Fatal(err)
				}
				defer stop()
			}
			if got := toolNames(t, cl); !slices.Equal(got, []string{"one"}) {
				t.Fatalf("tools = %v", got)
			}
			time.Sleep(200 * time.Millisecond) // the stream opens
			c.list("one", "two")               // and the client asks nothing
			select {
			case <-changed:
			case <-ctx.Done():
				t.Fatal("no notifications/tools/list_changed came on the stream")
			}
			if got := toolNames(t, cl); !slices.Equal(got, []string{"one", "two"}) {
				t.Errorf("tools after the change = %v", got)
			}
		})
	}
}

func TestMCPFaceOutlivesAClientThatNeverReadsItsStream(t *testing.T) {
	c := &changingCaller{}
	c.list("t0")
	b, err := New(Config{Single: true, Servers: []*ServerConfig{{Name: "s", Upstream: c}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := serveBridge(t, b)
	url := srv.URL + "/m/mcp"
	resp, _ := postMCP(t, url, initMsg, nil)
	sid := resp.Header.Get("Mcp-Session-Id")
	postMCP(t, url, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-11-25"})
	// The GET stream, opened and never read.
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", sid)
	req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	stream, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Body.Close()

	other := connect(t, url, "", nil)
	// Each new listing is a notification to the stream, which mcp-go
	// queues without waiting: a full queue loses them, and nobody else
	// waits on the stream.
	deadline := time.Now().Add(60 * time.Second)
	for i := range 300 {
		c.list(fmt.Sprintf("t%d", i+1), strings.Repeat("x", 200))
		if _, err := callMCPTool(other, "t"+fmt.Sprint(i+1), nil); err != nil {
			t.Fatalf("call %d beside a stream nobody reads: %v", i, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d calls in 60s beside a stream nobody reads", i)
		}
	}
}

// sseEvent reads the next event of an SSE stream: its id and data.
func sseEvent(t *testing.T, r *bufio.Reader) (id, data string) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			switch {
			case strings.HasPrefix(line, "id:"):
				id = strings.TrimSpace(line[3:])
			case strings.HasPrefix(line, "data:"):
				data += strings.TrimSpace(line[5:])
			case line == "" && data != "":
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("no event on the stream in 10s")
	}
	return id, data
}

func TestMCPFaceResumesAStreamFromItsLastEventID(t *testing.T) {
	c := &changingCaller{}
	c.list("t0")
	b, err := New(Config{Single: true, Servers: []*ServerConfig{{Name: "s", Upstream: c}}})
	if err != nil {
		t.Fatal(err)
	}
	url := serveBridge(t, b).URL + "/m/mcp"
	resp, _ := postMCP(t, url, initMsg, nil)
	sid := resp.Header.Get("Mcp-Session-Id")
	session := map[string]string{"Mcp-Session-Id": sid, "Mcp-Protocol-Version": "2025-11-25"}
	postMCP(t, url, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, session)
	listen := func(lastEventID string) (*http.Response, *bufio.Reader) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Accept", "text/event-stream")
		for k, v := range session {
			req.Header.Set(k, v)
		}
		if lastEventID != "" {
			req.Header.Set("Last-Event-ID", lastEventID)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET stream: %v %v", resp, err)
		}
		return resp, bufio.NewReader(resp.Body)
	}
	stream, r := listen("")
	time.Sleep(100 * time.Millisecond)
	c.list("t1") // the watcher tells the stream
	first, data := sseEvent(t, r)
	if first == "" || !strings.Contains(data, "notifications/tools/list_changed") {
		t.Fatalf("first event %q: %s", first, data)
	}
	stream.Body.Close() // the connection breaks
	time.Sleep(100 * time.Millisecond)
	c.list("t2")                                     // while the client is away
	time.Sleep(watchInterval + 500*time.Millisecond) // the watcher sees it
	resumed, r := listen(first)
	defer resumed.Body.Close()
	id, data := sseEvent(t, r)
	if id == "" || id == first || !strings.Contains(data, "notifications/tools/list_changed") {
		t.Errorf("resumed after %s: event %q %s, want the list_changed it missed", first, id, data)
	}
}

func TestMCPFaceLogsItsCallsAsTheRESTFaceDoes(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	auditCore, audited := observer.New(zap.InfoLevel)
	b, err := New(Config{Single: true, Logger: zap.New(core), Audit: zap.New(auditCore),
		Servers: []*ServerConfig{{Name: "s", Upstream: newFaceCaller("echo")}}})
	if err != nil {
		t.Fatal(err)
	}
	cl := connect(t, serveBridge(t, b).URL+"/m/mcp", "", nil)
	if _, err := callMCPTool(cl, "echo", map[string]any{"n": 7}); err != nil {
		t.Fatal(err)
	}
	lines := logs.FilterMessage("tool call").All()
	if len(lines) != 1 {
		t.Fatalf("%d debug lines of the call, want 1", len(lines))
	}
	f := lines[0].ContextMap()
	if f["server"] != "s" || f["tool"] != "echo" || f["status"] != int64(200) || f["arguments"] != `{"n":7}` ||
		!strings.Contains(fmt.Sprint(f["result"]), "ok echo") {
		t.Errorf("the call's line: %v", f)
	}
	if a := audited.All(); len(a) != 1 || a[0].ContextMap()["face"] != "mcp" || a[0].ContextMap()["outcome"] != "ok" ||
		a[0].ContextMap()["request_bytes"] != int64(len(`{"n":7}`)) {
		t.Errorf("the audit log: %v", a)
	}
}

func TestLocalOriginIsAPageOfThisMachineAtThisMachine(t *testing.T) {
	cases := []struct {
		host, origin string
		want         bool
	}{
		{"localhost:8080", "http://localhost:3000", true},
		{"127.0.0.1:8080", "http://localhost", true},
		{"[::1]:8080", "http://[::1]:3000", true},
		{"LOCALHOST", "http://127.0.0.2", true},
		{"mcp.example.com", "http://localhost:3000", false},
		{"localhost:8080", "http://evil.example", false},
		{"evil.example:8080", "http://evil.example", false},
		{"localhost:8080", "http://localhost.evil.example", false},
		{"localhost:8080", "null", false},
		{"localhost:8080", "::not a url", false},
	}
	for _, tc := range cases {
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		r.Host = tc.host
		if got := localOrigin(r, tc.origin); got != tc.want {
			t.Errorf("Host %s, Origin %s: %v, want %v", tc.host, tc.origin, got, tc.want)
		}
	}
}

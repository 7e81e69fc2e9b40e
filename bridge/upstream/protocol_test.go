//go:build unix

package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"
)

// rpcRequest is one JSON-RPC message a rawServer received.
type rpcRequest struct {
	Method string          `json:"method"`
	ID     json.RawMessage `json:"id"`
	Params json.RawMessage `json:"params"`
	Header http.Header     `json:"-"`
}

// meta returns the request's _meta field name, as a string.
func (r rpcRequest) meta(name string) string {
	var p struct {
		Meta map[string]json.RawMessage `json:"_meta"`
	}
	_ = json.Unmarshal(r.Params, &p)
	var s string
	_ = json.Unmarshal(p.Meta[name], &s)
	return s
}

// rawServer is a Streamable HTTP MCP server written out by hand, answering
// each POSTed message with handle's status and JSON body (nil: 202 for a
// notification). It records what it received.
type rawServer struct {
	*httptest.Server
	handle func(r rpcRequest) (int, any)

	mu       sync.Mutex
	received []rpcRequest
}

func newRawServer(t *testing.T, handle func(r rpcRequest) (int, any)) *rawServer {
	t.Helper()
	s := &rawServer{handle: handle}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *rawServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		// No standing stream (GET) and no session to end (DELETE); the
		// attempt is recorded under its HTTP method.
		s.mu.Lock()
		s.received = append(s.received, rpcRequest{Method: r.Method, Header: r.Header.Clone()})
		s.mu.Unlock()
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var req rpcRequest
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, "not JSON-RPC", http.StatusBadRequest)
		return
	}
	req.Header = r.Header.Clone()
	s.mu.Lock()
	s.received = append(s.received, req)
	s.mu.Unlock()
	status, resp := s.handle(req)
	if resp == nil {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(resp)
}

// methods returns the methods received, in order.
func (s *rawServer) methods() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var m []string
	for _, r := range s.received {
		m = append(m, r.Method)
	}
	return m
}

// requests returns what was received with method.
func (s *rawServer) requests(method string) []rpcRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []rpcRequest
	for _, r := range s.received {
		if r.Method == method {
			out = append(out, r)
		}
	}
	return out
}

// result and rpcErr build JSON-RPC answers.
func result(id json.RawMessage, res any) map[string]any {
	return map[string]any{"jsonrpc": "2.0", "id": id, "result": res}
}

func rpcErr(id json.RawMessage, code int, msg string, data any) map[string]any {
	e := map[string]any{"code": code, "message": msg}
	if data != nil {
		e["data"] = data
	}
	return map[string]any{"jsonrpc": "2.0", "id": id, "error": e}
}

// modernAnswers answers like a 2026-07-28 server with one tool, add.
func modernAnswers(r rpcRequest) (int, any) {
	switch r.Method {
	case "server/discover":
		return 200, result(r.ID, map[string]any{
			"resultType": "complete", "supportedVersions": []string{mcp.LATEST_PROTOCOL_VERSION},
			"capabilities": map[string]any{"tools": map[string]any{}},
			"serverInfo":   map[string]any{"name": "raw", "version": "1"},
		})
	case "tools/list":
		return 200, result(r.ID, map[string]any{"resultType": "complete", "tools": []any{
			map[string]any{"name": "add", "inputSchema": map[string]any{"type": "object"}},
		}})
	case "tools/call":
		return 200, result(r.ID, map[string]any{"resultType": "complete",
			"content": []any{map[string]any{"type": "text", "text": "done"}}})
	}
	if r.ID == nil {
		return 0, nil
	}
	return 200, rpcErr(r.ID, mcp.METHOD_NOT_FOUND, "no such method", nil)
}

func modernSpec(url string) Spec {
	return Spec{Name: "raw", Transport: TransportStreamableHTTP, URL: url + "/mcp", Protocol: mcp.LATEST_PROTOCOL_VERSION}
}

func TestUpstream_PinnedToTheStatelessEraNeverFallsBackToInitialize(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(r rpcRequest) (int, any)
		want   string
	}{
		{"discover unknown", func(r rpcRequest) (int, any) {
			return 200, rpcErr(r.ID, mcp.METHOD_NOT_FOUND, "no such method", nil)
		}, "JSON-RPC error -32601"},
		{"discover unauthorized", func(r rpcRequest) (int, any) {
			return 401, map[string]any{"error": "invalid_token"}
		}, "authorization"},
		{"discover lists only older versions", statefulAnswers, "2025-11-25"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRawServer(t, tc.answer)
			log, _ := testLogger(t)
			u := New(modernSpec(srv.URL), Options{StartTimeout: 5 * time.Second}, log)
			u.Start()
			t.Cleanup(func() { _ = u.Close() })
			st := waitState(t, u, StateBackoff)
			if !strings.Contains(st.LastError, tc.want) {
				t.Errorf("last error %q does not mention %q", st.LastError, tc.want)
			}
			if m := srv.methods(); slices.Contains(m, "initialize") {
				t.Errorf("the server got %v: an initialize handshake on a connection pinned to %s", m, mcp.LATEST_PROTOCOL_VERSION)
			}
		})
	}
}

func TestUpstream_SendsAgainWhenTheServerRefusesAVersionItSupports(t *testing.T) {
	var once sync.Once
	srv := newRawServer(t, func(r rpcRequest) (int, any) {
		refuse := false
		once.Do(func() { refuse = true })
		if refuse {
			return 400, rpcErr(r.ID, mcp.UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version",
				map[string]any{"supported": []string{mcp.LATEST_PROTOCOL_VERSION}, "requested": mcp.LATEST_PROTOCOL_VERSION})
		}
		return modernAnswers(r)
	})
	u, _ := start(t, modernSpec(srv.URL), Options{})
	if p := u.Tools().Server.Protocol; p != mcp.LATEST_PROTOCOL_VERSION {
		t.Fatalf("protocol %q, want %s", p, mcp.LATEST_PROTOCOL_VERSION)
	}
	discovers := srv.requests("server/discover")
	if len(discovers) != 2 {
		t.Fatalf("server/discover sent %d times, want 2 (the refused one and the retry)", len(discovers))
	}
	if string(discovers[0].ID) == string(discovers[1].ID) {
		t.Errorf("the retry reused the JSON-RPC id %s", discovers[0].ID)
	}
	for _, d := range discovers {
		if v := d.meta(mcp.MetaKeyProtocolVersion); v != mcp.LATEST_PROTOCOL_VERSION {
			t.Errorf("server/discover declared version %q in _meta", v)
		}
		if h := d.Header.Get("Mcp-Protocol-Version"); h != mcp.LATEST_PROTOCOL_VERSION {
			t.Errorf("server/discover sent MCP-Protocol-Version %q", h)
		}
	}
	if m := srv.methods(); slices.Contains(m, "initialize") {
		t.Errorf("the server got %v", m)
	}
}

func TestUpstream_AnswersInputRequestsWithTheElicitationPolicy(t *testing.T) {
	form := map[string]any{"type": "object", "properties": map[string]any{
		"confirmed": map[string]any{"type": "boolean"},
		"name":      map[string]any{"type": "string", "default": "Ada"},
		"age":       map[string]any{"type": "integer", "default": 36},
	}}
	answer := func(r rpcRequest) (int, any) {
		if r.Method != "tools/call" {
			return modernAnswers(r)
		}
		var p struct {
			InputResponses map[string]json.RawMessage `json:"inputResponses"`
			RequestState   string                     `json:"requestState"`
		}
		_ = json.Unmarshal(r.Params, &p)
		if p.InputResponses == nil {
			return 200, result(r.ID, map[string]any{
				"resultType":   "input_required",
				"requestState": "opaque-state",
				"inputRequests": map[string]any{"ask": map[string]any{
					"method": "elicitation/create",
					"params": map[string]any{"message": "Sure?", "requestedSchema": form},
				}},
			})
		}
		return 200, result(r.ID, map[string]any{"resultType": "complete",
			"content": []any{map[string]any{"type": "text", "text": string(p.InputResponses["ask"]) + " " + p.RequestState}}})
	}

	t.Run("without a policy the tool's question is an error", func(t *testing.T) {
		srv := newRawServer(t, answer)
		u, _ := start(t, modernSpec(srv.URL), Options{})
		_, err := u.CallTool(context.Background(), "add", json.RawMessage(`{}`))
		var ir *InputRequiredError
		if !errors.As(err, &ir) {
			t.Fatalf("error %v, want *InputRequiredError", err)
		}
	})
	t.Run("the policy's answer completes the call, with the form's defaults", func(t *testing.T) {
		var asked []Elicitation
		var mu sync.Mutex
		policy := func(_ context.Context, e Elicitation) (ElicitationAnswer, error) {
			mu.Lock()
			asked = append(asked, e)
			mu.Unlock()
			return ElicitationAnswer{Action: ElicitAccept, Content: map[string]any{"confirmed": true, "age": 40}}, nil
		}
		srv := newRawServer(t, answer)
		u, _ := start(t, modernSpec(srv.URL), Options{Elicitation: policy})
		res, err := u.CallTool(context.Background(), "add", json.RawMessage(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		if len(asked) != 1 || asked[0].Message != "Sure?" || asked[0].Mode != "form" || asked[0].Server != "raw" {
			t.Fatalf("the policy was asked %+v", asked)
		}
		var answer struct {
			Action  string         `json:"action"`
			Content map[string]any `json:"content"`
		}
		text, state, _ := strings.Cut(res.Content[0].Text, " ")
		if err := json.Unmarshal([]byte(text), &answer); err != nil {
			t.Fatalf("the server got %q: %v", text, err)
		}
		want := map[string]any{"confirmed": true, "age": float64(40), "name": "Ada"}
		if answer.Action != "accept" || !mapsEqual(answer.Content, want) {
			t.Errorf("the server got %+v, want accept with %v", answer, want)
		}
		if state != "opaque-state" {
			t.Errorf("requestState came back as %q", state)
		}
		for _, r := range srv.requests("tools/call") {
			var p struct {
				Meta struct {
					Caps map[string]json.RawMessage `json:"io.modelcontextprotocol/clientCapabilities"`
				} `json:"_meta"`
			}
			_ = json.Unmarshal(r.Params, &p)
			if p.Meta.Caps["elicitation"] == nil {
				t.Errorf("tools/call declared capabilities %v, without elicitation", p.Meta.Caps)
			}
		}
	})
}

func mapsEqual(a, b map[string]any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func TestWithDefaults_FillsWhatTheAnswerLeavesOut(t *testing.T) {
	schema := json.RawMessage(`{"type":"object","properties":{
		"name":{"type":"string","default":"John Doe"},
		"age":{"type":"integer","default":30},
		"score":{"type":"number","default":95.5},
		"status":{"type":"string","enum":["active","inactive"],"default":"active"},
		"verified":{"type":"boolean","default":true},
		"note":{"type":"string"}}}`)
	for _, tc := range []struct {
		name    string
		schema  json.RawMessage
		content map[string]any
		want    string
	}{
		{"empty answer", schema, nil,
			`{"age":30,"name":"John Doe","score":95.5,"status":"active","verified":true}`},
		{"answered fields kept", schema, map[string]any{"name": "Ada", "verified": false, "note": "x"},
			`{"age":30,"name":"Ada","note":"x","score":95.5,"status":"active","verified":false}`},
		{"no schema", nil, map[string]any{"a": 1}, `{"a":1}`},
		{"no defaults", json.RawMessage(`{"type":"object","properties":{"a":{"type":"string"}}}`), nil, `{}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := withDefaults(tc.schema, tc.content)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(got)
			if string(b) != tc.want {
				t.Errorf("got %s, want %s", b, tc.want)
			}
		})
	}
	if _, err := withDefaults(json.RawMessage(`[1]`), nil); err == nil {
		t.Error("a schema that is not an object was accepted")
	}
}

func TestElicitor_MapsTheAnswer(t *testing.T) {
	nop := func() *zap.Logger { return zap.NewNop() }
	req := func(mode string) mcp.ElicitationRequest {
		return mcp.ElicitationRequest{Params: mcp.ElicitationParams{
			Mode: mode, Message: "m", URL: "https://example.com/x",
			RequestedSchema: map[string]any{"type": "object", "properties": map[string]any{"a": map[string]any{"default": 1}}},
		}}
	}
	for _, tc := range []struct {
		name    string
		mode    string
		answer  ElicitationAnswer
		want    string // JSON of the result; "" for an error
		wantErr bool
	}{
		{"form accepted", "", ElicitationAnswer{Action: ElicitAccept}, `{"action":"accept","content":{"a":1}}`, false},
		{"url accepted", "url", ElicitationAnswer{Action: ElicitAccept}, `{"action":"accept"}`, false},
		{"declined", "", ElicitationAnswer{Action: ElicitDecline}, `{"action":"decline"}`, false},
		{"cancelled", "", ElicitationAnswer{Action: ElicitCancel}, `{"action":"cancel"}`, false},
		{"unknown action", "", ElicitationAnswer{Action: "maybe"}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := elicitor{name: "s", log: nop, fn: func(_ context.Context, e Elicitation) (ElicitationAnswer, error) {
				return tc.answer, nil
			}}
			res, err := h.Elicit(context.Background(), req(tc.mode))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("no error, result %+v", res)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(res)
			if string(b) != tc.want {
				t.Errorf("got %s, want %s", b, tc.want)
			}
		})
	}
}

func TestDeclareApplyDefaults(t *testing.T) {
	for _, tc := range []struct {
		name   string
		params any
		want   string
	}{
		{"empty elicitation", map[string]any{"capabilities": map[string]any{"elicitation": map[string]any{}}},
			`{"capabilities":{"elicitation":{"form":{"applyDefaults":true}}}}`},
		{"form kept", map[string]any{"capabilities": map[string]any{"elicitation": map[string]any{"form": map[string]any{}, "url": map[string]any{}}}},
			`{"capabilities":{"elicitation":{"form":{"applyDefaults":true},"url":{}}}}`},
		{"no elicitation", map[string]any{"capabilities": map[string]any{}}, `{"capabilities":{}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := json.Marshal(declareApplyDefaults(tc.params))
			if string(b) != tc.want {
				t.Errorf("got %s, want %s", b, tc.want)
			}
		})
	}
}

func TestRetryableVersionRefusal(t *testing.T) {
	modern := mcp.LATEST_PROTOCOL_VERSION
	req := func(v string) transport.JSONRPCRequest {
		return transport.JSONRPCRequest{Method: "tools/list", Params: map[string]any{
			"_meta": map[string]any{mcp.MetaKeyProtocolVersion: v},
		}}
	}
	refusal := func(supported ...string) *mcp.JSONRPCErrorDetails {
		return &mcp.JSONRPCErrorDetails{Code: mcp.UNSUPPORTED_PROTOCOL_VERSION,
			Data: map[string]any{"supported": supported}}
	}
	for _, tc := range []struct {
		name string
		req  transport.JSONRPCRequest
		err  *mcp.JSONRPCErrorDetails
		want bool
	}{
		{"supported version refused", req(modern), refusal(modern), true},
		{"another version offered", req(modern), refusal("2099-01-01"), false},
		{"no supported list", req(modern), &mcp.JSONRPCErrorDetails{Code: mcp.UNSUPPORTED_PROTOCOL_VERSION}, false},
		{"no version declared", transport.JSONRPCRequest{Method: "initialize"}, refusal(modern), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, got := retryableVersionRefusal(tc.req, tc.err); got != tc.want {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestInputRequired(t *testing.T) {
	for in, want := range map[string]bool{
		`{"resultType":"input_required","inputRequests":{}}`:    true,
		`{"resultType":"complete","content":[]}`:                false,
		`{"content":[{"type":"text","text":"input_required"}]}`: false,
		`{"content":[]}`: false,
	} {
		if got := inputRequired(json.RawMessage(in)); got != want {
			t.Errorf("inputRequired(%s) = %v", in, got)
		}
	}
}

func TestUpstream_PassesResourcesAndPromptsThrough(t *testing.T) {
	srv := newRawServer(t, func(r rpcRequest) (int, any) {
		var p struct {
			Cursor    string            `json:"cursor"`
			URI       string            `json:"uri"`
			Name      string            `json:"name"`
			Arguments map[string]string `json:"arguments"`
		}
		_ = json.Unmarshal(r.Params, &p)
		switch r.Method {
		case "server/discover":
			return 200, result(r.ID, map[string]any{
				"resultType": "complete", "supportedVersions": []string{mcp.LATEST_PROTOCOL_VERSION},
				"capabilities": map[string]any{"tools": map[string]any{}, "resources": map[string]any{}, "prompts": map[string]any{}},
			})
		case "resources/list":
			if p.Cursor == "" {
				return 200, result(r.ID, map[string]any{"resources": []any{
					map[string]any{"uri": "file:///a%20b.txt", "name": "a", "x-extra": 1}}, "nextCursor": "2"})
			}
			return 200, result(r.ID, map[string]any{"resources": []any{map[string]any{"uri": "https://e.com/r?id=1", "name": "r"}}})
		case "resources/read":
			return 200, result(r.ID, map[string]any{"contents": []any{
				map[string]any{"uri": p.URI, "text": "hi", "_meta": map[string]any{"kept": true}}}})
		case "prompts/list":
			return 200, result(r.ID, map[string]any{"prompts": []any{map[string]any{"name": "greet"}}})
		case "prompts/get":
			return 200, result(r.ID, map[string]any{"messages": []any{map[string]any{
				"role": "user", "content": map[string]any{"type": "text", "text": "hello " + p.Arguments["who"]}}}})
		}
		return modernAnswers(r)
	})
	u, _ := start(t, modernSpec(srv.URL), Options{})
	ctx := context.Background()

	resources, err := u.ListResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(resources) != 2 || !strings.Contains(string(resources[0]), `"x-extra":1`) {
		t.Fatalf("resources %s", resources)
	}
	read, err := u.ReadResource(ctx, "file:///a%20b.txt")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(read), `"_meta":{"kept":true}`) {
		t.Errorf("resources/read result %s lost what the server sent", read)
	}
	prompts, err := u.ListPrompts(ctx)
	if err != nil || len(prompts) != 1 {
		t.Fatalf("prompts %s, %v", prompts, err)
	}
	got, err := u.GetPrompt(ctx, "greet", map[string]string{"who": "Ada"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(got), "hello Ada") {
		t.Errorf("prompts/get result %s", got)
	}
	for method, name := range map[string]string{"resources/read": "file:///a%20b.txt", "prompts/get": "greet"} {
		for _, r := range srv.requests(method) {
			if h := r.Header.Get("Mcp-Name"); h != name {
				t.Errorf("%s sent Mcp-Name %q, want %q", method, h, name)
			}
		}
	}

	t.Run("a server without them has none", func(t *testing.T) {
		plain := newRawServer(t, modernAnswers)
		u, _ := start(t, modernSpec(plain.URL), Options{})
		r, err := u.ListResources(ctx)
		p, perr := u.ListPrompts(ctx)
		if r != nil || p != nil || err != nil || perr != nil {
			t.Errorf("resources %s (%v), prompts %s (%v)", r, err, p, perr)
		}
		if m := plain.methods(); slices.Contains(m, "resources/list") || slices.Contains(m, "prompts/list") {
			t.Errorf("the server got %v", m)
		}
	})
}

// legacyAnswers answers like a 2025-11-25 server with one tool, add.
func legacyAnswers(r rpcRequest) (int, any) {
	switch r.Method {
	case "initialize":
		return 200, result(r.ID, map[string]any{
			"protocolVersion": "2025-11-25", "capabilities": map[string]any{"tools": map[string]any{}},
			"serverInfo": map[string]any{"name": "legacy", "version": "1"},
		})
	case "server/discover":
		return 200, rpcErr(r.ID, mcp.METHOD_NOT_FOUND, "no such method", nil)
	}
	return modernAnswers(r)
}

func TestUpstream_LegacyConnectionsWithAnElicitationPolicyListen(t *testing.T) {
	accept := func(context.Context, Elicitation) (ElicitationAnswer, error) {
		return ElicitationAnswer{Action: ElicitAccept}, nil
	}
	for _, tc := range []struct {
		name     string
		protocol string
		policy   ElicitFunc
		listen   bool
	}{
		{"auto era, no policy", "", nil, false},
		{"auto era, policy", "", accept, true},
		{"pinned legacy", ProtocolLegacy, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRawServer(t, legacyAnswers)
			spec := Spec{Name: "raw", Transport: TransportStreamableHTTP, URL: srv.URL + "/mcp", Protocol: tc.protocol}
			u, _ := start(t, spec, Options{Elicitation: tc.policy})
			if p := u.Tools().Server.Protocol; p != "2025-11-25" {
				t.Fatalf("protocol %q", p)
			}
			deadline := time.Now().Add(2 * time.Second)
			for !slices.Contains(srv.methods(), http.MethodGet) && tc.listen && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := slices.Contains(srv.methods(), http.MethodGet); got != tc.listen {
				t.Errorf("standing GET stream opened: %v, want %v (requests %v)", got, tc.listen, srv.methods())
			}
			inits := srv.requests("initialize")
			var p struct {
				Capabilities struct {
					Elicitation json.RawMessage `json:"elicitation"`
				} `json:"capabilities"`
			}
			_ = json.Unmarshal(inits[len(inits)-1].Params, &p)
			want := ""
			if tc.policy != nil {
				want = `{"form":{"applyDefaults":true}}`
			}
			if got := string(p.Capabilities.Elicitation); got != want {
				t.Errorf("initialize declared elicitation %q, want %q", got, want)
			}
		})
	}
}

// pagedAnswers answers method, on a 2026-07-28 server with tools, resources
// and prompts, with three pages of one item each (named p1, p2, p3) under
// key; when loop is set, the last page points back to the second.
func pagedAnswers(method, key string, loop bool) func(r rpcRequest) (int, any) {
	return func(r rpcRequest) (int, any) {
		switch r.Method {
		case "server/discover":
			return 200, result(r.ID, map[string]any{
				"resultType": "complete", "supportedVersions": []string{mcp.LATEST_PROTOCOL_VERSION},
				"capabilities": map[string]any{"tools": map[string]any{}, "resources": map[string]any{}, "prompts": map[string]any{}},
			})
		case method:
		default:
			return modernAnswers(r)
		}
		var p struct {
			Cursor string `json:"cursor"`
		}
		_ = json.Unmarshal(r.Params, &p)
		page := map[string]string{"": "1", "2": "2", "3": "3"}[p.Cursor]
		next := map[string]string{"1": "2", "2": "3", "3": ""}[page]
		if loop && page == "3" {
			next = "2"
		}
		item := map[string]any{"name": "p" + page, "uri": "test:p" + page, "inputSchema": map[string]any{"type": "object"}}
		return 200, result(r.ID, map[string]any{"resultType": "complete", key: []any{item}, "nextCursor": next})
	}
}

// listed returns the names of what u lists under key (tools, resources or
// prompts).
func listed(ctx context.Context, u *Upstream, key string) ([]string, error) {
	var names []string
	if key == "tools" {
		for _, t := range u.Tools().Tools {
			names = append(names, t.Name)
		}
		return names, nil
	}
	list := map[string]func(context.Context) ([]json.RawMessage, error){"resources": u.ListResources, "prompts": u.ListPrompts}[key]
	items, err := list(ctx)
	for _, item := range items {
		var v struct {
			Name string `json:"name"`
		}
		_ = json.Unmarshal(item, &v)
		names = append(names, v.Name)
	}
	return names, err
}

func TestUpstream_ReadsEveryPageOfEveryList(t *testing.T) {
	ctx := context.Background()
	for _, key := range []string{"tools", "resources", "prompts"} {
		method := key + "/list"
		t.Run(method, func(t *testing.T) {
			srv := newRawServer(t, pagedAnswers(method, key, false))
			u, _ := start(t, modernSpec(srv.URL), Options{})
			got, err := listed(ctx, u, key)
			if err != nil || !slices.Equal(got, []string{"p1", "p2", "p3"}) {
				t.Errorf("listed %v (%v), want p1, p2 and p3", got, err)
			}
		})
		t.Run(method+" that repeats a cursor", func(t *testing.T) {
			srv := newRawServer(t, pagedAnswers(method, key, true))
			log, _ := testLogger(t)
			u := New(modernSpec(srv.URL), Options{StartTimeout: waitLimit}, log)
			u.Start()
			t.Cleanup(func() { _ = u.Close() })
			var err error
			if key == "tools" {
				// The tools are listed at start, which fails.
				err = errors.New(waitState(t, u, StateBackoff).LastError)
			} else {
				waitState(t, u, StateReady)
				_, err = listed(ctx, u, key)
			}
			if want := method + " repeated a pagination cursor"; err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error %v, want one saying %q", err, want)
			}
			if n := len(srv.requests(method)); n != 3 {
				t.Errorf("%s sent %d times, want 3 (the cursor repeated on the third page)", method, n)
			}
		})
	}
}

func TestUpstream_SkipsToolsWithInvalidHeaderAnnotations(t *testing.T) {
	srv := newRawServer(t, func(r rpcRequest) (int, any) {
		if r.Method != "tools/list" {
			return modernAnswers(r)
		}
		bad := map[string]any{"type": "object", "properties": map[string]any{
			"filter": map[string]any{"type": "object", "x-mcp-header": "Filter"}}}
		return 200, result(r.ID, map[string]any{"resultType": "complete", "tools": []any{
			map[string]any{"name": "good", "inputSchema": map[string]any{"type": "object"}},
			map[string]any{"name": "bad", "inputSchema": bad},
		}})
	})
	u, logs := start(t, modernSpec(srv.URL), Options{})
	var names []string
	for _, tool := range u.Tools().Tools {
		names = append(names, tool.Name)
	}
	if !slices.Equal(names, []string{"good"}) {
		t.Errorf("tools %v, want only good", names)
	}
	if logs.FilterMessage(`tool "bad" skipped: its x-mcp-header annotations are invalid`).Len() != 1 {
		t.Error("the skipped tool was not logged")
	}
}

// statefulAnswers answers like the Go SDK's stateful HTTP server: it
// answers server/discover, listing 2025-11-25 only, and refuses with -32022
// any other request that declares a stateless version.
func statefulAnswers(r rpcRequest) (int, any) {
	if v := r.meta(mcp.MetaKeyProtocolVersion); r.Method == "server/discover" {
		return 200, result(r.ID, map[string]any{
			"resultType": "complete", "supportedVersions": []string{"2025-11-25", "2025-06-18"},
			"capabilities": map[string]any{"tools": map[string]any{}},
			"serverInfo":   map[string]any{"name": "stateful", "version": "1"},
		})
	} else if mcp.IsModernProtocol(v) && r.ID != nil {
		return 400, rpcErr(r.ID, mcp.UNSUPPORTED_PROTOCOL_VERSION, "Unsupported protocol version",
			map[string]any{"supported": []string{"2025-11-25", "2025-06-18"}, "requested": v})
	}
	return legacyAnswers(r)
}

func TestUpstream_ADiscoverAnswerThatListsOnlyOlderVersionsLeadsToInitialize(t *testing.T) {
	srv := newRawServer(t, statefulAnswers)
	u, _ := start(t, Spec{Name: "raw", Transport: TransportStreamableHTTP, URL: srv.URL + "/mcp"}, Options{})
	if p := u.Tools().Server.Protocol; p != "2025-11-25" {
		t.Fatalf("protocol %q, want 2025-11-25", p)
	}
	if got := srv.requests("initialize"); len(got) != 1 {
		t.Errorf("initialize sent %d times, want 1 (requests %v)", len(got), srv.methods())
	}
	res, err := u.CallTool(context.Background(), "add", json.RawMessage(`{}`))
	if err != nil || res == nil {
		t.Fatalf("a call after the fallback: %v", err)
	}
}

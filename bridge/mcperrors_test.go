package bridge

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// rpcErrorServer is a Streamable HTTP MCP server (2025-11-25, JSON
// answers, no sessions) written as raw JSON-RPC, because an mcp-go server
// cannot answer a request with a JSON-RPC error code of its choosing. It
// has tools, resources, prompts and completions, and answers:
//
//   - tools/call of "quota": -32001 "quota exhausted" with data
//     {"left":0,"resets":"tomorrow"}; with a progressToken, as an SSE
//     stream of one notifications/progress and then the error, sent once
//     the test lets it go (release) when the tool is "held";
//   - tools/call of "capability": -32021 "needs the sampling capability"
//     with data {"capability":"sampling"};
//   - resources/read: -32602 "Resource not found" with data {"uri": the URI};
//   - prompts/get: -32004 "prompt retired" with data ["a",1];
//   - completion/complete: -32000 "no completions" without data;
//   - resources/templates/list: -32003 "templates unavailable" with data
//     {"retry":true}.
type rpcErrorServer struct {
	release chan struct{} // each receive lets one held call send its error
}

// rpcErrorsOf are the errors the server answers, by method and name.
var rpcErrorsOf = map[string]string{
	"tools/call quota":         `{"code":-32001,"message":"quota exhausted","data":{"left":0,"resets":"tomorrow"}}`,
	"tools/call held":          `{"code":-32001,"message":"quota exhausted","data":{"left":0,"resets":"tomorrow"}}`,
	"tools/call capability":    `{"code":-32021,"message":"needs the sampling capability","data":{"capability":"sampling"}}`,
	"prompts/get p":            `{"code":-32004,"message":"prompt retired","data":["a",1]}`,
	"completion/complete":      `{"code":-32000,"message":"no completions"}`,
	"resources/templates/list": `{"code":-32003,"message":"templates unavailable","data":{"retry":true}}`,
}

func (s *rpcErrorServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	var m struct {
		ID     json.RawMessage `json:"id"`
		Method string          `json:"method"`
		Params struct {
			Name string `json:"name"`
			URI  string `json:"uri"`
			Meta struct {
				ProgressToken json.RawMessage `json:"progressToken"`
			} `json:"_meta"`
		} `json:"params"`
	}
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if m.ID == nil { // a notification
		w.WriteHeader(http.StatusAccepted)
		return
	}
	answer := func(member, v string) string {
		return `{"jsonrpc":"2.0","id":` + string(m.ID) + `,"` + member + `":` + v + `}`
	}
	var msg string
	switch m.Method {
	case "initialize":
		msg = answer("result", `{"protocolVersion":"2025-11-25","serverInfo":{"name":"rpc-errors","version":"1"},`+
			`"capabilities":{"tools":{},"resources":{},"prompts":{},"completions":{}}}`)
	case "tools/list":
		msg = answer("result", `{"tools":[{"name":"quota","inputSchema":{"type":"object"}},`+
			`{"name":"held","inputSchema":{"type":"object"}},{"name":"capability","inputSchema":{"type":"object"}}]}`)
	case "resources/list":
		msg = answer("result", `{"resources":[{"uri":"x://gone","name":"gone"}]}`)
	case "prompts/list":
		msg = answer("result", `{"prompts":[{"name":"p","arguments":[{"name":"who"}]}]}`)
	case "resources/read":
		msg = answer("error", `{"code":-32602,"message":"Resource not found","data":{"uri":`+string(mustJSON(m.Params.URI))+`}}`)
	case "ping":
		msg = answer("result", `{}`)
	default:
		e, ok := rpcErrorsOf[m.Method+" "+m.Params.Name]
		if !ok {
			e, ok = rpcErrorsOf[m.Method]
		}
		if !ok {
			e = `{"code":-32601,"message":"no method ` + m.Method + `"}`
		}
		msg = answer("error", e)
	}
	if m.Method != "tools/call" || m.Params.Meta.ProgressToken == nil {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, msg)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprintf(w, "event: message\ndata: %s\n\n", `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":`+
		string(m.Params.Meta.ProgressToken)+`,"progress":1,"total":2}}`)
	http.NewResponseController(w).Flush()
	if m.Params.Name == "held" {
		select {
		case <-s.release:
		case <-r.Context().Done():
			return
		}
	}
	fmt.Fprintf(w, "event: message\ndata: %s\n\n", msg)
}

// rpcErrorBridge serves, at /m, the face of an rpcErrorServer reached by a
// real Upstream over Streamable HTTP.
func rpcErrorBridge(t *testing.T) (*httptest.Server, *rpcErrorServer) {
	t.Helper()
	fx := &rpcErrorServer{release: make(chan struct{})}
	up := httptest.NewServer(fx)
	t.Cleanup(up.Close)
	s := readyServer(t, upstream.Spec{Name: "rpc", Transport: upstream.TransportStreamableHTTP,
		Protocol: upstream.ProtocolLegacy, URL: up.URL + "/mcp"})
	b, err := New(Config{Single: true, Servers: []*ServerConfig{s}})
	if err != nil {
		t.Fatal(err)
	}
	return serveBridge(t, b), fx
}

// rpcErrorCase is a request the server answers with a JSON-RPC error.
type rpcErrorCase struct {
	name     string
	method   string
	params   string // a JSON object's members, without _meta
	mcpName  string // the Mcp-Name header of the request (2026-07-28)
	progress bool   // with a progressToken: the answer is an SSE stream
	want     string // the error the client must get, as the server sent it
	status   int    // of a 2026-07-28 JSON answer
	// call makes the request with mcp-go's client.
	call func(ctx context.Context, c *client.Client) error
	// clientSees checks the error mcp-go's client returns, when more than
	// its message names the server's error.
	clientSees func(err error) bool
}

var rpcErrorCases = []rpcErrorCase{
	{name: "a tool's application error and its data", method: "tools/call", params: `"name":"quota","arguments":{}`, mcpName: "quota",
		want: rpcErrorsOf["tools/call quota"], status: http.StatusOK,
		call: func(ctx context.Context, c *client.Client) error {
			_, err := c.CallTool(ctx, mcp.CallToolRequest{Params: mcp.CallToolParams{Name: "quota"}})
			return err
		}},
	{name: "a tool's error after progress, streamed", method: "tools/call", params: `"name":"quota","arguments":{}`, mcpName: "quota", progress: true,
		want: rpcErrorsOf["tools/call quota"], status: http.StatusOK,
		call: func(ctx context.Context, c *client.Client) error {
			_, err := c.CallTool(ctx, mcp.CallToolRequest{Params: mcp.CallToolParams{Name: "quota",
				Meta: &mcp.Meta{ProgressToken: mcp.ProgressToken("p2")}}})
			return err
		}},
	{name: "a missing required client capability", method: "tools/call", params: `"name":"capability","arguments":{}`, mcpName: "capability",
		want: rpcErrorsOf["tools/call capability"], status: http.StatusBadRequest,
		call: func(ctx context.Context, c *client.Client) error {
			_, err := c.CallTool(ctx, mcp.CallToolRequest{Params: mcp.CallToolParams{Name: "capability"}})
			return err
		},
		clientSees: func(err error) bool {
			var missing mcp.MissingRequiredClientCapabilityError
			return errors.As(err, &missing) && missing.Capability == "sampling"
		}},
	{name: "a resource not found, with its URI", method: "resources/read", params: `"uri":"x://gone"`, mcpName: "x://gone",
		want: `{"code":-32602,"message":"Resource not found","data":{"uri":"x://gone"}}`, status: http.StatusBadRequest,
		call: func(ctx context.Context, c *client.Client) error {
			_, err := c.ReadResource(ctx, mcp.ReadResourceRequest{Params: mcp.ReadResourceParams{URI: "x://gone"}})
			return err
		},
		clientSees: func(err error) bool {
			return errors.Is(err, mcp.ErrInvalidParams) && strings.HasSuffix(err.Error(), ": Resource not found")
		}},
	{name: "a prompt's error with array data", method: "prompts/get", params: `"name":"p","arguments":{"who":"x"}`, mcpName: "p",
		want: rpcErrorsOf["prompts/get p"], status: http.StatusOK,
		call: func(ctx context.Context, c *client.Client) error {
			_, err := c.GetPrompt(ctx, mcp.GetPromptRequest{Params: mcp.GetPromptParams{Name: "p", Arguments: map[string]string{"who": "x"}}})
			return err
		}},
	{name: "a completion's error without data", method: "completion/complete",
		params: `"ref":{"type":"ref/prompt","name":"p"},"argument":{"name":"who","value":"a"}`,
		want:   rpcErrorsOf["completion/complete"], status: http.StatusOK,
		call: func(ctx context.Context, c *client.Client) error {
			_, err := c.Complete(ctx, mcp.CompleteRequest{Params: mcp.CompleteParams{
				Ref: mcp.PromptReference{Type: "ref/prompt", Name: "p"}, Argument: mcp.CompleteArgument{Name: "who", Value: "a"}}})
			return err
		}},
	// mcp-go answers an error of a request's hook, where the face asks for
	// lists, with -32600 (and, on 2026-07-28, HTTP 400).
	{name: "a list's error", method: "resources/templates/list",
		want: rpcErrorsOf["resources/templates/list"], status: http.StatusOK,
		call: func(ctx context.Context, c *client.Client) error {
			_, err := c.ListResourceTemplates(ctx, mcp.ListResourceTemplatesRequest{})
			return err
		}},
}

// recordingClient is an HTTP client that keeps the status and body of the
// latest answer to a POST, as its reader reads them.
type recordingClient struct {
	mu     sync.Mutex
	status int
	body   *bytes.Buffer
}

func (rc *recordingClient) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || req.Method != http.MethodPost {
		return resp, err
	}
	buf := &bytes.Buffer{}
	rc.mu.Lock()
	rc.status, rc.body = resp.StatusCode, buf
	rc.mu.Unlock()
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.TeeReader(resp.Body, lockedWriter{&rc.mu, buf}), resp.Body}
	return resp, nil
}

// last is the latest answer's status and what was read of its body.
func (rc *recordingClient) last() (int, string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.status, rc.body.String()
}

// lockedWriter writes to w under mu.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// sameJSON reports whether a and b are the same JSON value.
func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return bytes.Equal(mustJSON(x), mustJSON(y))
}

// rpcAnswerOf returns the JSON-RPC answer of id (any id for "") in body, a
// JSON answer or an SSE stream, and whether it was streamed.
func rpcAnswerOf(t *testing.T, body, id string) (json.RawMessage, bool) {
	t.Helper()
	if strings.HasPrefix(strings.TrimSpace(body), "{") {
		return json.RawMessage(body), false
	}
	for line := range strings.Lines(body) {
		data, ok := strings.CutPrefix(strings.TrimSpace(line), "data:")
		var m struct {
			ID json.RawMessage `json:"id"`
		}
		if ok && json.Unmarshal([]byte(data), &m) == nil && m.ID != nil && (id == "" || string(m.ID) == id) {
			return json.RawMessage(data), true
		}
	}
	t.Fatalf("no answer of id %s in %q", id, body)
	return nil, false
}

// wantServersError checks that msg is a JSON-RPC error answer that is
// want exactly, with no trace of the face's marker.
func wantServersError(t *testing.T, msg json.RawMessage, want string) {
	t.Helper()
	var m struct {
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(msg, &m); err != nil || !sameJSON(m.Error, []byte(want)) {
		t.Errorf("error %s (in %s), want %s", m.Error, msg, want)
	}
	if bytes.Contains(msg, []byte("mcpo-rpc")) {
		t.Errorf("the answer %s carries the face's marker", msg)
	}
}

func TestMCPFacePassesAServersJSONRPCErrorOnWithItsCodeAndData(t *testing.T) {
	srv, _ := rpcErrorBridge(t)
	url := srv.URL + "/m/mcp"
	for _, era := range eras {
		t.Run(era.name, func(t *testing.T) {
			legacy := era.protocol == mcp.LATEST_LEGACY_PROTOCOL_VERSION
			rec := &recordingClient{}
			cl := connect(t, url, era.protocol, nil, transport.WithHTTPBasicClient(&http.Client{Transport: rec}))
			// The client lists what it names first, as clients do.
			if _, err := cl.ListPrompts(context.Background(), mcp.ListPromptsRequest{}); err != nil {
				t.Fatal(err)
			}
			for _, tc := range rpcErrorCases {
				t.Run(tc.name, func(t *testing.T) {
					// wantAnswer checks the answer of id in body, with its
					// status: the server's error, exactly. A 2025-11-25
					// session's answers are all streams once it was sent a
					// notification (mcp-go's choice): unless fresh, it may
					// stream an answer without progress.
					wantAnswer := func(who string, fresh bool, status int, body, id string) {
						t.Helper()
						msg, streamed := rpcAnswerOf(t, body, id)
						wantServersError(t, msg, tc.want)
						if streamed != tc.progress && (tc.progress || !legacy || fresh) {
							t.Errorf("%s: streamed %v, want %v: %s", who, streamed, tc.progress, body)
						}
						wantStatus := http.StatusOK
						if !legacy && !streamed {
							wantStatus = tc.status
						}
						if status != wantStatus {
							t.Errorf("%s: status %d, want %d", who, status, wantStatus)
						}
						if strings.Contains(body, "mcpo-rpc") {
							t.Errorf("%s: the body carries the face's marker: %s", who, body)
						}
					}
					// mcp-go's client.
					err := tc.call(context.Background(), cl)
					var want struct{ Message string }
					_ = json.Unmarshal([]byte(tc.want), &want)
					sees := tc.clientSees
					if sees == nil {
						sees = func(err error) bool { return err.Error() == want.Message }
					}
					if err == nil || !sees(err) {
						t.Errorf("mcp-go's client: %v, want the server's error %s", err, tc.want)
					}
					status, body := rec.last()
					var id struct {
						ID json.RawMessage `json:"id"`
					}
					msg, _ := rpcAnswerOf(t, body, "")
					_ = json.Unmarshal(msg, &id)
					wantAnswer("mcp-go's client", false, status, body, string(id.ID))
					// Raw HTTP, in a session of its own (2025-11-25).
					meta := map[string]any{}
					if tc.progress {
						meta["progressToken"] = "p1"
					}
					header := map[string]string{"Mcp-Protocol-Version": era.protocol, "Mcp-Method": tc.method}
					if tc.mcpName != "" {
						header["Mcp-Name"] = tc.mcpName
					}
					if legacy {
						header = legacySession(t, url, "")
					} else {
						meta["io.modelcontextprotocol/protocolVersion"] = era.protocol
						meta["io.modelcontextprotocol/clientCapabilities"] = map[string]any{}
						meta["io.modelcontextprotocol/clientInfo"] = map[string]any{"name": "raw", "version": "1"}
					}
					params := "{" + tc.params + `,"_meta":` + string(mustJSON(meta)) + "}"
					if tc.params == "" {
						params = `{"_meta":` + string(mustJSON(meta)) + "}"
					}
					resp, raw := postMCP(t, url, `{"jsonrpc":"2.0","id":5,"method":"`+tc.method+`","params":`+params+`}`, header)
					wantAnswer("raw HTTP", true, resp.StatusCode, raw, "5")
				})
			}
		})
	}
}

func TestMCPFacePassesAServersErrorOnToAResumedStream(t *testing.T) {
	srv, fx := rpcErrorBridge(t)
	url := srv.URL + "/m/mcp"
	session := legacySession(t, url, "")
	call := `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"held","arguments":{},"_meta":{"progressToken":"p"}}}`
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(call))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range session {
		req.Header.Set(k, v)
	}
	post, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer post.Body.Close()
	first, data := sseEvent(t, bufio.NewReader(post.Body))
	if first == "" || !strings.Contains(data, "notifications/progress") {
		t.Fatalf("first event %q: %s, want the progress with an id", first, data)
	}
	resume := func() *http.Response {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Last-Event-ID", first)
		for k, v := range session {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET with Last-Event-ID: %v %v", resp, err)
		}
		return resp
	}
	// The stream moves to a GET while the call runs: the error comes live.
	live := resume()
	defer live.Body.Close()
	fx.release <- struct{}{}
	_, data = sseEvent(t, bufio.NewReader(live.Body))
	wantServersError(t, json.RawMessage(data), rpcErrorsOf["tools/call held"])
	// Resumed once more, the stream's events are replayed from the store.
	replayed := resume()
	defer replayed.Body.Close()
	_, data = sseEvent(t, bufio.NewReader(replayed.Body))
	wantServersError(t, json.RawMessage(data), rpcErrorsOf["tools/call held"])
}

func TestUnmarkRPCErrorsRestoresTheServersErrorAndNothingElse(t *testing.T) {
	quota := &rpcPassed{Code: -32001, Message: `quota "exhausted" <soon>`, Data: json.RawMessage(`{"left":0}`), Modern: true}
	missing := &rpcPassed{Code: -32602, Message: "Resource not found", Data: json.RawMessage(`{"uri":"x://a"}`)}
	errMsg := func(id string, p *rpcPassed) string {
		return string(mustJSON(mcp.NewJSONRPCError(mcp.NewRequestId(id), mcp.INTERNAL_ERROR, `server "s" failed `+p.marker(), nil)))
	}
	forged := strings.Replace(missing.marker(), string(rpcMarker), "{mcpo-rpc-0000000000000000:", 1)
	for _, tc := range []struct {
		name, in, want string
		restored       *rpcPassed
	}{
		{"an answer without a marker is untouched", `{"jsonrpc":"2.0","id":1,"result":{}}` + "\n",
			`{"jsonrpc":"2.0","id":1,"result":{}}` + "\n", nil},
		{"a JSON answer", errMsg("a", quota) + "\n",
			`{"jsonrpc":"2.0","id":"a","error":{"code":-32001,"message":"quota \"exhausted\" \u003csoon\u003e","data":{"left":0}}}` + "\n", quota},
		{"an SSE event", "event: message\ndata: " + errMsg("b", missing) + "\n\n",
			"event: message\ndata: " + `{"jsonrpc":"2.0","id":"b","error":{"code":-32602,"message":"Resource not found","data":{"uri":"x://a"}}}` + "\n\n", missing},
		{"a marker outside an error is cut out", `{"jsonrpc":"2.0","id":1,"result":{"text":"see ` + quota.marker() + `"}}`,
			`{"jsonrpc":"2.0","id":1,"result":{"text":"see"}}`, nil},
		{"a damaged marker is cut out", `{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"failed ` + string(rpcMarker) + `!!}"}}`,
			`{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"failed"}}`, nil},
		{"a message with more members keeps them", `{"jsonrpc":"2.0","id":1,"x":[1],"error":{"code":-32603,"message":"m ` + missing.marker() + `"}}`,
			`{"error":{"code":-32602,"message":"Resource not found","data":{"uri":"x://a"}},"id":1,"jsonrpc":"2.0","x":[1]}`, missing},
		{"a marker of another process is no marker", `{"a":"` + forged + `"}`, `{"a":"` + forged + `"}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, restored := unmarkRPCErrors([]byte(tc.in))
			if string(got) != tc.want || !reflect.DeepEqual(restored, tc.restored) {
				t.Errorf("got %s (%+v)\nwant %s (%+v)", got, restored, tc.want, tc.restored)
			}
		})
	}
	if got := (&faceError{e: &httpError{Detail: errorDetail{Message: "busy"}}}).Error(); got != "busy" {
		t.Errorf("the face's own error = %q, want its text alone", got)
	}
	if err := faceErr(context.Background(), clientGone); !errors.Is(err, context.Canceled) {
		t.Errorf("a client gone = %v, want context.Canceled", err)
	}
}

// BenchmarkRPCWriter is what the face's writer adds to an answer: an
// ordinary one (a 2 KB tool result), and one with a server's error.
func BenchmarkRPCWriter(b *testing.B) {
	result := mustJSON(map[string]any{"jsonrpc": "2.0", "id": 1, "result": map[string]any{
		"content": []any{map[string]any{"type": "text", "text": strings.Repeat("a quick brown fox ", 110)}}}})
	marked := mustJSON(mcp.NewJSONRPCError(mcp.NewRequestId(1), mcp.INTERNAL_ERROR, "server \"s\" failed "+
		(&rpcPassed{Code: -32001, Message: "quota exhausted", Data: json.RawMessage(`{"left":0}`)}).marker(), nil))
	for _, bc := range []struct {
		name string
		body []byte
		wrap bool
	}{{"plain writer", result, false}, {"ordinary answer", result, true}, {"server's error", marked, true}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				var w http.ResponseWriter = rec
				if bc.wrap {
					w = &rpcWriter{ResponseWriter: rec}
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write(bc.body)
			}
		})
	}
}

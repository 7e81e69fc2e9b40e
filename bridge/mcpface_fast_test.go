package bridge

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/jsonbody"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// fastFace is the MCP endpoint of a bridge of the fixture server, served
// at url, with mcp-go answering every request that comes over HTTP
// (noFast), so that the direct path can be compared with it.
func fastFace(t *testing.T, noFast bool) (*mcpFace, string) {
	t.Helper()
	return fastFaceOf(t, fixtureServer(t), noFast)
}

// fastFaceOf is fastFace of the server s.
func fastFaceOf(t *testing.T, s *ServerConfig, noFast bool) (*mcpFace, string) {
	t.Helper()
	b, err := New(Config{Servers: []*ServerConfig{s}, Single: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.faces) != 1 {
		t.Fatalf("%d MCP endpoints, want 1", len(b.faces))
	}
	f := b.faces[0]
	f.noFast = noFast
	return f, serveBridge(t, b).URL + "/m/mcp"
}

// serveDirect offers body, with header, to f's direct path as serveMCP
// does, and returns whether it answered, and the answer.
func serveDirect(f *mcpFace, body string, header map[string]string) (bool, *httptest.ResponseRecorder) {
	req := httptest.NewRequest(http.MethodPost, "/m/mcp", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	f.sync()
	rec := httptest.NewRecorder()
	rw := &rpcWriter{ResponseWriter: rec}
	ctx, fr := withFaceRequest(req.Context(), "/m")
	served := f.serveFast(rw, req, ctx, fr, []byte(body))
	if served {
		rw.release()
	}
	return served, rec
}

// callOf is a tools/call of tool with args (a JSON object) and id, with
// the members meta (of a JSON object) in its _meta; and the headers of a
// 2026-07-28 request of it when modern.
func callOf(id, tool, args, meta string, modern bool) (string, map[string]string) {
	var h map[string]string
	if modern {
		if meta != "" {
			meta += ","
		}
		meta += `"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},` +
			`"io.modelcontextprotocol/clientInfo":{"name":"raw","version":"1"}`
		h = map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": tool}
	}
	return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"` + tool + `","arguments":` + args + `,"_meta":{` + meta + `}}}`, h
}

// jsonValue is body decoded, for comparing answers as JSON.
func jsonValue(t *testing.T, body string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("the answer is not JSON: %v\n%s", err, body)
	}
	return v
}

func TestMCPFaceAnswersToolCallsDirectlyAsMCPGoDoes(t *testing.T) {
	f, url := fastFace(t, true)
	calls := []struct{ id, tool, args string }{
		{"1", "echo", `{"message":"a <b> & \"c\" ü"}`},
		{`"call-2.x:y_z"`, "multi", `{}`},
		{"3", "image", `{}`},
		{"4", "audio", `{}`},
		{"5", "resource_link", `{}`},
		{"6", "embedded_text", `{}`},
		{"7", "embedded_blob", `{}`},
		{"8", "structured", `{}`},
		{"9", "fail", `{"reason":"bad <input>"}`},
		{"10", "invalid_params", `{}`},                              // the server's JSON-RPC error, its code kept
		{"11", "add", `{"a":"x","b":1}`},                            // refused by the schema: a tool error
		{"12", "echo_args", `{"n":123456789012345678901234567890}`}, // precision kept
		{"-13", "no_args", `null`},
		{"14", "with_title", `{}`},
		{"15", "echo_args", `[1,{"a":2}]`}, // not an object: a tool error
		{"16", "add", `"a=1"`},
	}
	for _, era := range []string{"2025-11-25", "2026-07-28"} {
		modern := era == "2026-07-28"
		var session map[string]string
		if !modern {
			session = legacySession(t, url, "")
		}
		for _, c := range calls {
			t.Run(era+"/"+c.tool, func(t *testing.T) {
				body, header := callOf(c.id, c.tool, c.args, "", modern)
				if !modern {
					header = session
				}
				resp, slow := postMCP(t, url, body, header)
				served, rec := serveDirect(f, body, header)
				if !served {
					t.Fatal("the direct path left the call to mcp-go")
				}
				if rec.Code != resp.StatusCode {
					t.Errorf("status %d, mcp-go's %d", rec.Code, resp.StatusCode)
				}
				if got, want := rec.Header().Get("Content-Type"), resp.Header.Get("Content-Type"); got != want {
					t.Errorf("Content-Type %q, mcp-go's %q", got, want)
				}
				if got, want := jsonValue(t, rec.Body.String()), jsonValue(t, slow); !reflect.DeepEqual(got, want) {
					t.Errorf("answered\n%s\nmcp-go answers\n%s", rec.Body.String(), slow)
				}
			})
		}
	}
}

func TestMCPFaceLeavesToMCPGoWhatTheDirectPathDoesNotServe(t *testing.T) {
	f, url := fastFace(t, true)
	session := legacySession(t, url, "")
	resp, _ := postMCP(t, url, `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",`+
		`"capabilities":{"sampling":{}},"clientInfo":{"name":"raw","version":"1"}}}`, nil)
	sampling := map[string]string{"Mcp-Session-Id": resp.Header.Get("Mcp-Session-Id"), "Mcp-Protocol-Version": "2025-11-25"}
	postMCP(t, url, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, sampling)
	legacy := func(id, tool, meta string) func() (string, map[string]string) {
		return func() (string, map[string]string) {
			body, _ := callOf(id, tool, `{}`, meta, false)
			return body, session
		}
	}
	modernWith := func(edit func(body string, h map[string]string) string) func() (string, map[string]string) {
		return func() (string, map[string]string) {
			body, h := callOf("1", "no_args", `{}`, "", true)
			return edit(body, h), h
		}
	}
	cases := []struct {
		name string
		req  func() (string, map[string]string)
	}{
		{"a call with a progress token", legacy("1", "no_args", `"progressToken":"p"`)},
		{"a call as a task", func() (string, map[string]string) {
			return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"no_args","task":{"ttl":60000}}}`, session
		}},
		{"a tool the endpoint does not list", legacy("1", "nope", "")},
		{"a fractional id", legacy("1.5", "no_args", "")},
		{"a null id", legacy("null", "no_args", "")},
		{"an id mcp-go re-encodes", legacy(`"a b"`, "no_args", "")},
		{"a message that is also a response (a result member)", func() (string, map[string]string) {
			return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"no_args"},"result":{}}`, session
		}},
		{"another method", func() (string, map[string]string) {
			return `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, session
		}},
		{"no session", func() (string, map[string]string) {
			body, _ := callOf("1", "no_args", `{}`, "", false)
			return body, nil
		}},
		{"a session this endpoint did not begin", func() (string, map[string]string) {
			body, _ := callOf("1", "no_args", `{}`, "", false)
			return body, map[string]string{"Mcp-Session-Id": mcpSessions.Generate()}
		}},
		{"a session its client ended", func() (string, map[string]string) {
			ended := legacySession(t, url, "")
			endSession(t, url, ended)
			body, _ := callOf("1", "no_args", `{}`, "", false)
			return body, ended
		}},
		{"a session mcp-go's transport has not seen for a while", func() (string, map[string]string) {
			idle := legacySession(t, url, "")
			ls, ok := f.live.Load(idle["Mcp-Session-Id"])
			if !ok {
				t.Fatal("the session is not registered")
			}
			ls.(*liveSession).seen.Add(-int64(2 * fastTouch / time.Second))
			body, _ := callOf("1", "no_args", `{}`, "", false)
			return body, idle
		}},
		{"a session whose client samples", func() (string, map[string]string) {
			body, _ := callOf("1", "no_args", `{}`, "", false)
			return body, sampling
		}},
		{"2026-07-28 with another tool's Mcp-Name", modernWith(func(body string, h map[string]string) string {
			h["Mcp-Name"] = "echo"
			return body
		})},
		{"2026-07-28 without the client's capabilities", modernWith(func(body string, _ map[string]string) string {
			return strings.Replace(body, `"io.modelcontextprotocol/clientCapabilities":{},`, "", 1)
		})},
		{"2026-07-28 with versions that differ", modernWith(func(body string, h map[string]string) string {
			h["Mcp-Protocol-Version"] = "2025-11-25"
			return body
		})},
		{"2026-07-28 whose _meta names its members in another case", modernWith(func(body string, _ map[string]string) string {
			return strings.Replace(body, `"io.modelcontextprotocol/protocolVersion"`, `"IO.MODELCONTEXTPROTOCOL/PROTOCOLVERSION"`, 1)
		})},
		{"2026-07-28 whose second _meta lacks what the first has", modernWith(func(body string, _ map[string]string) string {
			return body[:len(body)-2] + `,"_meta":{"x":1}}}` // after the params' own
		})},
		{"a session with notifications queued for it", func() (string, map[string]string) {
			queued := legacySession(t, url, "")
			if err := f.mcp.SendNotificationToSpecificClient(queued["Mcp-Session-Id"], "notifications/message",
				map[string]any{"level": "info", "data": "queued"}); err != nil {
				t.Fatal(err)
			}
			body, _ := callOf("1", "no_args", `{}`, "", false)
			return body, queued
		}},
		{"2026-07-28 with a Last-Event-ID", modernWith(func(body string, h map[string]string) string {
			h["Last-Event-ID"] = "1"
			return body
		})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body, header := tc.req()
			served, rec := serveDirect(f, body, header)
			if served {
				t.Fatalf("the direct path answered: %d %s", rec.Code, rec.Body.String())
			}
			if rec.Body.Len() != 0 || len(rec.Header()) != 0 {
				t.Errorf("the direct path wrote %v %q before leaving the request", rec.Header(), rec.Body.String())
			}
		})
	}
}

func TestMCPFaceCancelsADirectCallOnNotificationsCancelled(t *testing.T) {
	f, url := fastFace(t, false)
	session := legacySession(t, url, "")
	count := func() int {
		body, _ := callOf("100", "cancelled_calls", `{}`, "", false)
		_, answer := postMCP(t, url, body, session)
		var m struct {
			Result struct {
				Content []struct{ Text string } `json:"content"`
			} `json:"result"`
		}
		if json.Unmarshal([]byte(answer), &m) != nil || len(m.Result.Content) != 1 {
			t.Fatalf("cancelled_calls answered %s", answer)
		}
		n, _ := strconv.Atoi(m.Result.Content[0].Text)
		return n
	}
	before := count()
	done := make(chan string, 1)
	go func() {
		body, _ := callOf(`"slow-1"`, "slow", `{"ms":20000}`, "", false)
		_, answer := postMCP(t, url, body, session)
		done <- answer
	}()
	sid := session["Mcp-Session-Id"]
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if f.fastCalls.find(sid, "slow-1") != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the call did not take the direct path")
		}
	}
	cancel := `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"slow-1","reason":"test"}}`
	// One the transport refuses (a protocol version it does not know)
	// cancels nothing.
	refused := map[string]string{"Mcp-Session-Id": session["Mcp-Session-Id"], "Mcp-Protocol-Version": "1999-01-01"}
	if resp, _ := postMCP(t, url, cancel, refused); resp.StatusCode == http.StatusAccepted {
		t.Fatalf("a cancellation with protocol version 1999-01-01 was accepted")
	}
	select {
	case answer := <-done:
		t.Fatalf("a refused cancellation ended the call: %s", answer)
	case <-time.After(200 * time.Millisecond):
	}
	resp, _ := postMCP(t, url, cancel, session)
	if resp.StatusCode != http.StatusAccepted {
		t.Errorf("notifications/cancelled answered %d, want 202", resp.StatusCode)
	}
	select {
	case answer := <-done:
		if strings.Contains(answer, `"done"`) {
			t.Fatalf("the call ran to its end: %s", answer)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call went on after notifications/cancelled")
	}
	for deadline := time.Now().Add(5 * time.Second); count() <= before; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server did not see the call cancelled")
		}
	}
	if f.fastCalls.find(sid, "slow-1") != nil {
		t.Error("the ended call is still registered for cancellation")
	}
}

func TestMCPFaceLeavesAToolThatRequiresATaskToMCPGo(t *testing.T) {
	s := readyServer(t, upstream.Spec{Name: "fx", Transport: upstream.TransportStreamableHTTP,
		URL: fixture.NewStreamableHTTP(t, fixture.Options{Tasks: true}), Protocol: upstream.ProtocolLegacy})
	s.Tasks = NewTaskStore(TaskLimits{MaxTasks: 10}, nil)
	answers := map[bool]string{} // by whether the direct path is off
	for _, noFast := range []bool{false, true} {
		f, url := fastFaceOf(t, s, noFast)
		session := legacySession(t, url, "")
		body, _ := callOf("1", fixture.TaskOnlyTool, `{"ms":10}`, "", false)
		if served, rec := serveDirect(f, body, session); served {
			t.Fatalf("the direct path answered a call of a tool that requires a task: %s", rec.Body)
		}
		_, answers[noFast] = postMCP(t, url, body, session)
	}
	// The answer is mcp-go's, whichever way the request went: the call
	// waits for its task, which it names.
	taskID := regexp.MustCompile(`"taskId":"[^"]+"`)
	on, off := taskID.ReplaceAllString(answers[false], `"taskId":"…"`), taskID.ReplaceAllString(answers[true], `"taskId":"…"`)
	if on != off || !strings.Contains(on, "researched for 10 ms") {
		t.Errorf("with the direct path on, answered %s; mcp-go answers %s", on, off)
	}
}

func TestMCPFaceCancelsADirectCallWaitingForASlot(t *testing.T) {
	s := fixtureServer(t)
	s.MaxConcurrent, s.QueueTimeout = 1, time.Minute
	f, url := fastFaceOf(t, s, false)
	session := legacySession(t, url, "")
	answers := map[string]chan string{}
	for _, id := range []string{"running", "queued"} {
		answers[id] = make(chan string, 1)
		body, _ := callOf(`"`+id+`"`, "slow", `{"ms":20000}`, "", false)
		go func() {
			_, answer := postMCP(t, url, body, session)
			answers[id] <- answer
		}()
		for deadline := time.Now().Add(10 * time.Second); f.fastCalls.find(session["Mcp-Session-Id"], id) == nil ||
			len(f.servers[0].slots) == 0; time.Sleep(10 * time.Millisecond) { // the first call holds the slot
			if time.Now().After(deadline) {
				t.Fatalf("call %s did not take the direct path", id)
			}
		}
	}
	cancel := func(id string) {
		resp, _ := postMCP(t, url, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"`+id+`"}}`, session)
		if resp.StatusCode != http.StatusAccepted {
			t.Errorf("notifications/cancelled of %s answered %d, want 202", id, resp.StatusCode)
		}
	}
	cancel("queued")
	select {
	case answer := <-answers["queued"]:
		if strings.Contains(answer, `"done"`) {
			t.Fatalf("the queued call ran: %s", answer)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the queued call went on waiting for a slot after notifications/cancelled")
	}
	select {
	case answer := <-answers["running"]:
		t.Fatalf("cancelling the queued call ended the running one: %s", answer)
	default:
	}
	cancel("running")
	select {
	case <-answers["running"]:
	case <-time.After(10 * time.Second):
		t.Fatal("the running call went on after notifications/cancelled")
	}
}

func TestCallStopStopsACallWhereverItIs(t *testing.T) {
	t.Run("before it has a deadline", func(t *testing.T) {
		var c callStop
		c.stop()
		ctx, cancel := context.WithCancel(context.Background())
		c.bind(cancel)
		if ctx.Err() == nil || !c.isStopped() {
			t.Error("a call stopped before its deadline was bound runs")
		}
	})
	t.Run("under way", func(t *testing.T) {
		var c callStop
		ctx, cancel := context.WithCancel(context.Background())
		c.bind(cancel)
		if ctx.Err() != nil || c.isStopped() {
			t.Fatal("binding stopped the call")
		}
		c.stop()
		c.stop() // twice is once
		if ctx.Err() == nil {
			t.Error("stop did not cancel the call's deadline")
		}
	})
	t.Run("waiting", func(t *testing.T) {
		var c callStop
		done := c.done()
		select {
		case <-done:
			t.Fatal("done before the stop")
		default:
		}
		c.stop()
		<-done
		<-c.done() // made after the stop, and closed
	})
	t.Run("nil", func(t *testing.T) {
		var c *callStop
		if c.done() != nil || c.isStopped() {
			t.Error("a nil callStop stops")
		}
		c.bind(func() { t.Error("a nil callStop cancelled") })
	})
}

func TestAppendToolResultWritesWhatMCPGosMarshalWrites(t *testing.T) {
	meta := &mcp.Meta{AdditionalFields: map[string]any{"k": "v<"}}
	cases := map[string]*mcp.CallToolResult{
		"empty":                {},
		"raw items":            {Content: []mcp.Content{rawContent{raw: json.RawMessage(`{"type":"text","text":"a"}`)}, rawContent{raw: json.RawMessage(`{"type":"image","data":"AA==","mimeType":"image/png"}`)}}},
		"typed item":           {Content: []mcp.Content{mcp.NewTextContent("x")}},
		"error":                {IsError: true, Content: []mcp.Content{mcp.NewTextContent("bad")}},
		"structured raw":       {RawStructuredContent: json.RawMessage(`{"a":1}`)},
		"structured value":     {StructuredContent: map[string]any{"b": 2}},
		"meta":                 {Result: mcp.Result{Meta: meta}},
		"result type":          {Result: mcp.Result{ResultType: mcp.ResultTypeComplete}},
		"input required":       {Result: mcp.Result{ResultType: mcp.ResultTypeInputRequired}, MultiRoundTripResult: mcp.MultiRoundTripResult{RequestState: "s", InputRequests: mcp.InputRequests{"r": mcp.NewRootsInputRequest()}}},
		"everything, in order": {Result: mcp.Result{Meta: meta, ResultType: mcp.ResultTypeComplete}, IsError: true, RawStructuredContent: json.RawMessage(`[1]`), Content: []mcp.Content{mcp.NewTextContent("x")}},
	}
	for name, r := range cases {
		t.Run(name, func(t *testing.T) {
			want, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			got, err := appendToolResult(nil, r, nil)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("wrote\n%s\nmcp-go writes\n%s", got, want)
			}
		})
	}
}

func TestAppendCallResultWritesWhatMCPGoWritesForTheSameResult(t *testing.T) {
	item := json.RawMessage(`{"type":"text","text":"a","annotations":{"priority":1}}`)
	cases := map[string]*upstream.CallResult{
		"no items":        {Content: []upstream.Content{}},
		"an item as sent": {Content: []upstream.Content{{Type: "text", Text: "a", Wire: item}}},
		"items of each kind": {Content: []upstream.Content{
			{Type: "text", Text: "a", Wire: item},
			{Type: "x-unknown", Raw: json.RawMessage(`{"type":"x-unknown","v":[1]}`)},
			{Type: "image", Data: "AA==", MIMEType: "image/png"}, // made here: no JSON of its own
		}},
		"a tool error":        {IsError: true, Content: []upstream.Content{{Type: "text", Text: "bad", Wire: item}}},
		"structured content":  {Content: []upstream.Content{}, Structured: json.RawMessage(`{"a":[1,2]}`)},
		"everything but meta": {IsError: true, Structured: json.RawMessage(`[1]`), Content: []upstream.Content{{Type: "text", Text: "a", Wire: item}}},
	}
	meta := json.RawMessage(`{"io.modelcontextprotocol/serverInfo":{"name":"m","version":"1"}}`)
	for name, res := range cases {
		for _, modern := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/modern=%v", name, modern), func(t *testing.T) {
				r := mcpResult(res) // as mcp-go's handler returns it
				var m json.RawMessage
				if modern {
					m = meta
					r.ResultType = mcp.ResultTypeComplete
					r.Meta = new(mcp.Meta)
					if err := json.Unmarshal(meta, r.Meta); err != nil {
						t.Fatal(err)
					}
				}
				want, err := json.Marshal(r)
				if err != nil {
					t.Fatal(err)
				}
				if got := appendCallResult([]byte("prefix"), res, m, modern); string(got) != "prefix"+string(want) {
					t.Errorf("wrote\n%s\nmcp-go writes\n%s", got, want)
				}
			})
		}
	}
}

func TestMCPFaceCountsItsMessagesInTheBytesInFlight(t *testing.T) {
	b, err := New(Config{Servers: []*ServerConfig{fixtureServer(t)}, Single: true, MaxBodyBytes: 2000, MaxBodyBytesInFlight: 3000})
	if err != nil {
		t.Fatal(err)
	}
	srv := serveBridge(t, b)
	url := srv.URL + "/m/mcp"
	pad := strings.Repeat("x", 1500)
	held := make(chan struct{})
	go func() { // a REST call holding 1.5 KB until it is answered
		defer close(held)
		resp, err := http.Post(srv.URL+"/m/slow", "application/json", strings.NewReader(`{"ms":1500,"pad":"`+pad+`"}`))
		if err == nil {
			resp.Body.Close()
		}
	}()
	for deadline := time.Now().Add(5 * time.Second); b.bodies.used.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the REST call's body is not held")
		}
	}
	session := legacySession(t, url, "")
	body, _ := callOf("1", "echo", `{"message":"`+pad+`"}`, "", false)
	resp, answer := postMCP(t, url, body, session)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
		!strings.Contains(answer, "max_request_bytes_in_flight") {
		t.Fatalf("with the bytes in flight full: %d (Retry-After %q) %s", resp.StatusCode, resp.Header.Get("Retry-After"), answer)
	}
	<-held
	resp, answer = postMCP(t, url, body, session)
	if resp.StatusCode != http.StatusOK || !strings.Contains(answer, pad) {
		t.Fatalf("once the REST call ended: %d %.200s", resp.StatusCode, answer)
	}
	if n := b.bodies.used.Load(); n != 0 {
		t.Errorf("%d bytes still held after the answers", n)
	}
}

func TestMCPFaceReadsAGzippedMessage(t *testing.T) {
	_, url := fastFace(t, false)
	session := legacySession(t, url, "")
	body, _ := callOf("1", "echo", `{"message":"squeezed"}`, "", false)
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	_, _ = zw.Write([]byte(body))
	_ = zw.Close()
	session["Content-Encoding"] = "gzip"
	resp, answer := postMCP(t, url, z.String(), session)
	if resp.StatusCode != http.StatusOK || !strings.Contains(answer, "squeezed") {
		t.Fatalf("answered %d %s", resp.StatusCode, answer)
	}
}

func TestFastIDNamesACallAsMCPGoNamesIt(t *testing.T) {
	for _, tc := range []struct{ id, cancelled string }{
		{`7`, `7`}, {`7`, `7.0`}, {`7`, `"7"`}, {`1234567`, `1234567`}, {`-13`, `-13`},
		{`"call-2.x:y_z"`, `"call-2.x:y_z"`},
	} {
		var v any
		if err := json.Unmarshal([]byte(tc.cancelled), &v); err != nil {
			t.Fatal(err)
		}
		if a, b := fastID(plainIDValue(json.RawMessage(tc.id))), fastID(v); a != b {
			t.Errorf("id %s is %q, notifications/cancelled of %s names %q", tc.id, a, tc.cancelled, b)
		}
		if a, b := fastID(plainIDValue(json.RawMessage(tc.id))), fmt.Sprintf("%v", v); a != b {
			t.Errorf("id %s is %q; mcp-go names it %q", tc.id, a, b)
		}
	}
}

func TestFastCallsFindsACallByTheIDANotificationNames(t *testing.T) {
	var calls fastCalls
	var a, b, c callStop
	calls.add(&a, fastCall{"s1", json.RawMessage(`7`)})
	calls.add(&b, fastCall{"s1", json.RawMessage(`"x-1"`)})
	calls.add(&c, fastCall{"s2", json.RawMessage(`1234567`)})
	for _, tc := range []struct {
		session, cancelled string // the notification's requestId
		want               *callStop
	}{
		{"s1", `7`, &a}, {"s1", `7.0`, &a}, {"s1", `"7"`, &a}, {"s2", `7`, nil},
		{"s1", `"x-1"`, &b}, {"s1", `"x-2"`, nil},
		{"s2", `1234567`, &c}, {"s1", `1234567`, nil},
	} {
		var id any
		if err := json.Unmarshal([]byte(tc.cancelled), &id); err != nil {
			t.Fatal(err)
		}
		if got := calls.find(tc.session, fastID(id)); got != tc.want {
			t.Errorf("session %s, requestId %s: found %p, want %p", tc.session, tc.cancelled, got, tc.want)
		}
	}
	calls.remove(&a)
	if calls.find("s1", "7") != nil {
		t.Error("a removed call is found")
	}
}

func TestReadMetaReadsAsMCPGosMetaOrDeclines(t *testing.T) {
	const v, caps, info = `"io.modelcontextprotocol/protocolVersion":"2026-07-28"`, `"io.modelcontextprotocol/clientCapabilities":{"sampling":{}}`,
		`"io.modelcontextprotocol/clientInfo":{"name":"c","version":"1"}`
	for _, tc := range []struct {
		name, raw string
		read      bool
	}{
		{"none", ``, true},
		{"empty", `{}`, true},
		{"every member", `{` + v + `,` + caps + `,` + info + `,"io.modelcontextprotocol/logLevel":"info","progressToken":3}`, true},
		{"a member repeated", `{` + v + `,"io.modelcontextprotocol/protocolVersion":"2025-11-25"}`, true},
		{"others", `{"x":{"y":[1,2]},` + v + `}`, true},
		{"a name in another case", `{"IO.ModelContextProtocol/protocolVersion":"2026-07-28"}`, false},
		{"an escaped name", `{"io.modelcontextprotocol/protocol\u0056ersion":"2026-07-28"}`, false},
		{"an escape in a value", `{` + v + `,"io.modelcontextprotocol/clientInfo":{"name":"c\u0021\"","version":"1"}}`, true},
		{"a value of another shape", `{"io.modelcontextprotocol/protocolVersion":5}`, false},
		{"not an object", `[{` + v + `}]`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, ok := readMeta(json.RawMessage(tc.raw), false)
			if ok != tc.read {
				t.Fatalf("read %v, want %v", ok, tc.read)
			}
			// Bytes a check of their message accepted are split, not
			// checked again, and read alike.
			if tc.raw != "" && jsonbody.Check([]byte(tc.raw), MaxBodyDepth) == nil {
				if split, ok := readMeta(json.RawMessage(tc.raw), true); ok != tc.read || fmt.Sprint(split) != fmt.Sprint(m) {
					t.Fatalf("read checked bytes as %+v (%v), unchecked as %+v (%v)", split, ok, m, tc.read)
				}
			}
			if !ok || tc.raw == "" {
				return
			}
			var want mcp.Meta
			if err := json.Unmarshal([]byte(tc.raw), &want); err != nil {
				t.Fatal(err)
			}
			if m.ProtocolVersion != want.ProtocolVersion() || m.LogLevel != want.LogLevel() ||
				(nonNullJSON(m.ProgressToken) != nil) != (want.ProgressToken != nil) {
				t.Errorf("read %+v, mcp.Meta reads version %q, level %q, progress token %v", m, want.ProtocolVersion(), want.LogLevel(), want.ProgressToken)
			}
			for name, pair := range map[string][2]any{"capabilities": {m.ClientCapabilities, want.ClientCapabilities()}, "client": {m.ClientInfo, want.ClientInfo()}} {
				got, _ := json.Marshal(pair[0])
				wanted, _ := json.Marshal(pair[1])
				if string(got) != string(wanted) {
					t.Errorf("%s %s, mcp.Meta reads %s", name, got, wanted)
				}
			}
		})
	}
}

// scanSeeds are messages for scanRequest, and whether it reads them.
var scanSeeds = []struct {
	name, message string
	scanned       bool
}{
	{"a legacy call", `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}`, true},
	{"a modern call", `{"jsonrpc":"2.0","id":"a-1","method":"tools/call","params":{"name":"echo","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, true},
	{"white space around everything", " {\n\t\"jsonrpc\" : \"2.0\" , \"id\" : 1 ,\"method\":\"tools/call\", \"params\" : { \"name\" : \"echo\" , \"arguments\" : { } } }\r\n", true},
	{"other members", `{"jsonrpc":"2.0","id":1,"method":"tools/call","x":[1,{"y":null}],"params":{"name":"echo","task":{"ttl":5},"z":true}}`, true},
	{"a result member", `{"jsonrpc":"2.0","id":1,"method":"tools/call","result":{},"params":{"name":"echo"}}`, true},
	{"another method", `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"tools/call"}}`, true},
	{"another version", `{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"echo"}}`, true},
	{"no params", `{"jsonrpc":"2.0","id":1,"method":"tools/call"}`, true},
	{"a null id", `{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"echo"}}`, true},
	{"a name in another case", `{"jsonrpc":"2.0","ID":1,"method":"tools/call","params":{"name":"echo"}}`, false},
	{"a params member in another case", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"echo"}}`, false},
	{"an escaped name", `{"jsonrpc":"2.0","id":1,"\u006dethod":"tools/call","params":{"name":"echo"}}`, false},
	{"a folding name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","ta\u017fk":{}}}`, false},
	{"a non-ASCII name", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"taſk\":{}}}", false},
	{"an escaped method", `{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"echo"}}`, false},
	{"a method of another type", `{"jsonrpc":"2.0","id":1,"method":5,"params":{"name":"echo"}}`, false},
	{"a null name", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":null}}`, false},
	{"params not an object", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}`, false},
	{"null params", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":null}`, false},
	{"a retry's input responses", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","inputResponses":{"a":{}}}}`, false},
	{"a retry's request state", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","requestState":"s"}}`, false},
	{"a repeated member", `{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/call","params":{"name":"echo"}}`, false},
	{"invalid UTF-8", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"m\":\"\xff\"}}}", false},
	{"a batch", `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}]`, false},
	{"not JSON", `{"jsonrpc":"2.0","id":1,"method":"tools/call",`, false},
}

func TestScanRequestReadsAToolCallAsJSONUnmarshalOrDeclines(t *testing.T) {
	for _, tc := range scanSeeds {
		t.Run(tc.name, func(t *testing.T) {
			var m fastRequest
			if got := scanRequest([]byte(tc.message), &m); got != tc.scanned {
				t.Fatalf("scanned %v, want %v", got, tc.scanned)
			}
			if tc.scanned {
				sameAsUnmarshal(t, tc.message, &m)
			}
		})
	}
}

func FuzzScanRequest(f *testing.F) {
	for _, tc := range scanSeeds {
		f.Add(tc.message)
	}
	f.Fuzz(func(t *testing.T, message string) {
		var m fastRequest
		if scanRequest([]byte(message), &m) {
			sameAsUnmarshal(t, message, &m)
		}
	})
}

// sameAsUnmarshal fails t unless m is what json.Unmarshal reads from
// message.
func sameAsUnmarshal(t *testing.T, message string, m *fastRequest) {
	t.Helper()
	var want fastRequest
	if err := json.Unmarshal([]byte(message), &want); err != nil {
		t.Fatalf("scanned what json.Unmarshal refuses: %v", err)
	}
	if err := jsonbody.Check([]byte(message), MaxBodyDepth); !m.checked || err != nil {
		t.Fatalf("scanned a message, checked %v, that jsonbody's check finds %v", m.checked, err)
	}
	got, _ := json.Marshal(m)
	wanted, _ := json.Marshal(&want)
	if string(got) != string(wanted) || !bytes.Equal(m.ID, want.ID) || !bytes.Equal(m.Result, want.Result) ||
		!bytes.Equal(m.Params.Arguments, want.Params.Arguments) || !bytes.Equal(m.Params.Meta, want.Params.Meta) || !bytes.Equal(m.Params.Task, want.Params.Task) {
		t.Errorf("scanned %s\njson.Unmarshal reads %s", got, wanted)
	}
}

func TestDecodedJSONGivesOneValuePerBytesAndStaysBounded(t *testing.T) {
	var d decodedJSON[mcp.ClientCapabilities]
	a, okA := d.decode([]byte(`{"sampling":{},"experimental":{"x":{"y":1}}}`))
	b, okB := d.decode([]byte(`{"sampling":{},"experimental":{"x":{"y":1}}}`))
	if !okA || !okB || a != b || a.Sampling == nil || a.Experimental["x"] == nil {
		t.Fatalf("decoded %+v (%v) and %+v (%v); want one value, with sampling and the experimental member", a, okA, b, okB)
	}
	if other, _ := d.decode([]byte(`{"elicitation":{}}`)); other == a || other.Elicitation == nil || other.Sampling != nil {
		t.Errorf("other bytes decoded to %+v", other)
	}
	if v, ok := d.decode([]byte(`null`)); !ok || v != nil {
		t.Errorf("null decoded to %+v, %v; want nil", v, ok)
	}
	if _, ok := d.decode([]byte(`[1]`)); ok {
		t.Error("an array decoded as capabilities")
	}
	for i := range 3 * maxDecodedJSON {
		if _, ok := d.decode(fmt.Appendf(nil, `{"experimental":{"x%d":{}}}`, i)); !ok {
			t.Fatal("not decoded")
		}
	}
	if len(d.m) > maxDecodedJSON {
		t.Errorf("%d values kept, more than %d", len(d.m), maxDecodedJSON)
	}
	large := fmt.Appendf(nil, `{"experimental":{"x":{"pad":%q}}}`, strings.Repeat("x", maxDecodedJSONBytes))
	v, ok := d.decode(large)
	if !ok || v.Experimental["x"] == nil {
		t.Fatalf("a large value decoded to %+v, %v", v, ok)
	}
	if _, kept := d.m[string(large)]; kept {
		t.Errorf("a value of %d bytes is kept; at most %d are", len(large), maxDecodedJSONBytes)
	}
}

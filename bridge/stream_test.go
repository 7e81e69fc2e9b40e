package bridge

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

func TestPrefersEvents(t *testing.T) {
	for _, tc := range []struct {
		name   string
		accept []string
		want   bool
	}{
		{name: "no header", want: false},
		{name: "JSON only", accept: []string{"application/json"}, want: false},
		{name: "anything", accept: []string{"*/*"}, want: false},
		{name: "events only", accept: []string{"text/event-stream"}, want: true},
		{name: "events with parameters", accept: []string{"text/event-stream; charset=utf-8"}, want: true},
		{name: "both, equal: JSON stays the default", accept: []string{"application/json, text/event-stream"}, want: false},
		{name: "both, events first but equal", accept: []string{"text/event-stream, application/json"}, want: false},
		{name: "events preferred by quality", accept: []string{"text/event-stream, application/json;q=0.9"}, want: true},
		{name: "JSON preferred by quality", accept: []string{"text/event-stream;q=0.5, application/json"}, want: false},
		{name: "events and anything else lower", accept: []string{"text/event-stream, */*;q=0.1"}, want: true},
		{name: "events refused", accept: []string{"text/event-stream;q=0"}, want: false},
		{name: "text/* does not beat exact JSON", accept: []string{"text/*, application/json"}, want: false},
		{name: "text/* over anything lower", accept: []string{"text/*, */*;q=0.5"}, want: true},
		{name: "JSON refused, events by wildcard", accept: []string{"application/json;q=0, */*"}, want: true},
		{name: "over two header lines", accept: []string{"application/json;q=0.2", "text/event-stream"}, want: true},
		{name: "malformed ranges ignored", accept: []string{"garbage;;, text/event-stream"}, want: true},
		{name: "bad quality counts as 1", accept: []string{"text/event-stream;q=high, application/json;q=0.5"}, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := prefersEvents(tc.accept); got != tc.want {
				t.Errorf("prefersEvents(%q) = %v, want %v", tc.accept, got, tc.want)
			}
		})
	}
}

func TestEventStreamWritesEachLineOfTheDataAsADataLine(t *testing.T) {
	for _, tc := range []struct {
		name, data, want string
	}{
		{name: "one line", data: `{"a":1}`, want: "event: result\ndata: {\"a\":1}\n\n"},
		{name: "empty", data: ``, want: "event: result\ndata: \n\n"},
		{name: "line feeds", data: "{\n  \"a\": 1\n}", want: "event: result\ndata: {\ndata:   \"a\": 1\ndata: }\n\n"},
		{name: "carriage returns and line feeds", data: "{\r\n\"a\": 1\r\n}", want: "event: result\ndata: {\ndata: \"a\": 1\ndata: }\n\n"},
		{name: "lone carriage returns", data: "[1,\r2]", want: "event: result\ndata: [1,\ndata: 2]\n\n"},
		{name: "a trailing line feed", data: "1\n", want: "event: result\ndata: 1\ndata: \n\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			s := &eventStream{w: w, rc: http.NewResponseController(w)}
			s.write(streamEvent{name: eventResult, data: []byte(tc.data)})
			if got := w.Body.String(); got != tc.want {
				t.Errorf("wrote %q, want %q", got, tc.want)
			}
			if !w.Flushed {
				t.Error("the event was not flushed")
			}
			// What an SSE client reassembles is the data, line breaks as
			// line feeds.
			evs := readEvents(t, w.Body)
			want := strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(tc.data)
			if len(evs) != 1 || evs[0].data != want {
				t.Errorf("a client reads %+v, want the data %q", evs, want)
			}
		})
	}
}

// sse is an event as a client reads it.
type sse struct {
	name, data string
}

// readEvents reads the events of an event stream to its end, and the
// comments among them as events named ":".
func readEvents(t *testing.T, r io.Reader) []sse {
	t.Helper()
	var (
		evs  []sse
		cur  sse
		data []string
		seen bool
	)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if seen {
				cur.data = strings.Join(data, "\n")
				evs = append(evs, cur)
			}
			cur, data, seen = sse{}, nil, false
		case strings.HasPrefix(line, ":"):
			evs = append(evs, sse{name: ":", data: strings.TrimSpace(line[1:])})
		case strings.HasPrefix(line, "event: "):
			cur.name, seen = line[len("event: "):], true
		case strings.HasPrefix(line, "data: "):
			data, seen = append(data, line[len("data: "):]), true
		default:
			t.Errorf("unexpected line %q in the event stream", line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Errorf("reading the event stream: %v", err)
	}
	return evs
}

// fixtureServer is a ServerConfig of a fixture MCP server with the
// progress tool, reached over Streamable HTTP by a real Upstream, ready.
func fixtureServer(t *testing.T) *ServerConfig {
	t.Helper()
	return fixtureServerOf(t, "")
}

// fixtureServerOf is fixtureServer speaking protocol (an upstream.Spec's
// Protocol; "" for auto).
func fixtureServerOf(t *testing.T, protocol string) *ServerConfig {
	t.Helper()
	return readyServer(t, upstream.Spec{Name: "fx", Transport: upstream.TransportStreamableHTTP, Protocol: protocol,
		URL: fixture.NewStreamableHTTP(t, fixture.Options{Progress: true})})
}

// readyServer is a ServerConfig of the server of spec, reached by a real
// Upstream, ready.
func readyServer(t *testing.T, spec upstream.Spec) *ServerConfig {
	t.Helper()
	u := upstream.New(spec, upstream.Options{StartTimeout: 10 * time.Second}, zap.NewNop())
	u.Start()
	t.Cleanup(func() { _ = u.Close() })
	deadline := time.After(10 * time.Second)
	for u.Status().State != upstream.StateReady {
		select {
		case <-u.Changed():
		case <-deadline:
			t.Fatalf("server %s is not ready: %+v", spec.Name, u.Status())
		}
	}
	return &ServerConfig{Name: spec.Name, Upstream: u}
}

// fixtureBridge serves s alone at /m.
func fixtureBridge(t *testing.T, s *ServerConfig) *httptest.Server {
	t.Helper()
	b, err := New(Config{Servers: []*ServerConfig{s}, Single: true})
	if err != nil {
		t.Fatal(err)
	}
	return serveBridge(t, b)
}

// postCall calls tool with args at srv, with the Accept header accept when
// not empty, and returns the answer, its body read.
func postCall(t *testing.T, srv *httptest.Server, tool, args, accept string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/m/"+tool, strings.NewReader(args))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestAStreamedCallSendsProgressInOrderThenTheResult(t *testing.T) {
	srv := fixtureBridge(t, fixtureServer(t))
	plain, want := postCall(t, srv, "progress", `{"steps":3,"ms":20}`, "")
	if plain.StatusCode != http.StatusOK || plain.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("without Accept: %d %s %s, want the JSON answer", plain.StatusCode, plain.Header.Get("Content-Type"), want)
	}
	resp, body := postCall(t, srv, "progress", `{"steps":3,"ms":20}`, "text/event-stream")
	for k, v := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Length") != "" {
		t.Errorf("status %d, Content-Length %q; want 200 and none", resp.StatusCode, resp.Header.Get("Content-Length"))
	}
	evs := readEvents(t, strings.NewReader(string(body)))
	if len(evs) == 0 || evs[len(evs)-1] != (sse{eventResult, string(want)}) {
		t.Fatalf("events %+v, want the last to be the result %s", evs, want)
	}
	// Each step's progress, then its log message (the fixture is reached
	// over Streamable HTTP, on the stream of the call's own request).
	// mcp-go's server may drop what it sends as the call ends (see the
	// fixture): the first two steps always come, and what comes of the
	// last in order.
	var wantEvents []sse
	for i := 1; i <= 3; i++ {
		wantEvents = append(wantEvents,
			sse{eventProgress, fmt.Sprintf(`{"progress":%d,"total":3,"message":"step %d of 3"}`, i, i)},
			sse{eventLog, fmt.Sprintf(`{"level":"info","logger":"fixture","data":"step %d of 3"}`, i)})
	}
	got := evs[:len(evs)-1]
	if len(got) < 4 || len(got) > len(wantEvents) || !slices.Equal(got[:4], wantEvents[:4]) ||
		!isSubsequence(got[4:], wantEvents[4:]) {
		t.Errorf("events before the result %+v, want %+v", got, wantEvents)
	}
}

// isSubsequence reports whether sub is of seq, in order.
func isSubsequence[T comparable](sub, seq []T) bool {
	for _, v := range seq {
		if len(sub) > 0 && sub[0] == v {
			sub = sub[1:]
		}
	}
	return len(sub) == 0
}

func TestAStreamedCallAnswersWhatItCannotStreamAsJSON(t *testing.T) {
	srv := fixtureBridge(t, fixtureServer(t))
	for _, tc := range []struct {
		name, tool, args string
		status           int
		events           bool
	}{
		{name: "a result without progress is one result event", tool: "add", args: `{"a":2,"b":3}`, status: http.StatusOK, events: true},
		{name: "a tool error before any event keeps its status", tool: "fail", args: `{"reason":"x"}`, status: http.StatusInternalServerError},
		{name: "invalid arguments keep their status", tool: "add", args: `{"a":"two"}`, status: http.StatusUnprocessableEntity},
		{name: "an unknown tool is not found", tool: "nope", args: `{}`, status: http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plain, want := postCall(t, srv, tc.tool, tc.args, "")
			resp, body := postCall(t, srv, tc.tool, tc.args, "text/event-stream")
			if resp.StatusCode != tc.status || plain.StatusCode != tc.status {
				t.Fatalf("status %d streamed, %d plain; want %d", resp.StatusCode, plain.StatusCode, tc.status)
			}
			if !tc.events {
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" || string(body) != string(want) {
					t.Errorf("streamed answer %s %s, want the JSON answer %s", ct, body, want)
				}
				return
			}
			evs := readEvents(t, strings.NewReader(string(body)))
			if len(evs) != 1 || evs[0] != (sse{eventResult, string(want)}) {
				t.Errorf("events %+v, want one result %s", evs, want)
			}
		})
	}
}

func TestAStreamedCallThatFailsAfterItsFirstEventEndsWithAnErrorEvent(t *testing.T) {
	s := fixtureServer(t)
	s.Timeout, s.MaxTimeout = 300*time.Millisecond, 600*time.Millisecond
	srv := fixtureBridge(t, s)
	resp, body := postCall(t, srv, "progress", `{"steps":50,"ms":100}`, "text/event-stream")
	evs := readEvents(t, strings.NewReader(string(body)))
	if resp.StatusCode != http.StatusOK || len(evs) < 2 {
		t.Fatalf("%d %+v, want progress then an error", resp.StatusCode, evs)
	}
	last := evs[len(evs)-1]
	var e struct {
		Status int `json:"status"`
		Detail struct {
			Message, Server, Tool string
		} `json:"detail"`
	}
	if last.name != eventError || json.Unmarshal([]byte(last.data), &e) != nil {
		t.Fatalf("last event %+v, want an error", last)
	}
	if e.Status != http.StatusGatewayTimeout || e.Detail.Server != "fx" || e.Detail.Tool != "progress" ||
		!strings.Contains(e.Detail.Message, "max_timeout") {
		t.Errorf("error event %s, want 504 saying the call reached max_timeout", last.data)
	}
	for _, ev := range evs[:len(evs)-1] {
		if ev.name != eventProgress && ev.name != eventLog {
			t.Errorf("event %+v before the error, want progress and logs only", ev)
		}
	}
}

func TestAStreamedCallKeepsASilentStreamAlive(t *testing.T) {
	old := keepAliveInterval
	keepAliveInterval = 50 * time.Millisecond
	t.Cleanup(func() { keepAliveInterval = old })
	srv := fixtureBridge(t, fixtureServer(t))
	resp, body := postCall(t, srv, "slow", `{"ms":400}`, "text/event-stream")
	evs := readEvents(t, strings.NewReader(string(body)))
	if resp.StatusCode != http.StatusOK || len(evs) < 2 || evs[0] != (sse{":", "keep-alive"}) ||
		evs[len(evs)-1] != (sse{eventResult, `"done"`}) {
		t.Errorf("%d %+v, want keep-alive comments then the result", resp.StatusCode, evs)
	}
}

func TestAStreamedCallsClientThatGoesAwayCancelsTheCallAtTheServer(t *testing.T) {
	srv := fixtureBridge(t, fixtureServer(t))
	cancelled := func() int {
		_, body := postCall(t, srv, "cancelled_calls", `{}`, "")
		n, err := strconv.Atoi(string(body))
		if err != nil {
			t.Fatalf("cancelled_calls = %s", body)
		}
		return n
	}
	before := cancelled()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/m/progress", strings.NewReader(`{"steps":600,"ms":50}`))
	req.Header.Set("Accept", "text/event-stream")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "event: progress\n" {
		t.Fatalf("first line %q, %v; want a progress event", line, err)
	}
	cancel() // mid-stream
	deadline := time.Now().Add(10 * time.Second)
	for cancelled() != before+1 {
		if time.Now().After(deadline) {
			t.Fatalf("the server saw %d calls cancelled, want %d", cancelled(), before+1)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestProgressExtendsTheDeadlineUpToMaxTimeout(t *testing.T) {
	const timeout, maxTimeout = 400 * time.Millisecond, 1500 * time.Millisecond
	s := fixtureServer(t)
	s.Timeout, s.MaxTimeout = timeout, maxTimeout
	srv := fixtureBridge(t, s)
	without := fixtureServer(t)
	without.Name, without.Timeout = "fx", timeout
	plain := fixtureBridge(t, without)
	for _, tc := range []struct {
		name     string
		srv      *httptest.Server
		tool     string
		args     string
		status   int
		message  string        // a part of the error's message
		atLeast  time.Duration // the answer comes no sooner
		lessThan time.Duration // and sooner than this
	}{
		{name: "steady progress past the timeout finishes", srv: srv, tool: "progress", args: `{"steps":8,"ms":100}`,
			status: http.StatusOK, atLeast: 800 * time.Millisecond},
		{name: "without max_timeout the timeout holds", srv: plain, tool: "progress", args: `{"steps":8,"ms":100}`,
			status: http.StatusGatewayTimeout, message: "did not answer within 400ms", atLeast: timeout, lessThan: 700 * time.Millisecond},
		{name: "progress stops extending at max_timeout", srv: srv, tool: "progress", args: `{"steps":60,"ms":100}`,
			status: http.StatusGatewayTimeout, message: "did not answer within 1.5s, the longest a call may take when it reports progress (max_timeout)",
			atLeast: maxTimeout, lessThan: maxTimeout + 400*time.Millisecond},
		{name: "no progress within the timeout", srv: srv, tool: "slow", args: `{"ms":3000}`,
			status: http.StatusGatewayTimeout, message: "did not answer within 400ms", atLeast: timeout, lessThan: 700 * time.Millisecond},
		{name: "a step longer than the timeout", srv: srv, tool: "progress", args: `{"steps":3,"ms":600}`,
			status: http.StatusGatewayTimeout, message: "did not answer within 400ms", atLeast: timeout, lessThan: 700 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			resp, body := postCall(t, tc.srv, tc.tool, tc.args, "")
			took := time.Since(start)
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.message) {
				t.Errorf("%d %s, want %d saying %q", resp.StatusCode, body, tc.status, tc.message)
			}
			if took < tc.atLeast || (tc.lessThan > 0 && took >= tc.lessThan) {
				t.Errorf("answered after %v, want at least %v and less than %v", took, tc.atLeast, tc.lessThan)
			}
		})
	}
}

func TestEventQueueKeepsTheServersOrderOfProgressAndLogs(t *testing.T) {
	p := func(n int) streamEvent { return streamEvent{name: eventProgress, data: []byte(strconv.Itoa(n))} }
	l := func(n, after int) streamEvent {
		return streamEvent{name: eventLog, data: []byte("l" + strconv.Itoa(n)), after: after}
	}
	for _, tc := range []struct {
		name   string
		pushed []streamEvent // in the order they reach the queue
		want   string        // the data of the events taken, in order
		held   string        // the data of those still held before the call ends
	}{
		{name: "a log after its progress", pushed: []streamEvent{p(1), l(1, 1), p(2)}, want: "1 l1 2"},
		{name: "a log read before the progress sent ahead of it", pushed: []streamEvent{l(1, 1), p(1), l(2, 2), p(2)}, want: "1 l1 2 l2"},
		{name: "logs before any progress", pushed: []streamEvent{l(1, 0), l(2, 0), p(1)}, want: "l1 l2 1"},
		{name: "a log whose progress never comes waits for the end", pushed: []streamEvent{p(1), l(1, 2), l(2, 2)}, want: "1", held: "l1 l2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := newEventQueue()
			for _, ev := range tc.pushed {
				q.push(ev)
			}
			data := func(evs []streamEvent) string {
				var s []string
				for _, ev := range evs {
					s = append(s, string(ev.data))
				}
				return strings.Join(s, " ")
			}
			if got := data(q.take(false)); got != tc.want {
				t.Errorf("taken %q, want %q", got, tc.want)
			}
			if got := data(q.take(true)); got != tc.held {
				t.Errorf("taken at the end %q, want %q", got, tc.held)
			}
		})
	}
}

// unflushable is a ResponseWriter that cannot flush.
type unflushable struct{ http.ResponseWriter }

func TestEventStreamWritesEveryEventToAWriterThatCannotFlush(t *testing.T) {
	w := httptest.NewRecorder()
	s := &eventStream{w: unflushable{w}, rc: http.NewResponseController(unflushable{w})}
	s.write(progressEvent(upstream.Progress{Progress: 1}))
	s.write(streamEvent{name: eventResult, data: []byte(`"done"`)})
	if want := "event: progress\ndata: {\"progress\":1}\n\nevent: result\ndata: \"done\"\n\n"; w.Body.String() != want || s.err != nil {
		t.Errorf("wrote %q (%v), want %q", w.Body, s.err, want)
	}
}

func TestAnErrorEventCarriesTheStatusAndTheDetailOfTheJSONAnswer(t *testing.T) {
	code := -32000
	for _, tc := range []struct {
		name string
		e    *httpError
		want string
	}{
		{name: "a timeout", e: &httpError{Status: http.StatusGatewayTimeout, Detail: errorDetail{Message: "late", Server: "s", Tool: "t"}},
			want: `{"status":504,"detail":{"message":"late","server":"s","tool":"t"}}`},
		{name: "retry after, rounded up", e: &httpError{Status: http.StatusServiceUnavailable, RetryAfter: 1500 * time.Millisecond,
			Detail: errorDetail{Message: "starting"}},
			want: `{"status":503,"retry_after":2,"detail":{"message":"starting"}}`},
		{name: "a JSON-RPC error", e: &httpError{Status: http.StatusBadGateway, Detail: errorDetail{Message: "m", Code: &code, Data: json.RawMessage(`{"x":[1]}`)}},
			want: `{"status":502,"detail":{"message":"m","code":-32000,"data":{"x":[1]}}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := errorEvent(tc.e)
			if string(got) != tc.want {
				t.Errorf("error event %s, want %s", got, tc.want)
			}
			// The detail is the JSON answer's, byte for byte.
			if body := detailBody(tc.e.Detail); !strings.HasSuffix(string(got), string(body[1:])) {
				t.Errorf("error event %s does not end with the JSON answer's %s", got, body)
			}
		})
	}
}

func TestAStreamedCallIsAuditedWithTheStatusOfItsLastEvent(t *testing.T) {
	s := fixtureServer(t)
	s.Timeout, s.MaxTimeout = 300*time.Millisecond, 600*time.Millisecond
	core, logs := observer.New(zapcore.InfoLevel)
	b, err := New(Config{Servers: []*ServerConfig{s}, Single: true, Audit: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	srv := serveBridge(t, b)
	for _, tc := range []struct {
		args    string
		outcome Outcome
		status  int64
	}{
		{args: `{"steps":2,"ms":50}`, outcome: OutcomeOK, status: http.StatusOK},
		{args: `{"steps":50,"ms":100}`, outcome: OutcomeTimeout, status: http.StatusGatewayTimeout},
	} {
		resp, body := postCall(t, srv, "progress", tc.args, "text/event-stream")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		entries := logs.TakeAll()
		if len(entries) != 1 {
			t.Fatalf("%d audit lines, want 1", len(entries))
		}
		f := entries[0].ContextMap()
		if f["outcome"] != string(tc.outcome) || f["status"] != tc.status || f["response_bytes"] != int64(len(body)) {
			t.Errorf("audited %v, want outcome %s, status %d and the %d bytes of the stream", f, tc.outcome, tc.status, len(body))
		}
	}
}

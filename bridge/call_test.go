package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// fakeCaller is a Caller for tests that only map results and errors.
type fakeCaller struct{}

func (*fakeCaller) Tools() *upstream.ToolSet { return nil }
func (*fakeCaller) CallTool(context.Context, string, json.RawMessage) (*upstream.CallResult, error) {
	return nil, errors.New("fakeCaller: not implemented")
}
func (*fakeCaller) Status() upstream.Status { return upstream.Status{State: upstream.StateReady} }

func TestReadArgs(t *testing.T) {
	const limit = 64
	for _, tc := range []struct {
		name   string
		body   string
		want   string // the arguments, when status is 0
		status int
		msg    string // a part of the message, when status is not 0
	}{
		{name: "empty body", body: "", want: `{}`},
		{name: "whitespace body", body: " \r\n\t ", want: `{}`},
		{name: "empty object", body: `{}`, want: `{}`},
		{name: "object", body: `{"city":"Paris","days":3}`, want: `{"city":"Paris","days":3}`},
		{name: "object trimmed", body: "\n  {\"a\": 1}\r\n ", want: `{"a": 1}`},
		{name: "nulls, big numbers and unknown keys kept", body: `{"a":null,"n":12345678901234567890,"f":1.0e-400,"zz":{"x":[]}}`, want: `{"a":null,"n":12345678901234567890,"f":1.0e-400,"zz":{"x":[]}}`},
		{name: "key order kept", body: `{"b":1,"a":2,"c":3}`, want: `{"b":1,"a":2,"c":3}`},
		{name: "inner whitespace kept", body: `{ "a" :  [ 1 , 2 ] }`, want: `{ "a" :  [ 1 , 2 ] }`},
		{name: "exactly the limit", body: `{"k":"` + strings.Repeat("x", limit-8) + `"}`, want: `{"k":"` + strings.Repeat("x", limit-8) + `"}`},

		{name: "invalid JSON", body: `{"a":`, status: http.StatusBadRequest, msg: "JSON"},
		{name: "trailing garbage", body: `{"a":1} x`, status: http.StatusBadRequest, msg: "JSON"},
		{name: "two objects", body: `{}{}`, status: http.StatusBadRequest, msg: "JSON"},
		{name: "single quotes", body: `{'a':1}`, status: http.StatusBadRequest, msg: "JSON"},
		{name: "form encoded", body: `city=Paris`, status: http.StatusBadRequest, msg: "JSON"},
		{name: "a repeated name", body: `{"b":1,"a":2,"b":3}`, status: http.StatusBadRequest, msg: "byte offset 13"},

		{name: "array", body: `[1,2]`, status: http.StatusUnprocessableEntity, msg: "array"},
		{name: "string", body: `"Paris"`, status: http.StatusUnprocessableEntity, msg: "string"},
		{name: "number", body: `42`, status: http.StatusUnprocessableEntity, msg: "number"},
		{name: "negative number", body: `-1`, status: http.StatusUnprocessableEntity, msg: "number"},
		{name: "true", body: `true`, status: http.StatusUnprocessableEntity, msg: "boolean"},
		{name: "false", body: ` false `, status: http.StatusUnprocessableEntity, msg: "boolean"},
		{name: "null", body: `null`, status: http.StatusUnprocessableEntity, msg: "null"},

		{name: "over the limit", body: `{"k":"` + strings.Repeat("x", limit) + `"}`, status: http.StatusRequestEntityTooLarge, msg: strconv.Itoa(limit)},
		{name: "whitespace over the limit", body: strings.Repeat(" ", limit+1), status: http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/tool", strings.NewReader(tc.body))
			w := httptest.NewRecorder()
			args, e := readArgs(w, r, limit, &hold{b: &budget{max: math.MaxInt64}})
			status, msg := 0, ""
			if e != nil {
				status, msg = e.Status, e.Detail.Message
				if e.Outcome != OutcomeInvalidArguments {
					t.Errorf("outcome = %q, want %q", e.Outcome, OutcomeInvalidArguments)
				}
			}
			if status != tc.status {
				t.Fatalf("status = %d (%q), want %d", status, msg, tc.status)
			}
			if tc.status == 0 {
				if string(args) != tc.want {
					t.Errorf("args = %s, want %s", args, tc.want)
				}
				if !json.Valid(args) {
					t.Errorf("args %s are not valid JSON", args)
				}
				if msg != "" {
					t.Errorf("message = %q, want none", msg)
				}
				return
			}
			if args != nil {
				t.Errorf("args = %s, want none", args)
			}
			if msg == "" || !strings.Contains(msg, tc.msg) {
				t.Errorf("message = %q, want it to mention %q", msg, tc.msg)
			}
			if w.Code != http.StatusOK || w.Body.Len() != 0 {
				t.Errorf("readArgs wrote a response (%d %q); writing is the caller's job", w.Code, w.Body)
			}
		})
	}
}

func TestReadArgsReadError(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/tool", iotest.ErrReader(errors.New("connection reset")))
	args, e := readArgs(httptest.NewRecorder(), r, 1024, &hold{b: &budget{max: math.MaxInt64}})
	if e == nil || e.Status != http.StatusBadRequest || args != nil || !strings.Contains(e.Detail.Message, "connection broke") {
		t.Errorf("readArgs = %s, %+v; want 400 saying the connection broke", args, e)
	}
	if e != nil && (strings.Contains(e.Detail.Message, "connection reset") || e.Cause == nil || e.Cause.Error() != "connection reset") {
		t.Errorf("readArgs = %+v; want the read error as the cause, not in the message", e)
	}
}

func TestReadAllReadsEveryByteWhateverTheLengthSays(t *testing.T) {
	for _, size := range []int{0, 1, 27, 511, 512, 513, 5000} {
		body := strings.Repeat("x", size)
		for _, length := range []int64{-1, 0, 1, int64(size) - 1, int64(size), int64(size) + 1, 100000} {
			for _, oneByte := range []bool{false, true} {
				var rd io.Reader = strings.NewReader(body)
				if oneByte {
					rd = iotest.OneByteReader(rd)
				}
				h := &hold{b: &budget{max: math.MaxInt64}}
				first := bufferSize(length, 10000)
				h.take(first)
				got, err := readAll(rd, make([]byte, 0, first), 10000, h)
				if err != nil || string(got) != body {
					t.Errorf("size %d, length %d, one byte at a time %v: read %d bytes, %v", size, length, oneByte, len(got), err)
				}
				if h.n != int64(cap(got)) {
					t.Errorf("size %d, length %d, one byte at a time %v: %d bytes held for a buffer of %d", size, length, oneByte, h.n, cap(got))
				}
			}
		}
	}
}

func TestWriteError(t *testing.T) {
	code := -32000
	for _, tc := range []struct {
		name   string
		status int
		d      errorDetail
		want   string
	}{
		{"message only", 404, errorDetail{Message: "no such tool"}, `{"detail":{"message":"no such tool"}}`},
		{"server and tool", 502, errorDetail{Message: "m", Server: "s", Tool: "t"}, `{"detail":{"message":"m","server":"s","tool":"t"}}`},
		{"code and data", 502, errorDetail{Message: "m", Code: &code, Data: json.RawMessage(`{"why":[1,2]}`)}, `{"detail":{"message":"m","code":-32000,"data":{"why":[1,2]}}}`},
		{"invalid data is dropped", 502, errorDetail{Message: "m", Data: json.RawMessage(`{bad`)}, `{"detail":{"message":"m"}}`},
		{"escaping", 400, errorDetail{Message: "a \"b\"\n<c>"}, `{"detail":{"message":"a \"b\"\n\u003cc\u003e"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			writeError(w, &httpError{Status: tc.status, Detail: tc.d})
			if w.Code != tc.status {
				t.Errorf("status = %d, want %d", w.Code, tc.status)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if cl := w.Header().Get("Content-Length"); cl != strconv.Itoa(w.Body.Len()) {
				t.Errorf("Content-Length = %q, body is %d bytes", cl, w.Body.Len())
			}
			decodeError(t, w.Body.Bytes())
			if got := w.Body.String(); got != tc.want {
				t.Errorf("body = %s, want %s", got, tc.want)
			}
		})
	}
}

// newTestBridge returns a single-server Bridge over a fake caller.
func newTestBridge(t *testing.T, timeout time.Duration) (*Bridge, *ServerConfig) {
	t.Helper()
	s := &ServerConfig{Name: "s", Upstream: &fakeCaller{}, Timeout: timeout}
	b, err := New(Config{Servers: []*ServerConfig{s}, Single: true})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return b, s
}

// expired is a call context whose deadline has passed.
func expired(t *testing.T) context.Context {
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	t.Cleanup(cancel)
	return ctx
}

func TestCallFailed(t *testing.T) {
	_, s := newTestBridge(t, 30*time.Second)
	for _, tc := range []struct {
		name       string
		tool       string
		err        error
		ctx        func(t *testing.T) context.Context // the call's context; nil for a live one
		status     int
		retryAfter string // the Retry-After header wanted, "" for none
		msg        []string
		code       *int
		data       string
	}{
		{
			name: "unavailable", tool: "t",
			err:    &upstream.UnavailableError{Server: "s", State: upstream.StateStarting, RetryAfter: 2 * time.Second},
			status: http.StatusServiceUnavailable, retryAfter: "2", msg: []string{`"s"`, "try again"},
		},
		{
			name: "unavailable with a cause, rounding up", tool: "t",
			err:    &upstream.UnavailableError{Server: "s", State: upstream.StateBackoff, Cause: errors.New("exit status 1"), RetryAfter: 1500 * time.Millisecond},
			status: http.StatusServiceUnavailable, retryAfter: "2", msg: []string{`"s"`, "exit status 1"},
		},
		{
			name: "unavailable without a hint", tool: "t",
			err:    &upstream.UnavailableError{Server: "s", State: upstream.StateIdle},
			status: http.StatusServiceUnavailable, retryAfter: "1",
		},
		{
			name: "unavailable with a hint below a second", tool: "t",
			err:    &upstream.UnavailableError{Server: "s", State: upstream.StateBackoff, RetryAfter: time.Millisecond},
			status: http.StatusServiceUnavailable, retryAfter: "1",
		},
		{
			name: "unavailable with a past hint", tool: "t",
			err:    &upstream.UnavailableError{Server: "s", State: upstream.StateBackoff, RetryAfter: -5 * time.Second},
			status: http.StatusServiceUnavailable, retryAfter: "1",
		},
		{
			name: "unavailable, wrapped", tool: "t",
			err:    fmt.Errorf("calling: %w", &upstream.UnavailableError{Server: "s", State: upstream.StateStopped, RetryAfter: 90 * time.Second}),
			status: http.StatusServiceUnavailable, retryAfter: "90",
		},
		{
			name: "unavailable for a document request", tool: "",
			err:    &upstream.UnavailableError{Server: "s", State: upstream.StateStarting, RetryAfter: 2 * time.Second},
			status: http.StatusServiceUnavailable, retryAfter: "2",
		},
		{
			name: "invalid params", tool: "t",
			err:    &upstream.RPCError{Code: upstream.CodeInvalidParams, Message: "missing city", Data: json.RawMessage(`{"field":"city"}`)},
			status: http.StatusUnprocessableEntity, msg: []string{"missing city"}, code: ptr(-32602), data: `{"field":"city"}`,
		},
		{
			name: "method not found", tool: "t",
			err:    &upstream.RPCError{Code: upstream.CodeMethodNotFound, Message: "unknown tool"},
			status: http.StatusNotFound, msg: []string{"unknown tool"}, code: ptr(-32601),
		},
		{
			name: "other JSON-RPC error", tool: "t",
			err:    &upstream.RPCError{Code: -32603, Message: "internal error", Data: json.RawMessage(`"stack trace"`)},
			status: http.StatusBadGateway, msg: []string{"internal error"}, code: ptr(-32603), data: `"stack trace"`,
		},
		{
			name: "server-defined JSON-RPC error", tool: "t",
			err:    &upstream.RPCError{Code: 42, Message: "quota"},
			status: http.StatusBadGateway, msg: []string{"quota"}, code: ptr(42),
		},
		{
			name: "JSON-RPC error, wrapped", tool: "t",
			err:    fmt.Errorf("tools/call: %w", &upstream.RPCError{Code: upstream.CodeInvalidParams, Message: "bad"}),
			status: http.StatusUnprocessableEntity, msg: []string{"bad"}, code: ptr(-32602),
		},
		{
			name: "JSON-RPC error with invalid data", tool: "t",
			err:    &upstream.RPCError{Code: -32000, Message: "odd", Data: json.RawMessage(`{oops`)},
			status: http.StatusBadGateway, msg: []string{"odd"}, code: ptr(-32000),
		},
		{
			name: "input required", tool: "t",
			err:    &upstream.InputRequiredError{ResultType: "input_required"},
			status: http.StatusBadGateway, msg: []string{`"s"`, `"t"`, "input"},
		},
		{
			name: "a message over the server's limit", tool: "t",
			err:    fmt.Errorf("tools/call: %w", &upstream.MessageTooLargeError{Server: "s", Limit: 1 << 20}),
			status: http.StatusBadGateway, msg: []string{`server "s" sent a message larger than 1 MiB`, "max_message_size"},
		},
		{
			name: "deadline passed", tool: "slow_tool",
			err: context.DeadlineExceeded, ctx: expired,
			status: http.StatusGatewayTimeout, msg: []string{`"s"`, `"slow_tool"`, "30s"},
		},
		{
			name: "deadline passed, other error", tool: "slow_tool",
			err: errors.New("transport closed"), ctx: expired,
			status: http.StatusGatewayTimeout, msg: []string{`"s"`, `"slow_tool"`, "30s"},
		},
		{
			name: "deadline error without a passed deadline", tool: "t",
			err: context.DeadlineExceeded, ctx: func(*testing.T) context.Context { return context.Background() },
			status: http.StatusBadGateway, msg: []string{`"s"`, `"t"`},
		},
		{
			name: "refused by the caller, with when to try again", tool: "t",
			err:    fmt.Errorf("calling: %w", &RefusedError{Status: http.StatusTooManyRequests, Message: `server "s": every session is busy`, RetryAfter: 1500 * time.Millisecond}),
			status: http.StatusTooManyRequests, retryAfter: "2", msg: []string{`server "s": every session is busy`},
		},
		{
			name: "refused by the caller for good", tool: "t",
			err:    &RefusedError{Status: http.StatusForbidden, Message: "the caller's identity lacks an email"},
			status: http.StatusForbidden, msg: []string{"lacks an email"},
		},
		{
			name: "other error", tool: "t",
			err:    errors.New("broken pipe"),
			status: http.StatusBadGateway, msg: []string{`"s"`, `"t"`, "broken pipe"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			ctx := context.Background()
			if tc.ctx != nil {
				ctx = tc.ctx(t)
			}
			answer := callFailed(ctx, s, "/m", tc.tool, tc.err, s.Timeout)
			if want := outcomeOf[tc.status]; answer.Outcome != want {
				t.Errorf("outcome = %q, want %q", answer.Outcome, want)
			}
			if !errors.Is(answer, tc.err) {
				t.Errorf("the answer does not wrap %v", tc.err)
			}
			writeError(w, answer)

			if w.Code != tc.status {
				t.Errorf("status = %d, want %d", w.Code, tc.status)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			ra := w.Header().Get("Retry-After")
			if ra != tc.retryAfter {
				t.Errorf("Retry-After = %q, want %q", ra, tc.retryAfter)
			}
			if ra != "" {
				if n, err := strconv.Atoi(ra); err != nil || n < 1 {
					t.Errorf("Retry-After = %q, want whole seconds ≥ 1", ra)
				}
			}
			e := decodeError(t, w.Body.Bytes())
			if e.Detail.Message == "" {
				t.Error("empty message")
			}
			for _, m := range tc.msg {
				if !strings.Contains(e.Detail.Message, m) {
					t.Errorf("message = %q, want it to mention %s", e.Detail.Message, m)
				}
			}
			if e.Detail.Server != "s" {
				t.Errorf("server = %q, want s", e.Detail.Server)
			}
			if e.Detail.Tool != tc.tool {
				t.Errorf("tool = %q, want %q", e.Detail.Tool, tc.tool)
			}
			switch {
			case tc.code == nil && e.Detail.Code != nil:
				t.Errorf("code = %d, want none", *e.Detail.Code)
			case tc.code != nil && (e.Detail.Code == nil || *e.Detail.Code != *tc.code):
				t.Errorf("code = %v, want %d", e.Detail.Code, *tc.code)
			}
			if string(e.Detail.Data) != tc.data {
				t.Errorf("data = %s, want %s", e.Detail.Data, tc.data)
			}
		})
	}
}

// outcomeOf is the outcome of a failed call by its status.
var outcomeOf = map[int]Outcome{
	http.StatusServiceUnavailable:  OutcomeUnavailable,
	http.StatusUnprocessableEntity: OutcomeInvalidArguments,
	http.StatusNotFound:            OutcomeUpstreamError,
	http.StatusBadGateway:          OutcomeUpstreamError,
	http.StatusGatewayTimeout:      OutcomeTimeout,
	http.StatusTooManyRequests:     OutcomeRejected,
	http.StatusForbidden:           OutcomeRejected,
}

// failingCaller lists one tool, "t", whose calls fail with err; with
// leave, the client goes away during the call.
type failingCaller struct {
	err   error
	leave context.CancelFunc
}

func (*failingCaller) Tools() *upstream.ToolSet {
	return &upstream.ToolSet{Tools: []*upstream.Tool{{Name: "t"}}}
}

func (c *failingCaller) CallTool(context.Context, string, json.RawMessage) (*upstream.CallResult, error) {
	if c.leave != nil {
		c.leave()
	}
	return nil, c.err
}

func (*failingCaller) Status() upstream.Status { return upstream.Status{State: upstream.StateReady} }

func TestACallWhoseClientWentAwayWritesNothing(t *testing.T) {
	for _, err := range []error{
		context.Canceled,
		&upstream.UnavailableError{Server: "s", State: upstream.StateBackoff, RetryAfter: time.Second},
		&upstream.RPCError{Code: upstream.CodeInvalidParams, Message: "x"},
		errors.New("boom"),
	} {
		ctx, leave := context.WithCancel(context.Background())
		obs := &recordingObserver{}
		b, err2 := New(Config{Servers: []*ServerConfig{{Name: "s", Upstream: &failingCaller{err: err, leave: leave}}}, Single: true, Observer: obs})
		if err2 != nil {
			t.Fatal(err2)
		}
		r := httptest.NewRequest(http.MethodPost, "/m/t", strings.NewReader("{}")).WithContext(ctx)
		w := httptest.NewRecorder()
		b.Serve(w, r, "/t", "/m")
		if w.Body.Len() != 0 || len(w.Header()) != 0 || w.Code != http.StatusOK {
			t.Errorf("%v: wrote %d %v %q, want nothing", err, w.Code, w.Header(), w.Body)
		}
		if want := []string{"start s t", "finish s t canceled"}; !slices.Equal(obs.events, want) {
			t.Errorf("%v: observed %q, want %q", err, obs.events, want)
		}
	}
}

// The timeout named in a 504 is the server's, as New completed it.
func TestCallFailedTimeoutNamesTheDefaultTimeout(t *testing.T) {
	_, s := newTestBridge(t, 0)
	w := httptest.NewRecorder()
	writeError(w, callFailed(expired(t), s, "/m", "t", context.DeadlineExceeded, s.Timeout))
	if w.Code != http.StatusGatewayTimeout {
		t.Fatalf("status = %d, want 504", w.Code)
	}
	e := decodeError(t, w.Body.Bytes())
	if !strings.Contains(e.Detail.Message, DefaultTimeout.String()) {
		t.Errorf("message = %q, want it to name %s", e.Detail.Message, DefaultTimeout)
	}
}

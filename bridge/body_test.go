package bridge

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// argsCaller serves one tool, "t", taking any object, and records the
// arguments of every call; with gate set, each call waits for a value on
// it (or its context, or 10 s) after saying so on entered.
type argsCaller struct {
	mu      sync.Mutex
	args    []string
	gate    chan struct{}
	entered chan struct{}
}

func (*argsCaller) Tools() *upstream.ToolSet {
	return &upstream.ToolSet{Tools: []*upstream.Tool{{Name: "t", InputSchema: json.RawMessage(`{"type":"object"}`)}}}
}

func (c *argsCaller) CallTool(ctx context.Context, _ string, args json.RawMessage) (*upstream.CallResult, error) {
	c.mu.Lock()
	c.args = append(c.args, string(args))
	c.mu.Unlock()
	if c.gate != nil {
		c.entered <- struct{}{}
		select {
		case <-c.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Second):
			return nil, errors.New("argsCaller: the test never opened the gate")
		}
	}
	return &upstream.CallResult{Content: []upstream.Content{text("ok")}}, nil
}

func (*argsCaller) Status() upstream.Status { return upstream.Status{State: upstream.StateReady} }

func (c *argsCaller) calls() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.args...)
}

// last is the last event observed.
func (o *recordingObserver) last() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.events) == 0 {
		return ""
	}
	return o.events[len(o.events)-1]
}

// newBodyBridge is a single-server Bridge over c with cfg's limits.
func newBodyBridge(t *testing.T, c Caller, cfg Config) *Bridge {
	t.Helper()
	cfg.Servers, cfg.Single = []*ServerConfig{{Name: "s", Upstream: c}}, true
	b, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return b
}

// post calls tool t through Bridge.Serve with body, its length declared
// unless chunked, and the headers given as name, value pairs.
func post(b *Bridge, body io.Reader, length int64, header ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, "/m/t", body)
	r.ContentLength = length
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	b.Serve(w, r, "/t", "/m")
	return w
}

func postString(b *Bridge, body string, header ...string) *httptest.ResponseRecorder {
	return post(b, strings.NewReader(body), int64(len(body)), header...)
}

// nested is a body of depth levels: objects holding an array each.
func nested(depth int) string {
	var b strings.Builder
	b.WriteString(`{"a":`)
	for range depth - 1 {
		b.WriteString("[")
	}
	b.WriteString("1")
	for range depth - 1 {
		b.WriteString("]")
	}
	b.WriteString("}")
	return b.String()
}

// Every body a server could read differently from the bridge's check, or
// not at all, is refused with 400 naming where the fault is; the server
// never sees it.
func TestBodiesServersWouldReadDifferentlyAreRefusedWithTheOffset(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		says []string
	}{
		{"invalid UTF-8 in a value", "{\"city\":\"Par\xffis\"}", []string{"byte offset 12", "invalid UTF-8", "UTF-8"}},
		{"invalid UTF-8 in a name", "{\"ci\xc3ty\":\"Paris\"}", []string{"byte offset 4", "invalid UTF-8"}},
		{"a UTF-8-encoded surrogate", "{\"a\":\"\xed\xa0\x80\"}", []string{"byte offset 6", "invalid UTF-8"}},
		{"Latin-1 text", "{\"city\":\"Z\xfcrich\"}", []string{"byte offset 10", "invalid UTF-8"}},
		{"a repeated name", `{"path":"/tmp/safe","path":"/etc/passwd"}`, []string{"byte offset 20", `"path" appears twice`, "once"}},
		{"a repeated name spelled with an escape", `{"path":"/tmp/safe","p\u0061th":"/etc/passwd"}`, []string{"byte offset 20", "appears twice"}},
		{"a repeated name in a nested object", `{"opts":{"mode":"read","mode":"write"}}`, []string{"byte offset 23", `"mode" appears twice`}},
		{"a repeated name in an array's object", `{"list":[{"k":1,"k":2}]}`, []string{"byte offset 16", `"k" appears twice`}},
		{"one level too deep", nested(MaxBodyDepth + 1), []string{fmt.Sprintf("byte offset %d", len(`{"a":`)+MaxBodyDepth-1), fmt.Sprintf("nested more than %d levels", MaxBodyDepth)}},
		{"ten thousand levels", nested(10000), []string{fmt.Sprintf("nested more than %d levels", MaxBodyDepth)}},
		{"ten thousand and one levels", nested(10001), []string{fmt.Sprintf("nested more than %d levels", MaxBodyDepth)}},
		{"truncated", `{"a":`, []string{"byte offset 5", "not valid JSON", `{"name": "value"}`}},
		{"trailing garbage", `{"a":1} x`, []string{"byte offset 8", "not valid JSON"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &argsCaller{}
			obs := &recordingObserver{}
			b := newBodyBridge(t, c, Config{Observer: obs})
			w := postString(b, tc.body)
			if w.Code != http.StatusBadRequest {
				t.Fatalf("status %d %s, want 400", w.Code, w.Body)
			}
			e := decodeError(t, w.Body.Bytes())
			for _, s := range tc.says {
				if !strings.Contains(e.Detail.Message, s) {
					t.Errorf("message %q does not say %q", e.Detail.Message, s)
				}
			}
			if e.Detail.Server != "s" || e.Detail.Tool != "t" {
				t.Errorf("detail names server %q, tool %q; want s, t", e.Detail.Server, e.Detail.Tool)
			}
			if got := c.calls(); len(got) != 0 {
				t.Errorf("the server got %.80q", got)
			}
			if want := "finish s t invalid_arguments"; obs.last() != want {
				t.Errorf("observed %q, want %q", obs.last(), want)
			}
		})
	}
}

func TestBodiesEveryParserReadsAlikeAreForwardedAsSent(t *testing.T) {
	for _, body := range []string{
		`{"city":"Zürich","emoji":"😀","escaped":"\u00fc\ud83d\ude00"}`,
		`{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]}`, // a name again in other objects
		nested(MaxBodyDepth),
	} {
		c := &argsCaller{}
		b := newBodyBridge(t, c, Config{})
		if w := postString(b, body); w.Code != http.StatusOK {
			t.Errorf("%.60s…: %d %s, want 200", body, w.Code, w.Body)
			continue
		}
		if got := c.calls(); len(got) != 1 || got[0] != body {
			t.Errorf("the server got %.60q, want the body as sent", got)
		}
	}
}

func gzipOf(t *testing.T, s string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := io.WriteString(zw, s); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestContentEncodingIsDecodedOrRefused(t *testing.T) {
	const limit = 4096
	args := `{"city":"Paris","days":3}`
	bomb := gzipOf(t, `{"pad":"`+strings.Repeat("0", 10*limit)+`"}`)
	for _, tc := range []struct {
		name     string
		body     []byte
		encoding string
		chunked  bool
		status   int
		says     string // a part of the message of an error
	}{
		{name: "gzip", body: gzipOf(t, args), encoding: "gzip", status: 200},
		{name: "gzip, chunked", body: gzipOf(t, args), encoding: "gzip", chunked: true, status: 200},
		{name: "GZIP", body: gzipOf(t, args), encoding: "GZIP", status: 200},
		{name: "x-gzip", body: gzipOf(t, args), encoding: "x-gzip", status: 200},
		{name: "identity", body: []byte(args), encoding: "identity", status: 200},
		{name: "gzip over identity", body: gzipOf(t, args), encoding: "identity, gzip", status: 200},
		{name: "empty gzip", body: gzipOf(t, ""), encoding: "gzip", status: 200},
		{name: "gzip of invalid UTF-8", body: gzipOf(t, "{\"a\":\"\xff\"}"), encoding: "gzip", status: 400, says: "byte offset 6: invalid UTF-8"},
		{name: "a gzip bomb stops at the limit", body: bomb, encoding: "gzip", status: 413, says: fmt.Sprintf("larger than %d bytes once decoded", limit)},
		{name: "a gzip bomb, chunked", body: bomb, encoding: "gzip", chunked: true, status: 413, says: "once decoded"},
		{name: "not gzip at all", body: []byte(args), encoding: "gzip", status: 400, says: "not valid gzip"},
		{name: "truncated gzip", body: gzipOf(t, args)[:20], encoding: "gzip", status: 400, says: "not valid gzip"},
		{name: "br", body: []byte(args), encoding: "br", status: 415, says: `"br"`},
		{name: "deflate", body: []byte(args), encoding: "deflate", status: 415, says: "gzip"},
		{name: "zstd", body: []byte(args), encoding: "zstd", status: 415, says: "gzip"},
		{name: "gzip twice", body: gzipOf(t, string(gzipOf(t, args))), encoding: "gzip, gzip", status: 415, says: "gzip"},
		{name: "gzip then br", body: []byte(args), encoding: "gzip, br", status: 415, says: "gzip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &argsCaller{}
			b := newBodyBridge(t, c, Config{MaxBodyBytes: limit})
			length := int64(len(tc.body))
			if tc.chunked {
				length = -1
			}
			w := post(b, bytes.NewReader(tc.body), length, "Content-Encoding", tc.encoding)
			if w.Code != tc.status {
				t.Fatalf("status %d %s, want %d", w.Code, w.Body, tc.status)
			}
			if tc.status == http.StatusOK {
				want := args
				if tc.name == "empty gzip" {
					want = "{}"
				}
				if got := c.calls(); len(got) != 1 || got[0] != want {
					t.Errorf("the server got %q, want %q", got, want)
				}
				return
			}
			if got := c.calls(); len(got) != 0 {
				t.Errorf("the server got %.80q", got)
			}
			e := decodeError(t, w.Body.Bytes())
			if !strings.Contains(e.Detail.Message, tc.says) {
				t.Errorf("message %q does not say %q", e.Detail.Message, tc.says)
			}
			// Only a body over the limit is left unread, closing the
			// connection; the others are read to their end.
			if closed, tooBig := w.Header().Get("Connection") == "close", tc.status == http.StatusRequestEntityTooLarge; closed != tooBig {
				t.Errorf("Connection %q on a %d", w.Header().Get("Connection"), tc.status)
			}
			accept := w.Header().Get("Accept-Encoding")
			if tc.status == http.StatusUnsupportedMediaType {
				if accept != "gzip" {
					t.Errorf("415 with Accept-Encoding %q, want gzip (RFC 7694)", accept)
				}
				if !strings.Contains(e.Detail.Message, "Content-Encoding: gzip") {
					t.Errorf("message %q does not say what is accepted", e.Detail.Message)
				}
			} else if accept != "" {
				t.Errorf("Accept-Encoding %q on a %d", accept, tc.status)
			}
		})
	}
}

// countingReader counts the reads of a body.
type countingReader struct {
	r     io.Reader
	reads atomic.Int32
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.r.Read(p)
}

// A body over the limit is refused before any of it is read, and over
// HTTP/1 the connection closes, so that the answer goes at once rather
// than after the server reads on to reuse the connection.
func TestADeclaredLengthOverTheLimitIsRefusedBeforeReading(t *testing.T) {
	const limit = 1000
	for _, encoding := range []string{"", "gzip"} {
		for _, proto := range []int{1, 2} {
			c := &argsCaller{}
			b := newBodyBridge(t, c, Config{MaxBodyBytes: limit})
			body := &countingReader{r: strings.NewReader(strings.Repeat(" ", limit+1))}
			r := httptest.NewRequest(http.MethodPost, "/m/t", body)
			r.ContentLength, r.ProtoMajor = limit+1, proto
			r.Header.Set("Content-Encoding", encoding)
			w := httptest.NewRecorder()
			b.Serve(w, r, "/t", "/m")
			if w.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("Content-Encoding %q: status %d %s, want 413", encoding, w.Code, w.Body)
			}
			if e := decodeError(t, w.Body.Bytes()); !strings.Contains(e.Detail.Message, "larger than 1000 bytes") {
				t.Errorf("message %q does not name the limit", e.Detail.Message)
			}
			if n := body.reads.Load(); n != 0 {
				t.Errorf("Content-Encoding %q: the body was read %d times before the 413", encoding, n)
			}
			want := map[int]string{1: "close", 2: ""}[proto]
			if got := w.Header().Get("Connection"); got != want {
				t.Errorf("HTTP/%d: Connection %q, want %q", proto, got, want)
			}
		}
	}
}

// failingBody sends part of a body, then fails with err, first calling
// cancel if set, as net/http cancels a request's context on any read
// error of its connection.
type failingBody struct {
	part   io.Reader
	err    error
	cancel context.CancelFunc
}

func (f *failingBody) Read(p []byte) (int, error) {
	if n, _ := f.part.Read(p); n > 0 {
		return n, nil
	}
	if f.cancel != nil {
		f.cancel()
	}
	return 0, f.err
}

// A body that stops arriving gets 408, one whose connection fails 400,
// neither with the connection's addresses or Go's error text, which go to
// the log at DEBUG.
func TestABodyThatStallsOrBreaksIsAnsweredWithoutLocalDetails(t *testing.T) {
	addr := func(s string) net.Addr { a, _ := net.ResolveTCPAddr("tcp", s); return a }
	opErr := func(err error) error {
		return &net.OpError{Op: "read", Net: "tcp", Source: addr("127.0.0.1:8080"), Addr: addr("10.1.2.3:50312"), Err: err}
	}
	for _, tc := range []struct {
		name     string
		err      error
		canceled bool // the server cancelled the request's context
		status   int  // 0: nothing written, for a client that is gone
		says     string
	}{
		{name: "a read deadline passed", err: opErr(os.ErrDeadlineExceeded), status: http.StatusRequestTimeout, says: "timed out"},
		{name: "a read deadline passed, the context cancelled", err: opErr(os.ErrDeadlineExceeded), canceled: true, status: http.StatusRequestTimeout, says: "timed out"},
		{name: "a read deadline passed, wrapped", err: fmt.Errorf("caddy: %w", opErr(os.ErrDeadlineExceeded)), status: http.StatusRequestTimeout, says: "timed out"},
		{name: "the connection was reset", err: opErr(&os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}), status: http.StatusBadRequest, says: "connection broke"},
		{name: "the connection was reset, the context cancelled", err: opErr(&os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}), canceled: true},
		{name: "the body ended early", err: io.ErrUnexpectedEOF, status: http.StatusBadRequest, says: "connection broke"},
	} {
		for _, encoding := range []string{"", "gzip"} {
			t.Run(tc.name+" "+encoding, func(t *testing.T) {
				core, logs := observer.New(zapcore.DebugLevel)
				c := &argsCaller{}
				obs := &recordingObserver{}
				b := newBodyBridge(t, c, Config{Logger: zap.New(core), Observer: obs})
				part := []byte(`{"city":"Pa`)
				if encoding == "gzip" {
					part = gzipOf(t, strings.Repeat(`{"city":"Paris"}`, 100))[:40]
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				body := &failingBody{part: bytes.NewReader(part), err: tc.err}
				if tc.canceled {
					body.cancel = cancel
				}
				r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/m/t", body)
				r.ContentLength = 1000
				if encoding != "" {
					r.Header.Set("Content-Encoding", encoding)
				}
				w := httptest.NewRecorder()
				b.Serve(w, r, "/t", "/m")
				if got := c.calls(); len(got) != 0 {
					t.Errorf("the server got %q", got)
				}
				if tc.status == 0 {
					if w.Body.Len() != 0 || len(w.Header()) != 0 {
						t.Errorf("wrote %d %v %q for a client that is gone, want nothing", w.Code, w.Header(), w.Body)
					}
					if want := "finish s t canceled"; obs.last() != want {
						t.Errorf("observed %q, want %q", obs.last(), want)
					}
					return
				}
				if w.Code != tc.status {
					t.Fatalf("status %d %s, want %d", w.Code, w.Body, tc.status)
				}
				e := decodeError(t, w.Body.Bytes())
				if !strings.Contains(e.Detail.Message, tc.says) {
					t.Errorf("message %q does not say %q", e.Detail.Message, tc.says)
				}
				answer := w.Body.String() + fmt.Sprint(w.Header())
				for _, secret := range []string{"127.0.0.1", "10.1.2.3", "8080", "50312", "tcp", "read ", "i/o timeout", "unexpected EOF", "reset by peer", "caddy:"} {
					if strings.Contains(answer, secret) {
						t.Errorf("the answer shows %q: %s", secret, answer)
					}
				}
				if w.Header().Get("Connection") != "close" {
					t.Errorf("Connection %q on an answer leaving the body unread, want close", w.Header().Get("Connection"))
				}
				logged := 0
				for _, entry := range logs.FilterLevelExact(zapcore.DebugLevel).All() {
					if err, _ := entry.ContextMap()["error"].(string); err == tc.err.Error() {
						logged++
					}
				}
				if logged != 1 {
					t.Errorf("the read error was logged at DEBUG %d times, want once; logs: %v", logged, logs.All())
				}
				if want := "finish s t invalid_arguments"; obs.last() != want {
					t.Errorf("observed %q, want %q", obs.last(), want)
				}
			})
		}
	}
}

// The bodies of calls under way share MaxBodyBytesInFlight: a body that
// does not fit is refused with 503 before it is read (or, without a
// declared length, as it is read), and every byte is given back once the
// answer is written, whatever it was.
func TestBodiesInFlightShareTheBudget(t *testing.T) {
	const limit, budget = 1000, 2500
	c := &argsCaller{gate: make(chan struct{}), entered: make(chan struct{})}
	obs := &recordingObserver{}
	b := newBodyBridge(t, c, Config{MaxBodyBytes: limit, MaxBodyBytesInFlight: budget, Observer: obs})
	body := func(n int) string { return `{"pad":"` + strings.Repeat("x", n-10) + `"}` }

	// Two calls of 1000 bytes hold 2000 of the 2500 bytes.
	var wg sync.WaitGroup
	answers := make(chan *httptest.ResponseRecorder, 3)
	start := func(body string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers <- postString(b, body)
		}()
		<-c.entered
	}
	start(body(limit))
	start(body(limit))

	refused := func(what string, w *httptest.ResponseRecorder) {
		t.Helper()
		if w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%s: status %d %s, want 503", what, w.Code, w.Body)
		}
		if ra, err := strconv.Atoi(w.Header().Get("Retry-After")); err != nil || ra < 1 {
			t.Errorf("%s: Retry-After %q, want whole seconds", what, w.Header().Get("Retry-After"))
		}
		e := decodeError(t, w.Body.Bytes())
		for _, s := range []string{"busy with other large requests", "try again shortly"} {
			if !strings.Contains(e.Detail.Message, s) {
				t.Errorf("%s: message %q does not say %q", what, e.Detail.Message, s)
			}
		}
		if e.Detail.Server != "s" || e.Detail.Tool != "t" {
			t.Errorf("%s: detail names server %q, tool %q; want s, t", what, e.Detail.Server, e.Detail.Tool)
		}
		if w.Header().Get("Connection") != "" {
			t.Errorf("%s: Connection %q, want none: the body is read to its end and dropped", what, w.Header().Get("Connection"))
		}
		if want := "finish s t rejected"; obs.last() != want {
			t.Errorf("%s: observed %q, want %q", what, obs.last(), want)
		}
	}
	// 600 more bytes do not fit, declared or not, gzipped or not. A
	// declared length is refused before any byte is read; then the body is
	// read to its end and dropped, so that the answer reaches a client
	// that sends its whole body before it reads the answer...
	declared := &countingReader{r: strings.NewReader(body(600))}
	refused("a declared length", post(b, declared, 600))
	if rest, _ := io.ReadAll(declared); len(rest) != 0 {
		t.Errorf("%d bytes of the body left unread", len(rest))
	}
	// ... unless the client waits for 100 Continue to send it.
	waiting := &countingReader{r: strings.NewReader(body(600))}
	w := post(b, waiting, 600, "Expect", "100-continue")
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Connection") != "close" || waiting.reads.Load() != 0 {
		t.Errorf("a client waiting for 100 Continue: %d, Connection %q, %d reads of its body; want 503, close and none",
			w.Code, w.Header().Get("Connection"), waiting.reads.Load())
	}
	refused("a chunked body", post(b, strings.NewReader(body(600)), -1))
	refused("a gzipped body", post(b, bytes.NewReader(gzipOf(t, body(600))), -1, "Content-Encoding", "gzip"))
	// 400 bytes fit.
	start(body(400))
	for range 3 {
		c.gate <- struct{}{}
	}
	wg.Wait()
	close(answers)
	for w := range answers {
		if w.Code != http.StatusOK {
			t.Errorf("a call within the budget: %d %s", w.Code, w.Body)
		}
	}
	// Bodies refused for what they hold give their bytes back too.
	for _, bad := range []string{body(limit)[:limit-1], `[` + body(limit-2) + `]`, body(limit + 1)} {
		if w := postString(b, bad); w.Code/100 != 4 {
			t.Errorf("%.20q…: status %d, want a 4xx", bad, w.Code)
		}
	}
	if used := b.bodies.used.Load(); used != 0 {
		t.Errorf("%d bytes of the budget are still held once every answer is written", used)
	}
}

// A wrapped input goes to the server as the part of the body it is, not
// as a copy of it.
func TestAWrappedInputIsForwardedWithoutACopy(t *testing.T) {
	rt := newRoute("t", "t", &upstream.Tool{Name: "t", InputSchema: json.RawMessage(`{"type":"array"}`)}, "s", zap.NewNop())
	body := []byte(`{"input":[1,2,3]}`)
	got, e := prepareArgs(body, &ServerConfig{Name: "s"}, rt)
	if e != nil || string(got) != "[1,2,3]" {
		t.Fatalf("prepareArgs = %s, %v; want [1,2,3]", got, e)
	}
	if &got[0] != &body[len(`{"input":`)] {
		t.Error("the input forwarded is a copy of the body's bytes")
	}
}

package upstream

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
)

// bigAnswerServer is a Streamable HTTP MCP server (2025-11-25) whose tool
// "big" answers with a text of the given number of bytes, as one JSON body
// or, with "sse": true, as an event stream carrying a progress
// notification and then the answer.
func bigAnswerServer(t *testing.T) string {
	t.Helper()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Arguments struct {
					Bytes int  `json:"bytes"`
					SSE   bool `json:"sse"`
				} `json:"arguments"`
			} `json:"params"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.Header().Set("Mcp-Session-Id", "s1")
		var result any
		switch req.Method {
		case "initialize":
			result = map[string]any{"protocolVersion": "2025-11-25", "capabilities": map[string]any{"tools": map[string]any{}},
				"serverInfo": map[string]any{"name": "big", "version": "1"}}
		case "tools/list":
			result = map[string]any{"tools": []any{map[string]any{"name": "big", "inputSchema": map[string]any{"type": "object"}}}}
		case "tools/call":
			a := req.Params.Arguments
			result = map[string]any{"content": []any{map[string]any{"type": "text", "text": strings.Repeat("x", a.Bytes)}}}
			if a.SSE {
				w.Header().Set("Content-Type", "text/event-stream")
				fmt.Fprint(w, "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"working\"}}\r\n\r\n")
				b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": req.ID, "result": result})
				fmt.Fprintf(w, "event: message\ndata: %s\n\n", b)
				return
			}
		default: // notifications
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": req.ID, "result": result})
	}))
	t.Cleanup(ts.Close)
	return ts.URL
}

func TestUpstream_AnHTTPAnswerOverTheLimitFailsItsCallAndKeepsTheSession(t *testing.T) {
	const limit = 64 << 10
	u, _ := start(t, Spec{Name: "web", Transport: TransportStreamableHTTP, URL: bigAnswerServer(t), Protocol: "2025-11-25"},
		Options{MaxMessageBytes: limit})
	for _, c := range []struct {
		name  string
		sse   bool
		bytes int
		fails bool
	}{
		{"a JSON answer within the limit", false, limit - 200, false},
		{"a JSON answer over the limit", false, 4 * limit, true},
		{"an event within the limit, after another", true, limit - 200, false},
		{"an event over the limit", true, 4 * limit, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, err := callWithin(u, "big", fmt.Sprintf(`{"bytes":%d,"sse":%t}`, c.bytes, c.sse))
			if !c.fails {
				if err != nil {
					t.Fatalf("call: %v", err)
				}
				if got := len(text(t, res)); got != c.bytes {
					t.Fatalf("the text has %d bytes, want %d", got, c.bytes)
				}
				return
			}
			var big *MessageTooLargeError
			if !errors.As(err, &big) || big.Server != "web" || big.Limit != limit || big.Restarted {
				t.Fatalf("call: %v, want a *MessageTooLargeError of server web at %d bytes, without a restart", err, limit)
			}
			if want := `server "web" sent a message larger than 64 KiB (max_message_size raises the limit)`; err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
		})
	}
	// The session outlived the answers over the limit.
	if st := u.Status(); st.State != StateReady || st.Restarts != 0 {
		t.Errorf("after the answers over the limit: state %s, %d restarts", st.State, st.Restarts)
	}
}

func TestLimitedBody_CountsEachEventOfAStreamAndTheWholeOfAnyOtherBody(t *testing.T) {
	event := func(n int) string { return "data: " + strings.Repeat("y", n-6) + "\n\n" }
	for _, c := range []struct {
		name   string
		events bool
		body   string
		over   bool
	}{
		{"a body at the limit", false, strings.Repeat("a", 100), false},
		{"a body past the limit", false, strings.Repeat("a", 101), true},
		{"a body of many lines past the limit", false, strings.Repeat("a\n", 51), true},
		{"many events each within the limit", true, strings.Repeat(event(100), 50), false},
		{"events ended by CRLF blank lines", true, strings.Repeat("data: "+strings.Repeat("z", 90)+"\r\n\r\n", 50), false},
		{"an event of several lines past the limit", true, "data: a\n" + strings.Repeat("data: bbbbbbbbbb\n", 10) + "\n", true},
		{"an event past the limit after small ones", true, event(50) + event(50) + event(101), true},
		{"a line of a single CR does not end an event", true, "data: " + strings.Repeat("c", 60) + "\n\r\r\n" + strings.Repeat("d", 40) + "\n\n", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			over := errors.New("over")
			// Read a byte at a time, so that lines and events span reads.
			b := &limitedBody{ReadCloser: io.NopCloser(iotest.OneByteReader(strings.NewReader(c.body))), limit: 100,
				events: c.events, over: func() error { return over }}
			_, err := io.ReadAll(b)
			if got := errors.Is(err, over); got != c.over {
				t.Errorf("over the limit: %t (%v), want %t", got, err, c.over)
			}
		})
	}
}

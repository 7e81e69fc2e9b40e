package bridge

// A server's JSON-RPC error, passed on by the MCP face with its code and
// data. mcp-go answers every error of a handler (or of a request hook)
// with a code of its own, -32603 (or -32600), and the error's text as the
// message, and offers no way to choose the code. So the face's error of a
// request a server answered with a JSON-RPC error (faceError) carries, at
// the end of its text, a marker that encodes the server's code, message
// and data; the face's response writer (rpcWriter) puts them back in
// place of mcp-go's before anything reaches a client. The marker describes
// itself, so whichever path delivers the answer (the POST's JSON body or
// its SSE stream, a stream resumed with Last-Event-ID, the event store's
// replay) restores it: mcp-go writes all of them to the writer of the
// request that reads them, an rpcWriter (the event store keeps the marked
// message, which its replay writes there too). The marker starts with a
// nonce of the process, so that a message of a client or a server cannot
// forge one. mcp-go writes each JSON-RPC message with one Write (a JSON
// body, or one SSE event's data line), which is what the writer rewrites.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// rpcMarker begins the marker of a server's JSON-RPC error in the text of
// a face's error: "{mcpo-rpc-<nonce>:" then the base64url of an rpcPassed,
// then "}". Every byte of it is one JSON writes as is inside a string.
var rpcMarker = newRPCMarker()

func newRPCMarker() []byte {
	nonce := make([]byte, 8)
	if _, err := rand.Read(nonce); err != nil {
		panic("bridge: no randomness for the JSON-RPC error marker: " + err.Error())
	}
	return []byte("{mcpo-rpc-" + hex.EncodeToString(nonce) + ":")
}

// rpcPassed is the JSON-RPC error a server answered, as the marker
// carries it.
type rpcPassed struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
	// Modern is set for the error of a 2026-07-28 request, whose JSON
	// answer has the HTTP status of its code.
	Modern bool `json:"modern,omitempty"`
}

// passedRPC is the server's JSON-RPC error behind e, for a request made
// under ctx; nil when e is the face's own error.
func passedRPC(ctx context.Context, e *httpError) *rpcPassed {
	if e.Detail.Code == nil {
		return nil
	}
	p := &rpcPassed{Code: *e.Detail.Code, Message: e.Detail.Message, Data: e.Detail.Data}
	var rpc *upstream.RPCError
	if errors.As(e.Cause, &rpc) {
		p.Message = rpc.Message // as sent, without what the face adds
	}
	p.Modern = modernRequest(ctx)
	return p
}

// marker is the marker that carries p.
func (p *rpcPassed) marker() string {
	b, _ := json.Marshal(p) // Data is valid JSON: it came from a message
	return string(rpcMarker) + base64.RawURLEncoding.EncodeToString(b) + "}"
}

// statusOfRPCError is the HTTP status 2026-07-28 gives a JSON answer
// with a JSON-RPC error of code: mcp-go's mapping (httpStatusForJSONRPCError
// in its server/streamable_http_modern.go).
func statusOfRPCError(code int) int {
	switch code {
	case mcp.METHOD_NOT_FOUND:
		return http.StatusNotFound
	case mcp.HEADER_MISMATCH, mcp.MISSING_REQUIRED_CLIENT_CAPABILITY, mcp.UNSUPPORTED_PROTOCOL_VERSION,
		mcp.INVALID_REQUEST, mcp.INVALID_PARAMS, mcp.PARSE_ERROR:
		return http.StatusBadRequest
	default:
		return http.StatusOK
	}
}

// unmarkRPCErrors returns b, one Write of mcp-go's (a JSON-RPC message, or
// SSE lines whose data lines are), with every error whose message carries
// the marker made the server's again; and the last error so restored, nil
// for none. b comes back as is, at the cost of one search, when it has no
// marker.
func unmarkRPCErrors(b []byte) ([]byte, *rpcPassed) {
	if !bytes.Contains(b, rpcMarker) {
		return b, nil
	}
	var (
		out  []byte
		last *rpcPassed
	)
	for line := range bytes.Lines(b) {
		body := bytes.TrimRight(line, "\r\n")
		eol := line[len(body):]
		prefix := []byte(nil)
		if rest, ok := bytes.CutPrefix(body, []byte("data:")); ok {
			prefix, body = body[:len(body)-len(rest)], rest
		}
		if bytes.Contains(body, rpcMarker) {
			var p *rpcPassed
			if body, p = unmarkMessage(body); p != nil {
				last = p
			}
		}
		out = append(append(append(out, prefix...), body...), eol...)
	}
	return out, last
}

// unmarkMessage returns msg, a JSON-RPC message (after a space of an SSE
// data line), with its error the server's, which it returns too. A
// message it cannot read has its markers cut out instead.
func unmarkMessage(msg []byte) ([]byte, *rpcPassed) {
	lead := msg[:len(msg)-len(bytes.TrimLeft(msg, " "))]
	var m map[string]json.RawMessage
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(msg, &m) != nil || json.Unmarshal(m["error"], &e) != nil {
		return cutMarkers(msg), nil
	}
	p, ok := markedRPC(e.Message)
	if !ok {
		return cutMarkers(msg), nil
	}
	m["error"] = mustJSON(struct {
		Code    int             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data,omitempty"`
	}{p.Code, p.Message, p.Data})
	var out []byte
	var err error
	if len(m) == 3 && m["jsonrpc"] != nil && m["id"] != nil { // mcp-go's JSONRPCError, in its order
		out, err = json.Marshal(struct {
			JSONRPC json.RawMessage `json:"jsonrpc"`
			ID      json.RawMessage `json:"id"`
			Error   json.RawMessage `json:"error"`
		}{m["jsonrpc"], m["id"], m["error"]})
	} else {
		out, err = json.Marshal(m) // every member kept
	}
	if err != nil {
		return cutMarkers(msg), nil
	}
	return append(append([]byte(nil), lead...), out...), p
}

// markedRPC reads the error a message's marker carries.
func markedRPC(msg string) (*rpcPassed, bool) {
	_, rest, found := strings.Cut(msg, string(rpcMarker))
	end := strings.IndexByte(rest, '}')
	if !found || end < 0 {
		return nil, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest[:end])
	var p rpcPassed
	if err != nil || json.Unmarshal(raw, &p) != nil {
		return nil, false
	}
	return &p, true
}

// cutMarkers returns b without its markers (and the space before each),
// which leaves the face's own text of the error.
func cutMarkers(b []byte) []byte {
	var out []byte
	for {
		i := bytes.Index(b, rpcMarker)
		if i < 0 {
			return append(out, b...)
		}
		end := bytes.IndexByte(b[i:], '}')
		if end < 0 {
			end = len(b) - i - 1
		}
		out = append(out, bytes.TrimSuffix(b[:i], []byte(" "))...)
		b = b[i+end+1:]
	}
}

// rpcWriter is the ResponseWriter mcp-go writes the face's answers to. It
// makes the servers' JSON-RPC errors theirs again (unmarkRPCErrors), and
// holds the status of a JSON answer until its body is written, for the
// status a 2026-07-28 answer takes from the error's code: the error's own
// (rpcPassed.Modern) says it is one, or mcp-go's status (which is 200 for
// every JSON answer of 2025-11-25) for an error of a request's hook, where
// the request's protocol version is not known yet. mcp-go sees it
// as a writer it can stream on (an http.Flusher): Caddy's writers flush
// through http.ResponseController, not by the interface, and without it
// mcp-go would refuse the GET stream and drop the notifications of a
// call. mcp-go calls it from one goroutine at a time.
type rpcWriter struct {
	http.ResponseWriter
	held   int // the status of a JSON answer not written yet
	status int // the first status written or held
}

// WriteHeader holds the status of a JSON answer, and writes any other.
func (w *rpcWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	if w.held == 0 && w.Header().Get("Content-Type") == "application/json" {
		w.held = status
		return
	}
	w.ResponseWriter.WriteHeader(status)
}

// Write writes b, the servers' errors in it made theirs again.
func (w *rpcWriter) Write(b []byte) (int, error) {
	n := len(b)
	b, p := unmarkRPCErrors(b)
	if w.held > 0 {
		if p != nil && (p.Modern || w.held != http.StatusOK) {
			w.held = statusOfRPCError(p.Code)
		}
		if len(b) != n {
			w.Header().Del("Content-Length")
		}
		w.release()
	}
	if _, err := w.ResponseWriter.Write(b); err != nil {
		return 0, err
	}
	return n, nil
}

// release writes the held status.
func (w *rpcWriter) release() {
	if w.held > 0 {
		w.ResponseWriter.WriteHeader(w.held)
		w.held = -1 // written
	}
}

// Flush sends what is buffered to the client.
func (w *rpcWriter) Flush() {
	w.release()
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap gives http.ResponseController the writer underneath.
func (w *rpcWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

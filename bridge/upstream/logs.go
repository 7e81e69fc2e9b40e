package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
)

// LogMessage is one notifications/message of a server (a log line), as
// the server sent it.
type LogMessage struct {
	Level  string          `json:"level"`
	Logger string          `json:"logger,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`
	// AfterProgress is how many of the call's progress notifications the
	// server sent before this message, for a receiver of both to put them
	// in the server's order: the log message is read from the stream as
	// it arrives, a progress notification only once the transport has
	// decoded it.
	AfterProgress int `json:"-"`
}

// LogFunc receives the log messages a server sends about a call. It runs
// on the goroutine reading the call's answer: it must return at once, and
// never call the server.
type LogFunc func(LogMessage)

type tokenKey struct{} // the progressToken of a call, for its logTap

// WithLog returns ctx whose tools/call hands fn the log messages the
// server sends about the call. Only those that can be told apart from the
// rest are: a Streamable HTTP server's on the stream answering the call's
// own request. Over stdio and the legacy HTTP+SSE transport a log message
// names no request, so none is handed on (they go to Caddy's log, as
// every log message does).
func WithLog(ctx context.Context, fn LogFunc) context.Context {
	return withHook(ctx, func(h *Hooks) { h.Log = fn })
}

// WithLogLevel returns ctx whose tools/call asks a server of the
// 2026-07-28 era for its log messages about the call at level and above:
// the io.modelcontextprotocol/logLevel entry of the call's _meta, without
// which such a server sends none. A 2025-11-25 session has one level for
// all its calls, set with logging/setLevel; the session is shared, so
// level is not sent with the call: its receivers vote for the session's
// level with SetLogLevel.
func WithLogLevel(ctx context.Context, level string) context.Context {
	return withHook(ctx, func(h *Hooks) { h.LogLevel = level })
}

// logLevelOf returns the log level ctx asks for, "" when none.
func logLevelOf(ctx context.Context) string {
	return hooksOf(ctx).LogLevel
}

// logOf returns the log function ctx carries, nil when none.
func logOf(ctx context.Context) LogFunc {
	return hooksOf(ctx).Log
}

// maxLogEventBytes bounds the event of a log message handed on: an event
// larger than it (a result, most likely) is not looked at.
const maxLogEventBytes = 64 << 10

// logTap is the event stream answering a request whose context carries a
// LogFunc: it passes the bytes on untouched, and hands fn each
// notifications/message among its events.
type logTap struct {
	io.ReadCloser
	fn       LogFunc
	token    string // the call's progressToken, "" for none
	progress int    // the call's progress notifications read
	n        int    // bytes of the line being read
	cr       bool   // the line being read ends in '\r' so far
	line     []byte // the line being read, unless over
	data     []byte // the data lines of the event being read, unless over
	over     bool   // the event is larger than maxLogEventBytes
}

func (t *logTap) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	t.scan(p[:n])
	return n, err
}

// scan reads the lines in p.
func (t *logTap) scan(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i]
		}
		if len(seg) > 0 {
			t.n += len(seg)
			t.cr = seg[len(seg)-1] == '\r'
		}
		if !t.over && len(t.data)+len(t.line)+len(seg) > maxLogEventBytes {
			t.over, t.line, t.data = true, t.line[:0], t.data[:0]
		}
		if !t.over {
			t.line = append(t.line, seg...)
		}
		if i < 0 {
			return
		}
		t.endLine()
		p = p[i+1:]
	}
}

// endLine takes the line read: a data line is kept, a blank one ends the
// event.
func (t *logTap) endLine() {
	blank := t.n == 0 || (t.n == 1 && t.cr)
	line := bytes.TrimSuffix(t.line, []byte("\r"))
	t.n, t.cr, t.line = 0, false, t.line[:0]
	switch {
	case blank:
		if !t.over && len(t.data) > 0 {
			t.event(t.data)
		}
		t.data, t.over = t.data[:0], false
	case t.over:
	case bytes.HasPrefix(line, []byte("data:")):
		v := bytes.TrimPrefix(line[len("data:"):], []byte(" "))
		if len(t.data) > 0 {
			t.data = append(t.data, '\n')
		}
		t.data = append(t.data, v...)
	}
}

// event hands fn the log message data holds, if it holds one, and counts
// the call's progress notifications.
func (t *logTap) event(data []byte) {
	progress := t.token != "" && bytes.Contains(data, []byte(`notifications/progress`))
	if !progress && !bytes.Contains(data, []byte(`notifications/message`)) {
		return
	}
	var m struct {
		Method string          `json:"method"`
		Params json.RawMessage `json:"params"`
	}
	if json.Unmarshal(data, &m) != nil {
		return
	}
	switch m.Method {
	case "notifications/progress":
		var p struct {
			Token any `json:"progressToken"`
		}
		if progress && json.Unmarshal(m.Params, &p) == nil && p.Token == t.token {
			t.progress++
		}
	case "notifications/message":
		var l LogMessage
		if json.Unmarshal(m.Params, &l) == nil {
			l.AfterProgress = t.progress
			t.fn(l)
		}
	}
}

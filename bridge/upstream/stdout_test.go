//go:build unix

package upstream

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func init() { roles["wire"] = serveWire }

// junkLines are what the wire server's junk tool writes to its stdout,
// each followed by a newline, before it answers: one of each kind of line
// that is not a JSON-RPC message, as the log shows it, and blank lines,
// which it does not show.
var junkLines = []struct{ written, logged string }{
	{"Server listening on stdio", "Server listening on stdio"},
	{`{"level":30,"msg":"a JSON log record"}`, `{"level":30,"msg":"a JSON log record"}`},
	{`{'a': 1}`, `{'a': 1}`},
	{`{`, `{`},
	{`  "jsonrpc": "2.0",`, `  "jsonrpc": "2.0",`},
	{`{"jsonrpc":"2.0","id":1} trailing`, `{"jsonrpc":"2.0","id":1} trailing`},
	{strings.Repeat("y", 10000), strings.Repeat("y", junkHead) + "…"},
	{"bad \xff byte", "bad \uFFFD byte"},
	{"", ""},
	{"   \r", ""},
}

// serveWire serves a minimal MCP server over stdio, one JSON-RPC message
// per line, whose tools write to stdout what faulty servers write:
//
//   - echo {message}: the message.
//   - big {bytes}: an answer whose text holds that many bytes, written in
//     pieces without being held whole.
//   - junk: writes junkLines, then answers "ok".
//   - flood {n}: writes n lines of junk, then answers "ok".
func serveWire() {
	in := bufio.NewReader(os.Stdin)
	out := bufio.NewWriterSize(os.Stdout, 64<<10)
	for {
		line, err := in.ReadBytes('\n')
		if err != nil {
			return
		}
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				ProtocolVersion string `json:"protocolVersion"`
				Name            string `json:"name"`
				Arguments       struct {
					Message string `json:"message"`
					Bytes   int    `json:"bytes"`
					N       int    `json:"n"`
				} `json:"arguments"`
			} `json:"params"`
		}
		if json.Unmarshal(line, &req) != nil || req.ID == nil {
			continue // a notification
		}
		reply := func(result any) {
			b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": req.ID, "result": result})
			out.Write(append(b, '\n'))
		}
		text := func(s string) map[string]any {
			return map[string]any{"content": []any{map[string]any{"type": "text", "text": s}}}
		}
		args := req.Params.Arguments
		switch req.Method {
		case "initialize":
			reply(map[string]any{
				"protocolVersion": req.Params.ProtocolVersion,
				"capabilities":    map[string]any{"tools": map[string]any{}},
				"serverInfo":      map[string]any{"name": "wire", "version": "1"},
			})
		case "ping":
			reply(map[string]any{})
		case "tools/list":
			var tools []any
			for _, name := range []string{"big", "echo", "flood", "junk"} {
				tools = append(tools, map[string]any{"name": name, "inputSchema": map[string]any{"type": "object"}})
			}
			reply(map[string]any{"tools": tools})
		case "tools/call":
			switch req.Params.Name {
			case "echo":
				reply(text(args.Message))
			case "big":
				fmt.Fprintf(out, `{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"`, req.ID)
				piece := strings.Repeat("x", 1<<20)
				for n := args.Bytes; n > 0; n -= len(piece) {
					if _, err := out.WriteString(piece[:min(n, len(piece))]); err != nil {
						os.Exit(1) // the reader is gone
					}
				}
				out.WriteString("\"}]}}\n")
			case "junk":
				for _, l := range junkLines {
					out.WriteString(l.written + "\n")
				}
				reply(text("ok"))
			case "flood":
				for i := range args.N {
					fmt.Fprintf(out, "junk line %d\n", i)
				}
				reply(text("ok"))
			}
		default:
			b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": req.ID,
				"error": map[string]any{"code": -32601, "message": "method not found"}})
			out.Write(append(b, '\n'))
		}
		if out.Flush() != nil {
			return
		}
	}
}

func TestUpstream_AMessageOverTheLimitRestartsTheServerWithoutTheProxyHoldingIt(t *testing.T) {
	const limit = 1 << 20
	u, _ := start(t, roleSpec("wire", "wire"), Options{MaxMessageBytes: limit,
		Stop: StopTimeouts{Grace: 500 * time.Millisecond, Term: time.Second}})

	// A message within the limit passes.
	res, err := callWithin(u, "big", fmt.Sprintf(`{"bytes":%d}`, limit-100))
	if err != nil {
		t.Fatalf("a message within the limit: %v", err)
	}
	if got := len(text(t, res)); got != limit-100 {
		t.Fatalf("the text within the limit has %d bytes", got)
	}

	// A message of 200 MB does not.
	const size = 200 << 20
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = callWithin(u, "big", fmt.Sprintf(`{"bytes":%d}`, size))
	runtime.ReadMemStats(&after)
	var big *MessageTooLargeError
	if !errors.As(err, &big) || big.Limit != limit || big.Server != "wire" {
		t.Fatalf("the call of a 200 MB answer failed with %v, want a *MessageTooLargeError", err)
	}
	if want := `server "wire" sent a message larger than 1 MiB`; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	// Nothing the bridge answers otherwise than 502.
	var un *UnavailableError
	var rpc *RPCError
	if errors.As(err, &un) || errors.As(err, &rpc) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %#v is not a failure of the server", err)
	}
	if grown := after.TotalAlloc - before.TotalAlloc; grown > 32<<20 {
		t.Errorf("reading the 200 MB message allocated %d MB; the limit is 1 MiB", grown>>20)
	}

	eventually(t, "the restart", func() bool { st := u.Status(); return st.State == StateReady && st.Restarts == 1 })
	if st := u.Status(); !strings.Contains(st.LastError, "larger than 1 MiB") {
		t.Errorf("last error after the long message = %q", st.LastError)
	}
	if got := text(t, call(t, u, "echo", `{"message":"back"}`)); got != "back" {
		t.Errorf("echo after the restart = %q", got)
	}
}

// junkEntries returns the log's reports of junk lines.
func junkEntries(logs *observer.ObservedLogs) []observer.LoggedEntry {
	return logs.FilterMessageSnippet("not a JSON-RPC message").All()
}

func TestUpstream_LogsWhatTheServerWritesToStdoutThatIsNotAMessage(t *testing.T) {
	u, logs := start(t, roleSpec("wire", "wire"), Options{})
	if got := text(t, call(t, u, "echo", `{"message":"x"}`)); got != "x" {
		t.Fatalf("echo = %q", got)
	}
	if e := junkEntries(logs); len(e) != 0 {
		t.Fatalf("messages reported as junk: %v", e[0].ContextMap())
	}
	if got := text(t, call(t, u, "junk", `{}`)); got != "ok" {
		t.Fatalf("junk = %q", got)
	}
	var got []string
	for _, e := range junkEntries(logs) {
		m := e.ContextMap()
		if e.Level != zapcore.WarnLevel || m["server"] != "wire" {
			t.Errorf("junk reported as %s %v", e.Level, m)
		}
		got = append(got, m["line"].(string))
	}
	var want []string
	for _, l := range junkLines {
		if l.logged != "" {
			want = append(want, l.logged)
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("junk lines logged:\n%q\nwant\n%q", got, want)
	}
	if st := u.Status(); st.Restarts != 0 || st.State != StateReady {
		t.Errorf("status after junk = %+v", st)
	}
}

func TestUpstream_BoundsTheJunkLinesItLogs(t *testing.T) {
	u, logs := start(t, roleSpec("wire", "wire"), Options{})
	if got := text(t, call(t, u, "flood", `{"n":500}`)); got != "ok" {
		t.Fatalf("flood = %q", got)
	}
	if n := len(logs.FilterMessageSnippet("wrote a line to stdout").All()); n != junkBurst {
		t.Errorf("%d junk lines logged, want %d", n, junkBurst)
	}
	// Closing the session says how many were left out, whether or not
	// the transport's reader sees the end of the stream.
	_ = u.Close()
	summary := logs.FilterMessageSnippet("more lines to stdout").All()
	if len(summary) != 1 || summary[0].ContextMap()["lines"] != int64(500-junkBurst) {
		t.Errorf("summary = %v, want one saying %d lines", summary, 500-junkBurst)
	}
}

func TestJunkLog_LogsABurstPerIntervalThenHowManyLinesItLeftOut(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(core)
	j := &junkLog{log: func() *zap.Logger { return log }, burst: 3, interval: 300 * time.Millisecond}
	for i := range 10 {
		j.line(fmt.Appendf(nil, "line %d", i), 6)
	}
	if n := logs.FilterMessageSnippet("wrote a line").Len(); n != 3 {
		t.Errorf("%d lines logged in the first interval, want 3", n)
	}
	eventually(t, "the summary at the end of the interval", func() bool {
		return logs.FilterMessageSnippet("more lines").Len() == 1
	})
	if got := logs.FilterMessageSnippet("more lines").All()[0].ContextMap()["lines"]; got != int64(7) {
		t.Errorf("summary says %v lines, want 7", got)
	}
	j.line([]byte("next interval"), 13)
	if n := logs.FilterMessageSnippet("wrote a line").Len(); n != 4 {
		t.Errorf("%d lines logged after the interval, want 4", n)
	}
	j.flush()
	if n := logs.FilterMessageSnippet("more lines").Len(); n != 1 {
		t.Errorf("%d summaries, want 1: nothing was left out since", n)
	}
}

func TestStdoutReader_PassesMessagesAndReportsJunk(t *testing.T) {
	messages := []string{
		`{"jsonrpc":"2.0","id":1,"result":{}}`,
		` { "jsonrpc" : "2.0", "method": "notifications/message" } ` + "\r",
		`{"id":2,"result":{"text":"` + strings.Repeat("z", 5000) + `"},"jsonrpc":"2.0"}`,
	}
	junk := []string{`{"id":3}`, `{}`, `[{"jsonrpc":"2.0"}]`, `{"jsonrpc":"2.0"`, `hello`}
	stream := strings.Join(append(append([]string{""}, messages...), junk...), "\n") + "\n"
	reads := map[string]func(io.Reader) io.Reader{
		"whole":          func(r io.Reader) io.Reader { return r },
		"a byte at once": iotest.OneByteReader,
		"half":           iotest.HalfReader,
	}
	for name, wrap := range reads {
		t.Run(name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			log := zap.New(core)
			seen := 0
			r := &stdoutReader{r: wrap(strings.NewReader(stream)), limit: 1 << 20, server: "s",
				seen: func() { seen++ }, junk: newJunkLog(func() *zap.Logger { return log }),
				tooLarge: func(e *MessageTooLargeError) { t.Errorf("too large: %v", e) }}
			got, err := io.ReadAll(r)
			if err != nil || string(got) != stream {
				t.Fatalf("read %d bytes (%v), want the stream as is", len(got), err)
			}
			if seen == 0 {
				t.Error("no read was seen")
			}
			var reported []string
			for _, e := range logs.All() {
				reported = append(reported, e.ContextMap()["line"].(string))
			}
			if strings.Join(reported, "\n") != strings.Join(junk, "\n") {
				t.Errorf("reported %q, want %q", reported, junk)
			}
		})
	}
}

func TestStdoutReader_EndsTheStreamAtALineOverTheLimit(t *testing.T) {
	first := `{"jsonrpc":"2.0","id":1,"result":{}}` + "\n"
	stream := first + strings.Repeat("x", 5000) + "\n" + first
	var ended *MessageTooLargeError
	r := &stdoutReader{r: strings.NewReader(stream), limit: 1000, server: "s", seen: func() {},
		junk: newJunkLog(zap.NewNop), tooLarge: func(e *MessageTooLargeError) { ended = e }}
	got, err := io.ReadAll(r)
	// The long line's first bytes may have gone by: mcp-go drops a line
	// cut short by the end of the stream.
	rest, ok := strings.CutPrefix(string(got), first)
	if err != nil || !ok || len(rest) > 1000 || strings.Trim(rest, "x") != "" {
		t.Errorf("read %d bytes, %v; want the line before the long one and at most 1000 bytes of it", len(got), err)
	}
	if ended == nil || ended.Limit != 1000 || ended.Error() != `server "s" sent a message larger than 1000 bytes; the server is restarted (max_message_size raises the limit)` {
		t.Errorf("ended with %v", ended)
	}
}

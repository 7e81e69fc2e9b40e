package bridge

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// benchResults are typical tool results, by the shape of their body.
func benchResults() []struct {
	name string
	res  upstream.CallResult
	tool *upstream.Tool
} {
	// About 100 KB of text, as a file read returns: lines of prose with
	// quotes, tabs and non-ASCII characters, which JSON escapes or keeps.
	line := "Lorem ipsum \"dolor\" sit amet,\tconsectetur adipiscing élit <b>&</b> — sed do eiusmod tempor.\n"
	longText := strings.Repeat(line, 100*1024/len(line))
	image := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("\x89PNG\r\n\x1a\n", 2048))) // ~22 KB of base64
	structured := `{"temperature":21.5,"unit":"C","station":{"id":"LFPG","name":"Paris-Charles de Gaulle"},"history":[20.1,20.8,21.5]}`
	return []struct {
		name string
		res  upstream.CallResult
		tool *upstream.Tool
	}{
		{"short text", upstream.CallResult{Content: []upstream.Content{text("The current time in UTC is 20:20:19.")}}, plainTool},
		{"JSON text", upstream.CallResult{Content: []upstream.Content{text(`{"timezone":"UTC","datetime":"2026-11-21T20:20:19+00:00","day_of_week":"Saturday","is_dst":false}`)}}, plainTool},
		{"structuredContent", upstream.CallResult{Content: []upstream.Content{text(structured)}, Structured: json.RawMessage(structured)}, typedTool},
		{"100 KB text", upstream.CallResult{Content: []upstream.Content{text(longText)}}, plainTool},
		{"mixed with image", upstream.CallResult{Content: []upstream.Content{
			text("Here is the chart you asked for."),
			{Type: "image", MIMEType: "image/png", Data: image},
			{Type: "resource_link", URI: "file:///reports/chart.png", Name: "chart.png", MIMEType: "image/png", Size: ptr(int64(16384))},
			text(`{"rows":3,"columns":["a","b"]}`),
		}}, plainTool},
	}
}

// BenchmarkRenderResult measures turning a tool result into the HTTP body,
// what every successful call costs on top of the server's answer.
func BenchmarkRenderResult(b *testing.B) {
	for _, bc := range benchResults() {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if body := renderResult(&bc.res, bc.tool); len(body) == 0 {
					b.Fatal("no body")
				}
			}
		})
	}
}

// BenchmarkAccessCheck measures what an API key and CORS add to a call:
// the CORS headers of an allowed origin and the key's comparison against
// every configured key.
func BenchmarkAccessCheck(b *testing.B) {
	g, err := newGate(Access{
		Keys: []string{"first-key-0123456789abcdef", "second-key-0123456789abcdef"},
		CORS: &CORS{Origins: []string{"https://chat.example.com"}},
	})
	if err != nil {
		b.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodPost, "/m/echo", nil)
	r.Header.Set("Authorization", "Bearer second-key-0123456789abcdef")
	r.Header.Set("Origin", "https://chat.example.com")
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		clear(w.Header())
		if g.cors(w, r) || g.admit(r, false) != nil {
			b.Fatal("refused")
		}
	}
}

// benchCaller is an in-memory server with one tool that answers at once
// with a short text, as a session gives a server's result: the item with
// the JSON it was read from.
type benchCaller struct{ set *upstream.ToolSet }

// benchAnswer is benchCaller's text, and its item as a server sends it.
const benchAnswer = "The current time in UTC is 20:20:19."

var benchItem = json.RawMessage(`{"type":"text","text":"` + benchAnswer + `"}`)

func (c *benchCaller) Tools() *upstream.ToolSet { return c.set }
func (*benchCaller) CallTool(context.Context, string, json.RawMessage) (*upstream.CallResult, error) {
	return &upstream.CallResult{Content: []upstream.Content{{Type: "text", Text: benchAnswer, Wire: benchItem}}}, nil
}
func (*benchCaller) Status() upstream.Status { return upstream.Status{State: upstream.StateReady} }

// discardWriter is a ResponseWriter that keeps the status and forgets the
// body, so that the benchmark measures the bridge, not a recorder.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

// benchBridge is the mount of BenchmarkServeCall: two servers of
// get_current_time that cost nothing, behind an API key; audit is its
// audit log.
func benchBridge(b *testing.B, audit *zap.Logger) *Bridge {
	set := &upstream.ToolSet{Tools: []*upstream.Tool{{
		Name:        "get_current_time",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"timezone":{"type":"string"}},"required":["timezone"]}`),
	}}}
	br, err := New(Config{
		Servers: []*ServerConfig{{Name: "time", Upstream: &benchCaller{set: set}}, {Name: "other", Upstream: &benchCaller{set: set}}},
		Access:  Access{Keys: []string{"first-key-0123456789abcdef"}},
		Audit:   audit,
	})
	if err != nil {
		b.Fatal(err)
	}
	return br
}

// discardedAudit is an audit log encoding its lines to nowhere.
func discardedAudit() *zap.Logger {
	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zap.InfoLevel))
}

// BenchmarkServeCall measures a whole call through Bridge.Serve, from the
// request to the written answer, with a server that costs nothing: what
// the bridge adds to every call (routing, the key check, reading and
// validating the arguments, rendering the result), without the audit log
// and with it (on in Caddy, where it is always on), JSON-encoded to
// nowhere.
func BenchmarkServeCall(b *testing.B) {
	for _, bc := range []struct {
		name  string
		audit *zap.Logger
	}{
		{"no audit log", nil},
		{"audit log", discardedAudit()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			br := benchBridge(b, bc.audit)
			const args = `{"timezone":"Europe/Paris"}`
			body := strings.NewReader(args)
			r := httptest.NewRequest(http.MethodPost, "/m/time/get_current_time", nil)
			r.Body, r.ContentLength = io.NopCloser(body), int64(len(args))
			r.Header.Set("Authorization", "Bearer first-key-0123456789abcdef")
			r.Header.Set("Content-Type", "application/json")
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				body.Reset(args)
				clear(w.h)
				br.Serve(w, r, "/time/get_current_time", "/m")
				if w.status != http.StatusOK {
					b.Fatal(w.status)
				}
			}
		})
	}
}

// BenchmarkServeMCPCall is BenchmarkServeCall's call (with the audit log)
// through the server's MCP endpoint instead: a tools/call in a 2025-11-25
// session, and a 2026-07-28 one, both of the shapes the direct path
// serves (TestMCPFaceAnswersToolCallsDirectlyAsMCPGoDoes); and the same
// through mcp-go's transport.
func BenchmarkServeMCPCall(b *testing.B) {
	br := benchBridge(b, discardedAudit())
	b.Cleanup(br.Close)
	post := func(w *discardWriter, message string, header map[string]string) {
		r := httptest.NewRequest(http.MethodPost, "/m/time/mcp", strings.NewReader(message))
		r.ContentLength = int64(len(message))
		r.Header.Set("Authorization", "Bearer first-key-0123456789abcdef")
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Accept", "application/json, text/event-stream")
		for k, v := range header {
			r.Header.Set(k, v)
		}
		br.Serve(w, r, "/time/mcp", "/m")
	}
	w := &discardWriter{h: http.Header{}}
	post(w, initMsg, nil)
	session := map[string]string{"Mcp-Session-Id": w.h.Get("Mcp-Session-Id"), "Mcp-Protocol-Version": "2025-11-25"}
	post(&discardWriter{h: http.Header{}}, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, session)
	modernCall, modernHeader := callOf("7", "get_current_time", `{"timezone":"Europe/Paris"}`, "", true)
	legacyCall, _ := callOf("7", "get_current_time", `{"timezone":"Europe/Paris"}`, "", false)
	var face *mcpFace // of /m/time/mcp
	for _, f := range br.faces {
		if !f.prefixed && len(f.servers) == 1 && f.servers[0].cfg.Name == "time" {
			face = f
		}
	}
	for _, era := range []struct {
		name, message string
		header        map[string]string
		noFast        bool
	}{
		{"2025-11-25", legacyCall, session, false},
		{"2026-07-28", modernCall, modernHeader, false},
		{"2025-11-25, mcp-go's transport", legacyCall, session, true},
		{"2026-07-28, mcp-go's transport", modernCall, modernHeader, true},
	} {
		b.Run(era.name, func(b *testing.B) {
			face.noFast = era.noFast
			defer func() { face.noFast = false }()
			r := httptest.NewRequest(http.MethodPost, "/m/time/mcp", nil)
			body := strings.NewReader(era.message)
			r.Body, r.ContentLength = io.NopCloser(body), int64(len(era.message))
			r.Header.Set("Authorization", "Bearer first-key-0123456789abcdef")
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Accept", "application/json, text/event-stream")
			for k, v := range era.header {
				r.Header.Set(k, v)
			}
			w := &discardWriter{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				body.Reset(era.message)
				clear(w.h)
				br.Serve(w, r, "/time/mcp", "/m")
				if w.status != http.StatusOK {
					b.Fatal(w.status)
				}
			}
		})
	}
}

package bridge

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// spanCaller answers every call of its listed tools, "fail" with a tool
// error, and records the span context each call came with.
type spanCaller struct {
	*listCaller
	mu   sync.Mutex
	seen []trace.SpanContext
}

func (c *spanCaller) CallTool(ctx context.Context, tool string, _ json.RawMessage) (*upstream.CallResult, error) {
	c.mu.Lock()
	c.seen = append(c.seen, trace.SpanContextFromContext(ctx))
	c.mu.Unlock()
	return &upstream.CallResult{IsError: tool == "fail", Content: []upstream.Content{text("done")}}, nil
}

func TestCallSpans(t *testing.T) {
	const remote = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tc := range []struct {
		name     string
		traced   bool   // the request's context carries a recording span, as under Caddy's tracing
		header   string // the request's traceparent header
		tool     string
		outcome  Outcome
		status   int
		recorded bool // a span is recorded for the call
	}{
		{name: "a traced call gets a child span", traced: true, tool: "echo", outcome: OutcomeOK, status: 200, recorded: true},
		{name: "a tool error is an error span", traced: true, tool: "fail", outcome: OutcomeToolError, status: 500, recorded: true},
		{name: "a traceparent header alone is handed on, no span recorded", header: remote, tool: "echo", outcome: OutcomeOK, status: 200},
		{name: "a span in the context wins over the header", traced: true, header: remote, tool: "echo", outcome: OutcomeOK, status: 200, recorded: true},
		{name: "no trace context, nothing", tool: "echo", outcome: OutcomeOK, status: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
			caller := &spanCaller{listCaller: newListCaller("echo", "fail")}
			b, err := New(Config{Servers: []*ServerConfig{{Name: "list", Upstream: caller}}})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			var parent trace.Span
			if tc.traced {
				ctx, parent = tp.Tracer("test").Start(ctx, "request")
			}
			r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/list/"+tc.tool, strings.NewReader(`{}`))
			if tc.header != "" {
				r.Header.Set("Traceparent", tc.header)
			}
			w := httptest.NewRecorder()
			b.Serve(w, r, r.URL.Path, "")
			if w.Code != tc.status {
				t.Fatalf("status %d %s, want %d", w.Code, w.Body, tc.status)
			}
			if parent != nil {
				parent.End()
			}
			if len(caller.seen) != 1 {
				t.Fatalf("%d calls reached the server, want 1", len(caller.seen))
			}
			seen := caller.seen[0]
			var calls []sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				if s.Name() != "request" {
					calls = append(calls, s)
				}
			}
			switch {
			case !tc.recorded:
				if len(calls) != 0 {
					t.Errorf("%d spans recorded, want none", len(calls))
				}
				if tc.header == "" && seen.IsValid() {
					t.Errorf("the server's call carries trace context %v, want none", seen)
				}
				if tc.header != "" && (seen.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || seen.SpanID().String() != "00f067aa0ba902b7") {
					t.Errorf("the server's call carries %v, want the remote parent of the header", seen)
				}
			case len(calls) != 1:
				t.Fatalf("%d call spans recorded, want 1", len(calls))
			default:
				s := calls[0]
				if s.Name() != "mcpo.call list/"+tc.tool {
					t.Errorf("span name %q", s.Name())
				}
				if s.Parent().SpanID() != parent.SpanContext().SpanID() || s.SpanContext().TraceID() != parent.SpanContext().TraceID() {
					t.Errorf("span parent %v, want the request's %v", s.Parent(), parent.SpanContext())
				}
				if seen.SpanID() != s.SpanContext().SpanID() {
					t.Errorf("the server's call carries span %v, want the call's %v", seen.SpanID(), s.SpanContext().SpanID())
				}
				want := map[attribute.Key]attribute.Value{
					AttrServer: attribute.StringValue("list"), AttrTool: attribute.StringValue(tc.tool),
					AttrOutcome: attribute.StringValue(string(tc.outcome)), AttrStatus: attribute.IntValue(tc.status),
				}
				got := map[attribute.Key]attribute.Value{}
				for _, kv := range s.Attributes() {
					got[kv.Key] = kv.Value
				}
				for k, v := range want {
					if got[k] != v {
						t.Errorf("attribute %s = %v, want %v", k, got[k].Emit(), v.Emit())
					}
				}
				wantCode := codes.Unset
				if tc.outcome != OutcomeOK {
					wantCode = codes.Error
				}
				if s.Status().Code != wantCode {
					t.Errorf("span status %v, want %v", s.Status().Code, wantCode)
				}
			}
		})
	}
}

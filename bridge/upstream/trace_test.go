package upstream

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// A traced call hands its span's trace context on, beside the call's own
// _meta entries and headers, and tells the span which protocol answered
// and whether the session had to be replaced.
func TestUpstream_TracedCallsCarryTheirTraceContextAndNoteTheSession(t *testing.T) {
	srv := fixture.NewStreamableHTTPServer(t, fixture.Options{})
	spec := Spec{Name: "fx", Transport: TransportStreamableHTTP, Protocol: ProtocolLegacy, URL: srv.URL}
	u, _ := start(t, spec, Options{})
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	tracedCall := func(t *testing.T) (fixture.RequestInfo, sdktrace.ReadOnlySpan) {
		t.Helper()
		ctx := WithCallMeta(context.Background(), map[string]any{"example.com/user": "alice", "traceparent": "stale"})
		ctx = WithCallHeaders(ctx, http.Header{"X-Chat": {"c1"}})
		ctx, span := tp.Tracer("test").Start(ctx, "call")
		res, err := u.CallTool(ctx, "request_info", json.RawMessage(`{}`))
		span.End()
		if err != nil {
			t.Fatal(err)
		}
		var info fixture.RequestInfo
		if err := json.Unmarshal([]byte(res.Content[0].Text), &info); err != nil {
			t.Fatal(err)
		}
		ended := rec.Ended()
		return info, ended[len(ended)-1]
	}
	attrs := func(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
		m := map[attribute.Key]attribute.Value{}
		for _, kv := range s.Attributes() {
			m[kv.Key] = kv.Value
		}
		return m
	}

	info, span := tracedCall(t)
	parent := "00-" + span.SpanContext().TraceID().String() + "-" + span.SpanContext().SpanID().String() + "-01"
	if info.Meta["traceparent"] != parent || info.Headers.Get("Traceparent") != parent {
		t.Errorf("traceparent in _meta %v, header %q; want %s", info.Meta["traceparent"], info.Headers.Get("Traceparent"), parent)
	}
	if info.Meta["example.com/user"] != "alice" || info.Headers.Get("X-Chat") != "c1" {
		t.Errorf("the call's own _meta %v and headers %v were lost", info.Meta, info.Headers)
	}
	a := attrs(span)
	if a[AttrProtocol].AsString() == "" || a[AttrSessionRestarted] != attribute.BoolValue(false) {
		t.Errorf("span attributes %v, want a protocol and no restart", span.Attributes())
	}

	srv.DropSessions() // the server restarted: our session is unknown (404)
	info, span = tracedCall(t)
	if a := attrs(span); a[AttrSessionRestarted] != attribute.BoolValue(true) {
		t.Errorf("after the server forgot the session, span attributes %v, want a restart", span.Attributes())
	}
	if len(span.Events()) != 1 {
		t.Errorf("span events %v, want the restart", span.Events())
	}
	if info.Meta["traceparent"] == nil {
		t.Errorf("the call sent again lost its trace context: _meta %v", info.Meta)
	}

	// Without a span, the call's _meta is its own.
	res, err := u.CallTool(WithCallMeta(context.Background(), map[string]any{"k": "v"}), "request_info", json.RawMessage(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	var plain fixture.RequestInfo
	if err := json.Unmarshal([]byte(res.Content[0].Text), &plain); err != nil {
		t.Fatal(err)
	}
	if _, ok := plain.Meta["traceparent"]; ok || plain.Headers.Get("Traceparent") != "" {
		t.Errorf("an untraced call carries trace context: %v", plain)
	}
}

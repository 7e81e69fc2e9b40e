package upstream

import (
	"context"
	"maps"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// A call made under a context carrying a span (OpenTelemetry's: one the
// caller started, or a remote one read from its request) hands its W3C
// trace context on, so that a trace crosses to the server: traceparent
// and tracestate in the _meta of its tools/call, to every server, and as
// headers of its HTTP requests, to servers reached at a URL. They replace
// entries of the same name that WithCallMeta and WithCallHeaders gave.
// Only the trace context, never baggage.

// Attributes a call sets on the span its context carries.
const (
	// AttrProtocol is the MCP protocol version of the session that
	// answered the call.
	AttrProtocol = attribute.Key("mcp.protocol.version")
	// AttrSessionRestarted is true when the server had forgotten the
	// session and the call was sent again in a new one.
	AttrSessionRestarted = attribute.Key("mcpo.upstream.session_restarted")
)

// traceContext is the propagator of the W3C trace context alone.
var traceContext propagation.TraceContext

// withTraceContext returns ctx carrying, for the call made under it, the
// trace context of the span it carries; ctx itself without one.
func withTraceContext(ctx context.Context) context.Context {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	c := propagation.MapCarrier{}
	traceContext.Inject(ctx, c)
	if len(c) == 0 {
		return ctx
	}
	h, _ := ctx.Value(callHeadersKey{}).(http.Header)
	h = h.Clone()
	if h == nil {
		h = make(http.Header, len(c))
	}
	m := maps.Clone(callMeta(ctx))
	if m == nil {
		m = make(map[string]any, len(c))
	}
	for k, v := range c {
		h.Set(k, v)
		m[k] = v
	}
	return WithCallMeta(WithCallHeaders(ctx, h), m)
}

// traceSession notes on the span ctx carries the session answering a
// call, and whether it is a new one after the server forgot the first.
func traceSession(ctx context.Context, s *session, restarted bool) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(AttrProtocol.String(s.info.Protocol), AttrSessionRestarted.Bool(restarted))
	if restarted {
		span.AddEvent("the MCP server forgot the session; sent again in a new one")
	}
}

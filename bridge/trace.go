package bridge

import (
	"context"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Every tool call of a traced request gets a span of its own, a child of
// the request's: Caddy's tracing handler puts the request's span in its
// context, and the call's span comes from the same TracerProvider, so it
// goes wherever Caddy sends its spans. Without a span in the context, a
// W3C traceparent header on the request still makes the call's context
// carry the remote span, for the upstream package to hand on; no span is
// recorded then.

// instrumentation names the tracer of the calls' spans.
const instrumentation = "github.com/caddy-mcpo/caddy-mcpo/bridge"

// Attributes of a call's span, besides those the upstream package adds
// (upstream.AttrProtocol, upstream.AttrSessionRestarted).
const (
	AttrServer  = attribute.Key("mcpo.server")
	AttrTool    = attribute.Key("mcpo.tool")
	AttrOutcome = attribute.Key("mcpo.outcome")
	AttrStatus  = attribute.Key("http.response.status_code")
)

// startCallSpan returns ctx, a request's, with the span of a call of
// tool of server, and the span, which the caller ends; ctx itself and nil
// when neither ctx nor the request's header carries a trace context.
func startCallSpan(ctx context.Context, header http.Header, server, tool string) (context.Context, trace.Span) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		if _, ok := header["Traceparent"]; !ok {
			return ctx, nil // looked up canonical: HeaderCarrier's Get allocates
		}
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(header))
		if !trace.SpanContextFromContext(ctx).IsValid() {
			return ctx, nil
		}
	}
	tracer := trace.SpanFromContext(ctx).TracerProvider().Tracer(instrumentation)
	ctx, span := tracer.Start(ctx, "mcpo.call "+server+"/"+tool, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(AttrServer.String(server), AttrTool.String(tool)))
	return ctx, span
}

// endCallSpan ends a call's span with how the call ended.
func endCallSpan(span trace.Span, outcome Outcome, status int) {
	if span == nil {
		return
	}
	span.SetAttributes(AttrOutcome.String(string(outcome)), AttrStatus.Int(status))
	if outcome != OutcomeOK {
		span.SetStatus(codes.Error, string(outcome))
	}
	span.End()
}

// spanContext returns the trace context of the span ctx carries, for the
// audit log; zero without one.
func spanContext(ctx context.Context) trace.SpanContext { return trace.SpanContextFromContext(ctx) }

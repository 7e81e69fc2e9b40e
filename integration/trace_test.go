package integration

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// A caller's W3C trace context crosses the proxy: every server gets it in
// the call's _meta, a server reached at a URL also as headers, so that
// its spans join the caller's trace.
func TestTraceContext_ReachesEveryServerInMetaAndHTTPServersInHeaders(t *testing.T) {
	httpServer := fixture.NewStreamableHTTPServer(t, fixture.Options{})
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /traced {
		server stdio {
			%s
		}
		server http {
			url %s
		}
	}
}
`, httpPort, testFixture(t, fixture.Options{}), httpServer.URL))
	const (
		parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		state  = "vendor=opaque,other=x"
	)
	for _, tc := range []struct {
		server  string
		headers bool
	}{
		{"stdio", false},
		{"http", true},
	} {
		t.Run(tc.server, func(t *testing.T) {
			waitReady(t, "/traced/"+tc.server+"/openapi.json")
			path := "/traced/" + tc.server + "/request_info"
			untraced := requestInfo(t, path)
			if v := untraced.Meta["traceparent"]; v != nil {
				t.Errorf("a call without trace context has traceparent %v in _meta", v)
			}
			if v := untraced.Headers.Get("Traceparent"); v != "" {
				t.Errorf("a call without trace context has a Traceparent header %q", v)
			}
			got := requestInfo(t, path, "traceparent", parent, "tracestate", state)
			if got.Meta["traceparent"] != parent || got.Meta["tracestate"] != state {
				t.Errorf("_meta has traceparent %v, tracestate %v; want %s, %s", got.Meta["traceparent"], got.Meta["tracestate"], parent, state)
			}
			wantHeader, wantState := "", ""
			if tc.headers {
				wantHeader, wantState = parent, state
			}
			if h, s := got.Headers.Get("Traceparent"), got.Headers.Get("Tracestate"); h != wantHeader || s != wantState {
				t.Errorf("headers Traceparent %q, Tracestate %q; want %q, %q", h, s, wantHeader, wantState)
			}
		})
	}
}

// otlpReceiver is a loopback OTLP/HTTP receiver of spans.
type otlpReceiver struct {
	URL   string
	mu    sync.Mutex
	spans []*tracepb.Span
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	rcv := &otlpReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		var req collectortrace.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(b, &req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		rcv.mu.Lock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				rcv.spans = append(rcv.spans, ss.Spans...)
			}
		}
		rcv.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	rcv.URL = srv.URL
	return rcv
}

// span returns the span received with name in the trace of traceID (in
// hex), nil if none yet.
func (rcv *otlpReceiver) span(name, traceID string) *tracepb.Span {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for _, s := range rcv.spans {
		if s.Name == name && hex.EncodeToString(s.TraceId) == traceID {
			return s
		}
	}
	return nil
}

// With Caddy's tracing handler, a call gets a span under the request's,
// exported where Caddy exports its own (here a loopback OTLP/HTTP
// receiver), and the server is told the call's span as its parent.
func TestTracing_ACallsSpanIsExportedUnderTheRequestsAndIsTheServersParent(t *testing.T) {
	rcv := newOTLPReceiver(t)
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", rcv.URL+"/v1/traces")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
	httpServer := fixture.NewStreamableHTTPServer(t, fixture.Options{})
	startCaddy(t, fmt.Sprintf(`:%d {
	tracing {
		span request
	}
	mcpo /otel {
		url %s
	}
}
`, httpPort, httpServer.URL))
	waitReady(t, "/otel/openapi.json")
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	info := requestInfo(t, "/otel/request_info", "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")

	var call, request *tracepb.Span
	deadline := time.Now().Add(waitLimit)
	for (call == nil || request == nil) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		call, request = rcv.span("mcpo.call otel/request_info", traceID), rcv.span("request", traceID)
	}
	if call == nil || request == nil {
		t.Fatalf("spans received in the caller's trace: call %v, request %v", call, request)
	}
	if !bytes.Equal(call.ParentSpanId, request.SpanId) {
		t.Errorf("the call's span has parent %x, want the request's span %x", call.ParentSpanId, request.SpanId)
	}
	want := "00-" + traceID + "-" + hex.EncodeToString(call.SpanId) + "-01"
	if got := info.Headers.Get("Traceparent"); got != want || info.Meta["traceparent"] != want {
		t.Errorf("the server got traceparent %q in its headers and %v in _meta, want the call's span %s", got, info.Meta["traceparent"], want)
	}
	attrs := map[string]string{}
	for _, kv := range call.Attributes {
		switch v := kv.Value.Value.(type) {
		case *commonpb.AnyValue_StringValue:
			attrs[kv.Key] = v.StringValue
		case *commonpb.AnyValue_IntValue:
			attrs[kv.Key] = fmt.Sprint(v.IntValue)
		case *commonpb.AnyValue_BoolValue:
			attrs[kv.Key] = fmt.Sprint(v.BoolValue)
		}
	}
	for k, v := range map[string]string{
		"mcpo.server": "otel", "mcpo.tool": "request_info", "mcpo.outcome": "ok", "http.response.status_code": "200",
		"mcpo.upstream.session_restarted": "false",
	} {
		if attrs[k] != v {
			t.Errorf("attribute %s = %q, want %q (all: %v)", k, attrs[k], v, attrs)
		}
	}
	if attrs["mcp.protocol.version"] == "" {
		t.Errorf("no mcp.protocol.version attribute: %v", attrs)
	}
}

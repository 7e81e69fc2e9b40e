package integration

import (
	"fmt"
	"testing"

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

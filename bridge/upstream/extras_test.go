//go:build unix

package upstream

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// requestInfo calls the fixture's request_info tool under ctx.
func requestInfo(t *testing.T, ctx context.Context, u *Upstream) fixture.RequestInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, waitLimit)
	defer cancel()
	res, err := u.CallTool(ctx, "request_info", json.RawMessage(`{}`))
	if err != nil {
		t.Fatalf("calling request_info: %v", err)
	}
	var info fixture.RequestInfo
	if err := json.Unmarshal([]byte(text(t, res)), &info); err != nil {
		t.Fatal(err)
	}
	return info
}

func TestCallHeadersReachTheCallsHTTPRequestOnly(t *testing.T) {
	callHeaders := http.Header{
		"X-User":  {"alice"},
		"X-Multi": {"a", "b"},
		// The transport's own and the Spec's headers win.
		"Content-Type":   {"text/plain"},
		"Mcp-Session-Id": {"forged"},
		"X-Static":       {"from the call"},
	}
	check := func(t *testing.T, u *Upstream) {
		info := requestInfo(t, WithCallHeaders(context.Background(), callHeaders), u)
		h := info.Headers
		if !slices.Equal(h.Values("X-User"), []string{"alice"}) || !slices.Equal(h.Values("X-Multi"), []string{"a", "b"}) {
			t.Errorf("the call's headers: X-User %q, X-Multi %q", h.Values("X-User"), h.Values("X-Multi"))
		}
		if h.Get("Content-Type") != "application/json" || h.Get("Mcp-Session-Id") == "forged" ||
			!slices.Equal(h.Values("X-Static"), []string{"static"}) {
			t.Errorf("a call header replaced one the request had: Content-Type %q, Mcp-Session-Id %q, X-Static %q",
				h.Get("Content-Type"), h.Get("Mcp-Session-Id"), h.Values("X-Static"))
		}
		if other := requestInfo(t, context.Background(), u); other.Headers.Get("X-User") != "" || other.Headers.Get("X-Multi") != "" {
			t.Errorf("a call without headers got those of an earlier call: %v", other.Headers)
		}
	}
	for _, protocol := range []string{ProtocolLegacy, ProtocolModern} {
		t.Run("streamable_http/"+protocol, func(t *testing.T) {
			srv := fixture.NewStreamableHTTPServer(t, fixture.Options{})
			u, _ := start(t, Spec{Name: "fx", Transport: TransportStreamableHTTP, URL: srv.URL, Protocol: protocol,
				Headers: map[string]string{"X-Static": "static"}}, Options{})
			check(t, u)
			// The session's own requests (handshake, listing) carry none.
			withUser := 0
			for _, h := range srv.Received() {
				if h.Get("X-User") != "" {
					withUser++
				}
			}
			if withUser != 1 {
				t.Errorf("%d of the %d requests the server received carried X-User, want the one call's", withUser, len(srv.Received()))
			}
		})
	}
	t.Run("sse", func(t *testing.T) {
		u, _ := start(t, Spec{Name: "fx", Transport: TransportSSE, URL: fixture.NewSSE(t, fixture.Options{}),
			Headers: map[string]string{"X-Static": "static"}}, Options{})
		check(t, u)
	})
	t.Run("stdio", func(t *testing.T) {
		u, _ := start(t, stdioSpec(fixture.Options{}), Options{})
		if info := requestInfo(t, WithCallHeaders(context.Background(), callHeaders), u); len(info.Headers) != 0 {
			t.Errorf("a stdio call has headers %v", info.Headers)
		}
	})
}

func TestTheAuthorizersAuthorizationWinsOverTheCalls(t *testing.T) {
	auth := newFakeAuth()
	auth.set("server-token")
	spec := Spec{Name: "fx", Transport: TransportStreamableHTTP, URL: fixture.NewStreamableHTTP(t, fixture.Options{}), Auth: auth}
	u, _ := start(t, spec, Options{})
	ctx := WithCallHeaders(context.Background(), http.Header{"Authorization": {"Bearer caller"}, "X-User": {"alice"}})
	info := requestInfo(t, ctx, u)
	if got := info.Headers.Values("Authorization"); !slices.Equal(got, []string{"Bearer server-token"}) {
		t.Errorf("Authorization = %q, want the Authorizer's", got)
	}
	if info.Headers.Get("X-User") != "alice" {
		t.Errorf("X-User = %q: the call's other headers are lost behind an Authorizer", info.Headers.Get("X-User"))
	}
}

func TestCallHeadersGoToTheServersOriginOnly(t *testing.T) {
	origin, _ := url.Parse("http://mcp.example.com/mcp")
	var got http.Header
	tr := &callHeaderTransport{origin: origin, base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		got = r.Header
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: r}, nil
	})}
	ctx := WithCallHeaders(context.Background(), http.Header{"X-User": {"alice"}})
	for _, tc := range []struct {
		url  string
		want bool
	}{
		{"http://mcp.example.com/mcp", true},
		{"http://MCP.example.com:80/message?sessionId=1", true},
		{"https://mcp.example.com/mcp", false},
		{"http://mcp.example.com:8080/mcp", false},
		{"http://elsewhere.example.com/mcp", false},
	} {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, tc.url, http.NoBody)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if _, err := tr.RoundTrip(req); err != nil {
			t.Fatal(err)
		}
		if sent := got.Get("X-User") == "alice"; sent != tc.want {
			t.Errorf("%s: call headers sent %v, want %v", tc.url, sent, tc.want)
		}
		if len(req.Header) != 1 {
			t.Errorf("%s: the request given to the transport was modified: %v", tc.url, req.Header)
		}
	}
}

func TestCallMetaReachesToolsCallsMeta(t *testing.T) {
	identity := map[string]any{"id": "u1", "email": "u1@example.com"}
	check := func(t *testing.T, u *Upstream) {
		info := requestInfo(t, WithCallMeta(context.Background(), map[string]any{"example.com/user": identity}), u)
		got, _ := json.Marshal(info.Meta["example.com/user"])
		if string(got) != `{"email":"u1@example.com","id":"u1"}` {
			t.Errorf("_meta = %v", info.Meta)
		}
		if other := requestInfo(t, context.Background(), u); other.Meta["example.com/user"] != nil {
			t.Errorf("a call without meta got that of an earlier call: %v", other.Meta)
		}
	}
	transports(t, fixture.Options{}, func(t *testing.T, spec Spec) {
		u, _ := start(t, spec, Options{})
		check(t, u)
	})
	t.Run("streamable_http/modern", func(t *testing.T) {
		// mcp-go adds the protocol's own entries to the same _meta.
		u, _ := start(t, Spec{Name: "fx", Transport: TransportStreamableHTTP, URL: fixture.NewStreamableHTTP(t, fixture.Options{}),
			Protocol: ProtocolModern}, Options{})
		check(t, u)
		info := requestInfo(t, WithCallMeta(context.Background(), map[string]any{"example.com/user": identity}), u)
		if len(info.Meta) < 2 {
			t.Errorf("_meta of a modern call = %v, want the protocol's entries too", info.Meta)
		}
	})
}

func TestALogLevelReachesTheMetaOfAModernCallOnly(t *testing.T) {
	url := fixture.NewStreamableHTTP(t, fixture.Options{})
	for _, tc := range []struct {
		protocol string
		want     any // the call's _meta logLevel
	}{
		{ProtocolModern, "debug"},
		// A 2025-11-25 session's level is the session's.
		{ProtocolLegacy, nil},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			u, _ := start(t, Spec{Name: "fx", Transport: TransportStreamableHTTP, URL: url, Protocol: tc.protocol}, Options{})
			meta := map[string]any{"example.com/user": "u1"}
			info := requestInfo(t, WithLogLevel(WithCallMeta(context.Background(), meta), "debug"), u)
			if got := info.Meta["io.modelcontextprotocol/logLevel"]; got != tc.want {
				t.Errorf("_meta logLevel = %v, want %v (_meta %v)", got, tc.want, info.Meta)
			}
			if info.Meta["example.com/user"] != "u1" || len(meta) != 1 {
				t.Errorf("the call's own _meta = %v, and the caller's became %v", info.Meta, meta)
			}
			if other := requestInfo(t, context.Background(), u); other.Meta["io.modelcontextprotocol/logLevel"] != nil {
				t.Errorf("a call asking for no level got one: %v", other.Meta)
			}
		})
	}
}

func TestReservedHeadersAreThoseACallMayNotSet(t *testing.T) {
	for name, want := range map[string]bool{
		"te": true, "Transfer-Encoding": true, "connection": true, "Proxy-Authorization": true, "Host": true,
		"Content-Length": true, "Accept-Encoding": true, "Content-Type": true, "Last-Event-ID": true,
		"Mcp-Session-Id": true, "mcp-protocol-version": true, "Mcp-Param-Region": true,
		"Authorization": false, "Cookie": false, "X-User": false, "X-OpenWebUI-Chat-Id": false, "Mcpx": false,
	} {
		if got := ReservedHeader(name); got != want {
			t.Errorf("ReservedHeader(%q) = %v, want %v", name, got, want)
		}
	}
}

package upstream

import (
	"context"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
)

// A call may carry, through its context, what its caller adds to the
// requests it makes: headers for the HTTP requests, entries for the _meta
// of tools/call. A session serves the calls of many callers, so these are
// per call, never per session: the requests of the session itself (the
// handshake, tools/list, the standing GET stream) carry none of them.

type callHeadersKey struct{}

type callMetaKey struct{}

// WithCallHeaders returns ctx carrying headers for every HTTP request a
// call made under it sends to the server: the POST of its tools/call
// (Streamable HTTP, or HTTP+SSE's message POST) and whatever else the
// transport sends for it (resuming its response stream, cancelling it).
// They go to the server's own origin only, and never replace a header the
// request already has: the transport's own, those of Spec.Headers, and the
// Authorizer's Authorization win. Reserved names (ReservedHeader) are left
// out. A stdio server ignores them.
//
// Names are in canonical form (as http.Header.Set writes them). h is read,
// never modified, and must not change while the call is under way.
func WithCallHeaders(ctx context.Context, h http.Header) context.Context {
	return context.WithValue(ctx, callHeadersKey{}, h)
}

// WithCallMeta returns ctx carrying entries that tools/call, called under
// it, adds to its params._meta. On a 2026-07-28 connection mcp-go's own
// entries (protocol version, client info and capabilities) win over
// entries of the same key. m is read, never modified, and must not change
// while the call is under way.
func WithCallMeta(ctx context.Context, m map[string]any) context.Context {
	return context.WithValue(ctx, callMetaKey{}, m)
}

// ReservedHeader reports a header name that a call's headers never set
// (WithCallHeaders leaves them out): the hop-by-hop headers, those that
// frame or route the message, and those the MCP transports set
// themselves (Accept, Content-Type, Last-Event-ID, Mcp-*).
func ReservedHeader(name string) bool {
	return reserved(textproto.CanonicalMIMEHeaderKey(name))
}

// reserved is ReservedHeader for a canonical name.
func reserved(name string) bool {
	return reservedHeaders[name] || strings.HasPrefix(name, "Mcp-")
}

var reservedHeaders = map[string]bool{
	// Hop-by-hop (RFC 9110, section 7.6.1).
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Te": true, "Trailer": true,
	"Transfer-Encoding": true, "Upgrade": true, "Proxy-Authenticate": true, "Proxy-Authorization": true,
	// The message's framing and routing, and Go's transport's own.
	"Host": true, "Content-Length": true, "Content-Encoding": true, "Expect": true, "Accept-Encoding": true,
	// The MCP transports'.
	"Accept": true, "Content-Type": true, "Last-Event-Id": true,
}

// callMeta returns the _meta entries ctx carries, nil for none.
func callMeta(ctx context.Context) map[string]any {
	m, _ := ctx.Value(callMetaKey{}).(map[string]any)
	return m
}

// callHeaderTransport adds the headers of the call (WithCallHeaders) that
// makes a request, read from the request's context: mcp-go makes a call's
// HTTP requests under the call's context. It sits outside the Authorizer's
// transport, which sets (or removes) Authorization after it.
type callHeaderTransport struct {
	base   http.RoundTripper
	origin *url.URL // the server's URL
}

func (t *callHeaderTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	h, _ := req.Context().Value(callHeadersKey{}).(http.Header)
	if len(h) == 0 || t.origin == nil || !sameOrigin(req.URL, t.origin) {
		return t.base.RoundTrip(req)
	}
	// A RoundTripper must not modify the request it is given.
	r := new(http.Request)
	*r = *req
	r.Header = req.Header.Clone()
	if r.Header == nil {
		r.Header = make(http.Header, len(h))
	}
	for k, v := range h {
		if _, set := r.Header[k]; !set && !reserved(k) {
			r.Header[k] = v
		}
	}
	return t.base.RoundTrip(r)
}

// sameOrigin reports whether a and b have the same scheme, host and port:
// a redirect or an endpoint elsewhere gets none of a call's headers.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}

// port returns u's port, or its scheme's default.
func port(u *url.URL) string {
	switch p := u.Port(); {
	case p != "":
		return p
	case strings.EqualFold(u.Scheme, "https"):
		return "443"
	}
	return "80"
}

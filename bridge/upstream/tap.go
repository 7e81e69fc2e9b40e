package upstream

import (
	"context"
	"sync"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// The tap sits between mcp-go's Client and its transport and keeps the raw
// JSON-RPC response of requests whose context asks for it. mcp-go decodes
// results into types that drop schema keywords, lose JSON-RPC error codes and
// turn numbers into float64; the tap lets the upstream read the wire bytes
// while mcp-go still does what it is good at (protocol metadata, headers,
// cancellation, multi round-trip requests).

type captureKey struct{}

// capture holds the last raw response seen for one logical request. A
// multi round-trip request sends several; the last one is the answer.
type capture struct {
	mu   sync.Mutex
	resp *transport.JSONRPCResponse
}

// withCapture returns a context whose requests are captured.
func withCapture(ctx context.Context) (context.Context, *capture) {
	c := &capture{}
	return context.WithValue(ctx, captureKey{}, c), c
}

func (c *capture) set(resp *transport.JSONRPCResponse) {
	c.mu.Lock()
	c.resp = resp
	c.mu.Unlock()
}

// last returns the last captured response, or nil if none arrived.
func (c *capture) last() *transport.JSONRPCResponse {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resp
}

// tap forwards every call to the wrapped transport. mcp-go detects optional
// transport features with type assertions, so tap implements the optional
// methods by forwarding when the wrapped transport has them, and httpTap adds
// SetProtocolVersion only for HTTP transports (its presence also tells mcp-go
// not to send notifications/cancelled, which HTTP transports do not need).
type tap struct {
	inner transport.Interface
}

// newTap wraps t, keeping the HTTP-ness of t visible to mcp-go.
func newTap(t transport.Interface) transport.Interface {
	base := &tap{inner: t}
	if _, ok := t.(transport.HTTPConnection); ok {
		return &httpTap{tap: base}
	}
	return base
}

func (t *tap) Start(ctx context.Context) error { return t.inner.Start(ctx) }

func (t *tap) SendRequest(ctx context.Context, req transport.JSONRPCRequest) (*transport.JSONRPCResponse, error) {
	resp, err := t.inner.SendRequest(ctx, req)
	if c, ok := ctx.Value(captureKey{}).(*capture); ok && resp != nil {
		c.set(resp)
	}
	return resp, err
}

func (t *tap) SendNotification(ctx context.Context, n mcp.JSONRPCNotification) error {
	return t.inner.SendNotification(ctx, n)
}

func (t *tap) SetNotificationHandler(h func(mcp.JSONRPCNotification)) {
	t.inner.SetNotificationHandler(h)
}

func (t *tap) Close() error { return t.inner.Close() }

func (t *tap) GetSessionId() string { return t.inner.GetSessionId() }

// SetRequestHandler forwards server-to-client requests (ping) when the
// wrapped transport carries them.
func (t *tap) SetRequestHandler(h transport.RequestHandler) {
	if b, ok := t.inner.(transport.BidirectionalInterface); ok {
		b.SetRequestHandler(h)
	}
}

// SetConnectionLostHandler forwards to transports that report a lost
// connection (SSE).
func (t *tap) SetConnectionLostHandler(h func(error)) {
	if s, ok := t.inner.(interface{ SetConnectionLostHandler(func(error)) }); ok {
		s.SetConnectionLostHandler(h)
	}
}

// RequiresLegacyProtocol forwards the transport's own answer.
func (t *tap) RequiresLegacyProtocol() bool {
	l, ok := t.inner.(interface{ RequiresLegacyProtocol() bool })
	return ok && l.RequiresLegacyProtocol()
}

type httpTap struct {
	*tap
}

func (t *httpTap) SetProtocolVersion(v string) {
	t.inner.(transport.HTTPConnection).SetProtocolVersion(v)
}

// Interface guards.
var (
	_ transport.BidirectionalInterface = (*tap)(nil)
	_ transport.HTTPConnection         = (*httpTap)(nil)
)

package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

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
	// stand, when set, is the result mcp-go gets in place of the real one,
	// which the caller decodes itself from the capture: decoding a result
	// twice would cost a fifth of a call's CPU time on a fast server.
	stand json.RawMessage
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
	// cancelByNotification makes a request whose context ends send
	// notifications/cancelled, which mcp-go does itself over stdio only:
	// legacy HTTP sessions need it too (on 2026-07-28 connections closing
	// the request's stream is the cancellation).
	cancelByNotification atomic.Bool
}

// tapOf returns the tap of a transport made by newTap.
func tapOf(t transport.Interface) *tap {
	if h, ok := t.(*httpTap); ok {
		return h.tap
	}
	return t.(*tap)
}

// cancelNotificationTimeout bounds sending a notifications/cancelled.
const cancelNotificationTimeout = 5 * time.Second

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
		if c.stand != nil && resp.Error == nil {
			stood := *resp
			stood.Result = c.stand
			resp = &stood
		}
	}
	if err != nil && ctx.Err() == nil {
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < deadlineSlack {
			// The transport's own timer, set to the deadline, fired first
			// (SSE does this): the call ran out of time all the same.
			timer := time.NewTimer(deadlineSlack)
			select {
			case <-ctx.Done():
			case <-timer.C:
			}
			timer.Stop()
		}
	}
	if err != nil && ctx.Err() != nil {
		if !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		if t.cancelByNotification.Load() && req.Method != string(mcp.MethodInitialize) {
			t.sendCancel(req.ID, ctx.Err())
		}
	}
	return resp, err
}

// deadlineSlack is how early a transport's timeout may fire and still be
// the call's deadline.
const deadlineSlack = 100 * time.Millisecond

// sendCancel tells the server, in the background and within a bound, to
// stop working on a request.
func (t *tap) sendCancel(id mcp.RequestId, reason error) {
	n := mcp.JSONRPCNotification{
		JSONRPC: mcp.JSONRPC_VERSION,
		Notification: mcp.Notification{
			Method: string(mcp.MethodNotificationCancelled),
			Params: mcp.NotificationParams{AdditionalFields: map[string]any{"requestId": id, "reason": reason.Error()}},
		},
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), cancelNotificationTimeout)
		defer cancel()
		_ = t.inner.SendNotification(ctx, n)
	}()
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

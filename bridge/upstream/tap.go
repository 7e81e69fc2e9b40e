package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"
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
	log   func() *zap.Logger
	// cancelByNotification makes a request whose context ends send
	// notifications/cancelled, which mcp-go does itself over stdio only:
	// legacy HTTP sessions need it too (on 2026-07-28 connections closing
	// the request's stream is the cancellation).
	cancelByNotification atomic.Bool
	// modernOnly is set while a client pinned to the 2026-07-28 era
	// connects: mcp-go falls back to the initialize handshake after any
	// failed server/discover (a 401, a refused version), which such a
	// server cannot answer, so the tap refuses the fallback and reports
	// why server/discover failed instead.
	modernOnly atomic.Bool
	// discoverErr is why the last server/discover failed, nil if it
	// did not.
	discoverMu  sync.Mutex
	discoverErr error
	// retries numbers the requests sent again after a version refusal.
	retries atomic.Int64
	// elicit, when set, answers elicitation/create requests (see
	// Options.Elicitation): the capability declared in initialize then
	// says that defaults are applied.
	elicit atomic.Bool
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
func newTap(t transport.Interface, log func() *zap.Logger) transport.Interface {
	base := &tap{inner: t, log: log}
	if _, ok := t.(transport.HTTPConnection); ok {
		return &httpTap{tap: base}
	}
	return base
}

func (t *tap) Start(ctx context.Context) error { return t.inner.Start(ctx) }

func (t *tap) SendRequest(ctx context.Context, req transport.JSONRPCRequest) (*transport.JSONRPCResponse, error) {
	switch req.Method {
	case string(mcp.MethodInitialize):
		if t.modernOnly.Load() {
			return nil, t.noLegacyFallback()
		}
		if t.elicit.Load() {
			req.Params = declareApplyDefaults(req.Params)
		}
	}
	resp, err := t.inner.SendRequest(ctx, req)
	if resp != nil && resp.Error != nil && resp.Error.Code == mcp.UNSUPPORTED_PROTOCOL_VERSION && ctx.Err() == nil {
		if v, ok := retryableVersionRefusal(req, resp.Error); ok {
			retry := req
			retry.ID = mcp.NewRequestId(fmt.Sprintf("mcpo-retry-%d", t.retries.Add(1)))
			t.log().Info("the server refused the protocol version it lists as supported; sending the request once more",
				zap.String("method", req.Method), zap.String("version", v))
			resp, err = t.inner.SendRequest(ctx, retry)
		}
	}
	if req.Method == string(mcp.MethodServerDiscover) {
		t.noteDiscover(resp, err)
	}
	if c, ok := ctx.Value(captureKey{}).(*capture); ok && resp != nil {
		c.set(resp)
		if c.stand != nil && resp.Error == nil && !inputRequired(resp.Result) {
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

// noteDiscover records how a server/discover ended.
func (t *tap) noteDiscover(resp *transport.JSONRPCResponse, err error) {
	if err == nil && resp != nil && resp.Error != nil {
		err = newRPCError(resp.Error)
	}
	t.discoverMu.Lock()
	t.discoverErr = err
	t.discoverMu.Unlock()
}

// noLegacyFallback is the error for mcp-go's attempt to fall back to the
// initialize handshake on a connection pinned to the 2026-07-28 era.
func (t *tap) noLegacyFallback() error {
	t.discoverMu.Lock()
	cause := t.discoverErr
	t.discoverMu.Unlock()
	if cause == nil {
		cause = errors.New("server/discover failed")
	}
	return fmt.Errorf("%w (the protocol is pinned to the stateless era, which has no initialize handshake to fall back to)", cause)
}

// retryableVersionRefusal reports a -32022 (unsupported protocol version)
// answer whose list of supported versions makes the version the request
// declared the one to use anyway: a server that rejected a version it
// supports (a replica not yet updated, or the suite's test of the retry).
// The request is sent once more, as the specification asks of a client
// after -32022; a refusal naming other versions is left to mcp-go's own
// negotiation. It returns the version.
func retryableVersionRefusal(req transport.JSONRPCRequest, e *mcp.JSONRPCErrorDetails) (string, bool) {
	var data mcp.UnsupportedProtocolVersionData
	if b, err := json.Marshal(e.Data); err != nil || json.Unmarshal(b, &data) != nil {
		return "", false
	}
	declared := declaredVersion(req.Params)
	if declared == "" || mcp.NegotiateMutuallySupportedVersion(data.Supported) != declared {
		return "", false
	}
	return declared, true
}

// declaredVersion returns the protocol version in a request's _meta, or "".
func declaredVersion(params any) string {
	b, err := json.Marshal(params)
	if err != nil {
		return ""
	}
	var p struct {
		Meta map[string]json.RawMessage `json:"_meta"`
	}
	if json.Unmarshal(b, &p) != nil {
		return ""
	}
	var v string
	_ = json.Unmarshal(p.Meta[mcp.MetaKeyProtocolVersion], &v)
	return v
}

// declareApplyDefaults adds applyDefaults to the form elicitation
// capability of initialize params (SEP-1034), which mcp-go's capability
// type cannot express: the upstream fills in the defaults of a form the
// server sends (see Options.Elicitation). Params it cannot read are left
// as they are.
func declareApplyDefaults(params any) any {
	b, err := json.Marshal(params)
	if err != nil {
		return params
	}
	var p map[string]any
	if json.Unmarshal(b, &p) != nil {
		return params
	}
	caps, _ := p["capabilities"].(map[string]any)
	if caps == nil {
		return params
	}
	el, _ := caps["elicitation"].(map[string]any)
	if el == nil {
		return params
	}
	form, _ := el["form"].(map[string]any)
	if form == nil {
		form = map[string]any{}
	}
	form["applyDefaults"] = true
	el["form"] = form
	return p
}

// inputRequired reports a multi round-trip result asking for input
// (2026-07-28), which mcp-go must see to answer it with the elicitation
// handler and send the request again.
func inputRequired(result json.RawMessage) bool {
	if !bytes.Contains(result, []byte(`"input_required"`)) {
		return false // the common case, without decoding
	}
	var r struct {
		ResultType string `json:"resultType"`
	}
	return json.Unmarshal(result, &r) == nil && r.ResultType == "input_required"
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

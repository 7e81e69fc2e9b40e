package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"
)

// The tap sits between mcp-go's Client and its transport. It keeps the raw
// JSON-RPC answer of each request that send makes: mcp-go decodes results
// into types that drop schema keywords, lose JSON-RPC error codes and turn
// numbers into float64; the tap lets the session read the wire bytes while
// mcp-go still does what it is good at (protocol metadata, headers,
// cancellation, multi round-trip requests). It also watches the handshake,
// and does what mcp-go leaves undone on some connections (cancelling legacy
// HTTP requests, sending a request again after a version refusal).
//
// A tap serves one handshake attempt: dialer.initialize makes one, with
// what that attempt needs, for each client it creates. Nothing in it is
// set afterwards except by mcp-go, through the transport's own interface.

// tap forwards every call to the wrapped transport. mcp-go detects optional
// transport features with type assertions, so tap implements the optional
// methods by forwarding when the wrapped transport has them, and httpTap
// adds SetProtocolVersion only for HTTP transports.
type tap struct {
	inner transport.Interface
	log   func() *zap.Logger
	// modernOnly is set for a client pinned to the 2026-07-28 era: mcp-go
	// falls back to the initialize handshake after any failed
	// server/discover (a 401, a refused version), which such a server
	// cannot answer, so the tap refuses the fallback and reports why
	// server/discover failed instead.
	modernOnly bool
	// applyDefaults is set when the client answers elicitations (see
	// Options.Elicitation): the capability declared in initialize then
	// says that defaults are applied.
	applyDefaults bool
	// seen, if set, is called for every answer, notification and request
	// from the server (on HTTP connections: stdio's are seen as they are
	// read).
	seen func()

	// version is the protocol version mcp-go negotiated, which it tells
	// HTTP transports only; "" until then, and always on stdio.
	version atomic.Pointer[string]

	handshakeMu sync.Mutex
	// discoverErr is why the last server/discover failed, nil if it did
	// not.
	discoverErr error
	// refusal is the JSON-RPC error of the last answer to the handshake
	// (server/discover or initialize), nil if that answer was a result.
	refusal *mcp.JSONRPCErrorDetails
}

// forClient returns the tap as mcp-go's Client must see it: an
// HTTPConnection when the wrapped transport is one, whose presence also
// tells mcp-go not to send notifications/cancelled itself.
func (t *tap) forClient() transport.Interface {
	if _, ok := t.inner.(transport.HTTPConnection); ok {
		return &httpTap{tap: t}
	}
	return t
}

// exchangeKey is the key of the context value that holds the *exchange
// of the request send is making. mcp-go's Client passes a request's
// context, and nothing else of its caller's, down to the transport; the
// value is how the tap knows which request an answer belongs to.
type exchangeKey struct{}

// exchange is one request send makes through mcp-go.
type exchange struct {
	// stand, when set, is what mcp-go gets in place of a complete result,
	// for a method whose typed result nobody reads (see standIns).
	stand json.RawMessage
	// round, when set, is the round of a multi round-trip request the
	// caller takes part in: the request carries its answers and state, and
	// an answer asking for input reaches mcp-go as its stand-in, ending
	// the request rather than being answered by mcp-go.
	round *RoundTrip
	// undeclare is a capability the request does not declare, though the
	// session's client has it (2026-07-28 declares them per request); ""
	// for none.
	undeclare string

	mu sync.Mutex
	// answer is the last answer to the request: a multi round-trip
	// request gets several, and the last one is the result.
	answer *transport.JSONRPCResponse
	// tooLarge, when set, is why an answer over HTTP could not be read
	// (limitTransport).
	tooLarge *MessageTooLargeError
}

// setTooLarge notes that an answer went past the message size limit.
func (x *exchange) setTooLarge(e *MessageTooLargeError) {
	x.mu.Lock()
	x.tooLarge = e
	x.mu.Unlock()
}

// overLimit returns the error of an answer over the message size limit,
// nil if none was.
func (x *exchange) overLimit() *MessageTooLargeError {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.tooLarge
}

// record keeps resp as the exchange's answer and returns what mcp-go gets.
// An answer still asking for input (2026-07-28) reaches mcp-go as sent,
// for it to answer with the elicitation policy and send the request again,
// unless the caller takes part in the round trip.
func (x *exchange) record(resp *transport.JSONRPCResponse) *transport.JSONRPCResponse {
	x.mu.Lock()
	x.answer = resp
	x.mu.Unlock()
	if x.stand == nil || resp.Error != nil || (x.round == nil && inputRequired(resp.Result)) {
		return resp
	}
	stood := *resp
	stood.Result = x.stand
	return &stood
}

// last returns the last answer, or nil if none arrived.
func (x *exchange) last() *transport.JSONRPCResponse {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.answer
}

// retries numbers the requests sent again after a version refusal, so that
// no two share a JSON-RPC ID on one connection, whichever tap sent them.
var retries atomic.Int64

// cancelNotificationTimeout bounds sending a notifications/cancelled.
const cancelNotificationTimeout = 5 * time.Second

func (t *tap) Start(ctx context.Context) error { return t.inner.Start(ctx) }

func (t *tap) SendRequest(ctx context.Context, req transport.JSONRPCRequest) (*transport.JSONRPCResponse, error) {
	if req.Method == string(mcp.MethodInitialize) {
		if t.modernOnly {
			return nil, t.noLegacyFallback()
		}
		if t.applyDefaults {
			req.Params = declareApplyDefaults(req.Params)
		}
	}
	x, _ := ctx.Value(exchangeKey{}).(*exchange)
	if x != nil && x.round != nil {
		req.Params = x.round.into(req.Params)
	}
	if x != nil && x.undeclare != "" {
		req.Params = withoutCapability(req.Params, x.undeclare)
	}
	resp, err := t.inner.SendRequest(ctx, req)
	if resp != nil && t.seen != nil {
		t.seen()
	}
	if resp != nil && resp.Error != nil && resp.Error.Code == mcp.UNSUPPORTED_PROTOCOL_VERSION && ctx.Err() == nil {
		if v, ok := retryableVersionRefusal(req, resp.Error); ok {
			retry := req
			retry.ID = mcp.NewRequestId(fmt.Sprintf("mcpo-retry-%d", retries.Add(1)))
			t.log().Info("the server refused the protocol version it lists as supported; sending the request once more",
				zap.String("method", req.Method), zap.String("version", v))
			resp, err = t.inner.SendRequest(ctx, retry)
			if resp != nil && t.seen != nil {
				t.seen()
			}
		}
	}
	switch req.Method {
	case string(mcp.MethodServerDiscover):
		resp = discoverWithoutTheVersion(req, resp)
		t.noteHandshake(req.Method, resp, err)
	case string(mcp.MethodInitialize):
		t.noteHandshake(req.Method, resp, err)
	}
	if x != nil && resp != nil {
		resp = x.record(resp)
	}
	if err != nil {
		err = t.ended(ctx, req, err)
	}
	return resp, err
}

// ended returns the error of a request that failed, as the call's own when
// its context ended, and tells the server to stop working on it where
// mcp-go does not.
func (t *tap) ended(ctx context.Context, req transport.JSONRPCRequest, err error) error {
	if ctx.Err() == nil {
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
	if ctx.Err() == nil {
		return err
	}
	if !errors.Is(err, ctx.Err()) {
		err = fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	if t.cancelsByNotification() {
		t.sendCancel(req.ID, ctx.Err())
	}
	return err
}

// cancelsByNotification reports a connection whose cancelled requests the
// tap, not mcp-go, announces with notifications/cancelled: a legacy HTTP
// one. mcp-go sends the notification over stdio only; on 2026-07-28 HTTP
// connections closing the request's stream is the cancellation. Before the
// handshake has negotiated a version there is nothing to cancel.
func (t *tap) cancelsByNotification() bool {
	v := t.version.Load()
	return v != nil && *v != "" && !mcp.IsModernProtocol(*v)
}

// noteHandshake records how a server/discover or initialize ended.
func (t *tap) noteHandshake(method string, resp *transport.JSONRPCResponse, err error) {
	t.handshakeMu.Lock()
	defer t.handshakeMu.Unlock()
	if resp != nil {
		t.refusal = resp.Error
	}
	if method != string(mcp.MethodServerDiscover) {
		return
	}
	if err == nil && resp != nil && resp.Error != nil {
		err = newRPCError(resp.Error)
	}
	t.discoverErr = err
}

// handshakeRefusal returns the JSON-RPC error the server last answered the
// handshake with, nil if its last answer was a result or none came.
func (t *tap) handshakeRefusal() *RPCError {
	t.handshakeMu.Lock()
	defer t.handshakeMu.Unlock()
	if t.refusal == nil {
		return nil
	}
	return newRPCError(t.refusal)
}

// noLegacyFallback is the error for mcp-go's attempt to fall back to the
// initialize handshake on a connection pinned to the 2026-07-28 era.
func (t *tap) noLegacyFallback() error {
	t.handshakeMu.Lock()
	cause := t.discoverErr
	t.handshakeMu.Unlock()
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

// discoverWithoutTheVersion turns a server/discover result whose
// supportedVersions leave out the version the request declared into the
// -32022 refusal the server should have sent. mcp-go 1.2.1 takes any
// discover result as agreement, so a server that answers discover but
// speaks only 2025-11-25 (the Go SDK's stateful HTTP server does) would
// otherwise refuse every later request; as a refusal, mcp-go negotiates
// from the list the server gave, and falls back to initialize when no
// stateless version is in it.
func discoverWithoutTheVersion(req transport.JSONRPCRequest, resp *transport.JSONRPCResponse) *transport.JSONRPCResponse {
	if resp == nil || resp.Error != nil || len(resp.Result) == 0 {
		return resp
	}
	var res struct {
		SupportedVersions []string `json:"supportedVersions"`
	}
	declared := declaredVersion(req.Params)
	if declared == "" || json.Unmarshal(resp.Result, &res) != nil ||
		len(res.SupportedVersions) == 0 || slices.Contains(res.SupportedVersions, declared) {
		return resp
	}
	refused := *resp
	refused.Result = nil
	refused.Error = &mcp.JSONRPCErrorDetails{
		Code:    mcp.UNSUPPORTED_PROTOCOL_VERSION,
		Message: fmt.Sprintf("the server lists protocol versions %v, not %s", res.SupportedVersions, declared),
		Data:    mcp.UnsupportedProtocolVersionData{Supported: res.SupportedVersions, Requested: declared},
	}
	return &refused
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
	if t.seen != nil {
		next := h
		h = func(n mcp.JSONRPCNotification) {
			t.seen()
			next(n)
		}
	}
	t.inner.SetNotificationHandler(h)
}

func (t *tap) Close() error { return t.inner.Close() }

func (t *tap) GetSessionId() string { return t.inner.GetSessionId() }

// SetRequestHandler forwards server-to-client requests (ping,
// elicitation/create, sampling/createMessage) when the wrapped transport carries them.
func (t *tap) SetRequestHandler(h transport.RequestHandler) {
	b, ok := t.inner.(transport.BidirectionalInterface)
	if !ok {
		return
	}
	h = refuseSampling(h)
	if t.seen != nil {
		next := h
		h = func(ctx context.Context, req transport.JSONRPCRequest) (*transport.JSONRPCResponse, error) {
			t.seen()
			return next(ctx, req)
		}
	}
	b.SetRequestHandler(h)
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

// httpTap is the tap of an HTTP transport.
type httpTap struct {
	*tap
}

// SetProtocolVersion is how mcp-go tells an HTTP transport the negotiated
// version, once the handshake is over.
func (t *httpTap) SetProtocolVersion(v string) {
	t.version.Store(&v)
	t.inner.(transport.HTTPConnection).SetProtocolVersion(v)
}

// Interface guards.
var (
	_ transport.BidirectionalInterface = (*tap)(nil)
	_ transport.HTTPConnection         = (*httpTap)(nil)
)

// withoutCapability returns a 2026-07-28 request's params whose _meta
// declares no capability named name; params it cannot read are returned
// as they are.
func withoutCapability(params any, name string) any {
	fields, ok := params.(map[string]json.RawMessage) // as mcp-go's applyRequestMeta leaves them
	if !ok {
		b, err := json.Marshal(params)
		if err != nil || json.Unmarshal(b, &fields) != nil {
			return params
		}
	}
	var meta map[string]json.RawMessage
	var caps map[string]json.RawMessage
	if json.Unmarshal(fields["_meta"], &meta) != nil || json.Unmarshal(meta[mcp.MetaKeyClientCapabilities], &caps) != nil {
		return params
	}
	if _, ok := caps[name]; !ok {
		return params
	}
	delete(caps, name)
	var err error
	if meta[mcp.MetaKeyClientCapabilities], err = json.Marshal(caps); err != nil {
		return params
	}
	if fields["_meta"], err = json.Marshal(meta); err != nil {
		return params
	}
	return fields
}

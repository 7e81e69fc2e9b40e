package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"
)

// withSession runs f on the ready session, counted as a call under way,
// and returns its result with the Spec's secrets removed from the error.
// method and name (a tool's name, a resource's URI, a prompt's name, or ""
// for a list) describe the request in logs.
//
// A Streamable HTTP session the server forgot (it restarted, or expired the
// session) is replaced and f run once more: the server did not run the
// request. A request the server refused for want of credentials or scopes
// that only a user can grant fails with an *UnavailableError in
// StateNeedsAuth.
func withSession[T any](ctx context.Context, u *Upstream, method mcp.MCPMethod, name string, f func(s *session) (T, error)) (T, error) {
	var zero T
	s, c, err := u.acquire(ctx)
	if err != nil {
		return zero, err
	}
	defer u.release(c)
	var refusals uint64
	if u.spec.Auth != nil {
		refusals = u.spec.Auth.Refusals()
	}
	res, err := f(s)
	if errors.Is(err, errSessionExpired) && ctx.Err() == nil {
		u.logger().Info("the MCP server forgot the session; starting a new one and sending again",
			zap.String("server", u.spec.Name), zap.String("method", string(method)), zap.String("name", name))
		s.end(err)
		next, werr := u.nextSession(ctx, s)
		if werr != nil {
			return zero, werr
		}
		s = next
		res, err = f(s)
	}
	if err != nil && u.spec.Auth != nil && u.spec.Auth.Refusals() != refusals {
		if needsAuth := u.refused(ctx, s, err); needsAuth != nil {
			return zero, needsAuth
		}
	}
	return res, u.redact(err)
}

// refused handles a request that failed after the server refused a request
// (this one, or one at the same time) for want of credentials or scopes. It
// returns the error to report when only a user can help, else nil.
func (u *Upstream) refused(ctx context.Context, s *session, err error) *UnavailableError {
	if errors.Is(err, transport.ErrAuthorizationRequired) {
		// The Authorizer could not renew the credentials: end the session,
		// so that the supervisor starts again and, without credentials,
		// waits in needs_auth.
		s.end(err)
	}
	// A user must authorize (again, or more scopes after a 403
	// insufficient_scope): the request says so. A step-up keeps the
	// session, whose token still serves the other tools.
	if authErr := u.spec.Auth.Authorized(ctx); needsUser(authErr) {
		return &UnavailableError{Server: u.spec.Name, State: StateNeedsAuth, Cause: u.redact(authErr), RetryAfter: 2 * time.Second}
	}
	return nil
}

// send makes one request through mcp-go: do calls the mcp-go method with
// the context it is given. It returns the result of the request's last
// answer (after any multi round-trip) as the server sent it. Errors are
// *RPCError for a JSON-RPC error, *InputRequiredError for a result still
// asking for input, errSessionExpired (wrapped) when the server no longer
// knows the session, or the transport's error (wrapping the context's error
// on timeout or cancellation), which ends the session when the transport
// is closed.
//
// A request of a caller taking part in a multi round trip (WithRoundTrip)
// is sent once per round the Upstream answers alone (see rounds).
func (s *session) send(ctx context.Context, method mcp.MCPMethod, do func(ctx context.Context) error) (json.RawMessage, error) {
	if rt := roundTripOf(ctx, method); rt != nil {
		return s.rounds(ctx, rt, func(rt *RoundTrip) (json.RawMessage, error) { return s.sendOnce(ctx, method, rt, do) })
	}
	return s.sendOnce(ctx, method, nil, do)
}

// sendOnce sends a request once, with round's answers and state when it
// is not nil.
func (s *session) sendOnce(ctx context.Context, method mcp.MCPMethod, round *RoundTrip, do func(ctx context.Context) error) (json.RawMessage, error) {
	x := &exchange{stand: s.standIn(method), round: round}
	if s.answers.sample != nil && asksInput(method) && mcp.IsModernProtocol(s.info.Protocol) && !declaresSampling(ctx) {
		x.undeclare = "sampling" // the caller cannot sample
	}
	err := do(context.WithValue(ctx, exchangeKey{}, x))
	if resp := x.last(); resp != nil {
		// The answer arrived; mcp-go's own reading of it does not matter.
		switch {
		case resp.Error != nil && s.proc == nil && forgotSession(resp.Error):
			return nil, fmt.Errorf("%w: %s", errSessionExpired, resp.Error.Message)
		case resp.Error != nil:
			return nil, newRPCError(resp.Error)
		case inputRequired(resp.Result):
			ir := newInputRequired(resp.Result)
			if round == nil && ctx.Err() == nil {
				ir.Cause = err // why mcp-go could not answer the requests
			}
			return nil, ir
		}
		return resp.Result, nil
	}
	if big := x.overLimit(); big != nil {
		// mcp-go reports an event stream cut short as no response.
		return nil, big
	}
	var ping *PingTimeoutError
	switch {
	case err == nil:
		return nil, fmt.Errorf("%s: no response", method)
	case ctx.Err() == nil && errors.As(s.err(), &ping):
		return nil, ping // why the transport closed, or the request failed
	case errors.Is(err, transport.ErrSessionTerminated):
		return nil, fmt.Errorf("%w: %v", errSessionExpired, err)
	case errors.Is(err, transport.ErrTransportClosed):
		s.end(err)
		var big *MessageTooLargeError
		if errors.As(s.err(), &big) {
			return nil, big // why the transport closed
		}
	}
	return nil, err
}

// standIns are what mcp-go decodes in place of a complete result, by
// method, for the methods whose typed result nobody reads: the callers of
// send read the raw result, and decoding it twice would cost a fifth of a
// tools/call's CPU time on a fast server. tools/list is not among them:
// mcp-go keeps the tools it lists, to send their x-mcp-header parameters as
// headers, and its typed result says which tools it dropped.
var standIns = map[mcp.MCPMethod]json.RawMessage{
	mcp.MethodToolsCall:     json.RawMessage(`{"content":[]}`),
	mcp.MethodResourcesRead: json.RawMessage(`{"contents":[]}`),
	mcp.MethodPromptsGet:    json.RawMessage(`{"messages":[]}`),
}

// standIn returns what mcp-go decodes in place of a method's result, nil
// for the result as sent. Besides standIns, a tools/list result on a
// transport that sends no headers (stdio): there mcp-go keeps the tools
// only to mirror their x-mcp-header parameters into headers it never
// sends, and on 2026-07-28 it then marshals a tool's whole input schema
// on every call to find them; it drops no tool either, so its typed
// result has nothing to say (see listTools).
func (s *session) standIn(method mcp.MCPMethod) json.RawMessage {
	if method == mcp.MethodToolsList && !s.sendsHeaders() {
		return toolsListStandIn
	}
	return standIns[method]
}

// toolsListStandIn is the tools/list result mcp-go decodes on a transport
// that sends no headers.
var toolsListStandIn = json.RawMessage(`{"tools":[]}`)

// sendsHeaders tells whether the session's transport sends HTTP headers,
// as mcp-go tells it: the transports that send them implement
// transport.HTTPConnection.
func (s *session) sendsHeaders() bool {
	_, ok := s.tr.(transport.HTTPConnection)
	return ok
}

// errSessionExpired marks a request the server refused because it no
// longer knows the Streamable HTTP session: it did not run it.
var errSessionExpired = errors.New("the server no longer knows the session")

// forgotSession recognizes the error some servers answer an unknown session
// with (HTTP 400 with a JSON-RPC error naming the session, where the
// specification says 404).
func forgotSession(d *mcp.JSONRPCErrorDetails) bool {
	m := strings.ToLower(d.Message)
	if !strings.Contains(m, "session") {
		return false
	}
	for _, w := range []string{"no valid", "not found", "unknown", "invalid", "expired", "terminated"} {
		if strings.Contains(m, w) {
			return true
		}
	}
	return false
}

// maxPages bounds the pages of one list.
const maxPages = 1000

// paginate reads every page of a list (tools/list, resources/list,
// prompts/list): list sends the request for one page through mcp-go (its
// ByPage method), and add receives the items of each page, under key, as
// the server sent them. Errors name the method.
func (s *session) paginate(ctx context.Context, method mcp.MCPMethod, key string,
	list func(ctx context.Context, cursor mcp.Cursor) error, add func(items []json.RawMessage) error) error {
	seen := map[string]bool{}
	cursor := ""
	for range maxPages {
		res, err := s.send(ctx, method, func(ctx context.Context) error { return list(ctx, mcp.Cursor(cursor)) })
		if err != nil {
			return fmt.Errorf("%s: %w", method, err)
		}
		var page map[string]json.RawMessage
		if err := json.Unmarshal(res, &page); err != nil {
			return fmt.Errorf("%s: decoding result: %w", method, err)
		}
		var items []json.RawMessage
		if err := unmarshalPresent(page[key], &items); err != nil {
			return fmt.Errorf("%s: decoding %s: %w", method, key, err)
		}
		if err := add(items); err != nil {
			return fmt.Errorf("%s: %w", method, err)
		}
		var next string
		if err := unmarshalPresent(page["nextCursor"], &next); err != nil {
			return fmt.Errorf("%s: decoding nextCursor: %w", method, err)
		}
		if next == "" {
			return nil
		}
		if seen[next] {
			return fmt.Errorf("%s repeated a pagination cursor", method)
		}
		seen[next] = true
		cursor = next
	}
	return fmt.Errorf("%s: more than %d pages", method, maxPages)
}

// unmarshalPresent decodes b into v unless b is absent.
func unmarshalPresent(b json.RawMessage, v any) error {
	if b == nil {
		return nil
	}
	return json.Unmarshal(b, v)
}

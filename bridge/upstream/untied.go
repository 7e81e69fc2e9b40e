package upstream

import (
	"context"

	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"
)

// A server's own request (elicitation/create, sampling/createMessage) is
// tied to a call when the transport says whose it is: a Streamable HTTP
// server sends it on the stream answering the call, and the transport
// hands it over with the call's context. A stdio server, or a legacy
// HTTP+SSE one, sends it on its own: nothing in it names a call. Such a
// request is taken to be for the calls under way when they all belong to
// one caller (soleCaller); else the server's Options answer it, as they
// do a call of the HTTP API.

// WithCaller returns ctx whose calls are made for caller: a comparable
// value naming one client, such as an MCP endpoint's client session. A
// server request that names no call goes to the ElicitFunc or SampleFunc
// of the calls under way only when every one of them carries the same
// caller (see soleCaller); a call without one (a call of the HTTP API)
// keeps such requests from being passed on to anybody.
func WithCaller(ctx context.Context, caller any) context.Context {
	return withHook(ctx, func(h *Hooks) { h.Caller = caller })
}

// callerOf returns the caller of WithCaller, or nil.
func callerOf(ctx context.Context) any { return hooksOf(ctx).Caller }

// Why a server request that names no call is not passed on to a caller.
const (
	untiedNoCall  = "no call under way"
	untiedAnon    = "a call under way has no MCP client (a call of the HTTP API)"
	untiedCallers = "calls of several MCP clients are under way"
	untiedTask    = "the server ran a task on the session, which the request may belong to"
	untiedRelated = "the request belongs to a task"
)

// soleCaller returns the context of the call that a request the server
// sent on its own (one the transport ties to no call) is passed on with,
// or nil and why none is.
//
// It is the oldest call under way, when every call under way on the
// Upstream carries one and the same caller (WithCaller), and the session
// never ran a task. That is safe: the request can only be about a call
// under way or about work the server does on its own, and in both cases
// the only client that asked the server anything at this moment is that
// caller — a server whose session is shared is not asked anything by
// anyone else while the request is passed on, and a server with a session
// per user is only ever asked by that user. A call of the HTTP API, or
// calls of two clients, could each be the request's, so it goes to
// nobody's client. A task lives on after its call (the HTTP API's tasks
// are polled from the background, without a caller), and a session that
// ran one may send a request about it at any time: then no request is
// passed on, whatever is under way, nor one that names its task
// (io.modelcontextprotocol/related-task).
//
// Several calls of one caller are one client's: the request goes with the
// oldest, which a server that asks for input while it runs a tool is
// waiting on.
func (u *Upstream) soleCaller(s *session, meta *mcp.Meta) (context.Context, string) {
	if meta != nil && meta.AdditionalFields[mcp.RelatedTaskMetaKey] != nil {
		return nil, untiedRelated
	}
	if s != nil && s.tasked.Load() {
		return nil, untiedTask
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	first := u.calls.head
	if first == nil {
		return nil, untiedNoCall
	}
	who := callerOf(first.ctx)
	if who == nil {
		return nil, untiedAnon
	}
	for c := first.next; c != nil; c = c.next {
		switch other := callerOf(c.ctx); {
		case other == nil:
			return nil, untiedAnon
		case other != who:
			return nil, untiedCallers
		}
	}
	return first.ctx, ""
}

// withCall returns a context for answering a server request with the call
// of callCtx: its values (the client that made it), ended when either the
// call or the request (ctx) ends; and the function that releases it.
func withCall(ctx, callCtx context.Context) (context.Context, context.CancelFunc) {
	out, cancel := context.WithCancel(callCtx)
	stop := context.AfterFunc(ctx, cancel)
	return out, func() {
		stop()
		cancel()
	}
}

// untied finds the call a server request of method that came with ctx
// is for: ctx itself when the transport tied it to a call (has reaches
// into ctx for the function the call carries), else the call soleCaller
// names. It logs at debug which way the request goes, and returns the
// context to answer with (ctx when the request stays untied) and the
// function that releases it.
func untied(ctx context.Context, method string, has func(context.Context) bool,
	sole func() (context.Context, string), log *zap.Logger) (context.Context, context.CancelFunc) {
	if has(ctx) {
		log.Debug("server request tied to its call by the transport", zap.String("method", method))
		return ctx, func() {}
	}
	callCtx, why := sole()
	if callCtx == nil {
		log.Debug("server request tied to no call: the server's options answer it",
			zap.String("method", method), zap.String("reason", why))
		return ctx, func() {}
	}
	if !has(callCtx) {
		log.Debug("server request passed to the only MCP client with calls under way, which cannot take it: the server's options answer it",
			zap.String("method", method))
		return ctx, func() {}
	}
	log.Debug("server request passed to the only MCP client with calls under way", zap.String("method", method))
	return withCall(ctx, callCtx)
}

// soleOf asks sole, when set, for the call of a request with meta.
func soleOf(sole func(meta *mcp.Meta) (context.Context, string), meta *mcp.Meta) (context.Context, string) {
	if sole == nil {
		return nil, untiedNoCall
	}
	return sole(meta)
}

package upstream

import "context"

// WithElicitation returns ctx carrying fn, which answers the elicitations
// the server sends for the call made with ctx in place of the server's
// Options.Elicitation: the bridge's MCP endpoints pass them on to the
// client that made the call. The server is sent Options.Elicitation's
// capability only: with Options.Elicitation nil, it elicits nothing.
//
// An elicitation is tied to its call when the server sends it in the
// call's answer (Streamable HTTP) or as the call's multi round-trip result
// (2026-07-28). One a stdio (or legacy HTTP+SSE) server sends on its own
// goes to the fn of the calls under way when they are all of one caller
// (WithCaller), and is answered by Options.Elicitation otherwise.
func WithElicitation(ctx context.Context, fn ElicitFunc) context.Context {
	return withHook(ctx, func(h *Hooks) { h.Elicit = fn })
}

// ElicitationFrom returns the ElicitFunc of WithElicitation, or nil.
func ElicitationFrom(ctx context.Context) ElicitFunc {
	return hooksOf(ctx).Elicit
}

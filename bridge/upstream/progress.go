package upstream

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/mark3labs/mcp-go/mcp"
)

// Progress is one notifications/progress of a call.
type Progress struct {
	Progress float64
	Total    float64 // 0 when the server does not know
	Message  string
}

// ProgressFunc receives the progress notifications of a call. It runs on
// the transport's reader goroutine: it must return at once, and never call
// the server.
type ProgressFunc func(Progress)

// ProgressFrom returns the progress function ctx carries (WithProgress),
// nil when it carries none: for a wrapper that adds its own and passes
// each notification on, and for a Caller that is not an Upstream.
func ProgressFrom(ctx context.Context) ProgressFunc {
	return hooksOf(ctx).Progress
}

// WithProgress returns ctx whose tools/call asks the server for progress
// notifications (a progressToken of its own in params._meta) and hands
// each to fn while the call is under way.
func WithProgress(ctx context.Context, fn ProgressFunc) context.Context {
	return withHook(ctx, func(h *Hooks) { h.Progress = fn })
}

// progressCalls routes progress notifications to the calls under way, by
// token: tokens are unique in the process, so one table serves every
// server and session.
var progressCalls = struct {
	next  atomic.Int64
	calls sync.Map // token → ProgressFunc
}{}

// progressToken registers the progress function ctx carries, if any, and
// returns its token and the function that unregisters it.
func progressToken(ctx context.Context) (string, func()) {
	fn := ProgressFrom(ctx)
	if fn == nil {
		return "", func() {}
	}
	token := "mcpo-" + strconv.FormatInt(progressCalls.next.Add(1), 10)
	progressCalls.calls.Store(token, fn)
	return token, func() { progressCalls.calls.Delete(token) }
}

// relayProgress hands a notifications/progress to its call, if it is
// still under way; a token no call of this process made is ignored.
func relayProgress(n mcp.JSONRPCNotification) {
	p := n.Params.AdditionalFields
	token, ok := p["progressToken"].(string)
	if !ok {
		return
	}
	fn, ok := progressCalls.calls.Load(token)
	if !ok {
		return
	}
	var pr Progress
	pr.Progress, _ = p["progress"].(float64)
	pr.Total, _ = p["total"].(float64)
	pr.Message, _ = p["message"].(string)
	fn.(ProgressFunc)(pr)
}

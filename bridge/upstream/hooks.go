package upstream

import "context"

// Hooks are what the client of a call gives its session beside the
// request: where the server's notifications and requests about the call go,
// and whom the call is made for. A call reads them from its context: one
// value (WithHooks) for all of them, which a caller that knows them all
// sets at once, or one at a time with WithProgress, WithLog and the other
// functions of this package, each a copy of the context's Hooks with one
// more set.
type Hooks struct {
	// Progress receives the call's progress notifications (WithProgress).
	Progress ProgressFunc
	// Log receives the server's log messages about the call (WithLog),
	// and LogLevel is the level the call asks for them at (WithLogLevel).
	Log      LogFunc
	LogLevel string
	// Elicit answers the server's elicitations for the call
	// (WithElicitation).
	Elicit ElicitFunc
	// Sample answers the server's sampling requests for the call
	// (WithSampling); with SamplingUndeclared, it refuses them for a
	// caller that cannot sample (WithoutSampling).
	Sample             SampleFunc
	SamplingUndeclared bool
	// RoundTrip is the multi round-trip request the call takes part in
	// (WithRoundTrip).
	RoundTrip *RoundTrip
	// Caller names the client the call is made for (WithCaller).
	Caller any
}

// hooksKey carries a call's *Hooks.
type hooksKey struct{}

// noHooks are the Hooks of a context that carries none.
var noHooks Hooks

// WithHooks returns ctx whose calls take h, in place of any Hooks ctx
// carries. h is read, never written, by the calls: the caller must not
// change it while they are under way.
func WithHooks(ctx context.Context, h *Hooks) context.Context {
	return context.WithValue(ctx, hooksKey{}, h)
}

// HooksFrom returns a copy of the Hooks ctx carries, zero ones when none:
// for a caller that sets more of them and passes them on with WithHooks.
func HooksFrom(ctx context.Context) Hooks { return *hooksOf(ctx) }

// hooksOf returns the Hooks ctx carries, to be read only.
func hooksOf(ctx context.Context) *Hooks {
	if h, ok := ctx.Value(hooksKey{}).(*Hooks); ok {
		return h
	}
	return &noHooks
}

// withHook returns ctx carrying a copy of its Hooks with set applied.
func withHook(ctx context.Context, set func(*Hooks)) context.Context {
	h := *hooksOf(ctx)
	set(&h)
	return WithHooks(ctx, &h)
}

package upstream

import (
	"context"
	"errors"
	"fmt"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"
)

// SampleFunc passes a server's sampling/createMessage request on to a
// client that can sample (an MCP endpoint's client, for its own call). It
// runs on a goroutine of its own and must return when ctx ends. A
// *SamplingRefusedError refuses the request with JSON-RPC error -32601;
// any other error reaches the server as -32603 with its text.
type SampleFunc func(ctx context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error)

// WithSampling returns ctx carrying fn, which answers the sampling
// requests the server sends for the call made with ctx. The server is
// told the client samples only with Options.Sampling set. A request a
// stdio (or legacy HTTP+SSE) server sends on its own, rather than in the
// call's answer, goes to the fn of the calls under way when they are all
// of one caller (WithCaller). A sampling request without a SampleFunc (a
// call of the HTTP API, or one sent on its own while calls of several
// callers are under way) is refused with a *SamplingRefusedError.
func WithSampling(ctx context.Context, fn SampleFunc) context.Context {
	return withHook(ctx, func(h *Hooks) { h.Sample, h.SamplingUndeclared = fn, false })
}

// WithoutSampling returns ctx whose caller cannot sample (an MCP client
// that did not declare it): refuse answers the sampling requests the
// server sends for the call made with ctx, as fn of WithSampling would,
// and the call's tools/call, prompts/get and resources/read do not
// declare the sampling capability on a 2026-07-28 session, which
// declares capabilities per request, so the server learns so (and may
// answer -32021, or do without) rather than ask and be refused. A request
// without a SampleFunc declares none either.
func WithoutSampling(ctx context.Context, refuse SampleFunc) context.Context {
	return withHook(ctx, func(h *Hooks) { h.Sample, h.SamplingUndeclared = refuse, true })
}

// declaresSampling tells whether a request made with ctx on a 2026-07-28
// session declares the sampling capability the Upstream has.
func declaresSampling(ctx context.Context) bool {
	h := hooksOf(ctx)
	return h.Sample != nil && !h.SamplingUndeclared
}

// SamplingFrom returns the SampleFunc of WithSampling or WithoutSampling,
// or nil.
func SamplingFrom(ctx context.Context) SampleFunc {
	return hooksOf(ctx).Sample
}

// SamplingRefusedError refuses a server's sampling request that nobody can
// answer. The server gets JSON-RPC error -32601 (method not found) whose
// message names the Reason.
type SamplingRefusedError struct {
	// Reason says why the request cannot be passed on.
	Reason string
}

func (e *SamplingRefusedError) Error() string {
	return "sampling/createMessage is not relayed: " + e.Reason
}

// errSamplingUntied refuses a sampling request that came with no call's
// SampleFunc.
var errSamplingUntied = &SamplingRefusedError{Reason: "no MCP client to ask: the request is not tied to a call made at an MCP endpoint " +
	"(a call of the HTTP API, or a request the server sent on its own while calls of other clients or of the HTTP API were under way)"}

// sampler adapts the SampleFunc of the call to mcp-go's SamplingHandler.
type sampler struct {
	log func() *zap.Logger
	// sole finds the call a request the server sent on its own is for
	// (Upstream.soleCaller); nil for none.
	sole func(meta *mcp.Meta) (context.Context, string)
}

// CreateMessage implements client.SamplingHandler.
func (h sampler) CreateMessage(ctx context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	ctx, release := untied(ctx, string(mcp.MethodSamplingCreateMessage), func(ctx context.Context) bool { return SamplingFrom(ctx) != nil },
		func() (context.Context, string) { return soleOf(h.sole, req.Request.Params.Meta) }, h.log())
	defer release()
	fn := SamplingFrom(ctx)
	if fn == nil {
		h.log().Info("sampling refused", zap.String("reason", errSamplingUntied.Reason))
		return nil, errSamplingUntied
	}
	res, err := fn(ctx, req)
	if refused := (*SamplingRefusedError)(nil); errors.As(err, &refused) {
		h.log().Info("sampling refused", zap.String("reason", refused.Reason))
		return nil, err
	}
	if err != nil {
		h.log().Warn("sampling failed", zap.Error(err))
		return nil, fmt.Errorf("sampling: %w", err)
	}
	if res == nil {
		return nil, errors.New("sampling: the client answered nothing")
	}
	h.log().Info("sampling answered", zap.String("model", res.Model), zap.String("stop_reason", res.StopReason))
	return res, nil
}

// refuseSampling turns a refused sampling request's error into its
// JSON-RPC error -32601: mcp-go's transports answer every other error of a
// request handler with -32603.
func refuseSampling(next transport.RequestHandler) transport.RequestHandler {
	return func(ctx context.Context, req transport.JSONRPCRequest) (*transport.JSONRPCResponse, error) {
		resp, err := next(ctx, req)
		if refused := (*SamplingRefusedError)(nil); errors.As(err, &refused) {
			return transport.NewJSONRPCErrorResponse(req.ID, mcp.METHOD_NOT_FOUND, refused.Error(), nil), nil
		}
		return resp, err
	}
}

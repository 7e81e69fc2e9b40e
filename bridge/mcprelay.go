package bridge

// Sampling requests a server sends during a call made at an MCP endpoint
// are passed on to the client that made the call, when it is of a
// 2025-11-25 session that declared sampling: mcp-go sends the client
// sampling/createMessage on the call's stream and its answer goes back to
// the server. The server is told the proxy samples only when its
// configuration says so (sampling relay); every request that cannot be
// passed on is refused with JSON-RPC error -32601 naming why: a client
// without the capability, or a 2026-07-28 client's call whose server sent
// the request on its own rather than in an input_required result (those
// are passed on in the call's answer: mcpface_rounds.go), and in the
// upstream a call of the HTTP API or a request not tied to a call (a
// stdio server's, sent on its own while calls of other clients or of the
// HTTP API are under way: see upstream.WithCaller).

import (
	"context"
	"fmt"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// Why a call's sampling requests cannot be passed on to its client.
const (
	samplingModernClient = "the MCP client that made the call speaks 2026-07-28, which is asked for input only in a call's input_required result, and the server sent its request on its own"
	samplingUndeclared   = "the MCP client that made the call did not declare sampling"
)

// samplingOf returns the function that answers the sampling requests of a
// call made by the client who: one that asks that client, or one that
// refuses saying why it cannot be asked; and whether the client declared
// sampling.
func (f *mcpFace) samplingOf(who requester) (fn upstream.SampleFunc, declared bool) {
	if info := who.info; info != nil {
		if info.ClientCapabilities == nil || info.ClientCapabilities.Sampling == nil {
			return refuseUndeclared, false
		}
		return refuseModernClient, true
	}
	if caps, ok := who.capabilities(); !ok || caps.Sampling == nil {
		return refuseUndeclared, false
	}
	return f.sample, true
}

// sample asks the client of ctx to sample what the server asks.
func (f *mcpFace) sample(ctx context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	res, err := f.mcp.RequestSampling(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("asking the client: %w", err)
	}
	return res, nil
}

// The refusals of samplingOf, made once.
var (
	refuseUndeclared   = refuseSampling(samplingUndeclared)
	refuseModernClient = refuseSampling(samplingModernClient)
)

// refuseSampling returns a SampleFunc that refuses every request for
// reason.
func refuseSampling(reason string) upstream.SampleFunc {
	return func(context.Context, mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
		return nil, &upstream.SamplingRefusedError{Reason: reason}
	}
}

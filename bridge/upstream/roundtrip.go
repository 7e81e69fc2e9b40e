package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mark3labs/mcp-go/mcp"
)

// RoundTrip is one round of a multi round-trip request (protocol
// 2026-07-28) that the caller takes part in: a tools/call, prompts/get or
// resources/read whose server answers input_required, asking for
// elicitations, sampling or roots before it completes.
//
// Without one, mcp-go's client answers such a result itself (with the
// elicitation policy, the sampling relay and the configured roots) and
// sends the request again until it completes. With one, the request
// carries the round's answers and state, and a result asking for input
// ends the request with an *InputRequiredError holding the server's
// requests and state, for the caller to answer and send back in the next
// round: a proxy's client answers them.
type RoundTrip struct {
	// InputResponses are the answers to the server's input requests of the
	// previous round, keyed by their IDs, each as the server reads it; nil
	// on the first round.
	InputResponses map[string]json.RawMessage
	// RequestState is the state of the server's previous input_required
	// result, echoed; empty on the first round.
	RequestState string
	// Asks tells whether the caller answers the server's input requests
	// of method (elicitation/create, sampling/createMessage, roots/list),
	// of those the Upstream declares it answers (Options.Elicitation,
	// Sampling and Roots). The Upstream answers the others as it answers them for a caller of
	// the HTTP API: the elicitation policy, the configured roots, and
	// sampling through the function of WithSampling (refused without
	// one), sending the request again as long as nothing is left for the
	// caller. Nil asks the caller nothing.
	Asks func(method mcp.MCPMethod) bool
}

// WithRoundTrip returns a context whose tools/call, prompts/get and
// resources/read take part in a multi round-trip request as rt says.
func WithRoundTrip(ctx context.Context, rt *RoundTrip) context.Context {
	return withHook(ctx, func(h *Hooks) { h.RoundTrip = rt })
}

// roundTripOf returns the round of method's request under ctx, nil when
// the caller takes no part (mcp-go answers the server's input requests).
func roundTripOf(ctx context.Context, method mcp.MCPMethod) *RoundTrip {
	if !asksInput(method) {
		return nil
	}
	return hooksOf(ctx).RoundTrip
}

// asksInput tells whether a server may answer requests of method asking
// for input (2026-07-28).
func asksInput(method mcp.MCPMethod) bool {
	switch method {
	case mcp.MethodToolsCall, mcp.MethodPromptsGet, mcp.MethodResourcesRead:
		return true
	}
	return false
}

// into returns params with the round's answers and state in place of those
// mcp-go put there (it sends none on the request's first send). Params it
// cannot read are returned as they are.
func (rt *RoundTrip) into(params any) any {
	if len(rt.InputResponses) == 0 && rt.RequestState == "" {
		return params
	}
	b, err := json.Marshal(params)
	if err != nil {
		return params
	}
	var p map[string]json.RawMessage
	if json.Unmarshal(b, &p) != nil || p == nil {
		return params
	}
	delete(p, "inputResponses")
	delete(p, "requestState")
	if len(rt.InputResponses) > 0 {
		answers, err := json.Marshal(rt.InputResponses)
		if err != nil {
			return params
		}
		p["inputResponses"] = answers
	}
	if rt.RequestState != "" {
		state, _ := json.Marshal(rt.RequestState)
		p["requestState"] = state
	}
	return p
}

// maxLocalRounds bounds the rounds of one request that the Upstream
// answers alone, as mcp-go's client bounds its own.
const maxLocalRounds = 10

// rounds sends a request taking part in a multi round-trip request: once
// sends it with a round's answers and state. A result asking for input
// comes back as an *InputRequiredError with the requests the caller
// answers, and the answers given here (Answered) for the caller to send
// back beside its own; when nothing is left for the caller, the request
// is sent again with the answers given here, up to maxLocalRounds times.
func (s *session) rounds(ctx context.Context, rt *RoundTrip, once func(rt *RoundTrip) (json.RawMessage, error)) (json.RawMessage, error) {
	for range maxLocalRounds {
		res, err := once(rt)
		if err == nil {
			return res, nil
		}
		var ir *InputRequiredError
		if !errors.As(err, &ir) || len(ir.Requests) == 0 {
			return res, err // a result, an error, or a server shedding load
		}
		asked, answered := map[string]json.RawMessage{}, map[string]json.RawMessage{}
		for id, raw := range ir.Requests {
			var req mcp.InputRequest
			if err := json.Unmarshal(raw, &req); err != nil {
				return nil, fmt.Errorf("input request %q: %w", id, err)
			}
			if rt.Asks != nil && s.answers.declares(req.Method) && rt.Asks(req.Method) {
				asked[id] = raw
				continue
			}
			ans, err := s.answer(ctx, req)
			if err != nil {
				return nil, fmt.Errorf("input request %q (%s): %w", id, req.Method, err)
			}
			if answered[id], err = json.Marshal(ans); err != nil {
				return nil, fmt.Errorf("input request %q (%s): encoding the answer: %w", id, req.Method, err)
			}
		}
		if len(asked) > 0 {
			ir.Requests, ir.Answered = asked, answered
			return nil, ir
		}
		rt = &RoundTrip{InputResponses: answered, RequestState: ir.RequestState, Asks: rt.Asks}
	}
	return nil, fmt.Errorf("the server asked for input more than %d times in a row", maxLocalRounds)
}

// newInputRequired is the error of a result asking for input: result is
// the server's, read for its requests and state.
func newInputRequired(result json.RawMessage) *InputRequiredError {
	var r struct {
		ResultType    string                     `json:"resultType"`
		InputRequests map[string]json.RawMessage `json:"inputRequests"`
		RequestState  string                     `json:"requestState"`
	}
	_ = json.Unmarshal(result, &r)
	if r.ResultType == "" {
		r.ResultType = string(mcp.ResultTypeInputRequired)
	}
	return &InputRequiredError{ResultType: r.ResultType, Requests: r.InputRequests, RequestState: r.RequestState}
}

// inputAnswers answers a server's input requests as mcp-go's client does
// with the same handlers (see dialer.initialize): nil ones answer nothing.
type inputAnswers struct {
	elicit *elicitor
	sample *sampler
	roots  *rootsList
}

// declares tells whether the Upstream declares the capability of answering
// requests of method: the caller is asked only what the configuration
// lets the server ask.
func (a inputAnswers) declares(method mcp.MCPMethod) bool {
	switch method {
	case mcp.MethodElicitationCreate:
		return a.elicit != nil
	case mcp.MethodSamplingCreateMessage:
		return a.sample != nil
	case mcp.MethodListRoots:
		return a.roots != nil
	}
	return false
}

// answer answers one input request.
func (s *session) answer(ctx context.Context, req mcp.InputRequest) (any, error) {
	a := s.answers
	switch {
	case req.Method == mcp.MethodElicitationCreate && a.elicit != nil && req.Elicitation != nil:
		return a.elicit.Elicit(ctx, mcp.ElicitationRequest{Params: *req.Elicitation})
	case req.Method == mcp.MethodSamplingCreateMessage && a.sample != nil && req.Sampling != nil:
		return a.sample.CreateMessage(ctx, mcp.CreateMessageRequest{CreateMessageParams: *req.Sampling})
	case req.Method == mcp.MethodListRoots && a.roots != nil:
		return a.roots.ListRoots(ctx, mcp.ListRootsRequest{})
	}
	return nil, fmt.Errorf("%s is not answered: this server's configuration declares no such capability (settings elicitation, sampling and roots)", req.Method)
}

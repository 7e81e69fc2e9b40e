package bridge

// Multi round-trip requests (protocol 2026-07-28) at an MCP endpoint: a
// server of the endpoint that answers a 2026-07-28 client's tools/call or
// prompts/get with input_required, asking for elicitations or sampling,
// has the endpoint answer the client the same way, with the requests the
// client declared it answers; the client's next round carries its
// answers, which go back to the server with the server's state.
//
// What the client is not asked, the upstream answers as it does for a
// call of the HTTP API: the elicitation policy, the configured roots
// (never the client's: they bound what a server may touch on the proxy's
// machine), sampling refused. Those answers travel with the client to the
// next round, inside the endpoint's requestState, which is signed: a
// client cannot forge the roots a server gets, nor send a state to another
// server or tool than the one that made it.
//
// A 2025-11-25 client is asked through requests of the endpoint's own
// (mcpface_elicit.go, mcprelay.go): mcp-go's client answers the server's
// round trips with them.

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// roundStateKey signs the endpoint's requestState. It lives as long as the
// process, so that a round trip outlives a reload.
var roundStateKey = newKey("the MCP endpoint's request states")

// roundState is what the endpoint's requestState carries.
type roundState struct {
	// Server and Name are the server and the tool or prompt (as the
	// server names it) of the request the state belongs to.
	Server string `json:"s"`
	Name   string `json:"n"`
	// State is the server's requestState.
	State string `json:"u,omitempty"`
	// Answered are the answers the upstream gave to the round's requests
	// that the client was not asked.
	Answered map[string]json.RawMessage `json:"a,omitempty"`
	// Park is the ID of the parked call the round resumes (see parked),
	// and Round the number of the round that gave the state; State and
	// Answered are then empty.
	Park  string `json:"p,omitempty"`
	Round int    `json:"r,omitempty"`
}

// roundStatePrefix begins every requestState the endpoint gives.
const roundStatePrefix = "mcpo1."

// seal returns the requestState carrying rs.
func (rs *roundState) seal() string {
	b, _ := json.Marshal(rs) // strings and JSON values only
	payload := base64.RawURLEncoding.EncodeToString(b)
	return roundStatePrefix + payload + "." + signRoundState(payload)
}

func signRoundState(payload string) string {
	m := hmac.New(sha256.New, roundStateKey)
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// errRoundState refuses a requestState the endpoint did not give for the
// request.
var errRoundState = errors.New("requestState was not given by this endpoint for this request, or was altered: " +
	"send the request again without inputResponses and requestState to start over")

// openRoundState returns what a requestState the endpoint gave for a
// request of server's name carries.
func openRoundState(state, server, name string) (*roundState, error) {
	rest, ok := strings.CutPrefix(state, roundStatePrefix)
	payload, sig, cut := strings.Cut(rest, ".")
	if !ok || !cut || !hmac.Equal([]byte(sig), []byte(signRoundState(payload))) {
		return nil, errRoundState
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	var rs roundState
	if err != nil || json.Unmarshal(b, &rs) != nil || rs.Server != server || rs.Name != name {
		return nil, errRoundState
	}
	return &rs, nil
}

// faceRound is a request of a 2026-07-28 client, which takes part in a
// multi round trip.
type faceRound struct {
	// up is the round of a 2026-07-28 server's multi round trip: the
	// client's answers beside the upstream's, and the server's state.
	up upstream.RoundTrip
	// park is the parked call the request resumes, nil for none; answers
	// are then the client's inputResponses.
	park    *parked
	answers map[string]json.RawMessage
	// caps are the capabilities the client declared for the request.
	caps *mcp.ClientCapabilities
}

// requester is the client that made a request: on 2026-07-28 the
// request's protocol information, on 2025-11-25 its session. The helpers
// of a request take it looked up once.
type requester struct {
	info    *server.RequestProtocolInfo // nil on 2025-11-25
	session server.ClientSession        // nil on 2026-07-28, or without one
}

// modernRequest tells whether the request of ctx is of the 2026-07-28 era:
// by the direct path's protocol information (fastContext), or mcp-go's.
func modernRequest(ctx context.Context) bool {
	if fr := faceRequestOf(ctx); fr != nil && fr.info.Modern {
		return true
	}
	return mcp.IsModernProtocol(server.RequestProtocolVersion(ctx))
}

// requesterOf returns the client of the request of ctx: a 2026-07-28
// request's protocol information is the direct path's (fastContext) or
// mcp-go's.
func requesterOf(ctx context.Context) requester {
	if fr := faceRequestOf(ctx); fr != nil && fr.info.Modern {
		return requester{info: &fr.info}
	}
	if info := server.RequestProtocolInfoFromContext(ctx); info != nil && info.Modern {
		return requester{info: info}
	}
	return requester{session: server.ClientSessionFromContext(ctx)}
}

// capabilities returns what a 2025-11-25 client declared; false when
// unknown (on 2026-07-28, info has them per request).
func (r requester) capabilities() (mcp.ClientCapabilities, bool) {
	s, ok := r.session.(server.SessionWithClientInfo)
	if !ok {
		return mcp.ClientCapabilities{}, false
	}
	return s.GetClientCapabilities(), true
}

// asking sets the hooks h of a request of client who to server's name (a
// tool or a prompt) so that the server's requests for input reach that
// client where they can (even a stdio server's, not tied to the request,
// when the client is its only caller: see callerFor): a 2025-11-25
// client's through requests of the endpoint's own; a 2026-07-28 client's
// in the request's answer, the request being the round fr (nil for a
// 2025-11-25 client) given the client's params p.
func (f *mcpFace) asking(ctx context.Context, who requester, server, name string, p mcp.MultiRoundTripParams, h *upstream.Hooks) (*faceRound, error) {
	fr, err := f.roundOf(ctx, who, server, name, p)
	if err != nil {
		return nil, err
	}
	if fr != nil {
		h.RoundTrip = &fr.up
	}
	h.Elicit = f.elicitationOf(who)
	// An undeclared capability is refused, and a 2026-07-28 server learns
	// so (capabilities are per request).
	sample, declared := f.samplingOf(who)
	h.Sample, h.SamplingUndeclared = sample, !declared
	h.Caller = f.callerFor(who)
	return fr, nil
}

// newFaceRound returns the place for the round of the request of ctx: its
// faceRequest's for the first, the one a request's message is.
func newFaceRound(ctx context.Context) *faceRound {
	if fr := faceRequestOf(ctx); fr != nil && !fr.roundTaken {
		fr.roundTaken = true
		return &fr.round
	}
	return new(faceRound)
}

// roundOf returns the round that a request of ctx for server srv's name (a
// tool or a prompt) is, given the client's params: nil for a client of
// 2025-11-25. The client's answers go to the server beside the upstream's
// of the state, or to the parked call the state names.
func (f *mcpFace) roundOf(ctx context.Context, who requester, srv, name string, p mcp.MultiRoundTripParams) (*faceRound, error) {
	info := who.info
	if info == nil {
		return nil, nil
	}
	fr := newFaceRound(ctx)
	*fr = faceRound{up: upstream.RoundTrip{Asks: asksOf(info.ClientCapabilities)}, caps: info.ClientCapabilities}
	var answers map[string]json.RawMessage // none on a first round
	if len(p.InputResponses) > 0 {
		answers = make(map[string]json.RawMessage, len(p.InputResponses))
	}
	for id, ans := range p.InputResponses {
		b, err := json.Marshal(ans) // as the client sent it
		if err != nil {
			return nil, fmt.Errorf("inputResponses %q: %w", id, err)
		}
		answers[id] = b
	}
	if p.RequestState == "" {
		fr.up.InputResponses = answers
		return fr, nil
	}
	rs, err := openRoundState(p.RequestState, srv, name)
	if err != nil {
		return nil, err
	}
	if rs.Park != "" {
		if fr.park, err = f.parks.resume(ctx, rs, srv, name); err != nil {
			return nil, err
		}
		fr.answers = answers
		return fr, nil
	}
	fr.up.RequestState = rs.State
	fr.up.InputResponses = rs.Answered
	if fr.up.InputResponses == nil {
		fr.up.InputResponses = make(map[string]json.RawMessage, len(answers))
	}
	for id, ans := range answers {
		if _, ours := fr.up.InputResponses[id]; ours {
			return nil, fmt.Errorf("inputResponses answers %q, which the endpoint answered itself", id)
		}
		fr.up.InputResponses[id] = ans
	}
	return fr, nil
}

// run runs a request of the client of ctx to st's name (a tool or a
// prompt) with do. A round of a 2026-07-28 client's whose server may ask
// for input runs it as a parked call, or resumes the call it parked. The
// server's input requests end the request with asked set: the result
// asking the client for them. do's outcome asks for input when it is an
// *upstream.InputRequiredError (or its error's Cause is).
func (f *mcpFace) run(ctx context.Context, fr *faceRound, st *serverState, name string,
	do func(ctx context.Context) (any, *httpError)) (out any, e *httpError, asked *mcp.MultiRoundTripResult) {
	server := st.cfg.Name
	switch {
	case fr == nil:
		out, e = do(ctx)
		return out, e, nil
	case fr.park != nil:
		out, e, asked = fr.park.round(ctx, fr.answers)
	case parkable(fr.caps, st.cfg.Upstream):
		if p := f.parks.park(ctx, server, name, fr.caps, do); p != nil {
			out, e, asked = p.round(ctx, nil)
			break
		}
		fallthrough
	default:
		out, e = do(ctx)
	}
	ir, _ := out.(*upstream.InputRequiredError)
	if ir == nil && e != nil {
		var cause *upstream.InputRequiredError // not made for calls without an error
		if errors.As(e.Cause, &cause) {
			ir = cause
		}
	}
	if asked != nil || ir == nil {
		return out, e, asked
	}
	res, err := askClient(ir, server, name)
	if err != nil {
		return nil, &httpError{Status: http.StatusBadGateway, Outcome: OutcomeUpstreamError, Cause: err, Detail: errorDetail{Server: server, Message: err.Error()}}, nil
	}
	return nil, nil, &res
}

// parkable tells whether a 2026-07-28 client's request to server is
// parked: when the client declared it answers elicitations or sampling,
// and the server may ask for either (InputAsker).
func parkable(caps *mcp.ClientCapabilities, server Caller) bool {
	if caps == nil || (caps.Elicitation == nil && caps.Sampling == nil) {
		return false
	}
	a, ok := server.(InputAsker)
	return !ok || a.MayAsk()
}

// InputAsker is a Caller that tells whether its server may ask the client
// for input during a request (elicitation, sampling). A Caller that does
// not tell is taken to be one that may.
type InputAsker interface {
	MayAsk() bool
}

// asksOf returns which of a server's input requests go to a client of caps:
// elicitations and sampling requests when it declares them. Roots are the
// operator's.
func asksOf(caps *mcp.ClientCapabilities) func(mcp.MCPMethod) bool {
	var i int
	if caps != nil && caps.Elicitation != nil {
		i |= 1
	}
	if caps != nil && caps.Sampling != nil {
		i |= 2
	}
	return askers[i]
}

// askers are the functions of asksOf, made once rather than for every
// request: bit 0 of the index says that the client elicits, bit 1 that it
// samples.
var askers = func() (a [4]func(mcp.MCPMethod) bool) {
	for i := range a {
		elicits, samples := i&1 != 0, i&2 != 0
		a[i] = func(method mcp.MCPMethod) bool {
			return method == mcp.MethodElicitationCreate && elicits || method == mcp.MethodSamplingCreateMessage && samples
		}
	}
	return a
}()

// askClient returns the result asking the client for the input of ir,
// with the endpoint's state for a request of server's name.
func askClient(ir *upstream.InputRequiredError, server, name string) (mcp.MultiRoundTripResult, error) {
	var res mcp.MultiRoundTripResult
	if len(ir.Requests) > 0 {
		res.InputRequests = make(mcp.InputRequests, len(ir.Requests))
		for id, raw := range ir.Requests {
			var req mcp.InputRequest
			if err := json.Unmarshal(raw, &req); err != nil {
				return res, fmt.Errorf("server %q asked for input %q, which the endpoint cannot pass on: %w", server, id, err)
			}
			res.InputRequests[id] = req
		}
	}
	res.RequestState = (&roundState{Server: server, Name: name, State: ir.RequestState, Answered: ir.Answered}).seal()
	return res, nil
}

package bridge

// A 2026-07-28 client is asked for input only in a request's answer (an
// input_required result), but a 2025-11-25 server asks with requests of
// its own during the call (elicitation/create, sampling/createMessage).
// For a 2026-07-28 client that declared it answers them, such a call is
// parked: it runs on without the client's request, and the server's
// first request ends that request with an input_required result holding
// it, and the endpoint's state naming the call. The client's next round
// carries its answers, which go to the server as the answers to its
// requests; the round waits for the call's result or its next request.
//
// A parked call is held by its endpoint in this process only (a round
// that reaches another process, or the endpoint of a reloaded
// configuration, is told to start over), is bound to its caller, server
// and tool, and ends with its deadline as any call does, when the client
// does not come back within parkedIdle, or when its endpoint closes. Its
// result waits parkedResultTTL for the client's last round.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// Bounds of the parked calls.
const (
	// maxParked is how many calls may be parked at once in the process;
	// past it, a call is not parked, and the server's requests get the
	// answers they get without a client (the elicitation policy,
	// sampling refused).
	maxParked = 1000
	// parkedResultTTL is how long an ended call's outcome waits for the
	// client's round that collects it.
	parkedResultTTL = time.Minute
	// parkedIdle is how long a call waits for the client's next round
	// before it is ended: a client that leaves a round trip does not hold
	// the server's call (and its place under max_concurrent) until the
	// call's deadline.
	parkedIdle = 5 * time.Minute
)

// parks holds the parked calls of an MCP endpoint, by ID. They end when
// the endpoint closes (a reload): the client's next round is told to
// start over.
type parks struct {
	mu     sync.Mutex
	byID   map[string]*parked
	closed bool
}

func newParks() *parks { return &parks{byID: map[string]*parked{}} }

// close ends every parked call.
func (ps *parks) close() {
	ps.mu.Lock()
	ps.closed = true
	calls := ps.byID
	ps.byID = map[string]*parked{}
	ps.mu.Unlock()
	for _, p := range calls {
		p.cancel()
	}
}

// parked is a call of a 2026-07-28 client that runs across its rounds.
type parked struct {
	ps                   *parks // that holds it
	id                   string
	caller, server, name string // who may resume it, and what it calls

	cancel context.CancelFunc // ends the call
	asks   chan *inputAsk     // the server's requests, as they come
	done   chan struct{}      // closed when the call ended: out and e are set
	out    any
	e      *httpError

	// turn is held by the round under way: one at a time.
	turn sync.Mutex
	// pending are the requests the client was asked and has not answered,
	// by the ID the client got.
	pending map[string]*inputAsk
	seq     int
	// rounds counts the states given: only the last one resumes the call.
	rounds atomic.Int32
	// idle ends the call when the client does not come back (parkedIdle).
	idle *time.Timer
	// stream is where the call's notifications go (callStream); nil for
	// a request that has none.
	stream *callStream
}

// inputAsk is one request of the server's, waiting for the client's
// answer.
type inputAsk struct {
	req    mcp.InputRequest
	answer chan json.RawMessage // buffered: the client's answer, once
}

// park starts run as a parked call of the caller of ctx to server's name:
// ctx's values without its end (the call outlives the client's request),
// with the server's elicitations and sampling requests asked of the
// client as caps allow (the others answered as ctx says). It returns nil
// when maxParked calls are parked.
func (ps *parks) park(ctx context.Context, server, name string, caps *mcp.ClientCapabilities,
	run func(ctx context.Context) (any, *httpError)) *parked {
	p := &parked{ps: ps, id: newID(), caller: callerOf(ctx), server: server, name: name,
		asks: make(chan *inputAsk), done: make(chan struct{}), pending: map[string]*inputAsk{}}
	p.stream = streamOf(ctx)
	ctx, p.cancel = context.WithCancel(context.WithoutCancel(ctx))
	ps.mu.Lock()
	if ps.closed || len(ps.byID) >= maxParked {
		ps.mu.Unlock()
		p.cancel()
		return nil
	}
	ps.byID[p.id] = p
	ps.mu.Unlock()

	if caps != nil && caps.Elicitation != nil {
		ctx = upstream.WithElicitation(ctx, p.elicit)
	}
	if caps != nil && caps.Sampling != nil {
		ctx = upstream.WithSampling(ctx, p.sample)
	}
	ctx = upstream.WithCaller(ctx, p) // the call's own caller, as a 2025-11-25 session is
	go func() {
		defer p.cancel()
		p.out, p.e = run(ctx)
		close(p.done)
		time.AfterFunc(parkedResultTTL, func() { ps.drop(p) })
	}()
	return p
}

// resume returns the parked call a round's state names, if the caller of
// ctx may resume it for server's name, and the state is the last round's.
func (ps *parks) resume(ctx context.Context, rs *roundState, server, name string) (*parked, error) {
	ps.mu.Lock()
	p := ps.byID[rs.Park]
	ps.mu.Unlock()
	if p == nil || p.caller != callerOf(ctx) || p.server != server || p.name != name {
		return nil, errors.New("the call this requestState belongs to is not under way here (it ended, or is held by another instance): " +
			"send the request again without inputResponses and requestState to start over")
	}
	if int(p.rounds.Load()) != rs.Round {
		return nil, errors.New("requestState is of an earlier round of the call: send the last round's")
	}
	return p, nil
}

// drop forgets p.
func (ps *parks) drop(p *parked) {
	ps.mu.Lock()
	if ps.byID[p.id] == p {
		delete(ps.byID, p.id)
	}
	ps.mu.Unlock()
}

// ask puts req to the client and waits for its answer, until ctx ends.
func (p *parked) ask(ctx context.Context, req mcp.InputRequest) (json.RawMessage, error) {
	a := &inputAsk{req: req, answer: make(chan json.RawMessage, 1)}
	select {
	case p.asks <- a:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	select {
	case ans := <-a.answer:
		return ans, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the client's answer: %w", context.Cause(ctx))
	}
}

// elicit asks the client what the server asks.
func (p *parked) elicit(ctx context.Context, e upstream.Elicitation) (upstream.ElicitationAnswer, error) {
	params, err := elicitationParams(e)
	if err != nil {
		return upstream.ElicitationAnswer{}, err
	}
	raw, err := p.ask(ctx, mcp.NewElicitationInputRequest(params))
	if err != nil {
		return upstream.ElicitationAnswer{}, err
	}
	var res mcp.ElicitationResult
	if err := json.Unmarshal(raw, &res); err != nil {
		return upstream.ElicitationAnswer{}, fmt.Errorf("the client's answer is no elicitation result: %w", err)
	}
	return elicitationAnswer(&res)
}

// sample asks the client to sample what the server asks.
func (p *parked) sample(ctx context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	raw, err := p.ask(ctx, mcp.NewSamplingInputRequest(req.CreateMessageParams))
	if err != nil {
		return nil, err
	}
	var res mcp.CreateMessageResult
	err = json.Unmarshal(raw, &res)
	if err == nil {
		// Typed, as mcp-go types the answers to its own requests.
		res.Content, err = mcp.ParseSamplingContent(res.Content)
	}
	if err != nil {
		return nil, fmt.Errorf("the client's answer is no sampling result: %w", err)
	}
	return &res, nil
}

// round runs one round of the client's: it passes the client's answers on
// to the requests they answer, then waits for the call's outcome or the
// server's next request, until ctx (the client's request) ends, which ends
// the call. asked is set when the client is asked for input, with the
// state that resumes the call.
func (p *parked) round(ctx context.Context, answers map[string]json.RawMessage) (out any, e *httpError, asked *mcp.MultiRoundTripResult) {
	if !p.turn.TryLock() {
		return nil, &httpError{Status: http.StatusConflict, Outcome: OutcomeRejected, Detail: errorDetail{Server: p.server,
			Message: "another round of this call is under way: wait for its answer"}}, nil
	}
	defer p.turn.Unlock()
	if p.idle != nil {
		p.idle.Stop()
	}
	if p.stream != nil {
		// The call's notifications go to this round's request while it
		// is under way, and nowhere between rounds.
		p.stream.follow(ctx)
		defer p.stream.follow(nil)
	}
	defer func() {
		if asked != nil {
			p.idle = time.AfterFunc(parkedIdle, p.cancel)
		}
	}()
	for id, ans := range answers {
		if a, ok := p.pending[id]; ok {
			a.answer <- ans
			delete(p.pending, id)
		}
	}
	if len(p.pending) > 0 {
		return nil, nil, p.asking() // asked again for what it left out
	}
	select {
	case <-p.done:
		p.ps.drop(p)
		return p.out, p.e, nil
	case a := <-p.asks:
		p.add(a)
		for more := true; more; { // with the others already asked
			select {
			case a := <-p.asks:
				p.add(a)
			default:
				more = false
			}
		}
		return nil, nil, p.asking()
	case <-ctx.Done():
		p.cancel()
		p.ps.drop(p)
		return nil, clientGone, nil
	}
}

// add keeps a request the client is asked.
func (p *parked) add(a *inputAsk) {
	p.seq++
	p.pending["mcpo-"+strconv.Itoa(p.seq)] = a
}

// asking is the result asking the client for the pending requests.
func (p *parked) asking() *mcp.MultiRoundTripResult {
	state := &roundState{Server: p.server, Name: p.name, Park: p.id, Round: int(p.rounds.Add(1))}
	res := &mcp.MultiRoundTripResult{InputRequests: make(mcp.InputRequests, len(p.pending)), RequestState: state.seal()}
	for id, a := range p.pending {
		res.InputRequests[id] = a.req
	}
	return res
}

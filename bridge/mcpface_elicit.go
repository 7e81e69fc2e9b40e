package bridge

// Elicitations a server sends during a call made at an MCP endpoint are
// passed on to the client that made the call, when it is of a 2025-11-25
// session that declared elicitation: mcp-go sends the client
// elicitation/create on the call's stream and its answer goes back to the
// server. The server elicits only when its configuration gives it the
// capability (elicitation decline or defaults); the configured policy
// answers for the HTTP API's calls, for clients without the capability,
// and for elicitations the upstream cannot tie to a call: one a stdio (or
// legacy HTTP+SSE) server sends on its own while calls of other clients,
// or of the HTTP API, are under way (see upstream.WithCaller); while the
// calls under way are all one client's, it goes to that client.

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// faceClient names a client session of a face, the caller of its calls
// (upstream.Hooks.Caller).
type faceClient struct {
	face    *mcpFace
	session string
}

// callerFor is the caller (upstream.Hooks.Caller) of the calls of client
// who, its client session: a request a server sends on its own, with
// nothing tying it to a call (a stdio server's), is passed on to that
// client when its calls are the only ones under way on the server. A
// client of the 2026-07-28 era, to which the endpoint sends no requests
// of its own, is no such caller: nil.
func (f *mcpFace) callerFor(who requester) any {
	s := who.session
	if s == nil || s.SessionID() == "" { // none on 2026-07-28
		return nil
	}
	return faceClient{face: f, session: s.SessionID()}
}

// elicitationOf returns the function that passes a server's elicitation on
// to the client who, or nil when that client cannot be asked (a
// 2026-07-28 client is sent no requests of the endpoint's own).
func (f *mcpFace) elicitationOf(who requester) upstream.ElicitFunc {
	if caps, ok := who.capabilities(); !ok || caps.Elicitation == nil {
		return nil
	}
	return f.elicit
}

// elicit asks the client of ctx what the server asks.
func (f *mcpFace) elicit(ctx context.Context, e upstream.Elicitation) (upstream.ElicitationAnswer, error) {
	params, err := elicitationParams(e)
	if err != nil {
		return upstream.ElicitationAnswer{}, err
	}
	res, err := f.mcp.RequestElicitation(ctx, mcp.ElicitationRequest{Params: params})
	if err != nil {
		return upstream.ElicitationAnswer{}, fmt.Errorf("asking the client: %w", err)
	}
	return elicitationAnswer(res)
}

// elicitationParams are the params of the elicitation/create that asks a
// client what a server asks.
func elicitationParams(e upstream.Elicitation) (mcp.ElicitationParams, error) {
	p := mcp.ElicitationParams{Mode: e.Mode, Message: e.Message, URL: e.URL, ElicitationID: e.ElicitationID}
	if len(e.RequestedSchema) > 0 {
		var schema map[string]any
		if err := json.Unmarshal(e.RequestedSchema, &schema); err != nil {
			return p, fmt.Errorf("the requested schema: %w", err)
		}
		p.RequestedSchema = schema
	}
	return p, nil
}

// elicitationAnswer is a client's answer to an elicitation, for the server.
func elicitationAnswer(res *mcp.ElicitationResult) (upstream.ElicitationAnswer, error) {
	if res == nil {
		return upstream.ElicitationAnswer{}, fmt.Errorf("the client answered nothing")
	}
	ans := upstream.ElicitationAnswer{Action: string(res.Action)}
	if res.Content != nil {
		b, err := json.Marshal(res.Content)
		if err == nil {
			err = json.Unmarshal(b, &ans.Content)
		}
		if err != nil {
			return upstream.ElicitationAnswer{}, fmt.Errorf("the client's answer is not an object: %w", err)
		}
	}
	return ans, nil
}

package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"
)

// Elicitation is a server's request for input from the user
// (elicitation/create): sent on its own on a legacy connection, or as an
// input request of a 2026-07-28 multi round-trip result.
type Elicitation struct {
	// Server is the Spec's Name.
	Server string
	// Mode is "form" (the default) or "url".
	Mode string
	// Message says what is asked and why.
	Message string
	// RequestedSchema is the form's JSON Schema (form mode), as sent.
	RequestedSchema json.RawMessage
	// URL is the page to send the user to, and ElicitationID its
	// identifier (url mode).
	URL           string
	ElicitationID string
}

// The actions an elicitation is answered with.
const (
	ElicitAccept  = "accept"
	ElicitDecline = "decline"
	ElicitCancel  = "cancel"
)

// ElicitationAnswer is the answer to an Elicitation.
type ElicitationAnswer struct {
	// Action is ElicitAccept, ElicitDecline or ElicitCancel.
	Action string
	// Content holds the form's values when the user accepted a form; the
	// Upstream adds the schema's default of every property it leaves out
	// (SEP-1034) before answering the server.
	Content map[string]any
}

// ElicitFunc answers a server's elicitation: the proxy's policy (answer
// for the user, or ask a person). It runs on a goroutine of its own, may
// call the Upstream, and must return when ctx ends.
type ElicitFunc func(ctx context.Context, e Elicitation) (ElicitationAnswer, error)

// elicitor adapts an ElicitFunc to mcp-go's ElicitationHandler.
type elicitor struct {
	fn   ElicitFunc
	name string // the Spec's Name
	log  func() *zap.Logger
	// sole finds the call an elicitation the server sent on its own is
	// for (Upstream.soleCaller); nil for none.
	sole func(meta *mcp.Meta) (context.Context, string)
}

// Elicit implements client.ElicitationHandler.
func (h elicitor) Elicit(ctx context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	p := req.Params
	e := Elicitation{
		Server:        h.name,
		Mode:          p.Mode,
		Message:       p.Message,
		URL:           p.URL,
		ElicitationID: p.ElicitationID,
	}
	if e.Mode == "" {
		e.Mode = mcp.ElicitationModeForm
	}
	if p.RequestedSchema != nil {
		b, err := json.Marshal(p.RequestedSchema)
		if err != nil {
			return nil, fmt.Errorf("elicitation: encoding the requested schema: %w", err)
		}
		e.RequestedSchema = b
	}
	fn := h.fn
	ctx, release := untied(ctx, string(mcp.MethodElicitationCreate), func(ctx context.Context) bool { return ElicitationFrom(ctx) != nil },
		func() (context.Context, string) { return soleOf(h.sole, p.Meta) }, h.log())
	defer release()
	if own := ElicitationFrom(ctx); own != nil {
		fn = own // the call's own client answers
	}
	ans, err := fn(ctx, e)
	if err != nil {
		h.log().Warn("elicitation failed", zap.String("mode", e.Mode), zap.Error(err))
		return nil, fmt.Errorf("elicitation: %w", err)
	}
	res := &mcp.ElicitationResult{}
	switch ans.Action {
	case ElicitAccept:
		res.Action = mcp.ElicitationResponseActionAccept
		if e.Mode == mcp.ElicitationModeForm {
			content, err := withDefaults(e.RequestedSchema, ans.Content)
			if err != nil {
				return nil, fmt.Errorf("elicitation: %w", err)
			}
			res.Content = content
		}
	case ElicitDecline:
		res.Action = mcp.ElicitationResponseActionDecline
	case ElicitCancel:
		res.Action = mcp.ElicitationResponseActionCancel
	default:
		return nil, fmt.Errorf("elicitation: unknown action %q", ans.Action)
	}
	h.log().Info("elicitation answered", zap.String("mode", e.Mode), zap.String("action", ans.Action))
	return res, nil
}

// withDefaults returns content with the default of every property of the
// form's schema that content leaves out (SEP-1034). content is not
// modified.
func withDefaults(schema json.RawMessage, content map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(content))
	for k, v := range content {
		out[k] = v
	}
	if len(schema) == 0 {
		return out, nil
	}
	var s struct {
		Properties map[string]struct {
			Default json.RawMessage `json:"default"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(schema, &s); err != nil {
		return nil, errors.New("the requested schema is not a JSON Schema object")
	}
	for name, p := range s.Properties {
		if _, ok := out[name]; ok || len(p.Default) == 0 {
			continue
		}
		out[name] = p.Default
	}
	return out, nil
}

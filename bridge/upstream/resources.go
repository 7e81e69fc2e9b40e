package upstream

import (
	"context"
	"encoding/json"

	"github.com/mark3labs/mcp-go/mcp"
)

// Resources and prompts pass through: the upstream lists them and reads or
// gets them on request, returning the server's JSON as it was sent, so that
// the proxy can offer them without losing what mcp-go's types do not model.
// mcp-go still sends the requests, so they carry the protocol metadata and
// the standard headers (Mcp-Method, Mcp-Name) of the connection's era, and
// answers multi round-trip results with the elicitation policy.

// ListResources returns every resource the server lists (resources/list,
// all pages), each as the server sent it. A server without resources
// returns an empty list. Errors are as for CallTool.
func (u *Upstream) ListResources(ctx context.Context) ([]json.RawMessage, error) {
	return withSession(ctx, u, mcp.MethodResourcesList, "", func(s *session) ([]json.RawMessage, error) {
		if s.caps.Resources == nil {
			return nil, nil
		}
		return s.listAll(ctx, mcp.MethodResourcesList, "resources", func(ctx context.Context, cursor mcp.Cursor) error {
			req := mcp.ListResourcesRequest{}
			req.Params.Cursor = cursor
			_, err := s.client.ListResourcesByPage(ctx, req)
			return err
		})
	})
}

// ListResourceTemplates returns every resource template the server lists
// (resources/templates/list, all pages), each as the server sent it. A
// server without resources returns an empty list. Errors are as for
// CallTool.
func (u *Upstream) ListResourceTemplates(ctx context.Context) ([]json.RawMessage, error) {
	return withSession(ctx, u, mcp.MethodResourcesTemplatesList, "", func(s *session) ([]json.RawMessage, error) {
		if s.caps.Resources == nil {
			return nil, nil
		}
		return s.listAll(ctx, mcp.MethodResourcesTemplatesList, "resourceTemplates", func(ctx context.Context, cursor mcp.Cursor) error {
			req := mcp.ListResourceTemplatesRequest{}
			req.Params.Cursor = cursor
			_, err := s.client.ListResourceTemplatesByPage(ctx, req)
			return err
		})
	})
}

// ReadResource reads a resource (resources/read) and returns the result as
// the server sent it. Errors are as for CallTool.
func (u *Upstream) ReadResource(ctx context.Context, uri string) (json.RawMessage, error) {
	return withSession(ctx, u, mcp.MethodResourcesRead, uri, func(s *session) (json.RawMessage, error) {
		return s.send(ctx, mcp.MethodResourcesRead, func(ctx context.Context) error {
			req := mcp.ReadResourceRequest{}
			req.Params.URI = uri
			_, err := s.client.ReadResource(ctx, req)
			return err
		})
	})
}

// ListPrompts returns every prompt the server lists (prompts/list, all
// pages), each as the server sent it. A server without prompts returns an
// empty list. Errors are as for CallTool.
func (u *Upstream) ListPrompts(ctx context.Context) ([]json.RawMessage, error) {
	return withSession(ctx, u, mcp.MethodPromptsList, "", func(s *session) ([]json.RawMessage, error) {
		if s.caps.Prompts == nil {
			return nil, nil
		}
		return s.listAll(ctx, mcp.MethodPromptsList, "prompts", func(ctx context.Context, cursor mcp.Cursor) error {
			req := mcp.ListPromptsRequest{}
			req.Params.Cursor = cursor
			_, err := s.client.ListPromptsByPage(ctx, req)
			return err
		})
	})
}

// GetPrompt renders a prompt with args (prompts/get) and returns the result
// as the server sent it. Errors are as for CallTool.
func (u *Upstream) GetPrompt(ctx context.Context, name string, args map[string]string) (json.RawMessage, error) {
	return withSession(ctx, u, mcp.MethodPromptsGet, name, func(s *session) (json.RawMessage, error) {
		return s.send(ctx, mcp.MethodPromptsGet, func(ctx context.Context) error {
			req := mcp.GetPromptRequest{}
			req.Params.Name = name
			req.Params.Arguments = args
			_, err := s.client.GetPrompt(ctx, req)
			return err
		})
	})
}

// Completion asks for the completions of one argument of a prompt or of a
// resource template (completion/complete).
type Completion struct {
	// Ref is the reference, as the protocol has it: {"type":"ref/prompt",
	// "name":...} or {"type":"ref/resource","uri":...}.
	Ref json.RawMessage
	// Argument and Value are the argument completed and what it holds so
	// far.
	Argument, Value string
	// Context holds the values of the arguments already given; nil for
	// none.
	Context map[string]string
}

// Complete asks for completions (completion/complete) and returns the
// result as the server sent it. Errors are as for CallTool.
func (u *Upstream) Complete(ctx context.Context, c Completion) (json.RawMessage, error) {
	return withSession(ctx, u, mcp.MethodCompletionComplete, "", func(s *session) (json.RawMessage, error) {
		return s.send(ctx, mcp.MethodCompletionComplete, func(ctx context.Context) error {
			req := mcp.CompleteRequest{}
			req.Params.Ref = c.Ref
			req.Params.Argument.Name, req.Params.Argument.Value = c.Argument, c.Value
			req.Params.Context.Arguments = c.Context
			_, err := s.client.Complete(ctx, req)
			return err
		})
	})
}

// listAll returns the items of every page of a list, as the server sent
// them.
func (s *session) listAll(ctx context.Context, method mcp.MCPMethod, key string, list func(ctx context.Context, cursor mcp.Cursor) error) ([]json.RawMessage, error) {
	var all []json.RawMessage
	err := s.paginate(ctx, method, key, list, func(items []json.RawMessage) error {
		all = append(all, items...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return all, nil
}

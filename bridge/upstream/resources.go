package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"
)

// Resources and prompts pass through: the upstream lists them and reads or
// gets them on request, returning the server's JSON as it was sent, so that
// the proxy can offer them over REST without losing what mcp-go's types do
// not model. mcp-go still sends the requests, so they carry the protocol
// metadata and the standard headers (Mcp-Method, Mcp-Name) of the
// connection's era, and answers multi round-trip results with the
// elicitation policy.

// ListResources returns every resource the server lists (resources/list,
// all pages), each as the server sent it. A server without resources
// returns an empty list. Errors are as for CallTool.
func (u *Upstream) ListResources(ctx context.Context) ([]json.RawMessage, error) {
	return withSession(u, ctx, "resources/list", func(s *session) ([]json.RawMessage, error) {
		if s.caps.Resources == nil {
			return nil, nil
		}
		return listPages(ctx, s, "resources", func(ctx context.Context, cursor string) error {
			req := mcp.ListResourcesRequest{}
			req.Params.Cursor = mcp.Cursor(cursor)
			_, err := s.client.ListResourcesByPage(ctx, req)
			return err
		})
	})
}

// ReadResource reads a resource (resources/read) and returns the result as
// the server sent it.
func (u *Upstream) ReadResource(ctx context.Context, uri string) (json.RawMessage, error) {
	return withSession(u, ctx, "resources/read", func(s *session) (json.RawMessage, error) {
		return s.request(ctx, "resources/read", func(ctx context.Context) error {
			req := mcp.ReadResourceRequest{}
			req.Params.URI = uri
			_, err := s.client.ReadResource(ctx, req)
			return err
		})
	})
}

// ListPrompts returns every prompt the server lists (prompts/list, all
// pages), each as the server sent it. A server without prompts returns an
// empty list.
func (u *Upstream) ListPrompts(ctx context.Context) ([]json.RawMessage, error) {
	return withSession(u, ctx, "prompts/list", func(s *session) ([]json.RawMessage, error) {
		if s.caps.Prompts == nil {
			return nil, nil
		}
		return listPages(ctx, s, "prompts", func(ctx context.Context, cursor string) error {
			req := mcp.ListPromptsRequest{}
			req.Params.Cursor = mcp.Cursor(cursor)
			_, err := s.client.ListPromptsByPage(ctx, req)
			return err
		})
	})
}

// GetPrompt renders a prompt with args (prompts/get) and returns the result
// as the server sent it.
func (u *Upstream) GetPrompt(ctx context.Context, name string, args map[string]string) (json.RawMessage, error) {
	return withSession(u, ctx, "prompts/get", func(s *session) (json.RawMessage, error) {
		return s.request(ctx, "prompts/get", func(ctx context.Context) error {
			req := mcp.GetPromptRequest{}
			req.Params.Name = name
			req.Params.Arguments = args
			_, err := s.client.GetPrompt(ctx, req)
			return err
		})
	})
}

// withSession runs f on the ready session, counted as a call under way, and
// once more on a new session if the server forgot this one (see CallTool).
func withSession[T any](u *Upstream, ctx context.Context, what string, f func(*session) (T, error)) (T, error) {
	var zero T
	s, err := u.acquire()
	if err != nil {
		return zero, err
	}
	defer u.release()
	res, err := f(s)
	if errors.Is(err, errSessionExpired) && ctx.Err() == nil {
		u.logger().Info("the MCP server forgot the session; starting a new one and sending again",
			zap.String("server", u.spec.Name), zap.String("method", what))
		s.end(err)
		next, werr := u.nextSession(ctx, s)
		if werr != nil {
			return zero, werr
		}
		res, err = f(next)
	}
	return res, u.redact(err)
}

// request sends one request through do, which calls mcp-go, and returns
// the raw result of its last answer (after any multi round-trip). JSON-RPC
// errors come back as *RPCError, a result still asking for input as
// *InputRequiredError.
func (s *session) request(ctx context.Context, method string, do func(context.Context) error) (json.RawMessage, error) {
	cctx, capt := withCapture(ctx)
	err := do(cctx)
	if resp := capt.last(); resp != nil {
		if resp.Error != nil {
			if s.proc == nil && forgotSession(resp.Error) {
				return nil, fmt.Errorf("%w: %s", errSessionExpired, resp.Error.Message)
			}
			return nil, newRPCError(resp.Error)
		}
		if inputRequired(resp.Result) {
			return nil, &InputRequiredError{ResultType: "input_required"}
		}
		return resp.Result, nil
	}
	if err == nil {
		return nil, fmt.Errorf("%s: no response", method)
	}
	if errors.Is(err, transport.ErrSessionTerminated) {
		return nil, fmt.Errorf("%w: %v", errSessionExpired, err)
	}
	if errors.Is(err, transport.ErrTransportClosed) {
		s.end(err)
	}
	return nil, fmt.Errorf("%s: %w", method, err)
}

// maxListPages bounds the pages of one resources/list or prompts/list.
const maxListPages = 1000

// listPages reads every page of a list whose items are under key, sending
// each page's request through do.
func listPages(ctx context.Context, s *session, key string, do func(ctx context.Context, cursor string) error) ([]json.RawMessage, error) {
	method := key + "/list"
	var items []json.RawMessage
	seen := map[string]bool{}
	cursor := ""
	for range maxListPages {
		res, err := s.request(ctx, method, func(ctx context.Context) error { return do(ctx, cursor) })
		if err != nil {
			return nil, err
		}
		var page map[string]json.RawMessage
		if err := json.Unmarshal(res, &page); err != nil {
			return nil, fmt.Errorf("%s: decoding result: %w", method, err)
		}
		var list []json.RawMessage
		if raw := page[key]; raw != nil {
			if err := json.Unmarshal(raw, &list); err != nil {
				return nil, fmt.Errorf("%s: decoding %s: %w", method, key, err)
			}
		}
		items = append(items, list...)
		var next string
		_ = json.Unmarshal(page["nextCursor"], &next)
		if next == "" {
			return items, nil
		}
		if seen[next] {
			return nil, fmt.Errorf("%s repeated a pagination cursor", method)
		}
		seen[next] = true
		cursor = next
	}
	return nil, fmt.Errorf("%s: more than %d pages", method, maxListPages)
}

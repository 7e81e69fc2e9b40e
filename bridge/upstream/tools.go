package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
)

// Tool is one tool as the server described it, with its schemas kept as the
// raw JSON the server sent.
type Tool struct {
	Name        string
	Title       string // the tool's title, or its annotations' title
	Description string

	// InputSchema and OutputSchema are the server's JSON Schemas, byte for
	// byte. OutputSchema is nil when the tool declares none.
	InputSchema  json.RawMessage
	OutputSchema json.RawMessage
	// Annotations holds the tool's behaviour hints (readOnlyHint and the
	// like), nil when absent.
	Annotations json.RawMessage
}

// ServerInfo is what the server says about itself.
type ServerInfo struct {
	Name         string
	Title        string
	Version      string
	Instructions string
	// Protocol is the negotiated protocol version.
	Protocol string
}

// ToolSet is one listing of a server's tools. It is never modified: a new
// listing makes a new ToolSet, so its pointer identifies the listing.
type ToolSet struct {
	Server ServerInfo
	Tools  []*Tool
}

// Bounds on what one tools/list may cost.
const (
	maxToolPages = 1000
	maxTools     = 10000
)

// rawTool is the wire form of a tool, keeping schemas raw.
type rawTool struct {
	Name         string          `json:"name"`
	Title        string          `json:"title"`
	Description  string          `json:"description"`
	InputSchema  json.RawMessage `json:"inputSchema"`
	OutputSchema json.RawMessage `json:"outputSchema"`
	Annotations  json.RawMessage `json:"annotations"`
	Execution    struct {
		TaskSupport string `json:"taskSupport"`
	} `json:"execution"`
}

// errNeedsTasks marks a tool that can only run as a task (2025-11-25
// tasks), which this client does not offer.
var errNeedsTasks = errors.New("it can only run as a task (execution.taskSupport is \"required\"), which caddy-mcpo does not support yet")

type rawToolsPage struct {
	Tools      []json.RawMessage `json:"tools"`
	NextCursor string            `json:"nextCursor"`
}

// errRepeatedCursor marks a server that paginates in a loop.
var errRepeatedCursor = errors.New("tools/list repeated a pagination cursor")

// listTools reads every page of tools/list. The typed result from mcp-go
// only decides which tools survive its own filtering (tools with invalid
// x-mcp-header annotations on 2026-07-28 HTTP connections); everything else
// comes from the raw result, so schemas reach the caller unaltered.
func listTools(ctx context.Context, c *client.Client) ([]*Tool, []string, error) {
	var (
		tools    []*Tool
		warnings []string
		cursor   string
		seen     = map[string]bool{}
		names    = map[string]bool{}
	)
	for page := 0; page < maxToolPages; page++ {
		cctx, capt := withCapture(ctx)
		req := mcp.ListToolsRequest{}
		req.Params.Cursor = mcp.Cursor(cursor)
		typed, err := c.ListToolsByPage(cctx, req)
		resp := capt.last()
		if resp == nil {
			return nil, nil, fmt.Errorf("tools/list: %w", err)
		}
		if resp.Error != nil {
			return nil, nil, fmt.Errorf("tools/list: %w", newRPCError(resp.Error))
		}
		var raw rawToolsPage
		if err := json.Unmarshal(resp.Result, &raw); err != nil {
			return nil, nil, fmt.Errorf("tools/list: decoding result: %w", err)
		}
		var keep map[string]bool
		if err == nil && typed != nil {
			keep = make(map[string]bool, len(typed.Tools))
			for _, t := range typed.Tools {
				keep[t.Name] = true
			}
		}
		for i, rt := range raw.Tools {
			t, err := decodeTool(rt)
			if errors.Is(err, errNeedsTasks) {
				warnings = append(warnings, fmt.Sprintf("tool %q skipped: %v", t.Name, err))
				continue
			}
			if err != nil {
				warnings = append(warnings, fmt.Sprintf("tools/list page %d item %d skipped: %v", page+1, i, err))
				continue
			}
			if keep != nil && !keep[t.Name] {
				warnings = append(warnings, fmt.Sprintf("tool %q skipped: its x-mcp-header annotations are invalid", t.Name))
				continue
			}
			if names[t.Name] {
				warnings = append(warnings, fmt.Sprintf("tool %q listed twice; the first one is kept", t.Name))
				continue
			}
			names[t.Name] = true
			tools = append(tools, t)
			if len(tools) > maxTools {
				return nil, nil, fmt.Errorf("tools/list: more than %d tools", maxTools)
			}
		}
		if raw.NextCursor == "" {
			return tools, warnings, nil
		}
		if seen[raw.NextCursor] {
			return nil, nil, errRepeatedCursor
		}
		seen[raw.NextCursor] = true
		cursor = raw.NextCursor
	}
	return nil, nil, fmt.Errorf("tools/list: more than %d pages", maxToolPages)
}

// decodeTool reads one raw tool. A tool without a name or with a malformed
// schema is an error; absent schemas become nil. A tool that needs task
// support comes back with errNeedsTasks.
func decodeTool(b json.RawMessage) (*Tool, error) {
	var rt rawTool
	if err := json.Unmarshal(b, &rt); err != nil {
		return nil, err
	}
	if rt.Name == "" {
		return nil, errors.New("tool has no name")
	}
	t := &Tool{
		Name:         rt.Name,
		Title:        rt.Title,
		Description:  rt.Description,
		InputSchema:  nonNull(rt.InputSchema),
		OutputSchema: nonNull(rt.OutputSchema),
		Annotations:  nonNull(rt.Annotations),
	}
	if t.Title == "" && t.Annotations != nil {
		var a struct {
			Title string `json:"title"`
		}
		if json.Unmarshal(t.Annotations, &a) == nil {
			t.Title = a.Title
		}
	}
	if rt.Execution.TaskSupport == "required" {
		return t, errNeedsTasks
	}
	return t, nil
}

// nonNull returns nil for an absent or null JSON value.
func nonNull(b json.RawMessage) json.RawMessage {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return nil
	}
	return b
}

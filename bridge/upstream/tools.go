package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

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
	// TaskSupport is the tool's execution.taskSupport when the server
	// declares task-augmented tools/call (tasks.requests.tools.call):
	// TaskOptional or TaskRequired; "" for a tool that only runs
	// synchronously.
	TaskSupport string
}

// The task support a tool may have (Tool.TaskSupport).
const (
	// TaskOptional: the tool runs synchronously or as a task.
	TaskOptional = "optional"
	// TaskRequired: the tool only runs as a task.
	TaskRequired = "required"
)

// ServerInfo is what the server says about itself.
type ServerInfo struct {
	Name         string
	Title        string
	Version      string
	Instructions string
	// Protocol is the negotiated protocol version.
	Protocol string
	// Resources, Prompts and Completions say whether the server declared
	// those capabilities.
	Resources, Prompts, Completions bool
	// Subscribe says whether the server declared resource subscriptions
	// (resources/subscribe).
	Subscribe bool
}

// ToolSet is one listing of a server's tools. It is never modified: a new
// listing makes a new ToolSet, so its pointer identifies the listing.
type ToolSet struct {
	Server ServerInfo
	Tools  []*Tool
}

// maxTools bounds the tools of one tools/list.
const maxTools = 10000

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
// tasks) of a session that runs none (see session.taskCalls).
var errNeedsTasks = errors.New("it can only run as a task (execution.taskSupport is \"required\"), and the server runs no tasks on this connection (it declares no tasks.requests.tools.call, or the protocol is 2026-07-28, which has no tasks/result)")

// listTools reads every page of tools/list, and returns the tools with
// warnings about those it skipped. mcp-go's typed result only decides
// which tools survive its own filtering (tools with invalid x-mcp-header
// annotations on 2026-07-28 HTTP connections), and is not even decoded
// on a transport that sends no headers (see session.standIn); everything
// else comes from the raw result, so schemas reach the caller unaltered.
func (s *session) listTools(ctx context.Context) ([]*Tool, []string, error) {
	var (
		tools    []*Tool
		warnings []string
		names    = map[string]bool{}
		typed    *mcp.ListToolsResult // mcp-go's reading of the last page
		page     int
	)
	list := func(ctx context.Context, cursor mcp.Cursor) (err error) {
		req := mcp.ListToolsRequest{}
		req.Params.Cursor = cursor
		typed, err = s.client.ListToolsByPage(ctx, req)
		return err
	}
	add := func(items []json.RawMessage) error {
		page++
		var kept map[string]bool // nil: mcp-go could not read the page, or filters nothing
		if typed != nil && s.sendsHeaders() {
			kept = make(map[string]bool, len(typed.Tools))
			for _, t := range typed.Tools {
				kept[t.Name] = true
			}
		}
		for i, item := range items {
			t, err := decodeTool(item, s.taskCalls())
			switch {
			case errors.Is(err, errNeedsTasks):
				warnings = append(warnings, fmt.Sprintf("tool %q skipped: %v", t.Name, err))
			case err != nil:
				warnings = append(warnings, fmt.Sprintf("tools/list page %d item %d skipped: %v", page, i, err))
			case kept != nil && !kept[t.Name]:
				warnings = append(warnings, fmt.Sprintf("tool %q skipped: its x-mcp-header annotations are invalid", t.Name))
			case names[t.Name]:
				warnings = append(warnings, fmt.Sprintf("tool %q listed twice; the first one is kept", t.Name))
			default:
				names[t.Name] = true
				tools = append(tools, t)
			}
		}
		if len(tools) > maxTools {
			return fmt.Errorf("more than %d tools", maxTools)
		}
		return nil
	}
	if err := s.paginate(ctx, mcp.MethodToolsList, "tools", list, add); err != nil {
		return nil, nil, err
	}
	return tools, warnings, nil
}

// callTool calls a tool and returns its result as the server sent it,
// with the _meta entries ctx carries (WithCallMeta), a progressToken
// when ctx carries a ProgressFunc (WithProgress), and on a 2026-07-28
// session the log level ctx asks for (WithLogLevel). Errors are those of
// send.
func (s *session) callTool(ctx context.Context, name string, args json.RawMessage) (*CallResult, error) {
	token, done := progressToken(ctx)
	defer done()
	if token != "" && logOf(ctx) != nil {
		ctx = context.WithValue(ctx, tokenKey{}, token)
	}
	raw, err := s.send(ctx, mcp.MethodToolsCall, func(ctx context.Context) error {
		req := mcp.CallToolRequest{}
		req.Params.Name = name
		req.Params.Arguments = args
		m := callMeta(ctx)
		if level := logLevelOf(ctx); level != "" && mcp.IsModernProtocol(s.info.Protocol) {
			m = maps.Clone(m)
			if m == nil {
				m = map[string]any{}
			}
			m[mcp.MetaKeyLogLevel] = level
		}
		if m != nil || token != "" {
			req.Params.Meta = &mcp.Meta{AdditionalFields: m}
			if token != "" {
				req.Params.Meta.ProgressToken = token
			}
		}
		_, err := s.client.CallTool(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	res, err := decodeCallResult(raw)
	if err != nil {
		var ir *InputRequiredError
		if errors.As(err, &ir) {
			return nil, err
		}
		return nil, fmt.Errorf("decoding tools/call result: %w", err)
	}
	return res, nil
}

// decodeTool reads one raw tool. A tool without a name or with a malformed
// schema is an error; absent schemas become nil. tasks says whether the
// server declares task-augmented tools/call: without it, a tool's task
// support is ignored, and a tool that needs it comes back with
// errNeedsTasks.
func decodeTool(b json.RawMessage, tasks bool) (*Tool, error) {
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
	switch rt.Execution.TaskSupport {
	case TaskRequired, TaskOptional:
		if tasks {
			t.TaskSupport = rt.Execution.TaskSupport
		} else if rt.Execution.TaskSupport == TaskRequired {
			return t, errNeedsTasks
		}
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

package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
)

// Tasks (MCP 2025-11-25, basic/utilities/tasks): a tools/call carrying a
// task parameter is answered at once with a task, whose status the client
// polls (tasks/get), whose result it fetches once the task is done
// (tasks/result), and which it may cancel (tasks/cancel). A task lives on
// the session that started it: a server that restarts forgets it.

// Task is the state of a task as the server last described it.
type Task struct {
	// ID is the server's task id.
	ID string
	// Status is one of the TaskStatus values.
	Status        TaskStatus
	StatusMessage string
	// CreatedAt and LastUpdatedAt are as the server sent them (ISO 8601).
	CreatedAt, LastUpdatedAt string
	// PollInterval is how often the server suggests to poll; 0 when it
	// suggests nothing.
	PollInterval time.Duration
}

// TaskStatus is where a task is in its life.
type TaskStatus string

// The statuses of a task.
const (
	TaskWorking       TaskStatus = TaskStatus(mcp.TaskStatusWorking)
	TaskInputRequired TaskStatus = TaskStatus(mcp.TaskStatusInputRequired)
	TaskCompleted     TaskStatus = TaskStatus(mcp.TaskStatusCompleted)
	TaskFailed        TaskStatus = TaskStatus(mcp.TaskStatusFailed)
	TaskCancelled     TaskStatus = TaskStatus(mcp.TaskStatusCancelled)
)

// Terminal says whether the task has ended: completed, failed or
// cancelled.
func (s TaskStatus) Terminal() bool { return mcp.TaskStatus(s).IsTerminal() }

// taskCalls says whether tools run as tasks on the session: the server
// declared task-augmented tools/call, on a protocol before 2026-07-28,
// which removed tasks/result from the core protocol.
func (s *session) taskCalls() bool {
	t := s.caps.Tasks
	return t != nil && t.Requests != nil && t.Requests.Tools != nil && t.Requests.Tools.Call != nil &&
		!mcp.IsModernProtocol(s.info.Protocol)
}

// StartTask calls the named tool with args as a task, asking the server
// to keep it ttl after its creation (0 leaves that to the server), and
// returns the task the server created. Errors are as for CallTool; a
// server that does not declare task-augmented tools/call is refused
// without a request.
func (u *Upstream) StartTask(ctx context.Context, name string, args json.RawMessage, ttl time.Duration) (*Task, error) {
	ctx = withTraceContext(ctx)
	return withSession(ctx, u, mcp.MethodToolsCall, name, func(s *session) (*Task, error) {
		if !s.taskCalls() {
			return nil, fmt.Errorf("server %q does not run tools as tasks on this connection (no tasks.requests.tools.call, or protocol %s)", u.spec.Name, s.info.Protocol)
		}
		s.tasked.Store(true)
		raw, err := s.send(ctx, mcp.MethodToolsCall, func(ctx context.Context) error {
			req := mcp.CallToolRequest{}
			req.Params.Name = name
			req.Params.Arguments = args
			req.Params.Task = &mcp.TaskParams{}
			if ttl > 0 {
				ms := ttl.Milliseconds()
				req.Params.Task.TTL = &ms
			}
			if m := callMeta(ctx); m != nil {
				req.Params.Meta = &mcp.Meta{AdditionalFields: m}
			}
			_, err := s.client.CallTool(ctx, req)
			return err
		})
		if err != nil {
			return nil, err
		}
		var res struct {
			Task *mcp.Task `json:"task"`
		}
		if err := json.Unmarshal(raw, &res); err != nil {
			return nil, fmt.Errorf("decoding the task of tools/call: %w", err)
		}
		if res.Task == nil || res.Task.TaskId == "" {
			return nil, errors.New("tools/call as a task: the server answered with no task")
		}
		return taskOf(res.Task), nil
	})
}

// GetTask returns the state of a task (tasks/get). Errors are as for
// CallTool: an *RPCError when the server does not know the task.
func (u *Upstream) GetTask(ctx context.Context, id string) (*Task, error) {
	return u.taskRequest(ctx, mcp.MethodTasksGet, id, func(ctx context.Context, s *session) error {
		_, err := s.client.GetTask(ctx, mcp.GetTaskRequest{Params: mcp.GetTaskParams{TaskId: id}})
		return err
	})
}

// CancelTask cancels a task (tasks/cancel) and returns its state. Errors
// are as for GetTask.
func (u *Upstream) CancelTask(ctx context.Context, id string) (*Task, error) {
	return u.taskRequest(ctx, mcp.MethodTasksCancel, id, func(ctx context.Context, s *session) error {
		_, err := s.client.CancelTask(ctx, mcp.CancelTaskRequest{Params: mcp.CancelTaskParams{TaskId: id}})
		return err
	})
}

// TaskResult returns the result of a task that has ended (tasks/result):
// that of its tools/call. The server holds the request until the task
// ends. Errors are as for CallTool; a failed task's is an *RPCError.
func (u *Upstream) TaskResult(ctx context.Context, id string) (*CallResult, error) {
	return withSession(ctx, u, mcp.MethodTasksResult, id, func(s *session) (*CallResult, error) {
		raw, err := s.send(ctx, mcp.MethodTasksResult, func(ctx context.Context) error {
			_, err := s.client.TaskResult(ctx, mcp.TaskResultRequest{Params: mcp.TaskResultParams{TaskId: id}})
			return err
		})
		if err != nil {
			return nil, err
		}
		res, err := decodeCallResult(raw)
		if err != nil {
			return nil, fmt.Errorf("decoding tasks/result result: %w", err)
		}
		return res, nil
	})
}

// taskRequest sends a request about task id whose result is a task.
func (u *Upstream) taskRequest(ctx context.Context, method mcp.MCPMethod, id string, do func(ctx context.Context, s *session) error) (*Task, error) {
	return withSession(ctx, u, method, id, func(s *session) (*Task, error) {
		raw, err := s.send(ctx, method, func(ctx context.Context) error { return do(ctx, s) })
		if err != nil {
			return nil, err
		}
		var t mcp.Task
		if err := json.Unmarshal(raw, &t); err != nil {
			return nil, fmt.Errorf("decoding %s result: %w", method, err)
		}
		if t.TaskId == "" {
			t.TaskId = id
		}
		return taskOf(&t), nil
	})
}

// taskOf is the Task of mcp-go's.
func taskOf(t *mcp.Task) *Task {
	out := &Task{ID: t.TaskId, Status: TaskStatus(t.Status), StatusMessage: t.StatusMessage,
		CreatedAt: t.CreatedAt, LastUpdatedAt: t.LastUpdatedAt}
	if t.PollInterval != nil && *t.PollInterval > 0 {
		out.PollInterval = time.Duration(*t.PollInterval) * time.Millisecond
	}
	return out
}

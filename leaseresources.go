package caddymcpo

import (
	"context"
	"encoding/json"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// A lease serves the server's resources, prompts and completions as it
// calls its tools: a shared server's own session, or for a per-user (or
// on-demand) server, the session of the caller, started if need be.

// inSession runs do (a method expression: the Upstream comes first) in the session requests of the caller ctx carries go
// to, with what the configuration adds to each request.
func inSession[T any](ctx context.Context, l *lease, do func(u *upstream.Upstream, ctx context.Context) (T, error)) (res T, err error) {
	ctx = l.callExtras(ctx)
	if us := l.entry.users; us != nil {
		err = us.inSession(ctx, func(u *upstream.Upstream) error {
			res, err = do(u, ctx)
			return err
		})
		return res, err
	}
	return do(l.entry.upstream, ctx)
}

// ListResources lists the server's resources.
func (l *lease) ListResources(ctx context.Context) ([]json.RawMessage, error) {
	return inSession(ctx, l, (*upstream.Upstream).ListResources)
}

// ListResourceTemplates lists the server's resource templates.
func (l *lease) ListResourceTemplates(ctx context.Context) ([]json.RawMessage, error) {
	return inSession(ctx, l, (*upstream.Upstream).ListResourceTemplates)
}

// ReadResource reads a resource of the server.
func (l *lease) ReadResource(ctx context.Context, uri string) (json.RawMessage, error) {
	return inSession(ctx, l, func(u *upstream.Upstream, ctx context.Context) (json.RawMessage, error) {
		return u.ReadResource(ctx, uri)
	})
}

// ListPrompts lists the server's prompts.
func (l *lease) ListPrompts(ctx context.Context) ([]json.RawMessage, error) {
	return inSession(ctx, l, (*upstream.Upstream).ListPrompts)
}

// GetPrompt renders a prompt of the server.
func (l *lease) GetPrompt(ctx context.Context, name string, args map[string]string) (json.RawMessage, error) {
	return inSession(ctx, l, func(u *upstream.Upstream, ctx context.Context) (json.RawMessage, error) {
		return u.GetPrompt(ctx, name, args)
	})
}

// Complete asks the server for completions.
func (l *lease) Complete(ctx context.Context, c upstream.Completion) (json.RawMessage, error) {
	return inSession(ctx, l, func(u *upstream.Upstream, ctx context.Context) (json.RawMessage, error) {
		return u.Complete(ctx, c)
	})
}

// Interface guards.
var (
	_ bridge.ResourceCaller = (*lease)(nil)
	_ bridge.ResourceCaller = (*upstream.Upstream)(nil)
)

// StartTask calls a tool of the server as a task: of a per-user server,
// in the session of the caller ctx carries, which the task's later
// requests (with the same caller) go to as well.
func (l *lease) StartTask(ctx context.Context, name string, args json.RawMessage, ttl time.Duration) (*upstream.Task, error) {
	return inSession(ctx, l, func(u *upstream.Upstream, ctx context.Context) (*upstream.Task, error) {
		return u.StartTask(ctx, name, args, ttl)
	})
}

// GetTask returns the state of a task of the server.
func (l *lease) GetTask(ctx context.Context, id string) (*upstream.Task, error) {
	return inSession(ctx, l, func(u *upstream.Upstream, ctx context.Context) (*upstream.Task, error) {
		return u.GetTask(ctx, id)
	})
}

// TaskResult returns the result of a task of the server that has ended.
func (l *lease) TaskResult(ctx context.Context, id string) (*upstream.CallResult, error) {
	return inSession(ctx, l, func(u *upstream.Upstream, ctx context.Context) (*upstream.CallResult, error) {
		return u.TaskResult(ctx, id)
	})
}

// CancelTask cancels a task of the server.
func (l *lease) CancelTask(ctx context.Context, id string) (*upstream.Task, error) {
	return inSession(ctx, l, func(u *upstream.Upstream, ctx context.Context) (*upstream.Task, error) {
		return u.CancelTask(ctx, id)
	})
}

// Interface guards of tasks.
var (
	_ bridge.TaskCaller = (*lease)(nil)
	_ bridge.TaskCaller = (*upstream.Upstream)(nil)
)

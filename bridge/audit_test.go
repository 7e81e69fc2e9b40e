package bridge

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// ctxCaller is a listCaller whose calls fail once their context is done.
type ctxCaller struct{ *listCaller }

func (c ctxCaller) CallTool(ctx context.Context, tool string, args json.RawMessage) (*upstream.CallResult, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return c.listCaller.CallTool(ctx, tool, args)
}

func TestAuditLine(t *testing.T) {
	for _, tc := range []struct {
		name     string
		path     string
		body     string
		identity *Identity
		canceled bool   // the client is gone before the call
		parent   string // the request's traceparent header
		want     map[string]any
		absent   []string
	}{
		{name: "a call with an identity names the caller by ID alone", path: "/list/echo", body: `{"secret":"s3cr3t"}`,
			identity: &Identity{ID: "u1", Email: "u1@example.com", Name: "U One"},
			want: map[string]any{"server": "list", "tool": "echo", "user": "u1", "outcome": "ok", "status": int64(200),
				"request_bytes": int64(19), "response_bytes": int64(len(`"ok echo"`))},
			absent: []string{"trace_id"}},
		{name: "a traced call has its trace ID", path: "/list/echo", body: `{}`,
			parent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			want:   map[string]any{"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "outcome": "ok"}},
		{name: "an anonymous call has no user", path: "/list/echo", body: `{}`,
			want:   map[string]any{"outcome": "ok", "status": int64(200), "request_bytes": int64(2)},
			absent: []string{"user"}},
		{name: "refused arguments", path: "/list/echo", body: `[1]`,
			want: map[string]any{"tool": "echo", "outcome": "invalid_arguments", "status": int64(422)}},
		{name: "a client gone before the answer has status 0", path: "/list/echo", body: `{}`, canceled: true,
			want: map[string]any{"outcome": "canceled", "status": int64(0), "response_bytes": int64(0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.InfoLevel)
			b, err := New(Config{Servers: []*ServerConfig{{Name: "list", Upstream: ctxCaller{newListCaller("echo")}}}, Audit: zap.New(core)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.identity != nil {
				ctx = WithIdentity(ctx, *tc.identity)
			}
			if tc.canceled {
				cancel()
			}
			r := httptest.NewRequestWithContext(ctx, http.MethodPost, tc.path, strings.NewReader(tc.body))
			if tc.parent != "" {
				r.Header.Set("Traceparent", tc.parent)
			}
			b.Serve(httptest.NewRecorder(), r, tc.path, "")
			entries := logs.All()
			if len(entries) != 1 {
				t.Fatalf("%d audit lines, want 1", len(entries))
			}
			e := entries[0]
			if e.Level != zapcore.InfoLevel || e.Message != "tool call" {
				t.Errorf("line %s %q", e.Level, e.Message)
			}
			fields := e.ContextMap()
			for k, v := range tc.want {
				if fields[k] != v {
					t.Errorf("%s = %#v, want %#v (line %v)", k, fields[k], v, fields)
				}
			}
			for _, k := range tc.absent {
				if _, ok := fields[k]; ok {
					t.Errorf("the line has %s: %v", k, fields)
				}
			}
			for k, v := range fields {
				if s, ok := v.(string); ok && (strings.Contains(s, "s3cr3t") || strings.Contains(s, "example.com")) {
					t.Errorf("%s = %q: an argument or more than the caller's ID", k, s)
				}
			}
		})
	}
}

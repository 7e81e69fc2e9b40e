package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// taskWaitLimit bounds how long a test waits for a task.
const taskWaitLimit = 15 * time.Second

// taskBridge returns a bridge of one server, "fx" at /m/fx, the task
// fixture over Streamable HTTP (the 2025-11-25 protocol, which has
// tasks), with cfg's settings applied.
func taskBridge(t *testing.T, access Access, cfg func(s *ServerConfig)) *Bridge {
	t.Helper()
	u := upstream.New(upstream.Spec{Name: "fx", Transport: upstream.TransportStreamableHTTP,
		URL: fixture.NewStreamableHTTP(t, fixture.Options{Tasks: true}), Protocol: upstream.ProtocolLegacy},
		upstream.Options{}, zaptest.NewLogger(t))
	u.Start()
	t.Cleanup(func() { _ = u.Close() })
	deadline := time.Now().Add(taskWaitLimit)
	for u.Status().State != upstream.StateReady {
		if time.Now().After(deadline) {
			t.Fatalf("fixture not ready: %+v", u.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	s := &ServerConfig{Name: "fx", Upstream: u}
	if cfg != nil {
		cfg(s)
	}
	b, err := New(Config{Servers: []*ServerConfig{s}, Access: access, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// taskRequest serves a request of the caller id ("" for none) to the
// bridge, with header Prefer: respond-async when async.
func taskRequest(b *Bridge, id, method, rel, body string, async bool) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "/m"+rel, strings.NewReader(body))
	if id != "" {
		r = r.WithContext(WithIdentity(r.Context(), Identity{ID: id}))
	}
	if async {
		r.Header.Set("Prefer", "respond-async, wait=5")
	}
	w := httptest.NewRecorder()
	b.Serve(w, r, strings.TrimPrefix(r.URL.Path, "/m"), "/m")
	return w
}

// startTask starts tool with args as the caller id and returns the
// task's path below the mount.
func startTask(t *testing.T, b *Bridge, id, tool, args string) string {
	t.Helper()
	w := taskRequest(b, id, http.MethodPost, "/fx/"+tool, args, true)
	if w.Code != http.StatusAccepted {
		t.Fatalf("start: %d %s", w.Code, w.Body)
	}
	loc := w.Header().Get("Location")
	if !strings.HasPrefix(loc, "/m/fx/tasks/") || len(loc) != len("/m/fx/tasks/")+32 {
		t.Fatalf("Location %q", loc)
	}
	if w.Header().Get("Preference-Applied") != "respond-async" {
		t.Errorf("Preference-Applied %q", w.Header().Get("Preference-Applied"))
	}
	var st taskStatus
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil || st.Status != "working" || st.Tool != tool || st.ID != loc[len("/m/fx/tasks/"):] {
		t.Errorf("status %s (%v)", w.Body, err)
	}
	return strings.TrimPrefix(loc, "/m")
}

// pollTask polls the task at rel as the caller id until it has ended and
// returns the last answer.
func pollTask(t *testing.T, b *Bridge, id, rel string) *httptest.ResponseRecorder {
	t.Helper()
	deadline := time.Now().Add(taskWaitLimit)
	for {
		w := taskRequest(b, id, http.MethodGet, rel, "", false)
		if w.Code != http.StatusAccepted {
			return w
		}
		if w.Header().Get("Retry-After") == "" || w.Header().Get("Location") != "/m"+rel {
			t.Errorf("a working task's answer lacks Retry-After or Location: %v", w.Header())
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s still working", rel)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestTasks_StartedAsyncPolledUntilTheResult(t *testing.T) {
	b := taskBridge(t, Access{}, nil)
	for _, c := range []struct {
		name, tool, args string
		status           int
		body             string
	}{
		{"task-only tool", fixture.TaskOnlyTool, `{"ms":100}`, 200, `"researched for 100 ms"`},
		{"optional tool", fixture.TaskOptionalTool, `{"ms":100}`, 200, `"counted"`},
		{"a tool error is the call's error", fixture.TaskOnlyTool, `{"ms":10,"fail":true}`, 500,
			`{"detail":{"message":"research failed","server":"fx","tool":"research"}}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			rel := startTask(t, b, "", c.tool, c.args)
			w := pollTask(t, b, "", rel)
			if w.Code != c.status || strings.TrimSpace(w.Body.String()) != c.body {
				t.Errorf("ended: %d %s, want %d %s", w.Code, w.Body, c.status, c.body)
			}
			// The outcome stays until it is deleted.
			if again := taskRequest(b, "", http.MethodGet, rel, "", false); again.Code != c.status {
				t.Errorf("second poll %d", again.Code)
			}
			if d := taskRequest(b, "", http.MethodDelete, rel, "", false); d.Code != http.StatusNoContent {
				t.Errorf("DELETE of an ended task: %d %s", d.Code, d.Body)
			}
			if gone := taskRequest(b, "", http.MethodGet, rel, "", false); gone.Code != http.StatusNotFound {
				t.Errorf("GET after DELETE: %d", gone.Code)
			}
		})
	}
}

func TestTasks_DeleteCancelsAWorkingTask(t *testing.T) {
	b := taskBridge(t, Access{}, nil)
	rel := startTask(t, b, "", fixture.TaskOnlyTool, `{"ms":3000}`)
	w := taskRequest(b, "", http.MethodDelete, rel, "", false)
	var st taskStatus
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &st) != nil || st.Status != "cancelled" {
		t.Fatalf("DELETE: %d %s", w.Code, w.Body)
	}
	if w := taskRequest(b, "", http.MethodGet, rel, "", false); w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "was cancelled") {
		t.Errorf("GET of a cancelled task: %d %s", w.Code, w.Body)
	}
}

func TestTasks_ASynchronousCallOfATaskOnlyToolWaitsForItsTask(t *testing.T) {
	b := taskBridge(t, Access{}, func(s *ServerConfig) {
		s.ToolTimeouts = map[string]time.Duration{fixture.TaskOnlyTool: 1500 * time.Millisecond}
	})
	t.Run("ended in time", func(t *testing.T) {
		w := taskRequest(b, "", http.MethodPost, "/fx/"+fixture.TaskOnlyTool, `{"ms":10}`, false)
		if w.Code != http.StatusOK || w.Body.String() != `"researched for 10 ms"` {
			t.Errorf("%d %s", w.Code, w.Body)
		}
	})
	t.Run("past its timeout, 504 with the task to poll", func(t *testing.T) {
		w := taskRequest(b, "", http.MethodPost, "/fx/"+fixture.TaskOnlyTool, `{"ms":2500}`, false)
		loc := w.Header().Get("Location")
		if w.Code != http.StatusGatewayTimeout || !strings.HasPrefix(loc, "/m/fx/tasks/") || !strings.Contains(w.Body.String(), "poll GET "+loc) {
			t.Fatalf("%d %v %s", w.Code, w.Header(), w.Body)
		}
		if end := pollTask(t, b, "", strings.TrimPrefix(loc, "/m")); end.Code != http.StatusOK || end.Body.String() != `"researched for 2500 ms"` {
			t.Errorf("the task after the timeout: %d %s", end.Code, end.Body)
		}
	})
	t.Run("prefer on a tool without tasks is ignored", func(t *testing.T) {
		w := taskRequest(b, "", http.MethodPost, "/fx/echo", `{"message":"hi"}`, true)
		if w.Code != http.StatusOK || w.Body.String() != `"hi"` || w.Header().Get("Preference-Applied") != "" {
			t.Errorf("%d %v %s", w.Code, w.Header(), w.Body)
		}
	})
	t.Run("an optional tool without prefer runs synchronously", func(t *testing.T) {
		w := taskRequest(b, "", http.MethodPost, "/fx/"+fixture.TaskOptionalTool, `{}`, false)
		if w.Code != http.StatusOK || w.Body.String() != `"counted"` || w.Header().Get("Location") != "" {
			t.Errorf("%d %v %s", w.Code, w.Header(), w.Body)
		}
	})
}

func TestTasks_AreBoundToTheCallerWhoStartedThem(t *testing.T) {
	b := taskBridge(t, Access{}, nil)
	rel := startTask(t, b, "alice", fixture.TaskOnlyTool, `{"ms":3000}`)
	for _, c := range []struct {
		name, caller, method string
		status               int
	}{
		{"another caller's GET", "bob", http.MethodGet, http.StatusNotFound},
		{"another caller's DELETE", "bob", http.MethodDelete, http.StatusNotFound},
		{"an anonymous GET", "", http.MethodGet, http.StatusNotFound},
		{"the starter's GET", "alice", http.MethodGet, http.StatusAccepted},
		{"the starter's DELETE", "alice", http.MethodDelete, http.StatusOK},
	} {
		t.Run(c.name, func(t *testing.T) {
			if w := taskRequest(b, c.caller, c.method, rel, "", false); w.Code != c.status {
				t.Errorf("%d %s, want %d", w.Code, w.Body, c.status)
			}
		})
	}
	// An unknown id answers as another caller's does.
	unknown := taskRequest(b, "bob", http.MethodGet, "/fx/tasks/00000000000000000000000000000000", "", false)
	other := taskRequest(b, "bob", http.MethodGet, rel, "", false)
	if unknown.Code != other.Code || strings.Replace(unknown.Body.String(), "00000000000000000000000000000000", rel[len("/fx/tasks/"):], 1) != other.Body.String() {
		t.Errorf("an unknown id (%d %s) and another caller's (%d %s) differ", unknown.Code, unknown.Body, other.Code, other.Body)
	}
}

func TestTasks_OutcomesExpireAfterTheirTTL(t *testing.T) {
	b := taskBridge(t, Access{}, func(s *ServerConfig) { s.TaskTTL = 500 * time.Millisecond })
	rel := startTask(t, b, "", fixture.TaskOnlyTool, `{"ms":10}`)
	if w := pollTask(t, b, "", rel); w.Code != http.StatusOK {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	deadline := time.Now().Add(taskWaitLimit)
	for taskRequest(b, "", http.MethodGet, rel, "", false).Code != http.StatusNotFound {
		if time.Now().After(deadline) {
			t.Fatal("the outcome outlived its TTL")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestTasks_TheStoreIsBounded(t *testing.T) {
	store := NewTaskStore(TaskLimits{MaxTasks: 1}, nil)
	defer store.Close()
	b := taskBridge(t, Access{}, func(s *ServerConfig) { s.Tasks = store })
	first := startTask(t, b, "", fixture.TaskOnlyTool, `{"ms":3000}`)
	if w := taskRequest(b, "", http.MethodPost, "/fx/"+fixture.TaskOnlyTool, `{"ms":10}`, true); w.Code != http.StatusServiceUnavailable ||
		w.Header().Get("Retry-After") == "" {
		t.Errorf("a start past the limit: %d %v %s", w.Code, w.Header(), w.Body)
	}
	// An ended task makes room.
	if w := taskRequest(b, "", http.MethodDelete, first, "", false); w.Code != http.StatusOK {
		t.Fatalf("DELETE %d", w.Code)
	}
	startTask(t, b, "", fixture.TaskOnlyTool, `{"ms":10}`)
}

func TestTasks_CloseEndsTheWatchers(t *testing.T) {
	store := NewTaskStore(TaskLimits{}, nil)
	b := taskBridge(t, Access{}, func(s *ServerConfig) { s.Tasks = store })
	startTask(t, b, "", fixture.TaskOnlyTool, `{"ms":60000}`)
	done := make(chan struct{})
	go func() { store.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(taskWaitLimit):
		t.Fatal("Close did not end the watcher of a working task")
	}
	if w := startTaskRaw(b); w.Code != http.StatusServiceUnavailable {
		t.Errorf("a start on a closed store: %d %s", w.Code, w.Body)
	}
}

func startTaskRaw(b *Bridge) *httptest.ResponseRecorder {
	return taskRequest(b, "", http.MethodPost, "/fx/"+fixture.TaskOnlyTool, `{"ms":10}`, true)
}

func TestTasks_TaskToolsAreDocumentedWithTheirNote(t *testing.T) {
	b := taskBridge(t, Access{}, nil)
	w := taskRequest(b, "", http.MethodGet, "/fx/openapi.json", "", false)
	var doc struct {
		Paths map[string]map[string]struct {
			Description string                     `json:"description"`
			OperationID string                     `json:"operationId"`
			TaskSupport string                     `json:"x-mcp-task-support"`
			Responses   map[string]json.RawMessage `json:"responses"`
		} `json:"paths"`
		Components struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ tool, support string }{{fixture.TaskOnlyTool, "required"}, {fixture.TaskOptionalTool, "optional"}, {"echo", ""}} {
		op := doc.Paths["/"+c.tool]["post"]
		if _, accepted := op.Responses["202"]; op.TaskSupport != c.support || accepted != (c.support != "") {
			t.Errorf("%s: x-mcp-task-support %q, 202 %v", c.tool, op.TaskSupport, accepted)
		}
	}
	if get, cancel := doc.Paths["/tasks/{id}"]["get"], doc.Paths["/tasks/{id}"]["delete"]; get.OperationID != "get_task" || cancel.OperationID != "cancel_task" {
		t.Errorf("task operations: get %q, delete %q", get.OperationID, cancel.OperationID)
	}
	if doc.Components.Schemas["TaskStatus"] == nil {
		t.Error("no TaskStatus schema")
	}
	if d := doc.Paths["/"+fixture.TaskOnlyTool]["post"].Description; !strings.Contains(d, "Runs as a task") {
		t.Errorf("task-only tool's description %q", d)
	}
	if d := doc.Paths["/"+fixture.TaskOptionalTool]["post"].Description; !strings.Contains(d, "Can run as a task") {
		t.Errorf("optional tool's description %q", d)
	}
	if d := doc.Paths["/echo"]["post"].Description; strings.Contains(d, "task") {
		t.Errorf("echo's description %q", d)
	}
}

func TestPrefersAsync(t *testing.T) {
	for _, c := range []struct {
		values []string
		want   bool
	}{
		{nil, false},
		{[]string{"respond-async"}, true},
		{[]string{"wait=10, Respond-Async"}, true},
		{[]string{"return=minimal", "respond-async; x=1"}, true},
		{[]string{"respond-asynchronously"}, false},
	} {
		h := http.Header{"Prefer": c.values}
		if got := prefersAsync(h); got != c.want {
			t.Errorf("%q: %v", c.values, got)
		}
	}
}

func TestTasks_TheMCPFaceWaitsForTheTaskOfATaskOnlyTool(t *testing.T) {
	b := taskBridge(t, Access{}, nil)
	c := connect(t, serveBridge(t, b).URL+"/m/mcp", "", nil)
	res, err := callMCPTool(c, "fx_"+fixture.TaskOnlyTool, map[string]any{"ms": 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Content) != 1 || res.IsError {
		t.Fatalf("result %+v", res)
	}
	if tc, ok := res.Content[0].(mcp.TextContent); !ok || tc.Text != "researched for 10 ms" {
		t.Errorf("content %+v", res.Content[0])
	}
}

func TestTasks_AResultOverTheStoresBytesFailsItsTask(t *testing.T) {
	store := NewTaskStore(TaskLimits{MaxBytes: 10}, nil)
	defer store.Close()
	b := taskBridge(t, Access{}, func(s *ServerConfig) { s.Tasks = store })
	rel := startTask(t, b, "", fixture.TaskOnlyTool, `{"ms":10}`)
	if w := pollTask(t, b, "", rel); w.Code != http.StatusInsufficientStorage || !strings.Contains(w.Body.String(), "more than the proxy keeps") {
		t.Errorf("%d %s", w.Code, w.Body)
	}
}

// forgetfulCaller runs one task-only tool whose tasks its server forgets
// at once, as a server that restarted does.
type forgetfulCaller struct{ *listCaller }

func (forgetfulCaller) StartTask(context.Context, string, json.RawMessage, time.Duration) (*upstream.Task, error) {
	return &upstream.Task{ID: "remote-1", Status: upstream.TaskWorking}, nil
}
func (forgetfulCaller) GetTask(context.Context, string) (*upstream.Task, error) {
	return nil, &upstream.RPCError{Code: upstream.CodeInvalidParams, Message: "task not found"}
}
func (forgetfulCaller) TaskResult(context.Context, string) (*upstream.CallResult, error) {
	return nil, errors.New("not called")
}
func (forgetfulCaller) CancelTask(context.Context, string) (*upstream.Task, error) {
	return nil, errors.New("not called")
}

func TestTasks_ATaskTheServerForgotFails(t *testing.T) {
	c := forgetfulCaller{newListCaller("long")}
	c.set.Tools[0].TaskSupport = upstream.TaskRequired
	b, err := New(Config{Servers: []*ServerConfig{{Name: "fx", Upstream: c}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rel := startTask(t, b, "", "long", `{}`)
	w := pollTask(t, b, "", rel)
	if w.Code != http.StatusBadGateway || !strings.Contains(w.Body.String(), "the server no longer answers for the task: JSON-RPC error -32602: task not found") {
		t.Errorf("%d %s", w.Code, w.Body)
	}
}

func TestTasks_AToolNamedTasksTakesAnotherSegment(t *testing.T) {
	b, err := New(Config{Servers: []*ServerConfig{{Name: "s", Upstream: newListCaller("tasks")}}})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := b.servers["s"].current(b.log)
	if len(v.routes) != 1 || !strings.HasPrefix(v.routes[0].segment, "tasks_") {
		t.Fatalf("the tool named tasks is at %q", v.routes[0].segment)
	}
	if w := serveBody(b, nil, http.MethodPost, "/s/"+v.routes[0].segment, `{}`); w.Code != http.StatusOK {
		t.Errorf("POST of the tool named tasks: %d %s", w.Code, w.Body)
	}
}

func TestTasks_AStartIsAnAuditedCallAndPollsAreAuditedRequests(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	b := taskBridge(t, Access{}, nil)
	// The same server, with an audit log.
	b, err := New(Config{Servers: []*ServerConfig{{Name: "fx", Upstream: b.servers["fx"].cfg.Upstream}}, Audit: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rel := startTask(t, b, "alice", fixture.TaskOnlyTool, `{"ms":10}`)
	pollTask(t, b, "alice", rel)
	taskRequest(b, "alice", http.MethodDelete, rel, "", false)
	var got []string
	for _, e := range logs.All() {
		f := e.ContextMap()
		got = append(got, fmt.Sprintf("%s %v %v %v %v", e.Message, f["tool"], f["method"], f["status"], f["user"]))
	}
	want := []string{"tool call research <nil> 202 alice"}
	if len(got) < 3 || got[0] != want[0] || !strings.HasPrefix(got[1], "server request <nil> tasks/get ") ||
		got[len(got)-1] != "server request <nil> tasks/cancel 204 alice" {
		t.Errorf("audit lines %q", got)
	}
}

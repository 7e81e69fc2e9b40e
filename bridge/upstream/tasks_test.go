package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// waitTask polls task id until it has ended and returns its last state.
func waitTask(t *testing.T, u *Upstream, id string) *Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	for {
		task, err := u.GetTask(ctx, id)
		if err != nil {
			t.Fatalf("tasks/get: %v", err)
		}
		if task.Status.Terminal() {
			return task
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestUpstream_ListsTaskToolsWithTheirTaskSupport(t *testing.T) {
	for _, c := range []struct {
		name, protocol string
		tasks          bool
		want           map[string]string // tool -> TaskSupport; absent: not listed
	}{
		{"a server declaring task calls lists both", "", true,
			map[string]string{fixture.TaskOnlyTool: TaskRequired, fixture.TaskOptionalTool: TaskOptional, "echo": ""}},
		{"on 2026-07-28 the task-only tool is skipped", ProtocolModern, true,
			map[string]string{fixture.TaskOptionalTool: "", "echo": ""}},
	} {
		t.Run(c.name, func(t *testing.T) {
			spec := stdioSpec(fixture.Options{Tasks: c.tasks})
			if c.protocol != "" {
				spec = Spec{Name: "fx", Transport: TransportStreamableHTTP, URL: fixture.NewStreamableHTTP(t, fixture.Options{Tasks: c.tasks}), Protocol: c.protocol}
			}
			u, _ := start(t, spec, Options{})
			got := map[string]string{}
			for _, tool := range u.Tools().Tools {
				got[tool.Name] = tool.TaskSupport
			}
			if _, listed := got[fixture.TaskOnlyTool]; listed != (c.want[fixture.TaskOnlyTool] != "") {
				t.Errorf("task-only tool listed: %v", listed)
			}
			for name, want := range c.want {
				if ts, ok := got[name]; !ok || ts != want {
					t.Errorf("tool %s: listed %v, task support %q; want %q", name, ok, ts, want)
				}
			}
		})
	}
}

func TestDecodeTool_TaskSupportCountsOnlyWithTheCapability(t *testing.T) {
	for _, c := range []struct {
		name, tool string
		tasks      bool
		want       string
		err        bool
	}{
		{"required with the capability", `{"name":"r","execution":{"taskSupport":"required"}}`, true, TaskRequired, false},
		{"optional with the capability", `{"name":"o","execution":{"taskSupport":"optional"}}`, true, TaskOptional, false},
		{"forbidden with the capability", `{"name":"f","execution":{"taskSupport":"forbidden"}}`, true, "", false},
		{"required without the capability is skipped", `{"name":"r","execution":{"taskSupport":"required"}}`, false, "", true},
		{"optional without the capability runs synchronously", `{"name":"o","execution":{"taskSupport":"optional"}}`, false, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			tool, err := decodeTool(json.RawMessage(c.tool), c.tasks)
			if errors.Is(err, errNeedsTasks) != c.err || (err != nil && !errors.Is(err, errNeedsTasks)) {
				t.Fatalf("err = %v, want errNeedsTasks %v", err, c.err)
			}
			if tool.TaskSupport != c.want {
				t.Errorf("TaskSupport = %q, want %q", tool.TaskSupport, c.want)
			}
		})
	}
}

// taskTransports runs f once per transport that runs tasks: the
// 2026-07-28 protocol has no tasks/result.
func taskTransports(t *testing.T, f func(t *testing.T, spec Spec)) {
	opts := fixture.Options{Tasks: true}
	t.Run("stdio", func(t *testing.T) { f(t, stdioSpec(opts)) })
	t.Run("streamable_http", func(t *testing.T) {
		f(t, Spec{Name: "fx", Transport: TransportStreamableHTTP, URL: fixture.NewStreamableHTTP(t, opts), Protocol: ProtocolLegacy})
	})
	t.Run("sse", func(t *testing.T) { f(t, Spec{Name: "fx", Transport: TransportSSE, URL: fixture.NewSSE(t, opts)}) })
}

func TestUpstream_RunsAToolAsATask(t *testing.T) {
	taskTransports(t, func(t *testing.T, spec Spec) {
		u, _ := start(t, spec, Options{})
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()

		task, err := u.StartTask(ctx, fixture.TaskOnlyTool, json.RawMessage(`{"ms":50}`), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if task.ID == "" || task.Status.Terminal() {
			t.Fatalf("started task = %+v", task)
		}
		if end := waitTask(t, u, task.ID); end.Status != TaskCompleted {
			t.Fatalf("task ended %+v", end)
		}
		res, err := u.TaskResult(ctx, task.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got := text(t, res); got != "researched for 50 ms" || res.IsError {
			t.Errorf("result %q (isError %v)", got, res.IsError)
		}

		// Cancelled while it works.
		task, err = u.StartTask(ctx, fixture.TaskOnlyTool, json.RawMessage(`{"ms":60000}`), 0)
		if err != nil {
			t.Fatal(err)
		}
		if c, err := u.CancelTask(ctx, task.ID); err != nil || c.Status != TaskCancelled {
			t.Fatalf("tasks/cancel = %+v, %v", c, err)
		}
		if end := waitTask(t, u, task.ID); end.Status != TaskCancelled {
			t.Errorf("cancelled task ended %+v", end)
		}

		// A task the server does not know.
		var rpc *RPCError
		if _, err := u.GetTask(ctx, "no-such-task"); !errors.As(err, &rpc) {
			t.Errorf("tasks/get of an unknown task: %v, want an RPCError", err)
		}
	})
}

func TestUpstream_StartTaskOfAServerWithoutTasksIsRefused(t *testing.T) {
	u, _ := start(t, stdioSpec(fixture.Options{}), Options{})
	if _, err := u.StartTask(context.Background(), "echo", json.RawMessage(`{"message":"x"}`), 0); err == nil {
		t.Fatal("a server without task calls started a task")
	}
}

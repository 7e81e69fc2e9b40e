package caddymcpo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"go.uber.org/zap/zaptest"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

func TestMain(m *testing.M) {
	fixture.MaybeServeStdio()
	os.Exit(m.Run())
}

// testWait bounds every wait in these tests.
const testWait = 20 * time.Second

// testPool is a pool of real MCP servers, like the module's.
type testPool struct {
	t *testing.T
	*pool
}

// newTestPool returns an empty pool for one test.
func newTestPool(t *testing.T) *testPool {
	return &testPool{t: t, pool: newPool()}
}

// add leases a server for spec from the pool, started when start is set,
// and returns it and its id. It is released, and waited for, when the test
// ends.
func (p *testPool) add(spec upstream.Spec, start bool) (*upstream.Upstream, string) {
	p.t.Helper()
	l := p.lease(spec, upstream.Options{StartTimeout: testWait})
	if start {
		l.start()
	}
	return l.entry.upstream, l.entry.id
}

// lease leases a server for spec from the pool, as a configuration's
// handler does; it is released, and waited for, when the test ends.
func (p *testPool) lease(spec upstream.Spec, opts upstream.Options) *lease {
	p.t.Helper()
	if err := spec.Validate(); err != nil {
		p.t.Fatal(err)
	}
	l, err := p.acquire(resolved{spec: spec, opts: opts}, owner{log: zaptest.NewLogger(p.t)})
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() {
		_ = l.release()
		p.wait()
	})
	return l
}

// fixtureSpec runs the stdio fixture server under name.
func fixtureSpec(name string, opts fixture.Options) upstream.Spec {
	cmd, args, env := fixture.StdioCommand(opts)
	return upstream.Spec{Name: name, Transport: upstream.TransportStdio, Command: cmd, Args: args, Env: append(os.Environ(), env...)}
}

// waitStatus waits until u's status satisfies ok and returns it.
func waitStatus(t *testing.T, u *upstream.Upstream, what string, ok func(upstream.Status) bool) upstream.Status {
	t.Helper()
	deadline := time.NewTimer(testWait)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond) // Status changes without a state change too
	defer tick.Stop()
	for {
		changed := u.Changed()
		st := u.Status()
		if ok(st) {
			return st
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("server %s: still not %s after %s: %+v", st.Name, what, testWait, st)
		}
	}
}

// isReady reports a ready server.
func isReady(st upstream.Status) bool { return st.State == upstream.StateReady }

// adminResult is what an admin route did with a request: the response it
// wrote, or the error it returned for Caddy to write.
type adminResult struct {
	status int
	header http.Header
	body   []byte
	err    error
}

// serveAdmin sends a request to a's routes the way Caddy's admin endpoint
// does: through an http.ServeMux holding each route's pattern.
func serveAdmin(a *AdminAPI, method, path string) adminResult {
	var res adminResult
	mux := http.NewServeMux()
	for _, route := range a.Routes() {
		mux.Handle(route.Pattern, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			res.err = route.Handler.ServeHTTP(w, r)
		}))
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	res.status, res.header, res.body = rec.Code, rec.Header(), rec.Body.Bytes()
	var apiErr caddy.APIError
	if errors.As(res.err, &apiErr) {
		res.status = apiErr.HTTPStatus
	}
	return res
}

// newTestAdmin returns the admin module over p, as Provision sets it up
// over the module's pool.
func newTestAdmin(t *testing.T, p *testPool) *AdminAPI {
	return &AdminAPI{pool: p.pool, log: zaptest.NewLogger(t)}
}

// callPID asks a fixture server for its process ID.
func callPID(t *testing.T, u *upstream.Upstream) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	res, err := u.CallTool(ctx, "pid", json.RawMessage(`{}`))
	if err != nil {
		t.Fatalf("calling pid: %v", err)
	}
	if len(res.Content) != 1 {
		t.Fatalf("pid answered %+v", res.Content)
	}
	pid, err := strconv.Atoi(res.Content[0].Text)
	if err != nil {
		t.Fatalf("pid answered %q", res.Content[0].Text)
	}
	return pid
}

func TestAdminListsEveryPooledServerSortedByNameThenID(t *testing.T) {
	p := newTestPool(t)
	fx, fxID := p.add(fixtureSpec("fx", fixture.Options{}), true)
	_, dupA := p.add(upstream.Spec{Name: "dup", Transport: upstream.TransportStdio, Command: "never-started", Args: []string{"a"}}, false)
	_, dupB := p.add(upstream.Spec{Name: "dup", Transport: upstream.TransportStdio, Command: "never-started", Args: []string{"b"}}, false)
	waitStatus(t, fx, "ready", isReady)

	res := serveAdmin(newTestAdmin(t, p), http.MethodGet, "/mcpo/servers")
	if res.err != nil || res.status != http.StatusOK {
		t.Fatalf("GET /mcpo/servers: %d %s (%v)", res.status, res.body, res.err)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	var got []adminReport
	if err := json.Unmarshal(res.body, &got); err != nil {
		t.Fatalf("GET /mcpo/servers: %v in %s", err, res.body)
	}
	wantIDs := []string{min(dupA, dupB), max(dupA, dupB), fxID}
	if len(got) != len(wantIDs) {
		t.Fatalf("GET /mcpo/servers lists %d servers, want %d: %s", len(got), len(wantIDs), res.body)
	}
	for i, id := range wantIDs {
		if got[i].ID != id {
			t.Errorf("server %d is %s %q, want id %s", i, got[i].ID, got[i].Name, id)
		}
	}
	if len(fxID) != 12 || strings.Trim(fxID, "0123456789abcdef") != "" {
		t.Errorf("id %q is not 12 hex digits", fxID)
	}

	st := got[2]
	want := adminReport{ID: fxID, ServerReport: bridge.ServerReport{
		Name: "fx", State: upstream.StateReady, Endpoint: fx.Spec().Command,
		Protocol: st.Protocol, Server: fixture.DefaultName + " " + fixture.Version,
		Tools: len(fixture.ToolNames(fixture.Options{})), PID: callPID(t, fx), Since: st.Since,
		LastMessage: st.LastMessage,
	}}
	if st.Protocol == "" || st.Since.IsZero() {
		t.Errorf("protocol %q, since %s: want both set", st.Protocol, st.Since)
	}
	if st.LastMessage == nil || st.LastMessage.After(time.Now()) || st.OldestCall != nil {
		t.Errorf("last_message %v, oldest_call %v: want the time of the server's last answer, and no call under way",
			st.LastMessage, st.OldestCall)
	}
	if st != want {
		t.Errorf("fx is\n%+v, want\n%+v", st, want)
	}
	if idle := got[0]; idle.Name != "dup" || idle.State != upstream.StateIdle || idle.PID != 0 || idle.Tools != 0 {
		t.Errorf("an idle server is %+v", idle)
	}
}

func TestAdminAnswersByIDOrNameAndRefusesWhatItCannotDo(t *testing.T) {
	p := newTestPool(t)
	fx, fxID := p.add(fixtureSpec("fx", fixture.Options{}), true)
	_, dupA := p.add(upstream.Spec{Name: "dup", Transport: upstream.TransportStdio, Command: "never-started", Args: []string{"a"}}, false)
	_, dupB := p.add(upstream.Spec{Name: "dup", Transport: upstream.TransportStdio, Command: "never-started", Args: []string{"b"}}, false)
	waitStatus(t, fx, "ready", isReady)
	a := newTestAdmin(t, p)

	tests := []struct {
		name, method, path string
		status             int
		wantID             string   // the id of the server answered
		errHas             []string // in the error's message
		allow              string
	}{
		{name: "a server by name", method: "GET", path: "/mcpo/servers/fx", status: 200, wantID: fxID},
		{name: "a server by id", method: "GET", path: "/mcpo/servers/" + fxID, status: 200, wantID: fxID},
		{name: "one of two servers of a name by id", method: "GET", path: "/mcpo/servers/" + dupB, status: 200, wantID: dupB},
		{name: "a name two servers share is ambiguous and lists their ids", method: "GET", path: "/mcpo/servers/dup",
			status: 409, errHas: []string{`"dup"`, dupA, dupB}},
		{name: "restarting an ambiguous name is refused", method: "POST", path: "/mcpo/servers/dup/restart",
			status: 409, errHas: []string{dupA, dupB}},
		{name: "an unknown server is not found", method: "GET", path: "/mcpo/servers/nope", status: 404, errHas: []string{`"nope"`}},
		{name: "restarting an unknown server is not found", method: "POST", path: "/mcpo/servers/nope/restart", status: 404},
		{name: "an unknown action is not found", method: "POST", path: "/mcpo/servers/fx/frobnicate", status: 404},
		{name: "the list with a slash is the list", method: "GET", path: "/mcpo/servers/", status: 200},
		{name: "the list takes GET only", method: "POST", path: "/mcpo/servers", status: 405, allow: "GET"},
		{name: "a server takes GET only", method: "DELETE", path: "/mcpo/servers/fx", status: 405, allow: "GET"},
		{name: "restart takes POST only", method: "GET", path: "/mcpo/servers/fx/restart", status: 405, allow: "POST"},
		{name: "refresh takes POST only", method: "GET", path: "/mcpo/servers/fx/refresh", status: 405, allow: "POST"},
		{name: "a server never started cannot be restarted", method: "POST", path: "/mcpo/servers/" + dupA + "/restart",
			status: 409, errHas: []string{"idle"}},
		{name: "a server never started cannot be refreshed", method: "POST", path: "/mcpo/servers/" + dupA + "/refresh",
			status: 409, errHas: []string{dupA}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := serveAdmin(a, tc.method, tc.path)
			if res.status != tc.status {
				t.Fatalf("%s %s: %d %s (%v), want %d", tc.method, tc.path, res.status, res.body, res.err, tc.status)
			}
			if tc.status >= 400 {
				var apiErr caddy.APIError
				if !errors.As(res.err, &apiErr) {
					t.Fatalf("%s %s: error %v is not a caddy.APIError", tc.method, tc.path, res.err)
				}
				for _, s := range tc.errHas {
					if !strings.Contains(apiErr.Error(), s) {
						t.Errorf("error %q does not mention %s", apiErr.Error(), s)
					}
				}
				if got := res.header.Get("Allow"); got != tc.allow {
					t.Errorf("Allow = %q, want %q", got, tc.allow)
				}
				return
			}
			if tc.wantID != "" {
				var st adminReport
				if err := json.Unmarshal(res.body, &st); err != nil || st.ID != tc.wantID {
					t.Errorf("%s %s answered %s, want the server %s", tc.method, tc.path, res.body, tc.wantID)
				}
			}
		})
	}
}

func TestAdminRestartStartsANewSession(t *testing.T) {
	p := newTestPool(t)
	fx, fxID := p.add(fixtureSpec("fx", fixture.Options{}), true)
	before := waitStatus(t, fx, "ready", isReady)
	if before.PID == 0 || before.PID != callPID(t, fx) {
		t.Fatalf("status PID %d, the process says %d", before.PID, callPID(t, fx))
	}

	res := serveAdmin(newTestAdmin(t, p), http.MethodPost, "/mcpo/servers/fx/restart")
	if res.err != nil || res.status != http.StatusAccepted || string(res.body) != `{"restarted":"`+fxID+`"}`+"\n" {
		t.Fatalf("POST restart: %d %s (%v)", res.status, res.body, res.err)
	}
	after := waitStatus(t, fx, "ready again after a restart", func(st upstream.Status) bool {
		return st.State == upstream.StateReady && st.Restarts == 1
	})
	if after.PID == before.PID || after.PID != callPID(t, fx) {
		t.Errorf("PID before %d, after %d, the process says %d: want a new process", before.PID, after.PID, callPID(t, fx))
	}
}

func TestAdminRefreshListsToolsAgain(t *testing.T) {
	// A server that does not announce changes to its tools: only a refresh
	// shows the tool added below.
	s := server.NewMCPServer("quiet", "1.0.0", server.WithToolCapabilities(false))
	tool := func(name string) (mcp.Tool, server.ToolHandlerFunc) {
		return mcp.NewTool(name), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText(name), nil
		}
	}
	s.AddTool(tool("first"))
	mux := http.NewServeMux()
	mux.Handle("/mcp", server.NewStreamableHTTPServer(s, server.WithDisableLocalhostProtection(true)))
	ts := httptest.NewServer(mux)
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
	})

	p := newTestPool(t)
	u, id := p.add(upstream.Spec{Name: "quiet", Transport: upstream.TransportStreamableHTTP, URL: ts.URL + "/mcp"}, true)
	waitStatus(t, u, "ready", isReady)
	if n := u.Status().Tools; n != 1 {
		t.Fatalf("tools = %d, want 1", n)
	}
	s.AddTool(tool("second"))

	res := serveAdmin(newTestAdmin(t, p), http.MethodPost, "/mcpo/servers/quiet/refresh")
	if res.err != nil || res.status != http.StatusAccepted || string(res.body) != `{"refreshed":"`+id+`"}`+"\n" {
		t.Fatalf("POST refresh: %d %s (%v)", res.status, res.body, res.err)
	}
	waitStatus(t, u, "listing 2 tools", func(st upstream.Status) bool { return st.Tools == 2 })
}

func TestAdminRefreshOfAFailedServerAnswers503WithRetryAfter(t *testing.T) {
	p := newTestPool(t)
	u, id := p.add(upstream.Spec{Name: "broken", Transport: upstream.TransportStdio, Command: "/nonexistent/mcp-server"}, true)
	waitStatus(t, u, "backoff", func(st upstream.Status) bool { return st.State == upstream.StateBackoff })
	a := newTestAdmin(t, p)

	res := serveAdmin(a, http.MethodPost, "/mcpo/servers/broken/refresh")
	if res.status != http.StatusServiceUnavailable {
		t.Fatalf("POST refresh: %d %s (%v), want 503", res.status, res.body, res.err)
	}
	if secs, err := strconv.Atoi(res.header.Get("Retry-After")); err != nil || secs < 1 {
		t.Errorf("Retry-After = %q, want whole seconds", res.header.Get("Retry-After"))
	}
	if !strings.Contains(res.err.Error(), id) {
		t.Errorf("error %q does not name the server %s", res.err, id)
	}

	// A restart cuts the wait before the next start short.
	res = serveAdmin(a, http.MethodPost, "/mcpo/servers/broken/restart")
	if res.status != http.StatusAccepted {
		t.Fatalf("POST restart: %d %s (%v), want 202", res.status, res.body, res.err)
	}
}

func TestAdminListsAndEndsTheSessionsOfCallers(t *testing.T) {
	p := newTestPool(t)
	memory := p.leaseServer(perUserFixture(nil), true)
	other := p.leaseServer(perUserFixture(func(s *ServerConfig) { s.Env["OTHER"] = "1" }), true)
	shared, sharedID := p.add(fixtureSpec("shared", fixture.Options{}), true)
	waitStatus(t, shared, "ready", isReady)
	listed(t, memory)
	listed(t, other)
	const slashed = "team/alice"
	pids := map[string]int{}
	for _, id := range []string{"bob", slashed} {
		pids[id] = pidAs(t, memory, id)
	}
	otherPID := pidAs(t, other, slashed)
	a := newTestAdmin(t, p)

	res := serveAdmin(a, http.MethodGet, "/mcpo/servers/"+memory.entry.id)
	var report adminReport
	if err := json.Unmarshal(res.body, &report); err != nil || res.status != 200 {
		t.Fatalf("GET the server: %d %s (%v)", res.status, res.body, res.err)
	}
	if report.Sessions == nil || *report.Sessions != 2 || report.MaxSessions != defaultMaxSessions || report.PID != 0 {
		t.Errorf("the server's report: sessions %v of %d, pid %d; want 2 of %d and no pid", report.Sessions, report.MaxSessions,
			report.PID, defaultMaxSessions)
	}

	res = serveAdmin(a, http.MethodGet, "/mcpo/servers/"+memory.entry.id+"/sessions")
	var sessions []sessionReport
	if err := json.Unmarshal(res.body, &sessions); err != nil || res.status != 200 {
		t.Fatalf("GET sessions: %d %s (%v)", res.status, res.body, res.err)
	}
	if len(sessions) != 2 {
		t.Fatalf("sessions %s, want bob's and %s's", res.body, slashed)
	}
	for i, id := range []string{"bob", slashed} {
		s := sessions[i]
		if s.ID != id || s.Digest != sessionKey(id)[:12] || s.State != upstream.StateReady || s.PID != pids[id] ||
			s.LastUse == nil || s.Listing || s.Since.IsZero() {
			t.Errorf("session %d: %+v, want %s's, ready, with pid %d and a last use", i, s, id, pids[id])
		}
	}

	for _, tc := range []struct {
		name, method, path string
		status             int
		body               string
	}{
		{name: "a shared server has no sessions", method: "GET", path: "/mcpo/servers/" + sharedID + "/sessions", status: 409},
		{name: "sessions take GET", method: "POST", path: "/mcpo/servers/" + memory.entry.id + "/sessions", status: 405},
		{name: "a session takes DELETE", method: "GET", path: "/mcpo/servers/" + memory.entry.id + "/sessions/bob", status: 405},
		{name: "a caller without a session", method: "DELETE", path: "/mcpo/servers/" + memory.entry.id + "/sessions/nobody", status: 404},
		{name: "a caller of another server", method: "DELETE", path: "/mcpo/servers/" + memory.entry.id + "/sessions/carol", status: 404},
		{name: "a caller's sessions everywhere take DELETE", method: "GET", path: "/mcpo/sessions/bob", status: 405},
		{name: "no caller", method: "DELETE", path: "/mcpo/sessions/", status: 404},
		{name: "bob's session", method: "DELETE", path: "/mcpo/servers/" + memory.entry.id + "/sessions/bob", status: 202,
			body: `{"ended":["` + memory.entry.id + `"]}`},
		{name: "bob's session, again", method: "DELETE", path: "/mcpo/servers/" + memory.entry.id + "/sessions/bob", status: 404},
		{name: "every session of a caller whose ID holds a slash", method: "DELETE", path: "/mcpo/sessions/team%2Falice", status: 202,
			body: `{"ended":["` + strings.Join(sortedIDs(memory.entry.id, other.entry.id), `","`) + `"]}`},
		{name: "every session of that caller, again", method: "DELETE", path: "/mcpo/sessions/team%2Falice", status: 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := serveAdmin(a, tc.method, tc.path)
			if res.status != tc.status {
				t.Fatalf("%s %s: %d %s (%v), want %d", tc.method, tc.path, res.status, res.body, res.err, tc.status)
			}
			if tc.body != "" && string(res.body) != tc.body+"\n" {
				t.Errorf("%s %s answered %s, want %s", tc.method, tc.path, res.body, tc.body)
			}
			if res.err != nil && strings.Contains(res.err.Error(), "alice") {
				t.Errorf("the error %q names the caller", res.err)
			}
		})
	}
	for _, pid := range []int{pids["bob"], pids[slashed], otherPID} {
		waitFor(t, fmt.Sprintf("process %d stopped", pid), func() bool { return gone(pid) })
	}
	if n, _, _ := memory.Sessions(); n != 0 {
		t.Errorf("%d sessions left", n)
	}
	if again := pidAs(t, memory, "bob"); again == pids["bob"] {
		t.Error("bob's next call ran in his ended process")
	}
}

// sortedIDs returns ids sorted, as the pool lists servers.
func sortedIDs(ids ...string) []string {
	slices.Sort(ids)
	return ids
}

func TestAdminRestartOfAServerWithSessionsEndsThemAll(t *testing.T) {
	p := newTestPool(t)
	l := p.leaseServer(perUserFixture(nil), true)
	listed(t, l)
	a, b := pidAs(t, l, "a"), pidAs(t, l, "b")
	res := serveAdmin(newTestAdmin(t, p), http.MethodPost, "/mcpo/servers/fx/restart")
	if res.status != http.StatusAccepted {
		t.Fatalf("POST restart: %d %s (%v)", res.status, res.body, res.err)
	}
	waitFor(t, "every session stopped", func() bool { return gone(a) && gone(b) })
	if st := l.Status(); st.State != upstream.StateReady || st.Tools == 0 {
		t.Errorf("after a restart the server is %+v; want it ready with its listing", st)
	}
	if got := pidAs(t, l, "a"); got == a {
		t.Error("a's next call ran in the ended process")
	}
	res = serveAdmin(newTestAdmin(t, p), http.MethodPost, "/mcpo/servers/fx/refresh")
	if res.status != http.StatusAccepted {
		t.Errorf("POST refresh: %d %s (%v)", res.status, res.body, res.err)
	}
}

//go:build unix

package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

func TestMain(m *testing.M) {
	playRole()
	fixture.MaybeServeStdio()
	os.Exit(m.Run())
}

// waitLimit bounds every wait in these tests.
const waitLimit = 20 * time.Second

// testLogger returns a logger that records everything, and prints the
// records if the test fails.
func testLogger(t *testing.T) (*zap.Logger, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.DebugLevel)
	t.Cleanup(func() {
		if t.Failed() {
			for _, e := range logs.All() {
				t.Logf("log: %s %s %v", e.Level, e.Message, e.ContextMap())
			}
		}
	})
	return zap.New(core), logs
}

func stdioSpec(opts fixture.Options) Spec {
	cmd, args, env := fixture.StdioCommand(opts)
	return Spec{Name: "fx", Transport: TransportStdio, Command: cmd, Args: args, Env: append(os.Environ(), env...)}
}

// start starts an Upstream for spec and waits until it is ready.
func start(t *testing.T, spec Spec, opts Options) (*Upstream, *observer.ObservedLogs) {
	t.Helper()
	log, logs := testLogger(t)
	if opts.StartTimeout == 0 {
		opts.StartTimeout = waitLimit
	}
	u := New(spec, opts, log)
	u.Start()
	t.Cleanup(func() { _ = u.Close() })
	waitState(t, u, StateReady)
	return u, logs
}

// waitState waits until u is in state want and returns its status.
func waitState(t *testing.T, u *Upstream, want State) Status {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		changed := u.Changed()
		st := u.Status()
		if st.State == want {
			return st
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("state is %s (last error %q), want %s", st.State, st.LastError, want)
		}
	}
}

// eventually polls cond until it holds or waitLimit passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func call(t *testing.T, u *Upstream, tool, args string) *CallResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	res, err := u.CallTool(ctx, tool, json.RawMessage(args))
	if err != nil {
		t.Fatalf("calling %s: %v", tool, err)
	}
	return res
}

func text(t *testing.T, res *CallResult) string {
	t.Helper()
	if len(res.Content) != 1 || res.Content[0].Type != "text" {
		t.Fatalf("want one text item, got %+v", res.Content)
	}
	return res.Content[0].Text
}

func jsonEqual(t *testing.T, what string, got json.RawMessage, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("%s: %v in %s", what, err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	gb, _ := json.Marshal(g)
	wb, _ := json.Marshal(w)
	if string(gb) != string(wb) {
		t.Errorf("%s = %s, want %s", what, got, want)
	}
}

// transports runs f once per transport, each against its own fixture server.
func transports(t *testing.T, opts fixture.Options, f func(t *testing.T, spec Spec)) {
	t.Run("stdio", func(t *testing.T) { f(t, stdioSpec(opts)) })
	t.Run("streamable_http", func(t *testing.T) {
		f(t, Spec{Name: "fx", Transport: TransportStreamableHTTP, URL: fixture.NewStreamableHTTP(t, opts)})
	})
	t.Run("sse", func(t *testing.T) {
		f(t, Spec{Name: "fx", Transport: TransportSSE, URL: fixture.NewSSE(t, opts)})
	})
}

func TestUpstream_ListsToolsWithTheirRawSchemas(t *testing.T) {
	transports(t, fixture.Options{}, func(t *testing.T, spec Spec) {
		u, _ := start(t, spec, Options{})
		ts := u.Tools()
		var names []string
		byName := map[string]*Tool{}
		for _, tool := range ts.Tools {
			names = append(names, tool.Name)
			byName[tool.Name] = tool
		}
		if want := fixture.ToolNames(fixture.Options{}); !slices.Equal(names, want) {
			t.Fatalf("tools = %q, want %q", names, want)
		}
		jsonEqual(t, "defs input schema", byName["defs"].InputSchema, fixture.DefsInputSchema)
		jsonEqual(t, "structured output schema", byName["structured"].OutputSchema, fixture.StructuredOutputSchema)
		if got := byName["with_title"].Title; got != "Fancy Title" {
			t.Errorf("with_title title = %q", got)
		}
		jsonEqual(t, "with_title annotations", byName["with_title"].Annotations, `{"readOnlyHint":true,"openWorldHint":false}`)
		if byName["echo"].OutputSchema != nil {
			t.Errorf("echo has an output schema: %s", byName["echo"].OutputSchema)
		}
		if ts.Server.Name != fixture.DefaultName || ts.Server.Version != fixture.Version || ts.Server.Instructions != fixture.Instructions {
			t.Errorf("server info = %+v", ts.Server)
		}
		if st := u.Status(); st.Tools != len(names) || st.State != StateReady {
			t.Errorf("status = %+v", st)
		}
	})
}

func TestUpstream_CallToolReturnsTheServersAnswerUnaltered(t *testing.T) {
	transports(t, fixture.Options{}, func(t *testing.T, spec Spec) {
		u, _ := start(t, spec, Options{})

		const args = `{"n":5,"z":null,"s":"x","big":12345678901234567890,"f":1.50}`
		if got := text(t, call(t, u, "echo_args", args)); got != args {
			t.Errorf("echo_args received %s, sent %s", got, args)
		}
		if got := text(t, call(t, u, "add", `{"a":2,"b":40}`)); got != "42" {
			t.Errorf("add = %q", got)
		}

		res := call(t, u, "structured", `{}`)
		jsonEqual(t, "structuredContent", res.Structured, `{"temperature":21.5,"unit":"C"}`)

		res = call(t, u, "image", `{}`)
		if len(res.Content) != 2 || res.Content[1].Type != "image" || res.Content[1].Data != fixture.PNGBase64 || res.Content[1].MIMEType != "image/png" {
			t.Errorf("image content = %+v", res.Content)
		}
		res = call(t, u, "embedded_blob", `{}`)
		if r := res.Content[0].Resource; r == nil || r.Blob == nil || *r.Blob != fixture.BlobBase64 || r.Text != nil {
			t.Errorf("embedded_blob resource = %+v", r)
		}
		res = call(t, u, "resource_link", `{}`)
		if c := res.Content[0]; c.Type != "resource_link" || c.URI != "fixture://doc/1" || c.Name != "doc-1" {
			t.Errorf("resource_link = %+v", c)
		}

		res = call(t, u, "fail", `{"reason":"nope"}`)
		if !res.IsError || text(t, res) != "fixture failure: nope" {
			t.Errorf("fail = %+v", res)
		}

		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		_, err := u.CallTool(ctx, "invalid_params", json.RawMessage(`{}`))
		var rpc *RPCError
		if !errors.As(err, &rpc) || rpc.Code != CodeInvalidParams || rpc.Message != fixture.InvalidParamsMessage {
			t.Errorf("invalid_params error = %v, want a JSON-RPC error %d", err, CodeInvalidParams)
		}
	})
}

func TestUpstream_NegotiatesTheProtocolEraPerTransport(t *testing.T) {
	tests := []struct {
		name     string
		spec     func(t *testing.T) Spec
		protocol string
	}{
		{"stdio starts with the legacy handshake", func(*testing.T) Spec {
			return stdioSpec(fixture.Options{TraceMethods: true})
		}, "2025-11-25"},
		{"stdio falls back to 2026-07-28 when the handshake is refused", func(*testing.T) Spec {
			return stdioSpec(fixture.Options{ModernOnly: true})
		}, "2026-07-28"},
		{"stdio with an exact version", func(*testing.T) Spec {
			s := stdioSpec(fixture.Options{})
			s.Protocol = "2025-03-26"
			return s
		}, "2025-03-26"},
		{"stdio pinned modern", func(*testing.T) Spec {
			s := stdioSpec(fixture.Options{})
			s.Protocol = ProtocolModern
			return s
		}, "2026-07-28"},
		{"streamable HTTP prefers 2026-07-28", func(t *testing.T) Spec {
			return Spec{Name: "fx", Transport: TransportStreamableHTTP, URL: fixture.NewStreamableHTTP(t, fixture.Options{})}
		}, "2026-07-28"},
		{"streamable HTTP pinned legacy", func(t *testing.T) Spec {
			return Spec{Name: "fx", Transport: TransportStreamableHTTP, Protocol: ProtocolLegacy, URL: fixture.NewStreamableHTTP(t, fixture.Options{})}
		}, "2025-11-25"},
		{"sse speaks legacy", func(t *testing.T) Spec {
			return Spec{Name: "fx", Transport: TransportSSE, URL: fixture.NewSSE(t, fixture.Options{})}
		}, "2025-11-25"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, logs := start(t, tt.spec(t), Options{})
			if got := u.Tools().Server.Protocol; got != tt.protocol {
				t.Errorf("protocol = %q, want %q", got, tt.protocol)
			}
			if got := text(t, call(t, u, "echo", `{"message":"hi"}`)); got != "hi" {
				t.Errorf("echo = %q", got)
			}
			if traced := logs.FilterMessageSnippet("fixture method:").All(); len(traced) > 0 {
				// No server/discover probe: a silent legacy server would
				// stall it for seconds.
				if first := traced[0].Message; first != "fixture method: initialize" {
					t.Errorf("first request = %q, want the initialize handshake", first)
				}
			} else if strings.Contains(tt.name, "legacy handshake") {
				t.Error("the traced fixture logged no request")
			}
		})
	}
}

func TestUpstream_AutoTransportFallsBackToSSE(t *testing.T) {
	spec := Spec{Name: "fx", Transport: TransportAuto, URL: fixture.NewSSE(t, fixture.Options{})}
	u, _ := start(t, spec, Options{})
	if got := text(t, call(t, u, "add", `{"a":1,"b":2}`)); got != "3" {
		t.Errorf("add = %q", got)
	}
}

func TestUpstream_FollowsToolPagination(t *testing.T) {
	opts := fixture.Options{PageSize: 7, ExtraTools: 30}
	u, _ := start(t, stdioSpec(opts), Options{})
	var names []string
	for _, tool := range u.Tools().Tools {
		names = append(names, tool.Name)
	}
	if want := fixture.ToolNames(opts); !slices.Equal(names, want) {
		t.Errorf("tools = %q, want %q", names, want)
	}
}

func TestUpstream_RestartsAStdioServerThatExits(t *testing.T) {
	u, _ := start(t, stdioSpec(fixture.Options{}), Options{})
	pid1, _ := strconv.Atoi(text(t, call(t, u, "pid", `{}`)))
	changed := u.Changed()

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if _, err := u.CallTool(ctx, "exit", json.RawMessage(`{}`)); err == nil {
		t.Fatal("the call that killed the server succeeded")
	}
	<-changed // no longer ready
	st := waitState(t, u, StateReady)
	if st.Restarts != 1 {
		t.Errorf("restarts = %d, want 1", st.Restarts)
	}
	pid2, _ := strconv.Atoi(text(t, call(t, u, "pid", `{}`)))
	if pid2 == pid1 || pid2 == 0 {
		t.Errorf("pid after restart = %d, before = %d", pid2, pid1)
	}
	if running(pid1) {
		t.Errorf("the exited server %d is still running", pid1)
	}
}

func TestUpstream_ReportsACommandThatIsNotFound(t *testing.T) {
	log, _ := testLogger(t)
	u := New(Spec{Name: "missing", Transport: TransportStdio, Command: "no-such-mcp-server", Env: []string{"PATH=/usr/bin:/bin"}}, Options{}, log)
	u.Start()
	defer u.Close()
	st := waitState(t, u, StateBackoff)
	if !strings.Contains(st.LastError, `command "no-such-mcp-server" not found`) {
		t.Errorf("last error = %q", st.LastError)
	}
	_, err := u.CallTool(context.Background(), "x", json.RawMessage(`{}`))
	var un *UnavailableError
	if !errors.As(err, &un) || un.State != StateBackoff || un.RetryAfter <= 0 || !strings.Contains(err.Error(), "no-such-mcp-server") {
		t.Errorf("call error = %#v", err)
	}
}

func TestUpstream_CloseStopsTheWholeProcessGroup(t *testing.T) {
	cmd, args, env := fixture.StdioCommand(fixture.Options{})
	// A wrapper that outlives the server and ignores stdin closing, with
	// the server as its child: like npx, whose node child must not be
	// orphaned.
	spec := Spec{
		Name: "wrapped", Transport: TransportStdio, Command: "/bin/sh",
		Args: append([]string{"-c", `"$0" "$@"; sleep 30`, cmd}, args...),
		Env:  append(os.Environ(), env...),
	}
	u, _ := start(t, spec, Options{Stop: StopTimeouts{Grace: 200 * time.Millisecond, Term: 2 * time.Second}})
	server, _ := strconv.Atoi(text(t, call(t, u, "pid", `{}`)))
	group := u.Status().PID
	if group == 0 || server == group {
		t.Fatalf("wrapper pid %d, server pid %d", group, server)
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	if st := u.Status(); st.State != StateStopped {
		t.Errorf("state after close = %s", st.State)
	}
	if groupAlive(group) {
		t.Errorf("process group %d still has members after Close", group)
	}
	if running(server) {
		t.Errorf("server %d still running after Close", server)
	}
}

func TestUpstream_LogsTheServersStderrLineByLine(t *testing.T) {
	u, logs := start(t, stdioSpec(fixture.Options{}), Options{})
	call(t, u, "stderr", `{"message":"line one"}`)
	eventually(t, "the stderr line in the log", func() bool {
		for _, e := range logs.FilterMessage("fixture stderr: line one").All() {
			m := e.ContextMap()
			if m["server"] == "fx" && m["stream"] == "stderr" {
				return true
			}
		}
		return false
	})
}

func TestUpstream_RelistsToolsWhenTheServerSaysTheyChanged(t *testing.T) {
	t.Run("streamable_http_legacy", func(t *testing.T) {
		// A legacy session hears of changes on its standing GET stream.
		spec := Spec{Name: "fx", Transport: TransportStreamableHTTP, Protocol: ProtocolLegacy, URL: fixture.NewStreamableHTTP(t, fixture.Options{})}
		checkRelist(t, spec)
	})
	t.Run("streamable_http_legacy_negotiated", func(t *testing.T) {
		// Negotiated down to legacy: dialled again with the stream.
		spec := Spec{Name: "fx", Transport: TransportStreamableHTTP, Protocol: "2025-06-18", URL: fixture.NewStreamableHTTP(t, fixture.Options{})}
		checkRelist(t, spec)
	})
	transports(t, fixture.Options{}, checkRelist)
}

func checkRelist(t *testing.T, spec Spec) {
	u, _ := start(t, spec, Options{})
	before := u.Tools()
	if got := text(t, call(t, u, "register_tool", `{"name":"late_tool"}`)); got != "registered" {
		t.Fatalf("register_tool = %q", got)
	}
	eventually(t, "late_tool in the tool list", func() bool {
		ts := u.Tools()
		return ts != before && slices.ContainsFunc(ts.Tools, func(t *Tool) bool { return t.Name == "late_tool" })
	})
	if got := text(t, call(t, u, "late_tool", `{}`)); got != "late_tool" {
		t.Errorf("late_tool = %q", got)
	}
}

func TestUpstream_ACallPastItsDeadlineLeavesTheSessionUsable(t *testing.T) {
	u, _ := start(t, stdioSpec(fixture.Options{}), Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := u.CallTool(ctx, "slow", json.RawMessage(`{"ms":10000}`))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow call error = %v, want the deadline", err)
	}
	if got := text(t, call(t, u, "echo", `{"message":"still here"}`)); got != "still here" {
		t.Errorf("echo after timeout = %q", got)
	}
	if st := u.Status(); st.State != StateReady || st.Restarts != 0 {
		t.Errorf("status after timeout = %+v", st)
	}
}

func TestUpstream_StartTimeoutStopsAServerThatNeverAnswers(t *testing.T) {
	log, _ := testLogger(t)
	spec := Spec{Name: "mute", Transport: TransportStdio, Command: "/bin/sh", Args: []string{"-c", "exec sleep 60"}, Env: []string{"PATH=/usr/bin:/bin"}}
	u := New(spec, Options{StartTimeout: 300 * time.Millisecond, Stop: StopTimeouts{Grace: 100 * time.Millisecond, Term: time.Second}}, log)
	u.Start()
	defer u.Close()
	st := waitState(t, u, StateBackoff)
	if !strings.Contains(st.LastError, "start timeout") {
		t.Errorf("last error = %q", st.LastError)
	}
	if st.PID != 0 {
		t.Errorf("a failed server still has a process: %d", st.PID)
	}
}

func TestUpstream_KeepsURLSecretsOutOfErrorsAndLogs(t *testing.T) {
	log, logs := testLogger(t)
	spec := Spec{
		Name: "remote", Transport: TransportStreamableHTTP,
		URL:     "http://127.0.0.1:1/mcp?token=s3cr3t-query",
		Headers: map[string]string{"Authorization": "Bearer s3cr3t-header"},
	}
	u := New(spec, Options{StartTimeout: 2 * time.Second}, log)
	u.Start()
	defer u.Close()
	st := waitState(t, u, StateBackoff)
	_, callErr := u.CallTool(context.Background(), "x", nil)
	texts := []string{st.LastError, st.Endpoint, callErr.Error()}
	for _, e := range logs.All() {
		texts = append(texts, e.Message)
		for _, v := range e.ContextMap() {
			if s, ok := v.(string); ok {
				texts = append(texts, s)
			}
		}
	}
	for _, s := range texts {
		if strings.Contains(s, "s3cr3t") {
			t.Errorf("secret leaked: %q", s)
		}
	}
}

func TestUpstream_CloseBeforeStartStopsForGood(t *testing.T) {
	u := New(stdioSpec(fixture.Options{}), Options{}, nil)
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	u.Start()
	if st := u.Status(); st.State != StateStopped {
		t.Errorf("state = %s, want stopped", st.State)
	}
}

func TestSpec_KeyChangesWithIdentityOnly(t *testing.T) {
	base := Spec{Name: "a", Transport: TransportStdio, Command: "x", Args: []string{"1"}, Env: []string{"K=V"}}
	if base.Key() != base.Key() {
		t.Fatal("key is not stable")
	}
	variants := []Spec{
		{Name: "b", Transport: TransportStdio, Command: "x", Args: []string{"1"}, Env: []string{"K=V"}},
		{Name: "a", Transport: TransportStdio, Command: "y", Args: []string{"1"}, Env: []string{"K=V"}},
		{Name: "a", Transport: TransportStdio, Command: "x", Args: []string{"2"}, Env: []string{"K=V"}},
		{Name: "a", Transport: TransportStdio, Command: "x", Args: []string{"1"}, Env: []string{"K=W"}},
		{Name: "a", Transport: TransportStdio, Command: "x", Args: []string{"1"}, Env: []string{"K=V"}, Dir: "/tmp"},
		{Name: "a", Transport: TransportStdio, Command: "x", Args: []string{"1"}, Env: []string{"K=V"}, Protocol: "legacy"},
	}
	for i, v := range variants {
		if v.Key() == base.Key() {
			t.Errorf("variant %d has the same key", i)
		}
	}
	h1 := Spec{Name: "h", Transport: TransportStreamableHTTP, URL: "http://x/mcp", Headers: map[string]string{"A": "1", "B": "2"}}
	h2 := Spec{Name: "h", Transport: TransportStreamableHTTP, URL: "http://x/mcp", Headers: map[string]string{"B": "2", "A": "1"}}
	if h1.Key() != h2.Key() {
		t.Error("header order changes the key")
	}
	if strings.Contains(h1.Key(), "http") {
		t.Error("the key holds the configuration in clear text")
	}
}

func TestSpec_ValidateRejectsUnusableSpecs(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want string
	}{
		{"no name", Spec{Transport: TransportStdio, Command: "x"}, "no name"},
		{"stdio without command", Spec{Name: "a", Transport: TransportStdio}, "needs a command"},
		{"stdio with url", Spec{Name: "a", Transport: TransportStdio, Command: "x", URL: "http://h"}, "no url"},
		{"http without url", Spec{Name: "a", Transport: TransportStreamableHTTP}, "needs a url"},
		{"http with command", Spec{Name: "a", Transport: TransportSSE, URL: "http://h/sse", Command: "x"}, "no command"},
		{"bad scheme", Spec{Name: "a", Transport: TransportStreamableHTTP, URL: "ftp://h/x"}, "scheme"},
		{"no host", Spec{Name: "a", Transport: TransportStreamableHTTP, URL: "http:///x"}, "no host"},
		{"sse modern", Spec{Name: "a", Transport: TransportSSE, URL: "http://h/sse", Protocol: ProtocolModern}, "legacy"},
		{"unknown transport", Spec{Name: "a", Transport: "carrier-pigeon"}, "unknown transport"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	ok := Spec{Name: "a", Transport: TransportAuto, URL: "https://h/mcp"}
	if err := ok.Validate(); err != nil {
		t.Errorf("valid spec: %v", err)
	}
}

func TestParseTransportAndProtocol(t *testing.T) {
	for in, want := range map[string]Transport{
		"stdio": TransportStdio, "SSE": TransportSSE, "http": TransportStreamableHTTP,
		"streamable-http": TransportStreamableHTTP, "streamablehttp": TransportStreamableHTTP,
		"streamable_http": TransportStreamableHTTP, "auto": TransportAuto,
	} {
		if got, err := ParseTransport(in); err != nil || got != want {
			t.Errorf("ParseTransport(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseTransport("websocket"); err == nil {
		t.Error("ParseTransport accepted websocket")
	}
	for in, want := range map[string]string{"": "", "auto": "", "legacy": "legacy", "modern": "modern", "2025-06-18": "2025-06-18"} {
		if got, err := ParseProtocol(in); err != nil || got != want {
			t.Errorf("ParseProtocol(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseProtocol("2020-01-01"); err == nil {
		t.Error("ParseProtocol accepted an unknown version")
	}
}

func TestReadLines_SplitsAndBoundsLines(t *testing.T) {
	long := strings.Repeat("x", maxStderrLine*3)
	in := "first\r\n\nsecond\n" + long + "\nafter\ninvalid \xff utf8\nno newline at end"
	var got []string
	readLines(strings.NewReader(in), func(s string) { got = append(got, s) })
	if len(got) != 6 {
		t.Fatalf("lines = %d: %q", len(got), got)
	}
	if got[0] != "first" || got[1] != "second" || got[3] != "after" || got[5] != "no newline at end" {
		t.Errorf("lines = %q", got)
	}
	if len(got[2]) > maxStderrLine+32 || !strings.HasSuffix(got[2], "(truncated)") {
		t.Errorf("long line not truncated: %d bytes", len(got[2]))
	}
	if got[4] != "invalid \uFFFD utf8" {
		t.Errorf("invalid UTF-8 line = %q", got[4])
	}
}

func TestLookPath_UsesTheChildsPath(t *testing.T) {
	if _, err := lookPath("sh", []string{"PATH=/nonexistent"}, ""); err == nil {
		t.Error("found sh through a PATH that does not have it")
	}
	p, err := lookPath("sh", []string{"PATH=/nonexistent:/bin"}, "")
	if err != nil || p != "/bin/sh" {
		t.Errorf("lookPath(sh) = %q, %v", p, err)
	}
	if _, err := lookPath("/etc/passwd", nil, ""); err == nil || !strings.Contains(err.Error(), "not executable") {
		t.Errorf("lookPath(/etc/passwd) = %v", err)
	}
}

func TestBackoff_DoublesWithJitterUpToTheMaximum(t *testing.T) {
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 6: backoffMax, 50: backoffMax} {
		for range 20 {
			d := backoff(n)
			if d < want*8/10 || d > want*12/10 {
				t.Errorf("backoff(%d) = %s, want %s ±20%%", n, d, want)
			}
		}
	}
}

func TestUpstream_AServerThatExitsAtStartIsExplainedWithoutItsStderr(t *testing.T) {
	log, logs := testLogger(t)
	spec := Spec{Name: "crashy", Transport: TransportStdio, Command: "/bin/sh",
		Args: []string{"-c", `echo "token=hunter2 is wrong" >&2; exit 7`}, Env: []string{"PATH=/usr/bin:/bin"}}
	u := New(spec, Options{}, log)
	u.Start()
	defer u.Close()
	st := waitState(t, u, StateBackoff)
	if !strings.Contains(st.LastError, "exit status 7") {
		t.Errorf("last error = %q, want the exit status", st.LastError)
	}
	// What a server prints may be anything; it goes to the log only.
	if strings.Contains(st.LastError, "hunter2") {
		t.Errorf("last error %q holds the server's stderr", st.LastError)
	}
	eventually(t, "the failure logged with the server's stderr", func() bool {
		for _, e := range logs.FilterMessage("MCP server failed to start").All() {
			if strings.Contains(fmt.Sprint(e.ContextMap()["stderr"]), "token=hunter2 is wrong") {
				return true
			}
		}
		return false
	})
}

func TestUpstream_ReplacesASessionTheServerForgot(t *testing.T) {
	srv := fixture.NewStreamableHTTPServer(t, fixture.Options{})
	spec := Spec{Name: "fx", Transport: TransportStreamableHTTP, Protocol: ProtocolLegacy, URL: srv.URL}
	u, _ := start(t, spec, Options{})
	if got := text(t, call(t, u, "echo", `{"message":"before"}`)); got != "before" {
		t.Fatalf("echo = %q", got)
	}
	srv.DropSessions() // the server restarted: our session is unknown (404)
	if got := text(t, call(t, u, "echo", `{"message":"after"}`)); got != "after" {
		t.Errorf("echo after the server forgot the session = %q", got)
	}
	if st := u.Status(); st.Restarts != 1 || st.State != StateReady {
		t.Errorf("status = %+v, want ready after one new session", st)
	}
}

func TestUpstream_CloseLetsCallsUnderWayFinish(t *testing.T) {
	u, _ := start(t, stdioSpec(fixture.Options{}), Options{Drain: 10 * time.Second})
	result := make(chan error, 1)
	go func() {
		res, err := u.CallTool(context.Background(), "slow", json.RawMessage(`{"ms":300}`))
		if err == nil && (len(res.Content) != 1 || res.Content[0].Text != "done") {
			err = errors.New("unexpected result")
		}
		result <- err
	}()
	eventually(t, "the call under way", func() bool { return u.InFlight() == 1 })
	closed := make(chan struct{})
	go func() {
		_ = u.Close()
		close(closed)
	}()
	eventually(t, "new calls refused", func() bool {
		_, err := u.CallTool(context.Background(), "echo", json.RawMessage(`{"message":"x"}`))
		var un *UnavailableError
		return errors.As(err, &un) && un.State == StateStopped
	})
	if err := <-result; err != nil {
		t.Errorf("the call under way failed: %v", err)
	}
	<-closed
}

func TestUpstream_CloseStopsCallsThatOutlastTheDrain(t *testing.T) {
	u, _ := start(t, stdioSpec(fixture.Options{}), Options{Drain: 200 * time.Millisecond})
	result := make(chan error, 1)
	go func() {
		_, err := u.CallTool(context.Background(), "slow", json.RawMessage(`{"ms":30000}`))
		result <- err
	}()
	eventually(t, "the call under way", func() bool { return u.InFlight() == 1 })
	_ = u.Close()
	select {
	case err := <-result:
		if err == nil {
			t.Error("a call cut by the stop succeeded")
		}
	case <-time.After(waitLimit):
		t.Fatal("the call was not ended by the stop")
	}
}

func TestUpstream_RestartStartsAFreshProcess(t *testing.T) {
	u, _ := start(t, stdioSpec(fixture.Options{}), Options{})
	pid1 := text(t, call(t, u, "pid", `{}`))
	u.Restart()
	eventually(t, "a new process", func() bool {
		st := u.Status()
		return st.State == StateReady && st.Restarts == 1
	})
	if pid2 := text(t, call(t, u, "pid", `{}`)); pid2 == pid1 {
		t.Errorf("pid after restart = %s, same as before", pid2)
	}
}

func TestUpstream_RefreshListsToolsAgain(t *testing.T) {
	u, _ := start(t, stdioSpec(fixture.Options{}), Options{})
	before := u.Tools()
	if err := u.Refresh(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a new tool listing", func() bool { return u.Tools() != before })
}

func TestUpstream_ATimedOutCallIsCancelledAtTheServer(t *testing.T) {
	variants := map[string]func(t *testing.T) Spec{
		"stdio": func(*testing.T) Spec { return stdioSpec(fixture.Options{}) },
		"streamable_http_legacy": func(t *testing.T) Spec {
			return Spec{Name: "fx", Transport: TransportStreamableHTTP, Protocol: ProtocolLegacy, URL: fixture.NewStreamableHTTP(t, fixture.Options{})}
		},
		"streamable_http_2026": func(t *testing.T) Spec {
			return Spec{Name: "fx", Transport: TransportStreamableHTTP, URL: fixture.NewStreamableHTTP(t, fixture.Options{})}
		},
		"sse": func(t *testing.T) Spec {
			return Spec{Name: "fx", Transport: TransportSSE, URL: fixture.NewSSE(t, fixture.Options{})}
		},
	}
	for name, spec := range variants {
		t.Run(name, func(t *testing.T) {
			u, _ := start(t, spec(t), Options{})
			before := text(t, call(t, u, "cancelled_calls", `{}`))
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			if _, err := u.CallTool(ctx, "slow", json.RawMessage(`{"ms":20000}`)); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("slow = %v, want the deadline", err)
			}
			n, _ := strconv.Atoi(before)
			eventually(t, "the server saw the cancellation", func() bool {
				return text(t, call(t, u, "cancelled_calls", `{}`)) == strconv.Itoa(n+1)
			})
		})
	}
}

func TestUpstream_AnAcknowledgedSubscriptionKeepsAnUnchangedListing(t *testing.T) {
	spec := Spec{Name: "fx", Transport: TransportStreamableHTTP, URL: fixture.NewStreamableHTTP(t, fixture.Options{})}
	u, logs := start(t, spec, Options{})
	if p := u.Tools().Server.Protocol; p != mcp.LATEST_PROTOCOL_VERSION {
		t.Fatalf("protocol %q, want %s", p, mcp.LATEST_PROTOCOL_VERSION)
	}
	before := u.Tools()
	eventually(t, "the subscription acknowledged", func() bool {
		return logs.FilterField(zap.String("method", mcp.MethodNotificationSubscriptionsAcknowledged)).Len() > 0
	})
	// The recheck the acknowledgement starts lists the same tools.
	time.Sleep(200 * time.Millisecond)
	if u.Tools() != before {
		t.Error("the listing changed though the tools did not")
	}
	if n := logs.FilterMessage("MCP server tool list changed").Len(); n != 0 {
		t.Errorf("%d tool list changes logged, want none", n)
	}
}

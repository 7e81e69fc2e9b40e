package bridge

// The MCP face: every mount is also an MCP server (Streamable HTTP, both
// the 2025-11-25 era of sessions and the 2026-07-28 one of stateless
// requests) at <mount>/mcp, and in a mount of several servers each server
// is one at <mount>/<server>/mcp too. The mcpface*.go and mcpevents.go
// files are the only ones that import mcp-go's server package: mcp-go
// owns the transport (sessions, SSE, server/discover,
// subscriptions/listen, cancellation), the bridge owns everything a call
// passes through (rules, limits, deadlines, the Observer, the audit log),
// through the same invoke as the REST face. Resources, prompts and
// completions are in mcpface_extras.go, the servers' notices in
// mcpface_notices.go.
//
// Tools are dynamic: a server lists new ones, and each caller may be
// granted different ones. The face keeps one mcp-go MCPServer per endpoint
// whose registered tools mirror the servers' current views: before each
// request it compares the views' pointers with those it registered from
// (an atomic load per server) and, on a change, replaces the registered
// tools (SetTools, which also tells connected sessions that the list
// changed). What a caller sees and may call is decided per request by a
// tool filter over the caller's grant, which mcp-go applies to tools/list
// and again to tools/call; registering per request would rebuild the
// tools on every call. A plain tools/call is answered without mcp-go's
// transport (mcpface_fast.go), by the same handler, with the same checks.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/jsonbody"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/openapi"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// MCPSegment is the path segment of the MCP endpoints: <mount>/mcp, and
// <mount>/<server>/mcp in a mount of several servers. A tool named so gets
// another path segment on the REST face.
const MCPSegment = "mcp"

// mcpFaceVersion is the version the MCP endpoints give as their
// implementation's.
const mcpFaceVersion = "caddy-mcpo"

// mcpSessionIdleTTL is how long an MCP session nobody uses is kept.
const mcpSessionIdleTTL = time.Hour

// mcpFace is one MCP endpoint: of one server, or of every server of a
// mount with their tools named as the document covering them all names
// its operations.
type mcpFace struct {
	b        *Bridge
	servers  []*serverState
	prefixed bool
	mcp      *server.MCPServer
	sessions *faceSessions
	// parks are the calls of 2026-07-28 clients waiting for their next
	// round (mcpface_park.go).
	parks *parks
	title string // the endpoint's name to clients

	// The direct path of tools/call (mcpface_fast.go): the 2025-11-25
	// sessions mcp-go registered (*liveSession by session ID), the
	// calls under way on it, for notifications/cancelled; and, for
	// tests, whether it is off.
	live      sync.Map
	fastCalls fastCalls
	noFast    bool

	// serverMeta is the _meta mcp-go gives a 2026-07-28 result that has
	// none: the endpoint's identity, made with the endpoint.
	serverMeta json.RawMessage

	// The transport and the watcher start with the first request, so that
	// an endpoint nobody uses runs nothing; close ends them.
	startMu sync.Mutex
	http    *server.StreamableHTTPServer
	done    chan struct{} // closed by close; nil before the start
	closed  bool

	mu    sync.Mutex // serializes setting the tools
	tools atomic.Pointer[faceTools]

	faceExtras               // resources, prompts and completions
	faceNotices              // the servers' notices passed on
	faceSubscriptions        // the sessions' resource subscriptions
	unlisten          func() // ends the passing on of notices; nil before the start
}

// faceTools is the tools registered from one combination of views.
type faceTools struct {
	views  []*view // per server; nil when it has not listed its tools
	byName map[string]faceTool
}

// faceTool is a registered tool: the route it calls, of view v.
type faceTool struct {
	st *serverState
	v  *view
	rt *route
	// headerParams is set for a tool whose input schema has x-mcp-header
	// parameters, which a 2026-07-28 request mirrors in its headers.
	headerParams bool
}

// watchInterval is how often a face looks for new tool listings of its
// servers, to tell connected clients that the list changed.
const watchInterval = time.Second

// newMCPFace returns the endpoint of servers, prefixed naming their tools
// <server>_<tool>; title names it to clients.
func (b *Bridge) newMCPFace(servers []*serverState, prefixed bool, title string) *mcpFace {
	f := &mcpFace{b: b, servers: servers, prefixed: prefixed, sessions: &faceSessions{sessionIDs: mcpSessions}, parks: newParks(), title: title}
	f.sessions.forget = f.forgetSession
	var meta mcp.Meta
	meta.SetServerInfo(f.implementation())
	f.serverMeta = mustJSON(&meta)
	hooks := &server.Hooks{}
	f.initFast(hooks)
	hooks.AddOnRequestInitialization(f.refuseDown)
	hooks.AddAfterInitialize(func(_ context.Context, _ any, _ *mcp.InitializeRequest, res *mcp.InitializeResult) {
		res.Instructions = f.instructions()
		f.declare(&res.Capabilities)
	})
	hooks.AddAfterDiscover(func(_ context.Context, _ any, _ *mcp.DiscoverRequest, res *mcp.DiscoverResult) {
		res.Instructions = f.instructions()
		f.declare(&res.Capabilities)
		if res.Capabilities.Resources != nil {
			// subscriptions/listen's resource subscriptions are not
			// passed on (mcp-go's sessions of that era keep none).
			res.Capabilities.Resources.Subscribe = false
		}
	})
	opts := append([]server.ServerOption{
		server.WithToolCapabilities(true),
		server.WithToolFilter(f.granted),
		server.WithHooks(hooks),
		server.WithRecovery(),
	}, f.noticeOptions(hooks)...)
	f.carryOver(hooks) // after noticeOptions, whose hooks note a session's grant
	f.initSubscriptions(hooks)
	opts = append(opts, f.extrasOptions(hooks)...)
	f.mcp = server.NewMCPServer(title, mcpFaceVersion, opts...)
	f.registerExtras()
	b.faces = append(b.faces, f)
	return f
}

// handler returns the endpoint's transport, starting it, its sweeper of
// idle sessions and the watcher of tool listings at the first request.
// After close, a request still under way gets a transport without them.
func (f *mcpFace) handler() *server.StreamableHTTPServer {
	f.startMu.Lock()
	defer f.startMu.Unlock()
	if f.http != nil {
		return f.http
	}
	opts := []server.StreamableHTTPOption{
		// Caddy matches hosts, and serveMCP checks the Origin against the
		// mount's cors origins: mcp-go's check, which refuses every Host
		// but localhost on a loopback connection, would refuse a Caddy
		// listening on 127.0.0.1 behind a proxy.
		server.WithDisableLocalhostProtection(true),
		server.WithSessionIdManager(f.sessions),
		server.WithEventStore(f.events()),
		server.WithStreamableHTTPLogger(slogOf(f.b.log)),
	}
	if !f.closed {
		opts = append(opts, server.WithSessionIdleTTL(mcpSessionIdleTTL))
		f.done = make(chan struct{})
		go f.watch(f.done)
		f.unlisten = f.listen()
	}
	f.http = server.NewStreamableHTTPServer(f.mcp, opts...)
	return f.http
}

// watch registers the tools of new listings until done is closed, which
// tells the clients listening (a GET stream, subscriptions/listen) that
// the list changed without waiting for their next request.
func (f *mcpFace) watch(done <-chan struct{}) {
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
			f.sync()
			ctx, cancel := context.WithTimeout(context.Background(), watchInterval*5)
			f.resubscribe(ctx)
			cancel()
		}
	}
}

// Close ends what the bridge's MCP endpoints run: the sweepers of idle
// sessions, the watchers of tool listings, and the streams clients listen
// on. The sessions stay valid: the bridge of a reloaded configuration
// serves them. The handler calls it when its configuration is replaced or
// stopped.
func (b *Bridge) Close() {
	for _, f := range b.faces {
		f.close()
	}
	if b.tasks != nil {
		b.tasks.Close()
	}
}

// slogOf is log as the slog.Logger mcp-go logs to.
func slogOf(log *zap.Logger) *slog.Logger {
	return slog.New(zapslog.NewHandler(log.Core(), zapslog.WithName("mcp-go"), zapslog.AddStacktraceAt(slog.Level(127))))
}

// close ends the face's watcher, its idle-session sweeper and its
// listening streams. The sessions themselves outlive it: a reload's new
// face takes them up.
func (f *mcpFace) close() {
	f.startMu.Lock()
	f.closed = true
	h, done, unlisten := f.http, f.done, f.unlisten
	f.done, f.unlisten = nil, nil
	f.startMu.Unlock()
	if done != nil {
		close(done)
	}
	if unlisten != nil {
		unlisten()
	}
	f.parks.close()
	if h != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		f.sessions.closed.Store(true)
		_ = h.Shutdown(ctx)
	}
}

// sync registers the tools of the servers' current views when they are
// not those registered.
func (f *mcpFace) sync() *faceTools {
	if t := f.tools.Load(); t != nil && f.registered(t) {
		return t
	}
	views := make([]*view, len(f.servers))
	for i, st := range f.servers {
		views[i], _ = st.current(f.b.log)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if t := f.tools.Load(); t != nil && sameViews(t.views, views) {
		return t
	}
	t := &faceTools{views: views, byName: map[string]faceTool{}}
	var namer openapi.Namer
	var tools []server.ServerTool
	for i, st := range f.servers {
		if views[i] == nil {
			continue
		}
		for _, rt := range views[i].routes {
			name := rt.tool.Name
			if f.prefixed {
				name = namer.OperationID(st.cfg.Name, rt.tool.Name)
			}
			t.byName[name] = faceTool{st: st, v: views[i], rt: rt,
				headerParams: bytes.Contains(rt.tool.InputSchema, []byte("x-mcp-header"))}
			tools = append(tools, server.ServerTool{Tool: mcpTool(name, rt.tool), Handler: f.call})
		}
	}
	f.mcp.SetTools(tools...)
	f.tools.Store(t)
	return t
}

// registered reports whether t was registered from the servers' current
// views.
func (f *mcpFace) registered(t *faceTools) bool {
	for i, st := range f.servers {
		if v, _ := st.current(f.b.log); v != t.views[i] {
			return false
		}
	}
	return true
}

// instructions are the instructions of the face's servers, as their
// latest listings give them: a server's own, or at a mount's endpoint each
// server's under its name.
func (f *mcpFace) instructions() string {
	t := f.sync()
	var parts []string
	for i, st := range f.servers {
		v := t.views[i]
		if v == nil || strings.TrimSpace(v.set.Server.Instructions) == "" {
			continue
		}
		text := strings.TrimSpace(v.set.Server.Instructions)
		if f.prefixed {
			text = fmt.Sprintf("Server %s (its tools are named %s_<tool>):\n%s", st.cfg.Name, st.cfg.Name, text)
		}
		parts = append(parts, text)
	}
	return strings.Join(parts, "\n\n")
}

// mcpTool is tool as the face lists it under name: schemas and
// annotations as the server sent them.
func mcpTool(name string, tool *upstream.Tool) mcp.Tool {
	t := mcp.Tool{Name: name, Title: tool.Title, Description: tool.Description,
		RawInputSchema: tool.InputSchema, RawOutputSchema: tool.OutputSchema}
	if t.RawInputSchema == nil {
		t.RawInputSchema = json.RawMessage(`{"type":"object"}`)
	}
	if tool.Annotations != nil {
		_ = json.Unmarshal(tool.Annotations, &t.Annotations) // lossy for hints newer than mcp-go's
	}
	return t
}

// granted filters tools down to those the caller of ctx is granted; all of
// them without access rules.
func (f *mcpFace) granted(ctx context.Context, tools []mcp.Tool) []mcp.Tool {
	if f.b.policy == nil {
		return tools
	}
	t := f.tools.Load()
	if t == nil {
		return nil
	}
	g := f.b.policy.grantOf(ctx)
	kept := tools[:0:0]
	for _, tool := range tools {
		ft, ok := t.byName[tool.Name]
		if ok && g.of(ft.st, ft.v).permits(ft.rt) {
			kept = append(kept, tool)
		}
	}
	return kept
}

// refuseDown answers tools/list when no server of the face has listed its
// tools, and tools/call of a tool that is not registered while a server
// has not, with why the server is not ready (and where to authorize it):
// mcp-go would say there are no tools, or that the tool does not exist.
func (f *mcpFace) refuseDown(ctx context.Context, _ any, message any) error {
	t := f.tools.Load()
	raw, ok := message.(json.RawMessage)
	if !ok || t == nil || !slices.Contains(t.views, nil) {
		return nil // every server has listed its tools
	}
	var m struct {
		Method string `json:"method"`
		Params struct {
			Name string `json:"name"`
		} `json:"params"`
	}
	if json.Unmarshal(raw, &m) != nil || (m.Method != string(mcp.MethodToolsList) && m.Method != string(mcp.MethodToolsCall)) {
		return nil
	}
	if _, known := t.byName[m.Params.Name]; m.Method == string(mcp.MethodToolsCall) && known {
		return nil
	}
	var down []string
	for i, st := range f.servers {
		if t.views[i] != nil {
			if m.Method == string(mcp.MethodToolsList) {
				return nil // some server lists tools
			}
			continue
		}
		_, err := st.current(f.b.log)
		if err == nil {
			continue
		}
		e := f.b.unlisted(ctx, st, baseOf(ctx)+f.prefixOf(st), m.Params.Name, err)
		down = append(down, e.Detail.Message)
	}
	if len(down) == 0 {
		return nil
	}
	return errors.New(strings.Join(down, "; "))
}

// prefixOf is the path of st below the face's base.
func (f *mcpFace) prefixOf(st *serverState) string {
	if f.prefixed {
		return "/" + st.cfg.Name
	}
	return ""
}

// call is the handler of every registered tool: it calls the tool through
// the bridge's invoke, with the same bookkeeping as a REST call.
func (f *mcpFace) call(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	res, asked, err := f.callTool(ctx, req)
	if err != nil {
		return nil, err
	}
	return toolResult(res, asked), nil
}

// callTool is call, with the server's result as the session gave it (the
// direct path writes it without mcp-go's type) or the input the server
// asks for before it goes on.
func (f *mcpFace) callTool(ctx context.Context, req mcp.CallToolRequest) (*upstream.CallResult, *mcp.MultiRoundTripResult, error) {
	ft, ok := f.tools.Load().byName[req.Params.Name]
	if !ok { // the tools changed since mcp-go looked it up
		return nil, nil, fmt.Errorf("tool %q is not listed any more; list the tools again", req.Params.Name)
	}
	st, rt, base := ft.st, ft.rt, baseOf(ctx)+f.prefixOf(ft.st)
	who := requesterOf(ctx)
	hooks := upstream.HooksFrom(ctx) // the call's, set in one value
	round, err := f.asking(ctx, who, st.cfg.Name, rt.tool.Name, req.Params.MultiRoundTripParams, &hooks)
	if err != nil {
		return nil, nil, paramsErr(ctx, fmt.Sprintf("tool %q: %v", req.Params.Name, err))
	}
	ctx, track := f.b.beginCall(ctx, req.Header, FaceMCP, st.cfg.Name, rt.tool.Name, rt.tool.Name)
	ctx, stream, places := withCallStream(ctx)
	if req.Params.Meta != nil && req.Params.Meta.ProgressToken != nil {
		stream.token = req.Params.Meta.ProgressToken
		hooks.Progress = f.relayProgress(stream)
	}
	logs := f.relayCallLogs(who, st, stream, &hooks, places.logs)
	*places.hooks = hooks
	ctx = upstream.WithHooks(ctx, places.hooks)
	args := bytes.TrimSpace(req.Params.RawArguments) // as sent: numbers keep their precision
	if len(args) == 0 || bytes.Equal(args, []byte("null")) {
		args = json.RawMessage("{}")
	}
	var sink *fastSink
	if fr := faceRequestOf(ctx); fr != nil {
		sink = fr.sink
	}
	got, e, asked := f.run(ctx, round, st, rt.tool.Name, func(ctx context.Context) (any, *httpError) {
		defer logs.end() // with the call, which a parked one outlives the request
		return f.invoke(ctx, st, rt, args, base, sink)
	})
	res, _ := got.(*upstream.CallResult)
	outcome, status := OutcomeOK, http.StatusOK
	switch {
	case asked != nil:
		outcome, res = OutcomeInputRequired, nil
	case e != nil:
		outcome, status = e.Outcome, e.Status
		f.b.logFailure(st.cfg.Name, e)
	case res.IsError:
		outcome = OutcomeToolError
	}
	f.b.logCall(st.cfg.Name, rt.tool.Name, track.start, args, func() []byte {
		b, _ := json.Marshal(toolResult(res, asked))
		return b
	}, e)
	track.end(ctx, outcome, status, int64(len(args)), resultBytes(res))
	if e != nil {
		return nil, nil, faceErr(ctx, e)
	}
	return res, asked, nil
}

// toolResult is the answer of a call as mcp-go's type: res, or the input
// asked when the server asked for some.
func toolResult(res *upstream.CallResult, asked *mcp.MultiRoundTripResult) *mcp.CallToolResult {
	if asked != nil {
		return &mcp.CallToolResult{Result: mcp.Result{ResultType: mcp.ResultTypeInputRequired}, MultiRoundTripResult: *asked}
	}
	if res == nil {
		return nil
	}
	return mcpResult(res)
}

// relayProgress returns the function that passes the progress
// notifications of the server's call on to the client, under the client's
// progress token, on the call's stream. The server sends them on the
// session's reader, so they are queued without waiting (a client that
// does not read loses them).
func (f *mcpFace) relayProgress(stream *callStream) upstream.ProgressFunc {
	return func(p upstream.Progress) {
		ctx, token := stream.target()
		if ctx == nil || token == nil {
			return // between the rounds of a parked call
		}
		params := map[string]any{"progressToken": token, "progress": p.Progress}
		if p.Total > 0 {
			params["total"] = p.Total
		}
		if p.Message != "" {
			params["message"] = p.Message
		}
		f.notify(ctx, string(mcp.MethodNotificationProgress), params)
	}
}

// callStream is where the notifications of a call (progress, log
// messages) go: the client's request under way, with its progress token.
// A parked call's is the request of the round under way, none between
// rounds (see parked.round).
type callStream struct {
	mu    sync.Mutex
	ctx   context.Context // nil between rounds
	token mcp.ProgressToken
	taken bool // by a call
}

// notify sends a notification of method with params to the client of the
// request of ctx, on the request's stream: the direct path's sink, or
// mcp-go's session.
func (f *mcpFace) notify(ctx context.Context, method string, params map[string]any) {
	if fr := faceRequestOf(ctx); fr != nil && fr.sink != nil {
		fr.sink.notify(method, params)
		return
	}
	_ = f.mcp.SendNotificationToClient(ctx, method, params)
}

// callStreamKey carries the *callStream of a call made under a request
// whose faceRequest's is taken.
type callStreamKey struct{}

// withCallStream returns ctx with the callStream of a call made under it,
// pointed at ctx's request: its faceRequest's, the one call a request
// carries; and the places for the call's hooks and log relay.
func withCallStream(ctx context.Context) (context.Context, *callStream, callPlaces) {
	if fr := faceRequestOf(ctx); fr != nil {
		s := &fr.stream
		s.mu.Lock()
		taken := s.taken
		if !taken {
			s.taken, s.ctx = true, ctx
		}
		s.mu.Unlock()
		if !taken {
			return ctx, s, callPlaces{&fr.hooks, &fr.logs}
		}
	}
	s := &callStream{ctx: ctx, taken: true}
	return context.WithValue(ctx, callStreamKey{}, s), s, callPlaces{new(upstream.Hooks), new(callLogs)}
}

// callPlaces are where a call keeps what its context and the face point
// at while it runs: the request's, for the call that takes its stream.
type callPlaces struct {
	hooks *upstream.Hooks
	logs  *callLogs
}

// streamOf returns the callStream of the call made under ctx, or nil.
func streamOf(ctx context.Context) *callStream {
	if s, ok := ctx.Value(callStreamKey{}).(*callStream); ok {
		return s
	}
	if fr := faceRequestOf(ctx); fr != nil {
		s := &fr.stream
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.taken {
			return s
		}
	}
	return nil
}

// target returns the request the notifications go to, and its progress
// token; a nil ctx for none.
func (s *callStream) target() (context.Context, mcp.ProgressToken) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctx, s.token
}

// follow points s at the request of ctx (its callStream's), or at none
// when ctx is nil.
func (s *callStream) follow(ctx context.Context) {
	var ctxTo context.Context
	var token mcp.ProgressToken
	if ctx != nil {
		if next := streamOf(ctx); next != nil {
			ctxTo, token = next.target()
		}
	}
	s.mu.Lock()
	s.ctx, s.token = ctxTo, token
	s.mu.Unlock()
}

// invoke checks the arguments and calls the tool. Arguments the tool's
// schema refuses come back as a tool error, which the model reads and can
// correct, as mcp-go's own input validation does. sink is the direct
// path's call (nil for a call mcp-go's transport made): jsonbody checked
// its args with the message they came in (scanRequest), so an object
// among them needs no second pass, and its notifications/cancelled stops
// it.
func (f *mcpFace) invoke(ctx context.Context, st *serverState, rt *route, args json.RawMessage, base string, sink *fastSink) (*upstream.CallResult, *httpError) {
	if sink == nil || !sink.argsChecked || args[0] != '{' {
		if err := jsonbody.Object(args, MaxBodyDepth); err != nil {
			return invalidResult("the arguments must be a JSON object: " + err.Error()), nil
		}
	}
	args, e := checkArgs(args, st.cfg, rt)
	if e != nil {
		return invalidResult(e.Detail.Message), nil
	}
	var stop *callStop
	if sink != nil && sink.session != "" {
		stop = &sink.stop
	}
	return f.b.invoke(ctx, st, rt, args, base, stop)
}

// invalidResult is the tool error of arguments refused before the call.
func invalidResult(msg string) *upstream.CallResult {
	text, _ := json.Marshal(map[string]string{"type": "text", "text": msg})
	return &upstream.CallResult{IsError: true, Content: []upstream.Content{{Type: "text", Text: msg, Raw: text}}}
}

// mcpResult is res as the face answers it: every content item, the
// structured content and _meta as the server sent them.
func mcpResult(res *upstream.CallResult) *mcp.CallToolResult {
	out := &mcp.CallToolResult{IsError: res.IsError, RawStructuredContent: res.Structured}
	out.Content = make([]mcp.Content, len(res.Content))
	for i := range res.Content {
		out.Content[i] = rawContent{raw: contentOf(&res.Content[i])}
	}
	if m := nonNullJSON(res.Meta); m != nil {
		var meta mcp.Meta
		if json.Unmarshal(m, &meta) == nil {
			out.Meta = &meta
		}
	}
	return out
}

// contentOf is the JSON of a content item: as the server sent it,
// annotations and _meta included, or made here for an item made here.
func contentOf(c *upstream.Content) json.RawMessage {
	if c.Wire != nil {
		return c.Wire
	}
	if c.Raw != nil {
		return c.Raw
	}
	return contentJSON(c)
}

// resultBytes is the size of the server's result passed on: its content
// items, structured content and _meta; 0 for none.
func resultBytes(res *upstream.CallResult) int64 {
	if res == nil {
		return 0
	}
	n := len(res.Structured) + len(res.Meta)
	for i := range res.Content {
		n += len(contentOf(&res.Content[i]))
	}
	return int64(n)
}

// nonNullJSON returns nil for an absent or null JSON value.
func nonNullJSON(b json.RawMessage) json.RawMessage {
	if b = bytes.TrimSpace(b); len(b) == 0 || bytes.Equal(b, []byte("null")) {
		return nil
	}
	return b
}

// contentJSON is the wire form of a content item that has none.
func contentJSON(c *upstream.Content) json.RawMessage {
	return mustJSON(struct {
		Type     string                     `json:"type"`
		Text     string                     `json:"text,omitempty"`
		Data     string                     `json:"data,omitempty"`
		MIMEType string                     `json:"mimeType,omitempty"`
		URI      string                     `json:"uri,omitempty"`
		Name     string                     `json:"name,omitempty"`
		Resource *upstream.ResourceContents `json:"resource,omitempty"`
	}{c.Type, c.Text, c.Data, c.MIMEType, c.URI, c.Name, c.Resource})
}

// rawContent is a content item passed on byte for byte, whatever its type.
// It embeds a TextContent only to be an mcp.Content.
type rawContent struct {
	mcp.TextContent
	raw json.RawMessage
}

// MarshalJSON returns the item as the server sent it.
func (c rawContent) MarshalJSON() ([]byte, error) { return c.raw, nil }

// faceError is the JSON-RPC error of a request that got no result. mcp-go
// answers a handler's error with code -32603 and the error's text
// (server/handler_errors.go): the text says what the REST face's answer
// says. A server's own JSON-RPC error is passed on with its code, message
// and data, which the text carries in a marker (mcperrors.go) that the
// face's writer turns back into them.
type faceError struct {
	e *httpError
	// rpc is the server's JSON-RPC error behind e, nil for the face's own.
	rpc *rpcPassed
}

// faceErr is the error of a request under ctx that failed with e.
func faceErr(ctx context.Context, e *httpError) error {
	if e == clientGone {
		return context.Canceled
	}
	return &faceError{e: e, rpc: passedRPC(ctx, e)}
}

// paramsErr is the error of a request under ctx whose params the face
// refuses, msg saying why: a JSON-RPC invalid params error (-32602), as
// mcp-go answers the params it refuses itself, where it answers a
// handler's error as an internal one.
func paramsErr(ctx context.Context, msg string) error {
	return &faceError{e: &httpError{Status: http.StatusBadRequest, Outcome: OutcomeInvalidArguments, Detail: errorDetail{Message: msg}},
		rpc: &rpcPassed{Code: mcp.INVALID_PARAMS, Message: msg, Modern: modernRequest(ctx)}}
}

func (f *faceError) Error() string {
	if f.rpc == nil {
		return f.text()
	}
	return f.text() + " " + f.rpc.marker()
}

// text is the error as the REST face says it, with the server's JSON-RPC
// code and data when it sent one.
func (f *faceError) text() string {
	d := f.e.Detail
	msg := d.Message
	if d.Code != nil {
		msg = fmt.Sprintf("server %q answered JSON-RPC error %d: %s", d.Server, *d.Code, d.Message)
		if len(d.Data) > 0 {
			msg += " (data: " + string(d.Data) + ")"
		}
	}
	if d.Authorize != "" && !strings.Contains(msg, d.Authorize) {
		msg += " (authorize at " + d.Authorize + ")"
	}
	return msg
}

func (f *faceError) Unwrap() error { return f.e }

// faceRequest is what the face keeps of a request it serves, carried in
// the request's context as one value: the base path, and the places its
// handlers fill in for the one message a request carries.
type faceRequest struct {
	base   string         // the face's base path as the client sees it
	lists  faceLists      // what the servers list, for a list request (gather)
	stream callStream     // where the notifications of a call go
	hooks  upstream.Hooks // the call's, with the stream
	logs   callLogs       // the call's log relay, with the stream
	sink   *fastSink      // the direct path's, when it serves the request: fast
	fast   fastSink
	rw     rpcWriter // what the request is answered through
	// info is a 2026-07-28 request's protocol information when the direct
	// path serves it (fastContext); zero otherwise.
	info server.RequestProtocolInfo
	// round is the place of a 2026-07-28 request's round (newFaceRound),
	// taken by the request's goroutine.
	round      faceRound
	roundTaken bool
}

// faceRequestKey carries the *faceRequest of a request.
type faceRequestKey struct{}

// withFaceRequest returns ctx carrying a faceRequest for a request under
// the base path base.
func withFaceRequest(ctx context.Context, base string) (context.Context, *faceRequest) {
	fr := &faceRequest{base: base}
	return context.WithValue(ctx, faceRequestKey{}, fr), fr
}

// faceRequestOf returns the faceRequest of ctx, or nil.
func faceRequestOf(ctx context.Context) *faceRequest {
	fr, _ := ctx.Value(faceRequestKey{}).(*faceRequest)
	return fr
}

// baseOf is the face's base path as the client of ctx sees it.
func baseOf(ctx context.Context) string {
	if fr := faceRequestOf(ctx); fr != nil {
		return fr.base
	}
	return ""
}

// serveMCP serves an MCP endpoint: it checks the Origin (DNS rebinding),
// the key and identity every request needs, whatever its method, caps the
// body at MaxBodyBytes, refuses batches, and hands the request to mcp-go.
// base is the base path of the endpoint's server, or of the mount.
func (b *Bridge) serveMCP(w http.ResponseWriter, r *http.Request, p *page, base string) *httpError {
	if origin := r.Header.Get("Origin"); origin != "" && !b.gate.allowsOrigin(origin) && !localOrigin(r, origin) {
		writeRPCError(w, http.StatusForbidden, mcp.INVALID_REQUEST,
			fmt.Sprintf("origin %s is not allowed to use this MCP server (see the cors setting)", origin))
		return nil
	}
	if e := b.gate.admit(r, false); e != nil {
		return e
	}
	var body []byte
	if r.Method == http.MethodPost {
		// Read as a REST call's body is: counted in the bytes in flight
		// until the answer is written, gzip decoded.
		h := hold{b: &b.bodies}
		defer h.release()
		var e *httpError
		if body, e = readBody(w, r, b.cfg.MaxBodyBytes, &h); e != nil {
			if e == clientGone {
				return e
			}
			settle(r, e, b.cfg.MaxBodyBytes, &h)
			msg := e.Detail.Message
			if e.Status == http.StatusRequestEntityTooLarge {
				how := ""
				if strings.HasSuffix(msg, " once decoded") {
					how = " once decoded"
				}
				msg = fmt.Sprintf("the message is larger than %d bytes%s, this server's limit (max_request_body)", b.cfg.MaxBodyBytes, how)
			}
			e.setHeaders(w.Header())
			writeRPCError(w, e.Status, mcp.INVALID_REQUEST, msg)
			return nil
		}
		if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '[' {
			writeRPCError(w, http.StatusBadRequest, mcp.INVALID_REQUEST,
				"JSON-RPC batches are not supported: send one message per request")
			return nil
		}
	}
	if r.Method != http.MethodPost && !mcp.IsModernProtocol(r.Header.Get(mcp.HeaderProtocolVersion)) {
		// mcp-go opens a GET stream, and keeps its session, for any
		// session ID or none: only sessions this process began may.
		sid := r.Header.Get(server.HeaderKeySessionID)
		if sid == "" {
			writeRPCError(w, http.StatusBadRequest, mcp.INVALID_REQUEST,
				"this needs the Mcp-Session-Id of a session: initialize one with a POST first")
			return nil
		}
		if ended, err := p.face.sessions.Validate(sid); err != nil || ended {
			writeRPCError(w, http.StatusNotFound, mcp.INVALID_REQUEST, "no such session: initialize a new one")
			return nil
		}
	}
	p.face.sync()
	ctx, fr := withFaceRequest(r.Context(), base)
	fr.rw = rpcWriter{ResponseWriter: w}
	rw := &fr.rw
	if r.Method == http.MethodPost && !p.face.noFast && p.face.serveFast(rw, r, ctx, fr, body) {
		rw.release()
		return nil
	}
	var stop *callStop // of a direct call the message cancels
	if r.Method == http.MethodPost {
		stop = p.face.passing(r, body)
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	r = r.WithContext(ctx)
	p.face.handler().ServeHTTP(rw, r)
	if stop != nil && rw.status == http.StatusAccepted {
		stop.stop()
	}
	rw.release()
	return nil
}

// localOrigin reports a request from a page of the same machine to a
// server it reaches as the same machine: both the Origin's host and the
// request's are loopback names (localhost, 127.0.0.1, [::1]). A page of
// another site that a rebinding DNS sends here has its own name as its
// Origin, and is refused.
func localOrigin(r *http.Request, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return loopbackName(u.Hostname()) && loopbackName(strings.Trim(host, "[]"))
}

// loopbackName reports localhost or a loopback address.
func loopbackName(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// writeRPCError writes a JSON-RPC error without an id, for a request
// refused before its message is read.
func writeRPCError(w http.ResponseWriter, status, code int, msg string) {
	body, _ := json.Marshal(mcp.NewJSONRPCError(mcp.NewRequestId(nil), code, msg, nil))
	writeJSON(w, status, body)
}

// mcpSessions issues the session IDs of every MCP endpoint of the process:
// a random ID and its HMAC under a key of the process, so that an ID it
// did not issue is refused (404, and the client starts a new session), and
// one it issued before a reload still works with the reloaded endpoint.
var mcpSessions = newSessionIDs()

// sessionIDs implements mcp-go's SessionIdManager.
type sessionIDs struct {
	key []byte

	mu         sync.RWMutex    // read by every request of a session
	terminated map[string]bool // bounded by maxTerminated
	// states are what the clients of live sessions told their endpoint
	// (see sessionState), bounded by maxTerminated.
	states map[string]*sessionState
}

// maxTerminated bounds the terminated IDs remembered; past it, the oldest
// are forgotten all at once (an ID is only refused while remembered).
const maxTerminated = 100000

func newSessionIDs() *sessionIDs {
	return &sessionIDs{key: newKey("MCP session IDs"), terminated: map[string]bool{}}
}

// newKey returns a random key of the process, to sign what names.
func newKey(what string) []byte {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic("bridge: no randomness for " + what + ": " + err.Error())
	}
	return key
}

func (s *sessionIDs) sign(id string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}

// Generate returns a new session ID.
func (s *sessionIDs) Generate() string {
	id := uuid.NewString()
	return id + "." + s.sign(id)
}

// Validate refuses an ID it did not issue, and reports one ended.
func (s *sessionIDs) Validate(sessionID string) (isTerminated bool, err error) {
	id, sig, ok := strings.Cut(sessionID, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(s.sign(id))) {
		return false, errors.New("unknown session ID")
	}
	return s.ended(sessionID), nil
}

// ended reports a session ended, of an ID known to be one it issued.
func (s *sessionIDs) ended(sessionID string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.terminated[sessionID]
}

// Terminate ends a session.
func (s *sessionIDs) Terminate(sessionID string) (isNotAllowed bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.terminated) >= maxTerminated {
		s.terminated = map[string]bool{}
	}
	s.terminated[sessionID] = true
	delete(s.states, sessionID)
	return false, nil
}

// faceSessions is the session IDs as one endpoint sees them: once it is
// closed, the sessions it ends on its side (Shutdown) are not ended, so
// that the endpoint of the reloaded configuration takes them up.
type faceSessions struct {
	*sessionIDs
	closed atomic.Bool
	// forget forgets what the endpoint keeps of a session it ends; set
	// with the endpoint.
	forget func(sessionID string)
}

// Terminate ends a session (a DELETE, or mcp-go's sweep of idle
// sessions), unless the endpoint is closed.
func (s *faceSessions) Terminate(sessionID string) (bool, error) {
	if s.closed.Load() {
		return false, nil
	}
	if s.forget != nil {
		s.forget(sessionID)
	}
	return s.sessionIDs.Terminate(sessionID)
}

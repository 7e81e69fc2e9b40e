package bridge

// What the servers of a face tell it on their own, passed on to the MCP
// clients: that their resources or prompts changed, and their log
// messages.
//
// list_changed goes to every client of the face, as the face's own
// (it says nothing but that a list changed).
//
// Log messages: the servers' sessions are shared between clients, so a
// client's logging/setLevel is the face's to answer, not passed upstream
// as such: it is the session's vote on the level of each server it is
// granted a tool of (upstream.Upstream.SetLogLevel), which sets a
// 2025-11-25 server's session to the most verbose level voted (some
// servers send nothing until a level is set), and back when the voters
// leave. Each client session of the 2025-11-25 era gets the messages of
// the servers it is granted a tool of, at the level it set with
// logging/setLevel (error until it sets one, mcp-go's default), with
// logger naming the server in a face of several: no client gets more than
// it asked for. The 2026-07-28 era declares log levels per request, and
// such a message belongs to no request: those clients get none.
//
// A call's own log messages, those a Streamable HTTP server sends on the
// stream answering the call (upstream.WithLog), go to the client that
// made the call, on the call's stream, as its progress does: in the
// 2025-11-25 era at the level the session set, every level until it sets
// one; in the 2026-07-28 era at the level the request declares, none
// without one. The call asks a 2026-07-28 server for them at that level
// (upstream.WithLogLevel): such a server sends none otherwise. The server's
// transport hands the same message to the broadcast above just after: the
// broadcast skips the session that got it on the call's stream (callLogs).

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/openapi"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// noticeSource is a Caller whose server's notices the MCP endpoints pass
// on: *upstream.Upstream, and the module's leases of shared servers.
type noticeSource interface {
	Listen(f func(upstream.Notice)) (stop func())
}

// callerNoticeSource is a Caller that runs a session of its server for
// each caller (the module's leases of per-user servers): each of its
// notices is of one caller's session, and goes to that caller's MCP
// sessions only; and an MCP session's vote on the server's log level goes
// to its caller's session of the server.
type callerNoticeSource interface {
	ListenCallers(f func(caller string, n upstream.Notice)) (stop func())
	SetCallerLogLevel(caller string, voter any, level string) <-chan struct{}
}

// faceNotices is the state of a face's relaying of notices.
type faceNotices struct {
	relays bool // some server of the face is a noticeSource

	clients sync.Map // session ID → *grant (nil without access rules): the clients told of log messages
	// voters are the grants of sessions that vote on the servers' log
	// levels before mcp-go registers them with this endpoint (restored
	// after a reload, see restore), until it does or they end.
	voters  sync.Map // session ID → *grant
	levels  sync.Map // session ID → mcp.LoggingLevel: the level a client set with logging/setLevel
	callers sync.Map // session ID → the ID of its caller (Identity), for the notices of per-user servers

	votesMu sync.Mutex
	voting  bool // the face's sessions vote on its servers' log levels: between listen and its stop

	callsMu sync.Mutex
	calls   map[*callLogs]struct{} // the calls under way that sent their client a log message on their stream
}

// callLogs is a call under way whose server's log messages about it go to
// the client that made it, on the call's stream.
type callLogs struct {
	f       *mcpFace
	session string // the client's session; "" in the 2026-07-28 era, which gets no broadcast
	server  *serverState
	level   mcp.LoggingLevel // the client's
	stream  *callStream
	// sent counts the messages sent on the call's stream that the
	// broadcast has not met yet, by logKey: it skips the session for them.
	sent  map[string]int
	ended bool // with the call; guarded by the face's callsMu
}

// maxCallLogsPending bounds callLogs.sent: past it, a message sent on the
// call's stream may reach the session a second time by the broadcast.
const maxCallLogsPending = 256

// noticeOptions are the options of mcp-go's server for relaying notices,
// with their hooks added to hooks.
func (f *mcpFace) noticeOptions(hooks *server.Hooks) []server.ServerOption {
	for _, st := range f.servers {
		_, shared := st.cfg.Upstream.(noticeSource)
		_, perCaller := st.cfg.Upstream.(callerNoticeSource)
		f.relays = f.relays || shared || perCaller
	}
	if !f.relays {
		return nil
	}
	hooks.AddOnRegisterSession(func(ctx context.Context, s server.ClientSession) {
		f.noteCaller(ctx, s.SessionID())
		f.clients.Store(s.SessionID(), f.grantOf(ctx))
		f.voters.Delete(s.SessionID())
	})
	hooks.AddOnUnregisterSession(func(_ context.Context, s server.ClientSession) {
		f.voteLogLevel(s.SessionID(), "")
		f.clients.Delete(s.SessionID())
		f.voters.Delete(s.SessionID())
		f.levels.Delete(s.SessionID())
		f.callers.Delete(s.SessionID())
	})
	hooks.AddAfterSetLevel(func(ctx context.Context, _ any, req *mcp.SetLevelRequest, _ *mcp.EmptyResult) {
		if s := server.ClientSessionFromContext(ctx); s != nil {
			f.noteVoter(ctx, s.SessionID())
			f.levels.Store(s.SessionID(), req.Params.Level)
			f.awaitLogLevel(ctx, f.voteLogLevel(s.SessionID(), req.Params.Level))
		}
	})
	return []server.ServerOption{server.WithLogging()}
}

// forgetSession forgets what the face keeps of a session that ended: its
// vote on the servers' log levels, its level, its caller and its grant.
// mcp-go's unregistering does so for a session it registered; one that
// an endpoint before a reload registered, restored here (restore), is
// never registered with this one.
func (f *mcpFace) forgetSession(session string) {
	if _, voted := f.levels.Load(session); voted {
		f.voteLogLevel(session, "")
	}
	f.clients.Delete(session)
	f.voters.Delete(session)
	f.levels.Delete(session)
	f.callers.Delete(session)
}

// noteVoter notes the caller of session, who makes the request of ctx
// and votes on the servers' log levels, and, when mcp-go has not
// registered the session with this endpoint (one restored after a
// reload), the caller's grant, which the votes go by.
func (f *mcpFace) noteVoter(ctx context.Context, session string) {
	f.noteCaller(ctx, session)
	if _, registered := f.clients.Load(session); !registered {
		f.voters.Store(session, f.grantOf(ctx))
	}
}

// grantOf is the grant of the caller of ctx's request: nil without access
// rules.
func (f *mcpFace) grantOf(ctx context.Context) *grant {
	if f.b.policy == nil {
		return nil
	}
	return f.b.policy.grantOf(ctx)
}

// noteCaller notes the caller of session, who makes the request of ctx.
func (f *mcpFace) noteCaller(ctx context.Context, session string) {
	if id, ok := IdentityFrom(ctx); ok && id.ID != "" {
		f.callers.Store(session, id.ID)
	}
}

// listen starts passing on the notices of the face's servers, and the
// votes of its sessions on their log levels, until stop, which withdraws
// the votes.
func (f *mcpFace) listen() (stop func()) {
	var stops []func()
	for _, st := range f.servers {
		if ns, ok := st.cfg.Upstream.(noticeSource); ok {
			stops = append(stops, ns.Listen(func(n upstream.Notice) { f.notice(st, n, nil) }))
		}
		if cs, ok := st.cfg.Upstream.(callerNoticeSource); ok {
			stops = append(stops, cs.ListenCallers(func(caller string, n upstream.Notice) {
				f.notice(st, n, func(session string) bool {
					c, _ := f.callers.Load(session)
					return c == caller
				})
			}))
		}
	}
	f.votesMu.Lock()
	f.voting = true
	f.votesMu.Unlock()
	return func() {
		for _, s := range stops {
			s()
		}
		f.votesMu.Lock()
		defer f.votesMu.Unlock()
		f.voting = false
		f.levels.Range(func(id, _ any) bool {
			f.voteLocked(id.(string), "")
			return true
		})
	}
}

var _ logLevelVoter = (*upstream.Upstream)(nil)

// logLevelVoter is a Caller whose server's log level the face's sessions
// vote on: *upstream.Upstream, and the module's leases of shared servers.
type logLevelVoter interface {
	SetLogLevel(voter any, level string) (settled <-chan struct{})
}

// maxLogLevelWait bounds how long a client's logging/setLevel waits for
// its servers to be set to the level.
const maxLogLevelWait = 2 * time.Second

// awaitLogLevel waits, within ctx and maxLogLevelWait, until the servers
// were set as votes want, so that a client's next call finds them
// sending at its level.
func (f *mcpFace) awaitLogLevel(ctx context.Context, votes []<-chan struct{}) {
	t := time.NewTimer(maxLogLevelWait)
	defer t.Stop()
	for _, settled := range votes {
		select {
		case <-settled:
		case <-ctx.Done():
			return
		case <-t.C:
			return
		}
	}
}

// voteLogLevel casts the vote of session on the log level of the face's
// servers it is granted a tool of: level, or "" to withdraw it (the
// session ended). Once the face stops listening, its sessions cast none.
// It returns the votes' settled channels (upstream.Upstream.SetLogLevel).
func (f *mcpFace) voteLogLevel(session string, level mcp.LoggingLevel) []<-chan struct{} {
	f.votesMu.Lock()
	defer f.votesMu.Unlock()
	if f.voting || level == "" {
		return f.voteLocked(session, level)
	}
	return nil
}

// voteLocked casts a vote of voteLogLevel, under votesMu.
func (f *mcpFace) voteLocked(session string, level mcp.LoggingLevel) []<-chan struct{} {
	var votes []<-chan struct{}
	g, registered := f.clients.Load(session)
	if !registered {
		g, _ = f.voters.Load(session)
	}
	caller, _ := f.callers.Load(session)
	for _, st := range f.servers {
		vote := string(level)
		if v, _ := st.current(f.b.log); v == nil {
			vote = ""
		} else if g, _ := g.(*grant); g != nil && g.of(st, v).n == 0 {
			vote = ""
		}
		voter := faceClient{face: f, session: session}
		if lv, ok := st.cfg.Upstream.(logLevelVoter); ok {
			votes = append(votes, lv.SetLogLevel(voter, vote))
		}
		if cs, ok := st.cfg.Upstream.(callerNoticeSource); ok && caller != nil {
			votes = append(votes, cs.SetCallerLogLevel(caller.(string), voter, vote))
		}
	}
	return votes
}

// notice passes on a notice of server st to the face's sessions, those
// of which to says so when to is not nil (a notice of a caller's session
// of a per-user server goes to that caller's). It runs on the server's
// transport reader: nothing here blocks (mcp-go drops a notification for
// a client whose queue is full).
func (f *mcpFace) notice(st *serverState, n upstream.Notice, to func(session string) bool) {
	v, _ := st.current(f.b.log)
	if v == nil {
		return
	}
	switch n.Method {
	case string(mcp.MethodNotificationResourcesListChanged):
		if v.serves(openapi.ListResources) {
			f.sendListChanged(n.Method, to)
		}
	case string(mcp.MethodNotificationPromptsListChanged):
		if v.serves(openapi.ListPrompts) {
			f.sendListChanged(n.Method, to)
		}
	case string(mcp.MethodNotificationMessage):
		f.relayLog(st, v, n.Params, to)
	case string(mcp.MethodNotificationResourceUpdated):
		if to == nil { // a per-user server's resources cannot be subscribed to
			f.relayUpdated(st, n.Params)
		}
	}
}

// sendListChanged sends a list_changed notification of method to every
// session of the face, or to those of which to says so.
func (f *mcpFace) sendListChanged(method string, to func(session string) bool) {
	if to == nil {
		f.mcp.SendNotificationToAllClients(method, nil)
		return
	}
	f.clients.Range(func(id, _ any) bool {
		if to(id.(string)) {
			_ = f.mcp.SendNotificationToSpecificClient(id.(string), method, nil)
		}
		return true
	})
}

// relayLog passes a log message of server st on to the sessions granted a
// tool of it (those of which to says so, when it is not nil), at each
// one's level, but a session that got it on the stream of its call.
func (f *mcpFace) relayLog(st *serverState, v *view, p map[string]any, to func(session string) bool) {
	level, _ := p["level"].(string)
	logger, _ := p["logger"].(string)
	msg := f.logNotification(st, level, logger, p["data"])
	skip := f.sentOnACall(st, logKey(msg))
	f.clients.Range(func(id, g any) bool {
		if skip[id.(string)] || to != nil && !to(id.(string)) {
			return true
		}
		if g, _ := g.(*grant); g == nil || g.of(st, v).n > 0 {
			_ = f.mcp.SendLogMessageToSpecificClient(id.(string), msg)
		}
		return true
	})
}

// logNotification is a log message of server st as the face passes it on:
// at a face of several servers, logger names the server.
func (f *mcpFace) logNotification(st *serverState, level, logger string, data any) mcp.LoggingMessageNotification {
	if f.prefixed {
		if logger != "" {
			logger = st.cfg.Name + "/" + logger
		} else {
			logger = st.cfg.Name
		}
	}
	return mcp.NewLoggingMessageNotification(mcp.LoggingLevel(level), logger, data)
}

// logKey tells log messages apart, for the broadcast to find those sent
// on a call's stream: both sides decode the data the same way.
func logKey(m mcp.LoggingMessageNotification) string {
	data, _ := json.Marshal(m.Params.Data)
	return string(m.Params.Level) + "\x00" + m.Params.Logger + "\x00" + string(data)
}

// sentOnACall returns the sessions that got the message of key from st on
// the stream of a call, forgetting that they did.
func (f *mcpFace) sentOnACall(st *serverState, key string) map[string]bool {
	f.callsMu.Lock()
	defer f.callsMu.Unlock()
	var skip map[string]bool
	for c := range f.calls {
		if c.server != st || c.session == "" || c.sent[key] == 0 || skip[c.session] {
			continue
		}
		if c.sent[key]--; c.sent[key] == 0 {
			delete(c.sent, key)
		}
		if skip == nil {
			skip = map[string]bool{}
		}
		skip[c.session] = true
	}
	return skip
}

// callLogLevel is the level of the log messages the client who gets on
// the call's stream, "" for none; and its session, "" in the 2026-07-28
// era.
func (f *mcpFace) callLogLevel(who requester) (level mcp.LoggingLevel, session string) {
	if info := who.info; info != nil {
		return info.LogLevel, ""
	}
	s := who.session
	if s == nil {
		return "", ""
	}
	if l, ok := f.levels.Load(s.SessionID()); ok {
		return l.(mcp.LoggingLevel), s.SessionID()
	}
	return mcp.LoggingLevelDebug, s.SessionID() // every level until the client sets one
}

// relayCallLogs sets the hooks h of a call of client who to server st so
// that the server's log messages about the call reach the client, on the
// call's stream, and returns what the call ends as it ends (nil for
// nothing to end): c, set up for the call. The messages come on the
// server's transport reader: they are queued without waiting, as progress
// is.
func (f *mcpFace) relayCallLogs(who requester, st *serverState, stream *callStream, h *upstream.Hooks, c *callLogs) *callLogs {
	level, session := f.callLogLevel(who)
	if !f.relays || level == "" {
		return nil
	}
	// c joins f.calls with the first message it sends: most calls send
	// none, and the broadcast looks for those that did.
	*c = callLogs{f: f, session: session, server: st, level: level, stream: stream}
	h.Log, h.LogLevel = c.relay, string(level)
	return c
}

// relay passes a log message of the server on to the call's client.
func (c *callLogs) relay(m upstream.LogMessage) {
	if !mcp.LoggingLevel(m.Level).ShouldSendTo(c.level) {
		return
	}
	var data any
	if len(m.Data) > 0 {
		_ = json.Unmarshal(m.Data, &data)
	}
	f := c.f
	msg := f.logNotification(c.server, m.Level, m.Logger, data)
	f.callsMu.Lock()
	live := !c.ended
	if live && c.session != "" && len(c.sent) < maxCallLogsPending {
		if c.sent == nil {
			c.sent = map[string]int{}
			if f.calls == nil {
				f.calls = map[*callLogs]struct{}{}
			}
			f.calls[c] = struct{}{}
		}
		c.sent[logKey(msg)]++
	}
	f.callsMu.Unlock()
	if to, _ := c.stream.target(); live && to != nil {
		f.notify(to, msg.Method, map[string]any{
			"level": msg.Params.Level, "logger": msg.Params.Logger, "data": msg.Params.Data})
	}
}

// end ends the relay with the call; nothing for a nil c.
func (c *callLogs) end() {
	if c == nil {
		return
	}
	c.f.callsMu.Lock()
	defer c.f.callsMu.Unlock()
	c.ended = true
	delete(c.f.calls, c)
}

package bridge

// What the servers of a face tell it on their own, passed on to the MCP
// clients: that their resources or prompts changed, and their log
// messages.
//
// list_changed goes to every client of the face, as the face's own
// (it says nothing but that a list changed).
//
// Log messages: the servers' sessions are shared between clients, so the
// face does not change a server's level (logging/setLevel is not sent
// upstream, and the server sends at its own level, as it does to the
// REST face, which writes each message to Caddy's log). Each client
// session of the 2025-11-25 era gets the messages of the servers it is
// granted a tool of, at the level it set with logging/setLevel (error
// until it sets one, mcp-go's default), with logger naming the server in
// a face of several. The 2026-07-28 era declares log levels per request,
// and a server's messages belong to no request: those clients get none.

import (
	"context"
	"sync"

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

// faceNotices is the state of a face's relaying of notices.
type faceNotices struct {
	relays bool // some server of the face is a noticeSource

	clients sync.Map // session ID → *grant (nil without access rules): the clients told of log messages
}

// noticeOptions are the options of mcp-go's server for relaying notices,
// with their hooks added to hooks.
func (f *mcpFace) noticeOptions(hooks *server.Hooks) []server.ServerOption {
	for _, st := range f.servers {
		if _, ok := st.cfg.Upstream.(noticeSource); ok {
			f.relays = true
		}
	}
	if !f.relays {
		return nil
	}
	hooks.AddOnRegisterSession(func(ctx context.Context, s server.ClientSession) {
		var g *grant
		if f.b.policy != nil {
			g = f.b.policy.grantOf(ctx)
		}
		f.clients.Store(s.SessionID(), g)
	})
	hooks.AddOnUnregisterSession(func(_ context.Context, s server.ClientSession) {
		f.clients.Delete(s.SessionID())
	})
	return []server.ServerOption{server.WithLogging()}
}

// listen starts passing on the notices of the face's servers until stop.
func (f *mcpFace) listen() (stop func()) {
	var stops []func()
	for _, st := range f.servers {
		if ns, ok := st.cfg.Upstream.(noticeSource); ok {
			stops = append(stops, ns.Listen(func(n upstream.Notice) { f.notice(st, n) }))
		}
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}

// notice passes on a notice of server st. It runs on the server's
// transport reader: nothing here blocks (mcp-go drops a notification for
// a client whose queue is full).
func (f *mcpFace) notice(st *serverState, n upstream.Notice) {
	v, _ := st.current(f.b.log)
	if v == nil {
		return
	}
	switch n.Method {
	case string(mcp.MethodNotificationResourcesListChanged):
		if v.serves(openapi.ListResources) {
			f.mcp.SendNotificationToAllClients(n.Method, nil)
		}
	case string(mcp.MethodNotificationPromptsListChanged):
		if v.serves(openapi.ListPrompts) {
			f.mcp.SendNotificationToAllClients(n.Method, nil)
		}
	case string(mcp.MethodNotificationMessage):
		f.relayLog(st, v, n.Params)
	case string(mcp.MethodNotificationResourceUpdated):
		f.relayUpdated(st, n.Params)
	}
}

// relayLog passes a log message of server st on to the sessions granted a
// tool of it, at each one's level.
func (f *mcpFace) relayLog(st *serverState, v *view, p map[string]any) {
	level, _ := p["level"].(string)
	logger, _ := p["logger"].(string)
	if f.prefixed {
		if logger != "" {
			logger = st.cfg.Name + "/" + logger
		} else {
			logger = st.cfg.Name
		}
	}
	msg := mcp.NewLoggingMessageNotification(mcp.LoggingLevel(level), logger, p["data"])
	f.clients.Range(func(id, g any) bool {
		if g, _ := g.(*grant); g == nil || g.of(st, v).n > 0 {
			_ = f.mcp.SendLogMessageToSpecificClient(id.(string), msg)
		}
		return true
	})
}

package bridge

// What the client of a 2025-11-25 session told its endpoint, carried over
// a reload: its clientInfo and capabilities, its log level and its
// resource subscriptions. A session outlives its endpoint (see
// faceSessions): the endpoint of the reloaded configuration serves its
// requests. But mcp-go keeps the client's clientInfo and capabilities, and
// the log level it set, in the server the reload replaced, and the face
// its level and subscriptions in its own state: without them a client
// that declared elicitation or sampling would have the server's requests
// refused after a reload, one that set a log level would get every level
// again, and one that subscribed to a resource would hear of it no more. The process's session IDs
// (sessionIDs) keep them beside the ID, until the session ends, and each
// endpoint gives them back to an mcp-go session that lacks them (see
// restore): a request's, before mcp-go handles it, and a GET stream's, as
// it opens.

import (
	"context"
	"maps"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"go.uber.org/zap"
)

// sessionState is what the client of a session told its endpoint that a
// reload would lose.
type sessionState struct {
	info  mcp.Implementation
	caps  mcp.ClientCapabilities
	level mcp.LoggingLevel // "" until the client sets one
	// subscribed are the endpoint's URIs of the resources the client
	// subscribed to (resources/subscribe), and did not unsubscribe from.
	subscribed map[string]bool
}

// remember changes the state of session id with change, making it when
// there is none.
func (s *sessionIDs) remember(id string, change func(*sessionState)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.states[id]
	if st == nil {
		if s.states == nil || len(s.states) >= maxTerminated {
			s.states = map[string]*sessionState{}
		}
		st = &sessionState{}
		s.states[id] = st
	}
	change(st)
}

// recall returns the state of session id, false when there is none.
func (s *sessionIDs) recall(id string) (sessionState, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, ok := s.states[id]
	if !ok {
		return sessionState{}, false
	}
	c := *st
	c.subscribed = maps.Clone(st.subscribed)
	return c, true
}

// carryOver registers the hooks that keep the states of the face's
// sessions, and give them back to mcp-go's sessions that lack them.
func (f *mcpFace) carryOver(hooks *server.Hooks) {
	hooks.AddAfterInitialize(func(ctx context.Context, _ any, req *mcp.InitializeRequest, _ *mcp.InitializeResult) {
		if s := server.ClientSessionFromContext(ctx); s != nil && s.SessionID() != "" {
			f.sessions.remember(s.SessionID(), func(st *sessionState) {
				st.info, st.caps = req.Params.ClientInfo, req.Params.Capabilities
			})
		}
	})
	hooks.AddAfterSetLevel(func(ctx context.Context, _ any, req *mcp.SetLevelRequest, _ *mcp.EmptyResult) {
		if s := server.ClientSessionFromContext(ctx); s != nil && s.SessionID() != "" {
			f.sessions.remember(s.SessionID(), func(st *sessionState) { st.level = req.Params.Level })
		}
	})
	hooks.AddBeforeAny(func(ctx context.Context, _ any, _ mcp.MCPMethod, _ any) {
		f.restore(ctx, server.ClientSessionFromContext(ctx), false)
	})
	hooks.AddOnRegisterSession(func(ctx context.Context, s server.ClientSession) { f.restore(ctx, s, true) })
}

// restore gives s, a session of the face's mcp-go server of a request of
// ctx, the state its client told an endpoint before a reload, when s
// lacks it. The client's clientInfo and capabilities, and its
// subscriptions, go only to a registered session (the client's GET
// stream opened again): mcp-go sends the server's requests and the
// resource updates on that stream, and a session made for one request
// (registered is false) has none, so that a request sent to it would
// never be answered; the client is refused as one that did not declare
// them until its stream is back.
func (f *mcpFace) restore(ctx context.Context, s server.ClientSession, registered bool) {
	withInfo, ok := s.(server.SessionWithClientInfo)
	if !ok || s.SessionID() == "" {
		return // of the 2026-07-28 era
	}
	if info := withInfo.GetClientInfo(); info.Name != "" || info.Version != "" {
		return // initialized with this server, or restored
	}
	st, ok := f.sessions.recall(s.SessionID())
	if !ok {
		return
	}
	if registered {
		withInfo.SetClientInfo(st.info)
		withInfo.SetClientCapabilities(st.caps)
		f.subscribeAgain(f.mcp.WithContext(ctx, s), st.subscribed)
	}
	if st.level == "" {
		return
	}
	if logging, ok := s.(server.SessionWithLogging); ok {
		logging.SetLogLevel(st.level)
	}
	if _, known := f.levels.LoadOrStore(s.SessionID(), st.level); !known && f.relays {
		f.noteVoter(ctx, s.SessionID())
		f.voteLogLevel(s.SessionID(), st.level)
	}
}

// subscribeAgain subscribes the session of ctx, of a client that
// subscribed to the face's URIs uris before a reload, to them again: a
// reload ends the subscriptions of the endpoint it replaces, and a client
// is not told to subscribe again.
func (f *mcpFace) subscribeAgain(ctx context.Context, uris map[string]bool) {
	if len(uris) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, unsubscribeTimeout)
	defer cancel()
	for uri := range uris {
		if err := f.subscribe(ctx, mcp.MethodResourcesSubscribe, uri); err != nil {
			f.b.log.Debug("subscribing a session again after a reload", zap.String("uri", uri), zap.Error(err))
		}
	}
}

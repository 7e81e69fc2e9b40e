package bridge

// Resource subscriptions at the MCP endpoints (2025-11-25 sessions). A
// client's resources/subscribe is passed on to the server when it is the
// first of the face's sessions to subscribe to that resource, and its
// resources/unsubscribe (or the session's end) when it is the last; the
// server's notifications/resources/updated go to the sessions subscribed,
// under the face's URI. A server's subscriptions last as long as its
// session: when a server lists its tools anew (as it does after a
// restart) the face subscribes again to what its clients still want.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/openapi"
)

// resourceSubscriber is a ResourceCaller whose server's resources can be
// subscribed to: *upstream.Upstream, and the module's leases.
type resourceSubscriber interface {
	SubscribeResource(ctx context.Context, uri string) error
	UnsubscribeResource(ctx context.Context, uri string) error
}

// unsubscribeTimeout bounds telling a server that the last subscriber of
// a resource went away with its session.
const unsubscribeTimeout = 10 * time.Second

// faceSubscriptions are the subscriptions of a face's sessions.
type faceSubscriptions struct {
	subscribes bool // some server of the face can be subscribed to

	// subCall serializes what changes the servers' subscriptions; subMu
	// guards the maps, and is never held while a server is asked anything
	// (the server's notices, read under it, wait for nothing).
	subCall   sync.Mutex
	subMu     sync.Mutex
	bySession map[string]map[string]bool // session ID → the face's URIs it subscribed to
	subs      map[string]int             // the face's URI → how many sessions subscribed to it
	subViews  []*view                    // per server, the view last subscribed under
}

// subscribable reports whether st's server can be subscribed to and
// passes on its notices.
func subscribable(st *serverState) bool {
	_, sub := st.cfg.Upstream.(resourceSubscriber)
	_, ns := st.cfg.Upstream.(noticeSource)
	return sub && ns
}

// initSubscriptions sets up the face's subscriptions, before its mcp-go
// server is made; hooks gets the end of sessions.
func (f *mcpFace) initSubscriptions(hooks *server.Hooks) {
	for _, st := range f.servers {
		f.subscribes = f.subscribes || subscribable(st)
	}
	if !f.subscribes {
		return
	}
	f.bySession, f.subs, f.subViews = map[string]map[string]bool{}, map[string]int{}, make([]*view, len(f.servers))
	hooks.AddOnUnregisterSession(func(_ context.Context, s server.ClientSession) { f.endSubscriptions(s.SessionID()) })
}

// subscribe passes on a session's resources/subscribe or
// resources/unsubscribe of the face's URI uri.
func (f *mcpFace) subscribe(ctx context.Context, method mcp.MCPMethod, uri string) error {
	session := server.ClientSessionFromContext(ctx)
	if !f.subscribes || session == nil || uri == "" {
		return nil // mcp-go answers
	}
	st, orig, err := f.unwrapURI(uri)
	if err != nil {
		return err
	}
	sub, ok := st.cfg.Upstream.(resourceSubscriber)
	if _, err := f.use(ctx, st, openapi.ReadResource); err != nil {
		return err
	}
	if v, _ := st.current(f.b.log); !ok || v == nil || !v.set.Server.Subscribe || !subscribable(st) {
		return fmt.Errorf("server %q does not offer resource subscriptions", st.cfg.Name)
	}
	id := session.SessionID()
	f.subCall.Lock()
	defer f.subCall.Unlock()
	f.subMu.Lock()
	mine, n := f.bySession[id], f.subs[uri]
	has := mine[uri]
	f.subMu.Unlock()
	if method == mcp.MethodResourcesUnsubscribe {
		if !has {
			return nil
		}
		f.sessions.remember(id, func(st *sessionState) { delete(st.subscribed, uri) })
		f.subMu.Lock()
		delete(mine, uri)
		last := f.subs[uri] <= 1
		if f.subs[uri]--; last {
			delete(f.subs, uri)
		}
		f.subMu.Unlock()
		if !last {
			return nil
		}
		return f.upstreamSubscription(ctx, st, sub.UnsubscribeResource, "resources/unsubscribe", orig)
	}
	if has {
		return nil
	}
	if n == 0 {
		if err := f.upstreamSubscription(ctx, st, sub.SubscribeResource, "resources/subscribe", orig); err != nil {
			return err
		}
	}
	f.sessions.remember(id, func(st *sessionState) {
		if st.subscribed == nil {
			st.subscribed = map[string]bool{}
		}
		st.subscribed[uri] = true
	})
	f.subMu.Lock()
	defer f.subMu.Unlock()
	if f.bySession[id] == nil {
		f.bySession[id] = map[string]bool{}
	}
	f.bySession[id][uri] = true
	f.subs[uri]++
	return nil
}

// upstreamSubscription sends the server a subscription request, do.
func (f *mcpFace) upstreamSubscription(ctx context.Context, st *serverState, do func(context.Context, string) error, method, uri string) error {
	if e := f.serverRequest(ctx, st, method, uri, func(ctx context.Context) error { return do(ctx, uri) }); e != nil {
		return faceErr(ctx, e)
	}
	return nil
}

// endSubscriptions ends the subscriptions of a session that ended.
func (f *mcpFace) endSubscriptions(id string) {
	f.subCall.Lock()
	defer f.subCall.Unlock()
	f.subMu.Lock()
	var last []string
	for uri := range f.bySession[id] {
		if f.subs[uri]--; f.subs[uri] <= 0 {
			delete(f.subs, uri)
			last = append(last, uri)
		}
	}
	delete(f.bySession, id)
	f.subMu.Unlock()
	if len(last) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), unsubscribeTimeout)
	defer cancel()
	for _, uri := range last {
		st, orig, err := f.unwrapURI(uri)
		if sub, ok := st.cfg.Upstream.(resourceSubscriber); err == nil && ok {
			if err := sub.UnsubscribeResource(ctx, orig); err != nil {
				f.b.log.Debug("unsubscribing from a resource nobody follows", zap.String("server", st.cfg.Name), zap.Error(err))
			}
		}
	}
}

// resubscribe subscribes again, for the servers with a new view (a new
// session, or a new tool listing), to the resources clients follow.
func (f *mcpFace) resubscribe(ctx context.Context) {
	if !f.subscribes {
		return
	}
	f.subCall.Lock()
	defer f.subCall.Unlock()
	f.subMu.Lock()
	var again [][2]string // server's URI, face's URI
	var servers []*serverState
	for i, st := range f.servers {
		v, _ := st.current(f.b.log)
		if v == nil || v == f.subViews[i] {
			continue
		}
		f.subViews[i] = v
		for uri := range f.subs {
			if s, orig, err := f.unwrapURI(uri); err == nil && s == st {
				again = append(again, [2]string{orig, uri})
				servers = append(servers, st)
			}
		}
	}
	f.subMu.Unlock()
	for i, a := range again {
		if sub, ok := servers[i].cfg.Upstream.(resourceSubscriber); ok {
			if err := sub.SubscribeResource(ctx, a[0]); err != nil && !errors.Is(err, context.Canceled) {
				f.b.log.Warn("subscribing again to a resource clients follow", zap.String("server", servers[i].cfg.Name), zap.Error(err))
			}
		}
	}
}

// relayUpdated passes a server's notifications/resources/updated on to the
// sessions subscribed to the resource.
func (f *mcpFace) relayUpdated(st *serverState, p map[string]any) {
	orig, _ := p["uri"].(string)
	uri := f.wrapURI(st, orig)
	params := make(map[string]any, len(p))
	for k, v := range p {
		params[k] = v
	}
	params["uri"] = uri
	f.subMu.Lock()
	var to []string
	for id, mine := range f.bySession {
		if mine[uri] {
			to = append(to, id)
		}
	}
	f.subMu.Unlock()
	for _, id := range to {
		_ = f.mcp.SendNotificationToSpecificClient(id, string(mcp.MethodNotificationResourceUpdated), params)
	}
}

package upstream

import (
	"context"
	"errors"

	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"
)

// ErrNoSubscriptions is the error of SubscribeResource for a server that
// does not declare resource subscriptions.
var ErrNoSubscriptions = errors.New("the server does not offer resource subscriptions")

// SubscribeResource asks the server to send notifications/resources/updated
// when the resource at uri changes (resources/subscribe); Listen gets them.
// A subscription lasts as long as the server's session: after a restart,
// subscribe again. Errors are as for CallTool, or ErrNoSubscriptions.
func (u *Upstream) SubscribeResource(ctx context.Context, uri string) error {
	return u.subscription(ctx, mcp.MethodResourcesSubscribe, uri)
}

// UnsubscribeResource ends a subscription of SubscribeResource
// (resources/unsubscribe).
func (u *Upstream) UnsubscribeResource(ctx context.Context, uri string) error {
	return u.subscription(ctx, mcp.MethodResourcesUnsubscribe, uri)
}

// subscription sends resources/subscribe or resources/unsubscribe; on a
// 2026-07-28 session, which has neither, it opens the session's
// subscriptions/listen stream anew with the resource added to (or taken
// from) its filter.
func (u *Upstream) subscription(ctx context.Context, method mcp.MCPMethod, uri string) error {
	_, err := withSession(ctx, u, method, uri, func(s *session) (struct{}, error) {
		if s.caps.Resources == nil || !s.caps.Resources.Subscribe {
			return struct{}{}, ErrNoSubscriptions
		}
		if mcp.IsModernProtocol(s.info.Protocol) {
			return struct{}{}, s.listenFor(method, uri, u.logger)
		}
		_, err := s.send(ctx, method, func(ctx context.Context) error {
			if method == mcp.MethodResourcesSubscribe {
				return s.client.Subscribe(ctx, mcp.SubscribeRequest{Params: mcp.SubscribeParams{URI: uri}})
			}
			return s.client.Unsubscribe(ctx, mcp.UnsubscribeRequest{Params: mcp.UnsubscribeParams{URI: uri}})
		})
		return struct{}{}, err
	})
	return err
}

// listenFor subscribes a 2026-07-28 session to the updates of the
// resource at uri, or unsubscribes it (method): mcp-go keeps the filter of
// the session's subscriptions/listen stream (the list changes it opened
// with, and the resources), and a stream opened anew with it replaces the
// one before. Updates between the two are missed.
func (s *session) listenFor(method mcp.MCPMethod, uri string, log func() *zap.Logger) error {
	s.listenMu.Lock()
	defer s.listenMu.Unlock()
	var err error
	if method == mcp.MethodResourcesSubscribe {
		err = s.client.Subscribe(s.ctx, mcp.SubscribeRequest{Params: mcp.SubscribeParams{URI: uri}})
	} else {
		err = s.client.Unsubscribe(s.ctx, mcp.UnsubscribeRequest{Params: mcp.UnsubscribeParams{URI: uri}})
	}
	if err != nil {
		return err
	}
	return s.listen(s.client.PendingSubscriptionFilter(), log)
}

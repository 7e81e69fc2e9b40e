package upstream

import (
	"context"
	"errors"

	"github.com/mark3labs/mcp-go/mcp"
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

// subscription sends resources/subscribe or resources/unsubscribe.
func (u *Upstream) subscription(ctx context.Context, method mcp.MCPMethod, uri string) error {
	_, err := withSession(ctx, u, method, uri, func(s *session) (struct{}, error) {
		if s.caps.Resources == nil || !s.caps.Resources.Subscribe {
			return struct{}{}, ErrNoSubscriptions
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

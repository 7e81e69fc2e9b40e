package caddymcpo

import (
	"context"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// Listen calls f with the notices of a shared server (resources or
// prompts changed, a resource updated, a log message), for the MCP
// endpoints to pass on, until stop is called. A per-user server's go to
// ListenCallers.
func (l *lease) Listen(f func(upstream.Notice)) (stop func()) {
	if l.entry.users != nil || l.entry.upstream == nil {
		return func() {}
	}
	return l.entry.upstream.Listen(f)
}

// SetLogLevel casts voter's vote on the log level of a shared server
// (see upstream.Upstream.SetLogLevel). A per-user server's votes go to
// SetCallerLogLevel.
func (l *lease) SetLogLevel(voter any, level string) <-chan struct{} {
	if l.entry.users != nil || l.entry.upstream == nil {
		return settled
	}
	return l.entry.upstream.SetLogLevel(voter, level)
}

// ListenCallers calls f with the notices of a per-user server's sessions,
// each with the ID of the caller whose session sent it, for the MCP
// endpoints to pass on to that caller's sessions, until stop is called. A
// shared server's go to Listen.
func (l *lease) ListenCallers(f func(caller string, n upstream.Notice)) (stop func()) {
	if l.entry.users == nil {
		return func() {}
	}
	return l.entry.users.notices.listen(f)
}

// SetCallerLogLevel casts voter's vote on the log level of caller's
// session of a per-user server: the session running, or the one the
// caller's next call starts. A shared server's votes go to SetLogLevel.
func (l *lease) SetCallerLogLevel(caller string, voter any, level string) <-chan struct{} {
	if l.entry.users == nil {
		return settled
	}
	return l.entry.users.vote(caller, voter, level)
}

// A lease's server's log level is voted on as an Upstream's.
var _ interface {
	SetLogLevel(voter any, level string) <-chan struct{}
} = (*lease)(nil)

// settled is a closed channel: a level that needs nothing sent.
var settled = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// SubscribeResource subscribes to the updates of a resource of a shared
// server (see upstream.Upstream.SubscribeResource).
func (l *lease) SubscribeResource(ctx context.Context, uri string) error {
	if l.entry.users != nil || l.entry.upstream == nil {
		return errPerUserUpdates
	}
	return l.entry.upstream.SubscribeResource(l.callExtras(ctx), uri)
}

// UnsubscribeResource ends a subscription of SubscribeResource.
func (l *lease) UnsubscribeResource(ctx context.Context, uri string) error {
	if l.entry.users != nil || l.entry.upstream == nil {
		return errPerUserUpdates
	}
	return l.entry.upstream.UnsubscribeResource(l.callExtras(ctx), uri)
}

// errPerUserUpdates refuses a subscription to a resource of a per-user
// server, whose notices are not passed on.
var errPerUserUpdates = &bridge.UnsupportedError{Message: "a server with a session per caller does not pass on resource updates"}

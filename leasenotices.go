package caddymcpo

import "github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"

// Listen calls f with the notices of a shared server (resources or
// prompts changed, a resource updated, a log message), for the MCP
// endpoints to pass on, until stop is called. A per-user server's
// sessions are the callers' own: their notices are not passed on.
func (l *lease) Listen(f func(upstream.Notice)) (stop func()) {
	if l.entry.users != nil || l.entry.upstream == nil {
		return func() {}
	}
	return l.entry.upstream.Listen(f)
}

package caddymcpo

import (
	"sync"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
	"github.com/caddy-mcpo/caddy-mcpo/internal/listeners"
)

// callerNotices is what a per-user server's sessions tell the MCP
// endpoints, and what the endpoints ask of them, caller by caller: each
// notice of a caller's session (a log message, a list that changed) goes
// to the endpoints with the caller's ID, for that caller's MCP sessions
// only; and each endpoint session's vote on the log level goes to its
// caller's session of the server, kept for a session that starts later
// (sessions start on a caller's first call, and stop when idle).
type callerNotices struct {
	listeners listeners.Set[func(caller string, n upstream.Notice)]

	mu sync.Mutex
	// votes are the votes on each caller's log level, by sessionKey of
	// the caller: the level of each voter.
	votes map[string]map[any]string
}

// listen calls f with the notices of every caller's session, and the
// caller's ID, until stop is called. f runs on the session's transport
// reader: it must neither block nor call the server.
func (c *callerNotices) listen(f func(caller string, n upstream.Notice)) (stop func()) {
	return c.listeners.Add(f)
}

// attach ties s, a caller's session made and not started yet, to the
// endpoints: its notices reach them, and the votes on its caller's log
// level reach it. It is called under userSessions.mu, with s put in
// byKey, so that a vote cast meanwhile reaches s either way (vote).
func (c *callerNotices) attach(s *userSession) {
	s.u.Listen(func(n upstream.Notice) { c.tell(s.id, n) }) // the Upstream is dropped with s
	c.mu.Lock()
	votes := make(map[any]string, len(c.votes[s.key]))
	for voter, level := range c.votes[s.key] {
		votes[voter] = level
	}
	c.mu.Unlock()
	for voter, level := range votes {
		s.u.SetLogLevel(voter, level)
	}
}

// tell passes n, of caller's session, on to the listeners.
func (c *callerNotices) tell(caller string, n upstream.Notice) {
	for _, f := range c.listeners.All() {
		f(caller, n)
	}
}

// record keeps voter's vote on the log level of the caller of key, and
// forgets it for level "".
func (c *callerNotices) record(key string, voter any, level string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if level == "" {
		delete(c.votes[key], voter)
		if len(c.votes[key]) == 0 {
			delete(c.votes, key)
		}
		return
	}
	if c.votes == nil {
		c.votes = map[string]map[any]string{}
	}
	if c.votes[key] == nil {
		c.votes[key] = map[any]string{}
	}
	c.votes[key][voter] = level
}

// vote casts voter's vote on the log level of caller's session, kept for
// a session of caller that starts later; the channel is closed once the
// running session, if any, was set to the level the votes make.
func (us *userSessions) vote(caller string, voter any, level string) <-chan struct{} {
	key := sessionKey(caller)
	us.notices.record(key, voter, level)
	us.mu.Lock()
	s := us.byKey[key]
	us.mu.Unlock()
	if s == nil {
		return settled
	}
	return s.u.SetLogLevel(voter, level)
}

package caddymcpo

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// A per-user server whose listing session failed too often stays failed,
// and the admin restart starts that listing session again.
func TestUserSessions_TheRestartStartsAFailedListingSessionAgain(t *testing.T) {
	p := newTestPool(t)
	broken := p.leaseServer(perUserFixture(func(s *ServerConfig) {
		s.Command = "/nonexistent/mcp-server"
		s.MaxFailures = 1
	}), true)
	waitFor(t, "failed", func() bool { return broken.Status().State == upstream.StateFailed })
	if st := broken.Status(); !strings.Contains(st.LastError, "failed 1 times within 1m0s") {
		t.Errorf("a per-user server whose listing session failed: %+v", st)
	}
	failures := func() int {
		us := broken.entry.users
		us.mu.Lock()
		lister := us.lister
		us.mu.Unlock()
		if lister == nil {
			return -1
		}
		return lister.u.Status().FailureCounts[upstream.FailureStart]
	}
	if n := failures(); n != 1 {
		t.Fatalf("the listing session failed %d times, want 1", n)
	}
	broken.entry.restart()
	waitFor(t, "a start after the restart", func() bool { return failures() == 2 })
	waitFor(t, "failed again", func() bool { return broken.Status().State == upstream.StateFailed })
}

func TestUserSessions_TheFailuresOfCallersSessionsCountStoppedOrNot(t *testing.T) {
	p := newTestPool(t)
	const idle = 300 * time.Millisecond
	l := p.leaseServer(perUserFixture(func(s *ServerConfig) { s.IdleTimeout = caddy.Duration(idle) }), true)
	listed(t, l)
	exits := func() int { return l.Status().FailureCounts[upstream.FailureExit] }

	pid := pidAs(t, l, "alice")
	if _, err := l.CallTool(as(t, "alice"), "exit", json.RawMessage(`{}`)); err == nil {
		t.Fatal("the call of exit succeeded")
	}
	waitFor(t, "the exit counted", func() bool { return exits() == 1 })
	waitFor(t, "alice's session stopped when idle", func() bool { n, _, _ := l.Sessions(); return n == 0 && gone(pid) })
	if n := exits(); n != 1 {
		t.Errorf("after alice's session stopped, the server counts %d exits, want 1", n)
	}
}

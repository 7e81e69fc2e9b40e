package caddymcpo

import (
	"strings"
	"testing"

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

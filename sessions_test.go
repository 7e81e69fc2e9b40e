package caddymcpo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap/zaptest"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// perUserFixture configures the stdio fixture server with a session per
// caller, idle for an hour before it stops: each caller's process has
// FIXTURE_USER set to the caller's ID. mod changes the rest.
func perUserFixture(mod func(s *ServerConfig)) *ServerConfig {
	cmd, args, env := fixture.StdioCommand(fixture.Options{})
	s := &ServerConfig{Command: cmd, Args: args, Env: map[string]string{"FIXTURE_USER": "{mcpo.user.id}"},
		Isolation: isolationUser, IdleTimeout: caddy.Duration(time.Hour)}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		s.Env[k] = v
	}
	if mod != nil {
		mod(s)
	}
	return s
}

// leaseServer resolves s, named fx, as a handler does and leases it from
// the pool, started when start is set; it is released, and waited for,
// when the test ends.
func (p *testPool) leaseServer(s *ServerConfig, start bool) *lease {
	p.t.Helper()
	return p.leaseStored(s, nil, start)
}

// leaseStored is leaseServer for a configuration whose storage is storage.
func (p *testPool) leaseStored(s *ServerConfig, storage certmagic.Storage, start bool) *lease {
	p.t.Helper()
	if err := s.Validate(); err != nil {
		p.t.Fatal(err)
	}
	r, err := s.resolve("fx", false, caddy.NewReplacer())
	if err != nil {
		p.t.Fatal(err)
	}
	l, err := p.acquire(r, owner{log: zaptest.NewLogger(p.t), storage: storage})
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() {
		_ = l.release()
		p.wait()
	})
	if start {
		l.start()
	}
	return l
}

// as is a context carrying the caller id, for testWait.
func as(t *testing.T, id string) context.Context {
	ctx, cancel := context.WithTimeout(bridge.WithIdentity(context.Background(), bridge.Identity{ID: id}), testWait)
	t.Cleanup(cancel)
	return ctx
}

// pidAs calls the fixture's pid tool as the caller id.
func pidAs(t *testing.T, l *lease, id string) int {
	t.Helper()
	res, err := l.CallTool(as(t, id), "pid", json.RawMessage(`{}`))
	if err != nil {
		t.Fatalf("calling pid as %q: %v", id, err)
	}
	pid, err := strconv.Atoi(res.Content[0].Text)
	if err != nil {
		t.Fatalf("pid answered %+v", res.Content)
	}
	return pid
}

// waitFor waits until cond holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after %s", what, testWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// gone reports a process that no longer exists.
func gone(pid int) bool { return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) }

// listed waits until the per-user server l has a tool listing, and its
// listing session is gone.
func listed(t *testing.T, l *lease) {
	t.Helper()
	waitFor(t, "listed", func() bool {
		n, _, _ := l.Sessions()
		return l.Tools() != nil && n == 0
	})
}

// sessionIDs returns the callers' IDs of the sessions l runs, sorted.
func sessionIDs(l *lease) []string {
	var ids []string
	for _, r := range l.entry.users.reports() {
		if !r.Listing {
			ids = append(ids, r.ID)
		}
	}
	return ids
}

// sessionOf returns the running session of the caller id.
func sessionOf(t *testing.T, l *lease, id string) *userSession {
	t.Helper()
	us := l.entry.users
	us.mu.Lock()
	defer us.mu.Unlock()
	s := us.byKey[sessionKey(id)]
	if s == nil {
		t.Fatalf("%q has no session", id)
	}
	return s
}

func TestUserSessions_EachCallerGetsAProcessOfTheirOwn(t *testing.T) {
	p := newTestPool(t)
	l := p.leaseServer(perUserFixture(nil), true)
	listed(t, l)
	if st := l.Status(); st.State != upstream.StateReady || st.Tools != len(fixture.ToolNames(fixture.Options{})) || st.PID != 0 {
		t.Fatalf("once listed, the server is %+v; want ready with the fixture's tools and no pid of its own", st)
	}

	alice, bob := pidAs(t, l, "alice"), pidAs(t, l, "bob")
	if alice == bob {
		t.Fatalf("alice and bob share process %d", alice)
	}
	if again := pidAs(t, l, "alice"); again != alice {
		t.Errorf("alice's second call ran in process %d, her first in %d", again, alice)
	}
	// The listing session's ID is a caller's like any other: a caller of
	// that ID gets a session of their own.
	if mcpo := pidAs(t, l, defaultListAs); mcpo == alice || mcpo == bob {
		t.Errorf("the caller %q shares a process with alice or bob", defaultListAs)
	}
	if got, want := sessionIDs(l), []string{"alice", "bob", defaultListAs}; !slices.Equal(got, want) {
		t.Errorf("sessions of %q, want %q", got, want)
	}
	if n, limit, ok := l.Sessions(); n != 3 || limit != defaultMaxSessions || !ok {
		t.Errorf("Sessions() = %d, %d, %v; want 3, %d, true", n, limit, ok, defaultMaxSessions)
	}
	for id, want := range map[string]string{"alice": "FIXTURE_USER=alice", "bob": "FIXTURE_USER=bob"} {
		if env := sessionOf(t, l, id).u.Spec().Env; !slices.Contains(env, want) {
			t.Errorf("%s's session has the environment %q, want %s in it", id, env, want)
		}
	}
}

func TestUserSessions_TheFirstCallOfACallerWaitsForTheStart(t *testing.T) {
	sh := lookSh(t)
	p := newTestPool(t)
	// Each session takes half a second to start; the broken caller's
	// fails.
	l := p.leaseServer(perUserFixture(func(s *ServerConfig) {
		s.Args = append([]string{"-c", `test "$FIXTURE_USER" != broken || exit 3; sleep 0.5; exec "$0" "$@"`, s.Command}, s.Args...)
		s.Command = sh
	}), true)
	listed(t, l)

	began := time.Now()
	if _, err := l.CallTool(as(t, "alice"), "echo", json.RawMessage(`{"message":"hi"}`)); err != nil {
		t.Fatalf("the first call of a caller: %v; want it to wait for the session's start", err)
	}
	if took := time.Since(began); took < 500*time.Millisecond {
		t.Errorf("the first call took %s, less than the session's start: it did not start a session", took)
	}

	_, err := l.CallTool(as(t, "broken"), "echo", json.RawMessage(`{"message":"hi"}`))
	var unavailable *upstream.UnavailableError
	if !errors.As(err, &unavailable) || unavailable.State != upstream.StateBackoff || unavailable.RetryAfter < time.Second ||
		!strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("a session that fails to start: %v; want the server unavailable, failed with exit status 3, with when to retry", err)
	}

	// A session that cannot start within start_timeout and the call's
	// deadline ends the call, not the session.
	ctx, cancel := context.WithTimeout(bridge.WithIdentity(context.Background(), bridge.Identity{ID: "carol"}), 100*time.Millisecond)
	defer cancel()
	if _, err := l.CallTool(ctx, "echo", json.RawMessage(`{"message":"hi"}`)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a call whose deadline passes while its session starts: %v, want the deadline's error", err)
	}
	if _, err := l.CallTool(as(t, "carol"), "echo", json.RawMessage(`{"message":"hi"}`)); err != nil {
		t.Errorf("the next call: %v", err)
	}
}

// lookSh returns the path of sh, or skips the test.
func lookSh(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/bin/sh", "/usr/bin/sh"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("no sh")
	return ""
}

func TestUserSessions_RefuseACallWithoutTheCallerOrAValueTheServerNeeds(t *testing.T) {
	p := newTestPool(t)
	l := p.leaseServer(perUserFixture(func(s *ServerConfig) { s.Env["FIXTURE_EMAIL"] = "{mcpo.user.email}" }), true)
	listed(t, l)
	for _, tc := range []struct {
		name   string
		ctx    context.Context
		status int
		msg    string
	}{
		{name: "no identity", ctx: context.Background(), status: http.StatusUnauthorized, msg: "does not say who is calling"},
		{name: "an empty ID", ctx: bridge.WithIdentity(context.Background(), bridge.Identity{Email: "a@example.com"}),
			status: http.StatusUnauthorized, msg: "does not say who is calling"},
		{name: "no email, which the environment uses", ctx: bridge.WithIdentity(context.Background(), bridge.Identity{ID: "alice"}),
			status: http.StatusForbidden, msg: "has no email, which this server's configuration needs ({mcpo.user.email})"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := l.CallTool(tc.ctx, "echo", json.RawMessage(`{"message":"hi"}`))
			var refused *bridge.RefusedError
			if !errors.As(err, &refused) || refused.Status != tc.status || !strings.Contains(refused.Message, tc.msg) {
				t.Fatalf("CallTool: %v, want %d saying %q", err, tc.status, tc.msg)
			}
		})
	}
	if n, _, _ := l.Sessions(); n != 0 {
		t.Errorf("%d sessions started for refused calls", n)
	}
	ctx := bridge.WithIdentity(context.Background(), bridge.Identity{ID: "alice", Email: "alice@example.com"})
	if _, err := l.CallTool(ctx, "echo", json.RawMessage(`{"message":"hi"}`)); err != nil {
		t.Fatal(err)
	}
	if env := sessionOf(t, l, "alice").u.Spec().Env; !slices.Contains(env, "FIXTURE_EMAIL=alice@example.com") {
		t.Errorf("alice's environment %q lacks her email", env)
	}
}

// hostileIDs are IDs that must never reach a path, an argument or a
// variable as they are, and what a safe component makes of them. The
// identity's source refuses some of them (control characters, 10 KB)
// before they reach a server; here they are encoded all the same.
var hostileIDs = []struct {
	name, id, want string
}{
	{"a plain ID", "alice", "alice"},
	{"an email", "alice+tag@example.com", "alice+tag@example.com"},
	{"a UUID", "0b9c-4e1f:sub=1", "0b9c-4e1f:sub=1"},
	{"dots inside", "a.b..c", "a.b..c"},
	{"the parent", "..", "%2E%2E"},
	{"the directory itself", ".", "%2E"},
	{"a hidden name", ".ssh", "%2Essh"},
	{"a way out", "../x", "%2E%2E%2Fx"},
	{"a path", "a/b", "a%2Fb"},
	{"an absolute path", "/etc/passwd", "%2Fetc%2Fpasswd"},
	{"NUL", "a\x00b", "a%00b"},
	{"a newline", "a\nb", "a%0Ab"},
	{"an option", "--inspect=0:9229", "%2D-inspect=0:9229"},
	{"a placeholder", "{env.HOME}", "%7Benv%2EHOME%7D"},
	{"a percent", "100%", "100%25"},
	{"a space and quotes", `a b"c'`, "a%20b%22c%27"},
	{"UTF-8", "zoë", "zo%C3%AB"},
	{"the empty ID's neighbour", "-", "%2D"},
	{"10 KB", strings.Repeat("../", 10<<10/3), strings.Repeat("%2E%2E%2F", 10<<10/3)},
}

func TestSafeComponent_KeepsPlainIDsAndEncodesTheRestReversibly(t *testing.T) {
	for _, tc := range hostileIDs {
		t.Run(tc.name, func(t *testing.T) {
			got := safeComponent(tc.id)
			if got != tc.want {
				t.Errorf("safeComponent(%q) = %q, want %q", shorten(tc.id), shorten(got), shorten(tc.want))
			}
			if strings.ContainsAny(got, "/\x00\n") || got == "." || got == ".." || strings.HasPrefix(got, "-") || strings.HasPrefix(got, ".") {
				t.Errorf("%q is no safe file name", shorten(got))
			}
			if back, err := urlUnescape(got); err != nil || back != tc.id {
				t.Errorf("%q does not decode back: %q (%v)", shorten(got), shorten(back), err)
			}
		})
	}
}

// shorten cuts long strings for messages.
func shorten(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

func TestUserTemplate_ResolvesTheCallerWhereTheyGoAndNothingElse(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token-alice"), []byte("s3cret-alice"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MCPO_TEST_SECRET", "from-env")
	stdio := &ServerConfig{Command: "prog", Isolation: isolationUser,
		Args: []string{"--user={mcpo.user.id}", "{mcpo.user.id}", "--keep={env.MCPO_TEST_SECRET}", `--literal=\{mcpo.user.id\}`},
		Env:  map[string]string{"FILE": dir + "/{mcpo.user.id}.json", "WHO": "{mcpo.user.name} ({mcpo.user.role}; {mcpo.user.groups})"},
		Dir:  dir + "/{mcpo.user.email}"}
	remote := &ServerConfig{URL: "https://mcp.example.com/u/{mcpo.user.id}/mcp?who={mcpo.user.name}", Isolation: isolationUser,
		Headers: map[string]string{"X-User": "{mcpo.user.id}", "Authorization": "Bearer {file." + dir + "/token-{mcpo.user.id}}",
			"X-Both": "{env.MCPO_TEST_SECRET}/{mcpo.user.name}"}}
	template := func(s *ServerConfig) *userTemplate {
		t.Helper()
		if err := s.Validate(); err != nil {
			t.Fatal(err)
		}
		r, err := s.resolve("srv", false, caddy.NewReplacer())
		if err != nil {
			t.Fatal(err)
		}
		return r.users
	}
	st, rt := template(stdio), template(remote)
	if st.spec.Key() == "" || st.key() == st.spec.Key() || !strings.HasPrefix(st.key(), "user:") {
		t.Errorf("the pool key %q of a per-user server must stand apart from a shared server's", st.key())
	}

	alice := bridge.Identity{ID: "alice", Email: "alice@example.com", Name: "Alice A", Role: "admin", Groups: []string{"ops", "dev"}}
	spec, err := st.resolve(alice)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"--user=alice", "alice", "--keep=from-env", "--literal={mcpo.user.id}"}; !slices.Equal(spec.Args, want) {
		t.Errorf("args %q, want %q", spec.Args, want)
	}
	env := envMapForTest(spec.Env)
	if env["FILE"] != dir+"/alice.json" || env["WHO"] != "Alice%20A (admin; ops%2Cdev)" {
		t.Errorf("FILE=%q, WHO=%q", env["FILE"], env["WHO"])
	}
	if spec.Dir != dir+"/alice@example.com" {
		t.Errorf("dir %q", spec.Dir)
	}

	spec, err = rt.resolve(alice)
	if err != nil {
		t.Fatal(err)
	}
	if want := "https://mcp.example.com/u/alice/mcp?who=Alice%2520A"; spec.URL != want {
		t.Errorf("url %q, want %q", spec.URL, want)
	}
	for k, want := range map[string]string{"X-User": "alice", "Authorization": "Bearer s3cret-alice", "X-Both": "from-env/Alice A"} {
		if spec.Headers[k] != want {
			t.Errorf("header %s: %q, want %q", k, spec.Headers[k], want)
		}
	}

	// Hostile values: encoded where they may name a file, as they are in a
	// header, and never read as placeholders.
	for _, tc := range hostileIDs {
		t.Run(tc.name, func(t *testing.T) {
			id := bridge.Identity{ID: tc.id, Email: tc.id, Name: tc.id, Role: tc.id, Groups: []string{tc.id}}
			spec, err := st.resolve(id)
			if err != nil {
				t.Fatal(err)
			}
			if spec.Args[0] != "--user="+tc.want || spec.Args[1] != tc.want || spec.Dir != dir+"/"+tc.want {
				t.Errorf("args %q, dir %q: want the ID as %q", shortenAll(spec.Args), shorten(spec.Dir), shorten(tc.want))
			}
			if got := envMapForTest(spec.Env)["FILE"]; got != dir+"/"+tc.want+".json" {
				t.Errorf("FILE=%q", shorten(got))
			}
			if filepath.Dir(envMapForTest(spec.Env)["FILE"]) != dir {
				t.Errorf("the file %q is not in %s", shorten(envMapForTest(spec.Env)["FILE"]), dir)
			}
			spec, err = rt.resolve(id)
			if err != nil {
				t.Fatal(err)
			}
			if spec.Headers["X-User"] != tc.id {
				t.Errorf("header X-User %q, want the ID as it is", shorten(spec.Headers["X-User"]))
			}
			if spec.Headers["Authorization"] != "Bearer " && tc.id != "alice" {
				t.Errorf("Authorization %q: a file of another name was read", shorten(spec.Headers["Authorization"]))
			}
		})
	}
}

// urlUnescape decodes a safe component.
func urlUnescape(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return b.String(), fmt.Errorf("truncated escape at %d", i)
		}
		n, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return b.String(), err
		}
		b.WriteByte(byte(n))
		i += 2
	}
	return b.String(), nil
}

func shortenAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = shorten(s)
	}
	return out
}

func TestUserSessions_ACallersDirectoryIsTheirsWhateverTheirID(t *testing.T) {
	base := t.TempDir()
	users := filepath.Join(base, "users")
	if err := os.Mkdir(users, 0o700); err != nil {
		t.Fatal(err)
	}
	p := newTestPool(t)
	l := p.leaseServer(perUserFixture(func(s *ServerConfig) { s.Dir = users + "/{mcpo.user.id}" }), true)
	listed(t, l)
	for _, id := range []string{"../escape", "..", "a/b", "alice"} {
		pid := pidAs(t, l, id)
		cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if err != nil {
			t.Skipf("no /proc: %v", err)
		}
		if want := filepath.Join(users, safeComponent(id)); cwd != want {
			t.Errorf("%q's process runs in %s, want %s", id, cwd, want)
		}
	}
	entries, err := os.ReadDir(base)
	if err != nil || len(entries) != 1 {
		t.Errorf("%s holds %v (%v): a session made something beside the users' directory", base, entries, err)
	}
}

func TestUserSessions_AnIdleSessionStopsAfterIdleTimeout(t *testing.T) {
	p := newTestPool(t)
	const idle = 300 * time.Millisecond
	l := p.leaseServer(perUserFixture(func(s *ServerConfig) { s.IdleTimeout = caddy.Duration(idle) }), true)
	listed(t, l)

	// A call longer than idle_timeout keeps its session.
	busy := pidAs(t, l, "busy")
	if _, err := l.CallTool(as(t, "busy"), "slow", json.RawMessage(`{"ms":900}`)); err != nil {
		t.Fatalf("a call longer than idle_timeout: %v", err)
	}
	if again := pidAs(t, l, "busy"); again != busy {
		t.Fatalf("the session of a caller with a call under way was stopped: process %d, then %d", busy, again)
	}

	pid := pidAs(t, l, "alice")
	stoppedAt := time.Now()
	waitFor(t, "stopped after idle_timeout", func() bool { return gone(pid) && gone(busy) })
	if took := time.Since(stoppedAt); took < idle {
		t.Errorf("the session stopped %s after its last call, before idle_timeout (%s)", took, idle)
	}
	if n, _, _ := l.Sessions(); n != 0 {
		t.Errorf("%d sessions still run", n)
	}
	if got := l.entry.users.stopCounts()[stopIdle]; got != 2 {
		t.Errorf("%d sessions stopped as idle, want 2", got)
	}
	if again := pidAs(t, l, "alice"); again == pid {
		t.Error("alice's next call ran in her stopped process")
	}
}

func TestUserSessions_AFullServerStopsTheLeastRecentlyUsedIdleSession(t *testing.T) {
	p := newTestPool(t)
	l := p.leaseServer(perUserFixture(func(s *ServerConfig) { s.MaxSessions = 2 }), true)
	listed(t, l)
	a, b := pidAs(t, l, "a"), pidAs(t, l, "b")
	if again := pidAs(t, l, "a"); again != a { // b is now the least recently used
		t.Fatalf("a's process changed: %d, then %d", a, again)
	}
	c := pidAs(t, l, "c")
	if !gone(b) {
		t.Errorf("b's process %d still runs: the new session started before the one it replaces stopped", b)
	}
	if gone(a) || gone(c) {
		t.Errorf("a's process (%d) or c's (%d) is gone", a, c)
	}
	if got := sessionIDs(l); !slices.Equal(got, []string{"a", "c"}) {
		t.Errorf("sessions of %q, want a and c", got)
	}
	if got := l.entry.users.stopCounts()[stopEvicted]; got != 1 {
		t.Errorf("%d sessions evicted, want 1", got)
	}
}

func TestUserSessions_WhenEverySessionHasACallUnderWayANewCallerGets429(t *testing.T) {
	p := newTestPool(t)
	l := p.leaseServer(perUserFixture(func(s *ServerConfig) { s.MaxSessions = 2 }), true)
	listed(t, l)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, id := range []string{"a", "b"} {
		pidAs(t, l, id)
		wg.Go(func() {
			_, _ = l.CallTool(bridge.WithIdentity(ctx, bridge.Identity{ID: id}), "slow", json.RawMessage(`{"ms":20000}`))
		})
	}
	waitFor(t, "two calls under way", func() bool { return l.Status().InFlight == 2 })

	began := time.Now()
	_, err := l.CallTool(as(t, "c"), "echo", json.RawMessage(`{"message":"hi"}`))
	var refused *bridge.RefusedError
	if !errors.As(err, &refused) || refused.Status != http.StatusTooManyRequests || refused.RetryAfter < time.Second ||
		!strings.Contains(refused.Message, "max_sessions") {
		t.Fatalf("a new caller while every session has a call under way: %v, want 429 naming max_sessions, with Retry-After", err)
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("the refusal took %s: it must not wait when no session can stop", took)
	}
	if _, err := l.CallTool(as(t, "a"), "echo", json.RawMessage(`{"message":"hi"}`)); err != nil {
		t.Errorf("a caller with a session still gets in: %v", err)
	}
	cancel()
	wg.Wait()
	if _, err := l.CallTool(as(t, "c"), "echo", json.RawMessage(`{"message":"hi"}`)); err != nil {
		t.Errorf("once a session is idle, a new caller gets in: %v", err)
	}
}

// raceEnabled is set when the race detector is on.
var raceEnabled bool

func TestUserSessions_AThousandCallersNeverRunMoreThanMaxSessionsProcesses(t *testing.T) {
	callers, workers, limit := 1000, 8, 20
	switch {
	case testing.Short():
		callers = 100
	case raceEnabled:
		// A fixture process of a -race test binary takes about 0.2 s of
		// CPU to start; the integration tests run 1,000 through Caddy.
		callers = 250
	}
	p := newTestPool(t)
	// Each call also touches a caller seen a moment ago, so that recent
	// sessions are used again while old ones are evicted.
	l := p.leaseServer(perUserFixture(func(s *ServerConfig) { s.MaxSessions = limit }), true)
	listed(t, l)

	stopWatching := fixture.WatchDescendants(os.Getpid())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var next, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= callers {
					return
				}
				for _, id := range []string{fmt.Sprintf("user-%04d", i), fmt.Sprintf("user-%04d", max(i-workers, 0))} {
					c := bridge.WithIdentity(ctx, bridge.Identity{ID: id})
					if _, err := l.CallTool(c, "echo", json.RawMessage(`{"message":"hi"}`)); err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
				}
			}
		})
	}
	wg.Wait()
	most := stopWatching()
	if ctx.Err() != nil {
		t.Fatalf("%d callers took longer than 5 minutes: %d done", callers, next.Load())
	}
	if n := failed.Load(); n > 0 {
		t.Errorf("%d calls failed, the first with %v; with %d workers and %d sessions, every call has a session", n, firstErr.Load(), workers, limit)
	}
	if got := most; got > limit || got < workers {
		t.Errorf("at most %d server processes ran at once, want from %d to max_sessions (%d)", got, workers, limit)
	}
	stops := l.entry.users.stopCounts()
	if stops[stopEvicted] < uint64(callers-limit) {
		t.Errorf("%d sessions were evicted, want at least %d", stops[stopEvicted], callers-limit)
	}
	t.Logf("%d callers, %d calls, at most %d processes, %d evictions", callers, 2*callers, most, stops[stopEvicted])

	if err := l.release(); err != nil {
		t.Fatal(err)
	}
	p.wait()
	if left := fixture.Descendants(os.Getpid()); len(left) > 0 {
		t.Errorf("processes left once the server was released: %v", left)
	}
}

func TestUserSessions_AReloadKeepsTheSessionsAndAppliesTheNewLimits(t *testing.T) {
	p := newTestPool(t)
	config := func(max int, idle time.Duration) *ServerConfig {
		return perUserFixture(func(s *ServerConfig) { s.MaxSessions, s.IdleTimeout = max, caddy.Duration(idle) })
	}
	first := p.leaseServer(config(3, time.Hour), true)
	listed(t, first)
	pids := map[string]int{}
	for _, id := range []string{"a", "b", "c"} {
		pids[id] = pidAs(t, first, id)
	}

	// The next configuration lowers max_sessions to 2 and idle_timeout to
	// 2 s: the same server, whose sessions keep running until the new
	// limits stop them.
	second := p.leaseServer(config(2, 2*time.Second), false)
	if second.entry != first.entry || !second.adopt {
		t.Fatal("the next configuration got another server: the template did not carry over")
	}
	if got := pidAs(t, first, "c"); got != pids["c"] {
		t.Fatalf("c's process changed before the new configuration started")
	}
	second.start()
	if err := first.release(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a, the least recently used, stopped", func() bool { return gone(pids["a"]) })
	if got := pidAs(t, second, "c"); got != pids["c"] {
		t.Errorf("c's process changed across the reload: %d, then %d", pids["c"], got)
	}
	if n, limit, _ := second.Sessions(); n > 2 || limit != 2 {
		t.Errorf("%d sessions, max %d; want at most 2 of 2", n, limit)
	}
	waitFor(t, "every session stopped after the new idle_timeout", func() bool { return gone(pids["b"]) && gone(pids["c"]) })
}

func TestUserSessions_TheListingSessionListsAndStops(t *testing.T) {
	p := newTestPool(t)
	l := p.leaseServer(perUserFixture(nil), false)
	if st := l.Status(); st.State != upstream.StateIdle || l.Tools() != nil {
		t.Fatalf("before the configuration starts, the server is %+v", st)
	}
	if n, _, _ := l.Sessions(); n != 0 {
		t.Fatalf("%d sessions before the start", n)
	}
	l.start()
	waitFor(t, "listing as list_as", func() bool {
		for _, r := range l.entry.users.reports() {
			if r.Listing && r.ID == defaultListAs && r.PID != 0 {
				return true
			}
		}
		return l.Tools() != nil
	})
	listed(t, l)
	if got := l.entry.users.reports(); len(got) != 0 {
		t.Errorf("sessions once listed: %+v, want none", got)
	}

	// A server whose listing session cannot start reports why, as a
	// shared server that cannot start does; its callers wait for the
	// listing.
	broken := p.leaseServer(perUserFixture(func(s *ServerConfig) {
		s.Command = "/nonexistent/mcp-server"
		s.ListAs = "lister"
	}), true)
	waitFor(t, "backoff", func() bool { return broken.Status().State == upstream.StateBackoff })
	st := broken.Status()
	if broken.Tools() != nil || !strings.Contains(st.LastError, "/nonexistent/mcp-server") || st.Failures == 0 || st.RetryAt.IsZero() {
		t.Errorf("a server whose listing session fails: %+v", st)
	}
	if r := broken.entry.users.reports(); len(r) != 1 || r[0].ID != "lister" || !r[0].Listing {
		t.Errorf("sessions %+v, want the listing session as lister", r)
	}
}

func TestUserSessions_ACallersChangedToolsBecomeTheServersListing(t *testing.T) {
	p := newTestPool(t)
	l := p.leaseServer(perUserFixture(nil), true)
	listed(t, l)
	first := l.Tools()
	pidAs(t, l, "alice")
	if l.Tools() != first {
		t.Error("a session listing the same tools replaced the listing: each document would be built again")
	}
	if _, err := l.CallTool(as(t, "alice"), "register_tool", json.RawMessage(`{"name":"alices_tool"}`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "listing alice's new tool", func() bool {
		return slices.ContainsFunc(l.Tools().Tools, func(t *upstream.Tool) bool { return t.Name == "alices_tool" })
	})

	// A refresh lists again through a running session.
	if err := l.entry.refresh(); err != nil {
		t.Errorf("refresh: %v", err)
	}
	// With no session running, through a listing session.
	l.entry.users.endAll()
	waitFor(t, "every session stopped", func() bool { n, _, _ := l.Sessions(); return n == 0 })
	if err := l.entry.refresh(); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	waitFor(t, "listed again, without alice's tool", func() bool {
		n, _, _ := l.Sessions()
		return n == 0 && !slices.ContainsFunc(l.Tools().Tools, func(t *upstream.Tool) bool { return t.Name == "alices_tool" })
	})
}

func TestUserSessions_ARefreshWithoutAReadySessionOrAFreeSlotIsRefused(t *testing.T) {
	sh := lookSh(t)
	p := newTestPool(t)
	l := p.leaseServer(perUserFixture(func(s *ServerConfig) {
		s.MaxSessions = 1
		s.Args = append([]string{"-c", `test "$FIXTURE_USER" != slow || sleep 2; exec "$0" "$@"`, s.Command}, s.Args...)
		s.Command = sh
	}), true)
	listed(t, l)
	done := make(chan error, 1)
	go func() {
		_, err := l.CallTool(as(t, "slow"), "echo", json.RawMessage(`{"message":"hi"}`))
		done <- err
	}()
	waitFor(t, "slow's session starting", func() bool { n, _, _ := l.Sessions(); return n == 1 })
	err := l.entry.refresh()
	var unavailable *upstream.UnavailableError
	if !errors.As(err, &unavailable) || !strings.Contains(err.Error(), "max_sessions") {
		t.Errorf("refresh while the only slot holds a session starting: %v, want the server unavailable for want of a slot", err)
	}
	if err := <-done; err != nil {
		t.Errorf("slow's call: %v", err)
	}
	if err := l.entry.refresh(); err != nil {
		t.Errorf("refresh through slow's session: %v", err)
	}
}

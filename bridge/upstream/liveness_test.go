//go:build unix

package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// Short liveness settings for the tests.
const (
	testPingInterval = 100 * time.Millisecond
	testPingTimeout  = 300 * time.Millisecond
)

func TestUpstream_RestartsAServerThatStopsAnsweringPings(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		// hang makes the running server with this pid stop answering.
		hang func(t *testing.T, u *Upstream, pid int)
	}{
		{"stopped with SIGSTOP", stdioSpec(fixture.Options{}), func(t *testing.T, _ *Upstream, pid int) {
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
		}},
		// The deaf server stops reading at the first ping: no need to act.
		{"stops reading its stdin", roleSpec("fx", "deaf"), func(*testing.T, *Upstream, int) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, logs := start(t, tt.spec, Options{PingInterval: testPingInterval, PingTimeout: testPingTimeout})
			old := u.Status().PID
			calls := make(chan error, 1)
			go func() {
				_, err := callWithin(u, "slow", `{"ms": 10000}`)
				calls <- err
			}()
			eventually(t, "the call under way", func() bool { return u.InFlight() == 1 })
			began := time.Now()
			tt.hang(t, u, old)

			var err error
			select {
			case err = <-calls:
			case <-time.After(waitLimit):
				t.Fatal("the call under way on the hung server did not fail")
			}
			detected := time.Since(began)
			var ping *PingTimeoutError
			if !errors.As(err, &ping) || ping.Server != "fx" || !strings.Contains(err.Error(), "stopped answering pings") {
				t.Fatalf("the call under way failed with %v; want a *PingTimeoutError naming the server", err)
			}
			if limit := testPingInterval + testPingTimeout + time.Second; detected > limit {
				t.Errorf("the hang was found after %s, want at most %s", detected, limit)
			}
			t.Logf("hang found and the call failed %s after it began", detected.Round(time.Millisecond))

			eventually(t, "the restart", func() bool { st := u.Status(); return st.State == StateReady && st.Restarts == 1 })
			st := u.Status()
			if st.PID == old || st.Restarts != 1 || !strings.Contains(st.LastError, "stopped answering pings") ||
				st.FailureCounts[FailurePing] != 1 {
				t.Errorf("after the restart: %+v; want a new process, one restart, the reason in the last error and counted", st)
			}
			eventually(t, "the hung process gone", func() bool { return !running(old) })
			warned := logs.FilterMessage("MCP server stopped answering pings; killing and restarting it").All()
			if len(warned) != 1 || warned[0].ContextMap()["server"] != "fx" || warned[0].ContextMap()["pid"] != int64(old) ||
				warned[0].ContextMap()["in_flight"] != int64(1) {
				t.Errorf("the warning: %+v; want one naming the server, its pid and the call under way", warned)
			}
			if got := text(t, call(t, u, "echo", `{"message":"back"}`)); got != "back" {
				t.Errorf("a call after the restart: %q", got)
			}
		})
	}
}

func TestUpstream_AServerSlowToAnswerPingsWhileAnsweringCallsIsLeftAlone(t *testing.T) {
	u, _ := start(t, roleSpec("fx", "slowping"), Options{PingInterval: testPingInterval, PingTimeout: testPingTimeout})
	// Answers to calls keep coming while each ping waits a second.
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if got := text(t, call(t, u, "echo", `{"message":"busy"}`)); got != "busy" {
			t.Fatalf("a call: %q", got)
		}
	}
	if st := u.Status(); st.State != StateReady || st.Restarts != 0 {
		t.Errorf("a server answering calls but pings late: %+v; want it left alone", st)
	}
}

func TestUpstream_PingsOffLeaveAStoppedServerAlone(t *testing.T) {
	u, _ := start(t, stdioSpec(fixture.Options{}), Options{PingInterval: -1, PingTimeout: testPingTimeout})
	pid := u.Status().PID
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * (testPingInterval + testPingTimeout))
	if st := u.Status(); st.State != StateReady || st.PID != pid {
		t.Errorf("with pings off, a stopped server became %s (pid %d, was %d)", st.State, st.PID, pid)
	}
	_ = syscall.Kill(pid, syscall.SIGCONT)
	if got := text(t, call(t, u, "echo", `{"message":"on"}`)); got != "on" {
		t.Errorf("a call once continued: %q", got)
	}
}

func TestUpstream_PingsAReadyServerOverEveryTransportAndEra(t *testing.T) {
	t.Run("2026-07-28 over stdio, with server/discover", func(t *testing.T) {
		spec := stdioSpec(fixture.Options{})
		spec.Protocol = ProtocolModern
		u, _ := start(t, spec, Options{PingInterval: 20 * time.Millisecond, PingTimeout: 2 * time.Second})
		before := u.Status().LastMessage
		eventually(t, "an answer to a probe", func() bool { return u.Status().LastMessage.After(before) })
		if st := u.Status(); st.State != StateReady || st.Restarts != 0 || !mcp.IsModernProtocol(st.Server.Protocol) {
			t.Errorf("a 2026-07-28 server answering probes: %+v; want ready, never restarted", st)
		}
	})
	transports(t, fixture.Options{}, func(t *testing.T, spec Spec) {
		u, _ := start(t, spec, Options{PingInterval: 20 * time.Millisecond, PingTimeout: 2 * time.Second})
		before := u.Status().LastMessage
		eventually(t, "an answer to a ping", func() bool { return u.Status().LastMessage.After(before) })
		time.Sleep(200 * time.Millisecond)
		if st := u.Status(); st.State != StateReady || st.Restarts != 0 || len(st.FailureCounts) != 0 {
			t.Errorf("a server answering pings: %+v; want ready, never restarted", st)
		}
	})
}

func TestUpstream_AServerThatFailsTooOftenStaysFailedUntilRestarted(t *testing.T) {
	log, logs := testLogger(t)
	u := New(roleSpec("crashy", "exit"), Options{StartTimeout: waitLimit, MaxFailures: 2, FailureWindow: time.Minute}, log)
	u.Start()
	t.Cleanup(func() { _ = u.Close() })
	began := time.Now()
	st := waitState(t, u, StateFailed)
	t.Logf("failed after %s", time.Since(began).Round(time.Millisecond))
	if st.FailureCounts[FailureStart] != 2 || !strings.Contains(st.LastError, `server "crashy" failed 2 times within 1m0s`) ||
		!strings.Contains(st.LastError, "exit status 3") || !st.RetryAt.IsZero() {
		t.Fatalf("a server that failed twice in a row: %+v; want failed, saying how often and why", st)
	}
	_, err := u.CallTool(context.Background(), "echo", json.RawMessage(`{}`))
	var un *UnavailableError
	if !errors.As(err, &un) || un.State != StateFailed || !strings.Contains(err.Error(), "failed 2 times within 1m0s") ||
		un.RetryAfter < time.Second {
		t.Errorf("a call of a failed server: %v; want unavailable, failed, saying how often", err)
	}
	// The state is published before the line is logged.
	const crashLoop = "MCP server failed too often; not restarting it until it is restarted by hand or a reload changes it"
	eventually(t, "the crash loop logged", func() bool { return logs.FilterMessage(crashLoop).Len() > 0 })
	if n := logs.FilterMessage(crashLoop).Len(); n != 1 {
		t.Errorf("logged the crash loop %d times, want once", n)
	}

	// No more starts, for longer than the backoff would wait.
	time.Sleep(2500 * time.Millisecond)
	if st := u.Status(); st.State != StateFailed || st.FailureCounts[FailureStart] != 2 {
		t.Fatalf("a failed server was started again on its own: %+v", st)
	}

	// Restart starts it again: it fails twice more, and is failed again.
	u.Restart()
	eventually(t, "failed starts after the restart", func() bool { return u.Status().FailureCounts[FailureStart] == 4 })
	if st := waitState(t, u, StateFailed); st.FailureCounts[FailureStart] != 4 {
		t.Errorf("after a restart: %+v; want failed again after two more failures", st)
	}
}

func TestUpstream_NewOptionsStartAFailedServerAgain(t *testing.T) {
	opts := Options{StartTimeout: waitLimit, MaxFailures: 1, FailureWindow: time.Minute}
	log, _ := testLogger(t)
	u := New(roleSpec("crashy", "exit"), opts, log)
	u.Start()
	t.Cleanup(func() { _ = u.Close() })
	waitState(t, u, StateFailed)

	u.SetOptions(opts) // a reload that changes nothing of the server
	time.Sleep(300 * time.Millisecond)
	if st := u.Status(); st.FailureCounts[FailureStart] != 1 {
		t.Fatalf("the same options started a failed server again: %+v", st)
	}
	opts.StartTimeout = waitLimit + time.Second
	u.SetOptions(opts)
	eventually(t, "a start with the new options", func() bool { return u.Status().FailureCounts[FailureStart] == 2 })
	waitState(t, u, StateFailed)
}

func TestUpstream_ReadyServersThatDieCountTowardsTheCrashLoop(t *testing.T) {
	u, _ := start(t, stdioSpec(fixture.Options{}), Options{MaxFailures: 2, FailureWindow: time.Minute, PingInterval: -1})
	for i := range 2 {
		st := waitState(t, u, StateReady)
		if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			eventually(t, "the first death counted", func() bool { return u.Status().FailureCounts[FailureExit] == 1 })
		}
	}
	st := waitState(t, u, StateFailed)
	if st.FailureCounts[FailureExit] != 2 || !strings.Contains(st.LastError, "connection lost") {
		t.Errorf("a server killed twice: %+v; want failed after two exits", st)
	}
}

func TestOptions_MaxFailuresDefaultsByTransport(t *testing.T) {
	tests := []struct {
		transport Transport
		set, want int
	}{
		{TransportStdio, 0, defaultMaxFailures},
		{TransportStdio, 3, 3},
		{TransportStdio, -1, -1},
		{TransportStreamableHTTP, 0, 0},
		{TransportSSE, 0, 0},
		{TransportStreamableHTTP, 4, 4},
	}
	for _, tt := range tests {
		u := New(Spec{Name: "x", Transport: tt.transport}, Options{MaxFailures: tt.set}, nil)
		if got := u.options().MaxFailures; got != tt.want {
			t.Errorf("%s with max_failures %d: %d, want %d", tt.transport, tt.set, got, tt.want)
		}
	}
}

func TestCrashGuard_CountsTheFailuresWithinTheWindow(t *testing.T) {
	var g crashGuard
	t0 := time.Unix(1000, 0)
	steps := []struct {
		at   time.Duration
		want int
	}{{0, 1}, {10 * time.Second, 2}, {50 * time.Second, 3}, {65 * time.Second, 3}, {2 * time.Minute, 2}, {5 * time.Minute, 1}}
	for _, s := range steps {
		if got := g.fail(t0.Add(s.at), time.Minute); got != s.want {
			t.Errorf("a failure at %s: %d within the minute, want %d", s.at, got, s.want)
		}
	}
}

func TestUpstream_RestartsASessionWithAnHTTPServerThatHangs(t *testing.T) {
	target, err := url.Parse(fixture.NewStreamableHTTP(t, fixture.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: target.Scheme, Host: target.Host})
	proxy.FlushInterval = -1
	var hang atomic.Bool
	release := make(chan struct{})
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hang.Load() && r.Method == http.MethodPost {
			select { // accepts, never answers
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	spec := Spec{Name: "fx", Transport: TransportStreamableHTTP, URL: front.URL + target.Path}
	u, _ := start(t, spec, Options{PingInterval: testPingInterval, PingTimeout: testPingTimeout})
	t.Cleanup(func() { close(release) })
	calls := make(chan error, 1)
	hang.Store(true)
	began := time.Now()
	go func() {
		_, err := callWithin(u, "echo", `{"message":"lost"}`)
		calls <- err
	}()
	var ping *PingTimeoutError
	select {
	case err := <-calls:
		if !errors.As(err, &ping) {
			t.Errorf("the call under way on the hung server failed with %v; want a *PingTimeoutError", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("the call under way on the hung server did not fail")
	}
	t.Logf("hang found and the call failed %s after it began", time.Since(began).Round(time.Millisecond))
	hang.Store(false)
	eventually(t, "the new session", func() bool { st := u.Status(); return st.State == StateReady && st.Restarts == 1 })
	if st := u.Status(); st.FailureCounts[FailurePing] != 1 || !strings.Contains(st.LastError, "stopped answering pings") {
		t.Errorf("after the restart: %+v", st)
	}
	if got := text(t, call(t, u, "echo", `{"message":"back"}`)); got != "back" {
		t.Errorf("a call after the restart: %q", got)
	}
}

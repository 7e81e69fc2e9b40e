package upstream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"
)

// Liveness: a ready server is pinged every Options.PingInterval, and one
// that leaves a ping unanswered for Options.PingTimeout while sending
// nothing else either (a process stopped with SIGSTOP, a deadlocked event
// loop, an HTTP server that accepts and never answers) is killed and
// restarted. Crash loops: a server that fails Options.MaxFailures times
// within Options.FailureWindow enters StateFailed and stays there until
// Restart or a change of its options.

// Defaults of the liveness options.
const (
	// defaultPingInterval costs one small message a server every 30 s:
	// nothing a server or the proxy can measure.
	defaultPingInterval = 30 * time.Second
	// defaultPingTimeout is long enough for a server whose event loop a
	// synchronous tool holds for a while (sync tools of Python's FastMCP
	// run on the loop), short enough that a hang is found within a
	// minute (interval plus timeout at worst).
	defaultPingTimeout = 20 * time.Second
	// defaultMaxFailures and defaultFailureWindow make the crash-loop
	// guard of stdio servers: with the backoff of 1, 2, 4, 8 s, a server
	// that fails at once every time reaches 5 failures within about 15 s.
	defaultMaxFailures   = 5
	defaultFailureWindow = time.Minute
)

// FailureReason says why a server failed, as the crash-loop guard counts
// it and the metrics report it.
type FailureReason string

// The reasons a server fails.
const (
	// FailureStart: a start failed (the process exited or could not run,
	// the handshake or the tool listing failed or took too long).
	FailureStart FailureReason = "start"
	// FailureExit: a ready server's process exited or its connection was
	// lost.
	FailureExit FailureReason = "exit"
	// FailurePing: a ready server stopped answering pings.
	FailurePing FailureReason = "ping_timeout"
	// FailureMessageTooLarge: a stdio server sent a message over
	// Options.MaxMessageBytes.
	FailureMessageTooLarge FailureReason = "message_too_large"
	// FailureLimit: a ready stdio server was stopped by one of its Limits.
	FailureLimit FailureReason = "limit"
)

// PingTimeoutError ends the session of a server that left a ping
// unanswered; the calls under way on it fail with it.
type PingTimeoutError struct {
	Server string
	// Timeout is how long the ping went unanswered.
	Timeout time.Duration
}

func (e *PingTimeoutError) Error() string {
	return fmt.Sprintf("server %q stopped answering pings (none within %s); it is restarted", e.Server, e.Timeout)
}

// CrashLoopError is why a server is in StateFailed: it failed Failures
// times within Window, the last time with Last.
type CrashLoopError struct {
	Server   string
	Failures int
	Window   time.Duration
	Last     error
}

func (e *CrashLoopError) Error() string {
	return fmt.Sprintf("server %q failed %d times within %s and is not restarted (the last time: %v)",
		e.Server, e.Failures, e.Window, e.Last)
}

func (e *CrashLoopError) Unwrap() error { return e.Last }

// endReason returns the reason a ready session's end counts as a failure,
// or "" when it does not (a restart asked for, a session the server
// forgot).
func endReason(err error) FailureReason {
	var (
		ping *PingTimeoutError
		big  *MessageTooLargeError
		lim  *LimitError
	)
	switch {
	case errors.Is(err, errSessionExpired), errors.Is(err, errRestartRequested):
		return ""
	case errors.As(err, &ping):
		return FailurePing
	case errors.As(err, &big):
		return FailureMessageTooLarge
	case errors.As(err, &lim):
		return FailureLimit
	}
	return FailureExit
}

// hung reports a session ended because its server stopped answering: its
// process is killed outright, as it cannot be trusted to exit (a stopped
// process does not even act on SIGTERM until continued).
func hung(err error) bool {
	var ping *PingTimeoutError
	return errors.As(err, &ping)
}

// pingLoop pings the ready session s every PingInterval until it ends, and
// ends it with a *PingTimeoutError when a ping goes unanswered for
// PingTimeout while the server sent nothing else: a server answering other
// requests, or sending notifications, is alive however slow its answer
// to the ping (a single-threaded server works through its queue).
func (u *Upstream) pingLoop(s *session) {
	t := time.NewTimer(u.options().PingInterval)
	defer t.Stop()
	for {
		opts := u.options()
		select {
		case <-t.C:
		case <-s.done:
			return
		}
		if opts.PingInterval <= 0 { // off; look again later, options may change
			t.Reset(defaultPingInterval)
			continue
		}
		sent := time.Now()
		ctx, cancel := context.WithTimeout(s.ctx, opts.PingTimeout)
		err := s.ping(ctx)
		cancel()
		t.Reset(opts.PingInterval)
		var rpc *RPCError
		switch {
		case err == nil, errors.As(err, &rpc): // an answer, even an error, is life
		case s.err() != nil:
			return
		case errors.Is(err, errSessionExpired):
			s.end(err)
			return
		case errors.Is(err, context.DeadlineExceeded):
			if last := u.lastMessage.Load(); last > sent.UnixNano() {
				u.logger().Debug("MCP server slow to answer a ping, but it sends other messages",
					zap.String("server", u.spec.Name), zap.Duration("ping_timeout", opts.PingTimeout))
				continue
			}
			fields := []zap.Field{zap.String("server", u.spec.Name), zap.Duration("ping_timeout", opts.PingTimeout),
				zap.Int("in_flight", u.InFlight())}
			if s.proc != nil {
				fields = append(fields, zap.Int("pid", s.proc.pid()))
			}
			if last := u.lastMessage.Load(); last != 0 {
				fields = append(fields, zap.Time("last_message", time.Unix(0, last)))
			}
			u.logger().Warn("MCP server stopped answering pings; killing and restarting it", fields...)
			s.end(&PingTimeoutError{Server: u.spec.Name, Timeout: opts.PingTimeout})
			return
		default:
			u.logger().Warn("pinging the MCP server failed", zap.String("server", u.spec.Name), zap.Error(u.redact(err)))
		}
	}
}

// ping sends the liveness probe: ping on legacy connections; on
// 2026-07-28 ones, which have no ping, server/discover, which every such
// server answers and which costs it nothing.
func (s *session) ping(ctx context.Context) error {
	if mcp.IsModernProtocol(s.info.Protocol) {
		_, err := s.send(ctx, mcp.MethodServerDiscover, func(ctx context.Context) error {
			_, err := s.client.Discover(ctx, mcp.DiscoverRequest{})
			return err
		})
		return err
	}
	_, err := s.send(ctx, mcp.MethodPing, func(ctx context.Context) error { return s.client.Ping(ctx) })
	return err
}

// crashGuard counts a server's failures within the window. Only the
// supervisor uses it.
type crashGuard struct {
	times []time.Time // the failures within the window, oldest first
}

// fail records a failure at now and reports how many fell within window.
func (g *crashGuard) fail(now time.Time, window time.Duration) int {
	g.times = append(g.times, now)
	i := 0
	for i < len(g.times) && now.Sub(g.times[i]) > window {
		i++
	}
	g.times = append(g.times[:0], g.times[i:]...)
	return len(g.times)
}

func (g *crashGuard) reset() { g.times = g.times[:0] }

// countFailure records a failure for reason and reports how many fell
// within the window, and whether that many put the server in StateFailed
// (see giveUp).
func (u *Upstream) countFailure(g *crashGuard, reason FailureReason) (n int, loop bool) {
	u.mu.Lock()
	if u.failureCounts == nil {
		u.failureCounts = map[FailureReason]int{}
	}
	u.failureCounts[reason]++
	u.mu.Unlock()
	opts := u.options()
	if opts.MaxFailures <= 0 {
		return 0, false
	}
	n = g.fail(time.Now(), opts.FailureWindow)
	if n < opts.MaxFailures {
		return n, false
	}
	g.reset()
	return n, true
}

// giveUp puts a server that failed n times, the last for reason with err,
// in StateFailed, and waits until Restart or a change of options, which it
// reports as true, or Close, after which it has the supervisor stopped.
func (u *Upstream) giveUp(n int, reason FailureReason, err error) bool {
	// A restart asked for, or options changed, before this failure do not
	// end the wait.
	drain(u.wake)
	drain(u.reconfigured)
	window := u.options().FailureWindow
	u.setState(StateFailed, &CrashLoopError{Server: u.spec.Name, Failures: n, Window: window, Last: err}, time.Time{})
	u.logger().Error("MCP server failed too often; not restarting it until it is restarted by hand or a reload changes it",
		zap.String("server", u.spec.Name), zap.Int("failures", n), zap.Duration("window", window),
		zap.String("reason", string(reason)), zap.Error(u.redact(err)))
	select {
	case <-u.wake:
		u.logger().Info("MCP server restarted after it failed too often", zap.String("server", u.spec.Name))
	case <-u.reconfigured:
		u.logger().Info("MCP server's settings changed; starting it again after it failed too often",
			zap.String("server", u.spec.Name))
	case <-u.ctx.Done():
		u.stopped(stoppedIdle)
		return false
	}
	return true
}

// drain empties a signal channel of capacity 1.
func drain(ch chan struct{}) {
	select {
	case <-ch:
	default:
	}
}

package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/internal/listeners"
)

// State is where an Upstream is in its life.
type State string

// The states of an Upstream.
const (
	// StateIdle: created, not started yet.
	StateIdle State = "idle"
	// StateStarting: starting the process or dialling, initializing and
	// listing tools.
	StateStarting State = "starting"
	// StateReady: taking calls.
	StateReady State = "ready"
	// StateBackoff: the last start failed or the connection died; a
	// restart is scheduled at Status.RetryAt.
	StateBackoff State = "backoff"
	// StateFailed: the server failed Options.MaxFailures times within
	// Options.FailureWindow (a crash loop), and is not started again until
	// Restart or new options (a reload that changes its settings).
	StateFailed State = "failed"
	// StateNeedsAuth: the server refused the credentials its Authorizer
	// has, and needs a user to authorize again; the next start waits until
	// the authorization changes.
	StateNeedsAuth State = "needs_auth"
	// StateStopped: closed for good.
	StateStopped State = "stopped"
)

// Status is a snapshot of an Upstream.
type Status struct {
	Name     string
	State    State
	Endpoint string     // command or URL, without secrets
	Server   ServerInfo // from the last successful start
	Tools    int        // from the last successful listing
	PID      int        // stdio process ID while running, else 0
	// Restarts counts how often the server was started again after it had
	// been ready once.
	Restarts int
	// Failures counts the failed starts since the server was last ready.
	Failures int
	// FailureCounts counts the failures since the Upstream was created, by
	// reason: what the crash-loop guard counts.
	FailureCounts map[FailureReason]int
	LastError     string    // why the server last failed, kept after it recovers
	Since         time.Time // when State was entered
	RetryAt       time.Time // in StateBackoff, when the next start begins
	InFlight      int       // calls under way (see Upstream.InFlight)
	// LastMessage is when the server last sent anything: an answer, a
	// notification, a request of its own or, over stdio, any line on its
	// stdout. Zero until it has. A server that stays silent while
	// OldestCall grows old may be hung (a process stopped with SIGSTOP
	// stays ready, its calls under way waiting).
	LastMessage time.Time
	// OldestCall is when the oldest call under way began; zero when none
	// is.
	OldestCall time.Time
}

// Options tune an Upstream without changing its identity; they may change
// while it runs. Durations left zero take their defaults.
type Options struct {
	// StartTimeout bounds starting, initializing and listing tools; 60 s by
	// default.
	StartTimeout time.Duration
	// Stop bounds the steps of stopping a stdio process; 2 s after stdin
	// closes and 3 s after SIGTERM by default.
	Stop StopTimeouts
	// Drain bounds how long Close waits for in-flight calls to finish
	// before stopping the server; 30 s by default.
	Drain time.Duration
	// MaxMessageBytes bounds one message from the server, 16 MiB by
	// default: one line on a stdio server's stdout, or over HTTP one JSON
	// response body or one event of an event stream. A stdio server that
	// sends a longer one has its session ended and is restarted, and the
	// calls under way fail with a *MessageTooLargeError; over HTTP, only the
	// request the message answers fails so. The message is counted as it
	// is read, never held whole: memory stays within a few times the limit
	// per server.
	MaxMessageBytes int64
	// Elicitation, if set, answers the server's elicitation requests, and
	// the client declares the elicitation capability (with SEP-1034
	// applyDefaults on legacy connections, which then keep a standing GET
	// stream open for the server's requests). Nil declares no such
	// capability: a tool that asks for input fails with an
	// *InputRequiredError.
	Elicitation ElicitFunc
	// Sampling, when set, declares the sampling capability: the server's
	// sampling/createMessage requests go to the SampleFunc of the call
	// they belong to (WithSampling, WithCaller), and are refused with
	// JSON-RPC error -32601 when there is none. Unset declares no such
	// capability.
	Sampling bool
	// Roots, when not empty, are the directories (absolute paths) the
	// client declares as its roots: it declares the roots capability and
	// answers the server's roots/list with them as file:// URIs. Empty
	// declares no such capability.
	Roots []string
	// PingInterval is how often a ready server is pinged (ping, or
	// server/discover on 2026-07-28 connections); 30 s by default,
	// negative for never.
	PingInterval time.Duration
	// PingTimeout is how long a ping may go unanswered, while the server
	// sends nothing else, before the server is killed and restarted, the
	// calls under way failing with a *PingTimeoutError; 20 s by default.
	PingTimeout time.Duration
	// MaxFailures is how many failures (starts that failed, ready
	// sessions that died or stopped answering pings) within FailureWindow
	// put the server in StateFailed. Zero takes the default: 5 for stdio
	// servers, never for HTTP ones (the server is someone else's process,
	// and a retry every 30 s costs nothing, while an outage of the remote
	// would leave it failed after it came back); negative is never.
	MaxFailures int
	// FailureWindow is the window of MaxFailures; 1 min by default.
	FailureWindow time.Duration
}

// Defaults for Options left zero.
const (
	// defaultStartTimeout leaves room for npx or uvx to download a server on
	// first use.
	defaultStartTimeout = 60 * time.Second
	// defaultDrain lets ordinary calls finish when a server is replaced.
	defaultDrain = 30 * time.Second
)

// Backoff between failed starts: it doubles from backoffMin up to
// backoffMax, with jitter. A server that ran for stableAfter before dying is
// restarted at once.
const (
	backoffMin  = time.Second
	backoffMax  = 30 * time.Second
	stableAfter = 30 * time.Second
)

// Upstream runs one MCP server and keeps it connected. It is safe for
// concurrent use. Start it once, call tools while it is ready, Close it
// when done.
type Upstream struct {
	spec   Spec
	redact func(error) error
	log    atomic.Pointer[zap.Logger]
	opts   atomic.Pointer[Options]

	ctx       context.Context // ends on Close
	cancel    context.CancelFunc
	startOnce sync.Once
	closeOnce sync.Once
	done      chan struct{} // closed when the supervisor has ended

	tools atomic.Pointer[ToolSet] // the last listing, kept across restarts

	listeners listeners.Set[func(Notice)] // of the server's notices (Listen)

	// lastMessage is when the server last sent anything, in Unix
	// nanoseconds; 0 until it has.
	lastMessage atomic.Int64

	wake chan struct{} // cuts a backoff wait short, or ends StateFailed (Restart)
	// reconfigured ends StateFailed when the options change.
	reconfigured chan struct{}

	mu       sync.Mutex
	state    State
	since    time.Time
	retryAt  time.Time
	lastErr  error
	restarts int
	failures int
	// failureCounts counts the failures by reason (Status.FailureCounts).
	failureCounts map[FailureReason]int
	sess          *session      // the ready session, or nil
	changed       chan struct{} // closed and replaced on every state change
	inflight      int           // calls under way
	calls         activeCalls   // the calls under way, oldest first
	draining      bool          // Close has begun: no new calls
	stopBegan     time.Time     // when Close, done draining, began to stop the server
	drained       chan struct{} // closed when inflight reaches 0 while draining
	votes         logVotes      // the log levels asked for (SetLogLevel)
}

// New returns an idle Upstream for spec. Nothing runs until Start.
func New(spec Spec, opts Options, log *zap.Logger) *Upstream {
	ctx, cancel := context.WithCancel(context.Background())
	u := &Upstream{
		spec:    spec,
		redact:  spec.redactor(),
		ctx:     ctx,
		cancel:  cancel,
		done:    make(chan struct{}),
		state:   StateIdle,
		since:   time.Now(),
		changed: make(chan struct{}),
		wake:    make(chan struct{}, 1),

		reconfigured: make(chan struct{}, 1),
		votes:        logVotes{byVoter: map[any]mcp.LoggingLevel{}, wake: make(chan struct{}, 1)},
	}
	u.SetLogger(log)
	u.SetOptions(opts)
	return u
}

// Spec returns the Upstream's identity.
func (u *Upstream) Spec() Spec { return u.spec }

// SetLogger replaces the logger, for an Upstream that outlives the
// configuration that created it.
func (u *Upstream) SetLogger(l *zap.Logger) {
	if l == nil {
		l = zap.NewNop()
	}
	u.log.Store(l)
}

func (u *Upstream) logger() *zap.Logger { return u.log.Load() }

// serverLogger is the logger with the server's name, for code that knows
// nothing else of the Upstream.
func (u *Upstream) serverLogger() *zap.Logger {
	return u.logger().With(zap.String("server", u.spec.Name))
}

// SetOptions replaces the options; they apply from the next start or stop,
// and the liveness options from the next ping. Options that differ from
// the current ones start a server in StateFailed again.
func (u *Upstream) SetOptions(o Options) {
	if o.StartTimeout <= 0 {
		o.StartTimeout = defaultStartTimeout
	}
	if o.Stop.Grace <= 0 {
		o.Stop.Grace = defaultStopTimeouts.Grace
	}
	if o.Stop.Term <= 0 {
		o.Stop.Term = defaultStopTimeouts.Term
	}
	if o.Drain <= 0 {
		o.Drain = defaultDrain
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = defaultMaxMessageBytes
	}
	if o.PingInterval == 0 {
		o.PingInterval = defaultPingInterval
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = defaultPingTimeout
	}
	if o.MaxFailures == 0 && u.spec.Transport == TransportStdio {
		o.MaxFailures = defaultMaxFailures
	}
	if o.FailureWindow <= 0 {
		o.FailureWindow = defaultFailureWindow
	}
	if old := u.opts.Swap(&o); old != nil && !sameOptions(*old, o) {
		select {
		case u.reconfigured <- struct{}{}:
		default:
		}
	}
}

// sameOptions reports options alike but for the elicitation policy, a
// function, which a reload always makes anew.
func sameOptions(a, b Options) bool {
	return a.StartTimeout == b.StartTimeout && a.Stop == b.Stop && a.Drain == b.Drain &&
		a.MaxMessageBytes == b.MaxMessageBytes && a.PingInterval == b.PingInterval && a.PingTimeout == b.PingTimeout &&
		a.MaxFailures == b.MaxFailures && a.FailureWindow == b.FailureWindow
}

func (u *Upstream) options() Options { return *u.opts.Load() }

// Start begins running the server in the background. Calls after the first,
// and calls after Close, do nothing.
func (u *Upstream) Start() {
	u.startOnce.Do(func() { go u.run() })
}

// Close stops the server and waits until it is gone. New calls are refused
// at once; calls under way may finish within the drain timeout, then the
// server is stopped within the stop timeouts.
func (u *Upstream) Close() error {
	u.closeOnce.Do(func() {
		u.drain(u.options().Drain)
		u.mu.Lock()
		u.stopBegan = time.Now()
		u.mu.Unlock()
		u.cancel()
		u.startOnce.Do(func() { // never started: nothing to wait for
			u.setState(StateStopped, nil, time.Time{})
			close(u.done)
		})
	})
	<-u.done
	return nil
}

// drain refuses new calls and waits up to d for those under way.
func (u *Upstream) drain(d time.Duration) {
	u.mu.Lock()
	u.draining = true
	n := u.inflight
	if n == 0 {
		u.mu.Unlock()
		return
	}
	done := make(chan struct{})
	u.drained = done
	u.mu.Unlock()
	u.logger().Info("waiting for calls under way before stopping the MCP server",
		zap.String("server", u.spec.Name), zap.Int("calls", n), zap.Duration("drain_timeout", d))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		u.logger().Warn("calls still under way after the drain timeout; stopping the MCP server",
			zap.String("server", u.spec.Name))
	}
}

// Restart ends the current session, or cuts a backoff wait short, so that
// the server starts again now.
func (u *Upstream) Restart() {
	u.mu.Lock()
	s := u.sess
	u.mu.Unlock()
	if s != nil {
		s.end(errRestartRequested)
		return
	}
	select {
	case u.wake <- struct{}{}:
	default:
	}
}

// errRestartRequested ends a session on Restart.
var errRestartRequested = errors.New("restart requested")

// Refresh lists the server's tools again. It fails when the server is not
// ready.
func (u *Upstream) Refresh() error {
	u.mu.Lock()
	s := u.sess
	u.mu.Unlock()
	if s == nil {
		return u.unavailable()
	}
	select {
	case s.relist <- struct{}{}:
	default: // a re-list is already pending
	}
	return nil
}

// Tools returns the last tool listing, or nil if the server was never ready.
func (u *Upstream) Tools() *ToolSet { return u.tools.Load() }

// Status returns a snapshot of the Upstream.
func (u *Upstream) Status() Status {
	u.mu.Lock()
	defer u.mu.Unlock()
	st := Status{
		Name:     u.spec.Name,
		State:    u.state,
		Endpoint: u.spec.Endpoint(),
		Restarts: u.restarts,
		Failures: u.failures,
		Since:    u.since,
		RetryAt:  u.retryAt,
		InFlight: u.inflight,
	}
	if len(u.failureCounts) > 0 {
		st.FailureCounts = maps.Clone(u.failureCounts)
	}
	if t := u.lastMessage.Load(); t != 0 {
		st.LastMessage = time.Unix(0, t)
	}
	if c := u.calls.head; c != nil {
		st.OldestCall = c.start
	}
	if u.lastErr != nil {
		st.LastError = u.lastErr.Error()
	}
	if ts := u.tools.Load(); ts != nil {
		st.Server = ts.Server
		st.Tools = len(ts.Tools)
	}
	if u.sess != nil && u.sess.proc != nil {
		st.PID = u.sess.proc.pid()
	}
	return st
}

// Changed returns a channel that is closed at the next state change.
func (u *Upstream) Changed() <-chan struct{} {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.changed
}

// CallTool calls the named tool with args, a JSON object, and returns the
// server's answer. Errors are *UnavailableError when the server is not
// ready (or, in StateNeedsAuth, wants a user to authorize), *RPCError for a
// JSON-RPC error, *InputRequiredError, or the transport's error (wrapping
// ctx's error on timeout or cancellation).
//
// A Streamable HTTP session the server forgot (it restarted, or expired the
// session) is replaced and the call made once more: the server did not run
// it.
//
// The trace context of the span ctx carries goes to the server in the
// call's _meta and HTTP headers, and the span is told the session's
// protocol and whether it was replaced (AttrProtocol, AttrSessionRestarted).
func (u *Upstream) CallTool(ctx context.Context, name string, args json.RawMessage) (*CallResult, error) {
	ctx = withTraceContext(ctx)
	first := true
	return withSession(ctx, u, mcp.MethodToolsCall, name, func(s *session) (*CallResult, error) {
		traceSession(ctx, s, !first)
		first = false
		return s.callTool(ctx, name, args)
	})
}

// acquire returns the ready session and counts a call under way, made
// with ctx, which release(c) ends.
func (u *Upstream) acquire(ctx context.Context) (*session, *activeCall, error) {
	c := &activeCall{start: time.Now(), ctx: ctx}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.draining {
		return nil, nil, &UnavailableError{Server: u.spec.Name, State: StateStopped, RetryAfter: time.Second}
	}
	if u.sess == nil {
		return nil, nil, u.unavailableLocked()
	}
	u.inflight++
	u.calls.push(c)
	return u.sess, c, nil
}

// release ends a call counted by acquire.
func (u *Upstream) release(c *activeCall) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.inflight--
	u.calls.remove(c)
	if u.inflight == 0 && u.drained != nil {
		close(u.drained)
		u.drained = nil
	}
}

// activeCall is a call under way, from acquire to release.
type activeCall struct {
	start time.Time
	// ctx is the call's: who it is for (WithCaller), and what answers
	// the server's requests about it (see soleCaller).
	ctx        context.Context
	prev, next *activeCall
}

// activeCalls is the calls under way in the order they began, so the oldest
// is at hand and any call leaves the list at once.
type activeCalls struct {
	head, tail *activeCall
}

func (l *activeCalls) push(c *activeCall) {
	c.prev = l.tail
	if l.tail != nil {
		l.tail.next = c
	} else {
		l.head = c
	}
	l.tail = c
}

func (l *activeCalls) remove(c *activeCall) {
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		l.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		l.tail = c.prev
	}
	c.prev, c.next = nil, nil
}

// sawMessage notes that the server sent something.
func (u *Upstream) sawMessage() { u.lastMessage.Store(time.Now().UnixNano()) }

// nextSession waits for a ready session other than old, within ctx and the
// start timeout.
func (u *Upstream) nextSession(ctx context.Context, old *session) (*session, error) {
	t := time.NewTimer(u.options().StartTimeout)
	defer t.Stop()
	for {
		u.mu.Lock()
		s, changed := u.sess, u.changed
		u.mu.Unlock()
		if s != nil && s != old {
			return s, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
			return nil, u.unavailable()
		case <-u.ctx.Done():
			return nil, u.unavailable()
		}
	}
}

// InFlight reports how many calls are under way: tool calls, and requests
// for resources and prompts.
func (u *Upstream) InFlight() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.inflight
}

// unavailable describes why no session is ready.
func (u *Upstream) unavailable() *UnavailableError {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.unavailableLocked()
}

func (u *Upstream) unavailableLocked() *UnavailableError {
	e := &UnavailableError{Server: u.spec.Name, State: u.state, Cause: u.lastErr, RetryAfter: 2 * time.Second}
	switch u.state {
	case StateBackoff:
		e.RetryAfter = max(time.Until(u.retryAt), time.Second)
	case StateFailed: // until someone acts: the window is as good a hint as any
		e.RetryAfter = max(u.options().FailureWindow, time.Second)
	case StateReady: // the session just went away
		e.State = StateBackoff
	}
	return e
}

func (u *Upstream) setState(s State, err error, retryAt time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.state = s
	u.since = time.Now()
	u.retryAt = retryAt
	if err != nil {
		u.lastErr = u.redact(err)
	}
	close(u.changed)
	u.changed = make(chan struct{})
}

// authRecheck is how often an Upstream in StateNeedsAuth asks its
// Authorizer again without a Changed: an Authorizer whose credentials are
// shared with other processes (Caddy instances on one storage) may get
// some that way.
const authRecheck = 2 * time.Second

// awaitAuthorization waits, in StateNeedsAuth, until the Authorizer has
// credentials (a user completed the authorization, here or in another
// process sharing the Authorizer's storage) or the Upstream closes,
// which it reports as false. changed is the Authorizer's Changed from
// before authErr was had; err is why the start failed, authErr why no
// credentials are at hand. Changes that bring no credentials (an
// authorization started, a failed one) are waited out without starting the
// server, which would fail for want of them.
func (u *Upstream) awaitAuthorization(changed <-chan struct{}, err, authErr error) bool {
	u.setState(StateNeedsAuth, authErr, time.Time{})
	u.logger().Warn("MCP server needs authorization",
		zap.String("server", u.spec.Name), zap.String("endpoint", u.spec.Endpoint()),
		zap.Error(u.redact(err)), zap.NamedError("authorization", u.redact(authErr)))
	recheck := time.NewTicker(authRecheck)
	defer recheck.Stop()
	for {
		select {
		case <-changed:
		case <-recheck.C:
		case <-u.ctx.Done():
			return false
		}
		changed = u.spec.Auth.Changed()
		if authErr = u.spec.Auth.Authorized(u.ctx); !needsUser(authErr) {
			// Authorized, or an authorization server failing: start, and
			// back off if that fails.
			return true
		}
		if u.ctx.Err() != nil {
			return false
		}
	}
}

// needsUser reports an Authorizer's error that only a user can resolve.
func needsUser(err error) bool {
	var u interface{ NeedsUser() bool }
	return errors.As(err, &u) && u.NeedsUser()
}

// closed reports whether ch is closed; a nil ch never is.
func closed(ch <-chan struct{}) bool {
	if ch == nil {
		return false
	}
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// run is the supervisor: it starts sessions and restarts them when they die
// until Close.
func (u *Upstream) run() {
	defer close(u.done)
	d := &dialer{spec: u.spec, log: u.serverLogger, notify: u.notify, seen: u.sawMessage, sole: u.soleCaller}
	failures := 0
	var guard crashGuard
	retriedAtOnce := false // after a start the authorization changed under
	for {
		u.setState(StateStarting, nil, time.Time{})
		opts := u.options()
		d.stop = opts.Stop
		d.elicit = opts.Elicitation
		d.roots = opts.Roots
		d.sampling = opts.Sampling
		d.maxMessage = opts.MaxMessageBytes
		d.lastStop = stoppedIdle
		var authChanged <-chan struct{}
		if u.spec.Auth != nil {
			authChanged = u.spec.Auth.Changed()
		}
		begun := time.Now()
		sess, err := u.startSession(d, opts)
		if u.ctx.Err() != nil {
			if sess != nil {
				d.closeSession(sess)
			}
			u.stopped(d.lastStop)
			return
		}
		if err != nil && u.spec.Auth != nil {
			// Watch for changes before asking, so that an authorization
			// completed in between is not missed.
			changed := u.spec.Auth.Changed()
			if authErr := u.spec.Auth.Authorized(u.ctx); needsUser(authErr) {
				if !u.awaitAuthorization(changed, err, authErr) {
					u.stopped(stoppedIdle)
					return
				}
				retriedAtOnce = false
				continue
			}
			if closed(authChanged) && !retriedAtOnce {
				// Credentials arrived while the start was under way
				// (the user completed an authorization): the start failed
				// for want of them, so try again now rather than after a
				// backoff.
				retriedAtOnce = true
				u.logger().Info("MCP server failed to start while its authorization changed; starting again",
					zap.String("server", u.spec.Name), zap.Error(u.redact(err)))
				continue
			}
		}
		retriedAtOnce = false
		if err != nil {
			failures++
			delay := backoff(failures)
			u.mu.Lock()
			u.failures++
			u.mu.Unlock()
			n, loop := u.countFailure(&guard, FailureStart)
			fields := []zap.Field{
				zap.String("server", u.spec.Name), zap.String("endpoint", u.spec.Endpoint()),
				zap.Error(u.redact(err)),
			}
			if !loop {
				fields = append(fields, zap.Duration("retry_in", delay))
			}
			var exit *ExitError
			if errors.As(err, &exit) && len(exit.Stderr) > 0 {
				fields = append(fields, zap.Strings("stderr", exit.Stderr))
			}
			u.logger().Error("MCP server failed to start", fields...)
			if loop {
				if !u.giveUp(n, FailureStart, u.redact(err)) {
					return // Close: stopped
				}
				failures = 0
				continue
			}
			u.setState(StateBackoff, err, time.Now().Add(delay))
			if !u.sleep(delay) {
				u.stopped(stoppedIdle)
				return
			}
			continue
		}

		started := time.Now()
		u.mu.Lock()
		u.sess = sess
		u.failures = 0
		u.votes.active = hasLogLevel(sess) // logLevelLoop's, from now on
		u.mu.Unlock()
		u.setState(StateReady, nil, time.Time{})
		ts := u.tools.Load()
		fields := []zap.Field{
			zap.String("server", u.spec.Name), zap.String("protocol", ts.Server.Protocol),
			zap.Int("tools", len(ts.Tools)), zap.Duration("took", started.Sub(begun)),
		}
		if sess.proc != nil {
			fields = append(fields, zap.Int("pid", sess.proc.pid()))
		}
		u.logger().Info("MCP server ready", fields...)

		relisted, pinged, leveled := make(chan struct{}), make(chan struct{}), make(chan struct{})
		go func() {
			defer close(relisted)
			u.relistLoop(sess)
		}()
		go func() {
			defer close(pinged)
			u.pingLoop(sess)
		}()
		go func() {
			defer close(leveled)
			u.logLevelLoop(sess)
		}()
		var ended error
		select {
		case <-sess.done:
			ended = sess.err()
		case <-u.ctx.Done():
		}
		u.mu.Lock()
		u.sess = nil
		// Not ready from now on, until the supervisor says what comes
		// next (as calls are already told, unavailableLocked): a status
		// must never show the restart counted with the server still ready.
		u.state, u.since = StateBackoff, time.Now()
		u.mu.Unlock()
		how := sess.close(opts.Stop, u.serverLogger())
		<-relisted
		<-pinged
		<-leveled
		if u.ctx.Err() != nil {
			u.stopped(how)
			return
		}

		u.mu.Lock()
		u.restarts++
		u.mu.Unlock()
		if time.Since(started) >= stableAfter {
			failures = 0
		}
		delay := time.Duration(0)
		switch {
		case errors.Is(ended, errSessionExpired) || errors.Is(ended, errRestartRequested):
			// Nothing is wrong with the server: start again at once.
		case failures > 0:
			delay = backoff(failures)
			failures++
		default:
			failures++
		}
		lost := fmt.Errorf("connection lost: %w", ended)
		if reason := endReason(ended); reason != "" {
			if n, loop := u.countFailure(&guard, reason); loop {
				u.logger().Warn("MCP server connection lost", zap.String("server", u.spec.Name),
					zap.Error(u.redact(ended)), zap.String("how", how))
				if !u.giveUp(n, reason, u.redact(lost)) {
					return // Close: stopped
				}
				failures = 0
				continue
			}
		}
		u.setState(StateBackoff, lost, time.Now().Add(delay))
		u.logger().Warn("MCP server connection lost; restarting",
			zap.String("server", u.spec.Name), zap.Error(u.redact(ended)), zap.String("how", how),
			zap.Duration("retry_in", delay))
		if !u.sleep(delay) {
			u.stopped(stoppedIdle)
			return
		}
	}
}

// stopped ends the supervisor's work after Close, saying how the server
// ended and how long stopping took since the calls under way were done.
func (u *Upstream) stopped(how string) {
	u.setState(StateStopped, nil, time.Time{})
	u.mu.Lock()
	began := u.stopBegan
	u.mu.Unlock()
	u.logger().Info("MCP server stopped", zap.String("server", u.spec.Name),
		zap.String("how", how), zap.Duration("took", time.Since(began)))
}

// startSession dials, initializes and lists tools, all within the start
// timeout.
func (u *Upstream) startSession(d *dialer, opts Options) (*session, error) {
	ctx, cancel := context.WithTimeout(u.ctx, opts.StartTimeout)
	defer cancel()
	sess, err := d.dial(ctx, u.ctx)
	if err != nil {
		return nil, startError(ctx, err, opts.StartTimeout)
	}
	ts, err := u.list(ctx, sess)
	if err != nil {
		d.closeSession(sess)
		return nil, startError(ctx, err, opts.StartTimeout)
	}
	u.tools.Store(ts)
	return sess, nil
}

func startError(ctx context.Context, err error, timeout time.Duration) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("not ready within the start timeout of %s: %w", timeout, err)
	}
	return err
}

// list reads the session's tools into a new ToolSet.
func (u *Upstream) list(ctx context.Context, s *session) (*ToolSet, error) {
	tools, warnings, err := s.listTools(ctx)
	var rpc *RPCError
	if errors.As(err, &rpc) && rpc.Code == CodeMethodNotFound {
		warnings, err = []string{"the server does not implement tools/list; it has no tools"}, nil
	}
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		u.logger().Warn(w, zap.String("server", u.spec.Name))
	}
	return &ToolSet{Server: s.info, Tools: tools}, nil
}

// relistLoop re-reads the tool list each time the server says it changed.
// It runs off the transport's reader goroutine: mcp-go deadlocks if the
// client is called from a notification handler.
// A recheck keeps the previous listing when the new one is the same.
func (u *Upstream) relistLoop(s *session) {
	for {
		recheck := false
		select {
		case <-s.relist:
		case <-s.recheck:
			recheck = true
		case <-s.done:
			return
		}
		ctx, cancel := context.WithTimeout(s.ctx, u.options().StartTimeout)
		ts, err := u.list(ctx, s)
		cancel()
		if err != nil {
			if s.err() == nil {
				u.logger().Warn("re-listing tools after tools/list_changed failed; keeping the previous list",
					zap.String("server", u.spec.Name), zap.Error(u.redact(err)))
			}
			continue
		}
		if prev := u.tools.Load(); recheck && prev != nil && reflect.DeepEqual(*prev, *ts) {
			continue
		}
		u.tools.Store(ts)
		u.logger().Info("MCP server tool list changed", zap.String("server", u.spec.Name), zap.Int("tools", len(ts.Tools)))
	}
}

// notify handles a server notification. It runs on the transport's reader
// goroutine, so it must not block or call the client.
func (u *Upstream) notify(s *session, n mcp.JSONRPCNotification) {
	u.tell(n)
	switch n.Method {
	case string(mcp.MethodNotificationToolsListChanged):
		select {
		case s.relist <- struct{}{}:
		default: // a re-list is already pending
		}
	case string(mcp.MethodNotificationMessage):
		u.logMessage(n.Params.AdditionalFields)
	case string(mcp.MethodNotificationProgress):
		relayProgress(n)
	case mcp.MethodNotificationSubscriptionsAcknowledged:
		u.logger().Debug("MCP notification", zap.String("server", u.spec.Name), zap.String("method", n.Method))
		select {
		case s.recheck <- struct{}{}:
		default: // a recheck is already pending
		}
	default:
		u.logger().Debug("MCP notification", zap.String("server", u.spec.Name), zap.String("method", n.Method))
	}
}

// logMessage writes a notifications/message to the log at its level.
func (u *Upstream) logMessage(p map[string]any) {
	level, _ := p["level"].(string)
	fields := []zap.Field{zap.String("server", u.spec.Name), zap.Any("data", p["data"])}
	if name, ok := p["logger"].(string); ok && name != "" {
		fields = append(fields, zap.String("logger", name))
	}
	log := u.logger()
	const msg = "MCP server log message"
	switch level {
	case "debug":
		log.Debug(msg, fields...)
	case "info", "notice":
		log.Info(msg, fields...)
	case "warning":
		log.Warn(msg, fields...)
	default: // error, critical, alert, emergency, or unknown
		log.Error(msg, fields...)
	}
}

// sleep waits d, or until Close. It reports whether d passed.
func (u *Upstream) sleep(d time.Duration) bool {
	if d <= 0 {
		return u.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-u.wake: // Restart
		return true
	case <-u.ctx.Done():
		return false
	}
}

// backoff returns the delay before start number n+1 after n failures:
// backoffMin doubled per failure up to backoffMax, ±20% jitter.
func backoff(n int) time.Duration {
	d := backoffMin
	for i := 1; i < n && d < backoffMax; i++ {
		d *= 2
	}
	d = min(d, backoffMax)
	jitter := time.Duration((rand.Float64()*0.4 - 0.2) * float64(d))
	return d + jitter
}

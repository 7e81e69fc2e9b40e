package caddymcpo

import (
	"cmp"
	linked "container/list"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// userSessions runs a per-user server (isolation user): a session of its
// own (an *upstream.Upstream made from the server's template) for each
// caller identity, started on the caller's first call, which waits for it;
// stopped after idle_timeout without calls; at most max_sessions at once,
// the least recently used session without a call under way making room
// for a new one, and a call refused with 429 when every session has one.
//
// A session holds a slot from its start until its process is gone: a new
// session that replaces another starts once the other stopped, so the
// server never runs more than max_sessions processes.
//
// The server's tool listing, the same for every caller, is the latest any
// session made that differs from the one before: a listing session, apart
// from the callers' and run as the pseudo-identity list_as, makes the
// first and stops; then every caller's session, when it starts and when
// its tools change, and the admin API's refresh.
//
// A janitor goroutine, ended by close, stops idle sessions and takes up
// the listings of the sessions.
//
// The notices of a caller's session go to the MCP endpoints with the
// caller's ID, for that caller's MCP sessions, and their votes on the log
// level to the caller's session (callerNotices).
//
// With oauth (auth), each caller's session authorizes its requests with
// the caller's own token (see userOAuth): a caller without one gets the
// link where they authorize instead of a session. No listing session runs
// as list_as, who has no token: the listing is the one kept in storage, or
// the first session of a caller who authorized makes it.
type userSessions struct {
	name    string
	tmpl    *userTemplate // spec and envKeys; the settings are below
	auth    *userOAuth    // the callers' OAuth; nil without
	store   *listingStore // where the listing is kept; nil for nowhere
	opts    atomic.Pointer[upstream.Options]
	log     atomic.Pointer[zap.Logger]
	listing atomic.Pointer[upstream.ToolSet] // nil until the first
	created time.Time
	// notices passes the notices of the callers' sessions on to the MCP
	// endpoints, and keeps their votes on each caller's log level.
	notices callerNotices

	ctx    context.Context // ends with close
	cancel context.CancelFunc
	wake   chan struct{}  // wakes the janitor when the settings change
	wg     sync.WaitGroup // the janitor, the listing session, sessions starting or stopping

	mu        sync.Mutex
	settings  userSettings
	byKey     map[string]*userSession // the callers' sessions, by sessionKey
	lru       linked.List             // of *userSession, the most recently used first
	lister    *userSession            // the listing session while it runs
	held      int                     // slots: sessions running and sessions stopping
	freed     chan struct{}           // closed, and replaced, when a slot frees
	started   bool
	closed    bool
	closedAt  time.Time
	listedAt  time.Time         // when the first listing came
	listErr   string            // the listing session's last error
	stops     map[string]uint64 // sessions stopped, by reason
	restarted int               // restarts of the sessions stopped
	// failed counts the failures of the sessions stopped, by reason.
	failed    map[upstream.FailureReason]int
	starts    uint64    // sessions started, the listing sessions included
	idleSince time.Time // when the last caller's session stopped
}

// userSession is one caller's session, or the listing session.
type userSession struct {
	key string // sessionKey of the caller's ID; "listing" for the listing session
	id  string // the caller's ID, in clear: memory and the admin API only
	u   *upstream.Upstream
	// auth authorizes the session's requests (with oauth): the client of
	// the caller's token when it started.
	auth upstream.Authorizer

	// Guarded by userSessions.mu.
	calls   int             // under way, or waiting for the session to start
	lastUse time.Time       // when a call last began or ended
	elem    *linked.Element // in userSessions.lru; nil once stopped
	seen    *upstream.ToolSet
}

// digest names the session in logs: a short digest of the caller's ID,
// which means nothing outside this process.
func (s *userSession) digest() string {
	if s.key == listingKey {
		return listingKey
	}
	return s.key[:12]
}

// listingKey names the listing session.
const listingKey = "listing"

// Why sessions stop, for the metrics and the log.
const (
	stopIdle    = "idle"    // idle_timeout passed without a call
	stopEvicted = "evicted" // max_sessions: another caller needed the slot
	stopEnded   = "ended"   // the admin API ended it
)

// sessionKeySecret keys sessionKey: a digest of a caller's ID cannot be
// matched against guessed IDs outside this process.
var sessionKeySecret = func() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails
	return b
}()

// sessionKey is the key of a caller's session: an HMAC-SHA-256 of the ID,
// in hex. Only the admin API ties it to the ID.
func sessionKey(id string) string {
	m := hmac.New(sha256.New, sessionKeySecret)
	m.Write([]byte(id))
	return hex.EncodeToString(m.Sum(nil))
}

// newUserSessions returns the idle per-user server t describes, named
// name; nothing starts until start. store, if not nil, keeps the listing
// (with auth, the listing is kept in auth's store instead).
func newUserSessions(name string, t *userTemplate, opts upstream.Options, log *zap.Logger, auth *userOAuth, store *listingStore) *userSessions {
	ctx, cancel := context.WithCancel(context.Background())
	if auth != nil {
		store = auth.listing
	}
	us := &userSessions{
		name: name, tmpl: t, auth: auth, store: store, created: time.Now(), ctx: ctx, cancel: cancel,
		wake: make(chan struct{}, 1), settings: t.settings,
		byKey: map[string]*userSession{}, freed: make(chan struct{}), stops: map[string]uint64{},
	}
	us.opts.Store(&opts)
	us.log.Store(log)
	if auth != nil {
		auth.us = us
	}
	us.wg.Go(us.janitor)
	return us
}

func (us *userSessions) options() upstream.Options { return *us.opts.Load() }

func (us *userSessions) logger() *zap.Logger { return us.log.Load() }

// sessionLogger is the logger of a session: the server's, naming the
// session by its digest.
func (us *userSessions) sessionLogger(s *userSession) *zap.Logger {
	return us.logger().With(zap.String("session", s.digest()))
}

// startTimeout bounds how long a call waits for its session: for a slot,
// then for the start.
func (us *userSessions) startTimeout() time.Duration {
	return cmp.Or(us.options().StartTimeout, time.Minute)
}

// start starts the listing session, once, unless a listing exists; with
// oauth, it takes up the listing kept in storage instead.
func (us *userSessions) start() {
	var stored *upstream.ToolSet
	if us.store != nil {
		stored = us.store.load(us.ctx)
	}
	us.mu.Lock()
	defer us.mu.Unlock()
	if us.started || us.closed {
		return
	}
	us.started = true
	if stored != nil && us.listing.Load() == nil {
		us.listing.Store(stored)
		us.listedAt = time.Now()
		us.logger().Info("MCP server tools listed, as stored", zap.String("server", us.name), zap.Int("tools", len(stored.Tools)))
	}
	if us.listing.Load() == nil && us.auth == nil {
		if err := us.startListingLocked(listerIdentity(us.settings.listAs), nil); err != nil {
			us.logger().Error("cannot start the listing session", zap.String("server", us.name), zap.Error(err))
		}
	}
}

// configure applies the settings, options and logger of a configuration
// that takes the server over: running sessions keep running.
func (us *userSessions) configure(set userSettings, opts upstream.Options, log *zap.Logger) {
	us.opts.Store(&opts)
	us.log.Store(log)
	us.mu.Lock()
	us.settings = set
	for _, s := range us.runningLocked() {
		s.u.SetOptions(opts)
		s.u.SetLogger(us.sessionLogger(s))
	}
	us.mu.Unlock()
	select {
	case us.wake <- struct{}{}:
	default:
	}
}

// tools returns the server's tool listing.
func (us *userSessions) tools() *upstream.ToolSet { return us.listing.Load() }

// callTool calls a tool in the session of the caller ctx carries, started
// if it does not run.
func (us *userSessions) callTool(ctx context.Context, name string, args json.RawMessage) (res *upstream.CallResult, err error) {
	err = us.inSession(ctx, func(u *upstream.Upstream) error {
		res, err = u.CallTool(ctx, name, args)
		return err
	})
	return res, err
}

// inSession runs do, one request to the server, in the session of the
// caller ctx carries, started if it does not run.
func (us *userSessions) inSession(ctx context.Context, do func(u *upstream.Upstream) error) (err error) {
	id, err := us.caller(ctx)
	if err != nil {
		return err
	}
	var auth upstream.Authorizer
	if us.auth != nil {
		c, cerr := us.auth.check(ctx, id)
		if cerr != nil {
			return cerr
		}
		auth = c
		defer func() { err = us.auth.relink(err, id) }()
	}
	deadline := time.Now().Add(us.startTimeout())
	s, err := us.acquire(ctx, id, auth, deadline)
	if err != nil {
		return err
	}
	defer us.release(s)
	// A session not ready yet refuses the request before sending
	// anything: wait for it, and send again.
	err = do(s.u)
	var unavailable *upstream.UnavailableError
	if errors.As(err, &unavailable) && (unavailable.State == upstream.StateIdle || unavailable.State == upstream.StateStarting) {
		if err := us.waitReady(ctx, s, deadline); err != nil {
			return err
		}
		err = do(s.u)
	}
	return err
}

// caller returns the identity of the caller ctx carries, or the refusal
// of a call that does not say who is calling.
func (us *userSessions) caller(ctx context.Context) (bridge.Identity, error) {
	if us.tmpl.shared {
		return onDemandIdentity, nil
	}
	id, ok := bridge.IdentityFrom(ctx)
	if !ok || id.ID == "" {
		return id, &bridge.RefusedError{Status: http.StatusUnauthorized, Message: fmt.Sprintf(
			"server %q gives each caller a session of their own, and this call does not say who is calling", us.name)}
	}
	return id, nil
}

// acquire returns the caller's session, counting a call, after starting
// it if it does not run: in a free slot, or in the slot of the least
// recently used session without a call under way, or, while sessions are
// stopping, in the first slot they free before deadline. With every slot
// held by a call under way, it fails with a *bridge.RefusedError (429).
// auth, if not nil, authorizes the requests of a new session.
func (us *userSessions) acquire(ctx context.Context, id bridge.Identity, auth upstream.Authorizer, deadline time.Time) (*userSession, error) {
	key := sessionKey(id.ID)
	us.mu.Lock()
	s := us.liveLocked(key, auth)
	if s != nil {
		us.useLocked(s)
	}
	us.mu.Unlock()
	if s != nil {
		return s, nil
	}

	spec, err := us.tmpl.resolve(id)
	if err != nil {
		return nil, err
	}
	spec.Auth = auth
	us.prepare(spec)
	for {
		us.mu.Lock()
		if us.closed {
			us.mu.Unlock()
			return nil, &upstream.UnavailableError{Server: us.name, State: upstream.StateStopped, RetryAfter: time.Second}
		}
		if s := us.liveLocked(key, auth); s != nil { // another call started it
			us.useLocked(s)
			us.mu.Unlock()
			return s, nil
		}
		if victim, ok := us.takeLocked(); ok {
			s := &userSession{key: key, id: id.ID, auth: auth}
			s.u = upstream.New(spec, us.options(), us.sessionLogger(s))
			us.notices.attach(s)
			s.elem = us.lru.PushFront(s)
			us.byKey[key] = s
			us.starts++
			us.useLocked(s)
			us.launchLocked(s, victim, nil)
			us.mu.Unlock()
			return s, nil
		}
		stopping := us.held > us.runningCountLocked()
		freed := us.freed
		us.mu.Unlock()
		if !stopping {
			return nil, us.busy()
		}
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-freed:
			t.Stop()
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
			return nil, us.busy()
		}
	}
}

// liveLocked returns the session with key, unless it authorizes its
// requests otherwise than auth: a session started with a client the
// caller's revocation dropped (by a call under way meanwhile) stops, and
// gives way to one with the caller's current client.
func (us *userSessions) liveLocked(key string, auth upstream.Authorizer) *userSession {
	s := us.byKey[key]
	if s != nil && auth != nil && s.auth != auth {
		us.unlinkLocked(s, stopEnded)
		us.stopLocked(s)
		return nil
	}
	return s
}

// busy is the refusal of a new caller's session when every slot is held
// by a call under way.
func (us *userSessions) busy() error {
	us.mu.Lock()
	defer us.mu.Unlock()
	return us.busyLocked()
}

func (us *userSessions) busyLocked() error {
	return &bridge.RefusedError{Status: http.StatusTooManyRequests, RetryAfter: time.Second, Message: fmt.Sprintf(
		"server %q runs a session for each caller, at most %d at once (max_sessions), and every one has a call under way; try again shortly",
		us.name, us.settings.max)}
}

// prepare creates the working directory of a session whose directory is
// the caller's own, so that a new caller's session can start in it.
func (us *userSessions) prepare(spec upstream.Spec) {
	if spec.Dir == "" || !strings.Contains(us.tmpl.spec.Dir, userPrefix) {
		return
	}
	if err := os.MkdirAll(spec.Dir, 0o700); err != nil {
		// The start fails and says why.
		us.logger().Warn("cannot create the working directory of a caller's session",
			zap.String("server", us.name), zap.Error(err))
	}
}

// useLocked counts a call of s.
func (us *userSessions) useLocked(s *userSession) {
	s.calls++
	s.lastUse = time.Now()
	if s.elem != nil {
		us.lru.MoveToFront(s.elem)
	}
}

// release ends a call of s, and takes up the listing of s if it changed.
func (us *userSessions) release(s *userSession) {
	us.mu.Lock()
	defer us.mu.Unlock()
	s.calls--
	s.lastUse = time.Now()
	if s.elem != nil {
		us.lru.MoveToFront(s.elem)
	}
	us.adoptLocked(s)
}

// waitReady waits until s is ready, within ctx and deadline, and takes up
// its listing. A session that failed to start fails the call with an
// *upstream.UnavailableError (503, with when to try again), as a shared
// server's does.
func (us *userSessions) waitReady(ctx context.Context, s *userSession, deadline time.Time) error {
	var timeout <-chan time.Time
	for {
		changed := s.u.Changed()
		st := s.u.Status()
		switch st.State {
		case upstream.StateReady:
			us.mu.Lock()
			us.adoptLocked(s)
			us.mu.Unlock()
			return nil
		case upstream.StateIdle, upstream.StateStarting:
		default:
			return &upstream.UnavailableError{Server: us.name, State: st.State, Cause: errorOrNil(st.LastError),
				RetryAfter: max(time.Until(st.RetryAt), time.Second)}
		}
		if timeout == nil {
			t := time.NewTimer(time.Until(deadline))
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout:
			return &upstream.UnavailableError{Server: us.name, State: st.State, RetryAfter: 2 * time.Second,
				Cause: fmt.Errorf("the caller's session did not start within the start timeout of %s", us.startTimeout())}
		}
	}
}

// errorOrNil turns a status's last error back into an error.
func errorOrNil(msg string) error {
	if msg == "" {
		return nil
	}
	return errors.New(msg)
}

// takeLocked takes a slot for a new session: a free one, or the slot of
// the least recently used session without a call under way, which it
// stops (the new session starts once it is gone). It reports false when
// neither is to be had.
func (us *userSessions) takeLocked() (victim *userSession, ok bool) {
	if us.held < us.settings.max {
		us.held++
		return nil, true
	}
	if victim = us.idlestLocked(); victim != nil {
		us.unlinkLocked(victim, stopEvicted)
		return victim, true
	}
	return nil, false
}

// idlestLocked returns the least recently used session without a call
// under way, nil if every one has one.
func (us *userSessions) idlestLocked() *userSession {
	for e := us.lru.Back(); e != nil; e = e.Prev() {
		if s := e.Value.(*userSession); s.calls == 0 {
			return s
		}
	}
	return nil
}

// unlinkLocked removes a caller's session from those running, for reason:
// no call finds it any more. It keeps its slot until it is stopped.
func (us *userSessions) unlinkLocked(s *userSession, reason string) {
	us.retireLocked(s)
	delete(us.byKey, s.key)
	us.lru.Remove(s.elem)
	s.elem = nil
	if us.lru.Len() == 0 {
		us.idleSince = time.Now()
	}
	us.stops[reason]++
	us.logger().Info("stopping a caller's session", zap.String("server", us.name),
		zap.String("session", s.digest()), zap.String("reason", reason))
}

// launchLocked starts s in the background: at once, or once victim, whose
// slot it takes, has stopped. then, if set, runs after the start.
func (us *userSessions) launchLocked(s, victim *userSession, then func()) {
	if victim == nil && then == nil {
		s.u.Start()
		return
	}
	us.wg.Go(func() {
		if victim != nil {
			us.stopped(victim)
		}
		s.u.Start()
		if then != nil {
			then()
		}
	})
}

// stopLocked stops s, unlinked, in the background, and frees its slot.
func (us *userSessions) stopLocked(s *userSession) {
	us.wg.Go(func() {
		us.stopped(s)
		us.mu.Lock()
		us.freeLocked()
		us.mu.Unlock()
	})
}

// stopped stops s, whose slot passes on.
func (us *userSessions) stopped(s *userSession) {
	_ = s.u.Close()
}

// retireLocked keeps the restarts and failures of s, which leaves the
// running sessions to be stopped, in the server's counts, so that they
// never go back (Prometheus would read a counter going back as a reset).
func (us *userSessions) retireLocked(s *userSession) {
	st := s.u.Status()
	us.restarted += st.Restarts
	addFailures(&us.failed, st.FailureCounts)
}

// addFailures adds the counts of from to *to, making it if need be.
func addFailures(to *map[upstream.FailureReason]int, from map[upstream.FailureReason]int) {
	if len(from) == 0 {
		return
	}
	if *to == nil {
		*to = make(map[upstream.FailureReason]int, len(from))
	}
	for r, n := range from {
		(*to)[r] += n
	}
}

// freeLocked frees a slot.
func (us *userSessions) freeLocked() {
	us.held--
	close(us.freed)
	us.freed = make(chan struct{})
}

// runningLocked returns every running session: the callers', most
// recently used first, then the listing session.
func (us *userSessions) runningLocked() []*userSession {
	out := make([]*userSession, 0, us.lru.Len()+1)
	for e := us.lru.Front(); e != nil; e = e.Next() {
		out = append(out, e.Value.(*userSession))
	}
	if us.lister != nil {
		out = append(out, us.lister)
	}
	return out
}

func (us *userSessions) runningCountLocked() int {
	n := us.lru.Len()
	if us.lister != nil {
		n++
	}
	return n
}

// adoptLocked takes up the listing of s when it changed since last seen
// and differs from the server's.
func (us *userSessions) adoptLocked(s *userSession) {
	ts := s.u.Tools()
	if ts == nil || ts == s.seen {
		return
	}
	s.seen = ts
	cur := us.listing.Load()
	if cur != nil && sameListing(cur, ts) {
		return
	}
	us.listing.Store(ts)
	if us.store != nil && !us.closed {
		us.wg.Go(func() { us.store.save(us.listing.Load) })
	}
	msg := "MCP server tool list changed"
	if cur == nil {
		us.listedAt = time.Now()
		msg = "MCP server tools listed"
	}
	us.logger().Info(msg, zap.String("server", us.name), zap.String("session", s.digest()), zap.Int("tools", len(ts.Tools)))
}

// b2i is 1 for true, 0 for false.
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// sameListing reports two listings alike: the same server and tools, with
// the same schemas byte for byte.
func sameListing(a, b *upstream.ToolSet) bool {
	return a.Server == b.Server && slices.EqualFunc(a.Tools, b.Tools, func(x, y *upstream.Tool) bool {
		return x.Name == y.Name && x.Title == y.Title && x.Description == y.Description &&
			string(x.InputSchema) == string(y.InputSchema) && string(x.OutputSchema) == string(y.OutputSchema) &&
			string(x.Annotations) == string(y.Annotations) && x.TaskSupport == y.TaskSupport
	})
}

// startListingLocked starts a listing session unless one runs: it lists
// the tools as id (list_as, or with oauth a caller who authorized, whose
// auth authorizes its requests), which the server takes up, and stops. It
// needs a slot like a caller's session.
func (us *userSessions) startListingLocked(id bridge.Identity, auth upstream.Authorizer) error {
	if us.lister != nil {
		return nil
	}
	spec, err := us.tmpl.resolve(id)
	if err != nil {
		return err
	}
	spec.Auth = auth
	victim, ok := us.takeLocked()
	if !ok {
		return us.busyLocked()
	}
	s := &userSession{key: listingKey, id: id.ID}
	s.u = upstream.New(spec, us.options(), us.sessionLogger(s))
	us.lister = s
	us.starts++
	us.launchLocked(s, victim, func() {
		us.prepare(spec)
		us.awaitListing(s)
	})
	return nil
}

// awaitListing waits until the listing session s listed the tools, takes
// the listing up and stops s. A session that fails to start is retried
// with backoff, as a shared server is, until it lists, the server stops,
// or another listing session replaces it (which stops s).
func (us *userSessions) awaitListing(s *userSession) {
	for {
		changed := s.u.Changed()
		if s.u.Tools() != nil {
			break
		}
		st := s.u.Status()
		us.mu.Lock()
		replaced := us.lister != s
		if !replaced {
			us.listErr = st.LastError
		}
		us.mu.Unlock()
		if replaced {
			return
		}
		select {
		case <-changed:
		case <-us.ctx.Done():
			return // close stops s
		}
	}
	us.mu.Lock()
	us.adoptLocked(s)
	if us.closed || us.lister != s {
		us.mu.Unlock()
		return
	}
	us.listErr = ""
	us.lister = nil
	us.retireLocked(s)
	us.mu.Unlock()
	us.stopped(s)
	us.mu.Lock()
	us.freeLocked()
	us.mu.Unlock()
}

// janitor stops idle sessions, and sessions over a max_sessions lowered
// by a reload, and takes up the sessions' listings, until close.
func (us *userSessions) janitor() {
	t := time.NewTimer(us.tick())
	defer t.Stop()
	for {
		select {
		case <-us.ctx.Done():
			return
		case <-us.wake:
		case <-t.C:
		}
		us.sweep(time.Now())
		t.Reset(us.tick())
	}
}

// tick is how often the janitor looks: a quarter of idle_timeout, from
// 10 ms to a second.
func (us *userSessions) tick() time.Duration {
	us.mu.Lock()
	idle := us.settings.idle
	us.mu.Unlock()
	return min(max(idle/4, 10*time.Millisecond), time.Second)
}

// sweep does the janitor's work once.
func (us *userSessions) sweep(now time.Time) {
	us.mu.Lock()
	defer us.mu.Unlock()
	if us.closed {
		return
	}
	for e := us.lru.Front(); e != nil; e = e.Next() {
		us.adoptLocked(e.Value.(*userSession))
	}
	for e := us.lru.Back(); e != nil; {
		s, prev := e.Value.(*userSession), e.Prev()
		if s.calls == 0 && now.Sub(s.lastUse) >= us.settings.idle {
			us.unlinkLocked(s, stopIdle)
			us.stopLocked(s)
		}
		e = prev
	}
	for excess := us.runningCountLocked() - us.settings.max; excess > 0; excess-- {
		s := us.idlestLocked()
		if s == nil {
			break // the busy ones go once idle
		}
		us.unlinkLocked(s, stopEvicted)
		us.stopLocked(s)
	}
}

// status describes the server as a whole: ready once a listing exists (a
// server started on demand: idle while stopped, else as its session is);
// before, as the listing session is (with oauth and none, needs_auth once
// started: nobody has authorized yet). The counts add up the sessions':
// restarts and failures by reason, those of stopped sessions too. Only
// the listing session's errors show: a caller's may name the caller.
func (us *userSessions) status() upstream.Status {
	us.mu.Lock()
	defer us.mu.Unlock()
	st := upstream.Status{Name: us.name, Endpoint: us.tmpl.spec.Endpoint(), Restarts: us.restarted, LastError: us.listErr}
	ts := us.listing.Load()
	switch {
	case us.closed:
		st.State, st.Since = upstream.StateStopped, us.closedAt
	case ts != nil && us.tmpl.shared && us.lru.Len() == 0:
		// Started on demand, and stopped: the next call starts it.
		st.State, st.Since = upstream.StateIdle, us.listedAt
		if us.idleSince.After(st.Since) {
			st.Since = us.idleSince
		}
	case ts != nil && us.tmpl.shared:
		// Started on demand, and running: as its one session is, whose
		// errors name no caller.
		ss := us.lru.Front().Value.(*userSession).u.Status()
		st.State, st.Since, st.RetryAt, st.Failures, st.PID = ss.State, ss.Since, ss.RetryAt, ss.Failures, ss.PID
		st.LastError = cmp.Or(ss.LastError, st.LastError)
	case ts != nil:
		st.State, st.Since = upstream.StateReady, us.listedAt
	case us.lister != nil:
		ls := us.lister.u.Status()
		st.State, st.Since, st.RetryAt, st.Failures = ls.State, ls.Since, ls.RetryAt, ls.Failures
		// The listing session's own error, before awaitListing takes it up.
		st.LastError = cmp.Or(ls.LastError, st.LastError)
	case us.auth != nil && us.started:
		// Once started: the stored listing, if any, is taken up by then.
		st.State, st.Since = upstream.StateNeedsAuth, us.created
		st.LastError = "no caller has authorized the server yet: each caller authorizes it for themselves, at the link their first call gives them"
	default:
		st.State, st.Since = upstream.StateIdle, us.created
	}
	if ts != nil {
		st.Server, st.Tools = ts.Server, len(ts.Tools)
	}
	addFailures(&st.FailureCounts, us.failed)
	for _, s := range us.runningLocked() {
		ss := s.u.Status()
		st.InFlight += ss.InFlight
		st.Restarts += ss.Restarts
		addFailures(&st.FailureCounts, ss.FailureCounts)
		if ss.LastMessage.After(st.LastMessage) {
			st.LastMessage = ss.LastMessage
		}
		if !ss.OldestCall.IsZero() && (st.OldestCall.IsZero() || ss.OldestCall.Before(st.OldestCall)) {
			st.OldestCall = ss.OldestCall
		}
	}
	return st
}

// count returns how many sessions run, the listing session included, and
// how many may.
func (us *userSessions) count() (running, limit int) {
	us.mu.Lock()
	defer us.mu.Unlock()
	return us.runningCountLocked(), us.settings.max
}

// startCount returns how many sessions started, the listing sessions
// included.
func (us *userSessions) startCount() uint64 {
	us.mu.Lock()
	defer us.mu.Unlock()
	return us.starts
}

// stopCounts returns how many sessions stopped, by reason.
func (us *userSessions) stopCounts() map[string]uint64 {
	us.mu.Lock()
	defer us.mu.Unlock()
	out := make(map[string]uint64, 3)
	for _, r := range []string{stopIdle, stopEvicted, stopEnded} {
		out[r] = us.stops[r]
	}
	return out
}

// sessionReport is one session as the admin API shows it.
type sessionReport struct {
	// ID is the caller's; for the listing session, list_as.
	ID string `json:"id"`
	// Digest names the session in Caddy's log.
	Digest string `json:"digest"`
	// Listing marks the listing session.
	Listing   bool           `json:"listing,omitempty"`
	State     upstream.State `json:"state"`
	PID       int            `json:"pid,omitempty"`
	InFlight  int            `json:"in_flight"`
	Restarts  int            `json:"restarts"`
	Since     time.Time      `json:"since"`
	LastUse   *time.Time     `json:"last_use,omitempty"`
	LastError string         `json:"last_error,omitempty"`
}

// reports describes every running session, the callers' sorted by ID, then
// the listing session.
func (us *userSessions) reports() []sessionReport {
	us.mu.Lock()
	running := us.runningLocked()
	lastUse := make(map[*userSession]time.Time, len(running))
	for _, s := range running {
		lastUse[s] = s.lastUse
	}
	us.mu.Unlock()
	out := make([]sessionReport, 0, len(running))
	for _, s := range running {
		st := s.u.Status()
		r := sessionReport{ID: s.id, Digest: s.digest(), Listing: s.key == listingKey, State: st.State, PID: st.PID,
			InFlight: st.InFlight, Restarts: st.Restarts, Since: st.Since.UTC(), LastError: st.LastError}
		if t := lastUse[s]; !t.IsZero() {
			t = t.UTC()
			r.LastUse = &t
		}
		out = append(out, r)
	}
	slices.SortStableFunc(out, func(a, b sessionReport) int {
		return cmp.Or(cmp.Compare(b2i(a.Listing), b2i(b.Listing)), strings.Compare(a.ID, b.ID))
	})
	return out
}

// end stops the session of the caller id, and reports whether there was
// one.
func (us *userSessions) end(id string) bool {
	us.mu.Lock()
	defer us.mu.Unlock()
	s := us.byKey[sessionKey(id)]
	if s == nil || us.closed {
		return false
	}
	us.unlinkLocked(s, stopEnded)
	us.stopLocked(s)
	return true
}

// revoke forgets the OAuth authorization of the caller id, and stops their
// session and a listing session that runs as them. It reports whether they
// had a token or a session.
func (us *userSessions) revoke(ctx context.Context, id string) (bool, error) {
	had, err := us.auth.users.Revoke(ctx, id)
	if us.end(id) {
		had = true
	}
	us.mu.Lock()
	if l := us.lister; l != nil && l.id == id && !us.closed {
		us.lister = nil
		us.retireLocked(l)
		us.stopLocked(l)
	}
	us.mu.Unlock()
	return had, err
}

// listAs starts a listing session as the caller id, whose auth authorizes
// its requests, unless a listing exists or a listing session runs whose
// caller still has a token: with oauth, the first caller who authorizes
// lists the tools.
func (us *userSessions) listAs(id bridge.Identity, auth upstream.Authorizer) error {
	us.mu.Lock()
	defer us.mu.Unlock()
	if us.closed || us.listing.Load() != nil {
		return nil
	}
	if l := us.lister; l != nil {
		if l.u.Status().State != upstream.StateNeedsAuth {
			return nil
		}
		// Its caller's token was refused, or revoked: another lists.
		us.lister = nil
		us.retireLocked(l)
		us.stopLocked(l)
	}
	return us.startListingLocked(id, auth)
}

// endAll stops every caller's session: each caller's next call starts a
// new one.
func (us *userSessions) endAll() {
	us.mu.Lock()
	defer us.mu.Unlock()
	if us.closed {
		return
	}
	if us.lister != nil { // ends the listing session's backoff or failed state
		us.lister.u.Restart()
	}
	for e := us.lru.Front(); e != nil; {
		s, next := e.Value.(*userSession), e.Next()
		us.unlinkLocked(s, stopEnded)
		us.stopLocked(s)
		e = next
	}
}

// refresh lists the tools again: through the most recently used ready
// session, or else a listing session. The new listing is taken up when it
// comes.
func (us *userSessions) refresh() error {
	us.mu.Lock()
	defer us.mu.Unlock()
	if us.closed {
		return &upstream.UnavailableError{Server: us.name, State: upstream.StateStopped}
	}
	for e := us.lru.Front(); e != nil; e = e.Next() {
		if s := e.Value.(*userSession); s.u.Refresh() == nil {
			return nil
		}
	}
	if us.auth != nil {
		return &upstream.UnavailableError{Server: us.name, State: upstream.StateNeedsAuth, RetryAfter: time.Second,
			Cause: errors.New("no caller's session is ready to list the tools through; the next caller's session lists them")}
	}
	if err := us.startListingLocked(listerIdentity(us.settings.listAs), nil); err != nil {
		return &upstream.UnavailableError{Server: us.name, State: upstream.StateStarting, Cause: err, RetryAfter: time.Second}
	}
	return nil
}

// close stops every session and the janitor, and waits for them.
func (us *userSessions) close() {
	us.mu.Lock()
	if us.closed {
		us.mu.Unlock()
		return
	}
	us.closed, us.closedAt = true, time.Now()
	running := us.runningLocked()
	for _, s := range running {
		us.retireLocked(s)
	}
	clear(us.byKey)
	us.lru.Init()
	us.lister = nil
	us.mu.Unlock()
	us.cancel()
	var wg sync.WaitGroup
	for _, s := range running {
		wg.Go(func() { _ = s.u.Close() })
	}
	wg.Wait()
	us.wg.Wait()
}

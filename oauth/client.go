package oauth

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// State is where a Client stands with its upstream server.
type State string

// The states of a Client.
const (
	// StateAuthorized: a usable token is held.
	StateAuthorized State = "authorized"
	// StateNeedsAuth: no usable token is held, or the server asked for
	// more scopes than the token has (step-up); a user has to authorize.
	// With the client_credentials grant: no token fetched yet, or the
	// last fetch failed (no user is needed; the next request fetches).
	StateNeedsAuth State = "needs_auth"
	// StatePending: an authorization URL was handed out and its callback
	// has not come back yet (for at most PendingTTL).
	StatePending State = "pending"
)

// Status is a snapshot of a Client, for health endpoints. It holds no
// secrets.
type Status struct {
	State State
	// Grant is GrantAuthorizationCode or GrantClientCredentials.
	Grant string
	// Issuer is the authorization server of the token held, if any.
	Issuer string
	// Scopes are the scopes of the token held (as granted if the server
	// said, else as requested).
	Scopes []string
	// ExpiresAt is when the token held expires; zero if unknown or none.
	ExpiresAt time.Time
	// StepUp are the scopes the next authorization will request because
	// the server answered insufficient_scope; nil if none.
	StepUp []string
	// LastError is the last failure, without secrets; cleared when a
	// token is obtained.
	LastError string
}

// Limits.
const (
	// PendingTTL is how long an authorization URL stays valid for its
	// callback.
	PendingTTL = 10 * time.Minute
	// MaxPending bounds the authorizations awaiting their callback; the
	// oldest is dropped beyond it.
	MaxPending = 16
	// MaxAttempts bounds the authorizations in a row whose tokens the
	// server refused (401 or 403): Authorize then fails with
	// ErrTooManyAttempts until AttemptsReset has passed since the last one,
	// or the server accepts a token.
	MaxAttempts = 3
	// AttemptsReset: see MaxAttempts.
	AttemptsReset = 10 * time.Minute
	// RefreshBefore is how long before its expiry a token is refreshed.
	RefreshBefore = time.Minute
)

// Client is the OAuth client for one upstream MCP server. It is safe for
// concurrent use.
type Client struct {
	cfg             Config
	serverURL       *url.URL
	canonicalServer string
	storeKey        string // the prefix of the token's keys
	regKey          string // the prefix of the registrations' keys
	store           Store
	hc              *http.Client
	log             atomic.Pointer[zap.Logger] // with the server's URL
	refusals        atomic.Uint64              // requests answered 401 or 403
	now             func() time.Time
	signer          *assertionSigner // private_key_jwt, or nil

	// cur is the token put on requests; nil when none. Read lock-free on
	// every request.
	cur  atomic.Pointer[heldToken]
	prev atomic.Pointer[heldToken] // the token before cur, for Redact
	// unaccepted counts authorizations completed since a token was last
	// accepted by the server (see MaxAttempts).
	unaccepted atomic.Int32

	loaded   atomic.Bool
	lastLook atomic.Int64 // when adoptNew last looked in the Store, Unix ns
	loadMu   sync.Mutex   // serializes loading from the Store
	persistM sync.Mutex   // orders writes to the Store
	// reg holds the registrations: the client's own, or for a user's
	// client those of every user of the server (Users).
	reg *registry
	// users is the Users this client belongs to; nil for a client of its
	// own.
	users *Users
	// forgotten marks a user's client whose authorization was revoked: it
	// stores nothing any more.
	forgotten atomic.Bool

	mu          sync.Mutex
	challenge   *bearerChallenge        // the latest Bearer challenge
	stepUp      []string                // scopes to request after insufficient_scope
	pending     map[string]*pendingFlow // by state
	lastAttempt time.Time               // when the last authorization completed
	lastErr     string
	flight      *flight       // the token refresh or fetch under way
	changed     chan struct{} // closed and replaced on every change
}

// heldToken is the immutable view of the token that requests use.
type heldToken struct {
	header    string    // "Bearer " + access token
	refreshAt time.Time // zero: never refresh proactively
	rec       *tokenRecord
}

// newHeld wraps rec.
func newHeld(rec *tokenRecord) *heldToken {
	h := &heldToken{header: "Bearer " + rec.AccessToken, rec: rec}
	if !rec.ExpiresAt.IsZero() {
		h.refreshAt = rec.ExpiresAt.Add(-RefreshBefore)
	}
	return h
}

// fresh reports whether the token can be used at now without refreshing.
func (h *heldToken) fresh(now time.Time) bool {
	return h.refreshAt.IsZero() || now.Before(h.refreshAt)
}

// expired reports whether the token is past its expiry at now.
func (h *heldToken) expired(now time.Time) bool {
	return !h.rec.ExpiresAt.IsZero() && !now.Before(h.rec.ExpiresAt)
}

// setCur replaces the token held, keeping the one it replaces for Redact.
func (c *Client) setCur(h *heldToken) {
	if old := c.cur.Swap(h); old != nil {
		c.prev.Store(old)
	}
}

// Redact removes from s the tokens the client holds and held last, for
// messages that may quote a request, such as an upstream's error echoing
// it.
func (c *Client) Redact(s string) string {
	for _, h := range []*heldToken{c.cur.Load(), c.prev.Load()} {
		if h == nil {
			continue
		}
		for _, secret := range []string{h.rec.AccessToken, h.rec.RefreshToken} {
			if len(secret) >= 4 {
				s = strings.ReplaceAll(s, secret, "[redacted]")
			}
		}
	}
	return s
}

// SetLogger replaces the logger, as a proxy does when a new configuration
// takes a running server over; nil logs nothing.
func (c *Client) SetLogger(l *zap.Logger) {
	if l == nil {
		l = zap.NewNop()
	}
	c.log.Store(l.With(zap.String("oauth_server", redactURL(c.canonicalServer))))
}

func (c *Client) logger() *zap.Logger { return c.log.Load() }

// Status returns a snapshot of the client.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.statusLocked()
}

func (c *Client) statusLocked() Status {
	st := Status{Grant: c.cfg.Grant, LastError: c.lastErr, StepUp: slices.Clone(c.stepUp)}
	now := c.now()
	h := c.cur.Load()
	usable := h != nil && (!h.expired(now) || c.canRenew(h))
	if h != nil {
		st.Issuer = h.rec.Issuer
		st.Scopes = slices.Clone(h.rec.scopes())
		st.ExpiresAt = h.rec.ExpiresAt
	}
	switch {
	case c.hasPendingLocked(now):
		st.State = StatePending
	case usable && c.stepUp == nil:
		st.State = StateAuthorized
	default:
		st.State = StateNeedsAuth
	}
	return st
}

// canRenew reports whether a new token can be had without a user.
func (c *Client) canRenew(h *heldToken) bool {
	return c.cfg.Grant == GrantClientCredentials || (h != nil && h.rec.RefreshToken != "")
}

// Changed returns a channel that is closed at the next change of Status.
func (c *Client) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

// changedLocked signals a change; call with c.mu held, then call the
// returned function without it.
func (c *Client) changedLocked() func() {
	close(c.changed)
	c.changed = make(chan struct{})
	if c.cfg.OnChange == nil {
		return func() {}
	}
	st := c.statusLocked()
	return func() { c.cfg.OnChange(st) }
}

// setError records err as the last error and signals the change.
func (c *Client) setError(err error) {
	c.mu.Lock()
	c.lastErr = err.Error()
	notify := c.changedLocked()
	c.mu.Unlock()
	notify()
}

// Load reads the stored token, if any, so that Status reflects it before
// the first request. Calling it is optional: every other method loads on
// first use. Errors are also recorded in Status.LastError.
func (c *Client) Load(ctx context.Context) error {
	if c.loaded.Load() {
		return nil
	}
	c.loadMu.Lock()
	defer c.loadMu.Unlock()
	if c.loaded.Load() {
		return nil
	}
	err := c.loadToken(ctx)
	if ctx.Err() == nil {
		// Loaded, or failed for good (unreadable store or record): do not
		// try on every request. A cancelled caller leaves it to the next.
		c.loaded.Store(true)
	}
	if err != nil {
		c.logger().Warn("cannot load the stored OAuth token", zap.Error(err))
		c.setError(err)
	}
	return err
}

// ensureLoaded loads stored state once; errors are logged and recorded.
func (c *Client) ensureLoaded(ctx context.Context) {
	if !c.loaded.Load() {
		_ = c.Load(ctx)
	}
}

// loadToken reads the current token from the Store.
func (c *Client) loadToken(ctx context.Context) error {
	rec, err := c.storedToken(ctx)
	if err != nil || rec == nil {
		return err
	}
	h := newHeld(rec)
	if h.expired(c.now()) && rec.RefreshToken == "" {
		c.logger().Info("the stored OAuth token has expired", zap.String("issuer", rec.Issuer))
		return nil
	}
	c.mu.Lock()
	c.setCur(h)
	notify := c.changedLocked()
	c.mu.Unlock()
	notify()
	c.logger().Info("loaded stored OAuth token",
		zap.String("issuer", rec.Issuer), zap.Time("expires_at", rec.ExpiresAt),
		zap.Bool("refreshable", rec.RefreshToken != ""))
	return nil
}

// storedToken reads the token record in the Store, nil if there is none
// this client can use.
func (c *Client) storedToken(ctx context.Context) (*tokenRecord, error) {
	if c.cfg.Grant == GrantClientCredentials {
		return nil, nil // fetched again, never stored
	}
	var cur currentRecord
	ok, err := c.loadJSON(ctx, c.currentKey(), &cur)
	if err != nil || !ok || cur.Version != recordVersion || cur.Issuer == "" {
		return nil, err
	}
	var rec tokenRecord
	ok, err = c.loadJSON(ctx, c.tokenKey(cur.Issuer), &rec)
	if err != nil || !ok {
		return nil, err
	}
	if rec.Version != recordVersion || rec.Issuer != cur.Issuer || rec.Server != c.canonicalServer ||
		rec.AccessToken == "" || rec.TokenEndpoint == "" {
		c.logger().Info("ignoring a stored OAuth token made for another configuration", zap.String("issuer", rec.Issuer))
		return nil, nil
	}
	if c.cfg.ClientID != "" && rec.ClientID != c.cfg.ClientID {
		c.logger().Info("ignoring a stored OAuth token made for another client", zap.String("issuer", rec.Issuer))
		return nil, nil
	}
	return &rec, nil
}

// adoptStored takes, in place of used, a fresh token that another client
// sharing the Store (another Caddy instance) stored meanwhile, so that
// two instances do not both refresh, the later one with a refresh token
// the first one's rotation made invalid. It returns nil if there is none.
func (c *Client) adoptStored(ctx context.Context, used *heldToken) *heldToken {
	rec, err := c.storedToken(ctx)
	if err != nil || rec == nil || rec.AccessToken == used.rec.AccessToken || rec.Issuer != used.rec.Issuer {
		return nil
	}
	h := newHeld(rec)
	if !h.fresh(c.now()) {
		return nil
	}
	c.mu.Lock()
	if c.cur.Load() != used {
		c.mu.Unlock()
		return nil
	}
	c.setCur(h)
	notify := c.changedLocked()
	c.mu.Unlock()
	notify()
	c.logger().Info("took the OAuth token another instance refreshed", zap.String("issuer", rec.Issuer))
	return h
}

// StoreRecheck is how often, at most, a client without a token looks in
// the Store for one: another Caddy instance sharing the storage may have
// stored one (a user authorized through it).
const StoreRecheck = time.Second

// adoptNew takes, while the client holds no token, the one another client
// sharing the Store stored meanwhile, at most once every StoreRecheck. It
// returns nil if there is none.
func (c *Client) adoptNew(ctx context.Context) *heldToken {
	if c.cfg.Grant != GrantAuthorizationCode || c.forgotten.Load() {
		return nil
	}
	now := c.now()
	last := c.lastLook.Load()
	if now.UnixNano()-last < int64(StoreRecheck) || !c.lastLook.CompareAndSwap(last, now.UnixNano()) {
		return nil
	}
	rec, err := c.storedToken(ctx)
	if err != nil || rec == nil {
		return nil
	}
	h := newHeld(rec)
	if h.expired(now) && rec.RefreshToken == "" {
		return nil
	}
	c.mu.Lock()
	if cur := c.cur.Load(); cur != nil || c.forgotten.Load() {
		c.mu.Unlock()
		return cur
	}
	c.setCur(h)
	c.lastErr = ""
	notify := c.changedLocked()
	c.mu.Unlock()
	notify()
	c.logger().Info("took the OAuth token another instance stored", zap.String("issuer", rec.Issuer))
	return h
}

// Token returns an access token for the upstream server, refreshing or (for
// the client_credentials grant) fetching it as needed. Without one, the
// error is a *NeedsAuthorizationError.
func (c *Client) Token(ctx context.Context) (string, error) {
	c.ensureLoaded(ctx)
	h, err := c.usable(ctx)
	if h != nil {
		return h.rec.AccessToken, nil
	}
	if c.cfg.Grant == GrantClientCredentials {
		h, err = c.renew(ctx, nil)
		if h != nil {
			return h.rec.AccessToken, nil
		}
		return "", err
	}
	if err == nil {
		err = c.needsAuth()
	}
	return "", err
}

// Authorized reports whether requests to the server can go as the
// authorization stands: nil with a usable token (refreshed or fetched as
// needed) and no step-up pending; else a *NeedsAuthorizationError, or the
// error of getting a token. A step-up (the server asked for more scopes)
// leaves the current token usable for what it covers, but a user must
// authorize again.
func (c *Client) Authorized(ctx context.Context) error {
	if _, err := c.Token(ctx); err != nil {
		return err
	}
	c.mu.Lock()
	stepUp := slices.Clone(c.stepUp)
	c.mu.Unlock()
	if stepUp != nil && c.cfg.Grant == GrantAuthorizationCode {
		return &NeedsAuthorizationError{Reason: "the server asks for more scopes: " + strings.Join(stepUp, " ")}
	}
	return nil
}

// usable returns the token to put on a request now: the held one if fresh,
// else a refreshed one; the held one if refreshing fails but it has not
// expired; else nil, with the refresh error if there was one.
func (c *Client) usable(ctx context.Context) (*heldToken, error) {
	h := c.cur.Load()
	if h == nil {
		if h = c.adoptNew(ctx); h == nil {
			return nil, nil
		}
	}
	now := c.now()
	if h.fresh(now) {
		return h, nil
	}
	if !c.canRenew(h) {
		if h.expired(now) {
			c.drop(h, "the token expired and there is no refresh token")
			return nil, nil
		}
		return h, nil
	}
	nh, err := c.renew(ctx, h)
	if nh != nil {
		return nh, nil
	}
	if cur := c.cur.Load(); cur != nil && !cur.expired(c.now()) {
		return cur, nil // a transient failure; the token still works
	}
	return nil, err
}

// needsAuth builds the error for a client without a usable token.
func (c *Client) needsAuth() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	reason := "no token held"
	if c.lastErr != "" {
		reason = "no token held; last error: " + c.lastErr
	}
	return &NeedsAuthorizationError{Reason: reason}
}

// drop forgets h (if it is still the token held) after the server or the
// authorization server refused it, and deletes it from the Store.
func (c *Client) drop(h *heldToken, why string) {
	c.mu.Lock()
	if c.cur.Load() != h {
		c.mu.Unlock()
		return
	}
	c.setCur(nil)
	c.lastErr = "token dropped: " + why
	notify := c.changedLocked()
	c.mu.Unlock()
	notify()
	c.logger().Warn("dropped the OAuth token; authorization is needed",
		zap.String("issuer", h.rec.Issuer), zap.String("reason", why))
	if c.cfg.Grant == GrantAuthorizationCode {
		c.persistM.Lock()
		defer c.persistM.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), DefaultHTTPTimeout)
		defer cancel()
		if err := c.store.Delete(ctx, c.tokenKey(h.rec.Issuer)); err != nil {
			c.logger().Warn("cannot delete the dropped OAuth token from storage", zap.Error(err))
		}
	}
}

// install makes rec the token held, persists it (authorization-code grant)
// and clears what it resolves. A renewal passes the token it renews as
// replaces: if another token was installed meanwhile (a completed
// authorization), that one stays and is returned instead.
func (c *Client) install(ctx context.Context, rec *tokenRecord, completesStepUp bool, replaces *heldToken) (*heldToken, error) {
	h := newHeld(rec)
	var prevIssuer string
	c.mu.Lock()
	prev := c.cur.Load()
	if replaces != nil && prev != replaces {
		c.mu.Unlock()
		return prev, nil
	}
	if prev != nil {
		prevIssuer = prev.rec.Issuer
	}
	c.setCur(h)
	if completesStepUp && containsAll(rec.Requested, c.stepUp) {
		c.stepUp = nil
	}
	c.lastErr = ""
	notify := c.changedLocked()
	c.mu.Unlock()
	notify()
	return h, c.persist(ctx, h, prevIssuer)
}

// persist writes h to the Store (authorization-code grant only), unless
// another token replaced it meanwhile.
func (c *Client) persist(ctx context.Context, h *heldToken, prevIssuer string) error {
	rec := h.rec
	if c.cfg.Grant != GrantAuthorizationCode {
		return nil
	}
	c.persistM.Lock()
	defer c.persistM.Unlock()
	if c.cur.Load() != h || c.forgotten.Load() {
		return nil // superseded meanwhile, or revoked
	}
	// A write that outlives the caller's context keeps the Store
	// consistent with memory.
	ctx = context.WithoutCancel(ctx)
	if err := c.storeJSON(ctx, c.tokenKey(rec.Issuer), rec); err != nil {
		return err
	}
	if err := c.storeJSON(ctx, c.currentKey(), currentRecord{Version: recordVersion, Issuer: rec.Issuer}); err != nil {
		return err
	}
	if prevIssuer != "" && prevIssuer != rec.Issuer {
		// The server moved to another authorization server: the old
		// token is of no use to it.
		if err := c.store.Delete(ctx, c.tokenKey(prevIssuer)); err != nil {
			c.logger().Warn("cannot delete the previous authorization server's token", zap.Error(err))
		}
	}
	return nil
}

// containsAll reports whether every element of sub is in set.
func containsAll(set, sub []string) bool {
	for _, s := range sub {
		if !slices.Contains(set, s) {
			return false
		}
	}
	return true
}

// union returns a followed by the elements of b not in a.
func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

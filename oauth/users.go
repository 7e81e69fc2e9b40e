package oauth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Users is the OAuth client of an upstream server that each of its users
// authorizes for themselves, with the authorization-code grant: one client
// registration (pre-registered, client ID metadata document or dynamic
// registration) serves every user, and each user has a Client of their
// own, whose token is stored, refreshed, refused and revoked apart from
// every other user's.
//
// A user is an opaque ID, such as the caller identity of a proxy. The
// Store never holds it: a user's keys are named by the HMAC-SHA-256 of the
// ID, keyed by a random key made once and kept in the Store beside the
// tokens (see the key layout in store.go), so that the digests stay the
// same across restarts and cannot be matched against guessed IDs without
// the key.
//
// It is safe for concurrent use.
type Users struct {
	cfg    Config
	su     *url.URL
	signer *assertionSigner
	reg    *registry
	log    atomic.Pointer[zap.Logger]

	keyMu sync.Mutex
	key   []byte // keys the digests; read from the Store, or made, on first use

	chMu      sync.Mutex
	challenge *bearerChallenge // the latest 401 challenge any user's client saw

	mu      sync.Mutex
	clients map[string]*Client  // by digest
	flows   map[string]userFlow // authorizations awaiting their callback, by state
}

// userFlow is an authorization a user started, awaiting its callback.
type userFlow struct {
	c       *Client
	user    string
	created time.Time
}

// MaxUserFlows bounds the authorizations of all users awaiting their
// callback; the oldest is dropped beyond it.
const MaxUserFlows = 1024

// Keys of Users below Config.StoreKey.
const (
	keyUsers   = "users"
	keyUserKey = "users/key"
)

// registry holds client registrations, by issuer: a Client's own, or those
// every user's Client of a Users shares.
type registry struct {
	mu      sync.Mutex
	clients map[string]*clientRecord
	regMu   sync.Mutex // serializes dynamic registration
}

func newRegistry() *registry { return &registry{clients: map[string]*clientRecord{}} }

// NewUsers validates cfg (see Validate), which must use the
// authorization-code grant, and returns the Users of the server. It does
// no I/O. cfg.OnChange is not used: each user's Client has its own
// Changed.
func NewUsers(cfg Config) (*Users, error) {
	cfg, su, signer, err := cfg.defaults()
	if err != nil {
		return nil, err
	}
	if cfg.Grant != GrantAuthorizationCode {
		return nil, errors.New("oauth: Users: each user authorizes with the authorization-code grant, not " + cfg.Grant)
	}
	cfg.OnChange = nil
	u := &Users{cfg: cfg, su: su, signer: signer, reg: newRegistry(),
		clients: map[string]*Client{}, flows: map[string]userFlow{}}
	u.log.Store(cfg.Logger)
	return u, nil
}

// SetLogger replaces the logger of the Users and of its users' clients;
// nil logs nothing.
func (u *Users) SetLogger(l *zap.Logger) {
	if l == nil {
		l = zap.NewNop()
	}
	u.log.Store(l)
	u.mu.Lock()
	defer u.mu.Unlock()
	for d, c := range u.clients {
		c.SetLogger(userLogger(l, d))
	}
}

// userLogger is the logger of the user whose digest is d: named by a
// prefix of the digest, never by the ID.
func userLogger(l *zap.Logger, d string) *zap.Logger {
	return l.With(zap.String("oauth_user", d[:12]))
}

// ClientMetadata returns the Client ID Metadata Document to serve at
// Config.ClientMetadataURL, or nil if that is not set.
func (u *Users) ClientMetadata() []byte { return clientMetadata(u.cfg) }

// keyRecord holds the key of the users' digests.
type keyRecord struct {
	Version int    `json:"v"`
	Key     []byte `json:"key"`
}

// locker is what a Store may offer to lock a name across the processes
// sharing it, as Caddy's storage does.
type locker interface {
	Lock(ctx context.Context, name string) error
	Unlock(ctx context.Context, name string) error
}

// digestKey returns the key of the users' digests: held, read from the
// Store, or made and stored (under the Store's lock, where it has one, so
// that two processes sharing it do not make two).
func (u *Users) digestKey(ctx context.Context) ([]byte, error) {
	u.keyMu.Lock()
	defer u.keyMu.Unlock()
	if u.key != nil {
		return u.key, nil
	}
	name := u.cfg.StoreKey + "/" + keyUserKey
	key, err := u.readKey(ctx, name)
	if err == nil && key == nil {
		if l, ok := u.cfg.Store.(locker); ok {
			if err := l.Lock(ctx, name); err != nil {
				return nil, fmt.Errorf("oauth: locking %s: %w", name, err)
			}
			defer func() { _ = l.Unlock(context.WithoutCancel(ctx), name) }()
			key, err = u.readKey(ctx, name)
		}
	}
	if err == nil && key == nil {
		key = make([]byte, 32)
		_, _ = rand.Read(key) // never fails (crypto/rand)
		err = storeJSON(context.WithoutCancel(ctx), u.cfg.Store, name, keyRecord{Version: recordVersion, Key: key})
		if err == nil {
			u.log.Load().Info("made the key of the OAuth users' digests")
		}
	}
	if err != nil {
		// Never a new key in place of one that cannot be read: every
		// user's token would be lost.
		return nil, err
	}
	u.key = key
	return key, nil
}

// readKey reads the key of the digests at name; nil if there is none.
func (u *Users) readKey(ctx context.Context, name string) ([]byte, error) {
	var rec keyRecord
	ok, err := loadJSON(ctx, u.cfg.Store, name, &rec)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, nil
	case rec.Version != recordVersion || len(rec.Key) < 32:
		return nil, fmt.Errorf("oauth: loading %s: not a valid key", name)
	}
	return rec.Key, nil
}

// Digest returns the digest that names user's keys in the Store: the
// HMAC-SHA-256 of the ID, in hex.
func (u *Users) Digest(ctx context.Context, user string) (string, error) {
	key, err := u.digestKey(ctx)
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(user))
	return hex.EncodeToString(m.Sum(nil)), nil
}

// Client returns user's Client: the one held, or a new one, which loads
// the user's stored token on first use. Its Transport and Authorized make
// it the Authorizer of the user's own session of the server. It fails
// only when the key of the digests cannot be read.
func (u *Users) Client(ctx context.Context, user string) (*Client, error) {
	d, err := u.Digest(ctx, user)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	c := u.clients[d]
	if c == nil {
		c = u.newClientLocked(d)
		u.clients[d] = c
	}
	return c, nil
}

// newClientLocked returns a new Client for the user whose digest is d.
func (u *Users) newClientLocked(d string) *Client {
	cfg := u.cfg
	cfg.Logger = userLogger(u.log.Load(), d)
	return newClient(cfg, u.su, u.signer, cfg.StoreKey+"/"+keyUsers+"/"+d, u.reg, u)
}

// Authorize starts user's authorization, as Client.Authorize does, and
// returns the URL to send their browser to. Callback completes it.
func (u *Users) Authorize(ctx context.Context, user string) (string, error) {
	c, err := u.Client(ctx, user)
	if err != nil {
		return "", err
	}
	to, err := c.Authorize(ctx)
	if err != nil {
		return "", err
	}
	au, err := url.Parse(to)
	if err != nil {
		return "", errors.New("oauth: the authorization URL is not a URL")
	}
	now := c.now()
	u.mu.Lock()
	defer u.mu.Unlock()
	for s, f := range u.flows {
		if now.Sub(f.created) >= PendingTTL {
			delete(u.flows, s)
		}
	}
	for len(u.flows) >= MaxUserFlows {
		var oldest string
		for s, f := range u.flows {
			if oldest == "" || f.created.Before(u.flows[oldest].created) {
				oldest = s
			}
		}
		delete(u.flows, oldest)
	}
	u.flows[au.Query().Get("state")] = userFlow{c: c, user: user, created: now}
	return to, nil
}

// Callback completes the authorization whose state the query of the
// callback request names, for the user who started it, and returns that
// user. An unknown or expired state is ErrUnknownState.
func (u *Users) Callback(ctx context.Context, query url.Values) (string, error) {
	state := query.Get("state")
	u.mu.Lock()
	f, ok := u.flows[state]
	delete(u.flows, state)
	u.mu.Unlock()
	if !ok || state == "" {
		u.log.Load().Info("OAuth callback with an unknown or expired state")
		return "", ErrUnknownState
	}
	return f.user, f.c.Callback(ctx, query)
}

// Revoke forgets user's authorization: their token, held and stored, and
// the authorizations they started; the Client held until then stores
// nothing more. It reports whether the user had a token. It does not ask
// the authorization server to revoke the token.
func (u *Users) Revoke(ctx context.Context, user string) (bool, error) {
	d, err := u.Digest(ctx, user)
	if err != nil {
		return false, err
	}
	// Held throughout, so that no new Client of the user loads the token
	// being deleted.
	u.mu.Lock()
	defer u.mu.Unlock()
	c := u.clients[d]
	delete(u.clients, d)
	for s, f := range u.flows {
		if f.c == c {
			delete(u.flows, s)
		}
	}
	if c == nil {
		c = u.newClientLocked(d)
	}
	return c.forget(ctx)
}

// Counts returns how many of the users held since the Users was made have
// a usable token, and how many have none (they called, but have not
// authorized, or their token was refused or revoked).
func (u *Users) Counts() (authorized, unauthorized int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, c := range u.clients {
		if c.Status().State == StateAuthorized {
			authorized++
		} else {
			unauthorized++
		}
	}
	return authorized, unauthorized
}

// noteChallenge records a 401 challenge a user's client saw, for users
// whose clients have seen none.
func (u *Users) noteChallenge(ch bearerChallenge) {
	u.chMu.Lock()
	defer u.chMu.Unlock()
	u.challenge = &ch
}

// latestChallenge returns a copy of the latest challenge noted, or nil.
func (u *Users) latestChallenge() *bearerChallenge {
	u.chMu.Lock()
	defer u.chMu.Unlock()
	if u.challenge == nil {
		return nil
	}
	ch := *u.challenge
	return &ch
}

// forget revokes the client's authorization: it drops the token held and
// the authorizations pending, deletes the stored token, and stores nothing
// from then on. It reports whether a token was held or stored.
func (c *Client) forget(ctx context.Context) (bool, error) {
	c.forgotten.Store(true)
	c.mu.Lock()
	had := c.cur.Load() != nil
	c.setCur(nil)
	clear(c.pending)
	c.stepUp = nil
	c.lastErr = "the authorization was revoked"
	notify := c.changedLocked()
	c.mu.Unlock()
	notify()

	c.persistM.Lock()
	defer c.persistM.Unlock()
	ctx = context.WithoutCancel(ctx)
	var cur currentRecord
	ok, err := c.loadJSON(ctx, c.currentKey(), &cur)
	if err != nil {
		return had, err
	}
	var errs []error
	if ok && cur.Issuer != "" {
		had = true
		errs = append(errs, c.store.Delete(ctx, c.tokenKey(cur.Issuer)))
	}
	errs = append(errs, c.store.Delete(ctx, c.currentKey()))
	c.logger().Info("OAuth authorization revoked", zap.Bool("had_token", had))
	return had, errors.Join(errs...)
}

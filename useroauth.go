package caddymcpo

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
	"github.com/caddy-mcpo/caddy-mcpo/oauth"
)

// userOAuth is the OAuth of a per-user server (isolation user with
// oauth): every caller authorizes the server for themselves, with their
// own account at the upstream, and their session's requests carry their
// own token (oauth.Users: one registration for all, a token per caller,
// kept in Caddy's storage under a digest of the caller's ID).
//
// A call from a caller without a token gets 401 with a link to the
// authorize page, carrying a ticket that names the caller; the page
// (bridge.UserConsent) asks the person to confirm, then sends them to the
// authorization server, and the callback stores their token. The tool
// listing is kept in storage, so that a restart has it before anyone
// calls; until one exists, the first caller who has authorized makes it.
type userOAuth struct {
	name      string
	users     *oauth.Users
	storage   *liveStorage
	authorize string        // the absolute URL of the authorize page, without ticket
	listing   *listingStore // the tool listing, kept in storage
	tickets   tickets
	us        *userSessions              // set by newUserSessions
	log       atomic.Pointer[zap.Logger] // with the server's name
}

// newUserOAuth returns the OAuth of the per-user server named name, from
// its resolved configuration, keeping its tokens in storage.
func newUserOAuth(name string, cfg oauth.Config, storage *liveStorage, log *zap.Logger) (*userOAuth, error) {
	log = log.With(zap.String("server", name))
	cfg.Store, cfg.Logger = storage, log
	users, err := oauth.NewUsers(cfg)
	if err != nil {
		return nil, err
	}
	au, err := url.Parse(cfg.RedirectURI)
	if err != nil {
		return nil, fmt.Errorf("oauth redirect_uri: %w", err)
	}
	// The redirect URI is the external URL of <server>/oauth/callback
	// (OAuth.config checks it): the authorize page is beside it.
	au.Path = strings.TrimSuffix(au.Path, "callback") + "authorize"
	au.RawPath, au.RawQuery, au.ForceQuery = "", "", false
	a := &userOAuth{
		name: name, users: users, storage: storage, authorize: au.String(),
		tickets: newTickets(),
	}
	a.listing = &listingStore{storage: storage, key: cfg.StoreKey + "/listing", log: a.logger}
	a.log.Store(log)
	return a, nil
}

// setLogger hands the OAuth over to the logger of a new configuration.
func (a *userOAuth) setLogger(log *zap.Logger) {
	log = log.With(zap.String("server", a.name))
	a.users.SetLogger(log)
	a.log.Store(log)
}

func (a *userOAuth) logger() *zap.Logger { return a.log.Load() }

// check returns the client of the caller id when it holds a token (which
// the caller's session then puts on its requests), and otherwise the 401
// that gives the caller their authorize link.
func (a *userOAuth) check(ctx context.Context, id bridge.Identity) (*oauth.Client, error) {
	c, err := a.users.Client(ctx, id.ID)
	if err != nil {
		return nil, &upstream.UnavailableError{Server: a.name, State: upstream.StateBackoff, RetryAfter: 5 * time.Second,
			Cause: fmt.Errorf("the callers' OAuth tokens cannot be read from storage: %w", err)}
	}
	if _, err := c.Token(ctx); err != nil {
		if errors.Is(err, oauth.ErrNeedsAuthorization) {
			return nil, a.refusal(id)
		}
		return nil, &upstream.UnavailableError{Server: a.name, State: upstream.StateBackoff, RetryAfter: 5 * time.Second, Cause: err}
	}
	return c, nil
}

// refusal is the 401 of a call from id while id has no usable token: the
// message, which an LLM relays to the person, and "authorize" give the
// link to the authorize page with a new ticket naming id.
func (a *userOAuth) refusal(id bridge.Identity) error {
	link := a.link(id)
	return &bridge.RefusedError{Status: http.StatusUnauthorized, Authorize: link, Message: fmt.Sprintf(
		"server %q acts with each user's own account, and yours is not linked to it yet (or no longer works): "+
			"open %s in a browser to link it (the link works for %d minutes), then call again",
		a.name, link, int(ticketTTL/time.Minute))}
}

// relink turns the answer of a call whose session came to need
// authorization (the caller's token was refused and could not be
// renewed, or the server asked for more scopes) into the caller's 401.
func (a *userOAuth) relink(err error, id bridge.Identity) error {
	var unavailable *upstream.UnavailableError
	if errors.As(err, &unavailable) && unavailable.State == upstream.StateNeedsAuth {
		return a.refusal(id)
	}
	return err
}

// link returns the authorize link of id: the page's absolute URL with a
// ticket naming id.
func (a *userOAuth) link(id bridge.Identity) string {
	return a.authorize + "?ticket=" + a.tickets.issue(id, time.Now())
}

// Authorize implements bridge.Consent: a per-user server has no
// authorization of its own to start (bridge.UserConsent's AuthorizeFor
// starts a caller's).
func (a *userOAuth) Authorize(context.Context) (string, error) {
	return "", fmt.Errorf("server %q is authorized by each caller for themselves, at the link a call gives them", a.name)
}

// AuthorizeFor implements bridge.UserConsent.
func (a *userOAuth) AuthorizeFor(ctx context.Context, id bridge.Identity) (string, error) {
	a.tickets.remember(id, time.Now())
	return a.users.Authorize(ctx, id.ID)
}

// Callback implements bridge.Consent: it stores the token of the caller
// who started the authorization, and when the server has no listing yet,
// has that caller's session list the tools.
func (a *userOAuth) Callback(ctx context.Context, query url.Values) error {
	user, err := a.users.Callback(ctx, query)
	if err != nil {
		return err
	}
	a.logger().Info("a caller authorized an MCP server", zap.String("session", sessionKey(user)[:12]))
	if a.us.listing.Load() != nil {
		return nil
	}
	id, ok := a.tickets.identity(user)
	if !ok {
		id = bridge.Identity{ID: user}
	}
	c, err := a.users.Client(ctx, user)
	if err == nil {
		err = a.us.listAs(id, c)
	}
	if err != nil {
		// The caller's next call lists them.
		a.logger().Warn("cannot list the tools as the caller who authorized", zap.Error(err))
	}
	return nil
}

// ClientMetadata implements bridge.Consent.
func (a *userOAuth) ClientMetadata() []byte { return a.users.ClientMetadata() }

// Ticket implements bridge.UserConsent.
func (a *userOAuth) Ticket(ticket string) (bridge.Identity, error) {
	return a.tickets.open(ticket, time.Now())
}

// NewTicket implements bridge.UserConsent.
func (a *userOAuth) NewTicket(id bridge.Identity) string { return a.tickets.issue(id, time.Now()) }

// Unlisted implements bridge.UserConsent: a caller without a token gets
// their link; one with a token lists the tools, unless that is under way.
func (a *userOAuth) Unlisted(ctx context.Context) error {
	id, err := a.us.caller(ctx)
	if err != nil {
		return err
	}
	c, err := a.check(ctx, id)
	if err != nil {
		return err
	}
	return a.us.listAs(id, c)
}

// ticketTTL is how long the ticket of an authorize link is valid.
const ticketTTL = 10 * time.Minute

// maxTicketHolders bounds the callers whose tickets are remembered.
const maxTicketHolders = 10000

// tickets makes and checks the tickets of authorize links. A ticket is
// the first 128 bits of an HMAC of the caller's ID, its expiry, and the
// first 128 bits of an HMAC of both, keyed by a secret of the process:
// it names the caller without holding the ID, and the caller is found
// again in memory, so a ticket works in the process that made it only,
// until it expires.
type tickets struct {
	secret []byte
	mu     sync.Mutex
	ids    map[[16]byte]ticketHolder // by the digest of the ID
}

// ticketHolder is the caller a ticket names, and until when their last
// ticket is valid.
type ticketHolder struct {
	id    bridge.Identity
	until time.Time
}

func newTickets() tickets {
	secret := make([]byte, 32)
	_, _ = rand.Read(secret) // never fails (crypto/rand)
	return tickets{secret: secret, ids: map[[16]byte]ticketHolder{}}
}

// mac is the HMAC of the parts, each after a domain label.
func (t *tickets) mac(label string, parts ...[]byte) [16]byte {
	m := hmac.New(sha256.New, t.secret)
	m.Write([]byte(label))
	for _, p := range parts {
		m.Write([]byte{0})
		m.Write(p)
	}
	var out [16]byte
	copy(out[:], m.Sum(nil))
	return out
}

// issue returns a new ticket naming id, valid for ticketTTL from now.
func (t *tickets) issue(id bridge.Identity, now time.Time) string {
	d := t.remember(id, now)
	var exp [8]byte
	binary.BigEndian.PutUint64(exp[:], uint64(now.Add(ticketTTL).Unix()))
	sum := t.mac("ticket", d[:], exp[:])
	b := make([]byte, 0, 40)
	b = append(append(append(b, d[:]...), exp[:]...), sum[:]...)
	return base64.RawURLEncoding.EncodeToString(b)
}

// remember keeps id, for tickets naming them to find, until ticketTTL from
// now; it returns the digest of their ID.
func (t *tickets) remember(id bridge.Identity, now time.Time) [16]byte {
	d := t.mac("id", []byte(id.ID))
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.ids[d]; !ok && len(t.ids) >= maxTicketHolders {
		for k, h := range t.ids {
			if now.After(h.until) {
				delete(t.ids, k)
			}
		}
		for k := range t.ids {
			if len(t.ids) < maxTicketHolders {
				break
			}
			delete(t.ids, k)
		}
	}
	t.ids[d] = ticketHolder{id: id, until: now.Add(ticketTTL)}
	return d
}

// identity returns the caller with the ID user, if remembered.
func (t *tickets) identity(user string) (bridge.Identity, bool) {
	d := t.mac("id", []byte(user))
	t.mu.Lock()
	defer t.mu.Unlock()
	h, ok := t.ids[d]
	return h.id, ok && h.id.ID == user
}

// Why a ticket is refused, in words for the person holding the link.
var (
	errTicketInvalid = errors.New("its ticket is not one this server made")
	errTicketExpired = fmt.Errorf("it has expired (a link works for %d minutes)", int(ticketTTL/time.Minute))
	errTicketUnknown = errors.New("this server no longer knows whom it was made for (Caddy restarted, or the link was made by another instance)")
)

// open returns the caller a ticket names.
func (t *tickets) open(ticket string, now time.Time) (bridge.Identity, error) {
	b, err := base64.RawURLEncoding.DecodeString(ticket)
	if err != nil || len(b) != 40 {
		return bridge.Identity{}, errTicketInvalid
	}
	var d, sum [16]byte
	copy(d[:], b[:16])
	copy(sum[:], b[24:])
	want := t.mac("ticket", b[:16], b[16:24])
	if !hmac.Equal(sum[:], want[:]) {
		return bridge.Identity{}, errTicketInvalid
	}
	if now.Unix() > int64(binary.BigEndian.Uint64(b[16:24])) {
		return bridge.Identity{}, errTicketExpired
	}
	t.mu.Lock()
	h, ok := t.ids[d]
	t.mu.Unlock()
	if !ok {
		return bridge.Identity{}, errTicketUnknown
	}
	return h.id, nil
}

// Interface guards.
var _ bridge.UserConsent = (*userOAuth)(nil)

package oauth

import (
	"errors"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// users returns the Users of the env's server.
func (e *env) users() *Users {
	e.t.Helper()
	u, err := NewUsers(e.config())
	if err != nil {
		e.t.Fatalf("NewUsers: %v", err)
	}
	return u
}

// userClient returns user's Client of u.
func (e *env) userClient(u *Users, user string) *Client {
	e.t.Helper()
	c, err := u.Client(ctx, user)
	if err != nil {
		e.t.Fatalf("Client(%q): %v", user, err)
	}
	return c
}

// authorizeUser runs user's authorization through u, as their browser
// would, and returns the user the callback completed it for.
func (e *env) authorizeUser(u *Users, user string) string {
	e.t.Helper()
	to, err := u.Authorize(ctx, user)
	if err != nil {
		e.t.Fatalf("Authorize(%q): %v", user, err)
	}
	q, err := followRedirect(ctx, to)
	if err != nil {
		e.t.Fatal(err)
	}
	got, err := u.Callback(ctx, q)
	if err != nil {
		e.t.Fatalf("Callback for %q: %v", user, err)
	}
	return got
}

// lastToken returns the access token of the last request the RS received.
func (e *env) lastToken() string {
	e.t.Helper()
	reqs := e.rs.requests()
	if len(reqs) == 0 {
		e.t.Fatal("no request reached the server")
	}
	return strings.TrimPrefix(reqs[len(reqs)-1].authz, "Bearer ")
}

func TestUsersEachAuthorizeAndSendTheirOwnToken(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{inChallenge: true})
	u := e.users()
	ana, bo := e.userClient(u, "ana"), e.userClient(u, "bo")
	if got := e.call(ana, ""); got != http.StatusUnauthorized {
		t.Fatalf("ana before authorizing: HTTP %d, want 401", got)
	}
	if err := ana.Authorized(ctx); !errors.Is(err, ErrNeedsAuthorization) {
		t.Fatalf("ana before authorizing: %v, want ErrNeedsAuthorization", err)
	}
	if got := e.authorizeUser(u, "ana"); got != "ana" {
		t.Fatalf("the callback completed the authorization of %q, want ana", got)
	}
	if got := e.call(ana, ""); got != http.StatusOK {
		t.Fatalf("ana after authorizing: HTTP %d", got)
	}
	anaToken := e.lastToken()
	if got := e.call(bo, ""); got != http.StatusUnauthorized {
		t.Fatalf("bo, who has not authorized, got HTTP %d with ana's authorization", got)
	}
	if bo.Status().State != StateNeedsAuth || ana.Status().State != StateAuthorized {
		t.Fatalf("states: ana %s, bo %s", ana.Status().State, bo.Status().State)
	}
	e.authorizeUser(u, "bo")
	if got := e.call(bo, ""); got != http.StatusOK {
		t.Fatalf("bo after authorizing: HTTP %d", got)
	}
	if boToken := e.lastToken(); boToken == anaToken || boToken == "" {
		t.Errorf("bo sent %q, ana %q: want a token of their own", boToken, anaToken)
	}
	if got := e.call(ana, ""); got != http.StatusOK || e.lastToken() != anaToken {
		t.Errorf("ana after bo authorized: HTTP %d with another token", got)
	}
	if n := len(e.as.regs()); n != 1 {
		t.Errorf("%d registrations, want one shared by both users", n)
	}
	if a, n := u.Counts(); a != 2 || n != 0 {
		t.Errorf("counts: %d authorized, %d not, want 2 and 0", a, n)
	}
}

func TestUsersRegisterOnceWhenAuthorizingTogether(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{inChallenge: true})
	u := e.users()
	var wg sync.WaitGroup
	for _, user := range []string{"a", "b", "c", "d"} {
		wg.Go(func() {
			if _, err := u.Authorize(ctx, user); err != nil {
				t.Errorf("Authorize(%q): %v", user, err)
			}
		})
	}
	wg.Wait()
	if n := len(e.as.regs()); n != 1 {
		t.Errorf("%d registrations, want 1", n)
	}
}

func TestUsersStoreNeitherIDsNorTokensInKeys(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{inChallenge: true})
	u := e.users()
	users := []string{"ana@example.com", "../bo", "admin"}
	for _, user := range users {
		e.authorizeUser(u, user)
	}
	digest := regexp.MustCompile(`^mcpo/oauth/test-server/users/[0-9a-f]{64}/(current|as-[0-9a-f]{32}/token)$`)
	tokens := 0
	for _, k := range e.store.Keys() {
		for _, user := range users {
			if strings.Contains(k, user) {
				t.Errorf("key %q names the user %q", k, user)
			}
		}
		switch {
		case k == "mcpo/oauth/test-server/users/key", strings.HasSuffix(k, "/client") && !strings.Contains(k, "/users/"):
		case digest.MatchString(k):
			if strings.HasSuffix(k, "/token") {
				tokens++
			}
		default:
			t.Errorf("unexpected key %q", k)
		}
		v, _ := e.store.Load(ctx, k)
		for _, user := range users {
			if strings.Contains(string(v), `"`+user+`"`) {
				t.Errorf("%s holds the user %q", k, user)
			}
		}
	}
	if tokens != len(users) {
		t.Errorf("%d tokens stored, want %d", tokens, len(users))
	}
}

func TestUsersTokensSurviveARestartAndNeedTheStoredKey(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{inChallenge: true})
	first := e.users()
	e.authorizeUser(first, "ana")
	d1, err := first.Digest(ctx, "ana")
	if err != nil {
		t.Fatal(err)
	}

	restarted := e.users()
	if d2, _ := restarted.Digest(ctx, "ana"); d2 != d1 {
		t.Fatalf("the digest of ana changed over a restart: %s, then %s", d1, d2)
	}
	if got := e.call(e.userClient(restarted, "ana"), ""); got != http.StatusOK {
		t.Fatalf("ana after a restart: HTTP %d, want her stored token used", got)
	}
	if n := len(e.as.tokenRequests(GrantAuthorizationCode)); n != 1 {
		t.Errorf("%d code exchanges, want 1", n)
	}

	// Another key gives other digests: the stored tokens cannot be found
	// by guessing IDs.
	other := &MemoryStore{}
	for _, k := range e.store.Keys() {
		if !strings.HasSuffix(k, "/users/key") {
			v, _ := e.store.Load(ctx, k)
			_ = other.Store(ctx, k, v)
		}
	}
	cfg := e.config()
	cfg.Store = other
	rekeyed, err := NewUsers(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d3, _ := rekeyed.Digest(ctx, "ana"); d3 == d1 {
		t.Error("a new key gives the same digest")
	}
}

func TestUsersRefuseToReplaceAKeyTheyCannotRead(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{inChallenge: true})
	_ = e.store.Store(ctx, "mcpo/oauth/test-server/users/key", []byte(`{"v":1,"key":"c2hvcnQ="}`))
	u := e.users()
	if _, err := u.Client(ctx, "ana"); err == nil || !strings.Contains(err.Error(), "not a valid key") {
		t.Fatalf("Client with an unreadable key: %v", err)
	}
	if v, _ := e.store.Load(ctx, "mcpo/oauth/test-server/users/key"); string(v) != `{"v":1,"key":"c2hvcnQ="}` {
		t.Error("the unreadable key was replaced")
	}
}

func TestUsersRevokeForgetsOneUserOnly(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{inChallenge: true})
	u := e.users()
	e.authorizeUser(u, "ana")
	e.authorizeUser(u, "bo")
	ana := e.userClient(u, "ana")
	old := ana.cur.Load().rec
	pending, err := u.Authorize(ctx, "ana") // a second authorization under way
	if err != nil {
		t.Fatal(err)
	}

	if had, err := u.Revoke(ctx, "ana"); err != nil || !had {
		t.Fatalf("Revoke(ana) = %v, %v; want true", had, err)
	}
	if ana.Status().State != StateNeedsAuth {
		t.Errorf("the revoked client is %s", ana.Status().State)
	}
	if got := e.call(e.userClient(u, "ana"), ""); got != http.StatusUnauthorized {
		t.Errorf("ana after her revocation: HTTP %d, want 401", got)
	}
	if got := e.call(e.userClient(u, "bo"), ""); got != http.StatusOK {
		t.Errorf("bo after ana's revocation: HTTP %d", got)
	}
	q, err := followRedirect(ctx, pending)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := u.Callback(ctx, q); !errors.Is(err, ErrUnknownState) {
		t.Errorf("an authorization started before the revocation completed: %v", err)
	}
	d, _ := u.Digest(ctx, "ana")
	stored := func() {
		t.Helper()
		for _, k := range e.store.Keys() {
			if strings.Contains(k, d) {
				t.Errorf("%s is still stored", k)
			}
		}
	}
	stored()
	if had, err := u.Revoke(ctx, "ana"); err != nil || had {
		t.Errorf("revoking again = %v, %v; want false", had, err)
	}

	// The revoked client, still held by a session that is ending, stores
	// nothing: a refresh that was under way does not bring a token back.
	if _, err := ana.install(ctx, old, false, nil); err != nil {
		t.Fatal(err)
	}
	stored()
	if got := e.call(e.userClient(e.users(), "ana"), ""); got != http.StatusUnauthorized {
		t.Errorf("ana after a restart: HTTP %d, want 401", got)
	}
}

func TestUsersRefusedRefreshDropsThatUserOnly(t *testing.T) {
	e := newEnv(t, asOptions{tokenTTL: 2 * time.Minute}, rsOptions{inChallenge: true})
	u := e.users()
	e.authorizeUser(u, "ana")
	e.authorizeUser(u, "bo")
	ana, bo := e.userClient(u, "ana"), e.userClient(u, "bo")
	anaRefresh := ana.cur.Load().rec.RefreshToken
	e.as.mu.Lock()
	delete(e.as.refresh, anaRefresh) // ana revoked the grant at the provider
	e.as.mu.Unlock()
	e.clock.Advance(3 * time.Minute)

	if got := e.call(ana, ""); got != http.StatusUnauthorized {
		t.Errorf("ana with a refused refresh: HTTP %d, want 401", got)
	}
	if err := ana.Authorized(ctx); !errors.Is(err, ErrNeedsAuthorization) {
		t.Errorf("ana: %v, want ErrNeedsAuthorization", err)
	}
	if got := e.call(bo, ""); got != http.StatusOK {
		t.Errorf("bo, whose refresh works: HTTP %d", got)
	}
	if a, n := u.Counts(); a != 1 || n != 1 {
		t.Errorf("counts: %d authorized, %d not, want 1 and 1", a, n)
	}
}

func TestNewUsersNeedsTheAuthorizationCodeGrant(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{})
	cfg := e.config()
	cfg.Grant, cfg.ClientID, cfg.ClientSecret = GrantClientCredentials, "caddy", "secret-1234"
	if _, err := NewUsers(cfg); err == nil || !strings.Contains(err.Error(), "authorization-code grant") {
		t.Errorf("NewUsers with client_credentials: %v", err)
	}
}

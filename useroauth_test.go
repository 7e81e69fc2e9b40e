package caddymcpo

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

func TestTickets_NameTheirCallerUntilTheyExpire(t *testing.T) {
	now := time.Date(2026, 11, 21, 20, 0, 0, 0, time.UTC)
	ana := bridge.Identity{ID: "u-ana", Email: "ana@example.com", Name: "Ana"}
	book := newTickets()
	ticket := book.issue(ana, now)
	raw, err := base64.RawURLEncoding.DecodeString(ticket)
	if err != nil || strings.Contains(string(raw), ana.ID) || strings.Contains(ticket, ana.ID) {
		t.Fatalf("ticket %q (%v) holds the ID in clear", ticket, err)
	}
	flipped := []byte(ticket)
	flipped[5] ^= 1
	forgotten := newTickets()
	forgotten.secret = book.secret
	for _, tc := range []struct {
		name   string
		book   *tickets
		ticket string
		at     time.Time
		want   error
	}{
		{name: "valid", book: &book, ticket: ticket, at: now.Add(ticketTTL - time.Second)},
		{name: "expired", book: &book, ticket: ticket, at: now.Add(ticketTTL + time.Second), want: errTicketExpired},
		{name: "altered", book: &book, ticket: string(flipped), at: now, want: errTicketInvalid},
		{name: "made by another process", book: func() *tickets { o := newTickets(); return &o }(), ticket: ticket, at: now, want: errTicketInvalid},
		{name: "naming a caller no longer known", book: &forgotten, ticket: ticket, at: now, want: errTicketUnknown},
		{name: "not a ticket", book: &book, ticket: "u-ana", at: now, want: errTicketInvalid},
		{name: "empty", book: &book, ticket: "", at: now, want: errTicketInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.book.open(tc.ticket, tc.at)
			if !errors.Is(err, tc.want) {
				t.Fatalf("open = %v, want %v", err, tc.want)
			}
			if err == nil && (got.ID != ana.ID || got.Email != ana.Email || got.Name != ana.Name) {
				t.Errorf("the ticket names %+v, want %+v", got, ana)
			}
		})
	}
	if id, ok := book.identity("u-ana"); !ok || id.Email != ana.Email {
		t.Errorf("identity(u-ana) = %+v, %v", id, ok)
	}
	if _, ok := book.identity("u-bo"); ok {
		t.Error("identity(u-bo) found a caller never remembered")
	}
}

func TestTickets_RememberBoundedCallers(t *testing.T) {
	book := newTickets()
	now := time.Now()
	for i := range maxTicketHolders + 50 {
		book.remember(bridge.Identity{ID: "u-" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + time.Duration(i).String()}, now)
	}
	if n := len(book.ids); n > maxTicketHolders {
		t.Errorf("%d callers remembered, want at most %d", n, maxTicketHolders)
	}
	last := bridge.Identity{ID: "u-last"}
	ticket := book.issue(last, now)
	if id, err := book.open(ticket, now); err != nil || id.ID != last.ID {
		t.Errorf("the newest ticket: %+v, %v", id, err)
	}
}

// leaseUserOAuth leases, from p, a per-user server named fx reaching the
// fixture's OAuth-protected server, keeping its tokens in storage.
func (p *testPool) leaseUserOAuth(srv *fixture.OAuthServer, storage certmagic.Storage) *lease {
	p.t.Helper()
	s := &ServerConfig{URL: srv.URL, Isolation: isolationUser, IdleTimeout: caddy.Duration(time.Hour),
		OAuth: &OAuth{RedirectURI: "https://caddy.example/tools/fx/oauth/callback?from=x"}}
	return p.leaseStored(s, storage, true)
}

// consentAs completes the authorization of the caller id through the
// consent of l, as the authorize page and the browser do.
func consentAs(t *testing.T, l *lease, id bridge.Identity) {
	t.Helper()
	uc := l.consent().(bridge.UserConsent)
	to, err := uc.AuthorizeFor(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noFollow.Get(to)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if err := uc.Callback(context.Background(), back.Query()); err != nil {
		t.Fatalf("callback: %v", err)
	}
}

func TestUserOAuth_CallersWithoutATokenGetTheirLinkAndTheListingIsKept(t *testing.T) {
	srv := fixture.NewOAuthServer(t)
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	p := newTestPool(t)
	l := p.leaseUserOAuth(srv, storage)
	ana := bridge.Identity{ID: "u-ana", Name: "Ana"}

	if st := l.Status(); st.State != upstream.StateNeedsAuth || st.LastError == "" {
		t.Fatalf("before anyone authorized: %+v", st)
	}
	uc := l.consent().(bridge.UserConsent)
	var refused *bridge.RefusedError
	if err := uc.Unlisted(bridge.WithIdentity(context.Background(), ana)); !errors.As(err, &refused) || refused.Status != http.StatusUnauthorized ||
		!strings.HasPrefix(refused.Authorize, "https://caddy.example/tools/fx/oauth/authorize?ticket=") ||
		!strings.Contains(refused.Message, refused.Authorize) {
		t.Fatalf("a call before any listing: %v", err)
	}
	ticket, _ := url.Parse(refused.Authorize)
	if id, err := uc.Ticket(ticket.Query().Get("ticket")); err != nil || id.ID != ana.ID || id.Name != ana.Name {
		t.Fatalf("the link's ticket names %+v (%v), want ana", id, err)
	}
	if err := l.entry.refresh(); err == nil {
		t.Error("a refresh without any caller's session succeeded")
	}

	consentAs(t, l, ana)
	deadline := time.Now().Add(testWait)
	for l.Tools() == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the tools were not listed as the caller who authorized: %+v", l.Status())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := l.CallTool(as(t, ana.ID), "echo", []byte(`{"message":"hi"}`)); err != nil {
		t.Fatalf("ana's call: %v", err)
	}
	if _, err := l.CallTool(as(t, "u-bo"), "echo", []byte(`{"message":"hi"}`)); !errors.As(err, &refused) || refused.Status != http.StatusUnauthorized {
		t.Fatalf("bo's call: %v, want 401", err)
	}

	// Another server over the same storage (a restart) has the listing
	// before anyone calls, and ana's token. The listing is stored in the
	// background.
	for !storage.Exists(context.Background(), l.entry.users.auth.listing.key) {
		if time.Now().After(deadline) {
			t.Fatal("the listing was not stored")
		}
		time.Sleep(10 * time.Millisecond)
	}
	again := newTestPool(t).leaseUserOAuth(srv, storage)
	if again.Tools() == nil || len(again.Tools().Tools) != len(l.Tools().Tools) || again.Status().State != upstream.StateReady {
		t.Fatalf("after a restart: %+v", again.Status())
	}
	if _, err := again.CallTool(as(t, ana.ID), "echo", []byte(`{"message":"hi"}`)); err != nil {
		t.Errorf("ana's call after a restart: %v", err)
	}

	had, err := again.entry.users.revoke(context.Background(), ana.ID)
	if err != nil || !had {
		t.Fatalf("revoke = %v, %v", had, err)
	}
	if _, err := again.CallTool(as(t, ana.ID), "echo", []byte(`{"message":"hi"}`)); !errors.As(err, &refused) {
		t.Errorf("ana's call after her revocation: %v, want 401", err)
	}
}

func TestUserOAuth_RelinkTurnsANeedsAuthSessionIntoTheCallersLink(t *testing.T) {
	a := &userOAuth{name: "fx", authorize: "https://caddy.example/fx/oauth/authorize", tickets: newTickets()}
	id := bridge.Identity{ID: "u-ana"}
	var refused *bridge.RefusedError
	err := a.relink(&upstream.UnavailableError{Server: "fx", State: upstream.StateNeedsAuth}, id)
	if !errors.As(err, &refused) || refused.Status != http.StatusUnauthorized || !strings.HasPrefix(refused.Authorize, a.authorize+"?ticket=") {
		t.Errorf("a session that needs authorization: %v", err)
	}
	other := &upstream.UnavailableError{Server: "fx", State: upstream.StateFailed}
	if err := a.relink(other, id); err != other {
		t.Errorf("a failed session: %v, want it unchanged", err)
	}
	if err := a.relink(nil, id); err != nil {
		t.Errorf("no error: %v", err)
	}
}

func TestUserOAuth_ASessionStartedWithARevokedClientGivesWayToTheNewAuthorization(t *testing.T) {
	srv := fixture.NewOAuthServer(t)
	l := newTestPool(t).leaseUserOAuth(srv, &certmagic.FileStorage{Path: t.TempDir()})
	ana := bridge.Identity{ID: "u-ana"}
	us := l.entry.users
	consentAs(t, l, ana)
	if _, err := l.CallTool(as(t, ana.ID), "echo", []byte(`{"message":"hi"}`)); err != nil {
		t.Fatalf("ana's call: %v", err)
	}

	// A call that took ana's client just before her revocation starts its
	// session just after it.
	stale, err := us.auth.users.Client(context.Background(), ana.ID)
	if err != nil {
		t.Fatal(err)
	}
	if had, err := us.revoke(context.Background(), ana.ID); err != nil || !had {
		t.Fatalf("revoke = %v, %v", had, err)
	}
	s, err := us.acquire(as(t, ana.ID), ana, stale, time.Now().Add(testWait))
	if err != nil {
		t.Fatal(err)
	}
	us.release(s)

	consentAs(t, l, ana)
	if _, err := l.CallTool(as(t, ana.ID), "echo", []byte(`{"message":"hi"}`)); err != nil {
		t.Errorf("ana's call after authorizing again: %v", err)
	}
}

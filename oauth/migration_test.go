package oauth

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

// TestIssuerMigration covers auth/authorization-server-migration: when the
// server's metadata names a new authorization server, the client registers
// with it and never presents the old one's credentials there.
func TestIssuerMigration(t *testing.T) {
	e := newEnv(t, asOptions{noRefresh: true}, rsOptions{inChallenge: true, challengeScope: []string{"mcp:basic"}})
	c := e.client(nil)
	e.connect(c)
	as1 := e.as
	as1Client := lastAuthorizeQuery(t, as1).Get("client_id")
	as1Secret := as1.secretOf(as1Client)

	as2 := e.addAS("as2", asOptions{})
	e.rs.setAuthServers(as2.issuer)
	tok, _ := c.Token(ctx)
	e.rs.revoke(tok) // "authorization server has changed"
	if got := e.call(c, ""); got != http.StatusUnauthorized {
		t.Fatalf("HTTP %d, want 401", got)
	}
	e.mustAuthorize(c)
	if got := e.call(c, ""); got != 200 {
		t.Fatalf("after migrating: HTTP %d", got)
	}

	if n := len(as2.regs()); n != 1 {
		t.Errorf("%d registrations with the new authorization server, want 1", n)
	}
	for _, q := range as2.authRequests() {
		if q.Get("client_id") == as1Client {
			t.Errorf("the old client_id was sent to the new authorization server")
		}
	}
	for _, tr := range as2.tokenRequests("") {
		if strings.Contains(tr.form.Encode()+tr.authz, as1Client) || strings.Contains(tr.form.Encode(), as1Secret) {
			t.Errorf("old credentials at the new token endpoint: %v %q", tr.form, tr.authz)
		}
	}
	if st := c.Status(); st.Issuer != as2.issuer || st.State != StateAuthorized {
		t.Errorf("status %+v, want authorized by the new issuer", st)
	}

	// The store holds both registrations, each under its issuer, and only
	// the new token.
	keys := e.store.Keys()
	want := []string{
		c.clientKey(as1.issuer), c.clientKey(as2.issuer), c.tokenKey(as2.issuer), c.currentKey(),
	}
	for _, k := range want {
		if !containsAll(keys, []string{k}) {
			t.Errorf("key %s missing from %q", k, keys)
		}
	}
	if containsAll(keys, []string{c.tokenKey(as1.issuer)}) {
		t.Errorf("the old authorization server's token is still stored")
	}

	// A restart finds the new issuer's token.
	again := e.client(nil)
	if err := again.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if st := again.Status(); st.Issuer != as2.issuer {
		t.Errorf("after restart: issuer %q, want %q", st.Issuer, as2.issuer)
	}
}

func TestPreRegisteredClientBoundToItsIssuer(t *testing.T) {
	e := newEnv(t, asOptions{preClients: map[string]*asClient{"pre": {method: AuthMethodNone}}}, rsOptions{inChallenge: true})
	as1 := e.as
	c := e.client(func(c *Config) { c.ClientID = "pre"; c.Issuer = as1.issuer })
	e.connect(c)

	as2 := e.addAS("as2", asOptions{preClients: map[string]*asClient{"pre": {method: AuthMethodNone}}})
	e.rs.setAuthServers(as2.issuer)
	_, err := c.Authorize(ctx)
	if !errors.Is(err, errPreRegisteredElse) {
		t.Fatalf("error %v, want the pre-registered client refused at another issuer", err)
	}
	if n := len(as2.authRequests()) + len(as2.tokenRequests("")); n != 0 {
		t.Errorf("%d requests reached the new authorization server", n)
	}
}

package oauth

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var ctx = context.Background()

func TestDynamicRegistrationBody(t *testing.T) {
	tests := []struct {
		name        string
		redirect    string
		authMethods []string
		wantApp     string
		wantMethod  string
	}{
		{"loopback IP redirect is native", "http://127.0.0.1:8080/cb", nil, "native", AuthMethodClientSecretBasic},
		{"localhost redirect is native", "http://localhost:2019/cb", []string{"none"}, "native", AuthMethodNone},
		{"IPv6 loopback redirect is native", "http://[::1]:8080/cb", []string{"client_secret_post", "none"}, "native", AuthMethodClientSecretPost},
		{"public https redirect is web", "https://proxy.example.com/mcpo/srv/oauth/callback", []string{"none", "client_secret_basic"}, "web", AuthMethodClientSecretBasic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, asOptions{authMethods: tt.authMethods}, rsOptions{inChallenge: true})
			c := e.client(func(c *Config) { c.RedirectURI = tt.redirect; c.ClientName = "caddy-mcpo test" })
			e.call(c, "")
			if _, err := c.Authorize(ctx); err != nil {
				t.Fatal(err)
			}
			regs := e.as.regs()
			if len(regs) != 1 {
				t.Fatalf("%d registrations, want 1", len(regs))
			}
			want := map[string]any{
				"client_name":                "caddy-mcpo test",
				"redirect_uris":              []any{tt.redirect},
				"grant_types":                []any{"authorization_code", "refresh_token"},
				"response_types":             []any{"code"},
				"token_endpoint_auth_method": tt.wantMethod,
				"application_type":           tt.wantApp,
			}
			if !reflect.DeepEqual(regs[0], want) {
				t.Errorf("registration body\n got  %v\n want %v", regs[0], want)
			}
		})
	}
}

func TestRegistrationPersistedAndReused(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{inChallenge: true})
	first := e.client(nil)
	e.connect(first)

	// A restarted proxy: a new Client on the same Store and key.
	second := e.client(nil)
	if err := second.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if st := second.Status(); st.State != StateAuthorized || st.Issuer != e.as.issuer {
		t.Errorf("after restart: status %+v, want authorized without new consent", st)
	}
	if got := e.call(second, ""); got != 200 {
		t.Errorf("after restart: HTTP %d, want 200 with the stored token", got)
	}
	// Authorizing again reuses the registration.
	e.mustAuthorize(second)
	if n := len(e.as.regs()); n != 1 {
		t.Errorf("%d registrations, want 1 (the stored one reused)", n)
	}
	reqs := e.as.authRequests()
	if len(reqs) != 2 || reqs[0].Get("client_id") != reqs[1].Get("client_id") {
		t.Errorf("authorization requests used client IDs %q and %q, want the same",
			reqs[0].Get("client_id"), reqs[len(reqs)-1].Get("client_id"))
	}

	// Another redirect URI needs another registration.
	third := e.client(func(c *Config) { c.RedirectURI = "http://127.0.0.1:9999/other" })
	e.mustAuthorize(third)
	if n := len(e.as.regs()); n != 2 {
		t.Errorf("%d registrations, want 2 after the redirect URI changed", n)
	}
}

func TestClientIDMetadataDocument(t *testing.T) {
	const cimdURL = "https://proxy.example.com/mcpo/srv/oauth/client.json"
	t.Run("used when the authorization server supports it", func(t *testing.T) {
		e := newEnv(t, asOptions{cimd: true}, rsOptions{inChallenge: true})
		c := e.client(func(c *Config) { c.ClientMetadataURL = cimdURL })
		e.connect(c)
		if n := len(e.as.regs()); n != 0 {
			t.Errorf("%d dynamic registrations, want none", n)
		}
		if got := lastAuthorizeQuery(t, e.as).Get("client_id"); got != cimdURL {
			t.Errorf("client_id = %q, want the metadata document URL", got)
		}
		tr := e.as.tokenRequests("authorization_code")[0]
		if tr.form.Get("client_id") != cimdURL || tr.form.Has("client_secret") || tr.authz != "" {
			t.Errorf("token request %v (Authorization %q): want client_id only", tr.form, tr.authz)
		}
	})
	t.Run("dynamic registration when it does not", func(t *testing.T) {
		e := newEnv(t, asOptions{}, rsOptions{inChallenge: true})
		c := e.client(func(c *Config) { c.ClientMetadataURL = cimdURL })
		e.connect(c)
		if n := len(e.as.regs()); n != 1 {
			t.Errorf("%d dynamic registrations, want 1", n)
		}
	})
	t.Run("the document", func(t *testing.T) {
		e := newEnv(t, asOptions{}, rsOptions{})
		c := e.client(func(c *Config) { c.ClientMetadataURL = cimdURL; c.ClientName = "Proxy" })
		var doc map[string]any
		if err := json.Unmarshal(c.ClientMetadata(), &doc); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{
			"client_id": cimdURL, "client_name": "Proxy", "redirect_uris": []any{testRedirect},
			"grant_types": []any{"authorization_code", "refresh_token"}, "response_types": []any{"code"},
			"token_endpoint_auth_method": "none", "application_type": "native",
		}
		if !reflect.DeepEqual(doc, want) {
			t.Errorf("document\n got  %v\n want %v", doc, want)
		}
		if e.client(nil).ClientMetadata() != nil {
			t.Error("a document without ClientMetadataURL")
		}
	})
}

func TestPreRegisteredClient(t *testing.T) {
	const id, secret = "pre-id", "pre-secret"
	e := newEnv(t, asOptions{
		noRegistration: true,
		cimd:           true,
		preClients:     map[string]*asClient{id: {secret: secret, method: AuthMethodClientSecretBasic}},
	}, rsOptions{inChallenge: true})
	c := e.client(func(c *Config) {
		c.ClientID, c.ClientSecret = id, secret
		c.ClientMetadataURL = "https://proxy.example.com/cimd.json" // pre-registered wins
	})
	e.connect(c)
	if got := lastAuthorizeQuery(t, e.as).Get("client_id"); got != id {
		t.Errorf("client_id = %q, want the pre-registered one", got)
	}
	if n := e.log.count("/register"); n != 0 {
		t.Errorf("%d registration requests, want none", n)
	}
}

// TestTokenEndpointAuthMethods checks each client authentication method at
// the token endpoint, for the code exchange and the refresh.
func TestTokenEndpointAuthMethods(t *testing.T) {
	// A secret and ID that change under form-urlencoding (RFC 6749 §2.3.1).
	const preID, preSecret = "id:with spaces", "s3cr:t/+é%"
	tests := []struct {
		name   string
		method string
		pre    bool
		check  func(t *testing.T, tr tokenReq, id, secret string)
	}{
		{name: "client_secret_basic (registered)", method: AuthMethodClientSecretBasic, check: checkBasic},
		{name: "client_secret_basic (pre-registered, form-encoded before base64)", method: AuthMethodClientSecretBasic, pre: true, check: checkBasic},
		{name: "client_secret_post", method: AuthMethodClientSecretPost, check: func(t *testing.T, tr tokenReq, id, secret string) {
			if tr.authz != "" || tr.form.Get("client_id") != id || tr.form.Get("client_secret") != secret {
				t.Errorf("form %v, Authorization %q: want client_id and client_secret in the body only", tr.form, tr.authz)
			}
		}},
		{name: "none", method: AuthMethodNone, check: func(t *testing.T, tr tokenReq, id, _ string) {
			if tr.authz != "" || tr.form.Get("client_id") != id || tr.form.Has("client_secret") {
				t.Errorf("form %v, Authorization %q: want client_id only", tr.form, tr.authz)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			aso := asOptions{authMethods: []string{tt.method}, tokenTTL: 5 * time.Minute}
			if tt.pre {
				aso.preClients = map[string]*asClient{preID: {secret: preSecret, method: tt.method}}
			}
			e := newEnv(t, aso, rsOptions{inChallenge: true})
			c := e.client(func(c *Config) {
				if tt.pre {
					c.ClientID, c.ClientSecret = preID, preSecret
				}
			})
			e.connect(c)
			e.clock.Advance(4*time.Minute + 30*time.Second) // within a minute of expiry
			if got := e.call(c, ""); got != 200 {
				t.Fatalf("HTTP %d after refresh", got)
			}
			id, secret := preID, preSecret
			if !tt.pre {
				id = lastAuthorizeQuery(t, e.as).Get("client_id")
				secret = e.as.secretOf(id)
			}
			reqs := e.as.tokenRequests("")
			if len(reqs) != 2 || reqs[1].form.Get("grant_type") != "refresh_token" {
				t.Fatalf("token requests %v, want a code exchange and a refresh", reqs)
			}
			for _, tr := range reqs {
				tt.check(t, tr, id, secret)
			}
		})
	}
}

func checkBasic(t *testing.T, tr tokenReq, id, secret string) {
	t.Helper()
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
	if tr.authz != want || tr.form.Has("client_secret") {
		t.Errorf("Authorization %q, form %v: want %q and no secret in the body", tr.authz, tr.form, want)
	}
}

func TestScopeSelection(t *testing.T) {
	tests := []struct {
		name      string
		cfg       []string
		challenge []string
		prm       []string
		asScopes  []string
		want      string // the scope parameter; "" means omitted
	}{
		{name: "configured scopes win", cfg: []string{"x"}, challenge: []string{"mcp:basic"}, prm: []string{"a", "b"}, want: "x"},
		{name: "challenge scope (scope-from-www-authenticate)", challenge: []string{"mcp:basic"}, prm: []string{"a", "b"}, want: "mcp:basic"},
		{name: "all PRM scopes_supported (scope-from-scopes-supported)", prm: []string{"mcp:basic", "mcp:read", "mcp:write"}, want: "mcp:basic mcp:read mcp:write"},
		{name: "omitted when undefined (scope-omitted-when-undefined)", want: ""},
		{name: "offline_access added when the AS lists it (offline-access-scope)", prm: []string{"mcp:basic"}, asScopes: []string{"mcp:basic", "offline_access"}, want: "mcp:basic offline_access"},
		{name: "offline_access not added when the AS does not list it (offline-access-not-supported)", prm: []string{"mcp:basic", "mcp:read"}, asScopes: []string{"mcp:basic", "mcp:read"}, want: "mcp:basic mcp:read"},
		{name: "offline_access not repeated", challenge: []string{"offline_access", "a"}, asScopes: []string{"a", "offline_access"}, want: "offline_access a"},
		{name: "offline_access alone would narrow the grant: omitted", asScopes: []string{"offline_access"}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, asOptions{scopes: tt.asScopes}, rsOptions{inChallenge: true, challengeScope: tt.challenge, prmScopes: tt.prm})
			c := e.client(func(c *Config) { c.Scopes = tt.cfg })
			e.connect(c)
			q := lastAuthorizeQuery(t, e.as)
			if got := q.Get("scope"); got != tt.want || (tt.want == "" && q.Has("scope")) {
				t.Errorf("scope = %q (present %v), want %q", got, q.Has("scope"), tt.want)
			}
			if got, want := c.Status().Scopes, strings.Fields(tt.want); !slices.Equal(got, want) && len(want) > 0 {
				t.Errorf("Status.Scopes = %q, want %q", got, want)
			}
		})
	}
}

// TestIssParameter covers RFC 9207 (the auth/iss-* scenarios).
func TestIssParameter(t *testing.T) {
	tests := []struct {
		name       string
		advertised bool
		mode       string
		deny       bool
		wantErr    error
	}{
		{name: "advertised and equal (iss-supported)", advertised: true, mode: "correct"},
		{name: "not advertised and absent (iss-not-advertised)", mode: "omit"},
		{name: "not advertised, present and equal", mode: "correct"},
		{name: "advertised but missing (iss-supported-missing)", advertised: true, mode: "omit", wantErr: errIssMissing},
		{name: "advertised and wrong (iss-wrong-issuer)", advertised: true, mode: "wrong", wantErr: errIssMismatch},
		{name: "not advertised and wrong (iss-unexpected)", mode: "wrong", wantErr: errIssMismatch},
		{name: "normalized variant (iss-normalized)", advertised: true, mode: "normalized", wantErr: errIssMismatch},
		{name: "error response with a wrong iss is not acted on", advertised: true, mode: "wrong", deny: true, wantErr: errIssMismatch},
		{name: "error response with a missing iss is not acted on", advertised: true, mode: "omit", deny: true, wantErr: errIssMissing},
		{name: "error response with the right iss", advertised: true, mode: "correct", deny: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, asOptions{issSupported: tt.advertised, issMode: tt.mode}, rsOptions{inChallenge: true})
			e.as.denyNext = tt.deny
			c := e.client(nil)
			e.call(c, "")
			err := authorize(ctx, c)
			switch {
			case tt.deny && tt.wantErr == nil:
				var er *ErrorResponse
				if !errors.As(err, &er) || er.Code != "access_denied" || er.Endpoint != "authorization" {
					t.Fatalf("error %v, want the authorization server's access_denied", err)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v, want %v", err, tt.wantErr)
				}
				var er *ErrorResponse
				if errors.As(err, &er) {
					t.Errorf("acted on the error response: %v", err)
				}
			default:
				if err != nil {
					t.Fatalf("error %v, want success", err)
				}
			}
			tokenReqs := len(e.as.tokenRequests(""))
			if ok := err == nil; ok != (tokenReqs == 1) {
				t.Errorf("%d token requests after %v", tokenReqs, err)
			}
			if err != nil {
				if st := c.Status(); st.State != StateNeedsAuth || st.LastError == "" {
					t.Errorf("status %+v, want needs_auth with the error", st)
				}
			}
		})
	}
}

func TestCallbackState(t *testing.T) {
	newFlow := func(t *testing.T) (*env, *Client, url.Values) {
		e := newEnv(t, asOptions{}, rsOptions{inChallenge: true})
		c := e.client(nil)
		e.call(c, "")
		u, err := c.Authorize(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st := c.Status(); st.State != StatePending {
			t.Errorf("after Authorize: state %s, want pending", st.State)
		}
		q, err := followRedirect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		return e, c, q
	}
	t.Run("unknown state", func(t *testing.T) {
		e, c, q := newFlow(t)
		q.Set("state", "forged")
		if err := c.Callback(ctx, q); !errors.Is(err, ErrUnknownState) {
			t.Errorf("error %v, want ErrUnknownState", err)
		}
		if n := len(e.as.tokenRequests("")); n != 0 {
			t.Errorf("%d token requests", n)
		}
	})
	t.Run("missing state", func(t *testing.T) {
		_, c, q := newFlow(t)
		q.Del("state")
		if err := c.Callback(ctx, q); !errors.Is(err, ErrUnknownState) {
			t.Errorf("error %v, want ErrUnknownState", err)
		}
	})
	t.Run("state used twice", func(t *testing.T) {
		_, c, q := newFlow(t)
		if err := c.Callback(ctx, q); err != nil {
			t.Fatal(err)
		}
		if err := c.Callback(ctx, q); !errors.Is(err, ErrUnknownState) {
			t.Errorf("replayed callback: error %v, want ErrUnknownState", err)
		}
	})
	t.Run("expired state", func(t *testing.T) {
		e, c, q := newFlow(t)
		e.clock.Advance(PendingTTL)
		if st := c.Status(); st.State != StateNeedsAuth {
			t.Errorf("after expiry: state %s, want needs_auth", st.State)
		}
		if err := c.Callback(ctx, q); !errors.Is(err, ErrUnknownState) {
			t.Errorf("error %v, want ErrUnknownState", err)
		}
	})
	t.Run("pending flows are bounded, the oldest dropped", func(t *testing.T) {
		e, c, first := newFlow(t)
		var last url.Values
		for i := range MaxPending {
			e.clock.Advance(time.Second)
			u, err := c.Authorize(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if i == MaxPending-1 {
				last, _ = followRedirect(ctx, u)
			}
		}
		c.mu.Lock()
		n := len(c.pending)
		c.mu.Unlock()
		if n != MaxPending {
			t.Errorf("%d pending flows, want %d", n, MaxPending)
		}
		if err := c.Callback(ctx, first); !errors.Is(err, ErrUnknownState) {
			t.Errorf("oldest flow: error %v, want ErrUnknownState", err)
		}
		if err := c.Callback(ctx, last); err != nil {
			t.Errorf("newest flow: %v", err)
		}
	})
	t.Run("a failed exchange leaves the client needing authorization", func(t *testing.T) {
		e, c, q := newFlow(t)
		q.Set("code", "not-the-code")
		err := c.Callback(ctx, q)
		var er *ErrorResponse
		if !errors.As(err, &er) || er.Code != "invalid_grant" || er.Endpoint != "token" {
			t.Errorf("error %v, want the token endpoint's invalid_grant", err)
		}
		if st := c.Status(); st.State != StateNeedsAuth {
			t.Errorf("state %s, want needs_auth", st.State)
		}
		_ = e
	})
}

func TestPKCE(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{inChallenge: true})
	c := e.client(nil)
	e.connect(c) // the test AS checks the verifier against the challenge
	q := lastAuthorizeQuery(t, e.as)
	if q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 {
		t.Errorf("code_challenge %q method %q", q.Get("code_challenge"), q.Get("code_challenge_method"))
	}
	v := e.as.tokenRequests("authorization_code")[0].form.Get("code_verifier")
	if len(v) < 43 || len(v) > 128 {
		t.Errorf("code_verifier of %d characters", len(v))
	}
	if q.Get("state") == "" || q.Get("response_type") != "code" || q.Get("redirect_uri") != testRedirect {
		t.Errorf("authorization request %v", q)
	}
}

func TestFollowRedirect(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{})
	e.rs.host.mux.HandleFunc("GET /relative", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", "/cb?code=c&state=s")
		w.WriteHeader(302)
	})
	q, err := followRedirect(ctx, e.rs.host.url()+"/relative")
	if err != nil || q.Get("code") != "c" || q.Get("state") != "s" {
		t.Errorf("relative Location: %v, %v", q, err)
	}
	_, err = followRedirect(ctx, e.rs.host.url()+"/.well-known/oauth-protected-resource/mcp?code=secret-code")
	if err == nil || strings.Contains(err.Error(), "secret-code") {
		t.Errorf("not a redirect: error %v, want one without the query", err)
	}
	_, err = followRedirect(ctx, "http://127.0.0.1:1/authorize?code=secret-code")
	if err == nil || strings.Contains(err.Error(), "secret-code") {
		t.Errorf("unreachable: error %v, want one without the query", err)
	}
}

func TestAuthorizeRefusedForClientCredentials(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{})
	c := e.client(func(c *Config) {
		c.Grant, c.ClientID, c.ClientSecret = GrantClientCredentials, "id", "secret"
	})
	if _, err := c.Authorize(ctx); err == nil {
		t.Error("Authorize with the client_credentials grant succeeded")
	}
}

func TestChangedSignalsCompletion(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{inChallenge: true})
	var seen []State
	c := e.client(func(c *Config) { c.OnChange = func(s Status) { seen = append(seen, s.State) } })
	e.call(c, "")
	ch := c.Changed()
	e.mustAuthorize(c)
	select {
	case <-ch:
	default:
		t.Error("Changed was not closed by the authorization")
	}
	if !slices.Contains(seen, StatePending) || seen[len(seen)-1] != StateAuthorized {
		t.Errorf("OnChange saw %v, want pending then authorized", seen)
	}
}

// TestForgottenRegistrationRegistersAgain: when the token endpoint no
// longer knows the registered client (invalid_client), the registration is
// dropped and the next authorization registers again.
func TestForgottenRegistrationRegistersAgain(t *testing.T) {
	e := newEnv(t, asOptions{tokenTTL: 10 * time.Minute}, rsOptions{inChallenge: true})
	c := e.client(nil)
	e.connect(c)
	id := lastAuthorizeQuery(t, e.as).Get("client_id")
	e.as.mu.Lock()
	delete(e.as.clients, id) // the AS purged the registration
	e.as.mu.Unlock()
	e.clock.Advance(9*time.Minute + 30*time.Second)
	e.call(c, "") // the refresh fails with invalid_client
	if st := c.Status(); st.State != StateNeedsAuth || !strings.Contains(st.LastError, "invalid_client") {
		t.Fatalf("status %+v", st)
	}
	for _, k := range e.store.Keys() {
		if strings.HasSuffix(k, "/client") {
			t.Errorf("the rejected registration is still stored at %s", k)
		}
	}
	e.mustAuthorize(c)
	if n := len(e.as.regs()); n != 2 {
		t.Errorf("%d registrations, want 2", n)
	}
	if got := e.call(c, ""); got != 200 {
		t.Errorf("HTTP %d", got)
	}
}

func TestRegistrationRefused(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{inChallenge: true})
	e.as.host.mux.HandleFunc("POST /refuse/register", func(w http.ResponseWriter, r *http.Request) {
		writeOAuthError(w, http.StatusBadRequest, "invalid_redirect_uri", "not allowed")
	})
	e.as.opt.endpointPrefix = "/refuse" // the metadata now names /refuse/register
	c := e.client(nil)
	e.call(c, "")
	_, err := c.Authorize(ctx)
	var er *ErrorResponse
	if !errors.As(err, &er) || er.Endpoint != "registration" || er.Code != "invalid_redirect_uri" {
		t.Errorf("error %v, want the registration endpoint's error", err)
	}
}

func TestAdvertisedMetadataUnreachable(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{prm: "custom", inChallenge: true})
	c := e.client(nil)
	e.call(c, "")                             // the challenge names /custom/prm.json
	e.rs.host.down.Store(http.StatusNotFound) // which is gone, as is everything else
	_, err := c.Authorize(ctx)
	if err == nil || !strings.Contains(err.Error(), "/custom/prm.json") {
		t.Errorf("error %v, want one naming the advertised metadata URL", err)
	}
	if n := e.log.count("rs GET /.well-known/oauth-authorization-server"); n != 0 {
		t.Errorf("fell back to 2025-03-26 discovery although the server advertised metadata")
	}
}

func TestTokenResponseParsing(t *testing.T) {
	for body, want := range map[string]int64{
		`{"access_token":"a","token_type":"bearer","expires_in":3600}`:  3600,
		`{"access_token":"a","token_type":"Bearer","expires_in":"120"}`: 120,
		`{"access_token":"a","expires_in":null}`:                        0,
		`{"access_token":"a","token_type":"Bearer","expires_in":59.9}`:  59,
		`{"access_token":"a","token_type":"Bearer"}`:                    0,
	} {
		var tr tokenResponse
		if err := json.Unmarshal([]byte(body), &tr); err != nil || int64(tr.ExpiresIn) != want {
			t.Errorf("%s: expires_in %d, %v; want %d", body, tr.ExpiresIn, err, want)
		}
	}
	var tr tokenResponse
	if err := json.Unmarshal([]byte(`{"expires_in":"soon"}`), &tr); err == nil {
		t.Error("a non-numeric expires_in was accepted")
	}
}

func TestNonBearerTokenRefused(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{inChallenge: true})
	e.as.host.mux.HandleFunc("POST /dpop/token", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"access_token": "secret-dpop-token", "token_type": "DPoP"})
	})
	e.as.opt.endpointPrefix = "/dpop"
	e.as.host.mux.HandleFunc("GET /dpop/authorize", e.as.authorize)
	e.as.host.mux.HandleFunc("POST /dpop/register", e.as.register)
	c := e.client(nil)
	e.call(c, "")
	err := authorize(ctx, c)
	if !errors.Is(err, errUnsupportedToken) || strings.Contains(err.Error(), "secret-dpop-token") {
		t.Errorf("error %v, want the token type refused", err)
	}
}

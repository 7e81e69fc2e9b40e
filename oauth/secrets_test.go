package oauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// Caddy's storage is a Store.
var _ Store = (certmagic.Storage)(nil)

// TestSecretsNeverInErrorsOrLogs drives flows that fail in every way with a
// server that echoes what it is sent in its error descriptions, and checks
// that no secret (client secret, code, verifier, access or refresh token,
// client assertion, private key) appears in any error string or log line.
func TestSecretsNeverInErrorsOrLogs(t *testing.T) {
	const preSecret = "pre-registered-SECRET-value"
	e := newEnv(t, asOptions{
		tokenTTL:   10 * time.Minute,
		preClients: map[string]*asClient{"pre": {secret: preSecret, method: AuthMethodClientSecretPost}},
	}, rsOptions{inChallenge: true})
	e.as.mu.Lock()
	e.as.echoSecrets = true
	e.as.mu.Unlock()
	var errs []error
	collect := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	// A dynamic client: authorize, refresh refused with an echo.
	c := e.client(nil)
	e.connect(c)
	e.as.setFailRefresh(true)
	e.clock.Advance(9*time.Minute + 30*time.Second)
	e.call(c, "")
	_, err := c.Token(ctx)
	collect(err)

	// Callbacks that fail: wrong code (token endpoint error), wrong iss,
	// access_denied.
	e.as.setFailRefresh(false)
	u, err := c.Authorize(ctx)
	collect(err)
	q, _ := followRedirect(ctx, u)
	code := q.Get("code")
	q.Set("code", code+"-tampered")
	collect(c.Callback(ctx, q))
	u, _ = c.Authorize(ctx)
	q, _ = followRedirect(ctx, u)
	q.Set("iss", "https://evil.example.com")
	collect(c.Callback(ctx, q))
	collect(c.Callback(ctx, q)) // replayed: unknown state

	// A pre-registered client with the wrong secret, so the token endpoint
	// echoes the form with the secret.
	bad := e.client(func(c *Config) { c.ClientID, c.ClientSecret = "pre", preSecret+"-wrong" })
	e.call(bad, "")
	collect(authorize(ctx, bad))

	// client_credentials with a private key against an AS that does not
	// know it.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	cc := e.client(func(c *Config) {
		c.Grant, c.ClientID, c.PrivateKeyPEM = GrantClientCredentials, "pre", pemKey
	})
	e.call(cc, "")
	_, err = cc.Token(ctx)
	collect(err)

	// Transport failures whose URLs carry a query.
	_, err = followRedirect(ctx, "http://127.0.0.1:1/authorize?code="+code+"&state=s")
	collect(err)

	// Every secret the servers handed out or received.
	secrets := []string{preSecret, preSecret + "-wrong", code, pemKey, strings.TrimSpace(strings.Split(pemKey, "\n")[1])}
	e.as.mu.Lock()
	for tok := range e.as.access {
		secrets = append(secrets, tok)
	}
	for tok := range e.as.refresh {
		secrets = append(secrets, tok)
	}
	for _, cl := range e.as.clients {
		if cl.secret != "" {
			secrets = append(secrets, cl.secret)
		}
	}
	for _, r := range e.as.tokenReqs {
		if b, ok := strings.CutPrefix(r.authz, "Basic "); ok {
			secrets = append(secrets, b)
		}
		for _, k := range []string{"code", "code_verifier", "refresh_token", "client_secret", "client_assertion"} {
			if v := r.form.Get(k); v != "" {
				secrets = append(secrets, v)
			}
		}
	}
	e.as.mu.Unlock()

	if len(errs) < 7 {
		t.Fatalf("only %d errors collected: %v", len(errs), errs)
	}
	var texts []string
	for _, err := range errs {
		texts = append(texts, "error: "+err.Error())
	}
	for _, c := range []*Client{c, bad, cc} {
		texts = append(texts, "status: "+c.Status().LastError)
	}
	for _, l := range e.logs.All() {
		texts = append(texts, fmt.Sprintf("log: %s %v", l.Message, l.ContextMap()))
	}
	query := regexp.MustCompile(`\?(code|state)=`)
	for _, text := range texts {
		for _, s := range secrets {
			if s == "" {
				continue
			}
			if strings.Contains(text, s) || strings.Contains(text, url.QueryEscape(s)) {
				t.Errorf("secret %.12q… found in %s", s, text)
			}
		}
		if query.MatchString(text) {
			t.Errorf("a URL query in %s", text)
		}
	}
	t.Logf("checked %d errors and %d log lines against %d secrets", len(errs), len(e.logs.All()), len(secrets))
}

func TestStoreKeyLayout(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{inChallenge: true})
	c := e.client(nil)
	e.connect(c)
	as2 := e.addAS("as2", asOptions{})
	e.rs.setAuthServers(as2.issuer)
	tok, _ := c.Token(ctx)
	e.rs.revoke(tok)
	e.as.setFailRefresh(true)
	e.call(c, "")
	e.mustAuthorize(c)

	seg := regexp.MustCompile(`^(current|client|token|as-[0-9a-f]{32})$`)
	keys := e.store.Keys()
	if len(keys) < 4 {
		t.Fatalf("keys %q", keys)
	}
	for _, k := range keys {
		rest, ok := strings.CutPrefix(k, "mcpo/oauth/test-server/")
		if !ok {
			t.Errorf("key %q outside the StoreKey prefix", k)
			continue
		}
		for s := range strings.SplitSeq(rest, "/") {
			if !seg.MatchString(s) {
				t.Errorf("key %q has segment %q", k, s)
			}
		}
	}
}

func TestStoredRecordsIgnoredWhenForeign(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{inChallenge: true})
	c := e.client(nil)
	e.connect(c)
	// Same store and key, but another pre-registered client: the stored
	// token is not this client's.
	other := e.client(func(c *Config) { c.ClientID = "someone-else" })
	if _, err := other.Token(ctx); err == nil {
		t.Error("a token issued to another client was used")
	}
	// Garbage in the store is reported, not fatal, and never quoted.
	s := &MemoryStore{}
	_ = s.Store(ctx, "k/current", []byte(`{"v":1,"issuer":"https://as"}`))
	_ = s.Store(ctx, "k/"+issuerDir("https://as")+"/token", []byte(`not json SECRET`))
	g := e.client(func(c *Config) { c.Store, c.StoreKey = s, "k" })
	err := g.Load(ctx)
	if err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("Load error %v", err)
	}
	if st := g.Status(); st.State != StateNeedsAuth || st.LastError == "" {
		t.Errorf("status %+v", st)
	}
}

func TestExpiredStoredTokenIsRefreshedOnUse(t *testing.T) {
	e := newEnv(t, asOptions{tokenTTL: 10 * time.Minute}, rsOptions{inChallenge: true})
	c := e.client(nil)
	e.connect(c)
	e.clock.Advance(time.Hour) // the proxy was down for an hour
	again := e.client(nil)
	if err := again.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if st := again.Status(); st.State != StateAuthorized {
		t.Errorf("state %s, want authorized (a refresh token is held)", st.State)
	}
	if got := e.call(again, ""); got != 200 {
		t.Errorf("HTTP %d, want 200 after refreshing the expired stored token", got)
	}
	if n := len(e.as.tokenRequests("refresh_token")); n != 1 {
		t.Errorf("%d refreshes", n)
	}
}

// New refuses exactly the configurations Validate reports, with the same
// error.
func TestNewValidation(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	goodPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	badPEM := "-----BEGIN PRIVATE KEY-----\nTUlJQ0VFU0VDUkVUS0VZ\n-----END PRIVATE KEY-----\n"
	base := Config{ServerURL: "https://mcp.example/mcp", RedirectURI: testRedirect}
	tests := []struct {
		name  string
		mod   func(*Config)
		field string // "" means valid
	}{
		{"valid", func(*Config) {}, ""},
		{"relative server URL", func(c *Config) { c.ServerURL = "/mcp" }, "ServerURL"},
		{"server URL with another scheme", func(c *Config) { c.ServerURL = "ws://x/mcp" }, "ServerURL"},
		{"no redirect URI", func(c *Config) { c.RedirectURI = "" }, "RedirectURI"},
		{"unknown grant", func(c *Config) { c.Grant = "password" }, "Grant"},
		{"secret without ID", func(c *Config) { c.ClientSecret = "s" }, "ClientSecret"},
		{"unknown auth method", func(c *Config) { c.TokenEndpointAuthMethod = "tls_client_auth" }, "TokenEndpointAuthMethod"},
		{"basic without secret", func(c *Config) { c.ClientID = "id"; c.TokenEndpointAuthMethod = AuthMethodClientSecretBasic }, "TokenEndpointAuthMethod"},
		{"client_credentials without ID", func(c *Config) { c.Grant = GrantClientCredentials }, "ClientID"},
		{"client_credentials without secret", func(c *Config) { c.Grant = GrantClientCredentials; c.ClientID = "id" }, "ClientSecret or PrivateKeyPEM"},
		{"client_credentials, redirect URI not needed", func(c *Config) {
			c.Grant, c.ClientID, c.ClientSecret, c.RedirectURI = GrantClientCredentials, "id", "s", ""
		}, ""},
		{"bad PEM", func(c *Config) { c.ClientID = "id"; c.PrivateKeyPEM = badPEM }, "PrivateKeyPEM"},
		{"not PEM", func(c *Config) { c.ClientID = "id"; c.PrivateKeyPEM = "MIICEESECRETKEY" }, "PrivateKeyPEM"},
		{"algorithm not fitting the key", func(c *Config) { c.ClientID = "id"; c.PrivateKeyPEM = goodPEM; c.SigningAlgorithm = "RS256" }, "SigningAlgorithm"},
		{"good key", func(c *Config) { c.ClientID = "id"; c.PrivateKeyPEM = goodPEM; c.SigningAlgorithm = "ES256" }, ""},
		{"plain-http metadata document URL", func(c *Config) { c.ClientMetadataURL = "http://proxy.example/cimd.json" }, "ClientMetadataURL"},
		{"metadata document URL without path", func(c *Config) { c.ClientMetadataURL = "https://proxy.example/" }, "ClientMetadataURL"},
		{"bad scope", func(c *Config) { c.Scopes = []string{"a b"} }, "Scopes"},
		{"store key with an empty segment", func(c *Config) { c.StoreKey = "mcpo//x" }, "StoreKey"},
		{"store key with ..", func(c *Config) { c.StoreKey = "mcpo/../x" }, "StoreKey"},
		{"store key with a leading slash", func(c *Config) { c.StoreKey = "/mcpo" }, "StoreKey"},
		{"issuer without client", func(c *Config) { c.Issuer = "https://as" }, "Issuer"},
		{"signing algorithm without a key", func(c *Config) { c.ClientID = "id"; c.SigningAlgorithm = "ES256" }, "SigningAlgorithm"},
		{"client_credentials without client authentication", func(c *Config) {
			c.Grant, c.ClientID, c.ClientSecret, c.TokenEndpointAuthMethod = GrantClientCredentials, "id", "s", AuthMethodNone
		}, "none cannot be used"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.mod(&cfg)
			_, err := New(cfg)
			if verr := cfg.Validate(); fmt.Sprint(verr) != fmt.Sprint(err) {
				t.Errorf("Validate: %v; New: %v", verr, err)
			}
			if tt.field == "" {
				if err != nil {
					t.Errorf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %v, want one naming %s", err, tt.field)
			}
			if err != nil && (strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "TUlJ")) {
				t.Errorf("error quotes the key: %v", err)
			}
		})
	}
}

func TestDefaultStoreKeyIsDerivedFromTheServer(t *testing.T) {
	a, _ := New(Config{ServerURL: "https://MCP.example/mcp", RedirectURI: testRedirect})
	b, _ := New(Config{ServerURL: "https://mcp.example/mcp/", RedirectURI: testRedirect})
	c, _ := New(Config{ServerURL: "https://mcp.example/other", RedirectURI: testRedirect})
	if a.storeKey != b.storeKey || a.storeKey == c.storeKey || !validStoreKey(a.storeKey) {
		t.Errorf("store keys %q %q %q", a.storeKey, b.storeKey, c.storeKey)
	}
}

func TestRedact(t *testing.T) {
	if got := redactURL("https://user:pw@as.example/cb?code=abc&state=x#frag"); got != "https://as.example/cb" {
		t.Errorf("redactURL = %q", got)
	}
	err := redactErr(&url.Error{Op: "Get", URL: "https://as.example/x?code=abc", Err: fmt.Errorf("boom")})
	if strings.Contains(err.Error(), "abc") {
		t.Errorf("redactErr kept the query: %v", err)
	}
	if got := scrub("bad token abcdef\n\x00 here", "abcdef"); got != "bad token [redacted]   here" {
		t.Errorf("scrub = %q", got)
	}
	long := strings.Repeat("é", 400)
	if got := scrub(long); !strings.HasSuffix(got, "…") || len(got) > 400 {
		t.Errorf("scrub did not bound %d bytes: %d", len(long), len(got))
	}
}

func TestSetLoggerReplacesTheLoggerAndNamesTheServer(t *testing.T) {
	first, firstLogs := observer.New(zapcore.DebugLevel)
	c, err := New(Config{ServerURL: "https://mcp.example.com/mcp?token=x", RedirectURI: "http://localhost/cb", Logger: zap.New(first)})
	if err != nil {
		t.Fatal(err)
	}
	second, secondLogs := observer.New(zapcore.DebugLevel)
	c.SetLogger(zap.New(second))
	c.logger().Info("probe")
	if firstLogs.Len() != 0 || secondLogs.Len() != 1 {
		t.Fatalf("%d lines in the first logger, %d in the second; want 0 and 1", firstLogs.Len(), secondLogs.Len())
	}
	if got := secondLogs.All()[0].ContextMap()["oauth_server"]; got != "https://mcp.example.com/mcp" {
		t.Errorf("oauth_server = %v, want the server URL without its query", got)
	}
	c.SetLogger(nil)
	c.logger().Info("into nothing")
	if secondLogs.Len() != 1 {
		t.Error("SetLogger(nil) kept logging to the previous logger")
	}
}

package oauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const ccID, ccSecret = "machine-client", "machine-secret"

func TestClientCredentialsBasic(t *testing.T) {
	e := newEnv(t, asOptions{
		authMethods: []string{AuthMethodClientSecretBasic},
		tokenTTL:    10 * time.Minute,
		preClients:  map[string]*asClient{ccID: {secret: ccSecret, method: AuthMethodClientSecretBasic}},
	}, rsOptions{inChallenge: true})
	c := e.client(func(c *Config) {
		c.Grant, c.ClientID, c.ClientSecret = GrantClientCredentials, ccID, ccSecret
		c.RedirectURI = ""
		c.Scopes = []string{"mcp:machine"}
	})
	// No browser: the first request's 401 fetches a token and is replayed.
	if got := e.call(c, ""); got != 200 {
		t.Fatalf("HTTP %d, want 200 (token fetched on the challenge, request replayed)", got)
	}
	reqs := e.as.tokenRequests("client_credentials")
	if len(reqs) != 1 {
		t.Fatalf("%d client_credentials requests, want 1", len(reqs))
	}
	tr := reqs[0]
	wantAuthz := "Basic " + base64.StdEncoding.EncodeToString([]byte(ccID+":"+ccSecret))
	if tr.authz != wantAuthz || tr.form.Has("client_secret") {
		t.Errorf("Authorization %q, form %v", tr.authz, tr.form)
	}
	if tr.form.Get("resource") != e.rs.serverURL() || tr.form.Get("scope") != "mcp:machine" {
		t.Errorf("form %v: want resource and scope", tr.form)
	}
	if n := len(e.as.authRequests()) + len(e.as.regs()); n != 0 {
		t.Errorf("%d authorization or registration requests", n)
	}
	if st := c.Status(); st.State != StateAuthorized || st.Grant != GrantClientCredentials {
		t.Errorf("status %+v", st)
	}
	for _, k := range e.store.Keys() {
		if strings.HasSuffix(k, "/token") {
			t.Errorf("client_credentials token stored at %s; it is fetched again instead", k)
		}
	}

	// Fetched again near expiry, without any 401.
	e.clock.Advance(9*time.Minute + 30*time.Second)
	before := len(e.rs.requests())
	if got := e.call(c, ""); got != 200 {
		t.Fatalf("HTTP %d after expiry", got)
	}
	if n := len(e.as.tokenRequests("client_credentials")); n != 2 {
		t.Errorf("%d client_credentials requests, want 2", n)
	}
	if n := len(e.rs.requests()) - before; n != 1 {
		t.Errorf("%d requests to the server, want 1", n)
	}
	// Token() fetches as well.
	e.clock.Advance(time.Hour)
	if _, err := c.Token(ctx); err != nil {
		t.Errorf("Token: %v", err)
	}
}

func TestClientCredentialsPrivateKeyJWT(t *testing.T) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	pkcs8 := func(k crypto.Signer) string {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	}
	sec1, _ := x509.MarshalECPrivateKey(ecKey)
	tests := []struct {
		name string
		pem  string
		alg  string
		pub  crypto.PublicKey
	}{
		{"ES256, PKCS #8", pkcs8(ecKey), "ES256", ecKey.Public()},
		{"ES256, SEC 1, algorithm from the key", string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})), "", ecKey.Public()},
		{"RS256, PKCS #1", string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})), "RS256", rsaKey.Public()},
		{"RS256, PKCS #8", pkcs8(rsaKey), "RS256", rsaKey.Public()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, asOptions{
				authMethods: []string{AuthMethodPrivateKeyJWT},
				tokenTTL:    5 * time.Minute,
				preClients:  map[string]*asClient{ccID: {method: AuthMethodPrivateKeyJWT, pub: tt.pub}},
			}, rsOptions{inChallenge: true})
			c := e.client(func(c *Config) {
				c.Grant, c.ClientID, c.PrivateKeyPEM, c.SigningAlgorithm = GrantClientCredentials, ccID, tt.pem, tt.alg
			})
			// The test AS verifies signature, iss, sub, aud (its issuer),
			// exp and jti, and refuses a replayed jti.
			if got := e.call(c, ""); got != 200 {
				t.Fatalf("HTTP %d", got)
			}
			e.clock.Advance(5 * time.Minute)
			if got := e.call(c, ""); got != 200 {
				t.Fatalf("second token: HTTP %d", got)
			}
			reqs := e.as.tokenRequests("client_credentials")
			if len(reqs) != 2 {
				t.Fatalf("%d token requests, want 2", len(reqs))
			}
			for _, r := range reqs {
				if r.authz != "" || r.form.Has("client_secret") {
					t.Errorf("a secret was sent besides the assertion: %v %q", r.form, r.authz)
				}
				tok, err := jose.ParseSigned(r.form.Get("client_assertion"), []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
				if err != nil {
					t.Fatal(err)
				}
				if alg := tok.Signatures[0].Header.Algorithm; tt.alg != "" && alg != tt.alg {
					t.Errorf("alg %s, want %s", alg, tt.alg)
				}
			}
		})
	}
}

func TestClientCredentialsFailureIsReported(t *testing.T) {
	e := newEnv(t, asOptions{preClients: map[string]*asClient{ccID: {secret: "other", method: AuthMethodClientSecretBasic}}}, rsOptions{inChallenge: true})
	c := e.client(func(c *Config) { c.Grant, c.ClientID, c.ClientSecret = GrantClientCredentials, ccID, ccSecret })
	if got := e.call(c, ""); got != http.StatusUnauthorized {
		t.Errorf("HTTP %d, want the 401", got)
	}
	st := c.Status()
	if st.State != StateNeedsAuth || !strings.Contains(st.LastError, "invalid_client") {
		t.Errorf("status %+v", st)
	}
	if _, err := c.Token(ctx); err == nil || strings.Contains(err.Error(), ccSecret) {
		t.Errorf("Token error %v", err)
	}
}

// TestClientCredentialsStepUp: a client acting for itself answers a 403
// insufficient_scope by getting a token with the union of the scopes and
// sending the request once more, without any user.
func TestClientCredentialsStepUp(t *testing.T) {
	e := newEnv(t, asOptions{
		preClients: map[string]*asClient{ccID: {secret: ccSecret, method: AuthMethodClientSecretBasic}},
	}, rsOptions{inChallenge: true, writeScopes: []string{"mcp:write"}})
	c := e.client(func(c *Config) {
		c.Grant, c.ClientID, c.ClientSecret = GrantClientCredentials, ccID, ccSecret
		c.Scopes = []string{"mcp:basic"}
	})
	if got := e.call(c, ""); got != 200 {
		t.Fatalf("HTTP %d", got)
	}
	if got := e.call(c, "write"); got != 200 {
		t.Fatalf("write: HTTP %d, want 200 after stepping up", got)
	}
	reqs := e.as.tokenRequests("client_credentials")
	if len(reqs) != 2 || reqs[1].form.Get("scope") != "mcp:basic mcp:write" {
		t.Errorf("token requests %v, want a second one for the union of the scopes", reqs)
	}
	if st := c.Status(); st.State != StateAuthorized || st.StepUp != nil {
		t.Errorf("status %+v", st)
	}
}

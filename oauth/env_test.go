package oauth

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// This file builds, on loopback httptest servers, an authorization server
// and an MCP-like protected resource that check what a conformant client
// must send, and record what it sent.

// testClock is the time shared by a test's client and servers.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *testClock {
	return &testClock{t: time.Date(2026, 7, 28, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// reqLog records requests to every test host, in order.
type reqLog struct {
	mu      sync.Mutex
	entries []string // "<host> <METHOD> <path>"
}

func (l *reqLog) add(host, method, path string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, host+" "+method+" "+path)
}

// discovery returns the GET requests for metadata, in order.
func (l *reqLog) discovery() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.entries {
		if strings.Contains(e, " GET ") && (strings.Contains(e, "/.well-known/") || strings.Contains(e, "/custom/")) {
			out = append(out, e)
		}
	}
	return out
}

func (l *reqLog) count(substr string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.entries {
		if strings.Contains(e, substr) {
			n++
		}
	}
	return n
}

// testHost is one loopback HTTP server with a mux.
type testHost struct {
	name string
	srv  *httptest.Server
	mux  *http.ServeMux
	// down, if set, is the status every request is answered with.
	down atomic.Int32
}

func newHost(t *testing.T, name string, log *reqLog) *testHost {
	h := &testHost{name: name, mux: http.NewServeMux()}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.add(name, r.Method, r.URL.Path)
		if code := h.down.Load(); code != 0 {
			http.Error(w, "down", int(code))
			return
		}
		h.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *testHost) url() string { return h.srv.URL }

// asOptions configure a testAS.
type asOptions struct {
	// issuerPath is the path of the issuer identifier, e.g. "/tenant1".
	issuerPath string
	// endpointPrefix is where the endpoints are mounted; default
	// issuerPath.
	endpointPrefix string
	// metadata is where metadata is served: "oauth" (RFC 8414, default),
	// "oidc" (OpenID, path inserted) , "oidc-append" (OpenID, path
	// appended) or "none".
	metadata       string
	issuerOverride string
	noPKCE         bool     // omit code_challenge_methods_supported
	pkceMethods    []string // default S256
	cimd           bool
	issSupported   bool
	// issMode is what iss the redirect carries: "correct" (default),
	// "omit", "wrong" or "normalized".
	issMode        string
	authMethods    []string // token_endpoint_auth_methods_supported
	scopes         []string // scopes_supported
	noRegistration bool
	regMethod      string // token_endpoint_auth_method answered by DCR
	tokenTTL       time.Duration
	noRefresh      bool
	preClients     map[string]*asClient
}

type asClient struct {
	secret   string
	method   string
	pub      crypto.PublicKey
	redirect []string
}

type asCode struct {
	client, redirect, challenge, resource string
	scopes                                []string
}

type asToken struct {
	issuer, client, resource string
	scopes                   []string
	exp                      time.Time
}

type tokenReq struct {
	form  url.Values
	authz string
}

// testAS is an authorization server.
type testAS struct {
	t      *testing.T
	host   *testHost
	opt    asOptions
	clock  *testClock
	issuer string

	mu            sync.Mutex
	failRefresh   bool
	refreshDelay  time.Duration
	echoSecrets   bool // error descriptions quote what the client sent
	denyNext      bool // the next authorization answers access_denied
	registrations []map[string]any
	authorizeReqs []url.Values
	tokenReqs     []tokenReq
	clients       map[string]*asClient
	codes         map[string]*asCode
	access        map[string]*asToken
	refresh       map[string]*asToken
	jtis          map[string]bool
	n             int
}

func newAS(t *testing.T, host *testHost, clock *testClock, opt asOptions) *testAS {
	if opt.metadata == "" {
		opt.metadata = "oauth"
	}
	if opt.endpointPrefix == "" {
		opt.endpointPrefix = opt.issuerPath
	}
	if opt.tokenTTL == 0 {
		opt.tokenTTL = time.Hour
	}
	a := &testAS{
		t: t, host: host, opt: opt, clock: clock,
		issuer:  host.url() + opt.issuerPath,
		clients: map[string]*asClient{},
		codes:   map[string]*asCode{},
		access:  map[string]*asToken{},
		refresh: map[string]*asToken{},
		jtis:    map[string]bool{},
	}
	for id, cl := range opt.preClients {
		a.clients[id] = cl
	}
	p := opt.issuerPath
	switch opt.metadata {
	case "oauth":
		host.mux.HandleFunc("GET /.well-known/oauth-authorization-server"+p, a.metadata)
	case "oidc":
		host.mux.HandleFunc("GET /.well-known/openid-configuration"+p, a.metadata)
	case "oidc-append":
		host.mux.HandleFunc("GET "+p+"/.well-known/openid-configuration", a.metadata)
	}
	e := opt.endpointPrefix
	host.mux.HandleFunc("GET "+e+"/authorize", a.authorize)
	host.mux.HandleFunc("POST "+e+"/token", a.token)
	if !opt.noRegistration {
		host.mux.HandleFunc("POST "+e+"/register", a.register)
	}
	return a
}

func (a *testAS) endpoint(p string) string { return a.host.url() + a.opt.endpointPrefix + p }

func (a *testAS) metadata(w http.ResponseWriter, r *http.Request) {
	md := map[string]any{
		"issuer":                   a.issuer,
		"authorization_endpoint":   a.endpoint("/authorize"),
		"token_endpoint":           a.endpoint("/token"),
		"response_types_supported": []string{"code"},
	}
	if a.opt.issuerOverride != "" {
		md["issuer"] = a.opt.issuerOverride
	}
	if !a.opt.noRegistration {
		md["registration_endpoint"] = a.endpoint("/register")
	}
	if !a.opt.noPKCE {
		md["code_challenge_methods_supported"] = cmp(a.opt.pkceMethods, []string{"S256"})
	}
	if a.opt.authMethods != nil {
		md["token_endpoint_auth_methods_supported"] = a.opt.authMethods
	}
	if a.opt.scopes != nil {
		md["scopes_supported"] = a.opt.scopes
	}
	if a.opt.cimd {
		md["client_id_metadata_document_supported"] = true
	}
	if a.opt.issSupported {
		md["authorization_response_iss_parameter_supported"] = true
	}
	writeJSON(w, http.StatusOK, md)
}

func cmp[T any](v, def []T) []T {
	if v == nil {
		return def
	}
	return v
}

func (a *testAS) register(w http.ResponseWriter, r *http.Request) {
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_client_metadata", "not JSON")
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.registrations = append(a.registrations, body)
	a.n++
	method, _ := body["token_endpoint_auth_method"].(string)
	if a.opt.regMethod != "" {
		method = a.opt.regMethod
	}
	if method == "" {
		method = AuthMethodClientSecretBasic
	}
	id := fmt.Sprintf("%s-client-%d", a.host.name, a.n)
	cl := &asClient{method: method}
	for _, u := range body["redirect_uris"].([]any) {
		cl.redirect = append(cl.redirect, u.(string))
	}
	resp := map[string]any{"client_id": id, "token_endpoint_auth_method": method}
	if method != AuthMethodNone {
		cl.secret = fmt.Sprintf("dcr-secret-%d-%s", a.n, randomString()[:8])
		resp["client_secret"] = cl.secret
	}
	a.clients[id] = cl
	writeJSON(w, http.StatusCreated, resp)
}

func (a *testAS) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.authorizeReqs = append(a.authorizeReqs, q)
	id := q.Get("client_id")
	cl := a.clients[id]
	if cl == nil && a.opt.cimd && strings.HasPrefix(id, "https://") {
		cl = &asClient{method: AuthMethodNone, redirect: []string{q.Get("redirect_uri")}}
		a.clients[id] = cl
	}
	redirect := q.Get("redirect_uri")
	if cl == nil || (cl.redirect != nil && !slices.Contains(cl.redirect, redirect)) {
		http.Error(w, "unknown client or redirect", http.StatusBadRequest)
		return
	}
	if q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	ru, _ := url.Parse(redirect)
	rq := ru.Query()
	rq.Set("state", q.Get("state"))
	if a.denyNext {
		a.denyNext = false
		rq.Set("error", "access_denied")
		rq.Set("error_description", "the user said no")
	} else {
		a.n++
		code := fmt.Sprintf("code-%d-%s", a.n, randomString()[:8])
		a.codes[code] = &asCode{
			client: id, redirect: redirect, challenge: q.Get("code_challenge"),
			resource: q.Get("resource"), scopes: strings.Fields(q.Get("scope")),
		}
		rq.Set("code", code)
	}
	mode := a.opt.issMode
	if mode == "" {
		mode = "correct"
	}
	switch mode {
	case "correct":
		rq.Set("iss", a.issuer)
	case "wrong":
		rq.Set("iss", "https://evil.example.com")
	case "normalized":
		rq.Set("iss", a.issuer+"/")
	}
	ru.RawQuery = rq.Encode()
	http.Redirect(w, r, ru.String(), http.StatusFound)
}

func (a *testAS) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeOAuthError(w, http.StatusBadRequest, "invalid_request", "bad form")
		return
	}
	form := r.PostForm
	a.mu.Lock()
	a.tokenReqs = append(a.tokenReqs, tokenReq{form: form, authz: r.Header.Get("Authorization")})
	delay := a.refreshDelay
	a.mu.Unlock()
	if form.Get("grant_type") == "refresh_token" && delay > 0 {
		time.Sleep(delay)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	id, ok := a.authenticate(w, r, form)
	if !ok {
		return
	}
	switch form.Get("grant_type") {
	case "authorization_code":
		code := a.codes[form.Get("code")]
		delete(a.codes, form.Get("code"))
		if code == nil || code.client != id || code.redirect != form.Get("redirect_uri") {
			writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "unknown code")
			return
		}
		sum := sha256.Sum256([]byte(form.Get("code_verifier")))
		if base64.RawURLEncoding.EncodeToString(sum[:]) != code.challenge {
			writeOAuthError(w, http.StatusBadRequest, "invalid_grant", "PKCE verifier does not match")
			return
		}
		if form.Get("resource") != code.resource || code.resource == "" {
			writeOAuthError(w, http.StatusBadRequest, "invalid_target", "resource differs from the authorization request")
			return
		}
		a.issue(w, id, code.resource, code.scopes, !a.opt.noRefresh)
	case "refresh_token":
		rt := form.Get("refresh_token")
		old := a.refresh[rt]
		if a.failRefresh || old == nil || old.client != id {
			desc := "refresh token revoked"
			if a.echoSecrets {
				desc += ": " + rt + " for " + r.Header.Get("Authorization") + form.Get("client_secret")
			}
			writeOAuthError(w, http.StatusBadRequest, "invalid_grant", desc)
			return
		}
		if form.Get("resource") != old.resource {
			writeOAuthError(w, http.StatusBadRequest, "invalid_target", "resource differs")
			return
		}
		delete(a.refresh, rt) // rotated
		a.issue(w, id, old.resource, old.scopes, true)
	case "client_credentials":
		a.issue(w, id, form.Get("resource"), strings.Fields(form.Get("scope")), false)
	default:
		writeOAuthError(w, http.StatusBadRequest, "unsupported_grant_type", "")
	}
}

// authenticate checks the client authentication the client registered
// with; it writes the error itself.
func (a *testAS) authenticate(w http.ResponseWriter, r *http.Request, form url.Values) (string, bool) {
	fail := func(desc string) (string, bool) {
		if a.echoSecrets {
			desc += " (got " + r.Header.Get("Authorization") + " " + form.Encode() + ")"
		}
		writeOAuthError(w, http.StatusUnauthorized, "invalid_client", desc)
		return "", false
	}
	var id string
	if h := r.Header.Get("Authorization"); h != "" {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(h, "Basic "))
		if err != nil || !strings.HasPrefix(h, "Basic ") {
			return fail("bad Basic header")
		}
		eid, esecret, ok := strings.Cut(string(raw), ":")
		if !ok {
			return fail("bad Basic header")
		}
		uid, err1 := url.QueryUnescape(eid)
		usecret, err2 := url.QueryUnescape(esecret)
		cl := a.clients[uid]
		if err1 != nil || err2 != nil || cl == nil || cl.method != AuthMethodClientSecretBasic || cl.secret != usecret {
			return fail("client_secret_basic authentication failed")
		}
		if form.Has("client_secret") {
			return fail("secret sent twice")
		}
		return uid, true
	}
	id = form.Get("client_id")
	cl := a.clients[id]
	if cl == nil {
		return fail("unknown client")
	}
	switch cl.method {
	case AuthMethodClientSecretPost:
		if form.Get("client_secret") != cl.secret {
			return fail("client_secret_post authentication failed")
		}
	case AuthMethodNone:
		if form.Has("client_secret") || form.Has("client_assertion") {
			return fail("a public client sent credentials")
		}
	case AuthMethodPrivateKeyJWT:
		if err := a.checkAssertion(form, id, cl); err != nil {
			return fail("private_key_jwt: " + err.Error())
		}
	default:
		return fail("client registered for " + cl.method)
	}
	return id, true
}

// checkAssertion verifies an RFC 7523 client assertion: signature, iss,
// sub, aud, exp and a jti never seen before.
func (a *testAS) checkAssertion(form url.Values, id string, cl *asClient) error {
	if form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		return fmt.Errorf("client_assertion_type %q", form.Get("client_assertion_type"))
	}
	tok, err := jwt.ParseSigned(form.Get("client_assertion"), []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		return err
	}
	var claims jwt.Claims
	if err := tok.Claims(cl.pub, &claims); err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	err = claims.ValidateWithLeeway(jwt.Expected{
		Issuer: id, Subject: id, AnyAudience: jwt.Audience{a.issuer}, Time: a.clock.Now(),
	}, 0)
	if err != nil {
		return err
	}
	if claims.Expiry == nil || claims.ID == "" {
		return fmt.Errorf("exp or jti missing")
	}
	if a.jtis[claims.ID] {
		return fmt.Errorf("jti replayed")
	}
	a.jtis[claims.ID] = true
	return nil
}

func (a *testAS) issue(w http.ResponseWriter, client, resource string, scopes []string, withRefresh bool) {
	a.n++
	t := &asToken{issuer: a.issuer, client: client, resource: resource, scopes: scopes, exp: a.clock.Now().Add(a.opt.tokenTTL)}
	access := fmt.Sprintf("%s-access-%d-%s", a.host.name, a.n, randomString()[:8])
	a.access[access] = t
	resp := map[string]any{
		"access_token": access,
		"token_type":   "Bearer",
		"expires_in":   int(a.opt.tokenTTL / time.Second),
		"scope":        strings.Join(scopes, " "),
	}
	if withRefresh {
		rt := fmt.Sprintf("%s-refresh-%d-%s", a.host.name, a.n, randomString()[:8])
		a.refresh[rt] = t
		resp["refresh_token"] = rt
	}
	writeJSON(w, http.StatusOK, resp)
}

// valid returns the token's grant if the token is valid now.
func (a *testAS) valid(access string) *asToken {
	a.mu.Lock()
	defer a.mu.Unlock()
	t := a.access[access]
	if t == nil || !a.clock.Now().Before(t.exp) {
		return nil
	}
	return t
}

func (a *testAS) secretOf(client string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if cl := a.clients[client]; cl != nil {
		return cl.secret
	}
	return ""
}

func (a *testAS) setFailRefresh(v bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.failRefresh = v
}

func (a *testAS) tokenRequests(grant string) []tokenReq {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []tokenReq
	for _, r := range a.tokenReqs {
		if grant == "" || r.form.Get("grant_type") == grant {
			out = append(out, r)
		}
	}
	return out
}

func (a *testAS) authRequests() []url.Values {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.authorizeReqs)
}

func (a *testAS) regs() []map[string]any {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.registrations)
}

// rsOptions configure a testRS.
type rsOptions struct {
	// prm is where protected-resource metadata is: "path" (default),
	// "root", "custom" or "none".
	prm string
	// inChallenge puts resource_metadata in the 401 challenge.
	inChallenge    bool
	challengeScope []string
	prmResource    string // overrides the resource published
	prmScopes      []string
	// writeScopes are needed by requests with header X-Test-Op: write; a
	// token without them gets 403 insufficient_scope naming them.
	writeScopes []string
	// forbidScope, if set, answers every request with a token 403
	// insufficient_scope for this scope.
	forbidScope string
}

type rsRequest struct {
	authz, body, url string
}

// testRS is the protected MCP endpoint at /mcp.
type testRS struct {
	host *testHost
	opt  rsOptions

	mu          sync.Mutex
	authServers []string
	ases        []*testAS
	revoked     map[string]bool
	seen        []rsRequest
}

func newRS(host *testHost, opt rsOptions) *testRS {
	if opt.prm == "" {
		opt.prm = "path"
	}
	rs := &testRS{host: host, opt: opt, revoked: map[string]bool{}}
	if p := rs.prmPath(); p != "" {
		host.mux.HandleFunc("GET "+p, rs.metadata)
	}
	host.mux.HandleFunc("POST /mcp", rs.serve)
	return rs
}

func (rs *testRS) serverURL() string { return rs.host.url() + "/mcp" }

func (rs *testRS) prmPath() string {
	switch rs.opt.prm {
	case "path":
		return "/.well-known/oauth-protected-resource/mcp"
	case "root":
		return "/.well-known/oauth-protected-resource"
	case "custom":
		return "/custom/prm.json"
	}
	return ""
}

// resource is the resource identifier published (and expected in tokens).
func (rs *testRS) resource() string {
	switch {
	case rs.opt.prmResource != "":
		return rs.opt.prmResource
	case rs.opt.prm == "root":
		return rs.host.url()
	}
	return rs.serverURL()
}

func (rs *testRS) metadata(w http.ResponseWriter, r *http.Request) {
	rs.mu.Lock()
	servers := slices.Clone(rs.authServers)
	rs.mu.Unlock()
	md := map[string]any{"resource": rs.resource(), "authorization_servers": servers}
	if rs.opt.prmScopes != nil {
		md["scopes_supported"] = rs.opt.prmScopes
	}
	writeJSON(w, http.StatusOK, md)
}

func (rs *testRS) setAuthServers(issuers ...string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.authServers = issuers
}

func (rs *testRS) revoke(token string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.revoked[token] = true
}

func (rs *testRS) requests() []rsRequest {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return slices.Clone(rs.seen)
}

func (rs *testRS) challenge(w http.ResponseWriter, status int, errCode string, scope []string) {
	var params []string
	if rs.opt.inChallenge && rs.prmPath() != "" {
		params = append(params, fmt.Sprintf("resource_metadata=%q", rs.host.url()+rs.prmPath()))
	}
	if len(scope) > 0 {
		params = append(params, fmt.Sprintf("scope=%q", strings.Join(scope, " ")))
	}
	if errCode != "" {
		params = append(params, fmt.Sprintf("error=%q", errCode))
	}
	v := "Bearer"
	if len(params) > 0 {
		v += " " + strings.Join(params, ", ")
	}
	w.Header().Set("WWW-Authenticate", v)
	writeJSON(w, status, map[string]string{"error": errCode})
}

func (rs *testRS) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	authz := r.Header.Get("Authorization")
	rs.mu.Lock()
	rs.seen = append(rs.seen, rsRequest{authz: authz, body: string(body), url: r.URL.String()})
	ases := slices.Clone(rs.ases)
	revoked := rs.revoked[strings.TrimPrefix(authz, "Bearer ")]
	rs.mu.Unlock()

	tok, found := strings.CutPrefix(authz, "Bearer ")
	var grant *asToken
	if found && !revoked {
		for _, a := range ases {
			if g := a.valid(tok); g != nil {
				grant = g
				break
			}
		}
	}
	if grant == nil || grant.resource != rs.resource() {
		code := ""
		if authz != "" {
			code = "invalid_token"
		}
		rs.challenge(w, http.StatusUnauthorized, code, rs.opt.challengeScope)
		return
	}
	if rs.opt.forbidScope != "" {
		rs.challenge(w, http.StatusForbidden, "insufficient_scope", []string{rs.opt.forbidScope})
		return
	}
	if r.Header.Get("X-Test-Op") == "write" && !containsAll(grant.scopes, rs.opt.writeScopes) {
		rs.challenge(w, http.StatusForbidden, "insufficient_scope", rs.opt.writeScopes)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "echo": string(body)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeOAuthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// env is one test's servers, clock, store and logs.
type env struct {
	t     *testing.T
	clock *testClock
	log   *reqLog
	as    *testAS
	rs    *testRS
	store *MemoryStore
	logs  *observer.ObservedLogs
	zl    *zap.Logger
}

// newEnv starts an AS and an RS. With rso.prm "none" the AS is on the
// RS's host (a 2025-03-26 server).
func newEnv(t *testing.T, aso asOptions, rso rsOptions) *env {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	e := &env{t: t, clock: newClock(), log: &reqLog{}, store: &MemoryStore{}, logs: logs, zl: zap.New(core)}
	t.Cleanup(func() {
		if t.Failed() {
			for _, l := range logs.All() {
				t.Logf("log: %s %s %v", l.Level, l.Message, l.ContextMap())
			}
		}
	})
	rsHost := newHost(t, "rs", e.log)
	e.rs = newRS(rsHost, rso)
	asHost := rsHost
	if rso.prm != "none" {
		asHost = newHost(t, "as", e.log)
	}
	e.as = newAS(t, asHost, e.clock, aso)
	e.rs.ases = []*testAS{e.as}
	e.rs.setAuthServers(e.as.issuer)
	return e
}

// addAS starts another authorization server the RS accepts tokens from.
func (e *env) addAS(name string, opt asOptions) *testAS {
	a := newAS(e.t, newHost(e.t, name, e.log), e.clock, opt)
	e.rs.mu.Lock()
	e.rs.ases = append(e.rs.ases, a)
	e.rs.mu.Unlock()
	return a
}

const testRedirect = "http://127.0.0.1:8080/mcpo/srv/oauth/callback"

func (e *env) config() Config {
	return Config{
		ServerURL:   e.rs.serverURL(),
		RedirectURI: testRedirect,
		Store:       e.store,
		StoreKey:    "mcpo/oauth/test-server",
		Logger:      e.zl,
		Now:         e.clock.Now,
	}
}

func (e *env) client(mod func(*Config)) *Client {
	e.t.Helper()
	cfg := e.config()
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		e.t.Fatalf("New: %v", err)
	}
	return c
}

// call POSTs a JSON-RPC-like body to the RS through c's transport, with
// X-Test-Op: op if op is set, and returns the status.
func (e *env) call(c *Client, op string) int {
	e.t.Helper()
	resp := e.do(c, op, bytes.NewReader([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`)))
	return resp.StatusCode
}

func (e *env) do(c *Client, op string, body io.Reader) *http.Response {
	e.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, e.rs.serverURL(), body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if op != "" {
		req.Header.Set("X-Test-Op", op)
	}
	hc := &http.Client{Transport: c.Transport(nil)}
	resp, err := hc.Do(req)
	if err != nil {
		e.t.Fatalf("request: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// authorize runs Authorize, follows the authorization URL headlessly and
// completes the Callback.
func authorize(ctx context.Context, c *Client) error {
	u, err := c.Authorize(ctx)
	if err != nil {
		return err
	}
	q, err := followRedirect(ctx, u)
	if err != nil {
		return err
	}
	return c.Callback(ctx, q)
}

// followRedirect does what a browser does with an authorization URL that
// the test authorization server answers at once: it GETs authURL without
// following the redirect and returns the query of the Location, the
// callback's parameters. Its errors hold no query, as the package's own do.
func followRedirect(ctx context.Context, authURL string) (url.Values, error) {
	noFollow := http.Client{
		Timeout:       DefaultHTTPTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return nil, fmt.Errorf("oauth: following %s: %w", redactURL(authURL), redactErr(err))
	}
	resp, err := noFollow.Do(req)
	if err != nil {
		return nil, fmt.Errorf("oauth: following %s: %w", redactURL(authURL), redactErr(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	loc, err := resp.Location()
	if resp.StatusCode < 300 || resp.StatusCode > 399 || err != nil {
		return nil, fmt.Errorf("oauth: following %s: HTTP %d, not a redirect", redactURL(authURL), resp.StatusCode)
	}
	return loc.Query(), nil
}

// mustAuthorize is authorize that fails the test on error.
func (e *env) mustAuthorize(c *Client) {
	e.t.Helper()
	if err := authorize(context.Background(), c); err != nil {
		e.t.Fatalf("authorize: %v", err)
	}
}

// connect makes the first, unauthenticated request (so the challenge is
// seen), authorizes, and checks that a request then succeeds.
func (e *env) connect(c *Client) {
	e.t.Helper()
	if got := e.call(c, ""); got != http.StatusUnauthorized {
		e.t.Fatalf("first request: HTTP %d, want 401", got)
	}
	e.mustAuthorize(c)
	if got := e.call(c, ""); got != http.StatusOK {
		e.t.Fatalf("request after authorization: HTTP %d, want 200", got)
	}
}

// redirects is a redirect query for tests that build callbacks by hand.
func lastAuthorizeQuery(t *testing.T, a *testAS) url.Values {
	t.Helper()
	reqs := a.authRequests()
	if len(reqs) == 0 {
		t.Fatal("no authorization request")
	}
	return reqs[len(reqs)-1]
}

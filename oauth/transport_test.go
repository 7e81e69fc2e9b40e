package oauth

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestTransportHeaders(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{inChallenge: true})
	c := e.client(nil)
	send := func(authz string) rsRequest {
		req, _ := http.NewRequest(http.MethodPost, e.rs.serverURL(), strings.NewReader("{}"))
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		before := req.Header.Clone()
		resp, err := (&http.Client{Transport: c.Transport(nil)}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if !headerEqual(req.Header, before) {
			t.Errorf("the transport modified the caller's request headers: %v, was %v", req.Header, before)
		}
		reqs := e.rs.requests()
		return reqs[len(reqs)-1]
	}
	if got := send("Bearer someone-elses-token"); got.authz != "" {
		t.Errorf("without a token: Authorization %q sent, want none (no passthrough)", got.authz)
	}
	e.mustAuthorize(c)
	tok, _ := c.Token(ctx)
	got := send("Basic dXNlcjpwYXNz")
	if got.authz != "Bearer "+tok {
		t.Errorf("with a token: Authorization %q, want the client's bearer token", got.authz)
	}
	if strings.Contains(got.url, tok) {
		t.Errorf("the token is in the URL %q", got.url)
	}
}

func headerEqual(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func TestRefreshBeforeExpiry(t *testing.T) {
	e := newEnv(t, asOptions{tokenTTL: 10 * time.Minute}, rsOptions{inChallenge: true})
	c := e.client(nil)
	e.connect(c)
	old, _ := c.Token(ctx)

	e.clock.Advance(8 * time.Minute) // more than a minute left: no refresh
	e.call(c, "")
	if n := len(e.as.tokenRequests("refresh_token")); n != 0 {
		t.Fatalf("%d refreshes with 2 minutes left", n)
	}
	e.clock.Advance(time.Minute + time.Second) // under a minute left
	if got := e.call(c, ""); got != 200 {
		t.Fatalf("HTTP %d", got)
	}
	refreshes := e.as.tokenRequests("refresh_token")
	if len(refreshes) != 1 {
		t.Fatalf("%d refreshes, want 1", len(refreshes))
	}
	if got := refreshes[0].form.Get("resource"); got != e.rs.serverURL() {
		t.Errorf("refresh resource = %q, want %q", got, e.rs.serverURL())
	}
	reqs := e.rs.requests()
	if last := reqs[len(reqs)-1].authz; last == "Bearer "+old || !strings.HasPrefix(last, "Bearer ") {
		t.Errorf("request after the refresh used %q, want the new token", last)
	}
	st := c.Status()
	if st.State != StateAuthorized || !st.ExpiresAt.Equal(e.clock.Now().Add(10*time.Minute)) {
		t.Errorf("status %+v", st)
	}
	// The refreshed token is what a restarted proxy finds.
	again := e.client(nil)
	if tok, err := again.Token(ctx); err != nil || "Bearer "+tok != reqs[len(reqs)-1].authz {
		t.Errorf("stored token after refresh: %v", err)
	}
}

func TestConcurrentRequestsRefreshOnce(t *testing.T) {
	e := newEnv(t, asOptions{tokenTTL: 10 * time.Minute}, rsOptions{inChallenge: true})
	c := e.client(nil)
	e.connect(c)
	e.as.mu.Lock()
	e.as.refreshDelay = 50 * time.Millisecond // make the requests overlap the refresh
	e.as.mu.Unlock()
	e.clock.Advance(9*time.Minute + 30*time.Second)

	const n = 20
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() { codes[i] = e.call(c, "") })
	}
	wg.Wait()
	for i, code := range codes {
		if code != 200 {
			t.Errorf("request %d: HTTP %d", i, code)
		}
	}
	if got := len(e.as.tokenRequests("refresh_token")); got != 1 {
		t.Errorf("%d refresh requests for %d concurrent requests, want 1", got, n)
	}
}

func TestRefreshFailureNeedsAuthorization(t *testing.T) {
	e := newEnv(t, asOptions{tokenTTL: 10 * time.Minute}, rsOptions{inChallenge: true})
	c := e.client(nil)
	e.connect(c)
	e.as.setFailRefresh(true)
	e.clock.Advance(9*time.Minute + 30*time.Second)

	if got := e.call(c, ""); got != http.StatusUnauthorized {
		t.Errorf("HTTP %d, want the server's 401 once the token is dropped", got)
	}
	st := c.Status()
	if st.State != StateNeedsAuth || !strings.Contains(st.LastError, "invalid_grant") {
		t.Errorf("status %+v, want needs_auth naming invalid_grant", st)
	}
	_, err := c.Token(ctx)
	var nae *NeedsAuthorizationError
	if !errors.Is(err, ErrNeedsAuthorization) || !errors.As(err, &nae) {
		t.Errorf("Token error %v, want a NeedsAuthorizationError", err)
	}
	for _, k := range e.store.Keys() {
		if strings.HasSuffix(k, "/token") {
			t.Errorf("the refused token is still stored at %s", k)
		}
	}
	// Authorizing again recovers.
	e.mustAuthorize(c)
	if got := e.call(c, ""); got != 200 {
		t.Errorf("after authorizing again: HTTP %d", got)
	}
}

func TestTransientRefreshFailureKeepsTheToken(t *testing.T) {
	e := newEnv(t, asOptions{tokenTTL: 10 * time.Minute}, rsOptions{inChallenge: true})
	c := e.client(nil)
	e.connect(c)
	e.as.host.down.Store(http.StatusBadGateway)
	e.clock.Advance(9*time.Minute + 30*time.Second)
	if got := e.call(c, ""); got != 200 {
		t.Errorf("HTTP %d, want 200 with the still-valid token", got)
	}
	st := c.Status()
	if st.State != StateAuthorized || !strings.Contains(st.LastError, "502") {
		t.Errorf("status %+v, want authorized with the refresh error recorded", st)
	}
}

func TestUnauthorizedWithTokenRefreshesAndReplays(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{inChallenge: true})
	c := e.client(nil)
	e.connect(c)
	old, _ := c.Token(ctx)
	e.rs.revoke(old)

	body := `{"jsonrpc":"2.0","id":7,"method":"tools/call"}`
	before := len(e.rs.requests())
	resp := e.do(c, "", bytes.NewReader([]byte(body))) // bytes.Reader: GetBody is set
	if resp.StatusCode != 200 {
		t.Fatalf("HTTP %d, want 200 after refresh and replay", resp.StatusCode)
	}
	reqs := e.rs.requests()[before:]
	if len(reqs) != 2 {
		t.Fatalf("%d requests reached the server, want 2 (one refused, one replayed)", len(reqs))
	}
	if reqs[0].authz != "Bearer "+old || reqs[1].authz == reqs[0].authz {
		t.Errorf("Authorization %q then %q, want the old token then a new one", reqs[0].authz, reqs[1].authz)
	}
	if reqs[1].body != body {
		t.Errorf("replayed body %q, want %q", reqs[1].body, body)
	}
	if n := len(e.as.tokenRequests("refresh_token")); n != 1 {
		t.Errorf("%d refreshes, want 1", n)
	}

	t.Run("a body that cannot be replayed is not", func(t *testing.T) {
		cur, _ := c.Token(ctx)
		e.rs.revoke(cur)
		before := len(e.rs.requests())
		resp := e.do(c, "", io.NopCloser(strings.NewReader(body))) // no GetBody
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("HTTP %d, want the 401 returned", resp.StatusCode)
		}
		if n := len(e.rs.requests()) - before; n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
		if next, _ := c.Token(ctx); next == cur {
			t.Error("the token was not refreshed for the next request")
		}
		if got := e.call(c, ""); got != 200 {
			t.Errorf("next request: HTTP %d", got)
		}
	})
	t.Run("a 401 without a way to renew drops the token", func(t *testing.T) {
		e.as.setFailRefresh(true)
		cur, _ := c.Token(ctx)
		e.rs.revoke(cur)
		if got := e.call(c, ""); got != http.StatusUnauthorized {
			t.Errorf("HTTP %d, want 401", got)
		}
		if st := c.Status(); st.State != StateNeedsAuth {
			t.Errorf("state %s, want needs_auth", st.State)
		}
	})
}

func TestUnauthorizedWithoutRefreshToken(t *testing.T) {
	e := newEnv(t, asOptions{noRefresh: true}, rsOptions{inChallenge: true, challengeScope: []string{"mcp:basic"}})
	c := e.client(nil)
	e.connect(c)
	tok, _ := c.Token(ctx)
	e.rs.revoke(tok)
	if got := e.call(c, ""); got != http.StatusUnauthorized {
		t.Errorf("HTTP %d, want 401", got)
	}
	if st := c.Status(); st.State != StateNeedsAuth || !strings.Contains(st.LastError, "401") {
		t.Errorf("status %+v, want needs_auth", st)
	}
	if _, err := c.Token(ctx); !errors.Is(err, ErrNeedsAuthorization) {
		t.Errorf("Token error %v", err)
	}
}

// TestStepUp covers auth/scope-step-up: a 403 insufficient_scope makes the
// next authorization ask for the union of the scopes requested before and
// those challenged, while the current token keeps working.
func TestStepUp(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{
		inChallenge: true, challengeScope: []string{"mcp:basic"}, writeScopes: []string{"mcp:write"},
	})
	c := e.client(nil)
	e.connect(c)
	if got := lastAuthorizeQuery(t, e.as).Get("scope"); got != "mcp:basic" {
		t.Fatalf("initial scope %q, want the challenge's", got)
	}
	if got := e.call(c, "write"); got != http.StatusForbidden {
		t.Fatalf("write: HTTP %d, want 403", got)
	}
	st := c.Status()
	if st.State != StateNeedsAuth || !slices.Equal(st.StepUp, []string{"mcp:basic", "mcp:write"}) {
		t.Errorf("status %+v, want needs_auth with step-up to mcp:basic mcp:write", st)
	}
	if _, err := c.Token(ctx); err != nil {
		t.Errorf("the current token is still usable: %v", err)
	}
	if err := c.Authorized(ctx); !errors.Is(err, ErrNeedsAuthorization) || !strings.Contains(err.Error(), "mcp:write") {
		t.Errorf("Authorized = %v, want a need of authorization naming the scopes", err)
	}
	if got := e.call(c, ""); got != 200 {
		t.Errorf("read with the current token: HTTP %d", got)
	}
	e.mustAuthorize(c)
	if got := lastAuthorizeQuery(t, e.as).Get("scope"); got != "mcp:basic mcp:write" {
		t.Errorf("step-up scope %q, want the union", got)
	}
	if got := e.call(c, "write"); got != 200 {
		t.Errorf("write after step-up: HTTP %d", got)
	}
	if st := c.Status(); st.State != StateAuthorized || st.StepUp != nil {
		t.Errorf("status %+v, want authorized without step-up", st)
	}
	if err := c.Authorized(ctx); err != nil {
		t.Errorf("Authorized after the step-up: %v", err)
	}
}

// TestScopeRetryLimit covers auth/scope-retry-limit: a server that keeps
// answering insufficient_scope gets at most MaxAttempts authorizations.
func TestScopeRetryLimit(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{
		inChallenge: true, challengeScope: []string{"mcp:admin"}, forbidScope: "mcp:admin",
	})
	c := e.client(nil)
	e.call(c, "")
	var err error
	for range 10 {
		if err = authorize(ctx, c); err != nil {
			break
		}
		if got := e.call(c, ""); got != http.StatusForbidden {
			t.Fatalf("HTTP %d, want 403", got)
		}
	}
	if !errors.Is(err, ErrTooManyAttempts) || !strings.Contains(err.Error(), "mcp:admin") {
		t.Fatalf("error %v, want ErrTooManyAttempts naming the scope", err)
	}
	if n := len(e.as.authRequests()); n != MaxAttempts {
		t.Errorf("%d authorization requests, want %d", n, MaxAttempts)
	}
	if st := c.Status(); !strings.Contains(st.LastError, "too many") {
		t.Errorf("LastError %q", st.LastError)
	}
	e.clock.Advance(AttemptsReset)
	if _, err := c.Authorize(ctx); err != nil {
		t.Errorf("after %v: %v, want another attempt allowed", AttemptsReset, err)
	}
}

func TestAcceptedTokenResetsAttempts(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{inChallenge: true})
	c := e.client(nil)
	e.call(c, "")
	for i := range 2 * MaxAttempts {
		e.mustAuthorize(c) // each accepted by the server below
		if got := e.call(c, ""); got != 200 {
			t.Fatalf("attempt %d: HTTP %d", i, got)
		}
	}
}

// stubTransport answers every request with the same response, allocating
// nothing, so that a benchmark counts only what the OAuth transport adds.
type stubTransport struct{ resp http.Response }

func (s *stubTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return &s.resp, nil
}

// BenchmarkTransportValidToken measures what the transport adds to a
// request while a valid token is held.
func BenchmarkTransportValidToken(b *testing.B) {
	c, err := New(Config{ServerURL: "https://mcp.example/mcp", RedirectURI: testRedirect})
	if err != nil {
		b.Fatal(err)
	}
	c.loaded.Store(true)
	c.cur.Store(newHeld(&tokenRecord{AccessToken: "tok", ExpiresAt: time.Now().Add(time.Hour), Issuer: "https://as"}))
	rt := c.Transport(&stubTransport{resp: http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}})
	req, _ := http.NewRequest(http.MethodPost, "https://mcp.example/mcp", nil)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", "abc")
	b.Run("stub transport alone", func(b *testing.B) {
		base := &stubTransport{resp: http.Response{StatusCode: 200, Body: http.NoBody, Header: http.Header{}}}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := base.RoundTrip(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("through the OAuth transport", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rt.RoundTrip(req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestObserveStepUpChallenges(t *testing.T) {
	held := newHeld(&tokenRecord{AccessToken: "t", Requested: []string{"a"}, Granted: []string{"a"}})
	tests := []struct {
		name   string
		status int
		header string
		want   []string // the step-up scopes after
	}{
		{"403 insufficient_scope", 403, `Bearer error="insufficient_scope", scope="b"`, []string{"a", "b"}},
		{"403 naming scopes without an error", 403, `Bearer scope="b c"`, []string{"a", "b", "c"}},
		{"403 for scopes already granted", 403, `Bearer error="insufficient_scope", scope="a"`, nil},
		{"403 with another error", 403, `Bearer error="invalid_token", scope="b"`, nil},
		{"401 with scope", 401, `Bearer scope="b"`, nil},
		{"403 without Bearer challenge", 403, `Basic realm="x"`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := New(Config{ServerURL: "https://mcp.example/mcp", RedirectURI: testRedirect})
			resp := &http.Response{StatusCode: tt.status, Header: http.Header{"Www-Authenticate": {tt.header}}}
			grew := c.observe(resp, held)
			if !slices.Equal(c.stepUp, tt.want) || grew != (tt.want != nil) {
				t.Errorf("step-up %q (grew %v), want %q", c.stepUp, grew, tt.want)
			}
		})
	}
}

// TestAuthorizationDuringRefreshWins: a token from a completed
// authorization is not overwritten by a refresh of the older token that
// finishes after it.
func TestAuthorizationDuringRefreshWins(t *testing.T) {
	e := newEnv(t, asOptions{tokenTTL: 10 * time.Minute}, rsOptions{inChallenge: true})
	c := e.client(nil)
	e.connect(c)
	e.as.mu.Lock()
	e.as.refreshDelay = 300 * time.Millisecond
	e.as.mu.Unlock()
	e.clock.Advance(9*time.Minute + 30*time.Second)

	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, e.rs.serverURL(), strings.NewReader("{}"))
		resp, err := (&http.Client{Transport: c.Transport(nil)}).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for len(e.as.tokenRequests("refresh_token")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no refresh started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.mustAuthorize(c)
	fromCallback, _ := c.Token(ctx)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Token(ctx); got != fromCallback {
		t.Errorf("the refresh replaced the token of the later authorization")
	}
	again := e.client(nil)
	if got, _ := again.Token(ctx); got != fromCallback {
		t.Errorf("the stored token is not the one of the later authorization")
	}
}

func TestTokenNeverLeavesTheServersOrigin(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{})
	c := e.client(nil)
	e.connect(c)
	var got []string
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
	}))
	t.Cleanup(elsewhere.Close)
	// The server redirects to another origin, as a login page or an open
	// redirect would.
	redirector := httptest.NewServer(http.RedirectHandler(elsewhere.URL+"/x", http.StatusTemporaryRedirect))
	t.Cleanup(redirector.Close)
	hc := &http.Client{Transport: c.Transport(nil)}
	for _, target := range []string{elsewhere.URL + "/direct", redirector.URL} {
		req, _ := http.NewRequest(http.MethodGet, target, nil)
		req.Header.Set("Authorization", "Bearer from-the-caller")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if len(got) != 2 || got[0] != "" || got[1] != "" {
		t.Errorf("another origin received Authorization %q", got)
	}
}

func TestTokenRequestsFollowNoRedirect(t *testing.T) {
	target := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(target.Close)
	for _, tc := range []struct {
		method string
		to     string
		follow bool
	}{
		{http.MethodPost, target.URL, false},
		{http.MethodGet, target.URL, true}, // loopback http counts as secure
		{http.MethodGet, "http://example.com/metadata", false},
	} {
		req, _ := http.NewRequest(tc.method, target.URL, nil)
		next, _ := http.NewRequest(http.MethodGet, tc.to, nil)
		err := checkRedirect(next, []*http.Request{req})
		if followed := err == nil; followed != tc.follow {
			t.Errorf("%s then a redirect to %s: followed %v, want %v", tc.method, tc.to, followed, tc.follow)
		}
	}
}

func TestRedactRemovesTheTokensHeldNowAndBefore(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{})
	c := e.client(nil)
	e.connect(c)
	first, err := c.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour) // expired: the next use refreshes
	second, err := c.Token(ctx)
	if err != nil || second == first {
		t.Fatalf("no refresh: %v", err)
	}
	msg := c.Redact("upstream said: bad request Bearer " + first + " then " + second)
	if strings.Contains(msg, first) || strings.Contains(msg, second) || !strings.Contains(msg, "[redacted]") {
		t.Errorf("Redact left a token: %q", msg)
	}
}

// TestInstancesSharingAStoreDoNotBothRefresh covers two proxies on one
// storage and an authorization server that rotates refresh tokens: the
// second takes the token the first refreshed instead of refreshing with a
// refresh token the rotation made invalid.
func TestInstancesSharingAStoreDoNotBothRefresh(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{})
	first := e.client(nil)
	e.connect(first)
	second := e.client(nil) // the same Store: loads the first one's token
	if got := e.call(second, ""); got != http.StatusOK {
		t.Fatalf("second instance: HTTP %d", got)
	}
	e.clock.Advance(time.Hour)
	refreshed, err := first.Token(ctx)
	if err != nil {
		t.Fatal(err)
	}
	before := e.log.count("POST /token")
	got, err := second.Token(ctx)
	if err != nil {
		t.Fatalf("second instance after the first refreshed: %v", err)
	}
	if got != refreshed || e.log.count("POST /token") != before {
		t.Errorf("the second instance refreshed again (%d token requests) instead of taking the stored token",
			e.log.count("POST /token")-before)
	}
	if st := second.Status(); st.State != StateAuthorized {
		t.Errorf("second instance: %+v", st)
	}
}

// TestAnInstanceWithoutATokenTakesTheOneAnotherInstanceStored covers two
// proxies on one storage that both loaded it before anyone authorized: the
// one nobody authorized through takes the token the other stored, looking
// at most once every StoreRecheck, and its Changed says so.
func TestAnInstanceWithoutATokenTakesTheOneAnotherInstanceStored(t *testing.T) {
	e := newEnv(t, asOptions{}, rsOptions{})
	first, second := e.client(nil), e.client(nil)
	if err := second.Authorized(ctx); err == nil {
		t.Fatal("authorized before anyone authorized")
	}
	changed := second.Changed()
	e.mustAuthorize(first)
	if err := second.Authorized(ctx); err == nil {
		t.Fatal("looked in the store again within StoreRecheck of the last look")
	}
	e.clock.Advance(StoreRecheck)
	if err := second.Authorized(ctx); err != nil {
		t.Fatalf("after StoreRecheck: %v", err)
	}
	select {
	case <-changed:
	default:
		t.Error("Changed was not signalled when the stored token was taken")
	}
	want, _ := first.Token(ctx)
	if got, _ := second.Token(ctx); got != want {
		t.Error("the second instance holds another token than the one stored")
	}
	if got := e.call(second, ""); got != http.StatusOK {
		t.Fatalf("second instance: HTTP %d", got)
	}
}

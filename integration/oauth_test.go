package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// Caddy → upstream: an MCP server protected by OAuth 2.1, authorized once
// by an administrator in a browser, without anything waiting meanwhile.

func TestOAuthProtectedUpstreamIsAuthorizedOnceWithoutBlocking(t *testing.T) {
	const apiKey, adminKey = "api-key-c0ffee11", "admin-key-5eed5eed"
	as := fixture.NewOAuthServer(t)
	storage := t.TempDir()
	global := []string{"storage file_system " + storage}
	local := testFixture(t, fixture.Options{})
	withRemote := fmt.Sprintf(`:%d {
	mcpo /tools {
		api_key %s
		admin_key %s
		server local {
			%s
		}
		server remote {
			url %s
			oauth {
				redirect_uri %s/tools/remote/oauth/callback
			}
		}
	}
}`, httpPort, apiKey, adminKey, local, as.URL, base)
	startCaddyWith(t, global, withRemote)
	key := []string{"Authorization", "Bearer " + apiKey}

	eventually(t, waitLimit, "remote to need authorization", func() bool {
		return serverOf(t, "/tools", "remote").State == "needs_auth"
	})
	t.Run("calls get 503 with the authorize page while others work", func(t *testing.T) {
		r := do(t, http.MethodPost, "/tools/remote/echo", `{"message":"hi"}`, key...)
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
			t.Fatalf("call before authorization: %s", r)
		}
		if msg := errorMessage(t, r); !strings.Contains(msg, "/tools/remote/oauth/authorize") {
			t.Errorf("message %q does not say where to authorize", msg)
		}
		if h := serverOf(t, "/tools", "remote"); h.Authorize != "/tools/remote/oauth/authorize" {
			t.Errorf("health: authorize %q", h.Authorize)
		}
		waitReadyWith(t, "/tools/local/openapi.json")
		if r := do(t, http.MethodPost, "/tools/local/echo", `{"message":"hi"}`, key...); r.status != http.StatusOK {
			t.Errorf("the other server: %s", r)
		}
	})

	authorize := func(t *testing.T) {
		t.Helper()
		if r := do(t, http.MethodGet, "/tools/remote/oauth/authorize", ""); r.status != http.StatusUnauthorized {
			t.Fatalf("authorize page without the admin key: %s", r)
		}
		if r := do(t, http.MethodGet, "/tools/remote/oauth/authorize", "", key...); r.status != http.StatusForbidden {
			t.Fatalf("authorize page with the API key instead of the admin key: %s", r)
		}
		r := do(t, http.MethodGet, "/tools/remote/oauth/authorize", "", "Authorization", basicAuth("admin", adminKey))
		if r.status != http.StatusFound {
			t.Fatalf("authorize page: %s", r)
		}
		// The browser follows the redirect to the authorization server,
		// which consents at once and sends it back to Caddy.
		cookie := flowCookieOf(t, r)
		back := follow(t, r.header.Get("Location"))
		cb, err := url.Parse(back)
		if err != nil || !strings.HasPrefix(back, base+"/tools/remote/oauth/callback?") {
			t.Fatalf("the authorization server sent the browser to %q", back)
		}
		if r := do(t, http.MethodGet, cb.RequestURI(), ""); r.status != http.StatusBadRequest {
			t.Fatalf("callback in a browser that did not start the flow: %s", r)
		}
		if r := do(t, http.MethodGet, cb.RequestURI(), "", "Cookie", cookie); r.status != http.StatusOK || !strings.Contains(string(r.body), "authorized") {
			t.Fatalf("callback: %s", r)
		}
		if r := do(t, http.MethodGet, cb.RequestURI(), "", "Cookie", cookie); r.status != http.StatusBadRequest {
			t.Errorf("the same callback twice: %s", r)
		}
	}
	authorize(t)

	eventually(t, waitLimit, "remote to be ready", func() bool {
		return serverOf(t, "/tools", "remote").State == "ready"
	})
	call := func(t *testing.T) {
		t.Helper()
		if r := do(t, http.MethodPost, "/tools/remote/echo", `{"message":"hi"}`, key...); r.status != http.StatusOK || string(r.body) != `"hi"` {
			t.Fatalf("call: %s", r)
		}
	}
	call(t)

	t.Run("tokens about to expire are refreshed", func(t *testing.T) {
		// Tokens live 62 s and are renewed a minute ahead.
		time.Sleep(2500 * time.Millisecond)
		call(t)
		if n := as.Counts().Refreshes; n == 0 {
			t.Errorf("no refresh after the token came within a minute of its expiry")
		}
	})
	t.Run("a revoked access token is refreshed and the call replayed", func(t *testing.T) {
		before := as.Counts().Refreshes
		as.RevokeAccessTokens()
		call(t)
		if as.Counts().Refreshes == before {
			t.Errorf("no refresh after the access token was refused")
		}
	})

	t.Run("tokens survive the server's removal and return", func(t *testing.T) {
		startCaddyWith(t, global, fmt.Sprintf(`:%d {
	mcpo /tools {
		api_key %s
		server local {
			%s
		}
	}
}`, httpPort, apiKey, local))
		startCaddyWith(t, global, withRemote)
		eventually(t, waitLimit, "remote to be ready without a new consent", func() bool {
			st := serverOf(t, "/tools", "remote").State
			if st == "needs_auth" {
				t.Fatal("remote needs authorization again after a reload")
			}
			return st == "ready"
		})
		call(t)
		if c := as.Counts(); c.Registrations != 1 || c.Authorizations != 1 {
			t.Errorf("counts %+v, want one registration and one authorization", c)
		}
	})

	t.Run("a revoked grant puts the server back in needs_auth until authorized again", func(t *testing.T) {
		as.RevokeAll()
		r := do(t, http.MethodPost, "/tools/remote/echo", `{"message":"hi"}`, key...)
		if r.status != http.StatusServiceUnavailable || !strings.Contains(errorMessage(t, r), "/tools/remote/oauth/authorize") {
			t.Fatalf("call after the grant was revoked: %s", r)
		}
		eventually(t, waitLimit, "remote to need authorization", func() bool {
			return serverOf(t, "/tools", "remote").State == "needs_auth"
		})
		authorize(t)
		eventually(t, waitLimit, "remote to be ready", func() bool {
			return serverOf(t, "/tools", "remote").State == "ready"
		})
		call(t)
		if c := as.Counts(); c.Registrations != 1 || c.Authorizations != 2 {
			t.Errorf("counts %+v, want the registration reused for a second authorization", c)
		}
	})

	t.Run("stored credentials are readable by the owner only", func(t *testing.T) {
		files := 0
		err := filepath.WalkDir(filepath.Join(storage, "mcpo"), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			files++
			info, err := d.Info()
			if err != nil {
				return err
			}
			if perm := info.Mode().Perm(); perm&0o077 != 0 {
				t.Errorf("%s has mode %v", p, perm)
			}
			b, err := os.ReadFile(p)
			if err == nil && (strings.Contains(string(b), apiKey) || strings.Contains(string(b), adminKey)) {
				t.Errorf("%s holds a key of the callers", p)
			}
			return err
		})
		if err != nil || files == 0 {
			t.Fatalf("stored files: %d (%v)", files, err)
		}
	})

	t.Run("a reload hands the running server the new configuration's storage", func(t *testing.T) {
		moved := t.TempDir()
		startCaddyWith(t, []string{"storage file_system " + moved}, withRemote)
		as.RevokeAccessTokens()
		call(t) // refreshed, and the new token stored
		found := false
		_ = filepath.WalkDir(filepath.Join(moved, "mcpo"), func(p string, d fs.DirEntry, err error) error {
			found = found || (err == nil && !d.IsDir())
			return nil
		})
		if !found {
			t.Error("nothing stored in the new configuration's storage after a refresh")
		}
	})

	t.Run("the upstream only ever received its own tokens", func(t *testing.T) {
		headers := as.AuthorizationHeaders()
		if len(headers) == 0 {
			t.Fatal("no request reached the upstream")
		}
		for _, h := range headers {
			if h == "" {
				continue // the first, unauthenticated request that fetches the challenge
			}
			tok, ok := strings.CutPrefix(h, "Bearer ")
			if !ok || !as.Issued(tok) || strings.Contains(h, apiKey) || strings.Contains(h, adminKey) {
				t.Errorf("the upstream received Authorization %q", h)
			}
		}
	})
}

// flowCookieOf returns the cookie an authorize page set, as a browser
// would send it back.
func flowCookieOf(t *testing.T, r response) string {
	t.Helper()
	c := (&http.Response{Header: r.header}).Cookies()
	if len(c) != 1 || c[0].Value == "" {
		t.Fatalf("the authorize page set cookies %v, want one", c)
	}
	return c[0].Name + "=" + c[0].Value
}

// follow GETs a URL outside Caddy without following its redirect, and
// returns where it redirects to.
func follow(t *testing.T, to string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, to, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("GET %s: %d", to, resp.StatusCode)
	}
	return resp.Header.Get("Location")
}

// TestOAuthTokensSurviveACaddyRestart runs the caddy binary twice over the
// same storage: the second process uses the stored token, with no new
// consent and no new registration.
func TestOAuthTokensSurviveACaddyRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the caddy binary")
	}
	const adminKey = "admin-key-0d15ea5e"
	bin := buildCaddy(t)
	as := fixture.NewOAuthServer(t)
	port := freePort()
	site := fmt.Sprintf("http://localhost:%d", port)
	config := binaryGlobalOptions(port, "storage file_system "+t.TempDir()) + fmt.Sprintf(`:%d {
	mcpo /tools {
		admin_key %s
		server remote {
			url %s
			oauth {
				redirect_uri %s/tools/remote/oauth/callback
			}
		}
	}
}
`, port, adminKey, as.URL, site)
	get := func(url string, header ...string) response {
		t.Helper()
		r, _ := sendURL(context.Background(), http.MethodGet, url, "", header...)
		return r
	}
	state := func() string {
		var h healthReport
		r := get(site + "/tools/health")
		if json.Unmarshal(r.body, &h) != nil || len(h.Servers) != 1 {
			return ""
		}
		return h.Servers[0].State
	}
	call := func() {
		t.Helper()
		r, err := sendURL(context.Background(), http.MethodPost, site+"/tools/remote/echo", `{"message":"hi"}`)
		if err != nil || r.status != http.StatusOK || string(r.body) != `"hi"` {
			t.Fatalf("call: %s (%v)", r, err)
		}
	}
	run := func() (stop func()) {
		t.Helper()
		p := runCaddy(t, bin, config)
		return func() { _ = p.stop(t) }
	}

	stop := run()
	eventually(t, waitLimit, "remote to need authorization", func() bool { return state() == "needs_auth" })
	r := get(site+"/tools/remote/oauth/authorize", "Authorization", basicAuth("admin", adminKey))
	if r.status != http.StatusFound {
		stop()
		t.Fatalf("authorize page: %s", r)
	}
	if r := get(follow(t, r.header.Get("Location")), "Cookie", flowCookieOf(t, r)); r.status != http.StatusOK {
		stop()
		t.Fatalf("callback: %s", r)
	}
	eventually(t, waitLimit, "remote to be ready", func() bool { return state() == "ready" })
	call()
	stop()

	stop = run()
	defer stop()
	eventually(t, waitLimit, "remote to be ready again", func() bool {
		st := state()
		if st == "needs_auth" {
			t.Fatal("remote needs authorization again after a restart")
		}
		return st == "ready"
	})
	call()
	if c := as.Counts(); c.Registrations != 1 || c.Authorizations != 1 {
		t.Errorf("counts %+v, want one registration and one authorization", c)
	}
}

func TestClientCredentialsUpstreamNeedsNoBrowser(t *testing.T) {
	const secret = "m2m-secret-7e57"
	t.Setenv("MCPO_TEST_M2M_SECRET", secret)
	as := fixture.NewOAuthServer(t)
	as.AddClient("caddy", secret)
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /m2m {
		url %s
		oauth {
			grant client_credentials
			client_id caddy
			client_secret {env.MCPO_TEST_M2M_SECRET}
		}
	}
}`, httpPort, as.URL))
	waitReady(t, "/m2m/openapi.json")
	if r := do(t, http.MethodPost, "/m2m/echo", `{"message":"hi"}`); r.status != http.StatusOK || string(r.body) != `"hi"` {
		t.Fatalf("call: %s", r)
	}
	if r := do(t, http.MethodGet, "/m2m/oauth/authorize", ""); r.status != http.StatusNotFound {
		t.Errorf("a client_credentials server has an authorize page: %s", r)
	}
	as.RevokeAccessTokens()
	if r := do(t, http.MethodPost, "/m2m/echo", `{"message":"again"}`); r.status != http.StatusOK {
		t.Errorf("call after the token was revoked: %s", r)
	}
	if c := as.Counts(); c.Registrations != 0 || c.Authorizations != 0 {
		t.Errorf("counts %+v: a client_credentials server registered or asked for consent", c)
	}
	for _, h := range as.AuthorizationHeaders() {
		if tok, ok := strings.CutPrefix(h, "Bearer "); h != "" && (!ok || !as.Issued(tok)) {
			t.Errorf("the upstream received Authorization %q", h)
		}
	}
}

func TestStepUpForOneToolKeepsTheOthersWorking(t *testing.T) {
	const adminKey = "admin-key-57e9"
	as := fixture.NewOAuthServer(t)
	as.RequireScopeFor("add", "tools:write")
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /tools {
		admin_key %s
		server remote {
			url %s
			oauth {
				redirect_uri %s/tools/remote/oauth/callback
			}
		}
	}
}`, httpPort, adminKey, as.URL, base))
	consent := func() url.Values {
		t.Helper()
		r := do(t, http.MethodGet, "/tools/remote/oauth/authorize", "", "Authorization", "Bearer "+adminKey)
		if r.status != http.StatusFound {
			t.Fatalf("authorize page: %s", r)
		}
		to, _ := url.Parse(r.header.Get("Location"))
		cb, err := url.Parse(follow(t, to.String()))
		if err != nil {
			t.Fatal(err)
		}
		if r := do(t, http.MethodGet, cb.RequestURI(), "", "Cookie", flowCookieOf(t, r)); r.status != http.StatusOK {
			t.Fatalf("callback: %s", r)
		}
		return to.Query()
	}
	eventually(t, waitLimit, "remote to need authorization", func() bool { return serverOf(t, "/tools", "remote").State == "needs_auth" })
	consent()
	eventually(t, waitLimit, "remote to be ready", func() bool { return serverOf(t, "/tools", "remote").State == "ready" })

	if r := do(t, http.MethodPost, "/tools/remote/echo", `{"message":"hi"}`); r.status != http.StatusOK {
		t.Fatalf("echo: %s", r)
	}
	r := do(t, http.MethodPost, "/tools/remote/add", `{"a":2,"b":3}`)
	if r.status != http.StatusServiceUnavailable || !strings.Contains(errorMessage(t, r), "/tools/remote/oauth/authorize") {
		t.Fatalf("add without its scope: %s", r)
	}
	if r := do(t, http.MethodPost, "/tools/remote/echo", `{"message":"still"}`); r.status != http.StatusOK {
		t.Fatalf("echo while add waits for more scopes: %s", r)
	}
	if q := consent(); !slices.Contains(strings.Fields(q.Get("scope")), "tools:write") {
		t.Errorf("the second consent asked for %q, want tools:write in it", q.Get("scope"))
	}
	if r := do(t, http.MethodPost, "/tools/remote/add", `{"a":2,"b":3}`); r.status != http.StatusOK || string(r.body) != "5" {
		t.Errorf("add after the step-up: %s", r)
	}
}

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// Per-user OAuth (isolation user with oauth), through Caddy: each caller
// links their own account at the upstream in a browser, from the link
// their first call gets, and their calls act with their own token.

// authorizeLink returns the link a 401 of a caller without a token gives,
// checking that the message names it.
func authorizeLink(t *testing.T, r response, site string) string {
	t.Helper()
	var body struct {
		Detail struct {
			Message   string `json:"message"`
			Authorize string `json:"authorize"`
		} `json:"detail"`
	}
	if r.status != http.StatusUnauthorized || json.Unmarshal(r.body, &body) != nil {
		t.Fatalf("a call before authorizing: %s, want 401 with the link", r)
	}
	link := body.Detail.Authorize
	if !strings.HasPrefix(link, site+"/tools/remote/oauth/authorize?ticket=") ||
		!strings.Contains(body.Detail.Message, "open "+link+" in a browser") {
		t.Fatalf("detail %+v: want the absolute authorize link, named in the message", body.Detail)
	}
	return link
}

// browser is a person's browser: it keeps cookies and follows redirects,
// and is signed in at the fixture's authorization server as account.
func browser(t *testing.T, as *fixture.OAuthServer, account string) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	issuer, err := url.Parse(as.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	jar.SetCookies(issuer, []*http.Cookie{{Name: fixture.AccountCookie, Value: account}})
	return &http.Client{Jar: jar, Transport: &http.Transport{DisableKeepAlives: true}}
}

// visit sends a request from a browser and reads the answer.
func visit(t *testing.T, b *http.Client, method, to string, form url.Values, header ...string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, to, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := b.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, to, err)
	}
	defer resp.Body.Close()
	b2, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b2}
}

// ticketField finds the ticket a confirmation page posts back.
var ticketField = regexp.MustCompile(`name=ticket value="([^"]+)"`)

// linkAccount does what the person does with the link: opens it, checks
// that the page names the caller, confirms, and follows the redirects
// through the authorization server back to the callback.
func linkAccount(t *testing.T, as *fixture.OAuthServer, link, account, caller string) {
	t.Helper()
	b := browser(t, as, account)
	page := visit(t, b, http.MethodGet, link, nil)
	m := ticketField.FindSubmatch(page.body)
	if page.status != http.StatusOK || m == nil || !strings.Contains(string(page.body), "user ID "+caller) {
		t.Fatalf("the authorize page: %s, want a confirmation naming %s", page, caller)
	}
	done := visit(t, b, http.MethodPost, link, url.Values{"ticket": {string(m[1])}})
	if done.status != http.StatusOK || !strings.Contains(string(done.body), "Your account is linked") {
		t.Fatalf("confirming, through the authorization server to the callback: %s", done)
	}
}

// accountOfCall returns the account whose token reached the upstream in a
// call of the fixture's request_info tool, checking it is one the
// authorization server issued.
func accountOfCall(t *testing.T, as *fixture.OAuthServer, r response) string {
	t.Helper()
	var info fixture.RequestInfo
	if r.status != http.StatusOK || json.Unmarshal(r.body, &info) != nil {
		t.Fatalf("request_info: %s", r)
	}
	tok, _ := strings.CutPrefix(info.Headers.Get("Authorization"), "Bearer ")
	account, ok := as.AccountOf(tok)
	if !ok {
		t.Fatalf("the upstream received Authorization %q, not a token of its authorization server", info.Headers.Get("Authorization"))
	}
	return account
}

// perUserOAuthSite is the site block, on port, of a per-user server named
// remote at /tools, reaching the fixture's OAuth-protected server; callers
// name themselves in userHeader, as a trusted proxy in front would, and
// site is the external URL of the site.
func perUserOAuthSite(port int, as *fixture.OAuthServer, site string) string {
	return fmt.Sprintf(`:%d {
	mcpo /tools {
		identity {http.request.header.%s}
		server remote {
			url %s
			isolation user
			oauth {
				redirect_uri %s/tools/remote/oauth/callback
			}
		}
	}
}
`, port, userHeader, as.URL, site)
}

func TestPerUserOAuth_EachCallerLinksTheirOwnAccount(t *testing.T) {
	as := fixture.NewOAuthServer(t)
	storage := t.TempDir()
	startCaddyWith(t, []string{"storage file_system " + storage}, perUserOAuthSite(httpPort, as, base))
	const ana, bo = "u-ana", "u-bo"
	call := func(caller string) response {
		t.Helper()
		return do(t, http.MethodPost, "/tools/remote/request_info", `{}`, userHeader, caller)
	}
	as1, bo1 := "ana@provider", "bo@provider"

	if h := serverOf(t, "/tools", "remote"); h.State != "needs_auth" {
		t.Fatalf("before anyone authorized: %+v, want needs_auth", h)
	}
	anaLink := authorizeLink(t, call(ana), base)
	if r := do(t, http.MethodGet, "/tools/remote/openapi.json", ""); r.status == http.StatusOK {
		t.Fatalf("a document before any listing: %s", r)
	}
	linkAccount(t, as, anaLink, as1, ana)
	eventually(t, waitLimit, "ana's session to list the tools", func() bool {
		return serverOf(t, "/tools", "remote").State == "ready"
	})
	if got := accountOfCall(t, as, call(ana)); got != as1 {
		t.Fatalf("ana's call acted as %q, want %q", got, as1)
	}

	t.Run("a caller who has not authorized gets their link, and the others keep working", func(t *testing.T) {
		boLink := authorizeLink(t, call(bo), base)
		if boLink == anaLink {
			t.Error("bo got ana's link")
		}
		if got := accountOfCall(t, as, call(ana)); got != as1 {
			t.Errorf("ana's call acted as %q", got)
		}
		status, h := getHealth(t, "/tools")
		if status != http.StatusOK || h.Servers[0].State != "ready" {
			t.Errorf("health while bo has not authorized: %d %+v", status, h)
		}
	})

	t.Run("a link opened by someone else, or confirmed from elsewhere, links nothing", func(t *testing.T) {
		link := authorizeLink(t, call(bo), base)
		before := as.Counts().Authorizations
		// A browser signed in here as another user (basic_auth in front).
		if r := visit(t, browser(t, as, "mallory@provider"), http.MethodGet, link, nil, userHeader, "u-mallory"); r.status != http.StatusForbidden {
			t.Errorf("bo's link opened by another signed-in user: %s", r)
		}
		// A form another site posts for the victim's browser carries no
		// confirmation cookie.
		ticket, _ := url.Parse(link)
		if r := visit(t, browser(t, as, "victim@provider"), http.MethodPost, link, url.Values{"ticket": {ticket.Query().Get("ticket")}}); r.status != http.StatusForbidden {
			t.Errorf("a confirmation posted without the page: %s", r)
		}
		if as.Counts().Authorizations != before {
			t.Error("the authorization server saw an authorization")
		}
		if r := visit(t, browser(t, as, "x"), http.MethodGet, link+"x", nil); r.status != http.StatusBadRequest {
			t.Errorf("a tampered ticket: %s", r)
		}
	})

	linkAccount(t, as, authorizeLink(t, call(bo), base), bo1, bo)
	t.Run("each caller's calls carry their own token", func(t *testing.T) {
		for caller, account := range map[string]string{ana: as1, bo: bo1} {
			if got := accountOfCall(t, as, call(caller)); got != account {
				t.Errorf("%s's call acted as %q, want %q", caller, got, account)
			}
		}
		bySession := map[string]map[string]bool{}
		for _, req := range as.Requests() {
			tok, ok := strings.CutPrefix(req.Authorization, "Bearer ")
			account, issued := as.AccountOf(tok)
			if !ok || !issued {
				t.Errorf("the upstream received Authorization %q", req.Authorization)
				continue
			}
			if bySession[req.Session] == nil {
				bySession[req.Session] = map[string]bool{}
			}
			bySession[req.Session][account] = true
		}
		for s, accounts := range bySession {
			if s != "" && len(accounts) != 1 {
				t.Errorf("the upstream session %q carried the tokens of %v", s, accounts)
			}
		}
		if c := as.Counts(); c.Registrations != 1 || c.Authorizations != 2 {
			t.Errorf("counts %+v, want one registration shared by two authorizations", c)
		}
	})

	t.Run("a grant revoked at the provider sends that caller alone back to authorize", func(t *testing.T) {
		as.RevokeAccount(bo1)
		authorizeLink(t, call(bo), base)
		if got := accountOfCall(t, as, call(ana)); got != as1 {
			t.Errorf("ana's call acted as %q", got)
		}
		if h := serverOf(t, "/tools", "remote"); h.State != "ready" {
			t.Errorf("health while bo must authorize again: %+v", h)
		}
		linkAccount(t, as, authorizeLink(t, call(bo), base), bo1, bo)
		if got := accountOfCall(t, as, call(bo)); got != bo1 {
			t.Errorf("bo's call after authorizing again acted as %q", got)
		}
	})

	t.Run("health and the admin API count callers without naming them", func(t *testing.T) {
		r := do(t, http.MethodGet, "/tools/health", "")
		if strings.Contains(string(r.body), ana) || strings.Contains(string(r.body), bo) {
			t.Errorf("health names a caller: %s", r.body)
		}
		r = mcpoAdminRequest(t, http.MethodGet, "/mcpo/servers/remote")
		var report struct {
			OAuthUsers struct{ Authorized, Unauthorized int } `json:"oauth_users"`
		}
		if err := json.Unmarshal(r.body, &report); err != nil || report.OAuthUsers.Authorized != 2 || report.OAuthUsers.Unauthorized != 0 {
			t.Errorf("admin report %s", r.body)
		}
	})

	t.Run("revoking one caller leaves the other working", func(t *testing.T) {
		if r := mcpoAdminRequest(t, http.MethodDelete, "/mcpo/servers/remote/oauth/users/"+ana); r.status != http.StatusOK {
			t.Fatalf("revoking ana: %s", r)
		}
		authorizeLink(t, call(ana), base)
		if got := accountOfCall(t, as, call(bo)); got != bo1 {
			t.Errorf("bo's call after ana's revocation acted as %q", got)
		}
		for _, s := range adminSessions(t, "remote") {
			if s.ID == ana {
				t.Errorf("ana's session runs after her revocation")
			}
		}
		if r := mcpoAdminRequest(t, http.MethodDelete, "/mcpo/servers/remote/oauth/users/"+ana); r.status != http.StatusNotFound {
			t.Errorf("revoking ana twice: %s", r)
		}
	})

	t.Run("storage names no caller and no token", func(t *testing.T) {
		var secrets []string
		for _, req := range as.Requests() {
			if tok, ok := strings.CutPrefix(req.Authorization, "Bearer "); ok {
				secrets = append(secrets, tok)
			}
		}
		files, listing := 0, false
		err := filepath.WalkDir(storage, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			files++
			rel, _ := filepath.Rel(storage, p)
			listing = listing || strings.HasSuffix(rel, "/listing")
			for _, s := range append([]string{ana, bo}, secrets...) {
				if strings.Contains(rel, s) {
					t.Errorf("the storage key %s names %q", rel, s)
				}
			}
			b, err := os.ReadFile(p)
			if err == nil && (strings.Contains(string(b), ana) || strings.Contains(string(b), bo)) {
				t.Errorf("%s holds a caller's ID", rel)
			}
			return err
		})
		if err != nil || files == 0 || !listing {
			t.Errorf("stored files: %d, the listing among them: %v (%v)", files, listing, err)
		}
	})
}

// TestPerUserOAuth_TokensAndTheListingSurviveARestartOfCaddy runs the
// caddy binary twice over the same storage: the second process has the
// tools before anyone calls, and the caller's stored token.
func TestPerUserOAuth_TokensAndTheListingSurviveARestartOfCaddy(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the caddy binary")
	}
	bin := buildCaddy(t)
	as := fixture.NewOAuthServer(t)
	port := freePort()
	site := fmt.Sprintf("http://localhost:%d", port)
	config := binaryGlobalOptions(port, "storage file_system "+t.TempDir()) + perUserOAuthSite(port, as, site)
	call := func(caller string) response {
		t.Helper()
		r, err := sendURL(context.Background(), http.MethodPost, site+"/tools/remote/request_info", `{}`, userHeader, caller)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	state := func() string {
		var h healthReport
		r, _ := sendURL(context.Background(), http.MethodGet, site+"/tools/health", "")
		if json.Unmarshal(r.body, &h) != nil || len(h.Servers) != 1 {
			return ""
		}
		return h.Servers[0].State
	}

	p := runCaddy(t, bin, config)
	eventually(t, waitLimit, "caddy to answer", func() bool { return state() == "needs_auth" })
	linkAccount(t, as, authorizeLink(t, call("u-ana"), site), "ana@provider", "u-ana")
	eventually(t, waitLimit, "the tools to be listed", func() bool { return state() == "ready" })
	if got := accountOfCall(t, as, call("u-ana")); got != "ana@provider" {
		t.Fatalf("ana's call acted as %q", got)
	}
	_ = p.stop(t)

	p = runCaddy(t, bin, config)
	defer func() { _ = p.stop(t) }()
	eventually(t, waitLimit, "caddy to answer, ready with the stored listing", func() bool {
		st := state()
		if st == "needs_auth" {
			t.Fatal("the restarted caddy has no listing before anyone calls")
		}
		return st == "ready"
	})
	if got := accountOfCall(t, as, call("u-ana")); got != "ana@provider" {
		t.Errorf("ana's call after a restart acted as %q", got)
	}
	authorizeLink(t, call("u-bo"), site)
	if c := as.Counts(); c.Registrations != 1 || c.Authorizations != 1 {
		t.Errorf("counts %+v, want one registration and one authorization", c)
	}
}

package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// userConsent is a per-user consent whose tickets are "t-<id>", naming
// the callers it knows.
type userConsent struct {
	recordingConsent
	known      map[string]Identity
	authorized []Identity
	unlisted   error
}

func (c *userConsent) Ticket(ticket string) (Identity, error) {
	id, ok := c.known[strings.TrimPrefix(ticket, "t-")]
	if !ok || !strings.HasPrefix(ticket, "t-") {
		return Identity{}, errors.New("it has expired")
	}
	return id, nil
}

func (c *userConsent) NewTicket(id Identity) string { return "t-" + id.ID }

func (c *userConsent) AuthorizeFor(_ context.Context, id Identity) (string, error) {
	c.authorized = append(c.authorized, id)
	return "https://as.example/authorize?client_id=x&state=s-" + id.ID, c.fail
}

func (c *userConsent) Unlisted(context.Context) error { return c.unlisted }

// request serves one request to b: with a form body for a POST, the
// identity the handler in front established, if any, and headers h.
func request(b *Bridge, method, rel, form string, id *Identity, h http.Header) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, "/m"+rel, strings.NewReader(form))
	if form != "" {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range h {
		r.Header[k] = v
	}
	if id != nil {
		r = r.WithContext(WithIdentity(r.Context(), *id))
	}
	w := httptest.NewRecorder()
	path, _, _ := strings.Cut(rel, "?")
	b.Serve(w, r, path, "/m")
	return w
}

func TestUserAuthorizePageConfirmsWhomTheAccountWillActFor(t *testing.T) {
	ana := Identity{ID: "u-1", Name: "Ana <admin>", Email: "ana@example.com"}
	bo := Identity{ID: "u-2"}
	confirm := "mcpo_oauth_confirm=" + stateDigest("t-u-1")
	for _, tc := range []struct {
		name     string
		method   string
		rel      string
		form     string
		own      *Identity // the browser's own identity
		header   http.Header
		status   int
		page     []string // parts of the page shown
		location string
		started  []string // the callers whose authorization started
	}{
		{name: "a ticket shows whom the account will act for", method: http.MethodGet, rel: "/remote/oauth/authorize?ticket=t-u-1",
			status: 200, page: []string{"Ana &lt;admin&gt;, ana@example.com, user ID u-1", "remote", "https://mcp.example/mcp", `value="t-u-1"`, "method=post"}},
		{name: "an unknown ticket", method: http.MethodGet, rel: "/remote/oauth/authorize?ticket=t-u-9", status: 400,
			page: []string{"cannot be used: it has expired; call one of the server's tools again"}},
		{name: "no ticket and no identity", method: http.MethodGet, rel: "/remote/oauth/authorize", status: 400,
			page: []string{"open the link that a call of one of its tools gave you"}},
		{name: "a browser with its own identity", method: http.MethodGet, rel: "/remote/oauth/authorize", own: &bo, status: 200,
			page: []string{"user ID u-2", `value="t-u-2"`}},
		{name: "a ticket of another user than the browser's", method: http.MethodGet, rel: "/remote/oauth/authorize?ticket=t-u-1", own: &bo,
			status: 403, page: []string{"made for another user"}},
		{name: "the confirmation starts the authorization", method: http.MethodPost, rel: "/remote/oauth/authorize?ticket=t-u-1", form: "ticket=t-u-1",
			header: http.Header{"Cookie": {confirm}, "Sec-Fetch-Site": {"same-origin"}}, status: 303,
			location: "https://as.example/authorize?client_id=x&state=s-u-1", started: []string{"u-1"}},
		{name: "the form's ticket decides", method: http.MethodPost, rel: "/remote/oauth/authorize?ticket=t-u-2", form: "ticket=t-u-1",
			header: http.Header{"Cookie": {confirm}}, status: 303, started: []string{"u-1"}},
		{name: "a confirmation without the page's cookie", method: http.MethodPost, rel: "/remote/oauth/authorize", form: "ticket=t-u-1",
			status: 403, page: []string{"confirm on the page the authorization link opens"}},
		{name: "a confirmation with the cookie of another ticket", method: http.MethodPost, rel: "/remote/oauth/authorize", form: "ticket=t-u-2",
			header: http.Header{"Cookie": {confirm}}, status: 403},
		{name: "a confirmation posted by another site", method: http.MethodPost, rel: "/remote/oauth/authorize", form: "ticket=t-u-1",
			header: http.Header{"Cookie": {confirm}, "Sec-Fetch-Site": {"cross-site"}}, status: 403},
		{name: "a confirmation for another user than the browser's", method: http.MethodPost, rel: "/remote/oauth/authorize", form: "ticket=t-u-1",
			own: &bo, header: http.Header{"Cookie": {confirm}}, status: 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &userConsent{known: map[string]Identity{"u-1": ana, "u-2": bo}}
			up := &statusCaller{st: upstream.Status{State: upstream.StateReady, Endpoint: "https://mcp.example/mcp"}}
			// The admin key guards only a shared server's authorize page.
			b, err := New(Config{Servers: []*ServerConfig{{Name: "remote", Upstream: up, Consent: c}},
				Access: Access{Keys: []string{"k"}, AdminKeys: []string{"admin"}}})
			if err != nil {
				t.Fatal(err)
			}
			w := request(b, tc.method, tc.rel, tc.form, tc.own, tc.header)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			for _, part := range tc.page {
				if !strings.Contains(w.Body.String(), part) {
					t.Errorf("the answer lacks %q: %s", part, w.Body)
				}
			}
			if tc.location != "" && w.Header().Get("Location") != tc.location {
				t.Errorf("Location %q, want %q", w.Header().Get("Location"), tc.location)
			}
			var started []string
			for _, id := range c.authorized {
				started = append(started, id.ID)
			}
			if strings.Join(started, ",") != strings.Join(tc.started, ",") || c.recordingConsent.authorized != 0 {
				t.Errorf("authorizations started for %v (and %d shared), want %v", started, c.recordingConsent.authorized, tc.started)
			}
			cookies := map[string]*http.Cookie{}
			for _, ck := range w.Result().Cookies() {
				cookies[ck.Name] = ck
			}
			switch {
			case w.Code == http.StatusOK:
				ck := cookies[confirmCookieName]
				if ck == nil || ck.SameSite != http.SameSiteStrictMode || !ck.HttpOnly || ck.Path != "/m/remote/oauth/authorize" || ck.MaxAge <= 0 {
					t.Errorf("confirmation cookie %+v", ck)
				}
				h := w.Header()
				if !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") || h.Get("X-Frame-Options") != "DENY" ||
					h.Get("Referrer-Policy") != "no-referrer" || h.Get("Cache-Control") != "no-store" {
					t.Errorf("the page may be framed, cached or leak its ticket: %v", h)
				}
			case w.Code == http.StatusSeeOther:
				flow := cookies[flowCookieName]
				if flow == nil || flow.Value != stateDigest("s-u-1") || flow.Path != "/m/remote/oauth/callback" {
					t.Errorf("flow cookie %+v", flow)
				}
				if ck := cookies[confirmCookieName]; ck == nil || ck.MaxAge >= 0 {
					t.Errorf("the confirmation cookie stays: %+v", ck)
				}
			default:
				if !json.Valid(w.Body.Bytes()) {
					t.Errorf("error body is not JSON: %s", w.Body)
				}
			}
		})
	}
}

// statusCaller is a server with a fixed status and the echo tool.
type statusCaller struct {
	echoCaller
	st upstream.Status
}

func (c *statusCaller) Status() upstream.Status { return c.st }

// refusingCaller is a listed server whose calls are refused, for the
// caller, with where to authorize.
type refusingCaller struct{ echoCaller }

func (*refusingCaller) CallTool(context.Context, string, json.RawMessage) (*upstream.CallResult, error) {
	return nil, &RefusedError{Status: http.StatusUnauthorized, Authorize: "https://caddy.example/m/remote/oauth/authorize?ticket=t",
		Message: "server \"remote\": open https://caddy.example/m/remote/oauth/authorize?ticket=t to link your account"}
}

func TestCallsOfCallersWhoHaveNotAuthorizedSayWhereToAuthorize(t *testing.T) {
	const link = "https://caddy.example/m/remote/oauth/authorize?ticket=t"
	refused := &RefusedError{Status: http.StatusUnauthorized, Authorize: link, Message: "open " + link + " to link your account"}
	for _, tc := range []struct {
		name     string
		upstream Caller
		unlisted error
		status   int
		detail   map[string]string
	}{
		{name: "a listed server refuses the caller", upstream: &refusingCaller{}, status: 401,
			detail: map[string]string{"authorize": link, "server": "remote", "tool": "echo"}},
		{name: "before any listing, the caller who has not authorized", upstream: &fakeCaller{}, unlisted: refused, status: 401,
			detail: map[string]string{"authorize": link, "message": "open " + link + " to link your account"}},
		{name: "before any listing, a caller who has", upstream: &unlistedCaller{&statusCaller{st: upstream.Status{State: upstream.StateNeedsAuth}}}, status: 503,
			detail: map[string]string{"message": `server "remote" acts for each caller with their own account, and has not listed its tools yet: ` +
				"a caller who has authorized it lists them with their first call; try again shortly"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &userConsent{unlisted: tc.unlisted}
			b, err := New(Config{Servers: []*ServerConfig{{Name: "remote", Upstream: tc.upstream, Consent: c}}})
			if err != nil {
				t.Fatal(err)
			}
			w := request(b, http.MethodPost, "/remote/echo", `{"text":"hi"}`, nil, nil)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			var body struct {
				Detail map[string]any `json:"detail"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.detail {
				if body.Detail[k] != v {
					t.Errorf("detail.%s = %v, want %q", k, body.Detail[k], v)
				}
			}
			if _, ok := tc.detail["authorize"]; !ok && body.Detail["authorize"] != nil {
				t.Errorf("detail.authorize = %v, want none", body.Detail["authorize"])
			}
		})
	}
}

// unlistedCaller is a server without a listing, in a given state.
type unlistedCaller struct{ *statusCaller }

func (*unlistedCaller) Tools() *upstream.ToolSet { return nil }

// The callback page of a per-user server tells the person their account
// is linked.
func TestUserCallbackSaysTheAccountIsLinked(t *testing.T) {
	c := &userConsent{}
	b, err := New(Config{Servers: []*ServerConfig{{Name: "remote", Upstream: &echoCaller{}, Consent: c}}})
	if err != nil {
		t.Fatal(err)
	}
	q := url.Values{"state": {"s"}, "code": {"c"}}
	w := request(b, http.MethodGet, "/remote/oauth/callback?"+q.Encode(), "", nil,
		http.Header{"Cookie": {flowCookieName + "=" + stateDigest("s")}})
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "Your account is linked") {
		t.Errorf("callback: %d %s", w.Code, w.Body)
	}
}

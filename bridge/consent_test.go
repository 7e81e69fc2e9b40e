package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// recordingConsent hands out a fixed URL and records callbacks.
type recordingConsent struct {
	authorized int
	callbacks  []url.Values
	fail       error
}

func (c *recordingConsent) Authorize(context.Context) (string, error) {
	c.authorized++
	return "https://as.example/authorize?client_id=x&state=s", c.fail
}

func (c *recordingConsent) ClientMetadata() []byte {
	return []byte(`{"client_id":"https://x.example/m"}`)
}

func (c *recordingConsent) Callback(_ context.Context, q url.Values) error {
	c.callbacks = append(c.callbacks, q)
	return c.fail
}

// needsAuthCaller is a server waiting for authorization.
type needsAuthCaller struct{ echoCaller }

func (*needsAuthCaller) Status() upstream.Status {
	return upstream.Status{Name: "remote", State: upstream.StateNeedsAuth, LastError: "no token"}
}

func (*needsAuthCaller) CallTool(context.Context, string, json.RawMessage) (*upstream.CallResult, error) {
	return nil, &upstream.UnavailableError{Server: "remote", State: upstream.StateNeedsAuth, Cause: errors.New("no token")}
}

func TestConsentRoutes(t *testing.T) {
	const key, admin = "api-key-1", "admin-key-1"
	for _, tc := range []struct {
		name     string
		access   Access
		single   bool
		rel      string
		auth     string
		fail     error
		cookie   string // the flow cookie sent with a callback, "" for none
		status   int
		location string
		called   int // Authorize calls, or callbacks
	}{
		{name: "authorize without any key configured", rel: "/remote/oauth/authorize", status: 302, location: "https://as.example/authorize?client_id=x&state=s", called: 1},
		{name: "authorize at a single-server mount", single: true, rel: "/oauth/authorize", status: 302, called: 1},
		{name: "authorize needs the API key", access: Access{Keys: []string{key}}, rel: "/remote/oauth/authorize", status: 401},
		{name: "authorize with the API key as Basic password", access: Access{Keys: []string{key}}, rel: "/remote/oauth/authorize", auth: basic("admin", key), status: 302, called: 1},
		{name: "admin key replaces the API keys", access: Access{Keys: []string{key}, AdminKeys: []string{admin}}, rel: "/remote/oauth/authorize", auth: "Bearer " + key, status: 403},
		{name: "authorize with the admin key", access: Access{Keys: []string{key}, AdminKeys: []string{admin}}, rel: "/remote/oauth/authorize", auth: "Bearer " + admin, status: 302, called: 1},
		{name: "authorize failing", rel: "/remote/oauth/authorize", fail: errors.New("discovery: 404"), status: 502, called: 1},
		{name: "callback needs no key", access: Access{Keys: []string{key}, ProtectDocs: true}, rel: "/remote/oauth/callback?code=c&state=s", cookie: stateDigest("s"), status: 200, called: 1},
		{name: "callback failing", rel: "/remote/oauth/callback?state=s&error=access_denied", cookie: stateDigest("s"), fail: errors.New("access_denied"), status: 400, called: 1},
		{name: "callback from a browser that did not start the flow", rel: "/remote/oauth/callback?code=c&state=s", status: 400},
		{name: "callback with the cookie of another flow", rel: "/remote/oauth/callback?code=c&state=s", cookie: stateDigest("other"), status: 400},
		{name: "client metadata is public", access: Access{Keys: []string{key}, ProtectDocs: true}, rel: "/remote/oauth/client-metadata.json", status: 200},
		{name: "other paths below oauth are not consent paths", rel: "/remote/oauth/other", status: 404},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &recordingConsent{fail: tc.fail}
			b, err := New(Config{Servers: []*ServerConfig{{Name: "remote", Upstream: &echoCaller{}, Consent: c}}, Single: tc.single, Access: tc.access})
			if err != nil {
				t.Fatal(err)
			}
			h := http.Header{}
			if tc.auth != "" {
				h.Set("Authorization", tc.auth)
			}
			if tc.cookie != "" {
				h.Set("Cookie", flowCookieName+"="+tc.cookie)
			}
			w := serve(b, http.MethodGet, tc.rel, h)
			if w.Code == http.StatusFound {
				want := "/m/remote/oauth/callback"
				if tc.single {
					want = "/m/oauth/callback"
				}
				c := w.Result().Cookies()
				if len(c) != 1 || c[0].Name != flowCookieName || c[0].Value != stateDigest("s") || c[0].Path != want ||
					!c[0].HttpOnly || c[0].SameSite != http.SameSiteLaxMode || c[0].MaxAge <= 0 {
					t.Errorf("flow cookie %+v, want one for %s", c, want)
				}
			}
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.location != "" && w.Header().Get("Location") != tc.location {
				t.Errorf("Location %q, want %q", w.Header().Get("Location"), tc.location)
			}
			called := c.authorized
			if strings.Contains(tc.rel, "callback") {
				called = len(c.callbacks)
				if called == 1 && c.callbacks[0].Get("state") != "s" {
					t.Errorf("callback query %v", c.callbacks[0])
				}
			}
			if called != tc.called {
				t.Errorf("consent called %d times, want %d", called, tc.called)
			}
			if w.Code >= 400 {
				if !json.Valid(w.Body.Bytes()) {
					t.Errorf("error body is not JSON: %s", w.Body)
				}
				if tc.fail != nil && !strings.Contains(w.Body.String(), tc.fail.Error()) {
					t.Errorf("error body %s does not say why", w.Body)
				}
			}
			if w.Header().Get("Cache-Control") == "" && w.Code != 404 {
				t.Errorf("Cache-Control %q", w.Header().Get("Cache-Control"))
			}
		})
	}
}

func TestCallsToAServerThatNeedsAuthorizationSayWhereToAuthorize(t *testing.T) {
	b, err := New(Config{Servers: []*ServerConfig{{Name: "remote", Upstream: &needsAuthCaller{}, Consent: &recordingConsent{}}}})
	if err != nil {
		t.Fatal(err)
	}
	w := serve(b, http.MethodPost, "/remote/echo", nil)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q: %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	var body struct {
		Detail struct{ Message, Authorize string } `json:"detail"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if body.Detail.Authorize != "/m/remote/oauth/authorize" || !strings.Contains(body.Detail.Message, "/m/remote/oauth/authorize") ||
		!strings.Contains(body.Detail.Message, "needs authorization") {
		t.Errorf("detail %+v", body.Detail)
	}
}

func TestHealthSaysWhereToAuthorize(t *testing.T) {
	for _, single := range []bool{false, true} {
		b, err := New(Config{Servers: []*ServerConfig{{Name: "remote", Upstream: &needsAuthCaller{}, Consent: &recordingConsent{}}}, Single: single})
		if err != nil {
			t.Fatal(err)
		}
		w := serve(b, http.MethodGet, "/health", nil)
		var report struct {
			Servers []ServerReport `json:"servers"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &report); err != nil || len(report.Servers) != 1 {
			t.Fatalf("health %d %s (%v)", w.Code, w.Body, err)
		}
		want := "/m/remote/oauth/authorize"
		if single {
			want = "/m/oauth/authorize"
		}
		if got := report.Servers[0]; got.State != upstream.StateNeedsAuth || got.Authorize != want {
			t.Errorf("single=%v: state %s, authorize %q, want %q", single, got.State, got.Authorize, want)
		}
	}
}

// stuckCaller is a ready server with a call under way since before its
// last message.
type stuckCaller struct{ fakeCaller }

var (
	stuckLastMessage = time.Date(2026, 11, 21, 20, 31, 2, 0, time.UTC)
	stuckOldestCall  = time.Date(2026, 11, 21, 20, 31, 5, 0, time.FixedZone("CET", 3600))
)

func (*stuckCaller) Status() upstream.Status {
	return upstream.Status{State: upstream.StateReady, InFlight: 1, LastMessage: stuckLastMessage, OldestCall: stuckOldestCall}
}

func TestHealthSaysWhenAServerLastSpokeAndSinceWhenACallWaits(t *testing.T) {
	b, err := New(Config{Servers: []*ServerConfig{
		{Name: "stuck", Upstream: &stuckCaller{}},
		{Name: "idle", Upstream: &fakeCaller{}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	w := serve(b, http.MethodGet, "/health", nil)
	var report struct {
		Servers []map[string]any `json:"servers"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &report); err != nil || len(report.Servers) != 2 {
		t.Fatalf("health %d %s (%v)", w.Code, w.Body, err)
	}
	stuck, idle := report.Servers[0], report.Servers[1]
	if stuck["last_message"] != "2026-11-21T20:31:02Z" || stuck["oldest_call"] != "2026-11-21T19:31:05Z" {
		t.Errorf("stuck server: last_message %v, oldest_call %v; want them in UTC", stuck["last_message"], stuck["oldest_call"])
	}
	for _, field := range []string{"last_message", "oldest_call", "retry_at"} {
		if v, ok := idle[field]; ok {
			t.Errorf("idle server: %s = %v, want it left out when unknown", field, v)
		}
	}
}

// listingCounter is a ready server that counts how often its tool listing
// is read.
type listingCounter struct {
	fakeCaller
	reads int
}

func (c *listingCounter) Tools() *upstream.ToolSet {
	c.reads++
	return &upstream.ToolSet{Tools: []*upstream.Tool{{Name: "health"}, {Name: "docs"}}}
}

func TestTheHealthReportDoesNotReadTheToolListing(t *testing.T) {
	c := &listingCounter{}
	b, err := New(Config{Single: true, Servers: []*ServerConfig{{Name: "solo", Upstream: c}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		if w := serve(b, method, "/health", nil); w.Code != http.StatusOK {
			t.Fatalf("%s /health: %d %s", method, w.Code, w.Body)
		}
	}
	if c.reads != 0 {
		t.Errorf("the health report read the tool listing %d times: a probe would build the document of each new listing", c.reads)
	}
	// A tool named health is still called with POST, and OPTIONS lists it.
	if w := serve(b, http.MethodOptions, "/health", nil); !strings.Contains(w.Header().Get("Allow"), http.MethodPost) {
		t.Errorf("OPTIONS /health: Allow %q, want POST for the tool named health", w.Header().Get("Allow"))
	}
}

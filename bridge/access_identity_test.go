package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// identityCaller is echoCaller recording the identity each call carried.
type identityCaller struct {
	echoCaller
	seen []Identity
}

func (c *identityCaller) CallTool(ctx context.Context, name string, args json.RawMessage) (*upstream.CallResult, error) {
	id, _ := IdentityFrom(ctx)
	c.seen = append(c.seen, id)
	return c.echoCaller.CallTool(ctx, name, args)
}

func TestRequiredIdentity(t *testing.T) {
	const key, named = "k-0123456789", "k-named-0123"
	alice := Identity{ID: "alice", Email: "alice@example.com"}
	noKeys := Access{RequireIdentity: true}
	protected := Access{RequireIdentity: true, ProtectDocs: true}
	keyed := Access{RequireIdentity: true, Keys: []string{key, named}, KeyUsers: map[string]string{named: "bob"}}
	for _, tc := range []struct {
		name      string
		access    Access
		method    string
		rel       string
		auth      string
		id        *Identity // put in the request's context
		why       error     // put in the request's context with WithIdentityError
		status    int
		msg       string // a part of the message
		challenge string // WWW-Authenticate
	}{
		{name: "a call with an identity", access: noKeys, method: "POST", rel: "/echo", id: &alice, status: 200},
		{name: "a call without one", access: noKeys, method: "POST", rel: "/echo", status: 401,
			msg: "this needs the caller's identity, and none was established"},
		{name: "a call without one, saying why", access: noKeys, method: "POST", rel: "/echo",
			why: errors.New("the X-OpenWebUI-User-Jwt token has expired"), status: 401, msg: "the X-OpenWebUI-User-Jwt token has expired"},
		{name: "a path without a page is guarded as a call", access: noKeys, method: "POST", rel: "/nope", status: 401},
		{name: "a document stays open", access: noKeys, method: "GET", rel: "/openapi.json", status: 200},
		{name: "the docs stay open", access: noKeys, method: "GET", rel: "/docs", status: 200},
		{name: "health stays open", access: noKeys, method: "GET", rel: "/health", status: 200},
		{name: "a consent page asks for no identity", access: noKeys, method: "GET", rel: consentCallback + "?state=x", status: 400},

		{name: "protect_docs: a document without an identity", access: protected, method: "GET", rel: "/openapi.json", status: 401, msg: "caller's identity"},
		{name: "protect_docs: health without an identity", access: protected, method: "GET", rel: "/health", status: 401},
		{name: "protect_docs: a document with an identity", access: protected, method: "GET", rel: "/openapi.json", id: &alice, status: 200},

		{name: "the key is checked first: none", access: keyed, method: "POST", rel: "/echo", id: &alice, status: 401, msg: "API key", challenge: "Bearer"},
		{name: "the key is checked first: a wrong one", access: keyed, method: "POST", rel: "/echo", auth: "Bearer nope", id: &alice, status: 403},
		{name: "a key naming no user", access: keyed, method: "POST", rel: "/echo", auth: "Bearer " + key,
			why: errors.New("the API key names no user"), status: 401, msg: "the API key names no user", challenge: "Bearer"},
		{name: "a key and an identity", access: keyed, method: "POST", rel: "/echo", auth: "Bearer " + named, id: &alice, status: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &identityCaller{}
			b, err := New(Config{Servers: []*ServerConfig{{Name: "echo", Upstream: c, Consent: &recordingConsent{}}}, Single: true, Access: tc.access})
			if err != nil {
				t.Fatal(err)
			}
			var body *strings.Reader
			if tc.method == http.MethodPost {
				body = strings.NewReader(`{"text":"hi"}`)
			} else {
				body = strings.NewReader("")
			}
			r := httptest.NewRequest(tc.method, "/m"+tc.rel, body)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			ctx := r.Context()
			if tc.id != nil {
				ctx = WithIdentity(ctx, *tc.id)
			}
			if tc.why != nil {
				ctx = WithIdentityError(ctx, tc.why)
			}
			w := httptest.NewRecorder()
			path, _, _ := strings.Cut(tc.rel, "?")
			b.Serve(w, r.WithContext(ctx), path, "/m")
			if w.Code != tc.status {
				t.Fatalf("status = %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if got := strings.Join(w.Header().Values("WWW-Authenticate"), ", "); !strings.Contains(got, tc.challenge) ||
				(tc.challenge == "" && got != "") {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tc.challenge)
			}
			if tc.status == 401 {
				if msg := decodeError(t, w.Body.Bytes()).Detail.Message; !strings.Contains(msg, tc.msg) {
					t.Errorf("message %q, want %q in it", msg, tc.msg)
				}
			}
			switch {
			case tc.method != http.MethodPost:
			case tc.status == 200 && (len(c.seen) != 1 || c.seen[0].ID != tc.id.ID || c.seen[0].Email != tc.id.Email):
				t.Errorf("the call carried %+v, want %+v", c.seen, *tc.id)
			case tc.status != 200 && len(c.seen) != 0:
				t.Errorf("a refused request reached the server: %+v", c.seen)
			}
		})
	}
}

func TestKeyUser(t *testing.T) {
	const plain, alice, bob = "k-plain-0123", "k-alice-0123", "k-bob-456789"
	access := Access{Keys: []string{plain, alice, bob}, KeyUsers: map[string]string{alice: "alice", bob: "bob"}}
	b, err := New(Config{Servers: []*ServerConfig{{Name: "echo", Upstream: &echoCaller{}}}, Single: true, Access: access})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, method, auth string
		user               string // "" for none
	}{
		{"Bearer with a key naming alice", "POST", "Bearer " + alice, "alice"},
		{"Bearer with a key naming bob", "POST", "Bearer " + bob, "bob"},
		{"a key naming nobody", "POST", "Bearer " + plain, ""},
		{"a wrong key", "POST", "Bearer " + alice + "x", ""},
		{"no key", "POST", "", ""},
		{"Basic on a read, as the key is checked", "GET", basic("anyone", alice), "alice"},
		{"Basic on a call is no key", "POST", basic("anyone", alice), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "/m/echo", nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			user, ok := b.KeyUser(r)
			if user != tc.user || ok != (tc.user != "") {
				t.Errorf("KeyUser = %q, %v; want %q", user, ok, tc.user)
			}
		})
	}
	if _, ok := newBridgeOrFail(t, Access{Keys: []string{plain}}).KeyUser(
		httptest.NewRequest("POST", "/m/echo", nil)); ok {
		t.Error("KeyUser found a user without KeyUsers")
	}
}

func TestAccessWithUsersAndIdentityIsChecked(t *testing.T) {
	srv := []*ServerConfig{{Name: "a", Upstream: &echoCaller{}}}
	if _, err := New(Config{Servers: srv, Access: Access{Keys: []string{"k"}, KeyUsers: map[string]string{"other": "alice"}}}); err == nil ||
		strings.Contains(err.Error(), "other") {
		t.Errorf("a user of a key that is not an API key: %v", err)
	}
	if _, err := New(Config{Servers: srv, Access: Access{ProtectDocs: true, RequireIdentity: true}}); err != nil {
		t.Errorf("protecting the documents with an identity and no key: %v", err)
	}
}

func newBridgeOrFail(t *testing.T, a Access) *Bridge {
	t.Helper()
	b, _ := newGatedBridge(t, true, a)
	return b
}

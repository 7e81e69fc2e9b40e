package bridge

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// echoCaller serves one tool, "echo", answering with its arguments. The
// tests here are about the gate in front of it.
type echoCaller struct{ calls int }

func (*echoCaller) Tools() *upstream.ToolSet {
	return &upstream.ToolSet{
		Server: upstream.ServerInfo{Name: "echo", Version: "1.0.0"},
		Tools:  []*upstream.Tool{{Name: "echo", InputSchema: json.RawMessage(`{"type":"object","properties":{"text":{"type":"string"}}}`)}},
	}
}

func (c *echoCaller) CallTool(_ context.Context, _ string, args json.RawMessage) (*upstream.CallResult, error) {
	c.calls++
	return &upstream.CallResult{Content: []upstream.Content{{Type: "text", Text: string(args)}}}, nil
}

func (*echoCaller) Status() upstream.Status { return upstream.Status{State: upstream.StateReady} }

func newGatedBridge(t *testing.T, single bool, a Access) (*Bridge, *echoCaller) {
	t.Helper()
	c := &echoCaller{}
	name := "echo"
	b, err := New(Config{Servers: []*ServerConfig{{Name: name, Upstream: c}}, Single: single, Access: a})
	if err != nil {
		t.Fatal(err)
	}
	return b, c
}

func serve(b *Bridge, method, rel string, h http.Header) *httptest.ResponseRecorder {
	var body *strings.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"text":"hi"}`)
	} else {
		body = strings.NewReader("")
	}
	r := httptest.NewRequest(method, "/m"+rel, body)
	for k, v := range h {
		r.Header[k] = v
	}
	w := httptest.NewRecorder()
	path, _, _ := strings.Cut(rel, "?")
	b.Serve(w, r, path, "/m")
	return w
}

func basic(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

func TestAPIKeys(t *testing.T) {
	const key, other = "k-0123456789", "second-key"
	keys := Access{Keys: []string{key, other}}
	protected := Access{Keys: []string{key}, ProtectDocs: true}
	for _, tc := range []struct {
		name      string
		access    Access
		single    bool
		method    string
		rel       string
		auth      string
		status    int
		challenge string // a part of WWW-Authenticate, when status is 401
		msg       string // a part of the message
	}{
		{name: "no keys: call without a header", access: Access{}, single: true, method: "POST", rel: "/echo", status: 200},
		{name: "no keys: a bare Bearer header is ignored", access: Access{}, single: true, method: "POST", rel: "/echo", auth: "Bearer ", status: 200},
		{name: "no keys: any header is ignored", access: Access{}, single: true, method: "POST", rel: "/echo", auth: "Bearer whatever", status: 200},

		{name: "call with the key", access: keys, single: true, method: "POST", rel: "/echo", auth: "Bearer " + key, status: 200},
		{name: "call with the second key", access: keys, single: true, method: "POST", rel: "/echo", auth: "Bearer " + other, status: 200},
		{name: "scheme is case-insensitive", access: keys, single: true, method: "POST", rel: "/echo", auth: "bearer " + key, status: 200},
		{name: "call without a header", access: keys, single: true, method: "POST", rel: "/echo", status: 401, challenge: "Bearer", msg: "Authorization: Bearer <key>"},
		{name: "call with a bare Bearer header", access: keys, single: true, method: "POST", rel: "/echo", auth: "Bearer ", status: 401, challenge: "Bearer"},
		{name: "call with a wrong key", access: keys, single: true, method: "POST", rel: "/echo", auth: "Bearer nope", status: 403, msg: "not valid"},
		{name: "call with a key prefix", access: keys, single: true, method: "POST", rel: "/echo", auth: "Bearer " + key[:5], status: 403},
		{name: "call with the key and more", access: keys, single: true, method: "POST", rel: "/echo", auth: "Bearer " + key + "x", status: 403},
		{name: "call with Basic is not accepted", access: keys, single: true, method: "POST", rel: "/echo", auth: basic("u", key), status: 401, msg: `scheme "Basic"`},
		{name: "call in a mount of several servers", access: keys, method: "POST", rel: "/echo/echo", status: 401},
		{name: "unknown path needs the key too", access: keys, method: "POST", rel: "/nope/x", status: 401},

		{name: "document open without protect_docs", access: keys, single: true, method: "GET", rel: "/openapi.json", status: 200},
		{name: "docs open without protect_docs", access: keys, single: true, method: "GET", rel: "/docs", status: 200},
		{name: "health open without protect_docs", access: keys, method: "GET", rel: "/health", status: 200},

		{name: "protected document without a header", access: protected, single: true, method: "GET", rel: "/openapi.json", status: 401, challenge: "Basic"},
		{name: "protected document with Bearer", access: protected, single: true, method: "GET", rel: "/openapi.json", auth: "Bearer " + key, status: 200},
		{name: "protected docs with Basic", access: protected, single: true, method: "GET", rel: "/docs", auth: basic("anyone", key), status: 200},
		{name: "protected docs with a wrong Basic password", access: protected, single: true, method: "GET", rel: "/docs", auth: basic("anyone", "nope"), status: 403},
		{name: "protected docs with an empty Basic password", access: protected, single: true, method: "GET", rel: "/docs", auth: basic(key, ""), status: 401},
		{name: "protected docs with broken Basic", access: protected, single: true, method: "GET", rel: "/docs", auth: "Basic !!!", status: 401},
		{name: "protected aggregate document", access: protected, method: "GET", rel: "/openapi.json", status: 401},
		{name: "protected server document", access: protected, method: "GET", rel: "/echo/openapi.json", auth: "Bearer " + key, status: 200},
		{name: "protected health", access: protected, method: "GET", rel: "/health", status: 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, c := newGatedBridge(t, tc.single, tc.access)
			h := http.Header{}
			if tc.auth != "" {
				h.Set("Authorization", tc.auth)
			}
			w := serve(b, tc.method, tc.rel, h)
			if w.Code != tc.status {
				t.Fatalf("status = %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.method == http.MethodPost && tc.status != 200 && c.calls != 0 {
				t.Errorf("the upstream was called %d times by a refused request", c.calls)
			}
			if tc.status == 401 || tc.status == 403 {
				var body struct {
					Detail struct{ Message string } `json:"detail"`
				}
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Detail.Message == "" {
					t.Fatalf("body %q is not a JSON error: %v", w.Body, err)
				}
				if !strings.Contains(body.Detail.Message, tc.msg) {
					t.Errorf("message %q does not contain %q", body.Detail.Message, tc.msg)
				}
				for _, k := range tc.access.Keys {
					if strings.Contains(w.Body.String(), k) {
						t.Errorf("the answer holds a key: %s", w.Body)
					}
				}
			}
			got := strings.Join(w.Header().Values("WWW-Authenticate"), ", ")
			if tc.status == 401 && !strings.Contains(got, tc.challenge) {
				t.Errorf("WWW-Authenticate = %q, want %q in it", got, tc.challenge)
			}
			if tc.status != 401 && got != "" {
				t.Errorf("WWW-Authenticate = %q on a %d", got, tc.status)
			}
		})
	}
}

func TestAPIKeyMustNotBeEmpty(t *testing.T) {
	if _, err := New(Config{Servers: []*ServerConfig{{Name: "a", Upstream: &echoCaller{}}}, Access: Access{Keys: []string{"k", ""}}}); err == nil || !strings.Contains(err.Error(), "API key 2 is empty") {
		t.Fatalf("err = %v, want one naming the empty key", err)
	}
	if _, err := New(Config{Servers: []*ServerConfig{{Name: "a", Upstream: &echoCaller{}}}, Access: Access{ProtectDocs: true}}); err == nil {
		t.Fatal("protecting the documents without a key was accepted")
	}
}

func TestDocumentsDeclareSecurity(t *testing.T) {
	basicScheme := &openapi3.SecurityScheme{Type: "http", Scheme: "basic"}
	header := &openapi3.SecurityScheme{Type: "apiKey", In: "header", Name: "X-API-Key"}
	for _, tc := range []struct {
		name   string
		access Access
		want   *openapi3.SecurityScheme // nil: no security at all
	}{
		{"none", Access{}, nil},
		{"api keys declare bearer", Access{Keys: []string{"key-7f3a9c"}}, BearerScheme()},
		{"basic_auth in front", Access{Scheme: basicScheme}, basicScheme},
		{"a key header checked elsewhere", Access{Scheme: header}, header},
	} {
		for _, single := range []bool{true, false} {
			rel := "/echo/openapi.json"
			if single {
				rel = "/openapi.json"
			}
			for _, doc := range []string{rel, "/openapi.json"} {
				if single && doc != rel {
					continue
				}
				t.Run(tc.name+" "+doc, func(t *testing.T) {
					b, _ := newGatedBridge(t, single, tc.access)
					h := http.Header{}
					for _, k := range tc.access.Keys {
						h.Set("Authorization", "Bearer "+k)
					}
					w := serve(b, http.MethodGet, doc, h)
					if w.Code != 200 {
						t.Fatalf("status %d: %s", w.Code, w.Body)
					}
					for _, k := range tc.access.Keys {
						if strings.Contains(w.Body.String(), k) {
							t.Fatal("the document holds the API key")
						}
					}
					d, err := openapi3.NewLoader().LoadFromData(w.Body.Bytes())
					if err != nil {
						t.Fatal(err)
					}
					if err := d.Validate(context.Background()); err != nil {
						t.Fatalf("invalid document: %v", err)
					}
					ops := 0
					for _, item := range d.Paths.Map() {
						op := item.Post
						ops++
						switch {
						case tc.want == nil && op.Security != nil:
							t.Errorf("operation %s requires %v", op.OperationID, *op.Security)
						case tc.want != nil && (op.Security == nil || len(*op.Security) != 1 || (*op.Security)[0][SecuritySchemeName] == nil):
							t.Errorf("operation %s: security %v, want [{%s: []}]", op.OperationID, op.Security, SecuritySchemeName)
						}
					}
					if ops == 0 {
						t.Fatal("no operations")
					}
					got := d.Components.SecuritySchemes[SecuritySchemeName]
					if tc.want == nil {
						if len(d.Components.SecuritySchemes) != 0 {
							t.Errorf("security schemes %v, want none", d.Components.SecuritySchemes)
						}
						return
					}
					if got == nil || got.Value.Type != tc.want.Type || got.Value.Scheme != tc.want.Scheme ||
						got.Value.In != tc.want.In || got.Value.Name != tc.want.Name {
						t.Errorf("scheme %+v, want %+v", got, tc.want)
					}
				})
			}
		}
	}
}

func TestCORS(t *testing.T) {
	const key = "k-cors"
	const site = "https://chat.example.com"
	anyOrigin := Access{Keys: []string{key}, CORS: &CORS{Origins: []string{"*"}}}
	listed := Access{Keys: []string{key}, CORS: &CORS{Origins: []string{"https://Chat.Example.com"}, MaxAge: time.Hour}}
	preflight := http.Header{
		"Origin":                         {site},
		"Access-Control-Request-Method":  {"POST"},
		"Access-Control-Request-Headers": {"authorization,content-type,x-session-id"},
	}
	for _, tc := range []struct {
		name        string
		access      Access
		method, rel string
		header      http.Header
		status      int
		allowOrigin string // "" for none
		maxAge      string
	}{
		{name: "preflight of a call is answered before the key", access: anyOrigin, method: "OPTIONS", rel: "/echo", header: preflight, status: 204, allowOrigin: "*", maxAge: "600"},
		{name: "preflight of the document", access: anyOrigin, method: "OPTIONS", rel: "/openapi.json", header: preflight, status: 204, allowOrigin: "*", maxAge: "600"},
		{name: "preflight from a listed origin", access: listed, method: "OPTIONS", rel: "/echo", header: preflight, status: 204, allowOrigin: site, maxAge: "3600"},
		{name: "preflight from another origin", access: listed, method: "OPTIONS", rel: "/echo", header: http.Header{"Origin": {"https://evil.example"}, "Access-Control-Request-Method": {"POST"}}, status: 403},
		{name: "401 carries the CORS headers", access: anyOrigin, method: "POST", rel: "/echo", header: http.Header{"Origin": {site}}, status: 401, allowOrigin: "*"},
		{name: "403 carries the CORS headers", access: listed, method: "POST", rel: "/echo", header: http.Header{"Origin": {site}, "Authorization": {"Bearer nope"}}, status: 403, allowOrigin: site},
		{name: "a call carries the CORS headers", access: listed, method: "POST", rel: "/echo", header: http.Header{"Origin": {site}, "Authorization": {"Bearer " + key}}, status: 200, allowOrigin: site},
		{name: "404 carries the CORS headers", access: anyOrigin, method: "POST", rel: "/nope", header: http.Header{"Origin": {site}, "Authorization": {"Bearer " + key}}, status: 404, allowOrigin: "*"},
		{name: "the document carries the CORS headers", access: anyOrigin, method: "GET", rel: "/openapi.json", header: http.Header{"Origin": {site}}, status: 200, allowOrigin: "*"},
		{name: "another origin gets no CORS headers", access: listed, method: "GET", rel: "/openapi.json", header: http.Header{"Origin": {"https://evil.example"}}, status: 200},
		{name: "no Origin, no CORS headers", access: anyOrigin, method: "GET", rel: "/openapi.json", status: 200},
		{name: "without cors a preflight is a plain OPTIONS", access: Access{Keys: []string{key}}, method: "OPTIONS", rel: "/echo", header: preflight, status: 204},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, c := newGatedBridge(t, true, tc.access)
			w := serve(b, tc.method, tc.rel, tc.header)
			if w.Code != tc.status {
				t.Fatalf("status = %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.method == http.MethodOptions && c.calls != 0 {
				t.Error("a preflight reached the upstream")
			}
			h := w.Header()
			if got := h.Get("Access-Control-Allow-Origin"); got != tc.allowOrigin {
				t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, tc.allowOrigin)
			}
			if tc.access.CORS != nil && !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
				t.Errorf("Vary = %q, want Origin in it", h.Values("Vary"))
			}
			if tc.maxAge != "" {
				if got := h.Get("Access-Control-Max-Age"); got != tc.maxAge {
					t.Errorf("Access-Control-Max-Age = %q, want %q", got, tc.maxAge)
				}
				if got := h.Get("Access-Control-Allow-Headers"); !strings.Contains(strings.ToLower(got), "authorization") {
					t.Errorf("Access-Control-Allow-Headers = %q, want authorization in it", got)
				}
				if got := h.Get("Access-Control-Allow-Methods"); !strings.Contains(got, "POST") {
					t.Errorf("Access-Control-Allow-Methods = %q, want POST in it", got)
				}
			}
			if tc.allowOrigin != "" && tc.method != http.MethodOptions && !strings.Contains(h.Get("Access-Control-Expose-Headers"), "WWW-Authenticate") {
				t.Errorf("Access-Control-Expose-Headers = %q", h.Get("Access-Control-Expose-Headers"))
			}
		})
	}
}

// No answer to a refused credential repeats it, wherever in the header
// the secret stands: as the scheme (a header without one), after an
// unknown scheme, inside Basic, malformed or not, or as a wrong key; on a
// call, a protected document and an admin page.
func TestNoAnswerRepeatsACredential(t *testing.T) {
	const key, admin = "k-0123456789", "admin-0123456789"
	const secret = "sk-SECRET-4f9a2c7e"
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	headers := map[string]http.Header{
		"no Authorization, secrets elsewhere": {"X-Api-Key": {secret}, "Proxy-Authorization": {"Bearer " + secret}},
		"a bare secret":                       {"Authorization": {secret}},
		"a secret glued to Bearer":            {"Authorization": {"Bearer" + secret}},
		"a secret and more":                   {"Authorization": {secret + " more"}},
		"a secret, a tab and more":            {"Authorization": {secret + "\tmore"}},
		"a secret twice":                      {"Authorization": {secret + " " + secret}},
		"a leading space":                     {"Authorization": {" " + secret}},
		"an unknown scheme":                   {"Authorization": {"Token " + secret}},
		"a known scheme not accepted":         {"Authorization": {`Digest username="` + secret + `"`}},
		"a wrong Bearer key":                  {"Authorization": {"Bearer " + secret}},
		"malformed Basic":                     {"Authorization": {"Basic " + secret}},
		"Basic without a colon":               {"Authorization": {"Basic " + b64(secret)}},
		"Basic with the secret as user":       {"Authorization": {"Basic " + b64(secret+":")}},
		"Basic with the secret as password":   {"Authorization": {"Basic " + b64("user:"+secret)}},
		"two Authorization headers":           {"Authorization": {secret, "Bearer " + secret}},
	}
	access := Access{Keys: []string{key}, AdminKeys: []string{admin}, ProtectDocs: true}
	for _, page := range []struct{ name, method, rel string }{
		{"a call", http.MethodPost, "/echo"},
		{"a protected document", http.MethodGet, "/openapi.json"},
		{"a protected health report", http.MethodGet, "/health"},
		{"an admin page", http.MethodGet, consentAuthorize},
	} {
		for name, h := range headers {
			t.Run(page.name+", "+name, func(t *testing.T) {
				c := &echoCaller{}
				b, err := New(Config{Servers: []*ServerConfig{{Name: "echo", Upstream: c, Consent: &recordingConsent{}}}, Single: true, Access: access})
				if err != nil {
					t.Fatal(err)
				}
				w := serve(b, page.method, page.rel, h)
				if w.Code != http.StatusUnauthorized && w.Code != http.StatusForbidden {
					t.Fatalf("status %d %s, want 401 or 403", w.Code, w.Body)
				}
				decodeError(t, w.Body.Bytes())
				answer := strings.ToLower(w.Body.String() + fmt.Sprint(w.Header()))
				for _, s := range []string{secret, b64(secret), "secret-4f9a2c7e"} {
					if strings.Contains(answer, strings.ToLower(s)) {
						t.Errorf("the answer repeats the secret: %d %v %s", w.Code, w.Header(), w.Body)
					}
				}
			})
		}
	}
}

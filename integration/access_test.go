package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/mark3labs/mcp-go/server"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// Callers → Caddy: API keys, CORS, and composition with Caddy's own
// authentication handlers.

// credentialRecorder serves the fixture over Streamable HTTP and records
// every credential-like header the upstream receives.
type credentialRecorder struct {
	URL string

	mu   sync.Mutex
	seen []string // "Header: value" for each credential header received
	reqs int
}

func newCredentialRecorder(t *testing.T) *credentialRecorder {
	t.Helper()
	rec := &credentialRecorder{}
	mcp := server.NewStreamableHTTPServer(fixture.New(fixture.Options{}), server.WithDisableLocalhostProtection(true))
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.reqs++
		for _, h := range []string{"Authorization", "Proxy-Authorization", "Cookie", "X-Api-Key"} {
			for _, v := range r.Header.Values(h) {
				rec.seen = append(rec.seen, h+": "+v)
			}
		}
		rec.mu.Unlock()
		mcp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = mcp.Shutdown(ctx) // ends the sessions Caddy still holds
		ts.CloseClientConnections()
		ts.Close()
	})
	rec.URL = ts.URL + "/mcp"
	return rec
}

// check fails the test if the upstream received any credential, or no
// request at all.
func (c *credentialRecorder) check(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reqs == 0 {
		t.Fatal("the upstream received no request")
	}
	if len(c.seen) > 0 {
		t.Errorf("the upstream received credentials: %q", c.seen)
	}
}

// errorMessage returns the message of a JSON error body, failing the test
// if the body is not one.
func errorMessage(t *testing.T, r response) string {
	t.Helper()
	var body struct {
		Detail struct {
			Message string `json:"message"`
		} `json:"detail"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || body.Detail.Message == "" {
		t.Fatalf("not a JSON error: %s (%v)", r, err)
	}
	return body.Detail.Message
}

func basicAuth(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// waitReadyWith is waitReady for a document that needs credentials.
func waitReadyWith(t *testing.T, docPath string, header ...string) []byte {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		r := do(t, http.MethodGet, docPath, "", header...)
		if r.status == http.StatusOK {
			return r.body
		}
		if r.status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("GET %s: %s", docPath, r)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// declaredScheme returns the security scheme every operation of a document
// requires, failing the test unless they all require the same one.
func declaredScheme(t *testing.T, body []byte) *openapi3.SecurityScheme {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(body)
	if err != nil {
		t.Fatal(err)
	}
	var name string
	for path, item := range doc.Paths.Map() {
		op := item.Post
		if op.Security == nil || len(*op.Security) != 1 || len((*op.Security)[0]) != 1 {
			t.Fatalf("POST %s: security %v, want one scheme", path, op.Security)
		}
		for n := range (*op.Security)[0] {
			if name != "" && n != name {
				t.Fatalf("POST %s requires %q, others %q", path, n, name)
			}
			name = n
		}
	}
	ref := doc.Components.SecuritySchemes[name]
	if ref == nil || ref.Value == nil {
		t.Fatalf("scheme %q is not in the components: %v", name, doc.Components.SecuritySchemes)
	}
	return ref.Value
}

func TestAPIKeysGuardCallsAndNeverReachTheUpstream(t *testing.T) {
	const envKey, fileKey = "env-key-5a0b7c2e", "file-key-93d1f4aa"
	t.Setenv("MCPO_TEST_API_KEY", envKey)
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(fileKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rec := newCredentialRecorder(t)
	const origin = "https://chat.example.com"
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /keyed {
		url %s
		api_key {env.MCPO_TEST_API_KEY}
		api_key {file.%s}
		cors %s
	}
	mcpo /guarded {
		%s
		api_key {env.MCPO_TEST_API_KEY}
		protect_docs
	}
}`, httpPort, rec.URL, keyFile, origin, testFixture(t, fixture.Options{})))

	// The document is open, and declares the key.
	doc := waitReady(t, "/keyed/openapi.json")
	loadDoc(t, "api-key", doc, fixture.InputSchemas(fixture.Options{}))
	if s := declaredScheme(t, doc); s.Type != "http" || s.Scheme != "bearer" {
		t.Errorf("declared scheme %+v, want http bearer", s)
	}
	for _, k := range []string{envKey, fileKey} {
		if strings.Contains(string(doc), k) {
			t.Fatal("the document holds an API key")
		}
	}

	const args = `{"message":"hi"}`
	for _, tc := range []struct {
		name   string
		header []string
		status int
		msg    string
	}{
		{"no key", nil, 401, "API key"},
		{"bare Bearer, as Open WebUI sends without a key", []string{"Authorization", "Bearer "}, 401, "API key"},
		{"wrong key", []string{"Authorization", "Bearer " + envKey + "x"}, 403, "not valid"},
		{"Basic on a call", []string{"Authorization", basicAuth("u", envKey)}, 401, "Basic"},
		{"key from the environment", []string{"Authorization", "Bearer " + envKey}, 200, ""},
		{"key from a file", []string{"Authorization", "Bearer " + fileKey}, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, http.MethodPost, "/keyed/echo", args, append([]string{"Content-Type", "application/json"}, tc.header...)...)
			if r.status != tc.status {
				t.Fatalf("POST /keyed/echo: %s, want %d", r, tc.status)
			}
			if tc.status == 200 {
				if string(r.body) != `"hi"` {
					t.Errorf("body %s, want \"hi\"", r.body)
				}
				return
			}
			if msg := errorMessage(t, r); !strings.Contains(msg, tc.msg) {
				t.Errorf("message %q, want %q in it", msg, tc.msg)
			}
			if tc.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", r.header.Get("WWW-Authenticate"))
			}
		})
	}

	t.Run("CORS preflight is answered before the key", func(t *testing.T) {
		r := do(t, http.MethodOptions, "/keyed/echo", "", "Origin", origin,
			"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,content-type")
		if r.status != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != origin ||
			!strings.Contains(r.header.Get("Access-Control-Allow-Headers"), "authorization") {
			t.Fatalf("preflight: %s %v", r, r.header)
		}
	})
	t.Run("a 401 to a browser carries the CORS headers", func(t *testing.T) {
		r := do(t, http.MethodPost, "/keyed/echo", args, "Origin", origin)
		if r.status != http.StatusUnauthorized || r.header.Get("Access-Control-Allow-Origin") != origin {
			t.Fatalf("POST without a key from %s: %s %v", origin, r, r.header)
		}
	})
	t.Run("an unlisted origin gets no CORS headers", func(t *testing.T) {
		r := do(t, http.MethodGet, "/keyed/openapi.json", "", "Origin", "https://elsewhere.example")
		if r.status != http.StatusOK || r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Fatalf("GET from another origin: %d %v", r.status, r.header)
		}
	})

	t.Run("protect_docs guards the documents, docs and health", func(t *testing.T) {
		for _, path := range []string{"/guarded/openapi.json", "/guarded/docs", "/guarded/health"} {
			r := do(t, http.MethodGet, path, "")
			if r.status != http.StatusUnauthorized {
				t.Fatalf("GET %s without a key: %s", path, r)
			}
			if !strings.Contains(strings.Join(r.header.Values("WWW-Authenticate"), ", "), "Basic") {
				t.Errorf("GET %s: WWW-Authenticate %q, want a Basic challenge for browsers", path, r.header.Values("WWW-Authenticate"))
			}
		}
		waitReadyWith(t, "/guarded/openapi.json", "Authorization", "Bearer "+envKey)
		if r := do(t, http.MethodGet, "/guarded/docs", "", "Authorization", basicAuth("anyone", envKey)); r.status != http.StatusOK ||
			!strings.Contains(r.header.Get("Content-Type"), "text/html") {
			t.Errorf("GET /guarded/docs with Basic: %d %s", r.status, r.header.Get("Content-Type"))
		}
		if r := do(t, http.MethodGet, "/guarded/openapi.json", "", "Authorization", basicAuth("anyone", fileKey)); r.status != http.StatusForbidden {
			t.Errorf("GET /guarded/openapi.json with a key of another mount: %s", r)
		}
		if r := do(t, http.MethodPost, "/guarded/echo", args, "Authorization", "Bearer "+envKey); r.status != http.StatusOK {
			t.Errorf("POST /guarded/echo with the key: %s", r)
		}
	})

	rec.check(t)
}

func TestBasicAuthInFrontComposesWithCORSAndDeclaredSecurity(t *testing.T) {
	const user, password = "alice", "pw-6d1e0f"
	hash, err := caddyauth.BcryptHash{}.Hash([]byte(password))
	if err != nil {
		t.Fatal(err)
	}
	rec := newCredentialRecorder(t)
	const origin = "https://chat.example.com"
	// basic_auth runs before mcpo (Caddy's directive order); preflights
	// carry no credentials, so they are let through to mcpo's CORS.
	startCaddy(t, fmt.Sprintf(`:%d {
	@authenticated not method OPTIONS
	basic_auth @authenticated {
		%s %s
	}
	mcpo /behind {
		url %s
		security basic
		cors *
	}
}`, httpPort, user, hash, rec.URL))

	if r := do(t, http.MethodGet, "/behind/openapi.json", ""); r.status != http.StatusUnauthorized {
		t.Fatalf("GET without credentials passed basic_auth: %s", r)
	}
	creds := []string{"Authorization", basicAuth(user, password)}
	doc := waitReadyWith(t, "/behind/openapi.json", creds...)
	loadDoc(t, "basic-auth", doc, fixture.InputSchemas(fixture.Options{}))
	if s := declaredScheme(t, doc); s.Type != "http" || s.Scheme != "basic" {
		t.Errorf("declared scheme %+v, want http basic", s)
	}
	if r := do(t, http.MethodPost, "/behind/echo", `{"message":"hi"}`, creds...); r.status != http.StatusOK || string(r.body) != `"hi"` {
		t.Errorf("POST with credentials: %s", r)
	}
	if r := do(t, http.MethodPost, "/behind/echo", `{"message":"hi"}`, "Authorization", basicAuth(user, "wrong")); r.status != http.StatusUnauthorized {
		t.Errorf("POST with a wrong password: %s", r)
	}
	r := do(t, http.MethodOptions, "/behind/echo", "", "Origin", origin,
		"Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,content-type")
	if r.status != http.StatusNoContent || r.header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("preflight: %s %v", r, r.header)
	}
	rec.check(t)
}

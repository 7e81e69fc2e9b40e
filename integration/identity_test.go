package integration

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
	"github.com/caddy-mcpo/caddy-mcpo/internal/identity/jwttest"
)

// Who is calling: the identity setting, through Caddy. What a user sees
// of it is the 401 a call without a valid identity gets, and where the
// identity shows: the access log's user_id, a log_append field, and a
// deferred response header, which Caddy sets once mcpo has set the
// placeholders.

// owuiSecret is the secret shared with "Open WebUI" in these tests.
const owuiSecret = "owui-forward-jwt-secret-for-the-tests-4b7e9c"

// pyJWT encodes claims as Open WebUI does, with PyJWT: jwt.encode(claims,
// secret, algorithm="HS256"). It skips the test when no python3 on the
// PATH has PyJWT.
func pyJWT(t *testing.T, claims map[string]any, secret string) string {
	t.Helper()
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("python3", "-c",
		`import json, sys, jwt; print(jwt.encode(json.loads(sys.argv[1]), sys.stdin.read(), algorithm="HS256"))`, string(b))
	cmd.Stdin = strings.NewReader(secret)
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("no python3 with PyJWT on the PATH (%v): the unit test of the verifier checks a token PyJWT made", err)
	}
	return strings.TrimSpace(string(out))
}

// logLines returns the JSON log entries of the files, failing on a line
// that is not JSON.
func logLines(t *testing.T, files ...string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var e map[string]any
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("%s: a line that is not JSON: %.200s", f, sc.Bytes())
			}
			out = append(out, e)
		}
	}
	return out
}

// accessEntry returns the access log entry of the request to uri, nil
// if there is none yet.
func accessEntry(entries []map[string]any, uri string) map[string]any {
	for _, e := range entries {
		if req, _ := e["request"].(map[string]any); req != nil && req["uri"] == uri && e["status"] != nil {
			return e
		}
	}
	return nil
}

func TestOpenWebUIUserTokenIdentifiesTheCaller(t *testing.T) {
	const apiKey = "owui-connection-key-0b1c2d"
	t.Setenv("MCPO_TEST_OWUI_SECRET", owuiSecret)
	t.Setenv("MCPO_TEST_OWUI_KEY", apiKey)
	dir := t.TempDir()
	mainLog, accessLog := filepath.Join(dir, "caddy.log"), filepath.Join(dir, "access.log")
	// The access log logs request headers, and redacts only Authorization,
	// Cookie and their like: the token is dropped from it as the README
	// says. log_append and the deferred header read the placeholders mcpo
	// sets; the plain header is applied before mcpo runs.
	startCaddyWith(t, []string{fmt.Sprintf("log {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel DEBUG\n\t}", mainLog)},
		fmt.Sprintf(`:%d {
	log {
		output file %s
		format filter {
			wrap json
			request>headers>X-Openwebui-User-Jwt delete
		}
	}
	log_append user_email {mcpo.user.email}
	log_append user_role {mcpo.user.role}
	header >X-Mcpo-User {mcpo.user.id}
	header X-Before-Mcpo "id={mcpo.user.id}"
	mcpo /owui {
		%s
		api_key {env.MCPO_TEST_OWUI_KEY}
		identity openwebui_jwt {env.MCPO_TEST_OWUI_SECRET} {
			leeway 30s
		}
	}
}
`, httpPort, accessLog, testFixture(t, fixture.Options{})))
	waitReady(t, "/owui/openapi.json") // the document stays open: no protect_docs

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	owuiClaims := func(sub string, changes map[string]any) map[string]any {
		return jwttest.OpenWebUIClaims(sub, time.Now(), changes)
	}
	hs256 := func(sub string, changes map[string]any) func(t *testing.T) string {
		return func(t *testing.T) string {
			return jwttest.Sign(t, jose.HS256, []byte(owuiSecret), owuiClaims(sub, changes))
		}
	}
	now := time.Now().Unix()
	var tokens []string // every token sent, none of which may show anywhere
	for i, tc := range []struct {
		name  string
		token func(t *testing.T) string // nil: no header
		user  string                    // the identity of an accepted call
		msg   string                    // a part of the 401's message
	}{
		{name: "a token as Open WebUI mints it", token: hs256("u-alice", nil), user: "u-alice"},
		{name: "a token PyJWT encoded", user: "u-pyjwt", token: func(t *testing.T) string {
			return pyJWT(t, owuiClaims("u-pyjwt", nil), owuiSecret)
		}},
		{name: "expired within the leeway", token: hs256("u-late", map[string]any{"exp": now - 10}), user: "u-late"},
		{name: "expired beyond the leeway", token: hs256("u-x", map[string]any{"iat": now - 400, "exp": now - 100}),
			msg: "the X-OpenWebUI-User-Jwt token is not valid: it has expired (exp)"},
		{name: "issued in the future beyond the leeway", token: hs256("u-x", map[string]any{"iat": now + 120}),
			msg: "it was issued in the future (iat)"},
		{name: "no exp", token: hs256("u-x", map[string]any{"exp": nil}), msg: "it has no expiry (exp)"},
		{name: "signed with another secret", msg: "its signature does not match the shared secret", token: func(t *testing.T) string {
			return jwttest.Sign(t, jose.HS256, []byte(owuiSecret+"-other"), owuiClaims("u-x", nil))
		}},
		{name: "alg none", msg: `it is signed with "none": only HS256 is accepted`, token: func(t *testing.T) string {
			return jwttest.Unsigned(t, map[string]any{"alg": "none", "typ": "JWT"}, owuiClaims("u-x", nil))
		}},
		{name: "alg HS512", msg: `it is signed with "HS512": only HS256 is accepted`, token: func(t *testing.T) string {
			return jwttest.Sign(t, jose.HS512, []byte(owuiSecret+owuiSecret), owuiClaims("u-x", nil))
		}},
		{name: "alg RS256", msg: `it is signed with "RS256": only HS256 is accepted`, token: func(t *testing.T) string {
			return jwttest.Sign(t, jose.RS256, rsaKey, owuiClaims("u-x", nil))
		}},
		{name: "another issuer", token: hs256("u-x", map[string]any{"iss": "not-open-webui"}), msg: "it was not issued by Open WebUI"},
		{name: "no sub", token: hs256("u-x", map[string]any{"sub": nil}), msg: "it names no user (sub)"},
		{name: "malformed", token: func(*testing.T) string { return "eyJhbGciOiJIUzI1NiJ9.not-a-jwt" }, msg: "it is not a well-formed JWT"},
		{name: "no token", msg: "this needs the caller's identity: the X-OpenWebUI-User-Jwt header is missing"},
		{name: "NUL in sub", token: hs256("u\x00root", nil), msg: "the caller's identity is not acceptable: the id holds a control character"},
		{name: "a newline in sub", token: hs256("u\nroot", nil), msg: "the caller's identity is not acceptable: the id holds a control character"},
		{name: "a header injection in the email", token: hs256("u-x", map[string]any{"email": "a@example.com\r\nX-Admin: 1"}),
			msg: "the caller's identity is not acceptable: the email holds a control character"},
		// About 14 KB of token: within Caddy's 16 KiB of request headers.
		{name: "a 10 KB sub", token: hs256(strings.Repeat("x", 10<<10), map[string]any{"email": "x@example.com", "name": "X"}),
			msg: "the caller's identity is not acceptable: the id is 10240 bytes long, more than 128"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			header := []string{"Content-Type", "application/json", "Authorization", "Bearer " + apiKey}
			if tc.token != nil {
				tok := tc.token(t)
				tokens = append(tokens, tok)
				header = append(header, "X-OpenWebUI-User-Jwt", tok)
			}
			uri := fmt.Sprintf("/owui/echo?case=%d", i)
			r := do(t, http.MethodPost, uri, `{"message":"hi"}`, header...)
			if tc.user != "" {
				if r.status != http.StatusOK || string(r.body) != `"hi"` {
					t.Fatalf("POST with a good token: %s", r)
				}
				if got := r.header.Get("X-Mcpo-User"); got != tc.user {
					t.Errorf("the deferred header says %q, want %q", got, tc.user)
				}
				if got := r.header.Get("X-Before-Mcpo"); strings.Contains(got, tc.user) {
					t.Errorf("a header applied before mcpo saw the identity: %q", got)
				}
				var entry map[string]any
				eventually(t, 10*time.Second, "the access log has the call", func() bool {
					entry = accessEntry(logLines(t, accessLog), uri)
					return entry != nil
				})
				if entry["user_id"] != tc.user || entry["user_email"] != tc.user+"@example.com" || entry["user_role"] != "user" {
					t.Errorf("the access log says user_id %v, user_email %v, user_role %v; want %s", entry["user_id"], entry["user_email"], entry["user_role"], tc.user)
				}
				return
			}
			if r.status != http.StatusUnauthorized {
				t.Fatalf("POST: %s, want 401", r)
			}
			if msg := errorMessage(t, r); !strings.Contains(msg, tc.msg) {
				t.Errorf("message %q, want %q in it", msg, tc.msg)
			}
			if got := r.header.Get("X-Mcpo-User"); got != "" {
				t.Errorf("a refused call was answered as user %q", got)
			}
		})
	}

	t.Run("the API key is still checked first", func(t *testing.T) {
		tok := jwttest.Sign(t, jose.HS256, []byte(owuiSecret), owuiClaims("u-alice", nil))
		tokens = append(tokens, tok)
		r := do(t, http.MethodPost, "/owui/echo", `{"message":"hi"}`, "X-OpenWebUI-User-Jwt", tok)
		if r.status != http.StatusUnauthorized || !strings.Contains(errorMessage(t, r), "API key") {
			t.Errorf("a token without the connection's key: %s", r)
		}
	})

	t.Run("no token or secret in any answer or log line", func(t *testing.T) {
		// The answers were checked as they came: read them again in full.
		for _, tok := range tokens {
			r := do(t, http.MethodPost, "/owui/echo", `{"message":"hi"}`, "Authorization", "Bearer "+apiKey, "X-OpenWebUI-User-Jwt", tok)
			answer := string(r.body) + fmt.Sprint(r.header)
			for _, s := range []string{tok, owuiSecret, strings.SplitN(tok, ".", 3)[1]} {
				if len(s) > 8 && strings.Contains(answer, s) {
					t.Fatalf("an answer holds a token or the secret: %s %v", r, r.header)
				}
			}
		}
		eventually(t, 10*time.Second, "the access log has every call", func() bool {
			return len(logLines(t, accessLog)) >= 2*len(tokens)
		})
		for _, f := range []string{mainLog, accessLog} {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range append([]string{owuiSecret, apiKey}, tokens...) {
				if bytes.Contains(b, []byte(s)) {
					t.Errorf("%s holds a token, the key or the secret", filepath.Base(f))
				}
			}
		}
		// The refusals are logged at DEBUG, with their reasons.
		var reasons int
		for _, e := range logLines(t, mainLog) {
			if e["msg"] == "no caller identity" {
				reasons++
			}
		}
		if reasons == 0 {
			t.Error("no refused identity is logged")
		}
	})
}

func TestIdentityFromBasicAuthInFront(t *testing.T) {
	// bcrypt at its lowest cost, so that each request checks the password
	// in a moment, also under the race detector.
	const aliceHash = "$2a$04$vGKvUodL5EyKAkwaWJwmMe2frVTFNDDrNHM4op0mlRcnXhbBXOZXK" // pw-alice
	const bobHash = "$2a$04$QLYx85foEGNTnDpjvDyABuBE3K5.GZloTN5.LYjbkoeJ23tSu.Pmq"   // pw-bob
	accessLog := filepath.Join(t.TempDir(), "access.log")
	startCaddy(t, fmt.Sprintf(`:%d {
	log {
		output file %s
		format json
	}
	basic_auth {
		alice %s
		bob %s
	}
	header >X-Mcpo-User {mcpo.user.id}
	mcpo /basic {
		%s
		identity {http.auth.user.id}
		security basic
		protect_docs
	}
}
`, httpPort, accessLog, aliceHash, bobHash, testFixture(t, fixture.Options{})))
	waitReadyWith(t, "/basic/openapi.json", "Authorization", basicAuth("alice", "pw-alice"))
	for _, user := range []string{"alice", "bob"} {
		uri := "/basic/echo?user=" + user
		r := do(t, http.MethodPost, uri, `{"message":"hi"}`, "Authorization", basicAuth(user, "pw-"+user))
		if r.status != http.StatusOK || r.header.Get("X-Mcpo-User") != user {
			t.Errorf("POST as %s: %s, X-Mcpo-User %q", user, r, r.header.Get("X-Mcpo-User"))
		}
		var entry map[string]any
		eventually(t, 10*time.Second, "the access log has the call", func() bool {
			entry = accessEntry(logLines(t, accessLog), uri)
			return entry != nil
		})
		if entry["user_id"] != user {
			t.Errorf("the access log says user_id %v, want %s", entry["user_id"], user)
		}
	}
	if r := do(t, http.MethodPost, "/basic/echo", `{"message":"hi"}`, "Authorization", basicAuth("alice", "wrong")); r.status != http.StatusUnauthorized {
		t.Errorf("a wrong password passed basic_auth: %s", r)
	}
}

func TestAPIKeysNameTheirUsers(t *testing.T) {
	const aliceKey, bobKey, plainKey = "key-of-alice-7c1e", "key-of-bob-93fa", "key-of-nobody-51d0"
	t.Setenv("MCPO_TEST_ALICE_KEY", aliceKey)
	t.Setenv("MCPO_TEST_BOB_KEY", bobKey)
	t.Setenv("MCPO_TEST_PLAIN_KEY", plainKey)
	startCaddy(t, fmt.Sprintf(`:%d {
	header >X-Mcpo-User {mcpo.user.id}
	mcpo /keys {
		%s
		identity api_key
		api_key {env.MCPO_TEST_ALICE_KEY} alice
		api_key {env.MCPO_TEST_BOB_KEY} bob
		api_key {env.MCPO_TEST_PLAIN_KEY}
	}
}
`, httpPort, testFixture(t, fixture.Options{})))
	waitReady(t, "/keys/openapi.json")
	for _, tc := range []struct {
		name, key string
		status    int
		user      string
		msg       string
	}{
		{name: "alice's key", key: aliceKey, status: 200, user: "alice"},
		{name: "bob's key", key: bobKey, status: 200, user: "bob"},
		{name: "a key naming nobody", key: plainKey, status: 401, msg: "the API key presented names no user"},
		{name: "a wrong key", key: aliceKey + "x", status: 403, msg: "not valid"},
		{name: "no key", status: 401, msg: "API key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var header []string
			if tc.key != "" {
				header = []string{"Authorization", "Bearer " + tc.key}
			}
			r := do(t, http.MethodPost, "/keys/echo", `{"message":"hi"}`, header...)
			if r.status != tc.status {
				t.Fatalf("POST: %s, want %d", r, tc.status)
			}
			if tc.status == 200 {
				if got := r.header.Get("X-Mcpo-User"); got != tc.user {
					t.Errorf("answered as %q, want %q", got, tc.user)
				}
				return
			}
			if msg := errorMessage(t, r); !strings.Contains(msg, tc.msg) {
				t.Errorf("message %q, want %q in it", msg, tc.msg)
			}
			if tc.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", r.header.Get("WWW-Authenticate"))
			}
			if strings.Contains(string(r.body)+fmt.Sprint(r.header), tc.key) && tc.key != "" {
				t.Errorf("the answer repeats the key: %s", r)
			}
		})
	}
}

// A placeholder identity takes whatever the placeholder holds: values no
// header can carry reach it through a query parameter (a test-only source:
// any caller can set a query parameter).
func TestHostileIdentitiesAreRefusedOrTakenAsOpaque(t *testing.T) {
	startCaddy(t, fmt.Sprintf(`:%d {
	header >X-Mcpo-User {mcpo.user.id}
	mcpo /q {
		%s
		identity {http.request.uri.query.user}
	}
}
`, httpPort, testFixture(t, fixture.Options{})))
	waitReady(t, "/q/openapi.json")
	for _, tc := range []struct {
		name, user string
		msg        string // "" for accepted
	}{
		{name: "a path is an opaque id", user: "../x"},
		{name: "quotes and spaces", user: `O'Brien "x" $(id)`},
		{name: "128 bytes", user: strings.Repeat("é", 64)},
		{name: "no user", user: "", msg: "this needs the caller's identity, and {http.request.uri.query.user} is empty"},
		{name: "NUL", user: "alice\x00admin", msg: "the caller's identity is not acceptable: the id holds a control character"},
		{name: "a newline", user: "alice\nadmin", msg: "the caller's identity is not acceptable: the id holds a control character"},
		{name: "CR LF", user: "alice\r\nX-Admin: 1", msg: "the id holds a control character"},
		{name: "invalid UTF-8", user: "alice\xff", msg: "the id is not valid UTF-8"},
		{name: "10 KB", user: strings.Repeat("u", 10<<10), msg: "the id is 10240 bytes long, more than 128"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, http.MethodPost, "/q/echo?user="+url.QueryEscape(tc.user), `{"message":"hi"}`)
			if tc.msg == "" {
				if r.status != http.StatusOK || r.header.Get("X-Mcpo-User") != tc.user {
					t.Errorf("POST as %q: %s, answered as %q", tc.user, r, r.header.Get("X-Mcpo-User"))
				}
				return
			}
			if r.status != http.StatusUnauthorized {
				t.Fatalf("POST as %q: %s, want 401", tc.user, r)
			}
			msg := errorMessage(t, r)
			if !strings.Contains(msg, tc.msg) {
				t.Errorf("message %q, want %q in it", msg, tc.msg)
			}
			if tc.user != "" && strings.Contains(msg, tc.user) {
				t.Errorf("the message repeats the identity: %q", msg)
			}
		})
	}
}

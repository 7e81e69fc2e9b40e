package caddymcpo

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
	"github.com/caddy-mcpo/caddy-mcpo/internal/identity/jwttest"
)

// keys returns API keys without users.
func keys(k ...string) []APIKey {
	out := make([]APIKey, len(k))
	for i, key := range k {
		out[i] = APIKey{Key: key}
	}
	return out
}

const testJWTSecret = "a-secret-of-32-bytes-or-more-0123456789"

func TestHandlerValidate_Identity(t *testing.T) {
	cmd := []*ServerConfig{{Command: "prog"}}
	jwtSource := func(s IdentitySource) *IdentitySource {
		s.Source = sourceOpenWebUI
		if s.Secret == "" {
			s.Secret = "{env.OWUI_JWT_SECRET}"
		}
		return &s
	}
	named := []APIKey{{Key: "{env.A}", User: "alice"}, {Key: "{env.K}"}}
	for _, tc := range []struct {
		name   string
		h      Handler
		err    string
		fields []string
	}{
		{name: "a placeholder", h: Handler{Servers: cmd, Identity: &IdentitySource{Source: "placeholder", Placeholder: "{http.auth.user.id}"}}},
		{name: "a placeholder in a value", h: Handler{Servers: cmd, Identity: &IdentitySource{Source: "placeholder", Placeholder: "basic:{http.auth.user.id}"}}},
		{name: "Open WebUI's token", h: Handler{Servers: cmd, Identity: jwtSource(IdentitySource{})}},
		{name: "Open WebUI's token in another header, with a leeway", h: Handler{Servers: cmd,
			Identity: jwtSource(IdentitySource{Header: "X-User-Token", Leeway: caddy.Duration(time.Minute)})}},
		{name: "keys naming users", h: Handler{Servers: cmd, APIKeys: named, Identity: &IdentitySource{Source: "api_key"}}},
		{name: "protect_docs with an identity and no key", h: Handler{Servers: cmd, ProtectDocs: true,
			Identity: &IdentitySource{Source: "placeholder", Placeholder: "{http.auth.user.id}"}}},

		{name: "an unknown source", h: Handler{Servers: cmd, Identity: &IdentitySource{Source: "oidc"}},
			err: `identity source "oidc": want placeholder, openwebui_jwt or api_key`, fields: []string{"identity.source"}},
		{name: "a placeholder without one", h: Handler{Servers: cmd, Identity: &IdentitySource{Source: "placeholder", Placeholder: "alice"}},
			err: `identity "alice": want a placeholder such as {http.auth.user.id}`, fields: []string{"identity.placeholder"}},
		{name: "a placeholder with a secret", h: Handler{Servers: cmd, Identity: &IdentitySource{Source: "placeholder", Placeholder: "{http.auth.user.id}", Secret: "s"}},
			err: "apply to identity openwebui_jwt only", fields: []string{"identity.secret", "identity.header", "identity.leeway"}},
		{name: "api_key with a leeway", h: Handler{Servers: cmd, APIKeys: named, Identity: &IdentitySource{Source: "api_key", Leeway: 1}},
			err: "apply to identity openwebui_jwt only", fields: []string{"identity.secret", "identity.header", "identity.leeway"}},
		{name: "Open WebUI's token without a secret", h: Handler{Servers: cmd, Identity: &IdentitySource{Source: "openwebui_jwt"}},
			err: "identity openwebui_jwt needs the secret", fields: []string{"identity.secret"}},
		{name: "Open WebUI's token with a placeholder", h: Handler{Servers: cmd, Identity: jwtSource(IdentitySource{Placeholder: "{x}"})},
			err: "placeholder applies to identity placeholder only", fields: []string{"identity.placeholder"}},
		{name: "a header name with a space", h: Handler{Servers: cmd, Identity: jwtSource(IdentitySource{Header: "X User"})},
			err: `identity header "X User" is not a header name`, fields: []string{"identity.header"}},
		{name: "a leeway of an hour", h: Handler{Servers: cmd, Identity: jwtSource(IdentitySource{Leeway: caddy.Duration(time.Hour)})},
			err: "identity leeway 1h0m0s: want a duration up to 5m0s", fields: []string{"identity.leeway"}},
		{name: "api_key without a key naming a user", h: Handler{Servers: cmd, APIKeys: keys("k"), Identity: &IdentitySource{Source: "api_key"}},
			err: "identity api_key needs API keys naming their users", fields: []string{"identity"}},
		{name: "a key naming a user without identity", h: Handler{Servers: cmd, APIKeys: named},
			err: "only identity api_key uses", fields: []string{"api_keys"}},
		{name: "a key naming a user with another source", h: Handler{Servers: cmd, APIKeys: named, Identity: jwtSource(IdentitySource{})},
			err: "the identity comes from openwebui_jwt", fields: []string{"api_keys", "identity"}},
		{name: "protect_docs with neither key nor identity", h: Handler{Servers: cmd, ProtectDocs: true},
			err: "protect_docs needs an api_key or an identity", fields: []string{"protect_docs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assertValidation(t, tc.h.Validate(), tc.err, tc.fields)
		})
	}
}

func TestUnmarshalCaddyfile_Identity(t *testing.T) {
	for _, tc := range []struct {
		name, input string
		want        *IdentitySource
		keys        []APIKey
	}{
		{name: "a placeholder", input: "identity {http.auth.user.id}",
			want: &IdentitySource{Source: "placeholder", Placeholder: "{http.auth.user.id}"}},
		{name: "Open WebUI's token", input: "identity openwebui_jwt {env.OWUI_JWT_SECRET}",
			want: &IdentitySource{Source: "openwebui_jwt", Secret: "{env.OWUI_JWT_SECRET}"}},
		{name: "Open WebUI's token with a block", input: "identity openwebui_jwt {file./run/secrets/owui} {\n\theader X-User-Token\n\tleeway 1m\n}",
			want: &IdentitySource{Source: "openwebui_jwt", Secret: "{file./run/secrets/owui}", Header: "X-User-Token", Leeway: caddy.Duration(time.Minute)}},
		{name: "API keys naming users", input: "identity api_key\napi_key {env.ALICE_KEY} alice\napi_key {env.SHARED_KEY}",
			want: &IdentitySource{Source: "api_key"}, keys: []APIKey{{Key: "{env.ALICE_KEY}", User: "alice"}, {Key: "{env.SHARED_KEY}"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := parseMcpoBlock(t, "mcpo /x {\n\tcommand prog\n\t"+strings.ReplaceAll(tc.input, "\n", "\n\t")+"\n}")
			if err != nil {
				t.Fatal(err)
			}
			assertSameHandler(t, h, &Handler{Mount: "/x", Servers: []*ServerConfig{{Command: "prog"}}, Identity: tc.want, APIKeys: tc.keys})
		})
	}
	for _, tc := range []struct {
		name, input string
		line        int
		substrs     []string
	}{
		{name: "no source", input: "identity", line: 3, substrs: []string{"wrong argument count", "identity <placeholder>|openwebui_jwt <secret>|api_key"}},
		{name: "Open WebUI's token without a secret", input: "identity openwebui_jwt", line: 3, substrs: []string{"wrong argument count"}},
		{name: "api_key with an argument", input: "identity api_key alice", line: 3, substrs: []string{"wrong argument count"}},
		{name: "two placeholders", input: "identity {a} {b}", line: 3, substrs: []string{"wrong argument count"}},
		{name: "not a placeholder", input: "identity alice", line: 3, substrs: []string{`identity "alice": want a placeholder`}},
		{name: "twice", input: "identity api_key\n\tidentity api_key", line: 4, substrs: []string{"identity given twice"}},
		{name: "an unknown subdirective in the block", input: "identity openwebui_jwt {env.S} {\n\t\tissuer x\n\t}", line: 4,
			substrs: []string{`unknown identity subdirective "issuer": want header, leeway`}},
		{name: "a block for a placeholder", input: "identity {http.auth.user.id} {\n\t\tleeway 1m\n\t}", line: 4,
			substrs: []string{"apply to identity openwebui_jwt only"}},
		{name: "a leeway that is no duration", input: "identity openwebui_jwt {env.S} {\n\t\tleeway soon\n\t}", line: 4,
			substrs: []string{`leeway "soon"`}},
		{name: "api_key with three arguments", input: "api_key k alice bob", line: 3, substrs: []string{"wrong argument count", "api_key <key> [<user>]"}},
		{name: "a key naming a user without identity api_key", input: "api_key k alice", line: 3, substrs: []string{"only identity api_key uses"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseMcpoBlock(t, "mcpo /x {\n\tcommand prog\n\t"+tc.input+"\n}")
			assertErrAtLine(t, err, tc.line, tc.substrs...)
		})
	}
}

func TestAPIKeyJSON(t *testing.T) {
	var h Handler
	in := `{"api_keys": ["{env.K}", {"key": "{env.A}", "user": "alice"}, {"key": "{env.B}"}]}`
	if err := json.Unmarshal([]byte(in), &h); err != nil {
		t.Fatal(err)
	}
	want := []APIKey{{Key: "{env.K}"}, {Key: "{env.A}", User: "alice"}, {Key: "{env.B}"}}
	if !reflect.DeepEqual(h.APIKeys, want) {
		t.Errorf("api_keys = %+v, want %+v", h.APIKeys, want)
	}
	out, err := json.Marshal(h.APIKeys)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != `["{env.K}",{"key":"{env.A}","user":"alice"},"{env.B}"]` {
		t.Errorf("encoded as %s", out)
	}
	for _, bad := range []string{`{"api_keys": [{"key": "k", "usr": "alice"}]}`, `{"api_keys": [42]}`} {
		if err := json.Unmarshal([]byte(bad), &h); err == nil {
			t.Errorf("%s was accepted", bad)
		}
	}
}

func TestHandlerAccess_KeysNamingUsers(t *testing.T) {
	t.Setenv("MCPO_TEST_ALICE", "key-of-alice")
	t.Setenv("MCPO_TEST_USER", "bob")
	t.Setenv("MCPO_TEST_BAD_USER", "eve\nroot")
	for _, tc := range []struct {
		name  string
		keys  []APIKey
		users map[string]string
		err   string
	}{
		{name: "a key naming a user, another none", keys: []APIKey{{Key: "{env.MCPO_TEST_ALICE}", User: "alice"}, {Key: "plain"}},
			users: map[string]string{"key-of-alice": "alice"}},
		{name: "a user from a placeholder", keys: []APIKey{{Key: "k", User: "{env.MCPO_TEST_USER}"}}, users: map[string]string{"k": "bob"}},
		{name: "the same key twice for one user", keys: []APIKey{{Key: "k", User: "alice"}, {Key: "k", User: "alice"}},
			users: map[string]string{"k": "alice"}},
		{name: "the same key for two users", keys: []APIKey{{Key: "k", User: "alice"}, {Key: "{env.MCPO_TEST_ALICE}"}, {Key: "k", User: "bob"}},
			err: "api_key 3 is api_key 1 again, with another user"},
		{name: "the same key with a user and without", keys: []APIKey{{Key: "k", User: "alice"}, {Key: "k"}},
			err: "api_key 2 is api_key 1 again"},
		{name: "a user with a newline", keys: []APIKey{{Key: "k"}, {Key: "k2", User: "{env.MCPO_TEST_BAD_USER}"}},
			err: "api_key 2: its user cannot be an identity: the id holds a control character"},
		{name: "a user of 129 bytes", keys: []APIKey{{Key: "k", User: strings.Repeat("u", 129)}}, err: "more than 128"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := (&Handler{APIKeys: tc.keys, Identity: &IdentitySource{Source: sourceAPIKey}}).access(caddy.NewReplacer())
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("access: %v, want an error saying %q", err, tc.err)
				}
				for _, secret := range []string{"key-of-alice", "eve"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("the error %q holds a key or a user", err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(a.KeyUsers, tc.users) || !a.RequireIdentity {
				t.Errorf("KeyUsers = %v (identity required: %v), want %v", a.KeyUsers, a.RequireIdentity, tc.users)
			}
		})
	}
}

func TestIdentifier_SecretIsResolvedAndNeverShown(t *testing.T) {
	t.Setenv("MCPO_TEST_JWT_SECRET", testJWTSecret)
	t.Setenv("MCPO_TEST_SHORT_SECRET", "short-secret-1234")
	t.Setenv("MCPO_TEST_EMPTY_SECRET", "")
	for _, tc := range []struct {
		name, secret, err string
	}{
		{name: "from the environment", secret: "{env.MCPO_TEST_JWT_SECRET}"},
		{name: "a literal", secret: testJWTSecret},
		{name: "empty", secret: "{env.MCPO_TEST_EMPTY_SECRET}", err: "identity openwebui_jwt secret: evaluated placeholder {env.MCPO_TEST_EMPTY_SECRET} is empty"},
		{name: "unset", secret: "{env.MCPO_TEST_UNSET_SECRET}", err: "MCPO_TEST_UNSET_SECRET"},
		{name: "too short", secret: "{env.MCPO_TEST_SHORT_SECRET}", err: "the secret is shorter than 32 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x, err := (&IdentitySource{Source: sourceOpenWebUI, Secret: tc.secret}).identifier(caddy.NewReplacer())
			if tc.err == "" {
				if err != nil || x.jwt == nil || x.header != "X-OpenWebUI-User-Jwt" {
					t.Fatalf("identifier: %+v, %v", x, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("identifier: %v, want an error saying %q", err, tc.err)
			}
			if strings.Contains(err.Error(), "short-secret") {
				t.Errorf("the error %q holds the secret", err)
			}
		})
	}
}

// openWebUIToken signs claims as Open WebUI does, with testJWTSecret.
func openWebUIToken(t *testing.T, claims map[string]any) string {
	t.Helper()
	return jwttest.Sign(t, jose.HS256, []byte(testJWTSecret), claims)
}

func TestIdentify(t *testing.T) {
	now := time.Now().Unix()
	userClaims := func(sub string) map[string]any {
		return map[string]any{"sub": sub, "email": "zoe@example.com", "name": "Zoë", "role": "user", "iss": "open-webui", "iat": now, "exp": now + 300}
	}
	jwtSource, err := (&IdentitySource{Source: sourceOpenWebUI, Secret: testJWTSecret}).identifier(caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	placeholder := &identifier{source: sourcePlaceholder, placeholder: "{http.auth.user.id}"}
	keySource := &identifier{source: sourceAPIKey}
	keyUser := func(r *http.Request) (string, bool) {
		u := r.Header.Get("X-Test-Key-User")
		return u, u != ""
	}
	for _, tc := range []struct {
		name   string
		x      *identifier
		header http.Header
		authID string // {http.auth.user.id}
		want   bridge.Identity
		err    string
	}{
		{name: "a placeholder", x: placeholder, authID: "alice", want: bridge.Identity{ID: "alice"}},
		{name: "a path as the id", x: placeholder, authID: "../x", want: bridge.Identity{ID: "../x"}},
		{name: "an empty placeholder", x: placeholder, err: "this needs the caller's identity, and {http.auth.user.id} is empty"},
		{name: "a placeholder with NUL", x: placeholder, authID: "a\x00b", err: "the caller's identity is not acceptable: the id holds a control character"},
		{name: "a placeholder of 10 KB", x: placeholder, authID: strings.Repeat("x", 10<<10), err: "the caller's identity is not acceptable: the id is 10240 bytes long"},

		{name: "Open WebUI's token", x: jwtSource, header: http.Header{"X-Openwebui-User-Jwt": {openWebUIToken(t, userClaims("u-1"))}},
			want: bridge.Identity{ID: "u-1", Email: "zoe@example.com", Name: "Zoë", Role: "user"}},
		{name: "no token", x: jwtSource, err: "this needs the caller's identity: the X-OpenWebUI-User-Jwt header is missing"},
		{name: "an empty token", x: jwtSource, header: http.Header{"X-Openwebui-User-Jwt": {""}}, err: "header is missing"},
		{name: "two tokens", x: jwtSource, header: http.Header{"X-Openwebui-User-Jwt": {openWebUIToken(t, userClaims("u-1")), openWebUIToken(t, userClaims("u-2"))}},
			err: "the X-OpenWebUI-User-Jwt header is sent more than once"},
		{name: "a bad token", x: jwtSource, header: http.Header{"X-Openwebui-User-Jwt": {"not-a-token"}},
			err: "the caller's identity could not be verified: the X-OpenWebUI-User-Jwt token is not valid: it is not a well-formed JWT"},
		{name: "a newline in sub", x: jwtSource, header: http.Header{"X-Openwebui-User-Jwt": {openWebUIToken(t, userClaims("u\n1"))}},
			err: "the caller's identity is not acceptable: the id holds a control character"},
		{name: "a newline in the name", x: jwtSource, header: http.Header{"X-Openwebui-User-Jwt": {openWebUIToken(t, map[string]any{
			"sub": "u-1", "name": "Zoë\r\nX-Admin: yes", "iss": "open-webui", "exp": now + 300})}},
			err: "the caller's identity is not acceptable: the name holds a control character"},

		{name: "a key naming a user", x: keySource, header: http.Header{"X-Test-Key-User": {"bob"}}, want: bridge.Identity{ID: "bob"}},
		{name: "a key naming nobody", x: keySource, err: "this needs the caller's identity: the API key presented names no user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/x/tool", nil)
			for k, v := range tc.header {
				r.Header[k] = v
			}
			repl := caddy.NewReplacer()
			repl.Set("http.auth.user.id", tc.authID)
			got, err := tc.x.identify(r, repl, keyUser)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("identify: %v", err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("identify = %+v, want %+v", got, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("identify: %v, want an error saying %q", err, tc.err)
			}
			if got.ID != "" {
				t.Errorf("a refused identity came back: %+v", got)
			}
			for _, v := range tc.header {
				if v[0] != "" && strings.Contains(err.Error(), v[0]) {
					t.Errorf("the error %q repeats the header", err)
				}
			}
		})
	}
}

func TestEstablish_SetsThePlaceholdersAndTheContext(t *testing.T) {
	x, err := (&IdentitySource{Source: sourceOpenWebUI, Secret: testJWTSecret}).identifier(caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	h := &Handler{identity: x, logger: zap.NewNop()}
	now := time.Now().Unix()
	for _, tc := range []struct {
		name, authID string // {http.auth.user.id} before
		claims       map[string]any
		want         map[string]string
		refused      bool
	}{
		{name: "every claim", claims: map[string]any{"sub": "u-1", "email": "zoe@example.com", "name": "Zoë", "role": "admin",
			"groups": []string{"eng", "ops"}, "iss": "open-webui", "exp": now + 60},
			want: map[string]string{"mcpo.user.id": "u-1", "mcpo.user.email": "zoe@example.com", "mcpo.user.name": "Zoë",
				"mcpo.user.role": "admin", "mcpo.user.groups": "eng,ops", "http.auth.user.id": "u-1"}},
		{name: "only sub: the others resolve to nothing", claims: map[string]any{"sub": "u-2", "iss": "open-webui", "exp": now + 60},
			want: map[string]string{"mcpo.user.id": "u-2", "mcpo.user.email": "", "mcpo.user.name": "", "mcpo.user.role": "",
				"mcpo.user.groups": "", "http.auth.user.id": "u-2"}},
		{name: "an authentication handler's user is kept", authID: "basic-user",
			claims: map[string]any{"sub": "u-3", "iss": "open-webui", "exp": now + 60},
			want:   map[string]string{"mcpo.user.id": "u-3", "http.auth.user.id": "basic-user"}},
		{name: "a refused token: the placeholders resolve to nothing", claims: map[string]any{"sub": "u-4", "iss": "open-webui", "exp": now - 3600},
			refused: true, want: map[string]string{"mcpo.user.id": "", "mcpo.user.email": "", "mcpo.user.groups": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repl := caddy.NewReplacer()
			if tc.authID != "" {
				repl.Set("http.auth.user.id", tc.authID)
			}
			r := httptest.NewRequest(http.MethodPost, "/x/tool", nil)
			r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
			r.Header.Set("X-OpenWebUI-User-Jwt", openWebUIToken(t, tc.claims))
			got := h.establish(r)
			for k, v := range tc.want {
				if s, _ := repl.GetString(k); s != v {
					t.Errorf("{%s} = %q, want %q", k, s, v)
				}
			}
			id, ok := bridge.IdentityFrom(got.Context())
			if ok == tc.refused || (ok && id.ID != tc.want["mcpo.user.id"]) {
				t.Errorf("the context carries %+v (%v)", id, ok)
			}
			if _, set := repl.Get("mcpo.user.email"); !set {
				t.Error("{mcpo.user.email} is not set")
			}
			if _, set := repl.Get("http.auth.user.id"); set != (tc.authID != "" || !tc.refused) {
				t.Errorf("{http.auth.user.id} set: %v", set)
			}
		})
	}
}

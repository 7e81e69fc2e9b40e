package caddymcpo

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

func TestServerSpec_CarriesStopTimeouts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server ServerConfig
		want   upstream.Options
	}{
		{
			name:   "defaults",
			server: ServerConfig{Command: "prog"},
		},
		{
			name: "lifecycle timeouts reach the upstream",
			server: ServerConfig{Command: "prog", StartTimeout: caddy.Duration(time.Minute),
				DrainTimeout: caddy.Duration(5 * time.Second), StopTimeout: caddy.Duration(time.Second), KillTimeout: caddy.Duration(2 * time.Second)},
			want: upstream.Options{StartTimeout: time.Minute, Drain: 5 * time.Second,
				Stop: upstream.StopTimeouts{Grace: time.Second, Term: 2 * time.Second}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, opts, err := tc.server.spec("s", caddy.NewReplacer())
			if err != nil {
				t.Fatal(err)
			}
			if opts.StartTimeout != tc.want.StartTimeout || opts.Drain != tc.want.Drain || opts.Stop != tc.want.Stop {
				t.Errorf("options = %+v, want %+v", opts, tc.want)
			}
		})
	}
}

// assertValidation checks that err is nil when want is "", else that it
// holds want and is about fields; it reports whether an error was wanted.
func assertValidation(t *testing.T, err error, want string, fields []string) bool {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("Validate: %v", err)
		}
		return false
	}
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %v, want one containing %q", err, want)
	}
	var fe *fieldError
	var got []string
	if errors.As(err, &fe) {
		got = fe.fields
	}
	if !slices.Equal(got, fields) {
		t.Errorf("the error is about %q, want %q", got, fields)
	}
	return true
}

func TestServerValidate_RefusesWhatCannotWorkNamingTheFields(t *testing.T) {
	const remote = "http://127.0.0.1/mcp"
	for _, tc := range []struct {
		name   string
		server ServerConfig
		err    string   // a part of the error, or "" for none
		fields []string // the fields the error is about
	}{
		{name: "command", server: ServerConfig{Command: "prog"}},
		{name: "url", server: ServerConfig{URL: remote}},
		{name: "queue with a limit", server: ServerConfig{Command: "prog", MaxConcurrent: 2, QueueTimeout: caddy.Duration(time.Second)}},
		{name: "oauth with client credentials", server: ServerConfig{URL: remote, OAuth: &OAuth{Grant: "client_credentials"}}},
		{name: "placeholders are not checked", server: ServerConfig{URL: "{env.MCPO_TEST_URL}", Headers: map[string]string{"A": "{env.B}"}}},
		{name: "command and url", server: ServerConfig{Command: "prog", URL: remote},
			err: "command and url are exclusive", fields: []string{"command", "url"}},
		{name: "neither command nor url", server: ServerConfig{Args: []string{"x"}}, err: "needs a command (stdio) or a url (HTTP)"},
		{name: "unknown transport", server: ServerConfig{URL: remote, Transport: "websocket"},
			err: `unknown transport "websocket"`, fields: []string{"transport"}},
		{name: "unknown protocol", server: ServerConfig{Command: "prog", Protocol: "2099-01-01"},
			err: `unknown protocol "2099-01-01"`, fields: []string{"protocol"}},
		{name: "env for an HTTP server", server: ServerConfig{URL: remote, Env: map[string]string{"A": "b"}},
			err: "stdio servers only", fields: []string{"env", "inherit_env"}},
		{name: "inherit_env for an SSE server", server: ServerConfig{URL: remote, Transport: "sse", InheritEnv: []string{"HOME"}},
			err: "stdio servers only", fields: []string{"env", "inherit_env"}},
		{name: "tool error status that is not an error", server: ServerConfig{Command: "prog", ToolErrorStatus: 200},
			err: "tool_error_status 200: want an HTTP error status (400-599)", fields: []string{"tool_error_status"}},
		{name: "negative limit", server: ServerConfig{Command: "prog", MaxConcurrent: -1},
			err: "max_concurrent -1", fields: []string{"max_concurrent"}},
		{name: "max_timeout shorter than timeout", server: ServerConfig{Command: "prog", Timeout: caddy.Duration(time.Minute), MaxTimeout: caddy.Duration(time.Second)},
			err: "max_timeout 1s is shorter than timeout 1m0s", fields: []string{"max_timeout", "timeout"}},
		{name: "negative max_timeout", server: ServerConfig{Command: "prog", MaxTimeout: caddy.Duration(-time.Second)},
			err: "max_timeout -1s: want a positive duration", fields: []string{"max_timeout"}},
		{name: "max_timeout as long as timeout", server: ServerConfig{Command: "prog", Timeout: caddy.Duration(time.Minute), MaxTimeout: caddy.Duration(time.Minute)}},
		{name: "negative task TTL", server: ServerConfig{Command: "prog", TaskTTL: caddy.Duration(-time.Second)},
			err: "task_ttl -1s: want a positive duration", fields: []string{"task_ttl"}},
		{name: "queue without a limit", server: ServerConfig{Command: "prog", QueueTimeout: caddy.Duration(time.Second)},
			err: "queue_timeout needs max_concurrent", fields: []string{"queue_timeout"}},
		{name: "oauth for a stdio server", server: ServerConfig{Command: "prog", OAuth: &OAuth{}},
			err: "servers reached at a url", fields: []string{"oauth"}},
		{name: "oauth with an unknown grant", server: ServerConfig{URL: remote, OAuth: &OAuth{Grant: "password"}},
			err: `oauth grant "password"`, fields: []string{"oauth.grant"}},
		{name: "a session per caller", server: ServerConfig{Command: "prog", Isolation: "user", IdleTimeout: caddy.Duration(time.Minute),
			MaxSessions: 5, ListAs: "lister", Args: []string{"--user={mcpo.user.id}"}, Env: map[string]string{"F": "/d/{mcpo.user.email}.json"},
			Dir: "/d/{mcpo.user.groups}"}},
		{name: "a session per caller of an HTTP server", server: ServerConfig{URL: "https://h/{mcpo.user.id}/mcp", Isolation: "user",
			Headers: map[string]string{"Authorization": "Bearer {file./run/secrets/{mcpo.user.id}}"}}},
		{name: "shared, as by default", server: ServerConfig{Command: "prog", Isolation: "shared"}},
		{name: "a shared server's headers resolve the caller's placeholders per call", server: ServerConfig{URL: remote,
			Headers: map[string]string{"X-User": "{mcpo.user.id}"}}},
		{name: "unknown isolation", server: ServerConfig{Command: "prog", Isolation: "tenant"},
			err: `isolation "tenant": want shared or user`, fields: []string{"isolation"}},
		{name: "idle_timeout of a shared server", server: ServerConfig{Command: "prog", IdleTimeout: caddy.Duration(time.Minute)},
			err: "idle_timeout applies to servers with isolation user", fields: []string{"idle_timeout"}},
		{name: "max_sessions of a shared server", server: ServerConfig{Command: "prog", Isolation: "shared", MaxSessions: 3},
			err: "max_sessions applies to servers with isolation user", fields: []string{"max_sessions"}},
		{name: "list_as of a shared server", server: ServerConfig{Command: "prog", ListAs: "x"},
			err: "list_as applies to servers with isolation user", fields: []string{"list_as"}},
		{name: "negative max_sessions", server: ServerConfig{Command: "prog", Isolation: "user", MaxSessions: -1},
			err: "max_sessions -1", fields: []string{"max_sessions"}},
		{name: "a session per caller, each authorizing with oauth", server: ServerConfig{URL: remote, Isolation: "user", OAuth: &OAuth{},
			Headers: map[string]string{"X-User": "{mcpo.user.id}"}}},
		{name: "a session per caller with client credentials", server: ServerConfig{URL: remote, Isolation: "user", OAuth: &OAuth{Grant: "client_credentials"}},
			err: "which the client_credentials grant cannot do", fields: []string{"isolation", "oauth.grant"}},
		{name: "list_as with oauth", server: ServerConfig{URL: remote, Isolation: "user", ListAs: "x", OAuth: &OAuth{}},
			err: "list_as does not go with oauth", fields: []string{"list_as"}},
		{name: "the caller in the url with oauth", server: ServerConfig{URL: "https://h/{mcpo.user.id}/mcp", Isolation: "user", OAuth: &OAuth{}},
			err: "url holds a caller's placeholder, which oauth does not take", fields: []string{"url", "oauth"}},
		{name: "the caller in the command", server: ServerConfig{Command: "/opt/{mcpo.user.id}/bin/server", Isolation: "user"},
			err: "the program is the same for every caller", fields: []string{"command"}},
		{name: "the caller in a shared server's args", server: ServerConfig{Command: "prog", Args: []string{"--user", "{mcpo.user.id}"}},
			err: "args holds {mcpo.user.id}, which needs isolation user", fields: []string{"args"}},
		{name: "the caller in a shared server's env", server: ServerConfig{Command: "prog", Env: map[string]string{"U": "{mcpo.user.role}"}},
			err: "env holds {mcpo.user.role}, which needs isolation user", fields: []string{"env"}},
		{name: "the caller in a shared server's dir", server: ServerConfig{Command: "prog", Dir: "/d/{mcpo.user.id}"},
			err: "dir holds {mcpo.user.id}", fields: []string{"dir"}},
		{name: "an unknown placeholder of the caller", server: ServerConfig{Command: "prog", Isolation: "user", Env: map[string]string{"U": "{mcpo.user.phone}"}},
			err: "unknown placeholder {mcpo.user.phone}", fields: []string{"env"}},
		{name: "an unclosed placeholder of the caller", server: ServerConfig{URL: remote, Isolation: "user", Headers: map[string]string{"U": "x{mcpo.user.id"}},
			err: "unclosed placeholder {mcpo.user.id", fields: []string{"headers"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assertValidation(t, tc.server.Validate(), tc.err, tc.fields)
		})
	}
}

func TestHandlerValidate_RefusesWhatCannotWork(t *testing.T) {
	cmd := func(name string) *ServerConfig { return &ServerConfig{Name: name, Command: "prog"} }
	const cb = "https://caddy.example.com/x/gh/oauth/callback"
	authCode := &ServerConfig{Name: "gh", URL: "https://mcp.example.com/mcp", OAuth: &OAuth{RedirectURI: cb}}
	for _, tc := range []struct {
		name   string
		h      Handler
		err    string // a part of the error, or "" for none
		fields []string
		server int // the index of the server the error is about, -1 for none
	}{
		{name: "one unnamed server", h: Handler{Servers: []*ServerConfig{{Command: "prog"}}}},
		{name: "config files only", h: Handler{ConfigFiles: []string{"a.json"}}},
		{name: "named servers and config files", h: Handler{Servers: []*ServerConfig{cmd("a")}, ConfigFiles: []string{"a.json"}}},
		{name: "no server", h: Handler{Mount: "/x"}, err: "no MCP server configured", server: -1},
		{name: "bad mount", h: Handler{Mount: "x", Servers: []*ServerConfig{cmd("")}}, err: `mount "x"`, fields: []string{"mount"}, server: -1},
		{name: "an unnamed server among several", h: Handler{Servers: []*ServerConfig{cmd("a"), cmd("")}},
			err: "every server needs a name", server: 1},
		{name: "an unnamed server beside config files", h: Handler{Servers: []*ServerConfig{cmd("")}, ConfigFiles: []string{"a.json"}},
			err: "every server needs a name", server: 0},
		{name: "a name used twice", h: Handler{Servers: []*ServerConfig{cmd("a"), cmd("b"), cmd("a")}},
			err: `server name "a" is used twice`, server: 2},
		{name: "a reserved name", h: Handler{Servers: []*ServerConfig{cmd("a"), cmd("health")}}, err: `"health" is reserved`, server: 1},
		{name: "a server's own error names it", h: Handler{Servers: []*ServerConfig{cmd("a"), {Name: "b", Command: "p", URL: "http://h/mcp"}}},
			err: `server "b": command and url are exclusive`, fields: []string{"command", "url"}, server: 1},
		{name: "the single server is named after the mount", h: Handler{Mount: "/time/", Servers: []*ServerConfig{{}}},
			err: `server "time": needs a command`, server: 0},
		{name: "protect_docs without a key", h: Handler{Servers: []*ServerConfig{cmd("")}, ProtectDocs: true},
			err: "protect_docs needs an api_key", fields: []string{"protect_docs"}, server: -1},
		{name: "security with api_key", h: Handler{Servers: []*ServerConfig{cmd("")}, APIKeys: keys("k"), Security: &SecurityScheme{Type: "basic"}},
			err: "drop one", fields: []string{"security", "api_keys"}, server: -1},
		{name: "security basic", h: Handler{Servers: []*ServerConfig{cmd("")}, Security: &SecurityScheme{Type: "basic"}}},
		{name: "security cookie", h: Handler{Servers: []*ServerConfig{cmd("")}, Security: &SecurityScheme{Type: "cookie", Name: "session"}}},
		{name: "security of an unknown type", h: Handler{Servers: []*ServerConfig{cmd("")}, Security: &SecurityScheme{Type: "oauth"}},
			err: `security: unknown type "oauth"`, fields: []string{"security.type"}, server: -1},
		{name: "security query without a name", h: Handler{Servers: []*ServerConfig{cmd("")}, Security: &SecurityScheme{Type: "query"}},
			err: "needs the name", fields: []string{"security.name"}, server: -1},
		{name: "security basic with a name", h: Handler{Servers: []*ServerConfig{cmd("")}, Security: &SecurityScheme{Type: "basic", Name: "x"}},
			err: "takes no name", fields: []string{"security.name"}, server: -1},
		{name: "security basic with a bearer format", h: Handler{Servers: []*ServerConfig{cmd("")}, Security: &SecurityScheme{Type: "basic", BearerFormat: "JWT"}},
			err: "bearer_format applies", fields: []string{"security.bearer_format"}, server: -1},
		{name: "cors without origins", h: Handler{Servers: []*ServerConfig{cmd("")}, CORS: &CORS{}},
			err: "cors needs the origins", fields: []string{"cors.origins"}, server: -1},
		{name: "cors with a bad origin", h: Handler{Servers: []*ServerConfig{cmd("")}, CORS: &CORS{Origins: []string{"*", "https://a.example/x"}}},
			err: `cors origin "https://a.example/x"`, fields: []string{"cors.origins"}, server: -1},
		{name: "an open authorize page", h: Handler{Mount: "/x", Servers: []*ServerConfig{cmd("time"), authCode}},
			err: `server "gh": the oauth authorize page would be open to anyone`, fields: []string{"oauth"}, server: 1},
		{name: "an authorize page guarded by admin_key", h: Handler{Servers: []*ServerConfig{authCode}, AdminKeys: []string{"k"}}},
		{name: "an authorize page guarded by api_key", h: Handler{Servers: []*ServerConfig{authCode}, APIKeys: keys("k")}},
		{name: "an authorize page behind another handler", h: Handler{Servers: []*ServerConfig{authCode}, Security: &SecurityScheme{Type: "basic"}}},
		{name: "an authorize page each caller opens for themselves", h: Handler{Identity: &IdentitySource{Source: "placeholder", Placeholder: "{http.auth.user.id}"},
			Servers: []*ServerConfig{{Name: "gh", URL: "https://mcp.example.com/mcp", Isolation: "user", OAuth: &OAuth{RedirectURI: cb}}}}},
		{name: "bytes in flight for two bodies", h: Handler{Servers: []*ServerConfig{cmd("")}, MaxRequestBody: 1000, MaxRequestBytesInFlight: 2000}},
		{name: "bytes in flight for one default body", h: Handler{Servers: []*ServerConfig{cmd("")}, MaxRequestBytesInFlight: 8 << 20}},
		{name: "bytes in flight for less than one body", h: Handler{Servers: []*ServerConfig{cmd("")}, MaxRequestBody: 1000, MaxRequestBytesInFlight: 999},
			err: "max_request_bytes_in_flight 999 is less than max_request_body (1000)", fields: []string{"max_request_bytes_in_flight"}, server: -1},
		{name: "bytes in flight for less than one default body", h: Handler{Servers: []*ServerConfig{cmd("")}, MaxRequestBytesInFlight: 1 << 20},
			err: "less than max_request_body (8388608)", fields: []string{"max_request_bytes_in_flight"}, server: -1},
		{name: "negative bytes in flight", h: Handler{Servers: []*ServerConfig{cmd("")}, MaxRequestBytesInFlight: -1},
			err: "max_request_bytes_in_flight -1", fields: []string{"max_request_bytes_in_flight"}, server: -1},
		{name: "a session per caller needs the caller's identity", h: Handler{Servers: []*ServerConfig{cmd("a"), {Name: "m", Command: "p", Isolation: "user"}}},
			err:    `server "m": isolation user gives each caller a session of their own, and needs to know who calls: set identity`,
			fields: []string{"isolation"}, server: 1},
		{name: "client credentials need no authorize page",
			h: Handler{Servers: []*ServerConfig{{URL: "https://h/mcp", OAuth: &OAuth{Grant: "client_credentials"}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.h.Validate()
			if !assertValidation(t, err, tc.err, tc.fields) {
				return
			}
			server := -1
			var se *serverError
			if errors.As(err, &se) {
				server = se.index
			}
			if server != tc.server {
				t.Errorf("the error is about server %d, want %d", server, tc.server)
			}
		})
	}
}

func TestHandlerAccess_ResolvesKeysAndNeverOpensTheDoor(t *testing.T) {
	t.Setenv("MCPO_TEST_KEY", "key-from-env")
	t.Setenv("MCPO_TEST_EMPTY", "")
	dir := t.TempDir()
	file := dir + "/key"
	if err := os.WriteFile(file, []byte("key-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		h      Handler
		keys   []string
		admin  []string
		scheme string // the declared scheme's type/scheme/in
		err    string // a part of the error, or "" for none
	}{
		{name: "nothing", h: Handler{}},
		{name: "env and file placeholders", h: Handler{APIKeys: keys("{env.MCPO_TEST_KEY}", "{file."+file+"}")},
			keys: []string{"key-from-env", "key-from-file"}},
		{name: "literal key", h: Handler{APIKeys: keys("literal")}, keys: []string{"literal"}},
		{name: "admin key", h: Handler{AdminKeys: []string{"{env.MCPO_TEST_KEY}"}}, admin: []string{"key-from-env"}},
		{name: "unset variable", h: Handler{APIKeys: keys("{env.MCPO_TEST_UNSET_VARIABLE}")}, err: "api_key 1"},
		{name: "empty variable", h: Handler{APIKeys: keys("k", "{env.MCPO_TEST_EMPTY}")}, err: "api_key 2"},
		{name: "empty admin key", h: Handler{AdminKeys: []string{"{env.MCPO_TEST_EMPTY}"}}, err: "admin_key 1"},
		{name: "missing file", h: Handler{APIKeys: keys("{file." + dir + "/nope}")}, err: "api_key 1"},
		{name: "security basic", h: Handler{Security: &SecurityScheme{Type: "basic"}}, scheme: "http/basic"},
		{name: "security cookie", h: Handler{Security: &SecurityScheme{Type: "cookie", Name: "session"}}, scheme: "apiKey/cookie"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := tc.h.access(caddy.NewReplacer())
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a.Keys, tc.keys) || !slices.Equal(a.AdminKeys, tc.admin) {
				t.Errorf("keys = %q and %q, want %q and %q", a.Keys, a.AdminKeys, tc.keys, tc.admin)
			}
			got := ""
			if a.Scheme != nil {
				got = a.Scheme.Type + "/" + a.Scheme.Scheme + a.Scheme.In
			}
			if got != tc.scheme {
				t.Errorf("scheme = %q, want %q", got, tc.scheme)
			}
		})
	}
}

func TestOAuthConfig_ChecksWhatCannotWorkAndKeepsSecretsOutOfTheIdentity(t *testing.T) {
	t.Setenv("MCPO_TEST_SECRET", "s3cret-value")
	remote := upstream.Spec{Name: "gh", Transport: upstream.TransportStreamableHTTP, URL: "https://mcp.example.com/mcp"}
	const cb = "https://caddy.example.com/tools/gh/oauth/callback"
	for _, tc := range []struct {
		name   string
		o      OAuth
		spec   upstream.Spec
		single bool
		err    string
	}{
		{name: "authorization code", o: OAuth{RedirectURI: cb}, spec: remote},
		{name: "single-server mount", o: OAuth{RedirectURI: "https://caddy.example.com/gh/oauth/callback"}, spec: remote, single: true},
		{name: "pre-registered with a secret", o: OAuth{RedirectURI: cb, ClientID: "id", ClientSecret: "{env.MCPO_TEST_SECRET}"}, spec: remote},
		{name: "client credentials need no redirect", o: OAuth{Grant: "client_credentials", ClientID: "id", ClientSecret: "x"}, spec: remote},
		{name: "no redirect_uri", o: OAuth{}, spec: remote, err: "oauth needs redirect_uri"},
		{name: "redirect_uri resolving to nothing", o: OAuth{RedirectURI: "{env.MCPO_TEST_UNSET_URI}"}, spec: remote, err: "oauth needs redirect_uri"},
		{name: "redirect_uri elsewhere", o: OAuth{RedirectURI: "https://caddy.example.com/callback"}, spec: remote, err: "must be the external URL of /gh/oauth/callback"},
		{name: "unresolved secret", o: OAuth{RedirectURI: cb, ClientID: "id", ClientSecret: "{env.MCPO_TEST_UNSET_SECRET}"}, spec: remote, err: "oauth client_secret"},
		{name: "metadata URL", o: OAuth{RedirectURI: cb, ClientMetadataURL: "https://caddy.example.com/tools/gh/oauth/client-metadata.json"}, spec: remote},
		{name: "metadata URL elsewhere", o: OAuth{RedirectURI: cb, ClientMetadataURL: "https://caddy.example.com/meta.json"}, spec: remote, err: "client_metadata_url"},
		{name: "client credentials without a client", o: OAuth{Grant: "client_credentials"}, spec: remote, err: "ClientID"},
		{name: "bad private key", o: OAuth{Grant: "client_credentials", ClientID: "id", PrivateKey: "not a key"}, spec: remote, err: "PrivateKeyPEM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, id, err := tc.o.config(tc.spec, tc.single, caddy.NewReplacer())
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want one containing %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "s3cret-value") || strings.Contains(err.Error(), "not a key") {
					t.Fatalf("error %q holds a secret", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(id) != 64 || !strings.HasPrefix(cfg.StoreKey, "mcpo/oauth/") {
				t.Errorf("identity %q (want a SHA-256 digest), store key %q", id, cfg.StoreKey)
			}
			if tc.o.ClientSecret != "" {
				// Another secret is another identity (a new client), though
				// the identity holds the secret only as part of a digest.
				other := tc.o
				other.ClientSecret = "another-secret"
				if _, id2, err := other.config(tc.spec, tc.single, caddy.NewReplacer()); err != nil || id2 == id {
					t.Errorf("a changed secret keeps the identity %s (%v)", id, err)
				}
			}
			if tc.o.ClientSecret == "{env.MCPO_TEST_SECRET}" && cfg.ClientSecret != "s3cret-value" {
				t.Errorf("client secret not resolved: %q", cfg.ClientSecret)
			}
			// Another scope is another identity.
			other := tc.o
			other.Scopes = append(other.Scopes, "more")
			if _, id2, err := other.config(tc.spec, tc.single, caddy.NewReplacer()); err != nil || id2 == id {
				t.Errorf("a changed configuration keeps the identity %s (%v)", id, err)
			}
		})
	}
}

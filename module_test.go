package caddymcpo

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

func TestServerSpec_ChecksLimitsAndCarriesStopTimeouts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server Server
		err    string // a part of the error, or "" for none
		want   upstream.Options
	}{
		{
			name:   "defaults",
			server: Server{Command: "prog"},
		},
		{
			name: "lifecycle timeouts reach the upstream",
			server: Server{Command: "prog", StartTimeout: caddy.Duration(time.Minute),
				DrainTimeout: caddy.Duration(5 * time.Second), StopTimeout: caddy.Duration(time.Second), KillTimeout: caddy.Duration(2 * time.Second)},
			want: upstream.Options{StartTimeout: time.Minute, Drain: 5 * time.Second,
				Stop: upstream.StopTimeouts{Grace: time.Second, Term: 2 * time.Second}},
		},
		{
			name:   "queue with a limit",
			server: Server{Command: "prog", MaxConcurrent: 2, QueueTimeout: caddy.Duration(time.Second)},
		},
		{
			name:   "queue without a limit",
			server: Server{Command: "prog", QueueTimeout: caddy.Duration(time.Second)},
			err:    "queue_timeout needs max_concurrent",
		},
		{
			name:   "negative limit",
			server: Server{Command: "prog", MaxConcurrent: -1},
			err:    "max_concurrent -1",
		},
		{
			name:   "tool error status that is not an error",
			server: Server{Command: "prog", ToolErrorStatus: 200},
			err:    "tool_error_status 200",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, opts, err := tc.server.spec("s", caddy.NewReplacer())
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if opts.StartTimeout != tc.want.StartTimeout || opts.Drain != tc.want.Drain || opts.Stop != tc.want.Stop {
				t.Errorf("options = %+v, want %+v", opts, tc.want)
			}
		})
	}
}

func TestHandlerAccess_ResolvesKeysAndRefusesWhatCannotWork(t *testing.T) {
	t.Setenv("MCPO_TEST_KEY", "key-from-env")
	t.Setenv("MCPO_TEST_EMPTY", "")
	dir := t.TempDir()
	file := dir + "/key"
	if err := os.WriteFile(file, []byte("key-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		h        Handler
		keys     []string
		scheme   string // the declared scheme's type/scheme/in
		err      string // a part of the error, or "" for none
		notInErr string
	}{
		{name: "nothing", h: Handler{}},
		{name: "env and file placeholders", h: Handler{APIKeys: []string{"{env.MCPO_TEST_KEY}", "{file." + file + "}"}},
			keys: []string{"key-from-env", "key-from-file"}},
		{name: "literal key", h: Handler{APIKeys: []string{"literal"}}, keys: []string{"literal"}},
		{name: "unset variable", h: Handler{APIKeys: []string{"{env.MCPO_TEST_UNSET_VARIABLE}"}}, err: "api_key 1"},
		{name: "empty variable", h: Handler{APIKeys: []string{"k", "{env.MCPO_TEST_EMPTY}"}}, err: "api_key 2"},
		{name: "missing file", h: Handler{APIKeys: []string{"{file." + dir + "/nope}"}}, err: "api_key 1"},
		{name: "protect_docs without a key", h: Handler{ProtectDocs: true}, err: "protect_docs needs an api_key"},
		{name: "security with api_key", h: Handler{APIKeys: []string{"{env.MCPO_TEST_KEY}"}, Security: &SecurityScheme{Type: "basic"}},
			err: "drop one", notInErr: "key-from-env"},
		{name: "security basic", h: Handler{Security: &SecurityScheme{Type: "basic"}}, scheme: "http/basic"},
		{name: "security cookie", h: Handler{Security: &SecurityScheme{Type: "cookie", Name: "session"}}, scheme: "apiKey/cookie"},
		{name: "security query without a name", h: Handler{Security: &SecurityScheme{Type: "query"}}, err: "needs the name"},
		{name: "security basic with a name", h: Handler{Security: &SecurityScheme{Type: "basic", Name: "x"}}, err: "takes no name"},
		{name: "cors without origins", h: Handler{CORS: &CORS{}}, err: "cors needs origins"},
		{name: "cors with a bad origin", h: Handler{CORS: &CORS{Origins: []string{"*", "https://a.example/x"}}}, err: "cors origin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := tc.h.access(caddy.NewReplacer())
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want one containing %q", err, tc.err)
				}
				if tc.notInErr != "" && strings.Contains(err.Error(), tc.notInErr) {
					t.Fatalf("error %q holds the key", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a.Keys, tc.keys) {
				t.Errorf("keys = %q, want %q", a.Keys, tc.keys)
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
		{name: "stdio server", o: OAuth{RedirectURI: cb}, spec: upstream.Spec{Name: "gh", Transport: upstream.TransportStdio, Command: "x"}, err: "servers reached at a url"},
		{name: "no redirect_uri", o: OAuth{}, spec: remote, err: "oauth needs redirect_uri"},
		{name: "redirect_uri elsewhere", o: OAuth{RedirectURI: "https://caddy.example.com/callback"}, spec: remote, err: "must be the external URL of /gh/oauth/callback"},
		{name: "unresolved secret", o: OAuth{RedirectURI: cb, ClientID: "id", ClientSecret: "{env.MCPO_TEST_UNSET_SECRET}"}, spec: remote, err: "oauth client_secret"},
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

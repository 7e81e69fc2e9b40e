package caddymcpo

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

func TestServerValidate_ForwardingSettings(t *testing.T) {
	const remote = "http://127.0.0.1/mcp"
	oauth := &OAuth{Grant: "client_credentials"}
	for _, tc := range []struct {
		name   string
		server ServerConfig
		err    string   // a part of the error, or "" for none
		fields []string // the fields the error is about
	}{
		{name: "forwarded headers", server: ServerConfig{URL: remote, ForwardHeaders: []string{"X-OpenWebUI-Chat-Id", "x-request-id"}}},
		{name: "forwarded credentials, named", server: ServerConfig{URL: remote, ForwardHeaders: []string{"Authorization", "cookie"}}},
		{name: "a header per request", server: ServerConfig{URL: remote, Headers: map[string]string{"X-User": "{mcpo.user.id}"}}},
		{name: "an Authorization per request", server: ServerConfig{URL: remote,
			Headers: map[string]string{"Authorization": "Bearer {http.request.header.X-Upstream-Token}"}}},
		{name: "a reserved header with a global placeholder, as before", server: ServerConfig{URL: remote,
			Headers: map[string]string{"Accept": "{env.ACCEPT}"}}},
		{name: "other forwarded headers with oauth", server: ServerConfig{URL: remote, OAuth: oauth, ForwardHeaders: []string{"X-Chat"}}},
		{name: "meta_identity with a prefix", server: ServerConfig{Command: "prog", MetaIdentity: "example.com/user"}},
		{name: "meta_identity without a prefix", server: ServerConfig{URL: remote, MetaIdentity: "user"}},
		{name: "meta_identity under a prefix ending in mcp", server: ServerConfig{URL: remote, MetaIdentity: "example.mcp/user"}},

		{name: "forward_headers for a stdio server", server: ServerConfig{Command: "prog", ForwardHeaders: []string{"X-Chat"}},
			err: "forward_headers applies to servers reached at a url", fields: []string{"forward_headers"}},
		{name: "header for a stdio server", server: ServerConfig{Command: "prog", Headers: map[string]string{"X-User": "{mcpo.user.id}"}},
			err: "header applies to servers reached at a url", fields: []string{"headers"}},
		{name: "a forwarded name that is no header name", server: ServerConfig{URL: remote, ForwardHeaders: []string{"X Chat"}},
			err: `forward_headers "X Chat" is not a header name`, fields: []string{"forward_headers"}},
		{name: "forwarded hop-by-hop headers, all named", server: ServerConfig{URL: remote,
			ForwardHeaders: []string{"X-Chat", "connection", "TE", "Host", "Proxy-Authorization"}},
			err: "forward_headers Connection, Te, Host, Proxy-Authorization: hop-by-hop", fields: []string{"forward_headers"}},
		{name: "a forwarded header of the MCP transport", server: ServerConfig{URL: remote, ForwardHeaders: []string{"Mcp-Session-Id"}},
			err: "forward_headers Mcp-Session-Id", fields: []string{"forward_headers"}},
		{name: "forwarded Authorization with oauth", server: ServerConfig{URL: remote, OAuth: oauth, ForwardHeaders: []string{"authorization"}},
			err: "forward_headers Authorization: the server's oauth authorizes its requests with its own tokens", fields: []string{"forward_headers", "oauth"}},
		{name: "forwarded Cookie with oauth", server: ServerConfig{URL: remote, OAuth: oauth, ForwardHeaders: []string{"Cookie"}},
			err: "forward_headers Cookie", fields: []string{"forward_headers", "oauth"}},
		{name: "a header both set and forwarded", server: ServerConfig{URL: remote, ForwardHeaders: []string{"x-user"},
			Headers: map[string]string{"X-User": "static"}},
			err: "X-User is both a header and in forward_headers", fields: []string{"headers", "forward_headers"}},
		{name: "a hop-by-hop header per request", server: ServerConfig{URL: remote, Headers: map[string]string{"Connection": "{http.request.header.Connection}"}},
			err: "header Connection: a hop-by-hop header", fields: []string{"headers"}},
		{name: "an Authorization per request with oauth", server: ServerConfig{URL: remote, OAuth: oauth,
			Headers: map[string]string{"Authorization": "Bearer {mcpo.user.id}"}},
			err: "header Authorization: the server's oauth sets Authorization", fields: []string{"headers", "oauth"}},
		{name: "a header name per request that is no header name", server: ServerConfig{URL: remote, Headers: map[string]string{"X:User": "{mcpo.user.id}"}},
			err: `header "X:User" is not a header name`, fields: []string{"headers"}},
		{name: "meta_identity under a prefix MCP reserves", server: ServerConfig{URL: remote, MetaIdentity: "modelcontextprotocol.io/user"},
			err: "the prefix modelcontextprotocol.io/ is reserved for MCP", fields: []string{"meta_identity"}},
		{name: "meta_identity under another prefix MCP reserves", server: ServerConfig{URL: remote, MetaIdentity: "tools.mcp.com/user"},
			err: "reserved for MCP", fields: []string{"meta_identity"}},
		{name: "meta_identity progressToken", server: ServerConfig{URL: remote, MetaIdentity: "progressToken"},
			err: "the protocol's own", fields: []string{"meta_identity"}},
		{name: "meta_identity without a name", server: ServerConfig{URL: remote, MetaIdentity: "example.com/"},
			err: `meta_identity "example.com/": want a _meta key`, fields: []string{"meta_identity"}},
		{name: "meta_identity with a space", server: ServerConfig{URL: remote, MetaIdentity: "the user"},
			err: "want a _meta key", fields: []string{"meta_identity"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assertValidation(t, tc.server.Validate(), tc.err, tc.fields)
		})
	}
}

func TestUnmarshalCaddyfile_ForwardingSettings(t *testing.T) {
	h, err := parseMcpoBlock(t, "mcpo /x {\n\turl http://127.0.0.1/mcp\n\theader X-Chat {http.request.header.X-OpenWebUI-Chat-Id}\n"+
		"\tforward_headers X-OpenWebUI-User-Id X-Request-Id\n\tforward_headers Cookie\n\tmeta_identity example.com/user\n}")
	if err != nil {
		t.Fatal(err)
	}
	s := h.Servers[0]
	if !slices.Equal(s.ForwardHeaders, []string{"X-OpenWebUI-User-Id", "X-Request-Id", "Cookie"}) || s.MetaIdentity != "example.com/user" ||
		s.Headers["X-Chat"] != "{http.request.header.X-OpenWebUI-Chat-Id}" {
		t.Errorf("parsed %+v", s)
	}
	_, err = parseMcpoBlock(t, "mcpo /x {\n\turl http://127.0.0.1/mcp\n\ttimeout 5s\n\tforward_headers X-Chat Upgrade\n}")
	assertErrAtLine(t, err, 4, "forward_headers Upgrade: hop-by-hop")
	_, err = parseMcpoBlock(t, "mcpo /x {\n\tserver a {\n\t\tcommand prog\n\t\tmeta_identity mcp.dev/u\n\t}\n}")
	assertErrAtLine(t, err, 4, "meta_identity \"mcp.dev/u\"", "reserved for MCP")
}

func TestPerRequest_TellsPlaceholdersOnlyARequestResolves(t *testing.T) {
	for v, want := range map[string]bool{
		"plain":                                  false,
		"Bearer {env.TOKEN}":                     false,
		"{file./run/secrets/token}":              false,
		"{system.hostname}-{time.now.unix}":      false,
		`\{mcpo.user.id\}`:                       false,
		"{mcpo.user.id}":                         true,
		"{http.request.header.X-Chat-Id}":        true,
		"Bearer {env.TOKEN}-{http.auth.user.id}": true,
		"{vars.user}":                            true,
	} {
		if got := perRequest(v); got != want {
			t.Errorf("perRequest(%q) = %v, want %v", v, got, want)
		}
	}
}

// The settings resolved per call are no part of the server's identity: a
// reload that changes only them keeps the running server.
func TestResolve_PerCallSettingsLeaveTheServersIdentityAlone(t *testing.T) {
	t.Setenv("MCPO_TEST_TOKEN", "s3cret")
	base := ServerConfig{URL: "http://127.0.0.1:9/mcp", Headers: map[string]string{"Authorization": "Bearer {env.MCPO_TEST_TOKEN}"}}
	resolveKey := func(s ServerConfig) (string, resolved) {
		t.Helper()
		r := resolveServer(t, s)
		return r.spec.Key(), r
	}
	key, r := resolveKey(base)
	if r.extras != nil {
		t.Errorf("a server without per-call settings has extras %+v", r.extras)
	}
	withTemplates := base
	withTemplates.Headers = map[string]string{"Authorization": "Bearer {env.MCPO_TEST_TOKEN}", "X-User": "{mcpo.user.id}",
		"X-Chat": "{http.request.header.X-OpenWebUI-Chat-Id}"}
	withTemplates.ForwardHeaders = []string{"x-request-id", "X-Request-Id"}
	withTemplates.MetaIdentity = "example.com/user"
	got, r := resolveKey(withTemplates)
	if got != key {
		t.Error("header values resolved per call, forward_headers or meta_identity changed the server's identity")
	}
	if want := map[string]string{"Authorization": "Bearer s3cret"}; len(r.spec.Headers) != 1 || r.spec.Headers["Authorization"] != want["Authorization"] {
		t.Errorf("the server's own headers are %v, want %v", r.spec.Headers, want)
	}
	x := r.extras
	if x == nil || !slices.Equal(x.forward, []string{"X-Request-Id"}) || x.metaKey != "example.com/user" ||
		!slices.Equal(x.headers, []callHeader{{"X-Chat", "{http.request.header.X-OpenWebUI-Chat-Id}", false}, {"X-User", "{mcpo.user.id}", true}}) {
		t.Errorf("extras = %+v", x)
	}
	withTemplates.Headers["X-User"] = "{http.auth.user.id}"
	if got, _ := resolveKey(withTemplates); got != key {
		t.Error("another template changed the server's identity")
	}
	withTemplates.Headers["X-Static"] = "v1"
	if got, _ := resolveKey(withTemplates); got == key {
		t.Error("a new static header left the server's identity as it was")
	}
}

// callerRequest returns the context of a request to Caddy with the given
// headers, holding its replacer as Caddy's HTTP server sets it up.
func callerRequest(t *testing.T, header http.Header) (context.Context, *caddy.Replacer) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/tools/notes/request_info", nil)
	for k, v := range header {
		req.Header[k] = v
	}
	repl := caddyhttp.NewTestReplacer(req)
	return req.Context(), repl
}

// resolveServer validates s and resolves it as the server "notes".
func resolveServer(t *testing.T, s ServerConfig) resolved {
	t.Helper()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	r, err := s.resolve("notes", false, caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// leaseOf resolves s, leases it from p with a logger recording warnings,
// starts it and waits until it is ready.
func leaseOf(t *testing.T, p *testPool, s ServerConfig) (*lease, *observer.ObservedLogs) {
	t.Helper()
	r := resolveServer(t, s)
	r.opts.StartTimeout = testWait
	core, logs := observer.New(zapcore.WarnLevel)
	l, err := p.acquire(r, owner{log: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = l.release()
		p.wait()
	})
	l.start()
	waitStatus(t, l.entry.upstream, "ready", isReady)
	return l, logs
}

// requestInfo calls the fixture's request_info through l, under ctx.
func requestInfo(t *testing.T, ctx context.Context, l *lease) fixture.RequestInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, testWait)
	defer cancel()
	res, err := l.CallTool(ctx, "request_info", json.RawMessage(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	var info fixture.RequestInfo
	if len(res.Content) != 1 || json.Unmarshal([]byte(res.Content[0].Text), &info) != nil {
		t.Fatalf("request_info answered %+v", res.Content)
	}
	return info
}

func TestLease_CallsCarryTheCallersForwardedAndTemplatedHeaders(t *testing.T) {
	p := newTestPool(t)
	secrets := t.TempDir()
	for _, user := range []string{"alice", "bob"} {
		if err := os.WriteFile(filepath.Join(secrets, "token-"+user), []byte("token of "+user), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	l, logs := leaseOf(t, p, ServerConfig{URL: fixture.NewStreamableHTTP(t, fixture.Options{}),
		ForwardHeaders: []string{"x-openwebui-chat-id", "X-Multi", "X-Absent"},
		Headers: map[string]string{"X-Static": "static", "X-User": "{mcpo.user.id}",
			"X-Token": "{file." + secrets + "/token-{mcpo.user.id}}",
			"X-Chat":  "chat {http.request.header.X-OpenWebUI-Chat-Id}", "X-Evil": "{http.request.header.X-Evil}"}})

	ctx, repl := callerRequest(t, http.Header{
		"X-Openwebui-Chat-Id": {"c-42"}, "X-Multi": {"a", "b"}, "Authorization": {"Bearer caller"},
		"Cookie": {"session=caller"}, "X-Random": {"r"},
		"X-Evil": {"ok"}, // replaced below with a value no header can carry
	})
	ctx = bridge.WithIdentity(ctx, bridge.Identity{ID: "alice"}) // as the identity handler does
	info := requestInfo(t, ctx, l)
	h := info.Headers
	for name, want := range map[string][]string{
		"X-Openwebui-Chat-Id": {"c-42"}, "X-Multi": {"a,b"}, "X-Static": {"static"}, "X-User": {"alice"}, "X-Chat": {"chat c-42"},
		"X-Token": {"token of alice"},
		"X-Evil":  {"ok"}, "X-Absent": nil, "Authorization": nil, "Cookie": nil, "X-Random": nil,
	} {
		if got := h.Values(name); !slices.Equal(got, want) {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}

	// Another caller on the same session gets their own values; a value
	// holding a newline is left out, with a warning.
	ctx, repl = callerRequest(t, http.Header{"X-Openwebui-Chat-Id": {"c-7"}})
	ctx = bridge.WithIdentity(ctx, bridge.Identity{ID: "bob"})
	repl.Set("http.request.header.X-Evil", "x\r\nInjected: yes")
	h = requestInfo(t, ctx, l).Headers
	if h.Get("X-User") != "bob" || h.Get("X-Token") != "token of bob" || h.Get("X-Chat") != "chat c-7" || h.Get("X-Multi") != "" || h.Get("Injected") != "" || h.Get("X-Evil") != "" {
		t.Errorf("the second caller's call carried %v", h)
	}
	if w := logs.FilterMessageSnippet("holds characters a header cannot carry").All(); len(w) != 1 ||
		w[0].ContextMap()["header"] != "X-Evil" || w[0].ContextMap()["server"] != "notes" {
		t.Errorf("warnings: %v", logs.All())
	}

	// A caller without an identity: the header is left out, not sent empty.
	ctx, _ = callerRequest(t, nil)
	if h := requestInfo(t, ctx, l).Headers; len(h.Values("X-User")) != 0 || h.Get("X-Static") != "static" {
		t.Errorf("a call without an identity carried X-User %q, X-Static %q", h.Values("X-User"), h.Get("X-Static"))
	}
}

func TestLease_MetaIdentityCarriesTheCallersIdentity(t *testing.T) {
	p := newTestPool(t)
	cmd, args, env := fixture.StdioCommand(fixture.Options{})
	servers := map[string]ServerConfig{
		"stdio":           {Command: cmd, Args: args, Env: envMapForTest(env), InheritEnv: []string{"*"}},
		"streamable_http": {URL: fixture.NewStreamableHTTP(t, fixture.Options{})},
	}
	for name, s := range servers {
		t.Run(name, func(t *testing.T) {
			s.MetaIdentity = "example.com/user"
			l, _ := leaseOf(t, p, s)
			for _, tc := range []struct {
				name string
				ctx  context.Context
				want string // the JSON of _meta["example.com/user"], keys sorted
			}{
				{"a full identity", bridge.WithIdentity(context.Background(), bridge.Identity{ID: "u1", Email: "ana@example.com",
					Name: "Ana", Role: "admin", Groups: []string{"staff"}}), `{"email":"ana@example.com","id":"u1","name":"Ana","role":"admin"}`},
				{"empty fields left out", bridge.WithIdentity(context.Background(), bridge.Identity{ID: "u2"}), `{"id":"u2"}`},
				{"no identity", context.Background(), "null"},
				{"an empty identity", bridge.WithIdentity(context.Background(), bridge.Identity{}), "null"},
			} {
				got, _ := json.Marshal(requestInfo(t, tc.ctx, l).Meta["example.com/user"])
				if string(got) != tc.want {
					t.Errorf("%s: _meta[example.com/user] = %s, want %s", tc.name, got, tc.want)
				}
			}
		})
	}
}

func TestForwardedCredentials_AreWhatTheLoadWarnsAbout(t *testing.T) {
	for _, tc := range []struct {
		forward []string
		want    []string
	}{
		{nil, nil},
		{[]string{"X-OpenWebUI-Chat-Id", "X-Request-Id"}, nil},
		{[]string{"authorization", "X-Chat", "Cookie", "Authorization"}, []string{"Authorization", "Cookie"}},
	} {
		s := ServerConfig{URL: "http://127.0.0.1/mcp", ForwardHeaders: tc.forward}
		if got := s.forwardedCredentials(); !slices.Equal(got, tc.want) {
			t.Errorf("forwardedCredentials(%q) = %q, want %q", tc.forward, got, tc.want)
		}
	}
}

// BenchmarkLeaseCallExtras measures what the per-call settings cost a call
// before it leaves for the server; a server without them pays nothing.
func BenchmarkLeaseCallExtras(b *testing.B) {
	const remote = "http://127.0.0.1:9/mcp"
	for _, bc := range []struct {
		name   string
		server ServerConfig
	}{
		{"none", ServerConfig{URL: remote, Headers: map[string]string{"Authorization": "Bearer static"}}},
		{"forward_headers", ServerConfig{URL: remote, ForwardHeaders: []string{"X-OpenWebUI-Chat-Id", "X-OpenWebUI-Message-Id"}}},
		{"header_template", ServerConfig{URL: remote, Headers: map[string]string{"X-Chat": "chat {http.request.header.X-OpenWebUI-Chat-Id}"}}},
		{"meta_identity", ServerConfig{URL: remote, MetaIdentity: "example.com/user"}},
	} {
		r, err := bc.server.resolve("notes", false, caddy.NewReplacer())
		if err != nil {
			b.Fatal(err)
		}
		l := &lease{extras: r.extras, owner: owner{log: zap.NewNop()}}
		req := httptest.NewRequest(http.MethodPost, "/tools/notes/echo", nil)
		req.Header.Set("X-OpenWebUI-Chat-Id", "c-42")
		req.Header.Set("X-OpenWebUI-Message-Id", "m-7")
		caddyhttp.NewTestReplacer(req)
		ctx := bridge.WithIdentity(req.Context(), bridge.Identity{ID: "u1", Email: "ana@example.com", Name: "Ana"})
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if l.callExtras(ctx) == nil {
					b.Fatal("no context")
				}
			}
		})
	}
}

package caddymcpo

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
)

func TestUnmarshalCaddyfile_Access(t *testing.T) {
	const jwt = "identity openwebui_jwt {env.OWUI_JWT_SECRET}"
	for _, tc := range []struct {
		name, input string
		identity    *IdentitySource
		want        *AccessControl
	}{
		{name: "the README's example", input: jwt + `
access {
	grant role:admin *
	grant role:user time/* */read_* */list_* memory/search_nodes
	grant group:eng github/*
	grant user:alice@example.com notes/*
	grant email:Bob@Example.com notes/read_*
	grant anonymous time/*
	grant * time/get_current_time
}`,
			identity: &IdentitySource{Source: sourceOpenWebUI, Secret: "{env.OWUI_JWT_SECRET}"},
			want: &AccessControl{Rules: []AccessRule{
				{Subjects: []string{"role:admin"}, Tools: []string{"*"}},
				{Subjects: []string{"role:user"}, Tools: []string{"time/*", "*/read_*", "*/list_*", "memory/search_nodes"}},
				{Subjects: []string{"group:eng"}, Tools: []string{"github/*"}},
				{Subjects: []string{"user:alice@example.com"}, Tools: []string{"notes/*"}},
				{Subjects: []string{"email:Bob@Example.com"}, Tools: []string{"notes/read_*"}},
				{Subjects: []string{"anonymous"}, Tools: []string{"time/*"}},
				{Subjects: []string{"*"}, Tools: []string{"time/get_current_time"}},
			}}},
		{name: "only * needs no identity", input: "access {\n\tgrant * x/get_*\n}",
			want: &AccessControl{Rules: []AccessRule{{Subjects: []string{"*"}, Tools: []string{"x/get_*"}}}}},
		{name: "a placeholder source with a role and groups from a trusted proxy's headers", input: `identity {http.request.header.X-OpenWebUI-User-Id} {
	role {http.request.header.X-OpenWebUI-User-Role}
	groups {http.request.header.Remote-Groups}
}
access {
	grant role:admin *
}`,
			identity: &IdentitySource{Source: sourcePlaceholder, Placeholder: "{http.request.header.X-OpenWebUI-User-Id}",
				Role: "{http.request.header.X-OpenWebUI-User-Role}", Groups: "{http.request.header.Remote-Groups}"},
			want: &AccessControl{Rules: []AccessRule{{Subjects: []string{"role:admin"}, Tools: []string{"*"}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := parseMcpoBlock(t, "mcpo /x {\n\tcommand prog\n\t"+strings.ReplaceAll(tc.input, "\n", "\n\t")+"\n}")
			if err != nil {
				t.Fatal(err)
			}
			assertSameHandler(t, h, &Handler{Mount: "/x", Servers: []*ServerConfig{{Command: "prog"}}, Identity: tc.identity, Access: tc.want})
		})
	}

	// Line 1 is "mcpo /x {", line 2 "command prog", the input starts at
	// line 3.
	for _, tc := range []struct {
		name, input string
		line        int
		substrs     []string
	}{
		{name: "a grant without patterns", input: jwt + "\naccess {\n\tgrant role:admin\n}", line: 5,
			substrs: []string{"wrong argument count", "access grant <subject> <patterns...>"}},
		{name: "a pattern without a server, at its own line", input: jwt + "\naccess {\n\tgrant role:admin *\n\tgrant role:user get_current_time\n}", line: 6,
			substrs: []string{`access: tool pattern "get_current_time": want <server>/<tool>`, "the server's name comes first"}},
		{name: "an unknown kind of subject, at its own line", input: jwt + "\naccess {\n\tgrant role:admin *\n\tgrant role:user time/*\n\tgrant team:eng github/*\n}", line: 7,
			substrs: []string{`access: subject "team:eng": want user:<id>, role:<role>, group:<group>, email:<email>, anonymous or *`}},
		{name: "a malformed glob", input: jwt + "\naccess {\n\tgrant * time/[now\n}", line: 5,
			substrs: []string{`"[now" is not a valid glob`}},
		{name: "a role without identity", input: "access {\n\tgrant * time/*\n\tgrant role:admin *\n}", line: 5,
			substrs: []string{`access: subject "role:admin" needs to know who calls: set identity on the handler`}},
		{name: "no grant", input: jwt + "\naccess {\n}", line: 4, substrs: []string{"access grants nothing"}},
		{name: "arguments", input: "access role:admin {\n\tgrant * *\n}", line: 3, substrs: []string{"access takes a block of grant lines"}},
		{name: "an unknown subdirective", input: "access {\n\tallow * *\n}", line: 4, substrs: []string{`unknown access subdirective "allow": want grant`}},
		{name: "grant outside access", input: "grant * *", line: 3, substrs: []string{`unknown subdirective "grant"`}},
		{name: "twice", input: "access {\n\tgrant * *\n}\naccess {\n\tgrant * *\n}", line: 6, substrs: []string{"access given twice"}},
		{name: "a role for Open WebUI's token", input: jwt + " {\n\trole {http.request.header.X-Role}\n}", line: 4,
			substrs: []string{"identity role applies to identity <placeholder> only: openwebui_jwt gives the role itself"}},
		{name: "groups for API keys", input: "api_key k alice\nidentity api_key {\n\tgroups {http.request.header.X-Groups}\n}", line: 5,
			substrs: []string{"identity groups applies to identity <placeholder> only"}},
		{name: "a role that is no placeholder", input: "identity {http.auth.user.id} {\n\trole admin\n}", line: 4,
			substrs: []string{`identity role "admin": want a placeholder`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseMcpoBlock(t, "mcpo /x {\n\tcommand prog\n\t"+strings.ReplaceAll(tc.input, "\n", "\n\t")+"\n}")
			assertErrAtLine(t, err, tc.line, tc.substrs...)
		})
	}
}

func TestHandlerValidate_Access(t *testing.T) {
	cmd := []*ServerConfig{{Command: "prog"}}
	jwt := &IdentitySource{Source: sourceOpenWebUI, Secret: "{env.S}"}
	rules := func(r ...AccessRule) *AccessControl { return &AccessControl{Rules: r} }
	for _, tc := range []struct {
		name   string
		h      Handler
		err    string
		fields []string
	}{
		{name: "rules with an identity", h: Handler{Servers: cmd, Identity: jwt,
			Access: rules(AccessRule{Subjects: []string{"role:admin", "group:ops"}, Tools: []string{"*"}})}},
		{name: "anyone and anonymous need no identity", h: Handler{Servers: cmd,
			Access: rules(AccessRule{Subjects: []string{"*", "anonymous"}, Tools: []string{"x/*"}})}},
		{name: "no rules", h: Handler{Servers: cmd, Access: &AccessControl{}}, err: "access grants nothing", fields: []string{"access"}},
		{name: "a rule without subjects", h: Handler{Servers: cmd, Access: rules(AccessRule{Subjects: []string{"*"}, Tools: []string{"*"}},
			AccessRule{Tools: []string{"*"}})}, err: "access: a rule needs a subject", fields: []string{"access.rules.1"}},
		{name: "a user without identity", h: Handler{Servers: cmd, Access: rules(AccessRule{Subjects: []string{"*", "user:u-1"}, Tools: []string{"*"}})},
			err: `subject "user:u-1" needs to know who calls`, fields: []string{"access.rules.0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assertValidation(t, tc.h.Validate(), tc.err, tc.fields)
		})
	}
}

func TestAccessJSON(t *testing.T) {
	var h Handler
	in := `{"identity": {"source": "openwebui_jwt", "secret": "{env.S}"},
		"access": {"rules": [{"subjects": ["role:admin"], "tools": ["*"]}, {"subjects": ["*"], "tools": ["time/*"]}]}}`
	if err := json.Unmarshal([]byte(in), &h); err != nil {
		t.Fatal(err)
	}
	rules, vary := h.rules()
	want := []bridge.Rule{{Subjects: []string{"role:admin"}, Tools: []string{"*"}}, {Subjects: []string{"*"}, Tools: []string{"time/*"}}}
	if !reflect.DeepEqual(rules, want) || !slices.Equal(vary, []string{"X-OpenWebUI-User-Jwt"}) {
		t.Errorf("rules = %+v, vary %q", rules, vary)
	}
}

func TestIdentitySourceVary_NamesTheHeadersThatDecideTheCaller(t *testing.T) {
	for _, tc := range []struct {
		name string
		s    IdentitySource
		want []string
	}{
		{"Open WebUI's token", IdentitySource{Source: sourceOpenWebUI}, []string{"X-OpenWebUI-User-Jwt"}},
		{"Open WebUI's token in another header", IdentitySource{Source: sourceOpenWebUI, Header: "X-User-Token"}, []string{"X-User-Token"}},
		{"API keys", IdentitySource{Source: sourceAPIKey}, []string{"Authorization"}},
		{"a trusted proxy's headers, each once", IdentitySource{Source: sourcePlaceholder,
			Placeholder: "{http.request.header.X-OpenWebUI-User-Id}", Role: "{http.request.header.X-OpenWebUI-User-Role}",
			Groups: "{http.request.header.x-openwebui-user-id}-{http.request.header.Remote-Groups}"},
			[]string{"X-OpenWebUI-User-Id", "X-OpenWebUI-User-Role", "Remote-Groups"}},
		{"an authentication handler's user: no header is known", IdentitySource{Source: sourcePlaceholder,
			Placeholder: "{http.auth.user.id}"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.s.vary(); !slices.Equal(got, tc.want) {
				t.Errorf("vary = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestIdentify_RoleAndGroupsOfAPlaceholderSource(t *testing.T) {
	x, err := (&IdentitySource{Source: sourcePlaceholder, Placeholder: "{http.request.header.X-User}",
		Role: "{http.request.header.X-Role}", Groups: "{http.request.header.Remote-Groups}"}).identifier(caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		header http.Header
		want   bridge.Identity
		err    string
	}{
		{name: "a role and groups", header: http.Header{"X-User": {"u-1"}, "X-Role": {"admin"}, "Remote-Groups": {"eng, ops,,  qa "}},
			want: bridge.Identity{ID: "u-1", Role: "admin", Groups: []string{"eng", "ops", "qa"}}},
		{name: "neither", header: http.Header{"X-User": {"u-2"}}, want: bridge.Identity{ID: "u-2"}},
		{name: "a role without an ID is no identity", header: http.Header{"X-Role": {"admin"}}, err: "is empty"},
		{name: "a role with a control character", header: http.Header{"X-User": {"u-3"}, "X-Role": {"ad\x01min"}},
			err: "the role holds a control character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/x/tool", nil)
			r.Header = tc.header
			repl := caddyhttp.NewTestReplacer(r)
			got, err := x.identify(r, repl, nil)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("identify: %+v, %v; want an error saying %q", got, err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("identify = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

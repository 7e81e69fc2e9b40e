package caddymcpo

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile" // the "caddyfile" adapter
	_ "github.com/caddyserver/caddy/v2/modules/standard"          // basic_auth, reverse_proxy, handle_path, ...
)

// ---------------------------------------------------------------------------
// Helpers

// parseMcpoBlock runs UnmarshalCaddyfile on input, as the httpcaddyfile
// adapter does for one "mcpo" directive.
func parseMcpoBlock(t *testing.T, input string) (*Handler, error) {
	t.Helper()
	var h Handler
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
	return &h, err
}

// handlerJSONForTest encodes a handler as its JSON configuration, which is
// what the Caddyfile produces and what Caddy loads. It ignores the difference
// between nil and empty slices and maps, which the configuration cannot hold.
func handlerJSONForTest(t *testing.T, h *Handler) string {
	t.Helper()
	b, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		t.Fatalf("encoding handler: %v", err)
	}
	return string(b)
}

func assertSameHandler(t *testing.T, got, want *Handler) {
	t.Helper()
	if g, w := handlerJSONForTest(t, got), handlerJSONForTest(t, want); g != w {
		t.Errorf("handler mismatch\n got: %s\nwant: %s", g, w)
	}
}

var caddyfileErrLine = regexp.MustCompile(`Testfile:(\d+)`)

// assertErrAtLine checks that err is a Caddyfile error located at line and
// that its message holds every one of substrs.
func assertErrAtLine(t *testing.T, err error, line int, substrs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one at line %d containing %q", line, substrs)
	}
	msg := err.Error()
	m := caddyfileErrLine.FindStringSubmatch(msg)
	if m == nil {
		t.Errorf("error %q names no Testfile:<line>", msg)
	} else if m[1] != strconv.Itoa(line) {
		t.Errorf("error %q is located at line %s, want line %d", msg, m[1], line)
	}
	for _, s := range substrs {
		if !strings.Contains(msg, s) {
			t.Errorf("error %q does not contain %q", msg, s)
		}
	}
}

// ---------------------------------------------------------------------------
// UnmarshalCaddyfile: valid input

func TestUnmarshalCaddyfile_ParsesValidBlocks(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  *Handler
	}{
		{
			name: "single command server at a mount",
			input: `mcpo /time {
				command uvx mcp-server-time --local-timezone=Europe/Paris
			}`,
			want: &Handler{Mount: "/time", Servers: []*ServerConfig{{
				Command: "uvx",
				Args:    []string{"mcp-server-time", "--local-timezone=Europe/Paris"},
			}}},
		},
		{
			name: "resources, prompts, roots, elicitation and sampling",
			input: `mcpo /fs {
				command mcp-server
				resources off
				prompts on
				roots /srv/a /srv/b
				roots /srv/c
				elicitation defaults
				sampling relay
			}`,
			want: &Handler{Mount: "/fs", Servers: []*ServerConfig{{Command: "mcp-server",
				Resources: new(false), Prompts: new(true), Roots: []string{"/srv/a", "/srv/b", "/srv/c"}, Elicitation: "defaults", Sampling: "relay"}}},
		},
		{
			name: "mount omitted means /",
			input: `mcpo {
				command mcp-server
			}`,
			want: &Handler{Mount: "/", Servers: []*ServerConfig{{Command: "mcp-server"}}},
		},
		{
			name: "mount / stays /",
			input: `mcpo / {
				command mcp-server
			}`,
			want: &Handler{Mount: "/", Servers: []*ServerConfig{{Command: "mcp-server"}}},
		},
		{
			name: "trailing slash of the mount is removed",
			input: `mcpo /time/ {
				command mcp-server
			}`,
			want: &Handler{Mount: "/time", Servers: []*ServerConfig{{Command: "mcp-server"}}},
		},
		{
			name: "mount is cleaned",
			input: `mcpo //tools//./time/ {
				command mcp-server
			}`,
			want: &Handler{Mount: "/tools/time", Servers: []*ServerConfig{{Command: "mcp-server"}}},
		},
		{
			name: "command without arguments",
			input: `mcpo /x {
				command mcp-server
			}`,
			want: &Handler{Mount: "/x", Servers: []*ServerConfig{{Command: "mcp-server"}}},
		},
		{
			name: "args lines append to the command's arguments",
			input: `mcpo /everything {
				command npx -y
				args @modelcontextprotocol/server-everything
				args stdio --verbose
			}`,
			want: &Handler{Mount: "/everything", Servers: []*ServerConfig{{
				Command: "npx",
				Args:    []string{"-y", "@modelcontextprotocol/server-everything", "stdio", "--verbose"},
			}}},
		},
		{
			name: "args before the command come after the command's own arguments",
			input: `mcpo /x {
				args --later
				command prog --first
			}`,
			want: &Handler{Mount: "/x", Servers: []*ServerConfig{{
				Command: "prog",
				Args:    []string{"--first", "--later"},
			}}},
		},
		{
			name: "quoted arguments keep their spaces",
			input: `mcpo /x {
				command "/opt/my server/bin" "an arg" plain
			}`,
			want: &Handler{Mount: "/x", Servers: []*ServerConfig{{
				Command: "/opt/my server/bin",
				Args:    []string{"an arg", "plain"},
			}}},
		},
		{
			name: "env and inherit_env and dir",
			input: `mcpo /x {
				command prog
				env API_KEY {env.API_KEY}
				env GREETING "hello world"
				env OVERRIDDEN first
				env OVERRIDDEN second
				inherit_env NODE_OPTIONS XDG_CONFIG_HOME
				inherit_env DISPLAY
				dir /srv/mcp
			}`,
			want: &Handler{Mount: "/x", Servers: []*ServerConfig{{
				Command: "prog",
				Env: map[string]string{
					"API_KEY":    "{env.API_KEY}",
					"GREETING":   "hello world",
					"OVERRIDDEN": "second",
				},
				InheritEnv: []string{"NODE_OPTIONS", "XDG_CONFIG_HOME", "DISPLAY"},
				Dir:        "/srv/mcp",
			}}},
		},
		{
			name: "inherit_env star",
			input: `mcpo /x {
				command prog
				inherit_env *
			}`,
			want: &Handler{Mount: "/x", Servers: []*ServerConfig{{Command: "prog", InheritEnv: []string{"*"}}}},
		},
		{
			name: "url with headers",
			input: `mcpo /remote {
				url https://mcp.example.com/mcp?tenant=1
				header Authorization "Bearer {env.TOKEN}"
				header X-Trace on
			}`,
			want: &Handler{Mount: "/remote", Servers: []*ServerConfig{{
				URL: "https://mcp.example.com/mcp?tenant=1",
				Headers: map[string]string{
					"Authorization": "Bearer {env.TOKEN}",
					"X-Trace":       "on",
				},
			}}},
		},
		{
			name: "tools and disabled_tools append across lines",
			input: `mcpo /x {
				command prog
				tools get_time convert_time
				tools echo
				disabled_tools dangerous
				disabled_tools also_dangerous more
			}`,
			want: &Handler{Mount: "/x", Servers: []*ServerConfig{{
				Command:       "prog",
				Tools:         []string{"get_time", "convert_time", "echo"},
				DisabledTools: []string{"dangerous", "also_dangerous", "more"},
			}}},
		},
		{
			name: "timeout and start_timeout are caddy durations",
			input: `mcpo /x {
				command prog
				timeout 30s
				start_timeout 1d
			}`,
			want: &Handler{Mount: "/x", Servers: []*ServerConfig{{
				Command:      "prog",
				Timeout:      caddy.Duration(30 * time.Second),
				StartTimeout: caddy.Duration(24 * time.Hour),
			}}},
		},
		{
			name: "lifecycle limits and per-tool timeouts",
			input: `mcpo /x {
				server a {
					command prog
					tool_timeout slow 10m
					tool_timeout "spaced name" 1s
					max_concurrent 4
					queue_timeout 2s
					drain_timeout 1m
					task_ttl 30m
					stop_timeout 500ms
					kill_timeout 1s
				}
			}`,
			want: &Handler{Mount: "/x", Servers: []*ServerConfig{{
				Name:    "a",
				Command: "prog",
				ToolTimeouts: map[string]caddy.Duration{
					"slow": caddy.Duration(10 * time.Minute), "spaced name": caddy.Duration(time.Second),
				},
				MaxConcurrent: 4,
				QueueTimeout:  caddy.Duration(2 * time.Second),
				DrainTimeout:  caddy.Duration(time.Minute),
				TaskTTL:       caddy.Duration(30 * time.Minute),
				StopTimeout:   caddy.Duration(500 * time.Millisecond),
				KillTimeout:   caddy.Duration(time.Second),
			}}},
		},
		{
			name: "composite duration",
			input: `mcpo /x {
				command prog
				timeout 1m30s
			}`,
			want: &Handler{Mount: "/x", Servers: []*ServerConfig{{
				Command: "prog",
				Timeout: caddy.Duration(90 * time.Second),
			}}},
		},
		{
			name: "max_timeout",
			input: `mcpo /x {
				command prog
				timeout 30s
				max_timeout 20m
			}`,
			want: &Handler{Mount: "/x", Servers: []*ServerConfig{{
				Command:    "prog",
				Timeout:    caddy.Duration(30 * time.Second),
				MaxTimeout: caddy.Duration(20 * time.Minute),
			}}},
		},
		{
			name: "tool_error_status",
			input: `mcpo /x {
				command prog
				tool_error_status 422
			}`,
			want: &Handler{Mount: "/x", Servers: []*ServerConfig{{Command: "prog", ToolErrorStatus: 422}}},
		},
		{
			name: "tool_error_status bounds 400 and 599 are accepted",
			input: `mcpo {
				server a {
					command prog
					tool_error_status 400
				}
				server b {
					command prog
					tool_error_status 599
				}
			}`,
			want: &Handler{Mount: "/", Servers: []*ServerConfig{
				{Name: "a", Command: "prog", ToolErrorStatus: 400},
				{Name: "b", Command: "prog", ToolErrorStatus: 599},
			}},
		},
		{
			name: "title at block level is the handler's title",
			input: `mcpo /time {
				title "Time tools"
				command prog
			}`,
			want: &Handler{Mount: "/time", Title: "Time tools", Servers: []*ServerConfig{{Command: "prog"}}},
		},
		{
			name: "title in a server block is the server's title",
			input: `mcpo /tools {
				title "All tools"
				server time {
					command prog
					title "Time"
				}
			}`,
			want: &Handler{Mount: "/tools", Title: "All tools", Servers: []*ServerConfig{{Name: "time", Command: "prog", Title: "Time"}}},
		},
		{
			name: "max_request_body 1MB is decimal",
			input: `mcpo /x {
				command prog
				max_request_body 1MB
			}`,
			want: &Handler{Mount: "/x", MaxRequestBody: 1000000, Servers: []*ServerConfig{{Command: "prog"}}},
		},
		{
			name: "max_request_body 8MiB is binary",
			input: `mcpo /x {
				command prog
				max_request_body 8MiB
			}`,
			want: &Handler{Mount: "/x", MaxRequestBody: 8 << 20, Servers: []*ServerConfig{{Command: "prog"}}},
		},
		{
			name: "max_request_body plain bytes and fractions",
			input: `mcpo /x {
				command prog
				max_request_body 1.5KB
			}`,
			want: &Handler{Mount: "/x", MaxRequestBody: 1500, Servers: []*ServerConfig{{Command: "prog"}}},
		},
		{
			name: "max_request_bytes_in_flight",
			input: `mcpo /x {
				command prog
				max_request_body 1MiB
				max_request_bytes_in_flight 16MiB
			}`,
			want: &Handler{Mount: "/x", MaxRequestBody: 1 << 20, MaxRequestBytesInFlight: 16 << 20, Servers: []*ServerConfig{{Command: "prog"}}},
		},
		{
			name: "several server blocks keep their order",
			input: `mcpo /tools {
				server time {
					command uvx mcp-server-time
					args --local-timezone=UTC
					timeout 10s
				}
				server everything {
					command npx -y @modelcontextprotocol/server-everything
					env DEBUG 1
					inherit_env NODE_OPTIONS
					disabled_tools longRunningOperation
				}
				server remote {
					url https://mcp.example.com/mcp
					header Authorization "Bearer x"
					transport sse
					protocol legacy
					start_timeout 5s
					tool_error_status 502
					tools search
				}
			}`,
			want: &Handler{Mount: "/tools", Servers: []*ServerConfig{
				{
					Name:    "time",
					Command: "uvx",
					Args:    []string{"mcp-server-time", "--local-timezone=UTC"},
					Timeout: caddy.Duration(10 * time.Second),
				},
				{
					Name:          "everything",
					Command:       "npx",
					Args:          []string{"-y", "@modelcontextprotocol/server-everything"},
					Env:           map[string]string{"DEBUG": "1"},
					InheritEnv:    []string{"NODE_OPTIONS"},
					DisabledTools: []string{"longRunningOperation"},
				},
				{
					Name:            "remote",
					URL:             "https://mcp.example.com/mcp",
					Headers:         map[string]string{"Authorization": "Bearer x"},
					Transport:       "sse",
					Protocol:        "legacy",
					StartTimeout:    caddy.Duration(5 * time.Second),
					ToolErrorStatus: 502,
					Tools:           []string{"search"},
				},
			}},
		},
		{
			name: "server block with a url",
			input: `mcpo {
				server a {
					url http://127.0.0.1:9000/mcp
				}
			}`,
			want: &Handler{Mount: "/", Servers: []*ServerConfig{{Name: "a", URL: "http://127.0.0.1:9000/mcp"}}},
		},
		{
			name: "config lines",
			input: `mcpo /tools {
				config /etc/mcpo/claude_desktop_config.json
				config "relative dir/mcpo.json"
			}`,
			want: &Handler{Mount: "/tools", ConfigFiles: []string{
				"/etc/mcpo/claude_desktop_config.json",
				"relative dir/mcpo.json",
			}},
		},
		{
			name: "config and server blocks together",
			input: `mcpo /tools {
				config a.json
				server time {
					command uvx mcp-server-time
				}
				config b.json
				title "All tools"
				max_request_body 2MB
			}`,
			want: &Handler{
				Mount:          "/tools",
				Servers:        []*ServerConfig{{Name: "time", Command: "uvx", Args: []string{"mcp-server-time"}}},
				ConfigFiles:    []string{"a.json", "b.json"},
				Title:          "All tools",
				MaxRequestBody: 2000000,
			},
		},
		{
			name: "block-level settings before and after the top-level server",
			input: `mcpo /x {
				max_request_body 1KB
				command prog
				title T
			}`,
			want: &Handler{Mount: "/x", Title: "T", MaxRequestBody: 1000, Servers: []*ServerConfig{{Command: "prog"}}},
		},
		{
			name: "api keys append and keep their placeholders",
			input: `mcpo /x {
				command prog
				api_key {env.MCPO_KEY}
				api_key {file./run/secrets/key}
				protect_docs
			}`,
			want: &Handler{Mount: "/x", APIKeys: []APIKey{{Key: "{env.MCPO_KEY}"}, {Key: "{file./run/secrets/key}"}}, ProtectDocs: true, Servers: []*ServerConfig{{Command: "prog"}}},
		},
		{
			name: "oauth block in a server block, and admin keys",
			input: `mcpo /x {
				admin_key {env.ADMIN}
				server gh {
					url https://mcp.example.com/mcp
					oauth {
						redirect_uri https://caddy.example.com/x/gh/oauth/callback
						client_id cid
						client_secret {env.SECRET}
						scopes repo read:user
						issuer https://as.example.com
					}
				}
			}`,
			want: &Handler{Mount: "/x", AdminKeys: []string{"{env.ADMIN}"}, Servers: []*ServerConfig{{Name: "gh", URL: "https://mcp.example.com/mcp",
				OAuth: &OAuth{RedirectURI: "https://caddy.example.com/x/gh/oauth/callback", ClientID: "cid", ClientSecret: "{env.SECRET}",
					Scopes: []string{"repo", "read:user"}, Issuer: "https://as.example.com"}}}},
		},
		{
			name:  "oauth client credentials with a private key",
			input: "mcpo /x {\n\turl https://h/mcp\n\toauth {\n\t\tgrant client_credentials\n\t\tclient_id m2m\n\t\tprivate_key {file./k.pem}\n\t\tsigning_algorithm ES256\n\t}\n}",
			want: &Handler{Mount: "/x", Servers: []*ServerConfig{{URL: "https://h/mcp",
				OAuth: &OAuth{Grant: "client_credentials", ClientID: "m2m", PrivateKey: "{file./k.pem}", SigningAlgorithm: "ES256"}}}},
		},
		{
			name:  "security basic",
			input: "mcpo /x {\n\tcommand prog\n\tsecurity basic\n}",
			want:  &Handler{Mount: "/x", Security: &SecurityScheme{Type: "basic"}, Servers: []*ServerConfig{{Command: "prog"}}},
		},
		{
			name:  "security bearer with a format",
			input: "mcpo /x {\n\tcommand prog\n\tsecurity bearer JWT\n}",
			want:  &Handler{Mount: "/x", Security: &SecurityScheme{Type: "bearer", BearerFormat: "JWT"}, Servers: []*ServerConfig{{Command: "prog"}}},
		},
		{
			name:  "security header",
			input: "mcpo /x {\n\tcommand prog\n\tsecurity header X-API-Key\n}",
			want:  &Handler{Mount: "/x", Security: &SecurityScheme{Type: "header", Name: "X-API-Key"}, Servers: []*ServerConfig{{Command: "prog"}}},
		},
		{
			name:  "cors any origin",
			input: "mcpo /x {\n\tcommand prog\n\tcors *\n}",
			want:  &Handler{Mount: "/x", CORS: &CORS{Origins: []string{"*"}}, Servers: []*ServerConfig{{Command: "prog"}}},
		},
		{
			name: "cors origins with max_age, with server blocks",
			input: `mcpo /x {
				cors https://chat.example.com http://localhost:8080 {
					max_age 1h
				}
				server a {
					command prog
				}
			}`,
			want: &Handler{Mount: "/x", CORS: &CORS{Origins: []string{"https://chat.example.com", "http://localhost:8080"}, MaxAge: caddy.Duration(time.Hour)},
				Servers: []*ServerConfig{{Name: "a", Command: "prog"}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMcpoBlock(t, tt.input)
			if err != nil {
				t.Fatalf("UnmarshalCaddyfile: %v", err)
			}
			assertSameHandler(t, got, tt.want)
		})
	}
}

func TestUnmarshalCaddyfile_AcceptsEveryTransportSpelling(t *testing.T) {
	for _, tr := range []string{"stdio", "streamable_http", "streamable-http", "streamablehttp", "http", "sse", "auto", "SSE"} {
		t.Run(tr, func(t *testing.T) {
			got, err := parseMcpoBlock(t, "mcpo /x {\n\turl http://127.0.0.1/mcp\n\ttransport "+tr+"\n}")
			if err != nil {
				t.Fatalf("UnmarshalCaddyfile: %v", err)
			}
			assertSameHandler(t, got, &Handler{Mount: "/x", Servers: []*ServerConfig{{URL: "http://127.0.0.1/mcp", Transport: tr}}})
		})
	}
}

func TestUnmarshalCaddyfile_AcceptsEveryProtocolChoice(t *testing.T) {
	for _, p := range []string{"auto", "legacy", "modern", "2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"} {
		t.Run(p, func(t *testing.T) {
			got, err := parseMcpoBlock(t, "mcpo /x {\n\tcommand prog\n\tprotocol "+p+"\n}")
			if err != nil {
				t.Fatalf("UnmarshalCaddyfile: %v", err)
			}
			assertSameHandler(t, got, &Handler{Mount: "/x", Servers: []*ServerConfig{{Command: "prog", Protocol: p}}})
		})
	}
}

func TestUnmarshalCaddyfile_TopLevelServerHasNoName(t *testing.T) {
	h, err := parseMcpoBlock(t, "mcpo /time {\n\tcommand prog\n}")
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Servers) != 1 || h.Servers[0].Name != "" {
		t.Fatalf("servers = %s, want one server without a name", handlerJSONForTest(t, h))
	}
}

// ---------------------------------------------------------------------------
// UnmarshalCaddyfile: invalid input

func TestUnmarshalCaddyfile_RejectsBadInputAtTheOffendingLine(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		line    int
		substrs []string
	}{
		{
			name:    "unknown subdirective at the top",
			input:   "mcpo /x {\n\tcommand prog\n\tbogus 1\n}",
			line:    3,
			substrs: []string{`unknown subdirective "bogus"`},
		},
		{
			name:    "resources neither on nor off",
			input:   "mcpo /x {\n\tcommand prog\n\tresources maybe\n}",
			line:    3,
			substrs: []string{`resources "maybe": want on or off`},
		},
		{
			name:    "a relative root",
			input:   "mcpo /x {\n\tcommand prog\n\troots data\n}",
			line:    3,
			substrs: []string{`roots "data": want an absolute path`},
		},
		{
			name:    "an unknown elicitation policy",
			input:   "mcpo /x {\n\tcommand prog\n\telicitation ask\n}",
			line:    3,
			substrs: []string{`elicitation "ask": want off, decline or defaults`},
		},
		{
			name:    "an unknown sampling setting",
			input:   "mcpo /x {\n\tcommand prog\n\tsampling on\n}",
			line:    3,
			substrs: []string{`sampling "on": want off or relay`},
		},
		{
			name:    "sampling without its setting",
			input:   "mcpo /x {\n\tcommand prog\n\tsampling\n}",
			line:    3,
			substrs: []string{"sampling"},
		},
		{
			name:    "unknown subdirective in a server block",
			input:   "mcpo /x {\n\tserver a {\n\t\tcommand prog\n\t\tcnfig x\n\t}\n}",
			line:    4,
			substrs: []string{`unknown subdirective "cnfig"`},
		},
		{
			name:    "config is not a server subdirective",
			input:   "mcpo /x {\n\tserver a {\n\t\tcommand prog\n\t\tconfig x.json\n\t}\n}",
			line:    4,
			substrs: []string{`unknown subdirective "config"`},
		},
		{
			name:    "nested server block",
			input:   "mcpo /x {\n\tserver a {\n\t\tcommand prog\n\t\tserver b {\n\t\t}\n\t}\n}",
			line:    4,
			substrs: []string{`unknown subdirective "server"`},
		},
		{
			name:    "command and url, command first",
			input:   "mcpo /x {\n\tcommand prog\n\turl http://127.0.0.1/mcp\n}",
			line:    3,
			substrs: []string{"command and url are exclusive"},
		},
		{
			name:    "command and url, url first",
			input:   "mcpo /x {\n\turl http://127.0.0.1/mcp\n\tcommand prog\n}",
			line:    3,
			substrs: []string{"command and url are exclusive"},
		},
		{
			name:    "command and url in a server block, command first",
			input:   "mcpo /x {\n\tserver a {\n\t\tcommand prog\n\t\turl http://127.0.0.1/mcp\n\t}\n}",
			line:    4,
			substrs: []string{"command and url are exclusive"},
		},
		{
			name:    "command and url in a server block, url first",
			input:   "mcpo /x {\n\tserver a {\n\t\turl http://127.0.0.1/mcp\n\t\tcommand prog\n\t}\n}",
			line:    4,
			substrs: []string{"command and url are exclusive"},
		},
		{
			name:    "command given twice",
			input:   "mcpo /x {\n\tcommand prog\n\tcommand other\n}",
			line:    3,
			substrs: []string{"command given twice"},
		},
		{
			name:    "duplicate server names",
			input:   "mcpo /x {\n\tserver a {\n\t\tcommand prog\n\t}\n\tserver a {\n\t\tcommand other\n\t}\n}",
			line:    5,
			substrs: []string{`server name "a" is used twice`},
		},
		{
			name:    "server block after a top-level command",
			input:   "mcpo /x {\n\tcommand prog\n\tserver a {\n\t\tcommand other\n\t}\n}",
			line:    3,
			substrs: []string{"server blocks cannot be mixed", "line 2"},
		},
		{
			name:    "config after a top-level url",
			input:   "mcpo /x {\n\ttitle T\n\turl http://127.0.0.1/mcp\n\tconfig a.json\n}",
			line:    4,
			substrs: []string{"config cannot be mixed", "line 3"},
		},
		{
			name:    "top-level command after a server block",
			input:   "mcpo /x {\n\tserver a {\n\t\tcommand prog\n\t}\n\tcommand other\n}",
			line:    5,
			substrs: []string{"command belongs in a server block"},
		},
		{
			name:    "top-level timeout after a server block",
			input:   "mcpo /x {\n\tserver a {\n\t\tcommand prog\n\t}\n\ttimeout 5s\n}",
			line:    5,
			substrs: []string{"timeout belongs in a server block"},
		},
		{
			name:    "top-level env after a config line",
			input:   "mcpo /x {\n\tconfig a.json\n\tenv A B\n}",
			line:    3,
			substrs: []string{"env belongs in a server block"},
		},
		{
			name:    "bad transport",
			input:   "mcpo /x {\n\turl http://127.0.0.1/mcp\n\ttransport websocket\n}",
			line:    3,
			substrs: []string{`unknown transport "websocket"`},
		},
		{
			name:    "bad protocol",
			input:   "mcpo /x {\n\tcommand prog\n\tprotocol 2099-01-01\n}",
			line:    3,
			substrs: []string{`unknown protocol "2099-01-01"`},
		},
		{
			name:    "bad protocol in a server block",
			input:   "mcpo /x {\n\tserver a {\n\t\tcommand prog\n\t\tprotocol newest\n\t}\n}",
			line:    4,
			substrs: []string{`unknown protocol "newest"`},
		},
		{
			name:    "duration that does not parse",
			input:   "mcpo /x {\n\tcommand prog\n\ttimeout soon\n}",
			line:    3,
			substrs: []string{`timeout "soon"`, "positive duration"},
		},
		{
			name:    "zero max_concurrent",
			input:   "mcpo /x {\n\tcommand prog\n\tmax_concurrent 0\n}",
			line:    3,
			substrs: []string{`max_concurrent "0"`, "1 or more"},
		},
		{
			name:    "max_concurrent that is not a number",
			input:   "mcpo /x {\n\tcommand prog\n\tmax_concurrent many\n}",
			line:    3,
			substrs: []string{`max_concurrent "many"`},
		},
		{
			name:    "tool_timeout that does not parse",
			input:   "mcpo /x {\n\tcommand prog\n\ttool_timeout slow forever\n}",
			line:    3,
			substrs: []string{`tool_timeout "forever"`, "positive duration"},
		},
		{
			name:    "kill_timeout twice",
			input:   "mcpo /x {\n\tcommand prog\n\tkill_timeout 1s\n\tkill_timeout 2s\n}",
			line:    4,
			substrs: []string{"kill_timeout"},
		},
		{
			name:    "zero start_timeout",
			input:   "mcpo /x {\n\tcommand prog\n\tstart_timeout 0s\n}",
			line:    3,
			substrs: []string{`start_timeout "0s"`},
		},
		{
			name:    "negative timeout",
			input:   "mcpo /x {\n\tcommand prog\n\ttimeout -5s\n}",
			line:    3,
			substrs: []string{`timeout "-5s"`},
		},
		{
			name:    "tool_error_status below 400",
			input:   "mcpo /x {\n\tcommand prog\n\ttool_error_status 399\n}",
			line:    3,
			substrs: []string{"tool_error_status 399", "400-599"},
		},
		{
			name:    "tool_error_status above 599",
			input:   "mcpo /x {\n\tcommand prog\n\ttool_error_status 600\n}",
			line:    3,
			substrs: []string{"tool_error_status 600"},
		},
		{
			name:    "tool_error_status success code",
			input:   "mcpo /x {\n\tcommand prog\n\ttool_error_status 200\n}",
			line:    3,
			substrs: []string{"tool_error_status 200"},
		},
		{
			name:    "tool_error_status not a number",
			input:   "mcpo /x {\n\tcommand prog\n\ttool_error_status 5xx\n}",
			line:    3,
			substrs: []string{`tool_error_status "5xx"`},
		},
		{
			name:    "max_request_body not a size",
			input:   "mcpo /x {\n\tcommand prog\n\tmax_request_body lots\n}",
			line:    3,
			substrs: []string{`max_request_body "lots"`},
		},
		{
			name:    "unknown oauth subdirective",
			input:   "mcpo /x {\n\turl https://h/mcp\n\toauth {\n\t\tclient_id a\n\t\tsecret b\n\t}\n}",
			line:    5,
			substrs: []string{`unknown oauth subdirective "secret"`},
		},
		{
			name:    "oauth client_id twice",
			input:   "mcpo /x {\n\turl https://h/mcp\n\toauth {\n\t\tclient_id a\n\t\tclient_id b\n\t}\n}",
			line:    5,
			substrs: []string{"oauth client_id given twice"},
		},
		{
			name:    "oauth with a bad grant",
			input:   "mcpo /x {\n\turl https://h/mcp\n\toauth {\n\t\tgrant password\n\t}\n}",
			line:    4,
			substrs: []string{`oauth grant "password"`},
		},
		{
			name:    "oauth with arguments",
			input:   "mcpo /x {\n\turl https://h/mcp\n\toauth github\n}",
			line:    3,
			substrs: []string{"oauth takes a block"},
		},
		{
			name:    "oauth scopes without scopes",
			input:   "mcpo /x {\n\turl https://h/mcp\n\toauth {\n\t\tscopes\n\t}\n}",
			line:    4,
			substrs: []string{"want oauth scopes <scopes...>"},
		},
		{
			name:    "api_key without a value",
			input:   "mcpo /x {\n\tcommand prog\n\tapi_key\n}",
			line:    3,
			substrs: []string{"api_key"},
		},
		{
			name:    "api_key with two values",
			input:   "mcpo /x {\n\tcommand prog\n\tapi_key a b\n}",
			line:    3,
			substrs: []string{"api_key"},
		},
		{
			name:    "protect_docs with an argument",
			input:   "mcpo /x {\n\tcommand prog\n\tprotect_docs yes\n}",
			line:    3,
			substrs: []string{"protect_docs"},
		},
		{
			name:    "unknown security type",
			input:   "mcpo /x {\n\tcommand prog\n\tsecurity oauth\n}",
			line:    3,
			substrs: []string{`security: unknown type "oauth"`, "basic, bearer"},
		},
		{
			name:    "security header without a name",
			input:   "mcpo /x {\n\tcommand prog\n\tsecurity header\n}",
			line:    3,
			substrs: []string{`security: type "header" needs the name`},
		},
		{
			name:    "security twice",
			input:   "mcpo /x {\n\tcommand prog\n\tsecurity basic\n\tsecurity bearer\n}",
			line:    4,
			substrs: []string{"security given twice"},
		},
		{
			name:    "cors without origins",
			input:   "mcpo /x {\n\tcommand prog\n\tcors\n}",
			line:    3,
			substrs: []string{"cors needs the origins"},
		},
		{
			name:    "cors origin with a path",
			input:   "mcpo /x {\n\tcommand prog\n\tcors https://chat.example.com/app\n}",
			line:    3,
			substrs: []string{`cors origin "https://chat.example.com/app"`},
		},
		{
			name:    "cors origin without a scheme",
			input:   "mcpo /x {\n\tcommand prog\n\tcors chat.example.com\n}",
			line:    3,
			substrs: []string{`cors origin "chat.example.com"`},
		},
		{
			name:    "cors twice",
			input:   "mcpo /x {\n\tcommand prog\n\tcors *\n\tcors https://a.example\n}",
			line:    4,
			substrs: []string{"cors given twice"},
		},
		{
			name:    "cors with an unknown subdirective",
			input:   "mcpo /x {\n\tcommand prog\n\tcors * {\n\t\tcredentials\n\t}\n}",
			line:    4,
			substrs: []string{`unknown cors subdirective "credentials"`},
		},
		{
			name:    "max_request_body zero",
			input:   "mcpo /x {\n\tcommand prog\n\tmax_request_body 0\n}",
			line:    3,
			substrs: []string{`max_request_body "0"`},
		},
		{
			name:    "max_request_bytes_in_flight not a size",
			input:   "mcpo /x {\n\tcommand prog\n\tmax_request_bytes_in_flight many\n}",
			line:    3,
			substrs: []string{`max_request_bytes_in_flight "many": want a size`},
		},
		{
			name:    "max_request_bytes_in_flight below max_request_body, at its line",
			input:   "mcpo /x {\n\tcommand prog\n\tmax_request_bytes_in_flight 1MB\n\tmax_request_body 2MB\n}",
			line:    3,
			substrs: []string{"max_request_bytes_in_flight 1000000 is less than max_request_body (2000000)"},
		},
		{
			name:    "mount with a wildcard",
			input:   "mcpo /time/* {\n\tcommand prog\n}",
			line:    1,
			substrs: []string{`mount "/time/*"`, "wildcards"},
		},
		{
			name:    "mount with a question mark",
			input:   "mcpo /ti?me {\n\tcommand prog\n}",
			line:    1,
			substrs: []string{`mount "/ti?me"`},
		},
		{
			name:    "mount with a placeholder",
			input:   "mcpo /{env.MOUNT} {\n\tcommand prog\n}",
			line:    1,
			substrs: []string{"placeholders"},
		},
		{
			name:    "mount without a leading slash",
			input:   "mcpo time {\n\tcommand prog\n}",
			line:    1,
			substrs: []string{`mount "time" must start with '/'`},
		},
		{
			name:    "extra argument after the mount",
			input:   "mcpo /time extra {\n\tcommand prog\n}",
			line:    1,
			substrs: []string{"wrong argument count", "'extra'"},
		},
		{
			name:    "server block with two names",
			input:   "mcpo /x {\n\tserver a b {\n\t\tcommand prog\n\t}\n}",
			line:    2,
			substrs: []string{"wrong argument count"},
		},
		{
			name:    "server block without a name",
			input:   "mcpo /x {\n\tserver {\n\t\tcommand prog\n\t}\n}",
			line:    2,
			substrs: []string{"wrong argument count", "'server'"},
		},
		{
			name:    "max_timeout that is not a duration",
			input:   "mcpo /x {\n\tcommand prog\n\tmax_timeout soon\n}",
			line:    3,
			substrs: []string{`max_timeout "soon": want a positive duration`},
		},
		{
			name:    "max_timeout shorter than timeout, at the later line",
			input:   "mcpo /x {\n\tcommand prog\n\tmax_timeout 30s\n\ttimeout 1m\n}",
			line:    4,
			substrs: []string{"max_timeout 30s is shorter than timeout 1m0s"},
		},
		{
			name:    "max_timeout shorter than the default timeout",
			input:   "mcpo /x {\n\tcommand prog\n\tmax_timeout 1m\n\ttitle T\n}",
			line:    3,
			substrs: []string{"max_timeout 1m0s is shorter than timeout 5m0s"},
		},
		{
			name:    "a rule about a setting, at the line of that setting",
			input:   "mcpo /x {\n\tcommand prog\n\tqueue_timeout 1s\n\ttitle T\n}",
			line:    3,
			substrs: []string{"queue_timeout needs max_concurrent"},
		},
		{
			name:    "a rule about two settings, at the later one",
			input:   "mcpo /x {\n\tinherit_env HOME\n\turl http://127.0.0.1/mcp\n\tenv A B\n}",
			line:    4,
			substrs: []string{"env and inherit_env apply to stdio servers only"},
		},
		{
			name:    "a setting of a later server block, at its line",
			input:   "mcpo /x {\n\tserver a {\n\t\tcommand prog\n\t}\n\tserver b {\n\t\turl http://127.0.0.1/mcp\n\t\ttool_error_status 200\n\t}\n}",
			line:    7,
			substrs: []string{"tool_error_status 200: want an HTTP error status"},
		},
		{
			name:    "a handler setting, at its line",
			input:   "mcpo /x {\n\tprotect_docs\n\tcommand prog\n}",
			line:    2,
			substrs: []string{"protect_docs needs an api_key"},
		},
		{
			name:    "security with api_key, at the later line",
			input:   "mcpo /x {\n\tsecurity basic\n\tcommand prog\n\tapi_key k\n}",
			line:    4,
			substrs: []string{"drop one"},
		},
		{
			name:    "an open authorize page, at the server's oauth line",
			input:   "mcpo /x {\n\tserver gh {\n\t\turl https://h/mcp\n\t\toauth {\n\t\t\tredirect_uri https://c/x/gh/oauth/callback\n\t\t}\n\t}\n}",
			line:    4,
			substrs: []string{"the oauth authorize page would be open to anyone"},
		},
		{
			name:    "an unknown transport in a server block",
			input:   "mcpo /x {\n\tserver a {\n\t\turl http://127.0.0.1/mcp\n\t\ttransport websocket\n\t}\n}",
			line:    4,
			substrs: []string{`unknown transport "websocket"`},
		},
		{
			name:    "an invalid server name, at its server line",
			input:   "mcpo /x {\n\tserver a {\n\t\tcommand prog\n\t}\n\tserver docs {\n\t\tcommand prog\n\t}\n}",
			line:    5,
			substrs: []string{`server name "docs" is reserved`},
		},
		{
			name:    "server without a block",
			input:   "mcpo /x {\n\tserver lonely\n}",
			line:    2,
			substrs: []string{`server "lonely": needs a command (stdio) or a url (HTTP)`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseMcpoBlock(t, tt.input)
			assertErrAtLine(t, err, tt.line, tt.substrs...)
		})
	}
}

func TestUnmarshalCaddyfile_RejectsMissingArguments(t *testing.T) {
	tests := []struct {
		name     string
		line     string // the offending line
		inServer bool   // put the line in a server block rather than at the top
	}{
		{name: "command", line: "command"},
		{name: "args", line: "args"},
		{name: "env without value", line: "env KEY"},
		{name: "env without name", line: "env"},
		{name: "env with three arguments", line: "env KEY value extra"},
		{name: "inherit_env", line: "inherit_env"},
		{name: "dir", line: "dir"},
		{name: "dir with two arguments", line: "dir /a /b"},
		{name: "header without value", line: "header Authorization"},
		{name: "header with three arguments", line: "header Authorization Bearer x"},
		{name: "transport", line: "transport"},
		{name: "protocol", line: "protocol"},
		{name: "tools", line: "tools"},
		{name: "disabled_tools", line: "disabled_tools"},
		{name: "timeout", line: "timeout"},
		{name: "timeout with two arguments", line: "timeout 5s 10s"},
		{name: "start_timeout", line: "start_timeout"},
		{name: "tool_timeout without duration", line: "tool_timeout slow"},
		{name: "tool_timeout with three arguments", line: "tool_timeout slow 1s 2s"},
		{name: "max_concurrent", line: "max_concurrent"},
		{name: "queue_timeout", line: "queue_timeout"},
		{name: "drain_timeout", line: "drain_timeout"},
		{name: "task_ttl", line: "task_ttl"},
		{name: "stop_timeout", line: "stop_timeout"},
		{name: "kill_timeout with two arguments", line: "kill_timeout 1s 2s"},
		{name: "tool_error_status", line: "tool_error_status"},
		{name: "block title", line: "title"},
		{name: "block title with two arguments", line: "title two words"},
		{name: "max_request_body", line: "max_request_body"},
		{name: "max_request_body with two arguments", line: "max_request_body 1 MB"},
		{name: "config", line: "config"},
		{name: "config with two files", line: "config a.json b.json"},
		{name: "url in a server block", line: "url", inServer: true},
		{name: "server title", line: "title", inServer: true},
		{name: "server title with two arguments", line: "title two words", inServer: true},
		{name: "args in a server block", line: "args", inServer: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The offending line comes first, so that no other check
			// (command twice, config mixed with a top-level server) fires.
			input, line := "mcpo /x {\n\t"+tt.line+"\n\tcommand prog\n}", 2
			if tt.inServer {
				input, line = "mcpo /x {\n\tserver a {\n\t\t"+tt.line+"\n\t\tcommand prog\n\t}\n}", 3
			}
			_, err := parseMcpoBlock(t, input)
			assertErrAtLine(t, err, line, "wrong argument count")
		})
	}
}

// Errors about a whole block are reported at the line the block starts on,
// not where it ends.
func TestUnmarshalCaddyfile_RejectsBlockWithoutServerAtItsLine(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		line    int
		substrs []string
	}{
		{
			name:    "directive without a block",
			input:   "mcpo /x",
			line:    1,
			substrs: []string{"no MCP server configured"},
		},
		{
			name:    "empty block",
			input:   "mcpo /x {\n}",
			line:    1,
			substrs: []string{"no MCP server configured"},
		},
		{
			name:    "block with block-level settings only",
			input:   "\n\nmcpo /x {\n\ttitle T\n\tmax_request_body 1MB\n}",
			line:    3,
			substrs: []string{"no MCP server configured"},
		},
		{
			name:    "top-level server without command or url",
			input:   "# comment\nmcpo /x {\n\targs a\n\tenv A B\n\ttimeout 5s\n}",
			line:    2,
			substrs: []string{"needs a command (stdio) or a url (HTTP)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseMcpoBlock(t, tt.input)
			assertErrAtLine(t, err, tt.line, tt.substrs...)
		})
	}
}

// A server block without command or url is reported at its "server" line,
// like the top-level equivalent; the closing brace of a long block says
// little.
func TestUnmarshalCaddyfile_ServerBlockWithoutCommandOrURLIsReportedAtTheServerLine(t *testing.T) {
	tests := []struct {
		name  string
		input string
		line  int
	}{
		{
			name:  "settings but no command",
			input: "mcpo /x {\n\tserver a {\n\t\targs x\n\t\ttitle T\n\t\ttimeout 5s\n\t}\n}",
			line:  2,
		},
		{
			name:  "empty server block",
			input: "mcpo /x {\n\tserver ok {\n\t\tcommand prog\n\t}\n\tserver empty {\n\t}\n}",
			line:  5,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseMcpoBlock(t, tt.input)
			assertErrAtLine(t, err, tt.line, "needs a command (stdio) or a url (HTTP)")
		})
	}
}

// humanize.ParseBytes accepts sizes up to 2^64-1; those above 2^63-1 must
// not wrap to a negative limit (which the bridge would silently replace by
// its 8 MiB default).
func TestUnmarshalCaddyfile_RejectsMaxRequestBodyBeyondInt64(t *testing.T) {
	h, err := parseMcpoBlock(t, "mcpo /x {\n\tcommand prog\n\tmax_request_body 10EB\n}")
	if err == nil {
		t.Fatalf("max_request_body 10EB: got no error and MaxRequestBody = %d, want an error at Testfile:3", h.MaxRequestBody)
	}
	assertErrAtLine(t, err, 3, "max_request_body")
}

// ---------------------------------------------------------------------------
// The directive in a real Caddyfile, through the httpcaddyfile adapter

type adaptedRoute struct {
	Match  []map[string]json.RawMessage `json:"match"`
	Handle []json.RawMessage            `json:"handle"`
}

// adaptedHandler is one handler of the adapted configuration, in document
// order, with the matchers of its route and of the routes around it.
type adaptedHandler struct {
	Name    string
	Raw     json.RawMessage
	Match   []map[string]json.RawMessage // of its own route
	Parents [][]map[string]json.RawMessage
}

// adaptCaddyfileForTest adapts a Caddyfile to JSON and returns the JSON and
// the handlers of server srv0 in document order, subroutes flattened.
func adaptCaddyfileForTest(t *testing.T, input string) ([]byte, []adaptedHandler) {
	t.Helper()
	adapter := caddyconfig.GetAdapter("caddyfile")
	if adapter == nil {
		t.Fatal("no caddyfile adapter registered")
	}
	out, warnings, err := adapter.Adapt([]byte(input), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v\n%s", err, input)
	}
	for _, w := range warnings {
		t.Logf("adapter warning: %s", w.String())
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []adaptedRoute `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("decoding adapted JSON: %v\n%s", err, out)
	}
	srv, ok := cfg.Apps.HTTP.Servers["srv0"]
	if !ok {
		t.Fatalf("adapted JSON has no server srv0:\n%s", out)
	}
	var found []adaptedHandler
	var walk func(routes []adaptedRoute, parents [][]map[string]json.RawMessage)
	walk = func(routes []adaptedRoute, parents [][]map[string]json.RawMessage) {
		for _, r := range routes {
			for _, raw := range r.Handle {
				var h struct {
					Handler string         `json:"handler"`
					Routes  []adaptedRoute `json:"routes"`
				}
				if err := json.Unmarshal(raw, &h); err != nil {
					t.Fatalf("decoding handler %s: %v", raw, err)
				}
				found = append(found, adaptedHandler{Name: h.Handler, Raw: raw, Match: r.Match, Parents: parents})
				if h.Handler == "subroute" {
					walk(h.Routes, append(slices.Clone(parents), r.Match))
				}
			}
		}
	}
	walk(srv.Routes, nil)
	return out, found
}

func mcpoHandlersOf(found []adaptedHandler) []adaptedHandler {
	var out []adaptedHandler
	for _, h := range found {
		if h.Name == "mcpo" {
			out = append(out, h)
		}
	}
	return out
}

func handlerNamesOf(found []adaptedHandler) []string {
	var names []string
	for _, h := range found {
		names = append(names, h.Name)
	}
	return names
}

// pathMatcherOf returns the path matcher of a route's only matcher set, nil
// when the route has no matcher.
func pathMatcherOf(t *testing.T, match []map[string]json.RawMessage) []string {
	t.Helper()
	if len(match) == 0 {
		return nil
	}
	if len(match) != 1 || len(match[0]) != 1 {
		t.Fatalf("route matchers = %v, want a single path matcher", match)
	}
	raw, ok := match[0]["path"]
	if !ok {
		t.Fatalf("route matchers = %v, want a path matcher", match)
	}
	var paths []string
	if err := json.Unmarshal(raw, &paths); err != nil {
		t.Fatal(err)
	}
	return paths
}

func decodeAdaptedMcpo(t *testing.T, raw json.RawMessage) *Handler {
	t.Helper()
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		t.Fatal(err)
	}
	if string(obj["handler"]) != `"mcpo"` {
		t.Fatalf("handler = %s, want \"mcpo\"", obj["handler"])
	}
	// As Caddy loads a module: without its name key, unknown fields rejected.
	delete(obj, "handler")
	stripped, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	var h Handler
	if err := caddy.StrictUnmarshalJSON(stripped, &h); err != nil {
		t.Fatalf("loading adapted handler %s: %v", raw, err)
	}
	return &h
}

const bcryptHashForTest = "$2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG"

func TestCaddyfileAdapter_MountGetsPathMatcherForItselfAndBelow(t *testing.T) {
	_, found := adaptCaddyfileForTest(t, `:8080 {
	mcpo /time/ {
		command uvx mcp-server-time
		timeout 30s
	}
}
`)
	mcpo := mcpoHandlersOf(found)
	if len(mcpo) != 1 {
		t.Fatalf("found %d mcpo handlers, want 1: %v", len(mcpo), handlerNamesOf(found))
	}
	if got, want := pathMatcherOf(t, mcpo[0].Match), []string{"/time*"}; !slices.Equal(got, want) {
		t.Errorf("path matcher = %q, want %q", got, want)
	}
	assertSameHandler(t, decodeAdaptedMcpo(t, mcpo[0].Raw), &Handler{
		Mount: "/time",
		Servers: []*ServerConfig{{
			Command: "uvx",
			Args:    []string{"mcp-server-time"},
			Timeout: caddy.Duration(30 * time.Second),
		}},
	})
}

func TestCaddyfileAdapter_RootMountHasNoMatcher(t *testing.T) {
	for _, mount := range []string{"", " /"} {
		t.Run("mcpo"+mount, func(t *testing.T) {
			_, found := adaptCaddyfileForTest(t, ":8080 {\n\tmcpo"+mount+" {\n\t\turl http://127.0.0.1:9000/mcp\n\t}\n}\n")
			mcpo := mcpoHandlersOf(found)
			if len(mcpo) != 1 {
				t.Fatalf("found %d mcpo handlers, want 1", len(mcpo))
			}
			if len(mcpo[0].Match) != 0 {
				t.Errorf("route matchers = %v, want none", mcpo[0].Match)
			}
			if h := decodeAdaptedMcpo(t, mcpo[0].Raw); h.Mount != "/" {
				t.Errorf("mount = %q, want /", h.Mount)
			}
		})
	}
}

func TestCaddyfileAdapter_HandlerJSONHoldsMountServersAndConfigFiles(t *testing.T) {
	_, found := adaptCaddyfileForTest(t, `:8080 {
	mcpo /tools {
		title "All tools"
		max_request_body 1MB
		config testdata/claude_desktop_config.json
		server time {
			command uvx mcp-server-time
			env TZ Europe/Paris
			title Time
		}
		server remote {
			url https://mcp.example.com/mcp
			header Authorization "Bearer {env.TOKEN}"
			transport auto
			protocol 2025-06-18
			tools search fetch
			disabled_tools delete
			start_timeout 10s
			tool_error_status 502
		}
	}
}
`)
	mcpo := mcpoHandlersOf(found)
	if len(mcpo) != 1 {
		t.Fatalf("found %d mcpo handlers, want 1", len(mcpo))
	}
	assertSameHandler(t, decodeAdaptedMcpo(t, mcpo[0].Raw), &Handler{
		Mount:          "/tools",
		Title:          "All tools",
		MaxRequestBody: 1000000,
		ConfigFiles:    []string{"testdata/claude_desktop_config.json"},
		Servers: []*ServerConfig{
			{
				Name:    "time",
				Command: "uvx",
				Args:    []string{"mcp-server-time"},
				Env:     map[string]string{"TZ": "Europe/Paris"},
				Title:   "Time",
			},
			{
				Name:            "remote",
				URL:             "https://mcp.example.com/mcp",
				Headers:         map[string]string{"Authorization": "Bearer {env.TOKEN}"},
				Transport:       "auto",
				Protocol:        "2025-06-18",
				Tools:           []string{"search", "fetch"},
				DisabledTools:   []string{"delete"},
				StartTimeout:    caddy.Duration(10 * time.Second),
				ToolErrorStatus: 502,
			},
		},
	})
}

func TestCaddyfileAdapter_WorksInsideHandlePathWithoutOrderOption(t *testing.T) {
	_, found := adaptCaddyfileForTest(t, `:8080 {
	handle_path /api/* {
		mcpo /time {
			command uvx mcp-server-time
		}
	}
}
`)
	mcpo := mcpoHandlersOf(found)
	if len(mcpo) != 1 {
		t.Fatalf("found %d mcpo handlers, want 1: %v", len(mcpo), handlerNamesOf(found))
	}
	if got, want := pathMatcherOf(t, mcpo[0].Match), []string{"/time*"}; !slices.Equal(got, want) {
		t.Errorf("path matcher = %q, want %q", got, want)
	}
	if len(mcpo[0].Parents) != 1 {
		t.Fatalf("mcpo is nested in %d subroutes, want 1 (handle_path's)", len(mcpo[0].Parents))
	}
	if got, want := pathMatcherOf(t, mcpo[0].Parents[0]), []string{"/api/*"}; !slices.Equal(got, want) {
		t.Errorf("enclosing route's path matcher = %q, want %q", got, want)
	}
	names := handlerNamesOf(found)
	if want := []string{"subroute", "rewrite", "mcpo"}; !slices.Equal(names, want) {
		t.Errorf("handlers = %q, want %q (the prefix is stripped before mcpo)", names, want)
	}
	var rewrite struct {
		StripPathPrefix string `json:"strip_path_prefix"`
	}
	if err := json.Unmarshal(found[1].Raw, &rewrite); err != nil || rewrite.StripPathPrefix != "/api" {
		t.Errorf("rewrite = %s, want strip_path_prefix /api", found[1].Raw)
	}
}

func TestCaddyfileAdapter_WorksInsideRouteWithoutOrderOption(t *testing.T) {
	_, found := adaptCaddyfileForTest(t, `:8080 {
	route {
		mcpo /time {
			command uvx mcp-server-time
		}
		respond "not an MCP tool" 404
	}
}
`)
	names := handlerNamesOf(found)
	// route keeps the written order.
	if want := []string{"subroute", "mcpo", "static_response"}; !slices.Equal(names, want) {
		t.Fatalf("handlers = %q, want %q", names, want)
	}
	if got, want := pathMatcherOf(t, found[1].Match), []string{"/time*"}; !slices.Equal(got, want) {
		t.Errorf("path matcher = %q, want %q", got, want)
	}
}

func TestCaddyfileAdapter_SortsAfterBasicAuthAndBeforeReverseProxy(t *testing.T) {
	_, found := adaptCaddyfileForTest(t, `:8080 {
	reverse_proxy 127.0.0.1:9000
	mcpo /time {
		command uvx mcp-server-time
	}
	file_server
	basic_auth {
		bob `+bcryptHashForTest+`
	}
}
`)
	names := handlerNamesOf(found)
	idx := func(name string) int {
		i := slices.Index(names, name)
		if i < 0 {
			t.Fatalf("no %s handler in %q", name, names)
		}
		return i
	}
	auth, mcpo, proxy, files := idx("authentication"), idx("mcpo"), idx("reverse_proxy"), idx("file_server")
	if !(auth < mcpo && mcpo < proxy && mcpo < files) {
		t.Errorf("handlers = %q, want authentication before mcpo, and mcpo before reverse_proxy and file_server", names)
	}
}

// Like other path-matched directives, a nested mount must sort before its
// parent whatever the written order: the parent's route matches everything
// below it and its handler does not pass requests on, so "mcpo /a" written
// first would answer (with 404) every request for "mcpo /a/b".
func TestCaddyfileAdapter_NestedMountSortsBeforeItsParent(t *testing.T) {
	_, found := adaptCaddyfileForTest(t, `:8080 {
	mcpo {
		command root
	}
	mcpo /a {
		command a
	}
	mcpo /a/b {
		command ab
	}
}
`)
	var mounts []string
	for _, h := range mcpoHandlersOf(found) {
		mounts = append(mounts, decodeAdaptedMcpo(t, h.Raw).Mount)
	}
	if want := []string{"/a/b", "/a", "/"}; !slices.Equal(mounts, want) {
		t.Errorf("mcpo mounts in route order = %q, want %q", mounts, want)
	}
}

func TestCaddyfileAdapter_ReportsParseErrorsWithFileAndLine(t *testing.T) {
	_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(":8080 {\n\tmcpo /time {\n\t\tcommand prog\n\t\turl http://x/mcp\n\t}\n}\n"),
		map[string]any{"filename": "Caddyfile"})
	if err == nil {
		t.Fatal("got no error for command and url together")
	}
	if msg := err.Error(); !strings.Contains(msg, "Caddyfile:4") || !strings.Contains(msg, "command and url are exclusive") {
		t.Errorf("error = %q, want it located at Caddyfile:4 and explaining the conflict", msg)
	}
}

// Adapting a Caddyfile and loading its JSON back into a Handler must give
// the handler object again byte for byte, so the Caddyfile can express
// nothing the JSON configuration loses.
func TestCaddyfileAdapter_HandlerJSONRoundTripsByteForByte(t *testing.T) {
	input, err := os.ReadFile(filepath.Join("testdata", "all_subdirectives.caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	_, found := adaptCaddyfileForTest(t, string(input))
	mcpo := mcpoHandlersOf(found)
	if len(mcpo) < 3 {
		t.Fatalf("found %d mcpo handlers in the fixture, want at least 3", len(mcpo))
	}
	for _, a := range mcpo {
		h := decodeAdaptedMcpo(t, a.Raw)
		t.Run(h.Mount, func(t *testing.T) {
			// The adapter encodes handlers as JSON module objects; do the same.
			again := caddyconfig.JSONModuleObject(h, "handler", "mcpo", nil)
			if !bytes.Equal(again, a.Raw) {
				t.Errorf("handler JSON does not round-trip\nadapted: %s\n reload: %s", a.Raw, again)
			}
			// And a plain encode/decode cycle of the loaded Handler is stable.
			first, err := json.Marshal(h)
			if err != nil {
				t.Fatal(err)
			}
			var h2 Handler
			if err := caddy.StrictUnmarshalJSON(first, &h2); err != nil {
				t.Fatal(err)
			}
			second, err := json.Marshal(&h2)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(first, second) {
				t.Errorf("handler JSON changes on reload\nfirst:  %s\nsecond: %s", first, second)
			}
		})
	}
}

// The fixture exercises every subdirective; the handlers it gives must
// equal what UnmarshalCaddyfile gives for the same blocks.
func TestCaddyfileAdapter_FixtureMatchesDirectParse(t *testing.T) {
	input, err := os.ReadFile(filepath.Join("testdata", "all_subdirectives.caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	_, found := adaptCaddyfileForTest(t, string(input))
	byMount := map[string]*Handler{}
	for _, a := range mcpoHandlersOf(found) {
		h := decodeAdaptedMcpo(t, a.Raw)
		byMount[h.Mount] = h
	}
	want := map[string]*Handler{
		"/time": {
			Mount: "/time",
			Title: "Time",
			Servers: []*ServerConfig{{
				Command:         "uvx",
				Args:            []string{"mcp-server-time", "--local-timezone=UTC"},
				Env:             map[string]string{"A": "{env.A}", "B": "b b"},
				InheritEnv:      []string{"XDG_CACHE_HOME", "UV_CACHE_DIR"},
				Dir:             "/tmp",
				Transport:       "stdio",
				Protocol:        "legacy",
				Tools:           []string{"get_current_time", "convert_time"},
				DisabledTools:   []string{"nothing"},
				Timeout:         caddy.Duration(90 * time.Second),
				StartTimeout:    caddy.Duration(2 * time.Minute),
				ToolErrorStatus: 422,
			}},
			MaxRequestBody: 512 * 1024,
		},
		"/remote": {
			Mount: "/remote",
			Servers: []*ServerConfig{{
				URL:       "https://mcp.example.com/mcp?key={env.KEY}",
				Headers:   map[string]string{"Authorization": "Bearer {env.TOKEN}", "X-Client": "caddy-mcpo"},
				Transport: "sse",
				Protocol:  "2024-11-05",
			}},
		},
		"/tools": {
			Mount:       "/tools",
			Title:       "All tools",
			ConfigFiles: []string{"testdata/claude_desktop_config.json"},
			Servers: []*ServerConfig{
				{Name: "everything", Command: "npx", Args: []string{"-y", "@modelcontextprotocol/server-everything"}, InheritEnv: []string{"*"}, Title: "Everything"},
				{Name: "fetch", URL: "http://127.0.0.1:8931/mcp", Transport: "streamable_http", Protocol: "modern", Timeout: caddy.Duration(time.Hour)},
			},
		},
		"/": {
			Mount:   "/",
			Servers: []*ServerConfig{{URL: "http://127.0.0.1:9000/sse", Transport: "sse"}},
		},
	}
	for mount, w := range want {
		got, ok := byMount[mount]
		if !ok {
			t.Errorf("no mcpo handler at %q in the adapted fixture", mount)
			continue
		}
		assertSameHandler(t, got, w)
	}
	if len(byMount) != len(want) {
		t.Errorf("adapted fixture has %d mcpo handlers, want %d", len(byMount), len(want))
	}
}

package caddymcpo

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// ---------------------------------------------------------------------------
// Helpers

// writeConfigForTest writes content to a fresh config file and returns its
// path.
func writeConfigForTest(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "claude_desktop_config.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func serversJSONForTest(t *testing.T, servers []*ServerConfig) string {
	t.Helper()
	b, err := json.MarshalIndent(servers, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func assertSameServers(t *testing.T, got, want []*ServerConfig) {
	t.Helper()
	if g, w := serversJSONForTest(t, got), serversJSONForTest(t, want); g != w {
		t.Errorf("servers mismatch\n got: %s\nwant: %s", g, w)
	}
}

// loadConfigForTest writes content and loads it, with a logger that drops
// everything.
func loadConfigForTest(t *testing.T, content string) ([]*ServerConfig, string, error) {
	t.Helper()
	path := writeConfigForTest(t, content)
	servers, err := loadConfigFile(path, zap.NewNop())
	return servers, path, err
}

// ---------------------------------------------------------------------------
// loadConfigFile

func TestLoadConfigFile_PreservesFileOrderOfServers(t *testing.T) {
	servers, _, err := loadConfigForTest(t, `{"mcpServers": {
		"zeta":  {"command": "z"},
		"alpha": {"url": "http://127.0.0.1/a"},
		"Mid":   {"command": "m"},
		"beta":  {"command": "b"},
		"10":    {"command": "ten"}
	}}`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range servers {
		names = append(names, s.Name)
	}
	if want := []string{"zeta", "alpha", "Mid", "beta", "10"}; !slices.Equal(names, want) {
		t.Errorf("server names = %q, want file order %q", names, want)
	}
}

func TestLoadConfigFile_MapsEntryFieldsToServer(t *testing.T) {
	tests := []struct {
		name  string
		entry string
		want  *ServerConfig
	}{
		{
			name:  "command only",
			entry: `{"command": "uvx"}`,
			want:  &ServerConfig{Name: "s", Command: "uvx"},
		},
		{
			name:  "command args env cwd",
			entry: `{"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/tmp"], "env": {"DEBUG": "1", "API_KEY": "{env.API_KEY}"}, "cwd": "/srv"}`,
			want: &ServerConfig{
				Name:    "s",
				Command: "npx",
				Args:    []string{"-y", "@modelcontextprotocol/server-filesystem", "/tmp"},
				Env:     map[string]string{"DEBUG": "1", "API_KEY": "{env.API_KEY}"},
				Dir:     "/srv",
			},
		},
		{
			name:  "url without type means auto",
			entry: `{"url": "https://mcp.example.com/mcp"}`,
			want:  &ServerConfig{Name: "s", URL: "https://mcp.example.com/mcp", Transport: "auto"},
		},
		{
			name:  "url with headers",
			entry: `{"url": "https://mcp.example.com/mcp", "type": "sse", "headers": {"Authorization": "Bearer t", "X-A": "b"}}`,
			want: &ServerConfig{
				Name:      "s",
				URL:       "https://mcp.example.com/mcp",
				Transport: "sse",
				Headers:   map[string]string{"Authorization": "Bearer t", "X-A": "b"},
			},
		},
		{
			name:  "transport key when there is no type",
			entry: `{"url": "https://mcp.example.com/mcp", "transport": "sse"}`,
			want:  &ServerConfig{Name: "s", URL: "https://mcp.example.com/mcp", Transport: "sse"},
		},
		{
			name:  "type wins over transport",
			entry: `{"url": "https://mcp.example.com/mcp", "type": "http", "transport": "sse"}`,
			want:  &ServerConfig{Name: "s", URL: "https://mcp.example.com/mcp", Transport: "http"},
		},
		{
			name:  "tools allow-list",
			entry: `{"command": "x", "tools": ["a", "b"]}`,
			want:  &ServerConfig{Name: "s", Command: "x", Tools: []string{"a", "b"}},
		},
		{
			name:  "disabledTools",
			entry: `{"command": "x", "disabledTools": ["a"]}`,
			want:  &ServerConfig{Name: "s", Command: "x", DisabledTools: []string{"a"}},
		},
		{
			name:  "disabled_tools",
			entry: `{"command": "x", "disabled_tools": ["b", "c"]}`,
			want:  &ServerConfig{Name: "s", Command: "x", DisabledTools: []string{"b", "c"}},
		},
		{
			name:  "disabledTools wins over disabled_tools",
			entry: `{"command": "x", "disabled_tools": ["snake"], "disabledTools": ["camel"]}`,
			want:  &ServerConfig{Name: "s", Command: "x", DisabledTools: []string{"camel"}},
		},
		{
			name:  "disabled false is kept",
			entry: `{"command": "x", "disabled": false}`,
			want:  &ServerConfig{Name: "s", Command: "x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			servers, _, err := loadConfigForTest(t, `{"mcpServers": {"s": `+tt.entry+`}}`)
			if err != nil {
				t.Fatal(err)
			}
			assertSameServers(t, servers, []*ServerConfig{tt.want})
		})
	}
}

func TestLoadConfigFile_TypeValuesSelectTransport(t *testing.T) {
	tests := []struct {
		typ   string
		entry string
		want  upstream.Transport
	}{
		{"stdio", `"command": "prog"`, upstream.TransportStdio},
		{"sse", `"url": "http://127.0.0.1:8001/sse"`, upstream.TransportSSE},
		{"streamable-http", `"url": "http://127.0.0.1:8002/mcp"`, upstream.TransportStreamableHTTP},
		{"streamable_http", `"url": "http://127.0.0.1:8002/mcp"`, upstream.TransportStreamableHTTP},
		{"streamablehttp", `"url": "http://127.0.0.1:8002/mcp"`, upstream.TransportStreamableHTTP},
		{"streamableHttp", `"url": "http://127.0.0.1:8002/mcp"`, upstream.TransportStreamableHTTP},
		{"http", `"url": "http://127.0.0.1:8002/mcp"`, upstream.TransportStreamableHTTP},
	}
	for _, tt := range tests {
		t.Run(tt.typ, func(t *testing.T) {
			servers, _, err := loadConfigForTest(t, `{"mcpServers": {"s": {"type": "`+tt.typ+`", `+tt.entry+`}}}`)
			if err != nil {
				t.Fatal(err)
			}
			if len(servers) != 1 {
				t.Fatalf("got %d servers, want 1", len(servers))
			}
			got, err := upstream.ParseTransport(servers[0].Transport)
			if err != nil || got != tt.want {
				t.Errorf("Transport %q parses to %q (err %v), want %q", servers[0].Transport, got, err, tt.want)
			}
			// And the server resolves to an upstream with that transport.
			spec, _, err := servers[0].spec(servers[0].Name, caddy.NewReplacer())
			if err != nil {
				t.Fatalf("spec: %v", err)
			}
			if spec.Transport != tt.want {
				t.Errorf("spec transport = %q, want %q", spec.Transport, tt.want)
			}
		})
	}
}

func TestLoadConfigFile_URLWithoutTypeResolvesToAutoTransport(t *testing.T) {
	servers, _, err := loadConfigForTest(t, `{"mcpServers": {"r": {"url": "https://mcp.example.com/mcp"}}}`)
	if err != nil {
		t.Fatal(err)
	}
	if servers[0].Transport != "auto" {
		t.Errorf("Transport = %q, want auto", servers[0].Transport)
	}
	spec, _, err := servers[0].spec("r", caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	if spec.Transport != upstream.TransportAuto {
		t.Errorf("spec transport = %q, want %q", spec.Transport, upstream.TransportAuto)
	}
}

func TestLoadConfigFile_CommandWithoutTypeResolvesToStdio(t *testing.T) {
	servers, _, err := loadConfigForTest(t, `{"mcpServers": {"c": {"command": "prog"}}}`)
	if err != nil {
		t.Fatal(err)
	}
	if servers[0].Transport != "" {
		t.Errorf("Transport = %q, want empty (inferred later)", servers[0].Transport)
	}
	spec, _, err := servers[0].spec("c", caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	if spec.Transport != upstream.TransportStdio {
		t.Errorf("spec transport = %q, want stdio", spec.Transport)
	}
}

func TestLoadConfigFile_SkipsDisabledEntriesAndLogsThem(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	path := writeConfigForTest(t, `{"mcpServers": {
		"on":  {"command": "a"},
		"off": {"command": "b", "disabled": true},
		"off-and-broken": {"disabled": true},
		"last": {"url": "http://127.0.0.1/mcp"}
	}}`)
	servers, err := loadConfigFile(path, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range servers {
		names = append(names, s.Name)
	}
	if want := []string{"on", "last"}; !slices.Equal(names, want) {
		t.Errorf("servers = %q, want %q", names, want)
	}
	var logged []string
	for _, e := range logs.All() {
		if name, ok := e.ContextMap()["server"].(string); ok {
			logged = append(logged, name)
		}
	}
	sort.Strings(logged)
	if want := []string{"off", "off-and-broken"}; !slices.Equal(logged, want) {
		t.Errorf("log entries name servers %q, want the disabled ones %q", logged, want)
	}
}

func TestLoadConfigFile_AllEntriesDisabledGivesNoServersAndNoError(t *testing.T) {
	servers, _, err := loadConfigForTest(t, `{"mcpServers": {"off": {"command": "b", "disabled": true}}}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(servers) != 0 {
		t.Errorf("servers = %s, want none", serversJSONForTest(t, servers))
	}
}

func TestLoadConfigFile_IgnoresUnknownKeysButLogsThem(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	path := writeConfigForTest(t, `{
		"globalShortcut": "Ctrl+Space",
		"mcpServers": {
			"fs": {
				"command": "npx",
				"autoApprove": [],
				"alwaysAllow": ["read_file"],
				"args": ["-y", "server-filesystem"]
			},
			"plain": {"command": "x"}
		}
	}`)
	servers, err := loadConfigFile(path, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	assertSameServers(t, servers, []*ServerConfig{
		{Name: "fs", Command: "npx", Args: []string{"-y", "server-filesystem"}},
		{Name: "plain", Command: "x"},
	})
	warns := logs.FilterLevelExact(zapcore.WarnLevel).All()
	if len(warns) != 1 {
		t.Fatalf("got %d warnings, want 1 (for server fs): %v", len(warns), logs.All())
	}
	ctx := warns[0].ContextMap()
	if ctx["server"] != "fs" {
		t.Errorf("warning names server %v, want fs", ctx["server"])
	}
	keys, _ := ctx["keys"].([]any)
	if got, want := keys, []any{"alwaysAllow", "autoApprove"}; !slices.Equal(got, want) {
		t.Errorf("warning lists keys %v, want %v (sorted)", ctx["keys"], want)
	}
	if ctx["config_file"] != path {
		t.Errorf("warning names config file %v, want %q", ctx["config_file"], path)
	}
}

func TestLoadConfigFile_RejectsBadFiles(t *testing.T) {
	tests := []struct {
		name    string
		content string
		substrs []string // besides the file's path
	}{
		{
			name:    "empty file",
			content: ``,
			substrs: []string{"line 1"},
		},
		{
			name:    "invalid JSON",
			content: "{\n  \"mcpServers\": {\n    \"a\": {\"command\": \"x\",}\n  }\n}\n",
			substrs: []string{"line 3, column", "invalid character"},
		},
		{
			name:    "file is not an object",
			content: `["mcpServers"]`,
			substrs: []string{"line 1, column", "cannot unmarshal array"},
		},
		{
			name:    "no mcpServers",
			content: `{"servers": {"a": {"command": "x"}}}`,
			substrs: []string{`"mcpServers": missing`},
		},
		{
			name:    "mcpServers null",
			content: `{"mcpServers": null}`,
			substrs: []string{`"mcpServers"`, "must be a JSON object"},
		},
		{
			name:    "mcpServers is an array",
			content: `{"mcpServers": [{"command": "x"}]}`,
			substrs: []string{`"mcpServers"`, "must be a JSON object"},
		},
		{
			name:    "empty mcpServers",
			content: `{"mcpServers": {}}`,
			substrs: []string{`no servers in "mcpServers"`},
		},
		{
			name:    "entry is a string",
			content: `{"mcpServers": {"a": "uvx mcp-server-time"}}`,
			substrs: []string{`server "a"`, "must be a JSON object"},
		},
		{
			name:    "entry is an array",
			content: `{"mcpServers": {"a": ["uvx"]}}`,
			substrs: []string{`server "a"`, "must be a JSON object"},
		},
		{
			name:    "entry is a number",
			content: `{"mcpServers": {"ok": {"command": "x"}, "a": 1}}`,
			substrs: []string{`server "a"`, "must be a JSON object"},
		},
		{
			name:    "both command and url",
			content: `{"mcpServers": {"a": {"command": "x", "url": "http://127.0.0.1/mcp"}}}`,
			substrs: []string{`server "a"`, "command and url are exclusive"},
		},
		{
			name:    "neither command nor url",
			content: `{"mcpServers": {"a": {"args": ["x"]}}}`,
			substrs: []string{`server "a"`, "needs a command (stdio) or a url (HTTP)"},
		},
		{
			name:    "empty entry",
			content: `{"mcpServers": {"a": {}}}`,
			substrs: []string{`server "a"`, "needs a command (stdio) or a url (HTTP)"},
		},
		{
			name:    "unknown type",
			content: `{"mcpServers": {"a": {"url": "http://127.0.0.1/mcp", "type": "websocket"}}}`,
			substrs: []string{`server "a"`, `unknown transport "websocket"`},
		},
		{
			name:    "env for an HTTP server",
			content: `{"mcpServers": {"a": {"url": "http://127.0.0.1/mcp", "env": {"A": "b"}}}}`,
			substrs: []string{`server "a"`, "stdio servers only"},
		},
		{
			name:    "duplicate server keys",
			content: `{"mcpServers": {"a": {"command": "x"}, "b": {"command": "y"}, "a": {"command": "z"}}}`,
			substrs: []string{`server "a" appears twice`},
		},
		{
			name:    "args is not a list",
			content: `{"mcpServers": {"a": {"command": "x", "args": "--flag"}}}`,
			substrs: []string{`server "a"`, "args"},
		},
		{
			name:    "env value is not a string",
			content: `{"mcpServers": {"a": {"command": "x", "env": {"PORT": 8080}}}}`,
			substrs: []string{`server "a"`, "env"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			servers, path, err := loadConfigForTest(t, tt.content)
			if err == nil {
				t.Fatalf("got servers %s and no error", serversJSONForTest(t, servers))
			}
			msg := err.Error()
			for _, s := range append([]string{path}, tt.substrs...) {
				if !strings.Contains(msg, s) {
					t.Errorf("error %q does not contain %q", msg, s)
				}
			}
		})
	}
}

func TestLoadConfigFile_MissingFileIsNotExistError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.json")
	_, err := loadConfigFile(path, zap.NewNop())
	if err == nil {
		t.Fatal("got no error for a missing file")
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %q does not wrap fs.ErrNotExist", err)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "config file") {
		t.Errorf("error %q does not say which config file is missing", err)
	}
}

// lineColumnOf returns the 1-based line and column of the first byte of
// marker in data.
func lineColumnOf(t *testing.T, data, marker string) (int, int) {
	t.Helper()
	i := strings.Index(data, marker)
	if i < 0 || strings.Count(data, marker) != 1 {
		t.Fatalf("marker %q is not unique in %q", marker, data)
	}
	line := 1 + strings.Count(data[:i], "\n")
	col := i - strings.LastIndex(data[:i], "\n") // LastIndex is -1 on the first line
	return line, col
}

// The column must be that of the character the decoder choked on, as an
// editor shows it (1-based), so that users can go straight to it.
func TestLoadConfigFile_InvalidJSONErrorPointsAtOffendingCharacter(t *testing.T) {
	tests := []struct {
		name    string
		content string
		at      string // the text starting at the offending character
	}{
		{
			name:    "trailing comma",
			content: "{\n  \"mcpServers\": {\n    \"time\": {\"command\": \"uvx\",}\n  }\n}\n",
			at:      "}\n  }",
		},
		{
			name:    "missing colon",
			content: "{\n  \"mcpServers\": {\n    \"time\" {\"command\": \"uvx\"}\n  }\n}\n",
			at:      "{\"command",
		},
		{
			name:    "single quotes",
			content: "{'mcpServers': {}}",
			at:      "'mcpServers'",
		},
		{
			name:    "array instead of object",
			content: "[]",
			at:      "[]",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line, col := lineColumnOf(t, tt.content, tt.at)
			_, _, err := loadConfigForTest(t, tt.content)
			if err == nil {
				t.Fatal("got no error")
			}
			want := fmt.Sprintf("line %d, column %d:", line, col)
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
		})
	}
}

func TestLoadConfigFile_InvalidJSONErrorNamesTheLine(t *testing.T) {
	content := "{\n  \"mcpServers\": {\n    \"time\": {\"command\": \"uvx\"}\n  },\n}\n"
	_, _, err := loadConfigForTest(t, content)
	if err == nil || !strings.Contains(err.Error(), "line 5, column") {
		t.Errorf("error = %v, want it to name line 5 and a column", err)
	}
	content = "{\n  \"mcpServers\": {\n    \"time\": {\"command\": \"uvx\"}\n"
	_, _, err = loadConfigForTest(t, content)
	if err == nil || !strings.Contains(err.Error(), "line 4, column") || !strings.Contains(err.Error(), "unexpected end of JSON input") {
		t.Errorf("error = %v, want unexpected end of JSON input at line 4", err)
	}
}

func TestLoadConfigFile_LoadsClaudeDesktopFixture(t *testing.T) {
	servers, err := loadConfigFile(filepath.Join("testdata", "claude_desktop_config.json"), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	assertSameServers(t, servers, []*ServerConfig{
		{
			Name:    "time",
			Command: "uvx",
			Args:    []string{"mcp-server-time", "--local-timezone=Europe/Paris"},
		},
		{
			Name:          "filesystem",
			Command:       "npx",
			Args:          []string{"-y", "@modelcontextprotocol/server-filesystem", "/home/user/Desktop"},
			Env:           map[string]string{"DEBUG": "1"},
			Dir:           "/home/user",
			DisabledTools: []string{"write_file", "move_file"},
		},
		{
			Name:      "remote",
			URL:       "https://mcp.example.com/mcp",
			Headers:   map[string]string{"Authorization": "Bearer {env.MCP_TOKEN}"},
			Tools:     []string{"search"},
			Transport: "auto",
		},
	})
	if err := validateNames(servers, false); err != nil {
		t.Errorf("fixture server names: %v", err)
	}
	wantTransports := []upstream.Transport{upstream.TransportStdio, upstream.TransportStdio, upstream.TransportAuto}
	for i, s := range servers {
		spec, _, err := s.spec(s.Name, caddy.NewReplacer())
		if err != nil {
			t.Errorf("server %q: %v", s.Name, err)
			continue
		}
		if spec.Transport != wantTransports[i] {
			t.Errorf("server %q: transport %q, want %q", s.Name, spec.Transport, wantTransports[i])
		}
	}
}

func TestLoadConfigFile_LoadsMcpoFixture(t *testing.T) {
	servers, err := loadConfigFile(filepath.Join("testdata", "mcpo_config.json"), zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	assertSameServers(t, servers, []*ServerConfig{
		{Name: "memory", Command: "npx", Args: []string{"-y", "@modelcontextprotocol/server-memory"}},
		{
			Name:      "mcp_sse",
			URL:       "http://127.0.0.1:8001/sse",
			Transport: "sse",
			Headers:   map[string]string{"Authorization": "Bearer token", "X-Custom-Header": "value"},
		},
		{
			Name:          "mcp_streamable_http",
			URL:           "http://127.0.0.1:8002/mcp",
			Transport:     "streamable-http",
			DisabledTools: []string{"reset"},
		},
	})
	for _, s := range servers {
		if _, _, err := s.spec(s.Name, caddy.NewReplacer()); err != nil {
			t.Errorf("server %q: %v", s.Name, err)
		}
	}
}

// ---------------------------------------------------------------------------
// (*ServerConfig).spec: placeholders, transports, environment, identity

func envMapForTest(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func TestServerSpec_ResolvesPlaceholdersInStdioServer(t *testing.T) {
	t.Setenv("MCPO_TEST_BIN", "/opt/bin/server")
	t.Setenv("MCPO_TEST_KEY", "k3y")
	t.Setenv("MCPO_TEST_DIR", "/srv/data")
	t.Setenv("MCPO_TEST_UNSET", "")
	os.Unsetenv("MCPO_TEST_UNSET")
	s := &ServerConfig{
		Command: "{env.MCPO_TEST_BIN}",
		Args:    []string{"--key={env.MCPO_TEST_KEY}", "plain", "{env.MCPO_TEST_UNSET}"},
		Env:     map[string]string{"API_KEY": "{env.MCPO_TEST_KEY}", "BOTH": "{env.MCPO_TEST_KEY}-{env.MCPO_TEST_DIR}", "LITERAL": "x"},
		Dir:     "{env.MCPO_TEST_DIR}",
	}
	spec, _, err := s.spec("srv", caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	if spec.Command != "/opt/bin/server" {
		t.Errorf("command = %q", spec.Command)
	}
	if want := []string{"--key=k3y", "plain", ""}; !slices.Equal(spec.Args, want) {
		t.Errorf("args = %q, want %q", spec.Args, want)
	}
	if spec.Dir != "/srv/data" {
		t.Errorf("dir = %q", spec.Dir)
	}
	env := envMapForTest(spec.Env)
	for k, want := range map[string]string{"API_KEY": "k3y", "BOTH": "k3y-/srv/data", "LITERAL": "x"} {
		if env[k] != want {
			t.Errorf("env %s = %q, want %q", k, env[k], want)
		}
	}
	if s.Env["API_KEY"] != "{env.MCPO_TEST_KEY}" || s.Args[0] != "--key={env.MCPO_TEST_KEY}" {
		t.Errorf("spec modified the configured server: %+v", s)
	}
}

func TestServerSpec_ResolvesPlaceholdersInHTTPServer(t *testing.T) {
	t.Setenv("MCPO_TEST_HOST", "mcp.example.com")
	t.Setenv("MCPO_TEST_TOKEN", "s3cret")
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("from-file"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &ServerConfig{
		URL: "https://{env.MCPO_TEST_HOST}/mcp?token={env.MCPO_TEST_TOKEN}",
		Headers: map[string]string{
			"Authorization": "Bearer {env.MCPO_TEST_TOKEN}",
			"X-Key":         "{file." + keyFile + "}",
			"X-Plain":       "plain",
		},
	}
	spec, _, err := s.spec("remote", caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	if want := "https://mcp.example.com/mcp?token=s3cret"; spec.URL != want {
		t.Errorf("url = %q, want %q", spec.URL, want)
	}
	want := map[string]string{"Authorization": "Bearer s3cret", "X-Key": "from-file", "X-Plain": "plain"}
	for k, v := range want {
		if spec.Headers[k] != v {
			t.Errorf("header %s = %q, want %q", k, spec.Headers[k], v)
		}
	}
	if len(spec.Headers) != len(want) {
		t.Errorf("headers = %v, want %v", spec.Headers, want)
	}
	if s.Headers["Authorization"] != "Bearer {env.MCPO_TEST_TOKEN}" {
		t.Errorf("spec modified the configured headers: %v", s.Headers)
	}
}

func TestServerSpec_InfersOrParsesTransport(t *testing.T) {
	tests := []struct {
		name string
		s    ServerConfig
		want upstream.Transport
	}{
		{"command means stdio", ServerConfig{Command: "prog"}, upstream.TransportStdio},
		{"url means streamable_http", ServerConfig{URL: "http://127.0.0.1/mcp"}, upstream.TransportStreamableHTTP},
		{"explicit stdio", ServerConfig{Command: "prog", Transport: "stdio"}, upstream.TransportStdio},
		{"explicit sse", ServerConfig{URL: "http://127.0.0.1/sse", Transport: "sse"}, upstream.TransportSSE},
		{"explicit auto", ServerConfig{URL: "http://127.0.0.1/mcp", Transport: "auto"}, upstream.TransportAuto},
		{"http spelling", ServerConfig{URL: "http://127.0.0.1/mcp", Transport: "http"}, upstream.TransportStreamableHTTP},
		{"streamable-http spelling", ServerConfig{URL: "https://127.0.0.1/mcp", Transport: "streamable-http"}, upstream.TransportStreamableHTTP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, _, err := tt.s.spec("srv", caddy.NewReplacer())
			if err != nil {
				t.Fatal(err)
			}
			if spec.Transport != tt.want {
				t.Errorf("transport = %q, want %q", spec.Transport, tt.want)
			}
			if spec.Name != "srv" {
				t.Errorf("name = %q, want srv", spec.Name)
			}
		})
	}
}

func TestServerSpec_CarriesProtocolAndStartTimeout(t *testing.T) {
	s := &ServerConfig{Command: "prog", Protocol: "2025-06-18", StartTimeout: caddy.Duration(7 * time.Second)}
	spec, opts, err := s.spec("srv", caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	if spec.Protocol != "2025-06-18" {
		t.Errorf("protocol = %q", spec.Protocol)
	}
	if opts.StartTimeout != 7*time.Second {
		t.Errorf("start timeout = %v, want 7s", opts.StartTimeout)
	}
	s.Protocol = "auto"
	if spec, _, err = s.spec("srv", caddy.NewReplacer()); err != nil || spec.Protocol != "" {
		t.Errorf("protocol auto gives %q, %v; want \"\"", spec.Protocol, err)
	}
}

// Rules about values that hold placeholders are checked once resolved.
func TestServerSpec_RejectsWhatOnlyResolvedValuesTell(t *testing.T) {
	tests := []struct {
		name   string
		s      ServerConfig
		substr string
	}{
		{"sse with the modern protocol", ServerConfig{URL: "http://127.0.0.1/sse", Transport: "sse", Protocol: "modern"}, "legacy protocol"},
		{"dir for an HTTP server", ServerConfig{URL: "http://127.0.0.1/mcp", Dir: "/tmp"}, "no command, args or dir"},
		{"stdio transport with a url", ServerConfig{URL: "http://127.0.0.1/mcp", Transport: "stdio"}, "needs a command"},
		{"auto transport with a command", ServerConfig{Command: "prog", Transport: "auto"}, "needs a url"},
		{"url scheme not http", ServerConfig{URL: "ftp://127.0.0.1/mcp"}, "scheme must be http or https"},
		{"url without host", ServerConfig{URL: "http:///mcp"}, "has no host"},
		{"url from a placeholder without host", ServerConfig{URL: "http://{env.MCPO_TEST_SURELY_UNSET}/mcp"}, "has no host"},
		{"command resolving to nothing", ServerConfig{Command: "{env.MCPO_TEST_SURELY_UNSET}"}, "needs a command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.s.Validate(); err != nil {
				t.Fatalf("Validate: %v; the server is only wrong once resolved", err)
			}
			_, _, err := tt.s.spec("srv", caddy.NewReplacer())
			if err == nil || !strings.Contains(err.Error(), tt.substr) {
				t.Errorf("error = %v, want one containing %q", err, tt.substr)
			}
		})
	}
}

func TestServerSpec_StdioEnvironmentKeepsOnlyAlwaysInheritedAndNamedVariables(t *testing.T) {
	t.Setenv("HOME", "/home/mcpo-test")
	t.Setenv("PATH", "/usr/local/bin:/usr/bin")
	t.Setenv("MCPO_TEST_SECRET", "hunter2")
	t.Setenv("MCPO_TEST_WANTED", "yes")

	s := &ServerConfig{Command: "prog"}
	spec, _, err := s.spec("srv", caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	env := envMapForTest(spec.Env)
	if env["HOME"] != "/home/mcpo-test" || env["PATH"] != "/usr/local/bin:/usr/bin" {
		t.Errorf("HOME/PATH not inherited: %q", spec.Env)
	}
	for k := range env {
		if !slices.Contains(alwaysInherited, k) {
			t.Errorf("variable %s is inherited without being asked for", k)
		}
	}
	if !sort.StringsAreSorted(spec.Env) {
		t.Errorf("environment is not sorted: %q", spec.Env)
	}

	s.InheritEnv = []string{"MCPO_TEST_WANTED"}
	spec, _, err = s.spec("srv", caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	env = envMapForTest(spec.Env)
	if env["MCPO_TEST_WANTED"] != "yes" {
		t.Errorf("inherit_env MCPO_TEST_WANTED not honoured: %q", spec.Env)
	}
	if _, ok := env["MCPO_TEST_SECRET"]; ok {
		t.Errorf("MCPO_TEST_SECRET leaked: %q", spec.Env)
	}

	s.InheritEnv = []string{"*"}
	spec, _, err = s.spec("srv", caddy.NewReplacer())
	if err != nil {
		t.Fatal(err)
	}
	env = envMapForTest(spec.Env)
	if env["MCPO_TEST_SECRET"] != "hunter2" || env["MCPO_TEST_WANTED"] != "yes" {
		t.Errorf("inherit_env * does not pass everything: %q", spec.Env)
	}
}

func TestChildEnv_FiltersOverridesAndSorts(t *testing.T) {
	parent := []string{
		"USER=alice", "PATH=/usr/bin", "SECRET=s", "LANG=C.UTF-8", "https_proxy=http://proxy:3128",
		"NODE_OPTIONS=--max-old-space-size=4096", "MALFORMED", "TZ=UTC", "AWS_SECRET_ACCESS_KEY=k",
		"HOME=/root", "EMPTY=",
	}
	identity := func(v string) string { return v }
	upper := func(v string) string { return strings.ToUpper(v) }
	tests := []struct {
		name    string
		inherit []string
		set     map[string]string
		r       func(string) string
		want    []string
	}{
		{
			name: "only always-inherited variables by default",
			r:    identity,
			want: []string{"HOME=/root", "LANG=C.UTF-8", "PATH=/usr/bin", "TZ=UTC", "USER=alice", "https_proxy=http://proxy:3128"},
		},
		{
			name:    "named variables are added, values with '=' kept whole",
			inherit: []string{"NODE_OPTIONS", "EMPTY", "NOT_IN_PARENT"},
			r:       identity,
			want: []string{"EMPTY=", "HOME=/root", "LANG=C.UTF-8", "NODE_OPTIONS=--max-old-space-size=4096", "PATH=/usr/bin",
				"TZ=UTC", "USER=alice", "https_proxy=http://proxy:3128"},
		},
		{
			name:    "star inherits everything",
			inherit: []string{"*"},
			r:       identity,
			want: []string{"AWS_SECRET_ACCESS_KEY=k", "EMPTY=", "HOME=/root", "LANG=C.UTF-8", "NODE_OPTIONS=--max-old-space-size=4096",
				"PATH=/usr/bin", "SECRET=s", "TZ=UTC", "USER=alice", "https_proxy=http://proxy:3128"},
		},
		{
			name: "configured values override inherited ones and are resolved",
			set:  map[string]string{"PATH": "/opt/bin", "API_KEY": "key", "SECRET": "mine"},
			r:    upper,
			want: []string{"API_KEY=KEY", "HOME=/root", "LANG=C.UTF-8", "PATH=/OPT/BIN", "SECRET=MINE", "TZ=UTC", "USER=alice",
				"https_proxy=http://proxy:3128"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := childEnv(parent, tt.inherit, tt.set, tt.r)
			if !slices.Equal(got, tt.want) {
				t.Errorf("childEnv =\n %q\nwant\n %q", got, tt.want)
			}
		})
	}
}

func TestChildEnv_PassesEveryAlwaysInheritedVariable(t *testing.T) {
	var parent, want []string
	for _, k := range alwaysInherited {
		parent = append(parent, k+"=v-"+k)
		want = append(want, k+"=v-"+k)
	}
	parent = append(parent, "OTHER=x")
	sort.Strings(want)
	got := childEnv(parent, nil, nil, func(v string) string { return v })
	if !slices.Equal(got, want) {
		t.Errorf("childEnv = %q, want %q", got, want)
	}
}

func TestChildEnv_IsDeterministic(t *testing.T) {
	set := map[string]string{}
	for _, k := range []string{"A", "B", "C", "D", "E", "F", "G", "H", "A_B", "AB"} {
		set[k] = strings.ToLower(k)
	}
	first := childEnv([]string{"PATH=/bin"}, nil, set, func(v string) string { return v })
	for range 20 {
		if got := childEnv([]string{"PATH=/bin"}, nil, set, func(v string) string { return v }); !slices.Equal(got, first) {
			t.Fatalf("childEnv changed between calls: %q vs %q", got, first)
		}
	}
	if !sort.StringsAreSorted(first) {
		t.Errorf("childEnv = %q, not sorted", first)
	}
}

func specKeyForTest(t *testing.T, name string, s *ServerConfig) string {
	t.Helper()
	spec, _, err := s.spec(name, caddy.NewReplacer())
	if err != nil {
		t.Fatalf("spec: %v", err)
	}
	return spec.Key()
}

func stdioServerForTest() *ServerConfig {
	return &ServerConfig{
		Command: "uvx",
		Args:    []string{"mcp-server-time", "--local-timezone=UTC"},
		Env:     map[string]string{"A": "1", "B": "2"},
		Dir:     "/tmp",
	}
}

func httpServerForTest() *ServerConfig {
	return &ServerConfig{
		URL:     "https://mcp.example.com/mcp",
		Headers: map[string]string{"Authorization": "Bearer x", "X-A": "a"},
	}
}

func TestSpecKey_EqualForEqualConfigurations(t *testing.T) {
	// Maps built in different orders give the same key.
	a := stdioServerForTest()
	b := stdioServerForTest()
	b.Env = map[string]string{"B": "2", "A": "1"}
	if specKeyForTest(t, "time", a) != specKeyForTest(t, "time", b) {
		t.Error("equal stdio servers give different keys")
	}
	h1, h2 := httpServerForTest(), httpServerForTest()
	h2.Headers = map[string]string{"X-A": "a", "Authorization": "Bearer x"}
	if specKeyForTest(t, "remote", h1) != specKeyForTest(t, "remote", h2) {
		t.Error("equal HTTP servers give different keys")
	}
	// Spelling of the same transport does not matter.
	h3 := httpServerForTest()
	h3.Transport = "http"
	if specKeyForTest(t, "remote", h1) != specKeyForTest(t, "remote", h3) {
		t.Error("url without transport and transport http give different keys")
	}
	// Nor whether a placeholder or its value was written.
	t.Setenv("MCPO_TEST_ARG", "--local-timezone=UTC")
	c := stdioServerForTest()
	c.Args[1] = "{env.MCPO_TEST_ARG}"
	if specKeyForTest(t, "time", a) != specKeyForTest(t, "time", c) {
		t.Error("a placeholder and its value give different keys")
	}
}

func TestSpecKey_ChangesWithIdentityFields(t *testing.T) {
	t.Setenv("MCPO_TEST_INHERITED", "present")
	tests := []struct {
		name   string
		base   func() *ServerConfig
		rename string // a different name for the changed server
		change func(*ServerConfig)
	}{
		{name: "command", base: stdioServerForTest, change: func(s *ServerConfig) { s.Command = "uv" }},
		{name: "an arg", base: stdioServerForTest, change: func(s *ServerConfig) { s.Args[1] = "--local-timezone=Europe/Paris" }},
		{name: "an extra arg", base: stdioServerForTest, change: func(s *ServerConfig) { s.Args = append(s.Args, "-v") }},
		{name: "arg order", base: stdioServerForTest, change: func(s *ServerConfig) { s.Args[0], s.Args[1] = s.Args[1], s.Args[0] }},
		{name: "an env value", base: stdioServerForTest, change: func(s *ServerConfig) { s.Env["A"] = "changed" }},
		{name: "an extra env variable", base: stdioServerForTest, change: func(s *ServerConfig) { s.Env["C"] = "3" }},
		{name: "an inherited variable", base: stdioServerForTest, change: func(s *ServerConfig) { s.InheritEnv = []string{"MCPO_TEST_INHERITED"} }},
		{name: "dir", base: stdioServerForTest, change: func(s *ServerConfig) { s.Dir = "/srv" }},
		{name: "protocol", base: stdioServerForTest, change: func(s *ServerConfig) { s.Protocol = "legacy" }},
		{name: "name", base: stdioServerForTest, rename: "other"},
		{name: "url", base: httpServerForTest, change: func(s *ServerConfig) { s.URL = "https://mcp.example.com/mcp2" }},
		{name: "url query", base: httpServerForTest, change: func(s *ServerConfig) { s.URL += "?k=v" }},
		{name: "a header value", base: httpServerForTest, change: func(s *ServerConfig) { s.Headers["Authorization"] = "Bearer y" }},
		{name: "an extra header", base: httpServerForTest, change: func(s *ServerConfig) { s.Headers["X-B"] = "b" }},
		{name: "transport", base: httpServerForTest, change: func(s *ServerConfig) { s.Transport = "sse" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := specKeyForTest(t, "srv", tt.base())
			changed, name := tt.base(), "srv"
			if tt.change != nil {
				tt.change(changed)
			}
			if tt.rename != "" {
				name = tt.rename
			}
			if after := specKeyForTest(t, name, changed); after == before {
				t.Errorf("changing the %s keeps the key %s", tt.name, before)
			}
		})
	}
}

func TestSpecKey_ChangesWhenAResolvedPlaceholderChanges(t *testing.T) {
	s := httpServerForTest()
	s.Headers["Authorization"] = "Bearer {env.MCPO_TEST_TOKEN}"
	t.Setenv("MCPO_TEST_TOKEN", "one")
	before := specKeyForTest(t, "remote", s)
	t.Setenv("MCPO_TEST_TOKEN", "two")
	if specKeyForTest(t, "remote", s) == before {
		t.Error("a changed secret behind a placeholder keeps the key, so the running server keeps the old one")
	}
}

func TestSpecKey_IgnoresSettingsThatDoNotIdentifyTheServer(t *testing.T) {
	tests := []struct {
		name   string
		change func(*ServerConfig)
	}{
		{"timeout", func(s *ServerConfig) { s.Timeout = caddy.Duration(time.Minute) }},
		{"start_timeout", func(s *ServerConfig) { s.StartTimeout = caddy.Duration(time.Minute) }},
		{"tools", func(s *ServerConfig) { s.Tools = []string{"get_current_time"} }},
		{"disabled_tools", func(s *ServerConfig) { s.DisabledTools = []string{"convert_time"} }},
		{"title", func(s *ServerConfig) { s.Title = "Time" }},
		{"tool_error_status", func(s *ServerConfig) { s.ToolErrorStatus = 502 }},
		{"the configured name", func(s *ServerConfig) { s.Name = "configured" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := specKeyForTest(t, "srv", stdioServerForTest())
			changed := stdioServerForTest()
			tt.change(changed)
			if after := specKeyForTest(t, "srv", changed); after != before {
				t.Errorf("changing %s changes the key, which would restart the server", tt.name)
			}
		})
	}
}

func TestSpecKey_HoldsNoSecretInClear(t *testing.T) {
	s := httpServerForTest()
	s.Headers["Authorization"] = "Bearer very-secret-token"
	key := specKeyForTest(t, "remote", s)
	if strings.Contains(key, "very-secret-token") || len(key) != 64 {
		t.Errorf("key = %q, want a 64-hex-digit digest", key)
	}
}

// ---------------------------------------------------------------------------
// Mounts and names

func TestNormalizeMount_CleansPlainPaths(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "/"},
		{"/", "/"},
		{"/time", "/time"},
		{"/time/", "/time"},
		{"//time//", "/time"},
		{"/a/./b/", "/a/b"},
		{"/a/../b", "/b"},
		{"/time/..", "/"},
		{"/Time", "/Time"},
		{"/with space", "/with space"},
		{"/a.b-c_d~e", "/a.b-c_d~e"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := normalizeMount(tt.in)
			if err != nil || got != tt.want {
				t.Errorf("normalizeMount(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestNormalizeMount_RejectsRelativePathsWildcardsAndPlaceholders(t *testing.T) {
	tests := []struct{ in, substr string }{
		{"time", "must start with '/'"},
		{"./time", "must start with '/'"},
		{"*", "must start with '/'"},
		{"/time/*", "wildcards or placeholders"},
		{"/time*", "wildcards or placeholders"},
		{"/ti?me", "wildcards or placeholders"},
		{"/{env.MOUNT}", "wildcards or placeholders"},
		{"/{http.request.host}/x", "wildcards or placeholders"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := normalizeMount(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.substr) {
				t.Errorf("normalizeMount(%q) = %q, %v; want an error containing %q", tt.in, got, err, tt.substr)
			}
		})
	}
}

func TestCutMount_MatchesMountAndBelowCaseInsensitively(t *testing.T) {
	tests := []struct {
		path, mount string
		rel         string
		ok          bool
	}{
		{"/time", "/time", "", true},
		{"/time/", "/time", "/", true},
		{"/time/get_current_time", "/time", "/get_current_time", true},
		{"/time/docs", "/time", "/docs", true},
		{"/TIME/Docs", "/time", "/Docs", true},
		{"/time/x", "/Time", "/x", true},
		{"/timeX", "/time", "", false},
		{"/times/x", "/time", "", false},
		{"/tim", "/time", "", false},
		{"/other/time", "/time", "", false},
		{"", "/time", "", false},
		{"/", "/time", "", false},
		{"/a/b/c", "/a/b", "/c", true},
		{"/a/bc", "/a/b", "", false},
		{"/", "/", "/", true},
		{"/anything/at/all", "/", "/anything/at/all", true},
		{"", "/", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.mount+" "+tt.path, func(t *testing.T) {
			rel, ok := cutMount(tt.path, tt.mount)
			if rel != tt.rel || ok != tt.ok {
				t.Errorf("cutMount(%q, %q) = %q, %v; want %q, %v", tt.path, tt.mount, rel, ok, tt.rel, tt.ok)
			}
		})
	}
}

func TestMountName_IsLastSegmentOrMcp(t *testing.T) {
	tests := []struct{ mount, want string }{
		{"/", "mcp"},
		{"", "mcp"},
		{"/time", "time"},
		{"/api/v1/time", "time"},
		{"/Time-Server", "Time-Server"},
	}
	for _, tt := range tests {
		t.Run(tt.mount, func(t *testing.T) {
			if got := mountName(tt.mount); got != tt.want {
				t.Errorf("mountName(%q) = %q, want %q", tt.mount, got, tt.want)
			}
		})
	}
}

func TestValidateNames_ChecksNamesOfSeveralServers(t *testing.T) {
	named := func(names ...string) []*ServerConfig {
		var out []*ServerConfig
		for _, n := range names {
			out = append(out, &ServerConfig{Name: n, Command: "x"})
		}
		return out
	}
	tests := []struct {
		name    string
		servers []*ServerConfig
		single  bool
		substr  string // "" for no error
	}{
		{name: "valid names", servers: named("time", "every_thing", "a-b", "v1.2", "_x", "9")},
		{name: "single server needs no name", servers: named(""), single: true},
		{name: "single server name is not checked", servers: named("docs"), single: true},
		{name: "one named server that is not single", servers: named("time")},
		{name: "missing name", servers: named("time", ""), substr: "every server needs a name"},
		{name: "one unnamed server that is not single", servers: named(""), substr: "every server needs a name"},
		{name: "reserved docs", servers: named("time", "docs"), substr: `"docs" is reserved`},
		{name: "reserved health", servers: named("health"), substr: `"health" is reserved`},
		{name: "reserved openapi.json", servers: named("openapi.json"), substr: `"openapi.json" is reserved`},
		{name: "reserved mcp, the MCP endpoint", servers: named("time", "mcp"), substr: `"mcp" is reserved`},
		{name: "slash", servers: named("a/b"), substr: `server name "a/b"`},
		{name: "space", servers: named("my server"), substr: `server name "my server"`},
		{name: "leading dash", servers: named("-x"), substr: `server name "-x"`},
		{name: "leading dot", servers: named(".x"), substr: `server name ".x"`},
		{name: "dot dot", servers: named(".."), substr: `server name ".."`},
		{name: "percent", servers: named("a%20b"), substr: `server name "a%20b"`},
		{name: "non-ASCII", servers: named("zeït"), substr: `server name "zeït"`},
		{name: "duplicate", servers: named("a", "b", "a"), substr: `server name "a" is used twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateNames(tt.servers, tt.single)
			switch {
			case tt.substr == "" && err != nil:
				t.Errorf("validateNames: %v, want no error", err)
			case tt.substr != "" && (err == nil || !strings.Contains(err.Error(), tt.substr)):
				t.Errorf("validateNames error = %v, want one containing %q", err, tt.substr)
			}
		})
	}
}

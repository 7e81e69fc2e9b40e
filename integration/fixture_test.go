package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// fixtureCalls is what each fixture tool must answer through the bridge.
var fixtureCalls = []struct {
	tool   string
	body   string
	status int
	// want is the exact body (exact: bytes must match; otherwise JSON-equal).
	want  string
	exact bool
}{
	{tool: "add", body: `{"a":2,"b":40}`, status: 200, want: `42`, exact: true},
	{tool: "echo", body: `{"message":"hi \"there\""}`, status: 200, want: `"hi \"there\""`},
	// Arguments arrive as sent: nulls kept, big integers exact, no defaults.
	{tool: "echo_args", body: `{"n":5,"z":null,"s":"x","big":12345678901234567890,"nested":{"a":[1,2.50]}}`, status: 200,
		want: `{"n":5,"z":null,"s":"x","big":12345678901234567890,"nested":{"a":[1,2.50]}}`, exact: true},
	{tool: "no_args", body: ``, status: 200, want: `"ok"`},
	{tool: "multi", body: `{}`, status: 200, want: `["one",{"two":2},"three"]`},
	{tool: "image", body: `{}`, status: 200, want: `["caption","data:image/png;base64,` + fixture.PNGBase64 + `"]`},
	// Media always come as a list, so Open WebUI shows them as files.
	{tool: "audio", body: `{}`, status: 200, want: `["data:audio/wav;base64,` + fixture.WAVBase64 + `"]`},
	{tool: "resource_link", body: `{}`, status: 200,
		want: `{"type":"resource_link","uri":"fixture://doc/1","name":"doc-1","description":"first doc","mimeType":"text/plain"}`},
	{tool: "embedded_text", body: `{}`, status: 200,
		want: `{"type":"resource","uri":"fixture://text","mimeType":"text/plain","text":"hello resource"}`},
	{tool: "embedded_blob", body: `{}`, status: 200,
		want: `{"type":"resource","uri":"fixture://blob","mimeType":"application/octet-stream","data":"data:application/octet-stream;base64,AAEC"}`},
	{tool: "structured", body: `{}`, status: 200, want: `{"temperature":21.5,"unit":"C"}`},
	{tool: "fail", body: `{"reason":"nope"}`, status: 500,
		want: `{"detail":{"message":"fixture failure: nope","server":"%s","tool":"fail"}}`},
	{tool: "invalid_params", body: `{}`, status: 422,
		want: `{"detail":{"message":"` + fixture.InvalidParamsMessage + `","server":"%s","tool":"invalid_params","code":-32602}}`},
	{tool: "defs", body: `{"mode":"fast"}`, status: 200, want: `"fast"`},
	{tool: "with_title", body: `{}`, status: 200, want: `"titled"`},
	{tool: "dotted.name", body: `{}`, status: 200, want: `"dotted.name"`},
	{tool: "spaced name", body: `{}`, status: 200, want: `"spaced name"`},
	{tool: "weird/Name-ü", body: `{}`, status: 200, want: `"weird/Name-ü"`},
}

// checkFixtureServer calls every fixture tool through the document served
// at docPath, the way an OpenAPI client would: operations are found by
// their x-mcp-tool-name, paths are joined to the document's server URL.
func checkFixtureServer(t *testing.T, name, docPath string) {
	t.Helper()
	doc := loadDoc(t, "fixture-"+name, waitReady(t, docPath), fixture.InputSchemas(fixture.Options{}))
	paths := toolPaths(t, doc)
	var names []string
	for n := range paths {
		names = append(names, n)
	}
	slices.Sort(names)
	if want := fixture.ToolNames(fixture.Options{}); !slices.Equal(names, want) {
		t.Errorf("%s documents %q, want %q", docPath, names, want)
	}
	server := serverURL(t, doc)
	for _, c := range fixtureCalls {
		path, ok := paths[c.tool]
		if !ok {
			t.Errorf("%s: no operation for %s", docPath, c.tool)
			continue
		}
		r := do(t, http.MethodPost, server+path, c.body, "Content-Type", "application/json")
		want := c.want
		if strings.Contains(want, "%s") {
			want = fmt.Sprintf(want, name)
		}
		switch {
		case r.status != c.status:
			t.Errorf("POST %s (%s): %s, want status %d", server+path, c.tool, r, c.status)
		case r.header.Get("Content-Type") != "application/json":
			t.Errorf("POST %s: Content-Type %q", path, r.header.Get("Content-Type"))
		case c.exact && string(r.body) != want:
			t.Errorf("POST %s (%s) = %s, want exactly %s", server+path, c.tool, r.body, want)
		case !jsonEqual(r.body, []byte(want)):
			t.Errorf("POST %s (%s) = %s, want %s", server+path, c.tool, r.body, want)
		}
	}
}

func TestFixtureOverEveryTransport(t *testing.T) {
	httpURL := fixture.NewStreamableHTTP(t, fixture.Options{})
	sseURL := fixture.NewSSE(t, fixture.Options{})
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /stdio {
		%s
	}
	mcpo /http {
		url %s
	}
	mcpo /sse {
		url %s
		transport sse
	}
	mcpo /auto {
		url %s
		transport auto
	}
}
`, httpPort, fixtureCommand(fixture.Options{}), httpURL, sseURL, sseURL))

	for _, name := range []string{"stdio", "http", "sse", "auto"} {
		t.Run(name, func(t *testing.T) {
			checkFixtureServer(t, name, "/"+name+"/openapi.json")
		})
	}
}

func TestFixtureBehindHandlePathGetsTheRightServerURL(t *testing.T) {
	startCaddy(t, fmt.Sprintf(`:%d {
	handle_path /api/v1/* {
		mcpo /fx {
			%s
		}
	}
	handle /timeline {
		respond "not a tool server" 200
	}
	mcpo /time {
		%s
	}
}
`, httpPort, fixtureCommand(fixture.Options{}), fixtureCommand(fixture.Options{Name: "other"})))

	doc := loadDoc(t, "fixture-handle-path", waitReady(t, "/api/v1/fx/openapi.json"), fixture.InputSchemas(fixture.Options{}))
	if got := serverURL(t, doc); got != "/api/v1/fx" {
		t.Errorf("server URL behind handle_path = %q, want /api/v1/fx", got)
	}
	if r := do(t, http.MethodPost, "/api/v1/fx/add", `{"a":1,"b":2}`); r.status != 200 || string(r.body) != "3" {
		t.Errorf("POST /api/v1/fx/add: %s", r)
	}
	doc = loadDoc(t, "fixture-time-mount", waitReady(t, "/time/openapi.json"), fixture.InputSchemas(fixture.Options{}))
	if got := serverURL(t, doc); got != "/time" {
		t.Errorf("server URL = %q, want /time", got)
	}
	// /timeline shares the prefix but is not under the mount.
	if r := do(t, http.MethodGet, "/timeline", ""); r.status != 200 || string(r.body) != "not a tool server" {
		t.Errorf("GET /timeline: %s", r)
	}
	// Caddy's path matching ignores case, and so does the mount.
	if r := do(t, http.MethodPost, "/TIME/add", `{"a":1,"b":2}`); r.status != 200 || string(r.body) != "3" {
		t.Errorf("POST /TIME/add: %s", r)
	}
}

func TestSeveralServersInOneBlock(t *testing.T) {
	dir := t.TempDir()
	httpURL := fixture.NewStreamableHTTP(t, fixture.Options{Name: "remote"})
	cmd, args, env := fixture.StdioCommand(fixture.Options{Name: "from-file"})
	config := map[string]any{"mcpServers": map[string]any{
		"filed": map[string]any{
			"command": cmd, "args": args, "env": envMap(env),
			"disabledTools": []string{"exit", "slow"},
		},
		"remote": map[string]any{"url": httpURL, "tools": []string{"add", "echo"}},
		"off":    map[string]any{"command": "never-started", "disabled": true},
	}}
	configFile := writeJSON(t, dir, "mcp.json", config)

	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /tools {
		title "All the tools"
		server local {
			%s
			disabled_tools pid exit
		}
		config %s
	}
}
`, httpPort, fixtureCommand(fixture.Options{}), configFile))

	for _, s := range []string{"local", "filed", "remote"} {
		waitReady(t, "/tools/"+s+"/openapi.json")
	}
	all := loadDoc(t, "fixture-aggregate", waitReady(t, "/tools/openapi.json"), fixture.InputSchemas(fixture.Options{}))
	if all.Info.Title != "All the tools" {
		t.Errorf("title = %q", all.Info.Title)
	}
	if got := serverURL(t, all); got != "/tools" {
		t.Errorf("server URL = %q", got)
	}
	ids := map[string]string{} // operationId → path
	for path, item := range all.Paths.Map() {
		ids[item.Post.OperationID] = path
	}
	for id, path := range map[string]string{
		"local_add":  "/local/add",
		"filed_add":  "/filed/add",
		"remote_add": "/remote/add",
		"local_echo": "/local/echo",
	} {
		if ids[id] != path {
			t.Errorf("operation %s is at %q, want %q", id, ids[id], path)
		}
	}
	for _, hidden := range []string{"local_pid", "local_exit", "filed_exit", "filed_slow", "remote_multi"} {
		if _, ok := ids[hidden]; ok {
			t.Errorf("filtered tool %s is documented", hidden)
		}
	}
	if _, ok := ids["filed_pid"]; !ok {
		t.Error("filed_pid is missing: only exit and slow are disabled there")
	}
	if len(all.Tags) != 3 {
		t.Errorf("tags = %d, want one per server", len(all.Tags))
	}

	for path, want := range map[string]string{
		"/tools/local/add":  "5",
		"/tools/filed/add":  "5",
		"/tools/remote/add": "5",
	} {
		if r := do(t, http.MethodPost, path, `{"a":2,"b":3}`); r.status != 200 || string(r.body) != want {
			t.Errorf("POST %s: %s", path, r)
		}
	}
	if r := do(t, http.MethodPost, "/tools/remote/multi", `{}`); r.status != http.StatusNotFound {
		t.Errorf("a tool outside the allow-list answered: %s", r)
	}
	if r := do(t, http.MethodPost, "/tools/off/add", `{}`); r.status != http.StatusNotFound || !strings.Contains(string(r.body), "local, filed, remote") {
		t.Errorf("a disabled server answered: %s", r)
	}
	if r := do(t, http.MethodGet, "/tools/docs", ""); r.status != 200 || !strings.Contains(string(r.body), "All the tools") {
		t.Errorf("GET /tools/docs: %d", r.status)
	}
}

func TestBadRequestsGetJSONErrorsAnLLMCanActOn(t *testing.T) {
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /fx {
		%s
		timeout 300ms
		tool_error_status 422
	}
	mcpo /missing {
		command no-such-mcp-server --flag
	}
}
`, httpPort, fixtureCommand(fixture.Options{})))
	waitReady(t, "/fx/openapi.json")

	tests := []struct {
		name, method, path, body string
		status                   int
		says                     string
	}{
		{"unknown tool", "POST", "/fx/nope", `{}`, 404, `has no tool at \"/nope\"`},
		{"GET on a tool", "GET", "/fx/add", ``, 405, "POST"},
		{"invalid JSON", "POST", "/fx/add", `{"a":`, 400, "not valid JSON"},
		{"array body", "POST", "/fx/add", `[1,2]`, 422, "must be a JSON object"},
		{"tool error with the configured status", "POST", "/fx/fail", `{}`, 422, "fixture failure: boom"},
		{"timeout", "POST", "/fx/slow", `{"ms":5000}`, 504, "did not answer within 300ms"},
		{"trailing slash", "POST", "/fx/add/", `{}`, 404, "has no tool"},
		{"command not found", "POST", "/missing/anything", `{}`, 503, `command \"no-such-mcp-server\" not found`},
		{"document of a server that cannot start", "GET", "/missing/openapi.json", ``, 503, "no-such-mcp-server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, tt.method, tt.path, tt.body)
			if r.status != tt.status || !strings.Contains(string(r.body), tt.says) {
				t.Errorf("%s %s: %s, want %d saying %q", tt.method, tt.path, r, tt.status, tt.says)
			}
			var e struct {
				Detail struct {
					Message string `json:"message"`
				} `json:"detail"`
			}
			if err := json.Unmarshal(r.body, &e); err != nil || e.Detail.Message == "" {
				t.Errorf("error body %s is not {\"detail\":{\"message\":...}}", r.body)
			}
			if r.header.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type = %q", r.header.Get("Content-Type"))
			}
			if tt.status == 405 && r.header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
			if tt.status == 503 {
				if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
					t.Errorf("503 with Retry-After %q", r.header.Get("Retry-After"))
				}
			}
		})
	}
	// The broken server breaks nothing else.
	if r := do(t, http.MethodPost, "/fx/add", `{"a":1,"b":1}`); r.status != 200 || string(r.body) != "2" {
		t.Errorf("POST /fx/add after the errors: %s", r)
	}
}

func TestAStdioServerThatCrashesIsRestarted(t *testing.T) {
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /fx {
		%s
	}
}
`, httpPort, fixtureCommand(fixture.Options{})))
	waitReady(t, "/fx/openapi.json")
	before := do(t, http.MethodPost, "/fx/pid", `{}`)
	if r := do(t, http.MethodPost, "/fx/exit", `{}`); r.status != http.StatusBadGateway || !strings.Contains(string(r.body), `server \"fx\"`) {
		t.Errorf("the call that crashed the server: %s, want 502 naming the server", r)
	}
	deadline := time.Now().Add(waitLimit)
	for {
		r := do(t, http.MethodPost, "/fx/pid", `{}`)
		if r.status == 200 {
			if string(r.body) == string(before.body) {
				t.Errorf("pid %s did not change", r.body)
			}
			break
		}
		if r.status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("POST /fx/pid after the crash: %s", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSwaggerUIIsServedFromTheBinary(t *testing.T) {
	startCaddy(t, fmt.Sprintf(`:%d {
	handle_path /api/* {
		mcpo /fx {
			%s
			title "Fixture tools"
		}
	}
}
`, httpPort, fixtureCommand(fixture.Options{})))
	waitReady(t, "/api/fx/openapi.json")
	page := do(t, http.MethodGet, "/api/fx/docs", "")
	if page.status != 200 || !strings.Contains(string(page.body), "<title>Fixture tools</title>") {
		t.Fatalf("GET /api/fx/docs: %s", page)
	}
	for _, ref := range []string{"docs/swagger-ui.css", "docs/swagger-ui-bundle.js", "docs/swagger-initializer.js"} {
		if !strings.Contains(string(page.body), `"`+ref+`"`) {
			t.Errorf("the page does not load %s", ref)
		}
		r := do(t, http.MethodGet, "/api/fx/"+ref, "", "Accept-Encoding", "identity")
		if r.status != 200 || len(r.body) == 0 {
			t.Errorf("GET %s: %d, %d bytes", ref, r.status, len(r.body))
		}
	}
	if strings.Contains(string(page.body), "http") {
		t.Error("the docs page refers to an absolute URL")
	}
	if r := do(t, http.MethodGet, "/api/fx/docs/", ""); r.status/100 != 3 || r.header.Get("Location") != "../docs" {
		t.Errorf("GET /api/fx/docs/: %d to %q", r.status, r.header.Get("Location"))
	}
}

func TestReloadKeepsAnUnchangedServerRunning(t *testing.T) {
	site := func(extra string) string {
		return fmt.Sprintf(`:%d {
	mcpo /fx {
		%s
		%s
	}
	respond /other "%s"
}
`, httpPort, fixtureCommand(fixture.Options{}), extra, extra)
	}
	startCaddy(t, site(""))
	waitReady(t, "/fx/openapi.json")
	pid := do(t, http.MethodPost, "/fx/pid", `{}`).body

	// Another route and a setting that does not identify the server change.
	startCaddy(t, site("timeout 42s"))
	if r := do(t, http.MethodPost, "/fx/pid", `{}`); r.status != 200 || string(r.body) != string(pid) {
		t.Errorf("pid after reload with the same server = %s, want %s", r, pid)
	}

	// A changed environment is a different server.
	startCaddy(t, site("env CHANGED 1"))
	waitReady(t, "/fx/openapi.json")
	r := do(t, http.MethodPost, "/fx/pid", `{}`)
	if r.status != 200 || string(r.body) == string(pid) {
		t.Errorf("pid after reload with a changed server = %s, was %s", r, pid)
	}
	old, _ := strconv.Atoi(string(pid))
	deadline := time.Now().Add(10 * time.Second)
	for running(old) {
		if time.Now().After(deadline) {
			t.Errorf("the replaced server %d still runs", old)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// running reports whether a process is alive (not a zombie).
func running(pid int) bool {
	for _, p := range descendants(1) {
		if strings.HasPrefix(p, strconv.Itoa(pid)+"(") {
			return true
		}
	}
	return false
}

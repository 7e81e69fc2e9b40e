package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/go-jose/go-jose/v4"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
	"github.com/caddy-mcpo/caddy-mcpo/internal/identity/jwttest"
)

// Who may call what, through Caddy: Open WebUI's users, by the role and
// groups in their tokens, each see in their documents exactly the tools
// the access rules grant them, and call only those.

// ruleServers are the servers of the access tests: captured tools of real
// MCP servers, as echo tools.
var ruleServers = []string{"time", "memory", "github"}

// ruleSite is a site serving ruleServers at /team, with Open WebUI's
// identity and the rules of the README's example.
func ruleSite(t *testing.T) string {
	t.Helper()
	t.Setenv("MCPO_TEST_OWUI_SECRET", owuiSecret)
	var servers strings.Builder
	for _, name := range ruleServers {
		fmt.Fprintf(&servers, "\t\tserver %s {\n\t\t\t%s\t\t}\n", name, fixtureCommand(fixture.Options{Captured: name, EchoOnly: true}))
	}
	return fmt.Sprintf(`:%d {
	mcpo /team {
		identity openwebui_jwt {env.MCPO_TEST_OWUI_SECRET}
%s		access {
			grant role:admin *
			grant role:user time/* */read_* */list_* memory/search_nodes
			grant group:eng github/*
			grant user:u-00042 time/*
			grant * time/get_current_time
			grant anonymous time/*
		}
	}
}
`, httpPort, servers.String())
}

// owuiHeader is the header carrying the token of an Open WebUI user.
const owuiHeader = "X-OpenWebUI-User-Jwt"

// ruleTools returns the "<server>/<tool>" of every operation of a
// document; server names the server of a server's own document, "" for
// the mount's, whose operations are tagged with their server.
func ruleTools(t *testing.T, doc *openapi3.T, server string) []string {
	t.Helper()
	out := []string{}
	for path, item := range doc.Paths.Map() {
		op := item.Post
		tool, _ := op.Extensions["x-mcp-tool-name"].(string)
		s := server
		if s == "" {
			if len(op.Tags) != 1 {
				t.Fatalf("%s is tagged %v", path, op.Tags)
			}
			s = op.Tags[0]
		}
		out = append(out, s+"/"+tool)
	}
	slices.Sort(out)
	return out
}

// allRuleTools returns every tool of ruleServers, as "<server>/<tool>",
// and their input schemas by tool name.
func allRuleTools() ([]string, map[string]json.RawMessage) {
	var all []string
	inputs := map[string]json.RawMessage{}
	for _, s := range ruleServers {
		opts := fixture.Options{Captured: s, EchoOnly: true}
		for _, tool := range fixture.ToolNames(opts) {
			all = append(all, s+"/"+tool)
		}
		maps.Copy(inputs, fixture.InputSchemas(opts))
	}
	slices.Sort(all)
	return all, inputs
}

// ofServer returns the tools of tools that belong to server.
func ofServer(tools []string, server string) []string {
	out := []string{}
	for _, name := range tools {
		if strings.HasPrefix(name, server+"/") {
			out = append(out, name)
		}
	}
	return out
}

func TestAccessRules_TwoOpenWebUIUsersSeeAndCallExactlyTheirTools(t *testing.T) {
	startCaddy(t, ruleSite(t))
	for _, s := range ruleServers {
		waitReady(t, "/team/"+s+"/openapi.json")
	}
	all, inputs := allRuleTools()
	users := []struct {
		name   string
		claims map[string]any // changes to Open WebUI's claims; nil: no token
		want   []string
	}{
		{name: "alice, an admin", claims: map[string]any{"role": "admin"}, want: all},
		{name: "bob, a user", claims: map[string]any{"role": "user"}, want: []string{
			"github/list_commits", "github/list_issues", "github/list_pull_requests",
			"memory/read_graph", "memory/search_nodes", "time/convert_time", "time/get_current_time"}},
		{name: "a reader without a token, such as Open WebUI fetching the document", want: []string{"time/convert_time", "time/get_current_time"}},
	}
	etags := map[string]string{}
	for _, u := range users {
		t.Run(u.name, func(t *testing.T) {
			var header []string
			if u.claims != nil {
				sub := strings.Fields(u.name)[0]
				header = []string{owuiHeader, pyJWT(t, jwttest.OpenWebUIClaims(sub, time.Now(), u.claims), owuiSecret)}
			}
			r := do(t, http.MethodGet, "/team/openapi.json", "", header...)
			if r.status != http.StatusOK {
				t.Fatalf("GET /team/openapi.json: %s", r)
			}
			doc := loadDoc(t, "access-"+strings.Fields(u.name)[0], r.body, inputs)
			if got := ruleTools(t, doc, ""); !slices.Equal(got, u.want) {
				t.Errorf("the document lists\n%v\nwant\n%v", got, u.want)
			}
			if got := r.header.Get("Vary"); got != owuiHeader {
				t.Errorf("Vary = %q, want %s", got, owuiHeader)
			}
			if got := r.header.Get("Cache-Control"); got != "private, no-cache" {
				t.Errorf("Cache-Control = %q", got)
			}
			etags[u.name] = r.header.Get("ETag")
			if again := do(t, http.MethodGet, "/team/openapi.json", "", header...); again.header.Get("ETag") != etags[u.name] {
				t.Errorf("ETag %s, then %s", etags[u.name], again.header.Get("ETag"))
			}
			if r := do(t, http.MethodGet, "/team/openapi.json", "", append(header, "If-None-Match", etags[u.name])...); r.status != http.StatusNotModified {
				t.Errorf("revalidating: %s, want 304", r)
			}

			for _, s := range ruleServers {
				r := do(t, http.MethodGet, "/team/"+s+"/openapi.json", "", header...)
				if r.status != http.StatusOK {
					t.Fatalf("GET /team/%s/openapi.json: %s", s, r)
				}
				// A server none of whose tools the caller may call has a
				// document without operations.
				doc := loadDoc(t, "access-"+strings.Fields(u.name)[0]+"-"+s, r.body, inputs)
				if got, want := ruleTools(t, doc, s), ofServer(u.want, s); !slices.Equal(got, want) {
					t.Errorf("%s's document lists %v, want %v", s, got, want)
				}
			}

			var health healthReport
			if r := do(t, http.MethodGet, "/team/health", "", header...); r.status != http.StatusOK || json.Unmarshal(r.body, &health) != nil {
				t.Fatalf("health: %s", r)
			}
			for _, s := range health.Servers {
				if want := len(ofServer(u.want, s.Name)); s.Tools != want {
					t.Errorf("health counts %d tools of %s, want %d", s.Tools, s.Name, want)
				}
			}

			if u.claims == nil {
				if r := do(t, http.MethodPost, "/team/time/get_current_time", `{"timezone":"UTC"}`); r.status != http.StatusUnauthorized {
					t.Errorf("a call without a token: %s, want 401", r)
				}
				return
			}
			samples := samplesFor(t, "access", inputs)
			for _, name := range all {
				server, tool, _ := strings.Cut(name, "/")
				op := doc.Paths.Find("/" + server + "/" + tool)
				if !slices.Contains(u.want, name) {
					r := do(t, http.MethodPost, "/team/"+name, `{}`, header...)
					want := fmt.Sprintf(`{"detail":{"message":"the tool %s is not granted to this caller"}}`, name)
					if r.status != http.StatusForbidden || strings.TrimSpace(string(r.body)) != want {
						t.Errorf("%s, not granted: %s, want 403 %s", name, r, want)
					}
					continue
				}
				sample, ok := samples[tool]
				if !ok || op == nil {
					continue
				}
				if r := do(t, http.MethodPost, "/team/"+name, string(requestBody(t, op.Post, sample)), header...); r.status != http.StatusOK {
					t.Errorf("%s, granted: %s", name, r)
				}
			}
		})
	}
	if len(etags) != len(users) || etags[users[0].name] == etags[users[1].name] || etags[users[1].name] == etags[users[2].name] {
		t.Errorf("ETags of three grant sets: %v", etags)
	}
	// Another user of bob's role gets bob's document, ETag and all.
	carol := pyJWT(t, jwttest.OpenWebUIClaims("carol", time.Now(), map[string]any{"role": "user"}), owuiSecret)
	if r := do(t, http.MethodGet, "/team/openapi.json", "", owuiHeader, carol); r.header.Get("ETag") != etags[users[1].name] {
		t.Errorf("carol, a user too: ETag %s, bob's %s", r.header.Get("ETag"), etags[users[1].name])
	}
}

func TestAccessRules_TenThousandUsersInThreeGrantSetsBuildThreeDocuments(t *testing.T) {
	mainLog := filepath.Join(t.TempDir(), "caddy.log")
	startCaddyWith(t, []string{fmt.Sprintf("log {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel DEBUG\n\t}", mainLog)}, ruleSite(t))
	for _, s := range ruleServers {
		waitReady(t, "/team/"+s+"/openapi.json")
	}
	// aggregateBuilds counts the documents covering every server built so
	// far, as the debug log tells.
	aggregateBuilds := func() int {
		n := 0
		for _, e := range logLines(t, mainLog) {
			if e["msg"] == "OpenAPI document built" && e["servers"] != nil {
				n++
			}
		}
		return n
	}
	before := aggregateBuilds()

	// Admins, users, and users in the eng group; u-00042's own rule
	// grants what their role does.
	const users, workers = 10000, 8
	claims := func(i int) map[string]any {
		switch i % 3 {
		case 0:
			return map[string]any{"role": "admin"}
		case 1:
			return map[string]any{"role": "user"}
		}
		return map[string]any{"role": "user", "groups": []string{"eng"}}
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	defer client.CloseIdleConnections()
	var (
		mu    sync.Mutex
		etags = map[string]int{}
		wg    sync.WaitGroup
		errs  = make(chan error, workers)
	)
	tokens := make([]string, users)
	for i := range tokens {
		tokens[i] = jwttest.Sign(t, jose.HS256, []byte(owuiSecret), jwttest.OpenWebUIClaims(fmt.Sprintf("u-%05d", i), time.Now(), claims(i)))
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < users; i += workers {
				token := tokens[i]
				ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/team/openapi.json", nil)
				req.Header.Set(owuiHeader, token)
				resp, err := client.Do(req)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("user %d: %s", i, resp.Status)
					}
				}
				cancel()
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				etags[resp.Header.Get("ETag")]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(etags) != 3 {
		t.Errorf("10,000 users in 3 grant sets got %d ETags: %v", len(etags), etags)
	}
	if got := aggregateBuilds() - before; got != 3 {
		t.Errorf("10,000 users in 3 grant sets: %d documents built, want 3", got)
	}
}

func TestAccessRules_ATrustedProxysHeadersGiveTheRoleAndGroups(t *testing.T) {
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /proxy {
		identity {http.request.header.X-User} {
			role {http.request.header.X-User-Role}
			groups {http.request.header.Remote-Groups}
		}
		server time {
			%s		}
		server github {
			%s		}
		access {
			grant role:admin *
			grant group:eng github/list_*
			grant * time/*
		}
	}
}
`, httpPort, fixtureCommand(fixture.Options{Captured: "time", EchoOnly: true}),
		fixtureCommand(fixture.Options{Captured: "github", EchoOnly: true})))
	waitReady(t, "/proxy/github/openapi.json")
	for _, tc := range []struct {
		name   string
		header []string
		status int
	}{
		{"an admin", []string{"X-User", "ana", "X-User-Role", "admin"}, http.StatusOK},
		{"in the eng group, among others", []string{"X-User", "eve", "Remote-Groups", "ops, eng"}, http.StatusOK},
		{"in another group", []string{"X-User", "olaf", "Remote-Groups", "ops"}, http.StatusForbidden},
		{"a role without a user is no identity", []string{"X-User-Role", "admin"}, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := do(t, http.MethodPost, "/proxy/github/list_issues", `{"owner":"o","repo":"r"}`, tc.header...); r.status != tc.status {
				t.Errorf("list_issues: %s, want %d", r, tc.status)
			}
		})
	}
	r := do(t, http.MethodGet, "/proxy/openapi.json", "", "X-User", "eve", "Remote-Groups", "eng")
	if got := r.header.Get("Vary"); got != "X-User, X-User-Role, Remote-Groups" {
		t.Errorf("Vary = %q", got)
	}
	doc := loadDoc(t, "access-proxy", r.body, nil)
	if got := ruleTools(t, doc, ""); !slices.Equal(got, []string{"github/list_commits", "github/list_issues", "github/list_pull_requests",
		"time/convert_time", "time/get_current_time"}) {
		t.Errorf("eve's document lists %v", got)
	}
}

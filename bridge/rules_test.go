package bridge

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

func TestRuleValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		rule Rule
		err  string // "" for a valid rule
	}{
		{"every kind of subject", Rule{Subjects: []string{"user:u-1", "role:admin", "group:eng", "email:a@example.com", "anonymous", "*"},
			Tools: []string{"*"}}, ""},
		{"globs in both parts", Rule{Subjects: []string{"*"}, Tools: []string{"time/*", "*/read_*", "m?m/[a-c]*", `x/a\*b`}}, ""},
		{"a tool name holding a slash", Rule{Subjects: []string{"*"}, Tools: []string{"fixture/weird/Name-ü"}}, ""},
		{"no subject", Rule{Tools: []string{"*"}}, "a rule needs a subject"},
		{"no tools", Rule{Subjects: []string{"*"}}, "a rule needs tool patterns"},
		{"an unknown kind", Rule{Subjects: []string{"team:eng"}, Tools: []string{"*"}}, `subject "team:eng": want user:<id>`},
		{"a bare word", Rule{Subjects: []string{"alice"}, Tools: []string{"*"}}, `subject "alice": want`},
		{"an empty value", Rule{Subjects: []string{"role:"}, Tools: []string{"*"}}, `subject "role:" names no role`},
		{"a pattern without a server", Rule{Subjects: []string{"*"}, Tools: []string{"get_current_time"}},
			`tool pattern "get_current_time": want <server>/<tool>`},
		{"an empty tool part", Rule{Subjects: []string{"*"}, Tools: []string{"time/"}}, `tool pattern "time/": want <server>/<tool>`},
		{"an empty server part", Rule{Subjects: []string{"*"}, Tools: []string{"/get_current_time"}}, "want <server>/<tool>"},
		{"a malformed glob", Rule{Subjects: []string{"*"}, Tools: []string{"time/[get"}}, `tool pattern "time/[get": "[get" is not a valid glob`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.rule.Validate()
			switch {
			case tc.err == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Fatalf("Validate: %v, want an error saying %q", err, tc.err)
			}
		})
	}
}

// The servers and rules of the access tests: the README's example, and a
// subject of every kind.
var (
	ruleServers = map[string][]string{
		"time":   {"get_current_time", "convert_time"},
		"memory": {"read_graph", "search_nodes", "create_entities", "delete_entities"},
		"github": {"list_issues", "create_issue", "get_file"},
	}
	ruleOrder = []string{"time", "memory", "github"}
	rules     = []Rule{
		{Subjects: []string{"role:admin"}, Tools: []string{"*"}},
		{Subjects: []string{"role:user"}, Tools: []string{"time/*", "*/read_*", "*/list_*", "memory/search_nodes"}},
		{Subjects: []string{"group:eng"}, Tools: []string{"github/*"}},
		{Subjects: []string{"email:Alice@Example.com"}, Tools: []string{"memory/create_*"}},
		{Subjects: []string{"user:bob", "user:carol"}, Tools: []string{"github/get_file"}},
		{Subjects: []string{"*"}, Tools: []string{"time/get_current_time"}},
		{Subjects: []string{"anonymous"}, Tools: []string{"time/convert_time"}},
	}
)

// ruleBridge returns a bridge of ruleServers under the rules, logging to
// the returned observer from Info up.
func ruleBridge(t testing.TB, rules []Rule) (*Bridge, map[string]*listCaller, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	callers := map[string]*listCaller{}
	var servers []*ServerConfig
	for _, name := range ruleOrder {
		callers[name] = newListCaller(ruleServers[name]...)
		servers = append(servers, &ServerConfig{Name: name, Upstream: callers[name]})
	}
	b, err := New(Config{Servers: servers, Logger: zap.New(core),
		Access: Access{RequireIdentity: false, Rules: rules, Vary: []string{"X-OpenWebUI-User-Jwt"}}})
	if err != nil {
		t.Fatal(err)
	}
	return b, callers, logs
}

// serveAs serves a request of id, nil for a caller without an identity.
func serveAs(b *Bridge, id *Identity, method, rel string, header ...string) *httptest.ResponseRecorder {
	body := ""
	if method == http.MethodPost {
		body = `{"text":"hi"}`
	}
	r := httptest.NewRequest(method, "/m"+rel, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	if id != nil {
		r = r.WithContext(WithIdentity(r.Context(), *id))
	}
	w := httptest.NewRecorder()
	b.Serve(w, r, rel, "/m")
	return w
}

// documentTools returns the "<server>/<tool>" of every operation of an
// OpenAPI document, sorted; server is the server of a server's own
// document, "" for one covering several.
func documentTools(t *testing.T, body []byte, server string) []string {
	t.Helper()
	var doc struct {
		Paths map[string]struct {
			Post struct {
				Tool string   `json:"x-mcp-tool-name"`
				Tags []string `json:"tags"`
			} `json:"post"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.Paths == nil {
		t.Fatalf("not a document with paths (%v): %.300s", err, body)
	}
	out := []string{}
	for _, item := range doc.Paths {
		s := server
		if s == "" {
			s = item.Post.Tags[0]
		}
		out = append(out, s+"/"+item.Post.Tool)
	}
	sort.Strings(out)
	return out
}

// The callers of the access tests, and what the rules grant each.
var ruleCallers = []struct {
	name string
	id   *Identity
	want []string // "<server>/<tool>"
}{
	{"an admin", &Identity{ID: "root", Role: "admin"}, []string{"github/create_issue", "github/get_file", "github/list_issues",
		"memory/create_entities", "memory/delete_entities", "memory/read_graph", "memory/search_nodes", "time/convert_time", "time/get_current_time"}},
	{"a user", &Identity{ID: "u-1", Role: "user"}, []string{"github/list_issues", "memory/read_graph", "memory/search_nodes",
		"time/convert_time", "time/get_current_time"}},
	{"a user in the eng group", &Identity{ID: "u-2", Role: "user", Groups: []string{"ops", "eng"}}, []string{"github/create_issue",
		"github/get_file", "github/list_issues", "memory/read_graph", "memory/search_nodes", "time/convert_time", "time/get_current_time"}},
	{"alice, by her email in another case", &Identity{ID: "a-1", Email: "ALICE@example.com"}, []string{"memory/create_entities", "time/get_current_time"}},
	{"bob, by his ID", &Identity{ID: "bob", Role: "guest"}, []string{"github/get_file", "time/get_current_time"}},
	{"someone no rule names", &Identity{ID: "x", Role: "Admin", Groups: []string{"Eng"}}, []string{"time/get_current_time"}},
	{"a caller without an identity", nil, []string{"time/convert_time", "time/get_current_time"}},
}

func TestAccessRules_ACallOutsideTheGrantGets403NamingOnlyTheTool(t *testing.T) {
	b, _, _ := ruleBridge(t, rules)
	for _, c := range ruleCallers {
		for _, server := range ruleOrder {
			for _, tool := range ruleServers[server] {
				name := server + "/" + tool
				t.Run(c.name+"/"+name, func(t *testing.T) {
					w := serveAs(b, c.id, http.MethodPost, "/"+name)
					if slices.Contains(c.want, name) {
						if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "ok "+tool) {
							t.Fatalf("a granted call: %d %s", w.Code, w.Body)
						}
						return
					}
					want := fmt.Sprintf(`{"detail":{"message":"the tool %s is not granted to this caller"}}`, name)
					if w.Code != http.StatusForbidden || strings.TrimSpace(w.Body.String()) != want {
						t.Fatalf("a call outside the grant: %d %s, want 403 %s", w.Code, w.Body, want)
					}
				})
			}
		}
	}
}

func TestAccessRules_EachCallerSeesOnlyTheirTools(t *testing.T) {
	b, _, _ := ruleBridge(t, rules)
	etags := map[string]string{} // document → the tools it lists → its ETag
	for _, c := range ruleCallers {
		t.Run(c.name, func(t *testing.T) {
			w := serveAs(b, c.id, http.MethodGet, "/openapi.json")
			if w.Code != http.StatusOK {
				t.Fatalf("GET openapi.json: %d %s", w.Code, w.Body)
			}
			if got := documentTools(t, w.Body.Bytes(), ""); !slices.Equal(got, c.want) {
				t.Errorf("the document lists %v, want %v", got, c.want)
			}
			checkCallerHeaders(t, w)
			recordETag(t, etags, "aggregate", c.want, w.Header().Get("ETag"))

			health := map[string]int{}
			for _, server := range ruleOrder {
				var want []string
				for _, name := range c.want {
					if strings.HasPrefix(name, server+"/") {
						want = append(want, name)
					}
				}
				health[server] = len(want)
				w := serveAs(b, c.id, http.MethodGet, "/"+server+"/openapi.json")
				if w.Code != http.StatusOK {
					t.Fatalf("GET %s/openapi.json: %d %s", server, w.Code, w.Body)
				}
				// A server none of whose tools the caller may call has a
				// document without operations.
				if got := documentTools(t, w.Body.Bytes(), server); !slices.Equal(got, append([]string{}, want...)) {
					t.Errorf("%s's document lists %v, want %v", server, got, want)
				}
				checkCallerHeaders(t, w)
				recordETag(t, etags, server, want, w.Header().Get("ETag"))
			}

			w = serveAs(b, c.id, http.MethodGet, "/health")
			var report struct {
				Servers []ServerReport `json:"servers"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &report); err != nil {
				t.Fatal(err)
			}
			for _, s := range report.Servers {
				if s.Tools != health[s.Name] {
					t.Errorf("health counts %d tools of %s, want %d", s.Tools, s.Name, health[s.Name])
				}
			}
			if got := w.Header().Get("Vary"); got != "X-OpenWebUI-User-Jwt" {
				t.Errorf("health's Vary = %q", got)
			}
		})
	}
}

// checkCallerHeaders checks the headers of a document that depends on
// its caller.
func checkCallerHeaders(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	if got := w.Header().Get("Vary"); got != "X-OpenWebUI-User-Jwt" {
		t.Errorf("Vary = %q, want the header that decides the caller", got)
	}
	if got := w.Header().Get("Cache-Control"); got != "private, no-cache" {
		t.Errorf("Cache-Control = %q, want private, no-cache", got)
	}
}

// recordETag checks that documents listing the same tools have the same
// ETag, and others another.
func recordETag(t *testing.T, etags map[string]string, doc string, tools []string, etag string) {
	t.Helper()
	if etag == "" {
		t.Fatalf("%s: no ETag", doc)
	}
	key := doc + " " + strings.Join(tools, ",")
	if prev, ok := etags[key]; ok && prev != etag {
		t.Errorf("%s: the same tools under ETags %s and %s", doc, prev, etag)
	}
	for k, e := range etags {
		if e == etag && k != key {
			t.Errorf("%s: ETag %s for both %q and %q", doc, etag, k, key)
		}
	}
	etags[key] = etag
}

func TestAccessRules_ETagsAreStablePerGrantSetAndRevalidatePerCaller(t *testing.T) {
	b, _, _ := ruleBridge(t, rules)
	admin, user, other := &Identity{ID: "root", Role: "admin"}, &Identity{ID: "u-1", Role: "user"}, &Identity{ID: "u-9", Role: "user"}
	first := serveAs(b, user, http.MethodGet, "/openapi.json").Header().Get("ETag")
	for i := 0; i < 3; i++ {
		if got := serveAs(b, other, http.MethodGet, "/openapi.json").Header().Get("ETag"); got != first {
			t.Fatalf("another user of the same grant: ETag %s, want %s", got, first)
		}
	}
	if w := serveAs(b, other, http.MethodGet, "/openapi.json", "If-None-Match", first); w.Code != http.StatusNotModified {
		t.Errorf("revalidating with the grant's own ETag: %d, want 304", w.Code)
	}
	// A cache that kept the user's document and revalidates it for an
	// admin gets the admin's.
	w := serveAs(b, admin, http.MethodGet, "/openapi.json", "If-None-Match", first)
	if w.Code != http.StatusOK || w.Header().Get("ETag") == first || len(documentTools(t, w.Body.Bytes(), "")) != 9 {
		t.Errorf("an admin revalidating the user's ETag: %d %s", w.Code, w.Header().Get("ETag"))
	}
}

func TestAccessRules_DocumentsAreBuiltOncePerDistinctSetOfGrantedTools(t *testing.T) {
	// bob's own rule grants him what his role does: his set of rules is
	// another, his tools are not.
	rules := []Rule{
		{Subjects: []string{"role:admin"}, Tools: []string{"*"}},
		{Subjects: []string{"role:user"}, Tools: []string{"time/*", "*/read_*", "*/list_*"}},
		{Subjects: []string{"user:u-7"}, Tools: []string{"time/get_current_time", "memory/read_graph"}},
		{Subjects: []string{"*"}, Tools: []string{"time/get_current_time"}},
	}
	b, _, _ := ruleBridge(t, rules)
	for _, name := range ruleOrder {
		if _, err := b.servers[name].current(b.log); err != nil {
			t.Fatal(err)
		}
	}
	before := b.docsBuilt.Load()
	roles := []string{"admin", "user", "guest"}
	for i := range 1000 {
		id := &Identity{ID: fmt.Sprintf("u-%d", i), Role: roles[i%3]}
		if w := serveAs(b, id, http.MethodGet, "/openapi.json"); w.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", id.ID, w.Code, w.Body)
		}
	}
	if got := b.docsBuilt.Load() - before; got != 3 {
		t.Errorf("1,000 callers in 3 sets of granted tools built %d documents, want 3", got)
	}
	if got := len(*b.policy.grants.Load()); got != 4 {
		t.Errorf("%d grants kept, want 4 (admin, user, u-7, guest)", got)
	}
	// time's document: admins and users may call both of its tools, and
	// get the server's own document, built on first request; guests one,
	// built once.
	before = b.docsBuilt.Load()
	for i := range 30 {
		serveAs(b, &Identity{ID: fmt.Sprintf("u-%d", i), Role: roles[i%3]}, http.MethodGet, "/time/openapi.json")
	}
	if got := b.docsBuilt.Load() - before; got != 2 {
		t.Errorf("time's documents for 3 sets, two of them every tool: %d built, want 2", got)
	}
}

func TestAccessRules_ANewListingIsGrantedAnew(t *testing.T) {
	b, callers, _ := ruleBridge(t, rules)
	user := &Identity{ID: "u-1", Role: "user"}
	if w := serveAs(b, user, http.MethodPost, "/memory/read_more"); w.Code != http.StatusNotFound {
		t.Fatalf("a tool not listed yet: %d %s", w.Code, w.Body)
	}
	callers["memory"].set = &upstream.ToolSet{Tools: append(slices.Clone(callers["memory"].set.Tools),
		&upstream.Tool{Name: "read_more", InputSchema: json.RawMessage(`{"type":"object"}`)},
		&upstream.Tool{Name: "write_more", InputSchema: json.RawMessage(`{"type":"object"}`)})}
	if w := serveAs(b, user, http.MethodPost, "/memory/read_more"); w.Code != http.StatusOK {
		t.Errorf("a new tool the user's */read_* grants: %d %s", w.Code, w.Body)
	}
	if w := serveAs(b, user, http.MethodPost, "/memory/write_more"); w.Code != http.StatusForbidden {
		t.Errorf("a new tool the user is not granted: %d %s", w.Code, w.Body)
	}
	got := documentTools(t, serveAs(b, user, http.MethodGet, "/memory/openapi.json").Body.Bytes(), "memory")
	if want := []string{"memory/read_graph", "memory/read_more", "memory/search_nodes"}; !slices.Equal(got, want) {
		t.Errorf("memory's document after the new listing: %v, want %v", got, want)
	}
}

func TestAccessRules_NotFoundNamesOnlyTheCallersTools(t *testing.T) {
	b, _, _ := ruleBridge(t, rules)
	w := serveAs(b, &Identity{ID: "bob"}, http.MethodPost, "/github/nope")
	if w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "its tools are at: get_file (POST)") {
		t.Errorf("404 for bob: %d %s", w.Code, w.Body)
	}
}

func TestAccessRules_WarnOfPatternsThatMatchNothingOncePerListing(t *testing.T) {
	b, callers, logs := ruleBridge(t, []Rule{{Subjects: []string{"*"},
		Tools: []string{"time/*", "nosuch/*", "n?suchtoo/x", "time/nothing_*", "*/zzz_*"}}})
	// warnings returns the patterns of the warnings logged since it was
	// last called, all of them msg.
	warnings := func(msg string) []string {
		var out []string
		for _, e := range logs.TakeAll() {
			if e.Message != msg {
				t.Errorf("logged %q %v", e.Message, e.ContextMap())
				continue
			}
			out = append(out, e.ContextMap()["pattern"].(string))
		}
		sort.Strings(out)
		return out
	}
	if got := warnings("access pattern names no server of this mount"); !slices.Equal(got, []string{"n?suchtoo/x", "nosuch/*"}) {
		t.Errorf("patterns of unknown servers warned of: %v", got)
	}
	serveAs(b, nil, http.MethodGet, "/time/openapi.json")
	serveAs(b, nil, http.MethodGet, "/time/openapi.json")
	if got := warnings("access pattern matches no tool"); !slices.Equal(got, []string{"time/nothing_*"}) {
		t.Errorf("after time's listing, twice: %v, want time/nothing_* once (*/zzz_* waits for every server's listing)", got)
	}
	serveAs(b, nil, http.MethodGet, "/openapi.json")
	serveAs(b, nil, http.MethodGet, "/openapi.json")
	if got := warnings("access pattern matches no tool"); !slices.Equal(got, []string{"*/zzz_*"}) {
		t.Errorf("after every server's listing: %v, want */zzz_* once", got)
	}
	callers["time"].set = &upstream.ToolSet{Tools: callers["time"].set.Tools}
	serveAs(b, nil, http.MethodGet, "/time/openapi.json")
	if got := warnings("access pattern matches no tool"); !slices.Equal(got, []string{"*/zzz_*", "time/nothing_*"}) {
		t.Errorf("after a new listing of time: %v, want both once", got)
	}
}

func TestAccessRules_AtASingleServerMountTheServerIsNamed(t *testing.T) {
	b, err := New(Config{Single: true, Servers: []*ServerConfig{{Name: "time", Upstream: newListCaller("get_current_time", "convert_time")}},
		Access: Access{Rules: []Rule{{Subjects: []string{"*"}, Tools: []string{"time/get_*"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if w := serveAs(b, nil, http.MethodPost, "/get_current_time"); w.Code != http.StatusOK {
		t.Errorf("a granted tool: %d %s", w.Code, w.Body)
	}
	if w := serveAs(b, nil, http.MethodPost, "/convert_time"); w.Code != http.StatusForbidden ||
		!strings.Contains(w.Body.String(), "the tool time/convert_time is not granted") {
		t.Errorf("another tool: %d %s", w.Code, w.Body)
	}
	if got := documentTools(t, serveAs(b, nil, http.MethodGet, "/openapi.json").Body.Bytes(), "time"); !slices.Equal(got, []string{"time/get_current_time"}) {
		t.Errorf("the document lists %v", got)
	}
}

func TestAccessRules_WithoutRulesNothingChanges(t *testing.T) {
	b, _, _ := ruleBridge(t, nil)
	w := serveAs(b, nil, http.MethodGet, "/openapi.json")
	if len(documentTools(t, w.Body.Bytes(), "")) != 9 || w.Header().Get("Vary") != "" || w.Header().Get("Cache-Control") != "no-cache" {
		t.Errorf("without rules: %v, Vary %q, Cache-Control %q", documentTools(t, w.Body.Bytes(), ""),
			w.Header().Get("Vary"), w.Header().Get("Cache-Control"))
	}
	if w := serveAs(b, nil, http.MethodPost, "/github/create_issue"); w.Code != http.StatusOK {
		t.Errorf("without rules, a call: %d %s", w.Code, w.Body)
	}
}

func TestAccessRules_ManyRulesAndManyCallersStayBounded(t *testing.T) {
	// More rules than a mask on the stack holds, and more distinct sets of
	// rules than the policy keeps.
	var many []Rule
	for i := range maxGrants + 100 {
		many = append(many, Rule{Subjects: []string{fmt.Sprintf("user:u-%d", i)}, Tools: []string{ruleToolOf(i)}})
	}
	b, _, _ := ruleBridge(t, many)
	for i := range maxGrants + 100 {
		id := &Identity{ID: fmt.Sprintf("u-%d", i)}
		tool := ruleToolOf(i)
		if w := serveAs(b, id, http.MethodPost, "/"+tool); w.Code != http.StatusOK {
			t.Fatalf("%s calling %s: %d %s", id.ID, tool, w.Code, w.Body)
		}
		if w := serveAs(b, id, http.MethodPost, "/"+ruleToolOf(i+1)); w.Code != http.StatusForbidden {
			t.Fatalf("%s calling another tool: %d %s", id.ID, w.Code, w.Body)
		}
	}
	if got := len(*b.policy.grants.Load()); got > maxGrants {
		t.Errorf("%d grants kept, more than %d", got, maxGrants)
	}
}

// ruleToolOf returns the i-th tool of ruleServers, round and round.
func ruleToolOf(i int) string {
	var all []string
	for _, s := range ruleOrder {
		for _, t := range ruleServers[s] {
			all = append(all, s+"/"+t)
		}
	}
	return all[i%len(all)]
}

func TestAccessRules_ACallerGrantedNoneOfAServersToolsGets403EvenBeforeItsListing(t *testing.T) {
	b, callers, _ := ruleBridge(t, rules)
	callers["github"].set = nil // starting: no listing yet
	for _, c := range []struct {
		name   string
		id     *Identity
		status int
		says   string
	}{
		{"a caller granted none of its tools", &Identity{ID: "x", Role: "Admin"}, http.StatusForbidden,
			`{"detail":{"message":"no tool of server \"github\" is granted to this caller"}}`},
		{"a caller without an identity", nil, http.StatusForbidden, `no tool of server \"github\" is granted`},
		{"a caller granted some of its tools", &Identity{ID: "bob", Role: "guest"}, http.StatusServiceUnavailable, `"server":"github"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := serveAs(b, c.id, http.MethodPost, "/github/list_issues")
			if w.Code != c.status || !strings.Contains(w.Body.String(), c.says) {
				t.Errorf("%d %s, want %d saying %s", w.Code, w.Body, c.status, c.says)
			}
		})
	}
	// Once listed, a tool it does not have is refused the same way to a
	// caller granted nothing of the server, and not found to the others.
	callers["github"].set = newListCaller(ruleServers["github"]...).set
	if w := serveAs(b, &Identity{ID: "x"}, http.MethodPost, "/github/no_such_tool"); w.Code != http.StatusForbidden {
		t.Errorf("an unknown tool of a server granted nothing: %d %s, want 403", w.Code, w.Body)
	}
	if w := serveAs(b, &Identity{ID: "bob", Role: "guest"}, http.MethodPost, "/github/no_such_tool"); w.Code != http.StatusNotFound {
		t.Errorf("an unknown tool of a server granted in part: %d %s, want 404", w.Code, w.Body)
	}
}

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
	"github.com/caddy-mcpo/caddy-mcpo/internal/identity/jwttest"
)

// requestInfo calls the fixture's request_info tool at path (…/request_info)
// with the given header pairs and returns what the server saw of the call.
func requestInfo(t *testing.T, path string, header ...string) fixture.RequestInfo {
	t.Helper()
	r := do(t, http.MethodPost, path, `{}`, header...)
	if r.status != http.StatusOK {
		t.Fatalf("POST %s: %s", path, r)
	}
	var info fixture.RequestInfo // the bridge answers a JSON text as JSON
	if err := json.Unmarshal(r.body, &info); err != nil {
		t.Fatalf("POST %s: %s: %v", path, r, err)
	}
	return info
}

// Two MCP gateways leaked their callers' Authorization upstream, and had
// to switch to forwarding nothing by default: a header not on the list
// must never reach the server, in any request.
func TestForwardHeaders_OnlyTheListedHeadersOfTheCallerReachTheServer(t *testing.T) {
	pairs := []string{
		"Authorization", "Bearer caller-token",
		"Cookie", "session=caller",
		"X-OpenWebUI-User-Jwt", "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl",
		"X-Random", "random",
		"X-OpenWebUI-Chat-Id", "chat-1",
	}
	caller := map[string]string{} // by canonical name
	for i := 0; i < len(pairs); i += 2 {
		caller[http.CanonicalHeaderKey(pairs[i])] = pairs[i+1]
	}
	cases := []struct {
		name    string
		forward string
		want    []string // the caller's headers that arrive, canonical
	}{
		{"nothing", "", nil},
		{"chat", "forward_headers X-OpenWebUI-Chat-Id", []string{"X-Openwebui-Chat-Id"}},
		{"credentials", "forward_headers Authorization\n\t\t\tforward_headers cookie", []string{"Authorization", "Cookie"}},
	}
	servers := map[string]*fixture.StreamableHTTP{}
	var blocks strings.Builder
	for _, c := range cases {
		servers[c.name] = fixture.NewStreamableHTTPServer(t, fixture.Options{})
		fmt.Fprintf(&blocks, "\t\tserver %s {\n\t\t\turl %s\n", c.name, servers[c.name].URL)
		if c.forward != "" {
			fmt.Fprintf(&blocks, "\t\t\t%s\n", c.forward)
		}
		blocks.WriteString("\t\t}\n")
	}
	startCaddy(t, fmt.Sprintf(":%d {\n\tmcpo /fw {\n%s\t}\n}\n", httpPort, blocks.String()))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := "/fw/" + c.name + "/request_info"
			waitReady(t, "/fw/"+c.name+"/openapi.json")
			baseline := requestInfo(t, path).Headers // what every call carries
			got := requestInfo(t, path, pairs...).Headers
			var added []string
			for name := range got {
				if _, ok := baseline[name]; !ok {
					added = append(added, name)
				}
			}
			slices.Sort(added)
			if !slices.Equal(added, c.want) {
				t.Errorf("the call carried %q besides what every call carries, want exactly %q", added, c.want)
			}
			for _, name := range c.want {
				if v := got.Values(name); !slices.Equal(v, []string{caller[name]}) {
					t.Errorf("%s arrived as %q, want %q", name, v, caller[name])
				}
			}
			// Every request the server received: the handshake, the
			// listing, both calls.
			received := servers[c.name].Received()
			for name := range caller {
				n := 0
				for _, h := range received {
					if h.Get(name) != "" {
						n++
					}
				}
				want := 0
				if slices.Contains(c.want, name) {
					want = 1 // the one call that sent it
				}
				if n != want {
					t.Errorf("%d of the %d requests the server received carried the caller's %s, want %d", n, len(received), name, want)
				}
			}
		})
	}
}

// pwHash is the bcrypt hash of "pw" at the lowest cost, which keeps
// basic_auth quick under the race detector.
const pwHash = "$2a$04$c/MgdPukIZ5nxRlxNOyta.zz2TgaL7g35F8mCcJ5erCbkVlSbuSJ6"

// A header value that holds placeholders of the request is resolved per
// call: callers sharing one session each get their own value, and a reload
// that changes only the template keeps the session (a legacy session, whose
// ID tells it apart).
func TestHeaderTemplates_EachCallerOfASharedSessionGetsTheirOwnValues(t *testing.T) {
	srv := fixture.NewStreamableHTTPServer(t, fixture.Options{})
	config := func(templates string) string {
		return fmt.Sprintf(`:%d {
	@calls method POST
	basic_auth @calls {
		alice %s
		bob %s
	}
	mcpo /tpl {
		url %s
		protocol legacy
		%s
	}
}
`, httpPort, pwHash, pwHash, srv.URL, templates)
	}
	startCaddy(t, config("header X-User {http.auth.user.id}\n\t\theader X-Chat \"chat {http.request.header.X-OpenWebUI-Chat-Id}\""))
	waitReady(t, "/tpl/openapi.json")

	const perUser = 10
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		sessions = map[string]bool{} // the Mcp-Session-Id of each call
	)
	for _, user := range []string{"alice", "bob"} {
		for i := range perUser {
			wg.Go(func() {
				chat := fmt.Sprintf("%s-%d", user, i)
				r, err := send(context.Background(), http.MethodPost, "/tpl/request_info", `{}`,
					"Authorization", basicAuth(user, "pw"), "X-OpenWebUI-Chat-Id", chat)
				if err != nil || r.status != http.StatusOK {
					t.Errorf("%s's call %d: %v %v", user, i, r, err)
					return
				}
				var info fixture.RequestInfo
				if json.Unmarshal(r.body, &info) != nil {
					t.Errorf("%s's call %d: %s", user, i, r)
					return
				}
				h := info.Headers
				if h.Get("X-User") != user || h.Get("X-Chat") != "chat "+chat || len(h.Values("X-User")) != 1 {
					t.Errorf("%s's call %d carried X-User %q, X-Chat %q", user, i, h.Values("X-User"), h.Values("X-Chat"))
				}
				if h.Get("Authorization") != "" {
					t.Errorf("%s's call %d carried the caller's Authorization", user, i)
				}
				mu.Lock()
				sessions[h.Get("Mcp-Session-Id")] = true
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	ids := slices.Collect(maps.Keys(sessions))
	if len(ids) != 1 || ids[0] == "" {
		t.Fatalf("the calls went through sessions %q, want one shared session", ids)
	}

	// A reload that changes the template and adds forward_headers keeps
	// the running session: no new handshake, the same session ID.
	handshakes := func() int {
		n := 0
		for _, h := range srv.Received() {
			if h.Get("Mcp-Session-Id") == "" {
				n++
			}
		}
		return n
	}
	before := handshakes()
	startCaddy(t, config("header X-User \"user {http.auth.user.id}\"\n\t\tforward_headers X-OpenWebUI-Chat-Id"))
	waitReady(t, "/tpl/openapi.json")
	info := requestInfo(t, "/tpl/request_info", "Authorization", basicAuth("bob", "pw"), "X-OpenWebUI-Chat-Id", "c-9")
	if h := info.Headers; h.Get("X-User") != "user bob" || h.Get("X-Openwebui-Chat-Id") != "c-9" || h.Get("X-Chat") != "" {
		t.Errorf("after the reload the call carried X-User %q, X-OpenWebUI-Chat-Id %q, X-Chat %q",
			h.Get("X-User"), h.Get("X-Openwebui-Chat-Id"), h.Get("X-Chat"))
	}
	if id := info.Headers.Get("Mcp-Session-Id"); id != ids[0] {
		t.Errorf("after the reload the call went through session %q, want the running %q", id, ids[0])
	}
	if n := handshakes(); n != before {
		t.Errorf("the reload started %d new sessions at the server, want none", n-before)
	}
}

// A request can make a value no header can carry (a query parameter
// decodes to anything): it is left out, never sent, and the call goes on.
func TestHeaderTemplates_AValueNoHeaderCanCarryIsLeftOut(t *testing.T) {
	srv := fixture.NewStreamableHTTPServer(t, fixture.Options{})
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /q {
		url %s
		header X-Query "q={http.request.uri.query.q}"
	}
}
`, httpPort, srv.URL))
	waitReady(t, "/q/openapi.json")
	if h := requestInfo(t, "/q/request_info?q=plain").Headers; h.Get("X-Query") != "q=plain" {
		t.Fatalf("X-Query = %q, want q=plain", h.Get("X-Query"))
	}
	for _, q := range []string{"a%0D%0AX-Injected:%20yes", "a%0Ab", "a%00b"} {
		h := requestInfo(t, "/q/request_info?q="+q).Headers
		if h.Get("X-Query") != "" || h.Get("X-Injected") != "" {
			t.Errorf("q=%s: the call carried X-Query %q, X-Injected %q", q, h.Get("X-Query"), h.Get("X-Injected"))
		}
	}
	for _, h := range srv.Received() {
		if v := h.Get("X-Query"); v != "" && v != "q=plain" || h.Get("X-Injected") != "" {
			t.Errorf("the server received X-Query %q, X-Injected %q", v, h.Get("X-Injected"))
		}
	}
}

// Until a handler establishes who is calling, meta_identity has nothing to
// send: the call's _meta holds no such key, over stdio and HTTP.
func TestMetaIdentity_NothingWithoutAnIdentity(t *testing.T) {
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /meta {
		server stdio {
			%s
			meta_identity example.com/user
		}
		server http {
			url %s
			meta_identity example.com/user
		}
	}
}
`, httpPort, testFixture(t, fixture.Options{}), fixture.NewStreamableHTTP(t, fixture.Options{})))
	for _, name := range []string{"stdio", "http"} {
		waitReady(t, "/meta/"+name+"/openapi.json")
		if m := requestInfo(t, "/meta/"+name+"/request_info").Meta; m["example.com/user"] != nil {
			t.Errorf("%s: _meta = %v, want no identity", name, m)
		}
	}
}

// An identity from Open WebUI's token reaches the server as the settings
// say, on a shared session, and a caller without one never reaches it.
func TestTheCallersIdentityReachesTheServerAsConfigured(t *testing.T) {
	t.Setenv("MCPO_TEST_OWUI_SECRET", owuiSecret)
	upstream := fixture.NewStreamableHTTPServer(t, fixture.Options{})
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /who {
		identity openwebui_jwt {env.MCPO_TEST_OWUI_SECRET}
		server stdio {
			%s
			meta_identity example.com/user
		}
		server http {
			url %s
			meta_identity example.com/user
			header X-User {mcpo.user.id}
			header X-Role {mcpo.user.role}
		}
	}
}
`, httpPort, testFixture(t, fixture.Options{}), upstream.URL))
	token := func(sub, role string) string {
		return jwttest.Sign(t, jose.HS256, []byte(owuiSecret), jwttest.OpenWebUIClaims(sub, time.Now(),
			map[string]any{"email": sub + "@example.com", "name": strings.ToUpper(sub), "role": role}))
	}
	for _, name := range []string{"stdio", "http"} {
		waitReady(t, "/who/"+name+"/openapi.json")
		for _, user := range []struct{ id, role string }{{"alice", "admin"}, {"bob", "user"}} {
			info := requestInfo(t, "/who/"+name+"/request_info", "X-OpenWebUI-User-Jwt", token(user.id, user.role))
			want := map[string]any{"id": user.id, "email": user.id + "@example.com", "name": strings.ToUpper(user.id), "role": user.role}
			if got, _ := info.Meta["example.com/user"].(map[string]any); !maps.Equal(got, want) {
				t.Errorf("%s, %s: _meta[example.com/user] = %v, want %v", name, user.id, info.Meta["example.com/user"], want)
			}
			if name == "http" && (info.Headers.Get("X-User") != user.id || info.Headers.Get("X-Role") != user.role) {
				t.Errorf("%s: X-User %q, X-Role %q; want %q, %q", user.id, info.Headers.Get("X-User"), info.Headers.Get("X-Role"), user.id, user.role)
			}
			if name == "http" && info.Headers.Get("X-Openwebui-User-Jwt") != "" {
				t.Errorf("%s: the caller's token reached the server", user.id)
			}
		}
	}

	// Without a valid token the call stops at Caddy: the server receives
	// no request for it.
	before := len(upstream.Received())
	for _, header := range [][]string{nil, {"X-OpenWebUI-User-Jwt", "not.a.token"}} {
		if r := do(t, http.MethodPost, "/who/http/request_info", `{}`, header...); r.status != http.StatusUnauthorized {
			t.Errorf("a call with %v: %s, want 401", header, r)
		}
	}
	if after := len(upstream.Received()); after != before {
		t.Errorf("the server received %d requests for calls without a valid identity", after-before)
	}
}

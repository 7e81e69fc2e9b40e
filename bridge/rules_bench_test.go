package bridge

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// benchRules returns 100 rules of every kind of subject over servers
// s0…s2, and a caller some of them match: a role, an email and three
// groups.
func benchRules() ([]Rule, Identity) {
	var rules []Rule
	for i := range 100 {
		var subject string
		switch i % 5 {
		case 0:
			subject = fmt.Sprintf("user:user-%d", i)
		case 1:
			subject = fmt.Sprintf("role:role-%d", i%7)
		case 2:
			subject = fmt.Sprintf("group:group-%d", i%11)
		case 3:
			subject = fmt.Sprintf("email:user-%d@example.com", i)
		default:
			subject = "*"
		}
		rules = append(rules, Rule{Subjects: []string{subject},
			Tools: []string{fmt.Sprintf("s%d/tool_%d*", i%3, i%10), fmt.Sprintf("*/read_%d", i)}})
	}
	return rules, Identity{ID: "user-40", Email: "User-43@example.com", Role: "role-1", Groups: []string{"group-2", "group-5", "group-9"}}
}

// benchListing is a listing of n tools: tool_<i>, every fourth
// read_<i>.
func benchListing(n int) *upstream.ToolSet {
	set := &upstream.ToolSet{Server: upstream.ServerInfo{Name: "bench", Version: "1.0.0"}}
	for i := range n {
		name := fmt.Sprintf("tool_%d", i)
		if i%4 == 0 {
			name = fmt.Sprintf("read_%d", i)
		}
		set.Tools = append(set.Tools, &upstream.Tool{Name: name, Description: "Does " + name + ".",
			InputSchema: json.RawMessage(`{"type":"object","properties":{"path":{"type":"string","description":"A path."},` +
				`"limit":{"type":"integer","minimum":1}},"required":["path"]}`)})
	}
	return set
}

// benchRuleBridge returns a bridge of three servers of n tools each under
// 100 rules, every view built.
func benchRuleBridge(b *testing.B, n int) (*Bridge, Identity) {
	rules, caller := benchRules()
	var servers []*ServerConfig
	for i := range 3 {
		servers = append(servers, &ServerConfig{Name: fmt.Sprintf("s%d", i), Upstream: &benchCaller{set: benchListing(n)}})
	}
	br, err := New(Config{Servers: servers, Access: Access{Rules: rules, Vary: []string{"X-OpenWebUI-User-Jwt"}}})
	if err != nil {
		b.Fatal(err)
	}
	for _, s := range br.servers {
		if _, err := s.current(br.log); err != nil {
			b.Fatal(err)
		}
	}
	return br, caller
}

// benchRuleCaller returns a bridge of benchRuleBridge, its server s1 and
// its view, and a request of s1 by the caller of benchRules.
func benchRuleCaller(b *testing.B, tools int, method string) (*Bridge, *serverState, *view, *http.Request) {
	br, caller := benchRuleBridge(b, tools)
	s := br.servers["s1"]
	r := httptest.NewRequest(method, "/m/s1/openapi.json", nil)
	return br, s, s.view.Load(), r.WithContext(WithIdentity(r.Context(), caller))
}

// BenchmarkAccessRules measures what access rules add to a call: the
// caller's set of rules from their identity (user, role, email, three
// groups) among 100 rules, its grant, and whether it allows the tool, as
// serve checks it before a call.
func BenchmarkAccessRules(b *testing.B) {
	br, s, v, r := benchRuleCaller(b, 30, http.MethodPost)
	if n := br.allowed(r, s, v).n; n == 0 || n == len(v.routes) {
		b.Fatalf("the caller may call %d of %d tools: the benchmark would check no choice", n, len(v.routes))
	}
	allowed, i := 0, 0
	b.ReportAllocs()
	for b.Loop() {
		if br.allowed(r, s, v).permits(v.routes[i%len(v.routes)]) {
			allowed++
		}
		i++
	}
	b.ReportMetric(float64(allowed)/float64(i), "allowed/op")
}

// BenchmarkAccessRulesFirstGrant measures what a new set of granted
// tools costs before its document: the caller's grant under 100 rules,
// matched against a listing of 1,000 tools.
func BenchmarkAccessRulesFirstGrant(b *testing.B) {
	br, s, v, r := benchRuleCaller(b, 1000, http.MethodGet)
	b.ReportAllocs()
	for b.Loop() {
		br.policy.grants.Store(&map[string]*grant{})
		if br.allowed(r, s, v).n == 0 {
			b.Fatal("nothing granted")
		}
	}
}

// BenchmarkAccessRulesFirstDocument measures the first document of a new
// set of granted tools, from the request to the written answer, with
// 1,000 tools per server under 100 rules: the caller's grant is new each
// time, so every request computes it, matches it against the listing and
// builds the document. One server's own document, and the one covering
// all three (3,000 tools).
func BenchmarkAccessRulesFirstDocument(b *testing.B) {
	for _, bc := range []struct{ name, rel string }{
		{"server of 1000 tools", "/s1/openapi.json"},
		{"mount of 3000 tools", "/openapi.json"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			br, caller := benchRuleBridge(b, 1000)
			r := httptest.NewRequest(http.MethodGet, "/m"+bc.rel, nil)
			r = r.WithContext(WithIdentity(r.Context(), caller))
			w := &discardWriter{h: http.Header{}}
			tools := 0
			b.ReportAllocs()
			for b.Loop() {
				br.policy.grants.Store(&map[string]*grant{})
				for _, s := range br.servers {
					s.view.Load().docs = nil
				}
				br.granted, br.grantedViews = nil, nil
				clear(w.h)
				br.Serve(w, r, bc.rel, "/m")
				if w.status != http.StatusOK {
					b.Fatal(w.status)
				}
				tools = br.policy.grantOf(r.Context()).of(br.servers["s1"], br.servers["s1"].view.Load()).n
			}
			b.ReportMetric(float64(tools), "granted-tools/server")
		})
	}
}

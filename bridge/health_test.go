package bridge

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// sessionCaller is a ready server that says how many sessions it runs;
// perCaller false is a server every caller shares.
type sessionCaller struct {
	fakeCaller
	running, max int
	perCaller    bool
}

func (c *sessionCaller) Sessions() (int, int, bool) { return c.running, c.max, c.perCaller }

func TestHealthCountsTheSessionsOfServersWithASessionPerCaller(t *testing.T) {
	b, err := New(Config{Servers: []*ServerConfig{
		{Name: "memory", Upstream: &sessionCaller{running: 3, max: 20, perCaller: true}},
		{Name: "none-yet", Upstream: &sessionCaller{max: 100, perCaller: true}},
		{Name: "shared", Upstream: &sessionCaller{}},
		{Name: "plain", Upstream: &fakeCaller{}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	w := serve(b, http.MethodGet, "/health", nil)
	var report struct {
		Servers []map[string]any `json:"servers"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &report); err != nil || w.Code != http.StatusOK || len(report.Servers) != 4 {
		t.Fatalf("health %d %s (%v)", w.Code, w.Body, err)
	}
	for i, want := range []struct{ sessions, max any }{{3.0, 20.0}, {0.0, 100.0}, {nil, nil}, {nil, nil}} {
		s := report.Servers[i]
		if s["sessions"] != want.sessions || s["max_sessions"] != want.max {
			t.Errorf("%s: sessions %v, max_sessions %v; want %v and %v", s["name"], s["sessions"], s["max_sessions"], want.sessions, want.max)
		}
	}
}

// idleCaller is a server in state idle, with a listing or without.
type idleCaller struct {
	fakeCaller
	tools *upstream.ToolSet
}

func (c *idleCaller) Tools() *upstream.ToolSet { return c.tools }
func (c *idleCaller) Status() upstream.Status  { return upstream.Status{State: upstream.StateIdle} }

func TestHealthCountsAnIdleServerWithAListingAsServing(t *testing.T) {
	listing := &upstream.ToolSet{Tools: []*upstream.Tool{{Name: "pid", InputSchema: json.RawMessage(`{"type":"object"}`)}}}
	for _, tc := range []struct {
		name   string
		tools  *upstream.ToolSet
		status int
		report string
	}{
		{"idle with a listing: started on demand, and stopped", listing, http.StatusOK, "ready"},
		{"idle without a listing: not started yet", nil, http.StatusServiceUnavailable, "unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := New(Config{Servers: []*ServerConfig{{Name: "od", Upstream: &idleCaller{tools: tc.tools}}}})
			if err != nil {
				t.Fatal(err)
			}
			w := serve(b, http.MethodGet, "/health", nil)
			var report struct {
				Status  string         `json:"status"`
				Servers []ServerReport `json:"servers"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &report); err != nil || w.Code != tc.status || report.Status != tc.report ||
				len(report.Servers) != 1 || report.Servers[0].State != upstream.StateIdle {
				t.Errorf("health %d %s (%v); want %d, %q, the server idle", w.Code, w.Body, err, tc.status, tc.report)
			}
		})
	}
}

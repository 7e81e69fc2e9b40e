package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// mcpoRuns numbers the runs of the tests here, which name their servers
// after it: the call counters outlive configurations, and so runs.
var mcpoRuns atomic.Int32

// mcpoAdminServer is one server as GET /mcpo/servers reports it.
type mcpoAdminServer struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	State     string `json:"state"`
	Endpoint  string `json:"endpoint"`
	Protocol  string `json:"protocol"`
	Server    string `json:"server"`
	Tools     int    `json:"tools"`
	InFlight  int    `json:"in_flight"`
	Restarts  int    `json:"restarts"`
	PID       int    `json:"pid"`
	LastError string `json:"last_error"`
}

// mcpoAdminRequest sends a request to the admin endpoint of the Caddy
// under test.
func mcpoAdminRequest(t *testing.T, method, path string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, fmt.Sprintf("http://localhost:%d%s", adminPort, path), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		t.Fatalf("%s %s on the admin endpoint: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s on the admin endpoint: reading the body: %v", method, path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}
}

// mcpoAdminServers lists the servers through the admin API.
func mcpoAdminServers(t *testing.T) []mcpoAdminServer {
	t.Helper()
	r := mcpoAdminRequest(t, http.MethodGet, "/mcpo/servers")
	var out []mcpoAdminServer
	if r.status != http.StatusOK || json.Unmarshal(r.body, &out) != nil {
		t.Fatalf("GET /mcpo/servers: %s", r)
	}
	return out
}

// mcpoAdminWait polls GET /mcpo/servers/<id> until cond holds.
func mcpoAdminWait(t *testing.T, id, what string, cond func(mcpoAdminServer) bool) mcpoAdminServer {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		r := mcpoAdminRequest(t, http.MethodGet, "/mcpo/servers/"+id)
		var s mcpoAdminServer
		if r.status != http.StatusOK || json.Unmarshal(r.body, &s) != nil {
			t.Fatalf("GET /mcpo/servers/%s: %s", id, r)
		}
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("server %s: not %s after %s: %+v", id, what, waitLimit, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// mcpoScrapeMetrics reads the admin endpoint's /metrics and checks that it
// has every line of want, exactly.
func mcpoScrapeMetrics(t *testing.T, want ...string) {
	t.Helper()
	r := mcpoAdminRequest(t, http.MethodGet, "/metrics")
	if r.status != http.StatusOK {
		t.Fatalf("GET /metrics: %s", r)
	}
	lines := strings.Split(string(r.body), "\n")
	for _, w := range want {
		if !slices.Contains(lines, w) {
			t.Errorf("/metrics has no line %s", w)
		}
	}
	if t.Failed() {
		var ours []string
		for _, l := range lines {
			if strings.HasPrefix(l, "caddy_mcpo_") {
				ours = append(ours, l)
			}
		}
		t.Fatalf("the mcpo lines of /metrics:\n%s", strings.Join(ours, "\n"))
	}
}

// mcpoNoMetricLineHas fails the test if a line of the admin endpoint's
// /metrics holds s.
func mcpoNoMetricLineHas(t *testing.T, s string) {
	t.Helper()
	r := mcpoAdminRequest(t, http.MethodGet, "/metrics")
	for _, l := range strings.Split(string(r.body), "\n") {
		if strings.Contains(l, s) {
			t.Errorf("/metrics has the line %s", l)
		}
	}
}

// mcpoCallPID asks the fixture behind mount for its process ID.
func mcpoCallPID(t *testing.T, mount string) int {
	t.Helper()
	r := do(t, http.MethodPost, mount+"/pid", "")
	pid, err := strconv.Atoi(string(r.body))
	if r.status != http.StatusOK || err != nil {
		t.Fatalf("POST %s/pid: %s", mount, r)
	}
	return pid
}

func TestAdminAPIAndMetricsFollowCallsRestartsAndRefreshes(t *testing.T) {
	// Two single-server mounts named dupe, with different configurations,
	// share a name: the admin API tells them apart by id, and the metrics
	// by their id label. The counters live as long as the process, so each
	// run of the test (-count) uses a server name of its own.
	name := fmt.Sprintf("adminfx%d", mcpoRuns.Add(1))
	mount := "/" + name
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo %s {
		%s
	}
	mcpo /one/dupe {
		%s
	}
	mcpo /two/dupe {
		%s
	}
}
`, httpPort, mount, fixtureCommand(fixture.Options{}), fixtureCommand(fixture.Options{}), fixtureCommand(fixture.Options{Name: "other"})))
	for _, m := range []string{mount, "/one/dupe", "/two/dupe"} {
		waitReady(t, m+"/openapi.json")
	}
	tools := len(fixture.ToolNames(fixture.Options{}))

	calls := []struct {
		tool, body string
		status     int
	}{
		{"add", `{"a":1,"b":2}`, http.StatusOK},
		{"add", `{"a":"one","b":2}`, http.StatusUnprocessableEntity},
		{"fail", `{"reason":"for the metrics"}`, http.StatusInternalServerError},
	}
	for _, c := range calls {
		if r := do(t, http.MethodPost, mount+"/"+c.tool, c.body); r.status != c.status {
			t.Fatalf("POST %s/%s %s: %s, want %d", mount, c.tool, c.body, r, c.status)
		}
	}
	// A tool the server does not list is a 404, not a call: no metric names it.
	if r := do(t, http.MethodPost, mount+"/made_up", `{}`); r.status != http.StatusNotFound {
		t.Fatalf("POST %s/made_up: %s, want 404", mount, r)
	}

	servers := mcpoAdminServers(t)
	if len(servers) != 3 {
		t.Fatalf("GET /mcpo/servers lists %d servers, want 3: %+v", len(servers), servers)
	}
	fx, dupes := servers[0], servers[1:]
	if fx.Name != name || dupes[0].Name != "dupe" || dupes[1].Name != "dupe" || dupes[0].ID >= dupes[1].ID {
		t.Errorf("servers are not sorted by name then id: %+v", servers)
	}
	command, _, _ := fixture.StdioCommand(fixture.Options{})
	want := mcpoAdminServer{
		ID: fx.ID, Name: name, State: "ready", Endpoint: command, Protocol: fx.Protocol,
		Server: fixture.DefaultName + " " + fixture.Version, Tools: tools, PID: fx.PID,
	}
	if fx != want || fx.Protocol == "" || fx.PID == 0 {
		t.Errorf("%s is\n%+v, want\n%+v", name, fx, want)
	}

	id := fx.ID
	labels := `{id="` + id + `",server="` + name + `"`
	mcpoScrapeMetrics(t,
		`caddy_mcpo_calls_total{face="rest",outcome="ok",server="`+name+`",tool="add"} 1`,
		`caddy_mcpo_calls_total{face="rest",outcome="invalid_arguments",server="`+name+`",tool="add"} 1`,
		`caddy_mcpo_calls_total{face="rest",outcome="tool_error",server="`+name+`",tool="fail"} 1`,
		`caddy_mcpo_call_duration_seconds_count{face="rest",server="`+name+`",tool="add"} 2`,
		`caddy_mcpo_call_duration_seconds_bucket{face="rest",server="`+name+`",tool="add",le="300"} 2`,
		`caddy_mcpo_call_duration_seconds_bucket{face="rest",server="`+name+`",tool="add",le="+Inf"} 2`,
		`caddy_mcpo_call_duration_seconds_count{face="rest",server="`+name+`",tool="fail"} 1`,
		`caddy_mcpo_server_up`+labels+`} 1`,
		`caddy_mcpo_server_state`+labels+`,state="ready"} 1`,
		`caddy_mcpo_server_state`+labels+`,state="starting"} 0`,
		`caddy_mcpo_server_state`+labels+`,state="backoff"} 0`,
		`caddy_mcpo_server_state`+labels+`,state="failed"} 0`,
		`caddy_mcpo_server_restarts_total`+labels+`} 0`,
		`caddy_mcpo_server_tools`+labels+`} `+strconv.Itoa(tools),
		`caddy_mcpo_server_up{id="`+dupes[0].ID+`",server="dupe"} 1`,
		`caddy_mcpo_server_up{id="`+dupes[1].ID+`",server="dupe"} 1`,
	)
	mcpoNoMetricLineHas(t, `tool="made_up"`)
	if pid := mcpoCallPID(t, mount); pid != fx.PID {
		t.Errorf("the admin API says PID %d, the fixture %d", fx.PID, pid)
	}

	// Lookups that cannot be served.
	for _, c := range []struct {
		method, path string
		status       int
		has          []string
	}{
		{http.MethodGet, "/mcpo/servers/dupe", http.StatusConflict, []string{dupes[0].ID, dupes[1].ID}},
		{http.MethodPost, "/mcpo/servers/dupe/restart", http.StatusConflict, []string{dupes[0].ID, dupes[1].ID}},
		{http.MethodGet, "/mcpo/servers/nope", http.StatusNotFound, []string{"nope"}},
		{http.MethodPost, "/mcpo/servers", http.StatusMethodNotAllowed, nil},
		{http.MethodGet, "/mcpo/servers/" + name + "/restart", http.StatusMethodNotAllowed, nil},
	} {
		r := mcpoAdminRequest(t, c.method, c.path)
		var body struct {
			Error string `json:"error"`
		}
		if r.status != c.status || json.Unmarshal(r.body, &body) != nil || body.Error == "" {
			t.Errorf("%s %s: %s, want %d with an error", c.method, c.path, r, c.status)
			continue
		}
		for _, s := range c.has {
			if !strings.Contains(body.Error, s) {
				t.Errorf("%s %s: the error %q does not mention %s", c.method, c.path, body.Error, s)
			}
		}
	}

	// A restart starts a new process.
	if r := mcpoAdminRequest(t, http.MethodPost, "/mcpo/servers/"+name+"/restart"); r.status != http.StatusAccepted ||
		string(r.body) != `{"restarted":"`+id+`"}`+"\n" {
		t.Fatalf("POST /mcpo/servers/%s/restart: %s", name, r)
	}
	restarted := mcpoAdminWait(t, id, "ready after a restart", func(s mcpoAdminServer) bool {
		return s.State == "ready" && s.Restarts == 1
	})
	if restarted.PID == fx.PID || restarted.PID == 0 {
		t.Errorf("PID %d before the restart, %d after: want a new process", fx.PID, restarted.PID)
	}
	if pid := mcpoCallPID(t, mount); pid != restarted.PID {
		t.Errorf("after the restart the admin API says PID %d, the fixture %d", restarted.PID, pid)
	}
	if running(fx.PID) {
		t.Errorf("the process %d the restart replaced still runs", fx.PID)
	}
	mcpoScrapeMetrics(t,
		`caddy_mcpo_server_restarts_total`+labels+`} 1`,
		`caddy_mcpo_server_up`+labels+`} 1`,
		`caddy_mcpo_calls_total{face="rest",outcome="ok",server="`+name+`",tool="pid"} 2`,
	)

	// A refresh after the server added a tool: the tool is counted and served.
	if r := do(t, http.MethodPost, mount+"/register_tool", `{"name":"late_tool"}`); r.status != http.StatusOK {
		t.Fatalf("POST %s/register_tool: %s", mount, r)
	}
	if r := mcpoAdminRequest(t, http.MethodPost, "/mcpo/servers/"+id+"/refresh"); r.status != http.StatusAccepted ||
		string(r.body) != `{"refreshed":"`+id+`"}`+"\n" {
		t.Fatalf("POST /mcpo/servers/%s/refresh: %s", id, r)
	}
	mcpoAdminWait(t, id, fmt.Sprintf("listing %d tools", tools+1), func(s mcpoAdminServer) bool { return s.Tools == tools+1 })
	if r := do(t, http.MethodPost, mount+"/late_tool", ""); r.status != http.StatusOK || string(r.body) != `"late_tool"` {
		t.Errorf("POST %s/late_tool: %s", mount, r)
	}
	mcpoScrapeMetrics(t,
		`caddy_mcpo_server_tools`+labels+`} `+strconv.Itoa(tools+1),
		`caddy_mcpo_calls_total{face="rest",outcome="ok",server="`+name+`",tool="late_tool"} 1`,
		`caddy_mcpo_calls_total{face="rest",outcome="ok",server="`+name+`",tool="register_tool"} 1`,
	)
}

func TestMetricsCountersSurviveAReload(t *testing.T) {
	name := fmt.Sprintf("reloadfx%d", mcpoRuns.Add(1))
	site := func(extra string) string {
		return fmt.Sprintf(`:%d {
	mcpo /%s {
		%s
	}
	%s
}
`, httpPort, name, fixtureCommand(fixture.Options{}), extra)
	}
	startCaddy(t, site(""))
	waitReady(t, "/"+name+"/openapi.json")
	if r := do(t, http.MethodPost, "/"+name+"/add", `{"a":1,"b":2}`); r.status != http.StatusOK {
		t.Fatalf("POST /%s/add: %s", name, r)
	}
	servers := mcpoAdminServers(t)
	if len(servers) != 1 {
		t.Fatalf("GET /mcpo/servers: %+v", servers)
	}
	before := servers[0]
	mcpoScrapeMetrics(t, `caddy_mcpo_calls_total{face="rest",outcome="ok",server="`+name+`",tool="add"} 1`)

	// The new configuration has a registry of its own; the counters and the
	// unchanged server carry over.
	startCaddy(t, site(`respond /elsewhere "not a tool" 200`))
	if r := do(t, http.MethodPost, "/"+name+"/add", `{"a":1,"b":2}`); r.status != http.StatusOK {
		t.Fatalf("POST /%s/add after the reload: %s", name, r)
	}
	after := mcpoAdminServers(t)
	if len(after) != 1 || after[0].ID != before.ID || after[0].PID != before.PID {
		t.Errorf("the reload replaced the server: before %+v, after %+v", before, after)
	}
	mcpoScrapeMetrics(t,
		`caddy_mcpo_calls_total{face="rest",outcome="ok",server="`+name+`",tool="add"} 2`,
		`caddy_mcpo_call_duration_seconds_count{face="rest",server="`+name+`",tool="add"} 2`,
		`caddy_mcpo_server_up{id="`+before.ID+`",server="`+name+`"} 1`,
	)
}

func TestMetricsDoNotLabelCallsWithToolNamesFromTheURL(t *testing.T) {
	// Before a server ever listed its tools, any path below it could be a
	// tool: such calls are counted, but without the name a client made up.
	name := fmt.Sprintf("brokenfx%d", mcpoRuns.Add(1))
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /%s {
		command /nonexistent/mcp-server
	}
}
`, httpPort, name))
	if r := do(t, http.MethodPost, "/"+name+"/made_up_by_a_client", `{}`); r.status != http.StatusServiceUnavailable {
		t.Fatalf("POST /%s/made_up_by_a_client: %s, want 503", name, r)
	}
	servers := mcpoAdminServers(t)
	if len(servers) != 1 || servers[0].State == "ready" {
		t.Fatalf("GET /mcpo/servers: %+v", servers)
	}
	mcpoScrapeMetrics(t,
		`caddy_mcpo_calls_total{face="rest",outcome="unavailable",server="`+name+`",tool=""} 1`,
		`caddy_mcpo_server_up{id="`+servers[0].ID+`",server="`+name+`"} 0`,
		`caddy_mcpo_server_state{id="`+servers[0].ID+`",server="`+name+`",state="ready"} 0`,
	)
	mcpoNoMetricLineHas(t, "made_up_by_a_client")
}

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// Lifecycle: servers that crash, fail to start, hang, lose their session or
// change their tools; clients that go away; reloads under load; and stops
// that leave nothing behind. Lines starting "measured:" in the verbose
// output are the figures quoted in the project's notes.

// healthReport is the body of GET <mount>/health.
type healthReport struct {
	Status  string         `json:"status"`
	Servers []serverHealth `json:"servers"`
}

type serverHealth struct {
	Name      string     `json:"name"`
	State     string     `json:"state"`
	Endpoint  string     `json:"endpoint"`
	Protocol  string     `json:"protocol"`
	Tools     int        `json:"tools"`
	InFlight  int        `json:"in_flight"`
	Restarts  int        `json:"restarts"`
	Failures  int        `json:"failures"`
	PID       int        `json:"pid"`
	Since     time.Time  `json:"since"`
	RetryAt   *time.Time `json:"retry_at"`
	LastError string     `json:"last_error"`
	Authorize string     `json:"authorize"`
	// Sessions and MaxSessions count the sessions of a server with one per
	// caller; Sessions is nil for a shared server.
	Sessions    *int `json:"sessions"`
	MaxSessions int  `json:"max_sessions"`
}

// getHealth fetches and decodes a mount's health report.
func getHealth(t *testing.T, mount string) (int, healthReport) {
	t.Helper()
	r := do(t, http.MethodGet, mount+"/health", "")
	var h healthReport
	if err := json.Unmarshal(r.body, &h); err != nil {
		t.Fatalf("GET %s/health: %s: %v", mount, r, err)
	}
	return r.status, h
}

// serverOf returns one server's entry in a mount's health report.
func serverOf(t *testing.T, mount, name string) serverHealth {
	t.Helper()
	_, h := getHealth(t, mount)
	for _, s := range h.Servers {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("%s/health has no server %q: %+v", mount, name, h)
	return serverHealth{}
}

// eventually polls cond until it holds, and fails the test if it does not
// within limit.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not so after %s", what, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testFixture is fixtureCommand for a server of this test alone: the extra
// variable keeps it from sharing a pooled process with another test's
// identical server.
func testFixture(t *testing.T, opts fixture.Options) string {
	return fixtureCommand(opts) + fmt.Sprintf("\t\tenv TEST_NAME %s\n", strconv.Quote(t.Name()))
}

// result is an answer, or the error that stood in its way.
type result struct {
	response
	err error
}

func (r result) String() string {
	if r.err != nil {
		return r.err.Error()
	}
	return r.response.String()
}

// sendAsync sends a request from a goroutine; its answer arrives on the
// channel.
func sendAsync(ctx context.Context, method, path, body string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		r, err := send(ctx, method, path, body)
		ch <- result{r, err}
	}()
	return ch
}

// await receives an answer from sendAsync, within waitLimit.
func await(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitLimit):
		t.Fatalf("no answer within %s", waitLimit)
		return result{}
	}
}

// jsonOf decodes a response body.
func jsonOf(t *testing.T, r response) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("%s: %v", r, err)
	}
	return v
}

func TestKillingTheServerMidCallAnswers502AndTheNextCallSucceeds(t *testing.T) {
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /fx {
		%s
		timeout 45s
	}
}
`, httpPort, testFixture(t, fixture.Options{})))
	waitReady(t, "/fx/openapi.json")
	status, h := getHealth(t, "/fx")
	if status != http.StatusOK || h.Status != "ready" || len(h.Servers) != 1 {
		t.Fatalf("health of a ready server: %d %+v", status, h)
	}
	before := h.Servers[0]
	if before.Name != "fx" || before.State != "ready" || before.Tools != len(fixture.ToolNames(fixture.Options{})) ||
		before.Protocol == "" || before.PID == 0 || before.Restarts != 0 || before.InFlight != 0 {
		t.Errorf("health of a ready server: %+v", before)
	}

	call := sendAsync(context.Background(), http.MethodPost, "/fx/slow", `{"ms":40000}`)
	eventually(t, 10*time.Second, "the slow call is under way", func() bool { return serverOf(t, "/fx", "fx").InFlight == 1 })
	killed := time.Now()
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	r := await(t, call)
	answered := time.Since(killed)
	if r.err != nil || r.status != http.StatusBadGateway || !strings.Contains(string(r.body), `server \"fx\"`) {
		t.Errorf("the call under way when the server died: %s, want 502 naming the server", r)
	}
	// Well before the call's own 45s timeout: the bridge saw the death.
	if answered > 20*time.Second {
		t.Errorf("the call under way was answered %s after the server died", answered)
	}

	var pid string
	eventually(t, waitLimit, "a call succeeds after the crash", func() bool {
		r := do(t, http.MethodPost, "/fx/pid", `{}`)
		if r.status != http.StatusOK && r.status != http.StatusServiceUnavailable {
			t.Fatalf("POST /fx/pid after the crash: %s", r)
		}
		pid = string(r.body)
		return r.status == http.StatusOK
	})
	recovered := time.Since(killed)
	if pid == strconv.Itoa(before.PID) {
		t.Errorf("pid %s did not change", pid)
	}
	after := serverOf(t, "/fx", "fx")
	if after.State != "ready" || after.Restarts != 1 || after.PID == before.PID || after.LastError == "" {
		t.Errorf("health after the restart: %+v", after)
	}
	t.Logf("measured: a killed stdio server: the call under way answered in %s; first successful call %s after the kill",
		answered.Round(time.Millisecond), recovered.Round(time.Millisecond))
}

func TestAServerThatExitsAtStartIsRetriedWithGrowingBackoff(t *testing.T) {
	cmd, args, _ := fixture.StdioCommand(fixture.Options{})
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /mcp {
		server good {
			%s
		}
		server broken {
			command %s %s
			env %s "not JSON"
		}
	}
}
`, httpPort, testFixture(t, fixture.Options{}), cmd, strings.Join(args, " "), fixture.EnvVar))

	// Each failed start shows in health with the delay before the next.
	delays := map[int]time.Duration{}
	eventually(t, 30*time.Second, "two failed starts show in health", func() bool {
		status, h := getHealth(t, "/mcp")
		for _, s := range h.Servers {
			if s.Name != "broken" || s.State != "backoff" {
				continue
			}
			if status != http.StatusServiceUnavailable || s.RetryAt == nil || !strings.Contains(s.LastError, "exit status 2") {
				t.Fatalf("health of a server that cannot start: %d %+v", status, s)
			}
			delays[s.Failures] = s.RetryAt.Sub(s.Since)
		}
		return delays[1] > 0 && delays[2] > 0
	})
	if delays[2] <= delays[1] {
		t.Errorf("the backoff did not grow: %s after the first failure, %s after the second", delays[1], delays[2])
	}
	t.Logf("measured: backoff after failed starts: %v", delays)

	r := do(t, http.MethodPost, "/mcp/broken/add", `{"a":1,"b":2}`)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), `server \"broken\"`) {
		t.Errorf("a call to the broken server: %s, want 503 with Retry-After naming it", r)
	}
	waitReady(t, "/mcp/good/openapi.json")
	if r := do(t, http.MethodPost, "/mcp/good/add", `{"a":1,"b":2}`); r.status != 200 || string(r.body) != "3" {
		t.Errorf("a call to the good server: %s", r)
	}
	status, h := getHealth(t, "/mcp")
	if status != http.StatusServiceUnavailable || h.Status != "degraded" {
		t.Errorf("health with one server of two ready: %d %q", status, h.Status)
	}
}

func TestAToolPastItsTimeoutGets504AndIsCancelledAtTheServer(t *testing.T) {
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /mcp {
		server pertool {
			%s
			tool_timeout slow 300ms
		}
		server whole {
			%s
			timeout 300ms
		}
	}
}
`, httpPort, testFixture(t, fixture.Options{}), testFixture(t, fixture.Options{})))
	waitReady(t, "/mcp/pertool/openapi.json")
	waitReady(t, "/mcp/whole/openapi.json")
	for _, name := range []string{"pertool", "whole"} {
		t.Run(name, func(t *testing.T) {
			mount := "/mcp/" + name
			hung := sendAsync(context.Background(), http.MethodPost, mount+"/slow", `{"ms":120000}`)
			// While it hangs, the same server and the other one answer.
			for _, other := range []string{"/mcp/pertool", "/mcp/whole"} {
				if r := do(t, http.MethodPost, other+"/add", `{"a":2,"b":3}`); r.status != 200 || string(r.body) != "5" {
					t.Errorf("POST %s/add while a call hangs: %s", other, r)
				}
			}
			r := await(t, hung)
			if r.err != nil || r.status != http.StatusGatewayTimeout || !strings.Contains(string(r.body), "did not answer within 300ms") {
				t.Fatalf("a call past its timeout: %s, want 504", r)
			}
			eventually(t, 10*time.Second, "the server saw the call cancelled", func() bool {
				return string(do(t, http.MethodPost, mount+"/cancelled_calls", `{}`).body) == "1"
			})
			if n := serverOf(t, "/mcp", name).InFlight; n != 0 {
				t.Errorf("%d calls still in flight", n)
			}
		})
	}
}

func TestAClientThatGoesAwayCancelsTheCallAtTheServer(t *testing.T) {
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /fx {
		%s
	}
}
`, httpPort, testFixture(t, fixture.Options{})))
	waitReady(t, "/fx/openapi.json")
	ctx, cancel := context.WithCancel(context.Background())
	call := sendAsync(ctx, http.MethodPost, "/fx/slow", `{"ms":120000}`)
	eventually(t, 10*time.Second, "the slow call is under way", func() bool { return serverOf(t, "/fx", "fx").InFlight == 1 })
	cancel()
	if r := await(t, call); r.err == nil {
		t.Fatalf("the abandoned call got an answer: %s", r)
	}
	eventually(t, 10*time.Second, "the server saw the call cancelled", func() bool {
		return string(do(t, http.MethodPost, "/fx/cancelled_calls", `{}`).body) == "1"
	})
	eventually(t, 10*time.Second, "no call in flight", func() bool { return serverOf(t, "/fx", "fx").InFlight == 0 })
}

func TestMaxConcurrentRejectsOrQueuesCallsOverTheLimit(t *testing.T) {
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /mcp {
		server capped {
			%s
			max_concurrent 2
		}
		server queued {
			%s
			max_concurrent 1
			queue_timeout 30s
		}
	}
}
`, httpPort, testFixture(t, fixture.Options{}), testFixture(t, fixture.Options{})))
	waitReady(t, "/mcp/capped/openapi.json")
	waitReady(t, "/mcp/queued/openapi.json")

	t.Run("rejected with 429", func(t *testing.T) {
		first := sendAsync(context.Background(), http.MethodPost, "/mcp/capped/slow", `{"ms":3000}`)
		second := sendAsync(context.Background(), http.MethodPost, "/mcp/capped/slow", `{"ms":3000}`)
		eventually(t, 10*time.Second, "two calls under way", func() bool { return serverOf(t, "/mcp", "capped").InFlight == 2 })
		r := do(t, http.MethodPost, "/mcp/capped/add", `{"a":1,"b":1}`)
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), "limit") {
			t.Errorf("a third call: %s, want 429 with Retry-After", r)
		}
		for _, ch := range []<-chan result{first, second} {
			if r := await(t, ch); r.err != nil || r.status != 200 {
				t.Errorf("a call within the limit: %s", r)
			}
		}
		if r := do(t, http.MethodPost, "/mcp/capped/add", `{"a":1,"b":1}`); r.status != 200 {
			t.Errorf("a call after the others finished: %s", r)
		}
	})

	t.Run("queued", func(t *testing.T) {
		slow := sendAsync(context.Background(), http.MethodPost, "/mcp/queued/slow", `{"ms":1500}`)
		eventually(t, 10*time.Second, "one call under way", func() bool { return serverOf(t, "/mcp", "queued").InFlight == 1 })
		waiting := sendAsync(context.Background(), http.MethodPost, "/mcp/queued/add", `{"a":1,"b":1}`)
		// Run beside the slow call, add would answer within milliseconds.
		select {
		case r := <-waiting:
			t.Fatalf("the call over the limit was answered while the slot was taken: %s", r)
		case <-time.After(300 * time.Millisecond):
		}
		if r := await(t, slow); r.err != nil || r.status != 200 {
			t.Errorf("the slow call: %s", r)
		}
		if r := await(t, waiting); r.err != nil || r.status != 200 || string(r.body) != "2" {
			t.Errorf("the queued call: %s", r)
		}
	})
}

func TestReloadUnderLoadFailsNoRequestAndKeepsTheProcess(t *testing.T) {
	// A real grace period lets requests under way finish when the old
	// configuration's HTTP server stops.
	global := []string{"grace_period 20s"}
	site := func(n int) string {
		return fmt.Sprintf(`:%d {
	mcpo /fx {
		%s
	}
	respond /generation "%d"
}
`, httpPort, testFixture(t, fixture.Options{}), n)
	}
	startCaddyWith(t, global, site(0))
	waitReady(t, "/fx/openapi.json")
	pid := serverOf(t, "/fx", "fx").PID

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var (
		mu       sync.Mutex
		failures []string
		calls    int
		dropped  int // connections Caddy's old server closed unread
		wg       sync.WaitGroup
	)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil && i < 10000; i++ {
				path, body, want := "/fx/add", fmt.Sprintf(`{"a":%d,"b":%d}`, w, i), strconv.Itoa(w+i)
				if i%4 == 0 {
					path, body, want = "/fx/slow", `{"ms":200}`, `"done"`
				}
				r, err := sendOnce(context.Background(), http.MethodPost, path, body)
				mu.Lock()
				calls++
				if droppedUnread(err) {
					// Not an answer of the module: see send. Send again.
					dropped++
					mu.Unlock()
					r, err = sendOnce(context.Background(), http.MethodPost, path, body)
					mu.Lock()
				}
				if err != nil || r.status != 200 || string(r.body) != want {
					failures = append(failures, fmt.Sprintf("POST %s %s: %v %s", path, body, err, r))
				}
				mu.Unlock()
			}
		}()
	}
	for n := 1; n <= 3; n++ {
		time.Sleep(300 * time.Millisecond)
		if err := loadRaw(globalOptions(global...)+site(n), "text/caddyfile"); err != nil {
			t.Fatalf("reload %d: %v", n, err)
		}
		if r := do(t, http.MethodGet, "/generation", ""); string(r.body) != strconv.Itoa(n) {
			t.Fatalf("after reload %d the configuration serves generation %s", n, r.body)
		}
	}
	time.Sleep(300 * time.Millisecond)
	stop()
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d of %d calls failed across 3 reloads; the first: %s", len(failures), calls, failures[:min(len(failures), 5)])
	}
	if calls < 20 {
		t.Errorf("only %d calls made", calls)
	}
	if got := serverOf(t, "/fx", "fx").PID; got != pid {
		t.Errorf("the server's process changed from %d to %d across reloads that did not change it", pid, got)
	}
	t.Logf("measured: %d calls by 4 clients across 3 reloads: %d failed, %d connections closed unread by Caddy's previous server and sent again",
		calls, len(failures), dropped)
}

func TestReloadWithAChangedCommandDrainsAndStopsTheOldProcess(t *testing.T) {
	global := []string{"grace_period 20s"}
	site := func(extra string) string {
		return fmt.Sprintf(`:%d {
	mcpo /fx {
		%s
		%s
	}
}
`, httpPort, testFixture(t, fixture.Options{}), extra)
	}
	startCaddyWith(t, global, site(""))
	waitReady(t, "/fx/openapi.json")
	old := serverOf(t, "/fx", "fx").PID

	// A call under way on the old process finishes after the reload.
	call := sendAsync(context.Background(), http.MethodPost, "/fx/slow", `{"ms":1500}`)
	eventually(t, 10*time.Second, "the slow call is under way", func() bool { return serverOf(t, "/fx", "fx").InFlight == 1 })
	if err := loadRaw(globalOptions(global...)+site("args -test.count=1"), "text/caddyfile"); err != nil {
		t.Fatal(err)
	}
	if r := await(t, call); r.err != nil || r.status != 200 || string(r.body) != `"done"` {
		t.Errorf("the call under way during the reload: %s", r)
	}
	waitReady(t, "/fx/openapi.json")
	fresh := serverOf(t, "/fx", "fx").PID
	if fresh == old || fresh == 0 {
		t.Errorf("pid after a changed command = %d, was %d", fresh, old)
	}
	eventually(t, 10*time.Second, "the old process is gone", func() bool { return !running(old) })
}

func TestStreamableHTTPSessionsTheServerForgetsAreReplaced(t *testing.T) {
	t.Run("fixture", func(t *testing.T) {
		srv := fixture.NewStreamableHTTPServer(t, fixture.Options{})
		startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /fx {
		url %s
		protocol legacy
	}
}
`, httpPort, srv.URL))
		waitReady(t, "/fx/openapi.json")
		if r := do(t, http.MethodPost, "/fx/add", `{"a":1,"b":2}`); r.status != 200 || string(r.body) != "3" {
			t.Fatalf("before the server forgot the session: %s", r)
		}
		srv.DropSessions()
		// The very next call succeeds: the bridge starts a new session and
		// calls again.
		if r := do(t, http.MethodPost, "/fx/add", `{"a":2,"b":2}`); r.status != 200 || string(r.body) != "4" {
			t.Errorf("the first call after the server forgot the session: %s", r)
		}
		if s := serverOf(t, "/fx", "fx"); s.State != "ready" || s.Restarts != 1 {
			t.Errorf("health after the session was replaced: %+v", s)
		}
	})
	t.Run("server-everything restarted", func(t *testing.T) {
		port := freePort()
		kill := startEverythingHTTPOn(t, "streamableHttp", port)
		startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /everything {
		url http://127.0.0.1:%d/mcp
		protocol legacy
	}
}
`, httpPort, port))
		waitReady(t, "/everything/openapi.json")
		echo := func() response {
			return do(t, http.MethodPost, "/everything/echo", `{"message":"hi"}`)
		}
		if r := echo(); r.status != 200 {
			t.Fatalf("before the restart: %s", r)
		}
		kill()
		startEverythingHTTPOn(t, "streamableHttp", port)
		// The restarted server knows no session. The bridge may notice the
		// lost connection first (503 while it reconnects) or on the call
		// (a new session, transparently); either way calls succeed again
		// without a restart of Caddy.
		eventually(t, waitLimit, "a call succeeds after the server restarted", func() bool {
			r := echo()
			if r.status != 200 && (r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "") {
				t.Fatalf("a call after the server restarted: %s", r)
			}
			return r.status == 200 && string(r.body) == `"Echo: hi"`
		})
	})
}

func TestListChangedUpdatesTheDocumentAndRoutes(t *testing.T) {
	stdio := testFixture(t, fixture.Options{})
	httpURL := fixture.NewStreamableHTTP(t, fixture.Options{})
	for _, tc := range []struct{ name, upstream string }{
		{"stdio", stdio},
		{"streamable-http-legacy", "url " + httpURL + "\n\t\tprotocol legacy"},
		{"streamable-http-modern", "url " + fixture.NewStreamableHTTP(t, fixture.Options{}) + "\n\t\tprotocol modern"},
		{"sse", "url " + fixture.NewSSE(t, fixture.Options{}) + "\n\t\ttransport sse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /fx {
		%s
	}
}
`, httpPort, tc.upstream))
			waitReady(t, "/fx/openapi.json")
			added := "added_" + strings.ReplaceAll(tc.name, "-", "_")
			if r := do(t, http.MethodPost, "/fx/"+added, `{}`); r.status != http.StatusNotFound {
				t.Fatalf("POST /fx/%s before it exists: %s", added, r)
			}
			if r := do(t, http.MethodPost, "/fx/register_tool", fmt.Sprintf(`{"name":%q}`, added)); r.status != 200 {
				t.Fatalf("register_tool: %s", r)
			}
			eventually(t, 10*time.Second, "the document lists the new tool", func() bool {
				return bytes.Contains(do(t, http.MethodGet, "/fx/openapi.json", "").body, []byte(`"/`+added+`"`))
			})
			if r := do(t, http.MethodPost, "/fx/"+added, `{}`); r.status != 200 || jsonOf(t, r) != added {
				t.Errorf("POST /fx/%s: %s", added, r)
			}
			if s := serverOf(t, "/fx", "fx"); s.Restarts != 0 || s.Tools != len(fixture.ToolNames(fixture.Options{}))+1 {
				t.Errorf("health after the tool list changed: %+v", s)
			}
		})
	}
}

func TestArgumentsAndResultsAreLoggedOnlyAtDebugAndCapped(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "caddy.log")
	startCaddyWith(t, []string{fmt.Sprintf("log {\n\t\toutput file %s\n\t\tformat json\n\t\tlevel DEBUG\n\t}", logFile)},
		fmt.Sprintf(`:%d {
	mcpo /fx {
		%s
	}
}
`, httpPort, testFixture(t, fixture.Options{})))
	waitReady(t, "/fx/openapi.json")
	const marker = "argument-marker-"
	long := marker + strings.Repeat("x", 5000)
	if r := do(t, http.MethodPost, "/fx/echo", fmt.Sprintf(`{"message":%q}`, long)); r.status != 200 {
		t.Fatalf("POST /fx/echo: %s", r)
	}
	if r := do(t, http.MethodPost, "/fx/stderr", `{"message":"stderr-marker"}`); r.status != 200 {
		t.Fatalf("POST /fx/stderr: %s", r)
	}
	var logged, stderr bool
	eventually(t, 10*time.Second, "the call and the server's stderr are logged", func() bool {
		b, err := os.ReadFile(logFile)
		if err != nil {
			t.Fatal(err)
		}
		for line := range bytes.Lines(b) {
			var e map[string]any
			if json.Unmarshal(line, &e) != nil {
				continue
			}
			if bytes.Contains(line, []byte(marker)) {
				logged = true
				if e["level"] != "debug" {
					t.Fatalf("arguments logged at %v: %.200s", e["level"], line)
				}
				for _, k := range []string{"arguments", "result"} {
					if v, _ := e[k].(string); len(v) > 1100 {
						t.Errorf("%s logged in full (%d bytes)", k, len(v))
					}
				}
			}
			if bytes.Contains(line, []byte("fixture stderr: stderr-marker")) {
				stderr = true
				if e["server"] != "fx" {
					t.Errorf("stderr logged without the server's name: %s", line)
				}
			}
		}
		return logged && stderr
	})
}

func TestStopLeavesNoProcessEvenBehindWrappers(t *testing.T) {
	// A wrapper that outlives its server and ignores SIGTERM (inherited by
	// its children) must be killed with its whole process group.
	cmd, args, env := fixture.StdioCommand(fixture.Options{})
	stubborn := fmt.Sprintf(`command /bin/sh -c "trap '' TERM; %s %s; sleep 600"`, cmd, strings.Join(args, " "))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		stubborn += fmt.Sprintf("\n\t\t\tenv %s %s", k, strconv.Quote(v))
	}
	servers := fmt.Sprintf(`server stubborn {
			%s
			stop_timeout 200ms
			kill_timeout 300ms
		}`, stubborn)
	names := []string{"stubborn"}
	// npx runs the real server as a grandchild: npm exec, then sh, then node.
	if dir := os.Getenv("MCPO_TEST_PEERS"); dir != "" {
		servers += fmt.Sprintf(`
		server npx {
			command npx --no-install @modelcontextprotocol/server-everything stdio
			dir %s
		}`, dir)
		names = append(names, "npx")
	}
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /mcp {
		%s
	}
}
`, httpPort, servers))
	var roots []int
	eventually(t, waitLimit, "every server is ready", func() bool {
		status, h := getHealth(t, "/mcp")
		roots = roots[:0]
		for _, s := range h.Servers {
			roots = append(roots, s.PID)
		}
		return status == http.StatusOK
	})
	var tree []int
	for _, pid := range roots {
		tree = append(tree, pid)
		tree = append(tree, descendantPIDs(pid)...)
	}
	if min := len(names) * 2; len(tree) < min {
		t.Fatalf("the servers' process trees hold %d processes, want at least %d: %v", len(tree), min, tree)
	}
	groups := map[int]bool{}
	for _, pid := range tree {
		groups[processGroup(pid)] = true
	}

	stopped := time.Now()
	startCaddy(t, fmt.Sprintf(":%d {\n\trespond \"stopped\"\n}\n", httpPort))
	eventually(t, 20*time.Second, "every process of the servers is gone", func() bool {
		return !slices.ContainsFunc(tree, running)
	})
	t.Logf("measured: %d processes in %d groups gone %s after the configuration was unloaded",
		len(tree), len(groups), time.Since(stopped).Round(time.Millisecond))
	for g := range groups {
		if left := inGroup(g); len(left) > 0 {
			t.Errorf("processes left in group %d: %v", g, left)
		}
	}
}

func TestHundredReloadsChangingAServerLeaveNothingBehind(t *testing.T) {
	site := func(n int) string {
		return globalOptions() + fmt.Sprintf(`:%d {
	mcpo /fx {
		%s
		env GENERATION %d
	}
}
`, httpPort, testFixture(t, fixture.Options{}), n)
	}
	startCaddy(t, fmt.Sprintf(":%d {\n\trespond \"idle\"\n}\n", httpPort))
	before := ourGoroutines()
	peak := 0
	for n := range 100 {
		if err := loadRaw(site(n), "text/caddyfile"); err != nil {
			t.Fatalf("reload %d: %v", n, err)
		}
		if n%10 == 9 { // some servers get to run before they are replaced
			waitReady(t, "/fx/openapi.json")
			peak = max(peak, ourGoroutines())
		}
	}
	if peak <= before {
		t.Fatalf("%d goroutines of the module while servers run, %d before: the count misses them", peak, before)
	}
	if err := loadRaw(globalOptions()+fmt.Sprintf(":%d {\n\trespond \"idle\"\n}\n", httpPort), "text/caddyfile"); err != nil {
		t.Fatal(err)
	}
	var left []string
	var stacks int
	eventually(t, 30*time.Second, "no process or goroutine of the servers is left", func() bool {
		left = descendants(os.Getpid())
		stacks = ourGoroutines()
		return len(left) == 0 && stacks <= before
	})
	t.Logf("measured: after 100 reloads and unloading: %d processes, %d goroutines of the module (%d before, up to %d while servers ran)",
		len(left), stacks, before, peak)
}

// ourGoroutines counts the goroutines running the module's code or
// mcp-go's client.
func ourGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/caddy-mcpo/caddy-mcpo.") ||
			strings.Contains(g, "github.com/caddy-mcpo/caddy-mcpo/bridge") ||
			strings.Contains(g, "github.com/mark3labs/mcp-go/client") {
			count++
		}
	}
	return count
}

func TestReloadWithTwentyUnchangedServersRestartsNone(t *testing.T) {
	var servers strings.Builder
	for i := range 20 {
		fmt.Fprintf(&servers, "\t\tserver s%02d {\n\t\t\t%s\t\t}\n", i, testFixture(t, fixture.Options{}))
	}
	site := func(n int) string {
		return fmt.Sprintf(`:%d {
	mcpo /mcp {
%s	}
	respond /generation "%d"
}
`, httpPort, servers.String(), n)
	}
	startCaddy(t, site(0))
	var pids map[string]int
	readPIDs := func() map[string]int {
		_, h := getHealth(t, "/mcp")
		m := map[string]int{}
		for _, s := range h.Servers {
			if s.State == "ready" {
				m[s.Name] = s.PID
			}
		}
		return m
	}
	eventually(t, 2*waitLimit, "20 servers are ready", func() bool {
		pids = readPIDs()
		return len(pids) == 20
	})
	var took []time.Duration
	for n := 1; n <= 5; n++ {
		start := time.Now()
		if err := loadRaw(globalOptions()+site(n), "text/caddyfile"); err != nil {
			t.Fatalf("reload %d: %v", n, err)
		}
		took = append(took, time.Since(start))
		if r := do(t, http.MethodGet, "/generation", ""); string(r.body) != strconv.Itoa(n) {
			t.Fatalf("after reload %d the configuration serves generation %s", n, r.body)
		}
		if got := readPIDs(); !maps.Equal(got, pids) {
			t.Fatalf("reload %d changed the servers' processes: %v, were %v", n, got, pids)
		}
	}
	slices.Sort(took)
	t.Logf("measured: caddy reload with 20 unchanged stdio servers: median %s (min %s, max %s) over %d reloads; 0 processes restarted",
		took[len(took)/2].Round(time.Microsecond), took[0].Round(time.Microsecond), took[len(took)-1].Round(time.Microsecond), len(took))
}

// descendantPIDs lists the live processes below pid.
func descendantPIDs(pid int) []int {
	var out []int
	for _, p := range descendants(pid) {
		n, _ := strconv.Atoi(p[:strings.IndexByte(p, '(')])
		out = append(out, n)
	}
	return out
}

// processGroup returns a process's group ID, or 0 when it is gone.
func processGroup(pid int) int {
	f := procStat(pid)
	if len(f) < 3 {
		return 0
	}
	g, _ := strconv.Atoi(f[2])
	return g
}

// inGroup lists the live processes of a process group.
func inGroup(pgid int) []int {
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := procStat(pid); len(f) >= 3 && f[0] != "Z" && f[0] != "X" && f[2] == strconv.Itoa(pgid) {
			out = append(out, pid)
		}
	}
	return out
}

// procStat returns the fields of /proc/<pid>/stat after the command name:
// state, ppid, pgrp, and so on.
func procStat(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	return strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
}

// raceEnabled reports a test binary built with -race.
var raceEnabled bool

// buildCaddy builds ./cmd/caddy, with -race when the tests run with it (so
// the build reuses their compiled packages), and returns the binary's path.
func buildCaddy(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "caddy")
	args := []string{"build", "-o", bin}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "./cmd/caddy")...)
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/caddy: %v\n%s", err, out)
	}
	return bin
}

// binaryGlobalOptions starts a Caddyfile for the caddy binary, serving
// HTTP on port without an admin endpoint; extra lines join the block.
func binaryGlobalOptions(port int, extra ...string) string {
	lines := append([]string{
		"admin off",
		fmt.Sprintf("http_port %d", port),
		fmt.Sprintf("https_port %d", freePort()),
		"auto_https off",
		"skip_install_trust",
	}, extra...)
	return "{\n\t" + strings.Join(lines, "\n\t") + "\n}\n"
}

// caddyProcess is the caddy binary running a Caddyfile.
type caddyProcess struct {
	cmd    *exec.Cmd
	exited chan error
	logs   bytes.Buffer
}

// runCaddy runs bin on a Caddyfile. Its output is logged if the test
// fails; it is killed at the test's end if still running.
func runCaddy(t *testing.T, bin, caddyfile string) *caddyProcess {
	t.Helper()
	file := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(file, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &caddyProcess{exited: make(chan error, 1)}
	p.cmd = exec.Command(bin, "run", "--config", file, "--adapter", "caddyfile")
	p.cmd.Stdout, p.cmd.Stderr = &p.logs, &p.logs
	p.cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		p.exited <- p.cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("caddy's output:\n%s", p.logs.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits for caddy to exit, returning how it
// exited; the test fails if it does not within waitLimit.
func (p *caddyProcess) stop(t *testing.T) error {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.exited:
		return err
	case <-time.After(waitLimit):
		t.Fatal("caddy did not exit after SIGTERM")
		return nil
	}
}

func TestCaddyStoppedBySignalLeavesNoProcess(t *testing.T) {
	bin := buildCaddy(t)
	port := freePort()
	cmd, args, env := fixture.StdioCommand(fixture.Options{})
	var stubbornEnv strings.Builder
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&stubbornEnv, "\t\t\tenv %s %s\n", k, strconv.Quote(v))
	}
	config := binaryGlobalOptions(port) + fmt.Sprintf(`:%d {
	mcpo /mcp {
		server fx {
			%s
		}
		server stubborn {
			command /bin/sh -c "trap '' TERM; %s %s; sleep 600"
%s			stop_timeout 200ms
			kill_timeout 300ms
		}
	}
}
`, port, testFixture(t, fixture.Options{}), cmd, strings.Join(args, " "), stubbornEnv.String())
	caddy := runCaddy(t, bin, config)

	// The fixture answers through the real binary.
	healthURL := fmt.Sprintf("http://localhost:%d/mcp/health", port)
	var h healthReport
	eventually(t, waitLimit, "caddy serves every server ready", func() bool {
		resp, err := client.Get(healthURL)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&h) == nil && resp.StatusCode == http.StatusOK
	})
	var tree []int
	for _, s := range h.Servers {
		tree = append(append(tree, s.PID), descendantPIDs(s.PID)...)
	}
	if len(tree) < 3 { // fx; sh and its fixture child
		t.Fatalf("the servers' process trees: %v", tree)
	}

	signalled := time.Now()
	if err := caddy.stop(t); err != nil {
		t.Errorf("caddy exited with %v after SIGTERM", err)
	}
	took := time.Since(signalled)
	// Caddy waited for its servers to stop: nothing is left even a moment
	// after it exits.
	if left := slices.DeleteFunc(slices.Clone(tree), func(pid int) bool { return !running(pid) }); len(left) > 0 {
		time.Sleep(time.Second)
		left = slices.DeleteFunc(left, func(pid int) bool { return !running(pid) })
		if len(left) > 0 {
			t.Errorf("processes left after caddy exited: %v", left)
		}
	}
	t.Logf("measured: caddy exited %s after SIGTERM; 0 of %d server processes left", took.Round(time.Millisecond), len(tree))
}

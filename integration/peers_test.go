package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// everythingScript is server-everything's entry point among the peers.
func everythingScript(t *testing.T) string {
	t.Helper()
	return peerScript(t, "server-everything")
}

// startEverythingHTTP runs server-everything in one of its HTTP modes on a
// free loopback port until the test ends, and returns the port.
func startEverythingHTTP(t *testing.T, mode string) int {
	t.Helper()
	port := freePort()
	startEverythingHTTPOn(t, mode, port)
	return port
}

// startEverythingHTTPOn runs server-everything in one of its HTTP modes on
// port, once it listens there, and returns a function that kills it; the
// test's end kills it too.
func startEverythingHTTPOn(t *testing.T, mode string, port int) (kill func()) {
	t.Helper()
	cmd := exec.Command("node", everythingScript(t), mode)
	cmd.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	kill = func() {
		once.Do(func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
		})
	}
	t.Cleanup(kill)
	waitListening(t, port, "server-everything "+mode)
	return kill
}

// waitListening waits, up to waitLimit, until something accepts
// connections on a loopback port.
func waitListening(t *testing.T, port int, what string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not start listening on port %d", what, port)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// everythingCalls are server-everything's tools that need no human input,
// with what the bridge must answer. check gets the decoded body.
var everythingCalls = []struct {
	tool, body string
	check      func(t *testing.T, v any)
}{
	{"echo", `{"message":"hi"}`, equals(`"Echo: hi"`)},
	{"get-sum", `{"a":2,"b":40}`, equals(`"The sum of 2 and 40 is 42."`)},
	{"get-tiny-image", ``, func(t *testing.T, v any) {
		list, _ := v.([]any)
		if !slices.ContainsFunc(list, func(x any) bool {
			s, _ := x.(string)
			return strings.HasPrefix(s, "data:image/png;base64,iVBOR")
		}) {
			t.Errorf("no PNG data: URI in %v", v)
		}
	}},
	{"get-structured-content", `{"location":"Chicago"}`, func(t *testing.T, v any) {
		m, _ := v.(map[string]any)
		for _, k := range []string{"temperature", "conditions", "humidity"} {
			if _, ok := m[k]; !ok {
				t.Errorf("structured content %v lacks %s", v, k)
			}
		}
	}},
	{"get-annotated-message", `{"messageType":"success"}`, equals(`"Operation completed successfully"`)},
	{"get-resource-links", `{"count":2}`, func(t *testing.T, v any) {
		list, _ := v.([]any)
		links := 0
		for _, x := range list {
			if m, ok := x.(map[string]any); ok && m["type"] == "resource_link" && strings.HasPrefix(fmt.Sprint(m["uri"]), "demo://") {
				links++
			}
		}
		if links != 2 {
			t.Errorf("%d resource links in %v, want 2", links, v)
		}
	}},
	{"get-resource-reference", `{"resourceType":"Text","resourceId":1}`, func(t *testing.T, v any) {
		list, _ := v.([]any)
		if !slices.ContainsFunc(list, func(x any) bool {
			m, ok := x.(map[string]any)
			return ok && m["type"] == "resource" && m["uri"] == "demo://resource/dynamic/text/1" && m["text"] != nil
		}) {
			t.Errorf("no embedded text resource in %v", v)
		}
	}},
	{"gzip-file-as-resource", `{"data":"data:text/plain;base64,aGVsbG8gd29ybGQ=","name":"h.gz","outputType":"resource"}`, func(t *testing.T, v any) {
		m, _ := v.(map[string]any)
		if m["type"] != "resource" || !strings.HasPrefix(fmt.Sprint(m["data"]), "data:application/gzip;base64,H4sI") {
			t.Errorf("gzip result = %v", v)
		}
	}},
	{"trigger-long-running-operation", `{"duration":1,"steps":2}`, equals(`"Long running operation completed. Duration: 1 seconds, Steps: 2."`)},
	{"toggle-subscriber-updates", ``, isString},
	{"toggle-simulated-logging", ``, isString},
	{"get-env", ``, func(t *testing.T, v any) {
		env, _ := v.(map[string]any)
		if env["PATH"] == nil || strings.Contains(fmt.Sprint(env), secretValue) {
			t.Errorf("get-env: the environment lacks PATH or holds the secret: %.300v", v)
		}
	}},
}

// secretValue is in the test process's environment, and must not reach
// servers that were not given it.
const secretValue = "caddy-mcpo-test-secret"

func equals(want string) func(*testing.T, any) {
	return func(t *testing.T, v any) {
		t.Helper()
		got, _ := json.Marshal(v)
		if !jsonEqual(got, []byte(want)) {
			t.Errorf("result = %s, want %s", got, want)
		}
	}
}

func isString(t *testing.T, v any) {
	t.Helper()
	if s, ok := v.(string); !ok || s == "" {
		t.Errorf("result = %v, want a non-empty string", v)
	}
}

func TestServerEverythingOverEveryTransport(t *testing.T) {
	script := everythingScript(t)
	everythingHTTP := startEverythingHTTP(t, "streamableHttp")
	everythingSSE := startEverythingHTTP(t, "sse")
	// Set after the HTTP servers started: only stdio servers are Caddy's to
	// isolate.
	t.Setenv("MCPO_INTEGRATION_SECRET", secretValue)
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /stdio {
		command node %s stdio
	}
	mcpo /http {
		url http://127.0.0.1:%d/mcp
	}
	mcpo /sse {
		url http://127.0.0.1:%d/sse
		transport sse
	}
}
`, httpPort, script, everythingHTTP, everythingSSE))

	for _, name := range []string{"stdio", "http", "sse"} {
		t.Run(name, func(t *testing.T) {
			doc := loadDoc(t, "everything-"+name, waitReady(t, "/"+name+"/openapi.json"),
				fixture.InputSchemas(fixture.Options{Captured: "everything"}))
			paths := toolPaths(t, doc)
			// A task-only tool is listed, as running as a task (tasks_test.go
			// calls it).
			if path, ok := paths["simulate-research-query"]; !ok {
				t.Error("the task-only tool is not documented")
			} else if op := doc.Paths.Find(path).Post; op.Extensions["x-mcp-task-support"] != "required" || op.Responses.Status(http.StatusAccepted) == nil {
				t.Errorf("the task-only tool's operation: x-mcp-task-support %v, 202 %v", op.Extensions["x-mcp-task-support"], op.Responses.Status(http.StatusAccepted))
			}
			for _, c := range everythingCalls {
				path, ok := paths[c.tool]
				if !ok {
					t.Errorf("no operation for %s", c.tool)
					continue
				}
				r := do(t, http.MethodPost, serverURL(t, doc)+path, c.body)
				if r.status != http.StatusOK {
					t.Errorf("POST %s: %s", path, r)
					continue
				}
				var v any
				if err := json.Unmarshal(r.body, &v); err != nil {
					t.Errorf("POST %s: %v in %s", path, err, r.body)
					continue
				}
				t.Run(c.tool, func(t *testing.T) { c.check(t, v) })
			}
			// Bad arguments are refused before they reach the server, with
			// every problem named.
			r := do(t, http.MethodPost, "/"+name+"/get-sum", `{"a":"two"}`)
			if r.status != http.StatusUnprocessableEntity || !strings.Contains(string(r.body), `"path":"/a"`) ||
				!strings.Contains(string(r.body), "missing property 'b'") {
				t.Errorf("get-sum with a bad argument: %s", r)
			}
		})
	}
}

func TestStdioEnvironmentIsolation(t *testing.T) {
	script := everythingScript(t)
	t.Setenv("MCPO_INTEGRATION_SECRET", secretValue)
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /plain {
		command node %s stdio
	}
	mcpo /given {
		command node %s stdio
		inherit_env MCPO_INTEGRATION_SECRET
		env RENAMED {env.MCPO_INTEGRATION_SECRET}
	}
}
`, httpPort, script, script))
	waitReady(t, "/plain/openapi.json")
	waitReady(t, "/given/openapi.json")
	env := func(path string) map[string]string {
		r := do(t, http.MethodPost, path, ``)
		var m map[string]string
		if r.status != 200 || json.Unmarshal(r.body, &m) != nil {
			t.Fatalf("POST %s: %s", path, r)
		}
		return m
	}
	plain := env("/plain/get-env")
	if _, ok := plain["MCPO_INTEGRATION_SECRET"]; ok {
		t.Error("a variable of Caddy's environment reached a server not given it")
	}
	if plain["HOME"] == "" || plain["PATH"] == "" {
		t.Errorf("HOME or PATH missing from the server's environment: %v", plain)
	}
	given := env("/given/get-env")
	if given["MCPO_INTEGRATION_SECRET"] != secretValue || given["RENAMED"] != secretValue {
		t.Errorf("inherit_env or an {env.*} placeholder did not reach the server: %v", given)
	}
}

// startTimeServer serves mcp-server-time from PyPI at mount.
func startTimeServer(t *testing.T, mount string) {
	t.Helper()
	pkg := os.Getenv("MCPO_TIME_SERVER")
	if pkg == "" {
		t.Fatal("MCPO_TIME_SERVER is not set (the Makefile sets it with the peers)")
	}
	// --offline: `make test` fetched it already, so no test waits on the network.
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo %s {
		command uvx --offline --from %s mcp-server-time --local-timezone=UTC
	}
}
`, httpPort, mount, pkg))
}

func TestMCPServerTimeFromPyPI(t *testing.T) {
	peers(t)
	startTimeServer(t, "/time")
	doc := loadDoc(t, "mcp-server-time", waitReady(t, "/time/openapi.json"), fixture.InputSchemas(fixture.Options{Captured: "time"}))
	paths := toolPaths(t, doc)
	if _, ok := paths["get_current_time"]; !ok {
		t.Fatalf("get_current_time is not documented: %v", paths)
	}
	r := do(t, http.MethodPost, "/time/get_current_time", `{"timezone":"UTC"}`)
	var now struct {
		Timezone string `json:"timezone"`
		Datetime string `json:"datetime"`
	}
	if r.status != 200 || json.Unmarshal(r.body, &now) != nil || now.Timezone != "UTC" {
		t.Fatalf("get_current_time: %s", r)
	}
	if ts, err := time.Parse(time.RFC3339, now.Datetime); err != nil || time.Since(ts).Abs() > time.Hour {
		t.Errorf("datetime %q is not the current time: %v", now.Datetime, err)
	}
	r = do(t, http.MethodPost, "/time/convert_time", `{"source_timezone":"UTC","time":"12:00","target_timezone":"Asia/Tokyo"}`)
	if r.status != 200 || !strings.Contains(string(r.body), "T21:00:00+09:00") {
		t.Errorf("convert_time: %s", r)
	}
	r = do(t, http.MethodPost, "/time/get_current_time", `{"timezone":"Not/AZone"}`)
	if r.status < 400 || !strings.Contains(string(r.body), "Not/AZone") {
		t.Errorf("get_current_time with an unknown zone: %s", r)
	}
}

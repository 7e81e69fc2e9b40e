package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// Liveness and crash loops: a server that stops answering pings is killed
// and restarted, and one that fails too often stays failed until an
// administrator restarts it.

func TestAStoppedServerIsRestartedAfterThePingTimeoutWhileAnotherKeepsAnswering(t *testing.T) {
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /live {
		server frozen {
			%s
			ping_interval 200ms
			ping_timeout 500ms
			timeout 45s
		}
		server other {
			%s
			ping_interval 200ms
			ping_timeout 500ms
		}
	}
}
`, httpPort, testFixture(t, fixture.Options{}), testFixture(t, fixture.Options{})+"\t\t\tenv OTHER 1\n"))
	waitReady(t, "/live/frozen/openapi.json")
	waitReady(t, "/live/other/openapi.json")
	before := serverOf(t, "/live", "frozen")

	call := sendAsync(context.Background(), http.MethodPost, "/live/frozen/slow", `{"ms":40000}`)
	eventually(t, 10*time.Second, "the slow call is under way", func() bool { return serverOf(t, "/live", "frozen").InFlight == 1 })
	stopped := time.Now()
	if err := syscall.Kill(before.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(before.PID, syscall.SIGCONT) })

	// The other server answers while the frozen one hangs.
	if r := do(t, http.MethodPost, "/live/other/add", `{"a":2,"b":3}`); r.status != http.StatusOK || string(r.body) != "5" {
		t.Errorf("a call to the other server while one hangs: %s", r)
	}

	r := await(t, call)
	answered := time.Since(stopped)
	if r.err != nil || r.status != http.StatusBadGateway || !strings.Contains(string(r.body), `server \"frozen\" stopped answering pings`) {
		t.Errorf("the call under way on the stopped server: %s, want 502 saying it stopped answering pings", r)
	}
	if answered > 5*time.Second {
		t.Errorf("the call under way was answered %s after the server stopped", answered)
	}

	eventually(t, waitLimit, "the stopped server restarted", func() bool {
		s := serverOf(t, "/live", "frozen")
		return s.State == "ready" && s.Restarts == 1
	})
	recovered := time.Since(stopped)
	after := serverOf(t, "/live", "frozen")
	if after.PID == before.PID || !strings.Contains(after.LastError, "stopped answering pings") {
		t.Errorf("health after the restart: %+v; want a new process and the reason", after)
	}
	eventually(t, 5*time.Second, "the stopped process gone", func() bool { return len(procStat(before.PID)) == 0 || procStat(before.PID)[0] == "Z" })
	if r := do(t, http.MethodPost, "/live/frozen/add", `{"a":1,"b":1}`); r.status != http.StatusOK || string(r.body) != "2" {
		t.Errorf("a call after the restart: %s", r)
	}
	if s := serverOf(t, "/live", "other"); s.Restarts != 0 || s.State != "ready" {
		t.Errorf("the other server: %+v; want it never restarted", s)
	}
	mcpoScrapeMetrics(t, `caddy_mcpo_server_failures_total{id="`+mcpoIDOf(t, "frozen")+`",reason="ping_timeout",server="frozen"} 1`)
	t.Logf("measured: a stopped stdio server (ping 200ms/500ms): the call under way answered 502 in %s; ready again %s after the stop",
		answered.Round(time.Millisecond), recovered.Round(time.Millisecond))
}

func TestAServerThatExitsAtOnceGoesFailedAndStaysSoUntilTheAdminRestart(t *testing.T) {
	cmd, args, _ := fixture.StdioCommand(fixture.Options{})
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /loop {
		server good {
			%s
		}
		server crashy {
			command %s %s
			env %s "not JSON"
			env TEST_NAME %s
			max_failures 3 1m
		}
	}
}
`, httpPort, testFixture(t, fixture.Options{}), cmd, strings.Join(args, " "), fixture.EnvVar, strconv.Quote(t.Name())))

	began := time.Now()
	eventually(t, waitLimit, "the crashing server failed", func() bool { return serverOf(t, "/loop", "crashy").State == "failed" })
	failedAfter := time.Since(began)
	s := serverOf(t, "/loop", "crashy")
	if s.RetryAt != nil || !strings.Contains(s.LastError, `failed 3 times within 1m0s`) || !strings.Contains(s.LastError, "exit status 2") {
		t.Errorf("health of the failed server: %+v; want no retry, and how often and why it failed", s)
	}
	r := do(t, http.MethodPost, "/loop/crashy/add", `{"a":1,"b":2}`)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" ||
		!strings.Contains(string(r.body), `server \"crashy\" failed 3 times within 1m0s`) ||
		!strings.Contains(string(r.body), "POST /mcpo/servers/crashy/restart") {
		t.Errorf("a call to the failed server: %s, want 503 saying how often it failed and how to restart it", r)
	}
	if r := do(t, http.MethodPost, "/loop/good/add", `{"a":1,"b":2}`); r.status != http.StatusOK || string(r.body) != "3" {
		t.Errorf("a call to the good server: %s", r)
	}
	id := mcpoIDOf(t, "crashy")
	mcpoScrapeMetrics(t,
		`caddy_mcpo_server_state{id="`+id+`",server="crashy",state="failed"} 1`,
		`caddy_mcpo_server_state{id="`+id+`",server="crashy",state="backoff"} 0`,
		`caddy_mcpo_server_failures_total{id="`+id+`",reason="start",server="crashy"} 3`)

	// It stays failed past the backoff it would otherwise have had.
	time.Sleep(5 * time.Second)
	if after := serverOf(t, "/loop", "crashy"); after.State != "failed" || !after.Since.Equal(s.Since) {
		t.Fatalf("the failed server after 5 s: %+v; want still failed since %s", after, s.Since)
	}
	mcpoScrapeMetrics(t, `caddy_mcpo_server_failures_total{id="`+id+`",reason="start",server="crashy"} 3`)

	// The admin restart starts it again, and it fails three more times.
	restarted := time.Now()
	if r := mcpoAdminRequest(t, http.MethodPost, "/mcpo/servers/crashy/restart"); r.status != http.StatusAccepted {
		t.Fatalf("POST /mcpo/servers/crashy/restart: %s", r)
	}
	eventually(t, waitLimit, "the restarted server left the failed state", func() bool { return serverOf(t, "/loop", "crashy").State != "failed" })
	eventually(t, waitLimit, "the restarted server failed again", func() bool { return serverOf(t, "/loop", "crashy").State == "failed" })
	mcpoScrapeMetrics(t, `caddy_mcpo_server_failures_total{id="`+id+`",reason="start",server="crashy"} 6`)
	t.Logf("measured: a server exiting at once, max_failures 3 1m: failed %s after the start; failed again %s after the admin restart",
		failedAfter.Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
}

// mcpoIDOf returns the admin API's id of the only server named name.
func mcpoIDOf(t *testing.T, name string) string {
	t.Helper()
	for _, s := range mcpoAdminServers(t) {
		if s.Name == name {
			return s.ID
		}
	}
	t.Fatalf("no server %q in GET /mcpo/servers", name)
	return ""
}

func TestServersStoppedByTheirLimitsSayWhichAndLeaveTheOthersAlone(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("limits are Linux only")
	}
	hog := fixture.LimitHog(t)
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /limits {
		server good {
			%s
		}
		server memory {
			command %s memory
			max_failures 1
			limits {
				memory 128MiB
			}
		}
		server cpu {
			command /bin/sh -c "i=0; while [ $i -lt 100000000 ]; do i=$((i+1)); done"
			max_failures 1
			limits {
				cpu 1s
			}
		}
	}
}
`, httpPort, testFixture(t, fixture.Options{}), hog))
	waitReady(t, "/limits/good/openapi.json")
	for name, want := range map[string]string{
		"memory": "stopped by its memory limit (128 MiB)",
		"cpu":    "stopped by its cpu limit (1s)",
	} {
		eventually(t, waitLimit, name+" stopped by its limit", func() bool { return serverOf(t, "/limits", name).State == "failed" })
		if s := serverOf(t, "/limits", name); !strings.Contains(s.LastError, want) {
			t.Errorf("health of %s: %+v; want the last error to say %q", name, s, want)
		}
	}
	if r := do(t, http.MethodPost, "/limits/good/add", `{"a":2,"b":2}`); r.status != http.StatusOK || string(r.body) != "4" {
		t.Errorf("a call to the good server: %s", r)
	}
	if s := serverOf(t, "/limits", "good"); s.State != "ready" || s.Restarts != 0 {
		t.Errorf("the good server: %+v; want it ready, never restarted", s)
	}
	for _, p := range descendants(os.Getpid()) {
		if strings.Contains(p, "(hog)") {
			t.Errorf("a hog is still running: %s", p)
		}
	}
}

package integration

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// Servers started on demand (start on_demand), through Caddy.

// onDemandServers is how many servers TestOnDemandServers configures.
const onDemandServers = 100

// onDemandSite is a site serving onDemandServers fixture servers started on
// demand at /od, each stopped after idle without calls.
func onDemandSite(t *testing.T, idle time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, ":%d {\n\troute /od/* {\n\t\tmcpo /od {\n", httpPort)
	for i := range onDemandServers {
		fmt.Fprintf(&b, "\t\t\tserver s%03d {\n\t\t\t\t%s", i, testFixture(t, fixture.Options{}))
		fmt.Fprintf(&b, "\t\t\t\tstart on_demand\n\t\t\t\tidle_timeout %s\n\t\t\t}\n", idle)
	}
	b.WriteString("\t\t}\n\t}\n}\n")
	return b.String()
}

// allIdle reports every server of /od idle with its listing, and the
// mount's health ready.
func allIdle(t *testing.T) bool {
	status, h := getHealth(t, "/od")
	if status != http.StatusOK || h.Status != "ready" || len(h.Servers) != onDemandServers {
		return false
	}
	for _, s := range h.Servers {
		if s.State != "idle" || s.Tools == 0 {
			return false
		}
	}
	return true
}

func TestOnDemandServersRunNothingUntilCalledAndStopWhenIdle(t *testing.T) {
	storage := t.TempDir()
	idle := 3 * time.Second
	site := onDemandSite(t, idle)
	began := time.Now()
	startCaddyWith(t, []string{"storage file_system " + storage}, site)

	// At load, each server lists its tools once and stops.
	eventually(t, waitLimit, "every server listed and idle", func() bool { return allIdle(t) })
	t.Logf("measured: %d servers listed at load and stopped in %s", onDemandServers, time.Since(began))
	eventually(t, waitLimit, "no process after the listings", func() bool { return len(descendants(os.Getpid())) == 0 })

	// Each server is called once, ten calls at a time, and answers.
	peak := fixture.WatchDescendants(os.Getpid())
	called := time.Now()
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		slowest time.Duration
		failed  []string
	)
	sem := make(chan struct{}, 10)
	for i := range onDemandServers {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			start := time.Now()
			path := fmt.Sprintf("/od/s%03d/pid", i)
			r := do(t, http.MethodPost, path, `{}`)
			took := time.Since(start)
			mu.Lock()
			defer mu.Unlock()
			slowest = max(slowest, took)
			if _, err := strconv.Atoi(string(r.body)); r.status != http.StatusOK || err != nil {
				failed = append(failed, fmt.Sprintf("%s: %s", path, r))
			}
		})
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d calls failed: %v", len(failed), failed)
	}
	t.Logf("measured: %d first calls, 10 at a time, in %s; the slowest (waiting for its start) %s",
		onDemandServers, time.Since(called), slowest)

	// The processes go after idle_timeout.
	eventually(t, waitLimit, "the processes gone after the idle time", func() bool {
		return len(descendants(os.Getpid())) == 0
	})
	most := peak()
	t.Logf("measured: at most %d server processes at once while calling", most)
	if most == 0 || most > onDemandServers {
		t.Errorf("at most %d processes while calling each of %d servers once; want 1 to %d", most, onDemandServers, onDemandServers)
	}
	if since := time.Since(called); since < idle {
		t.Errorf("the processes were gone %s after the first call, before idle_timeout %s", since, idle)
	}
	eventually(t, waitLimit, "every server idle again", func() bool { return allIdle(t) })

	// A restart: a configuration without the servers stops them all, then
	// the same configuration, with the same storage, serves the documents
	// from storage without starting any process.
	startCaddyWith(t, []string{"storage file_system " + storage}, fmt.Sprintf(":%d {\n\trespond \"down\"\n}\n", httpPort))
	eventually(t, waitLimit, "nothing running while Caddy serves no server", func() bool {
		return len(descendants(os.Getpid())) == 0
	})
	watch := fixture.WatchDescendants(os.Getpid())
	startCaddyWith(t, []string{"storage file_system " + storage}, site)
	for i := range onDemandServers {
		r := do(t, http.MethodGet, fmt.Sprintf("/od/s%03d/openapi.json", i), "")
		if r.status != http.StatusOK || !strings.Contains(string(r.body), `"/pid"`) {
			t.Fatalf("after the restart, GET /od/s%03d/openapi.json: %d, without /pid", i, r.status)
		}
	}
	if !allIdle(t) {
		t.Errorf("after the restart, not every server is idle with its listing")
	}
	time.Sleep(500 * time.Millisecond)
	if n := watch(); n != 0 {
		t.Errorf("after the restart, %d processes ran; want none: the documents come from storage", n)
	}
}

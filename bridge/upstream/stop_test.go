//go:build unix

package upstream

import (
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// wrapperSpec is a stdio fixture behind a shell that ignores the end of
// its stdin: stopping it takes the grace period, then SIGTERM.
func wrapperSpec(name string) Spec {
	cmd, args, env := fixture.StdioCommand(fixture.Options{})
	return Spec{
		Name: name, Transport: TransportStdio, Command: "/bin/sh",
		Args: append([]string{"-c", `"$0" "$@"; sleep 30`, cmd}, args...),
		Env:  append(os.Environ(), env...),
	}
}

func TestUpstream_LogsOnceHowTheServerStopped(t *testing.T) {
	stop := StopTimeouts{Grace: 300 * time.Millisecond, Term: 500 * time.Millisecond}
	tests := []struct {
		name    string
		spec    func(t *testing.T) Spec
		state   State
		how     string
		atLeast time.Duration
	}{
		{"a server that exits when its stdin closes", func(*testing.T) Spec { return stdioSpec(fixture.Options{}) },
			StateReady, "exited after stdin closed", 0},
		{"a server that needs SIGTERM", func(*testing.T) Spec { return wrapperSpec("fx") },
			StateReady, "exited after SIGTERM", stop.Grace},
		{"a server that ignores SIGTERM", func(*testing.T) Spec { return roleSpec("fx", "stubborn") },
			StateReady, "killed with SIGKILL", stop.Grace + stop.Term},
		{"a Streamable HTTP server", func(t *testing.T) Spec {
			return Spec{Name: "fx", Transport: TransportStreamableHTTP, URL: fixture.NewStreamableHTTP(t, fixture.Options{})}
		}, StateReady, "disconnected", 0},
		{"a server that failed to start", func(*testing.T) Spec {
			return Spec{Name: "fx", Transport: TransportStdio, Command: "no-such-mcp-server", Env: []string{"PATH=/usr/bin:/bin"}}
		}, StateBackoff, "was not running", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log, logs := testLogger(t)
			u := New(tt.spec(t), Options{StartTimeout: waitLimit, Stop: stop}, log)
			u.Start()
			waitState(t, u, tt.state)
			_ = u.Close()
			_ = u.Close()
			stopped := logs.FilterMessage("MCP server stopped").All()
			if len(stopped) != 1 {
				t.Fatalf("%d lines say the server stopped, want 1", len(stopped))
			}
			e := stopped[0]
			m := e.ContextMap()
			took, _ := m["took"].(time.Duration)
			if e.Level != zapcore.InfoLevel || m["server"] != "fx" || m["how"] != tt.how || took < tt.atLeast || took > waitLimit {
				t.Errorf("logged %s %v, want how %q, took at least %s", e.Level, m, tt.how, tt.atLeast)
			}
		})
	}
}

func TestUpstream_ClosesServersInParallel(t *testing.T) {
	const n = 4
	grace := time.Second
	var ups []*Upstream
	for i := range n {
		u, _ := start(t, wrapperSpec(fmt.Sprintf("fx%d", i)), Options{Stop: StopTimeouts{Grace: grace, Term: 5 * time.Second}})
		ups = append(ups, u)
	}
	began := time.Now()
	var wg sync.WaitGroup
	for _, u := range ups {
		wg.Go(func() { _ = u.Close() })
	}
	wg.Wait()
	// Each takes the grace period: in turn, n of them would take n times
	// that.
	if took := time.Since(began); took < grace || took > 2*grace+grace/2 {
		t.Errorf("closing %d servers that each take %s took %s", n, grace, took)
	}
}

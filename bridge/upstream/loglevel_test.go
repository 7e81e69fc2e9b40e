//go:build unix

package upstream

import (
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

func TestUpstream_SetsTheSessionsLogLevelToTheMostVerboseVote(t *testing.T) {
	// Caddy's log writes info and above: the session is never set less
	// verbose than that, and goes back to it.
	core, _ := observer.New(zapcore.InfoLevel)
	u := New(stdioSpec(fixture.Options{LogLevels: true}), Options{StartTimeout: waitLimit}, zap.New(core))
	u.Start()
	t.Cleanup(func() { _ = u.Close() })
	waitState(t, u, StateReady)
	var debugLogs atomic.Int32
	defer u.Listen(func(n Notice) {
		if n.Method == "notifications/message" && n.Params["data"] == fixture.LogLevelMessage {
			debugLogs.Add(1)
		}
	})()

	// levelsSet checks what the log tool says: the levels the server's
	// process was set to, in order.
	levelsSet := func(want string) {
		t.Helper()
		if got := text(t, call(t, u, "log", `{}`)); got != "levels set: "+want {
			t.Errorf("log = %q, want levels set: %s", got, want)
		}
	}
	levelsSet("none") // nobody asked: the server keeps its own
	if n := debugLogs.Load(); n != 0 {
		t.Fatalf("%d debug messages before anyone asked", n)
	}

	for _, step := range []struct {
		name, voter, level string
		want               string
	}{
		{"a vote for debug sets debug", "a", "debug", "debug"},
		{"a less verbose vote changes nothing", "b", "error", "debug"},
		{"the debug voter leaves: back to Caddy's log's level", "a", "", "debug,info"},
		{"the last voter leaves: nothing changes", "b", "", "debug,info"},
		{"a vote less verbose than Caddy's log sends nothing", "c", "warning", "debug,info"},
		{"an unknown level is no vote", "d", "loud", "debug,info"},
		{"a vote for notice neither", "d", "notice", "debug,info"},
		{"another for debug sets debug", "e", "debug", "debug,info,debug"},
	} {
		t.Run(step.name, func(t *testing.T) {
			select {
			case <-u.SetLogLevel(step.voter, step.level):
			case <-time.After(waitLimit):
				t.Fatal("the vote did not settle")
			}
			levelsSet(step.want)
		})
	}
	if debugLogs.Load() == 0 {
		t.Error("no debug message arrived while debug was voted")
	}

	t.Run("a new session is set to the votes at once", func(t *testing.T) {
		pid := u.Status().PID
		u.Restart()
		eventually(t, "a new server process", func() bool { st := u.Status(); return st.State == StateReady && st.PID != pid })
		eventually(t, "the new session set", func() bool { return text(t, call(t, u, "log", `{}`)) == "levels set: debug" })
		<-u.SetLogLevel("e", "")
		levelsSet("debug,info")
	})
}

package caddymcpo

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
	"github.com/caddy-mcpo/caddy-mcpo/oauth"
)

func TestPool_SharesAServerUntilTheLastConfigurationReleasesIt(t *testing.T) {
	p := newTestPool(t)
	spec := fixtureSpec("fx", fixture.Options{})
	first := p.lease(spec, upstream.Options{StartTimeout: testWait})
	first.start()
	waitStatus(t, first.entry.upstream, "ready", isReady)
	pid := first.Status().PID

	second := p.lease(spec, upstream.Options{StartTimeout: testWait})
	if second.entry != first.entry || !second.adopt || first.adopt {
		t.Fatalf("the second configuration got entry %p (adopting: %v), want the running %p", second.entry, second.adopt, first.entry)
	}
	second.start()
	if err := first.release(); err != nil {
		t.Fatal(err)
	}
	p.wait()
	if st := second.Status(); st.State != upstream.StateReady || st.PID != pid {
		t.Fatalf("after the first configuration released it, the server is %s with pid %d, want ready with pid %d", st.State, st.PID, pid)
	}
	if got := len(p.snapshot()); got != 1 {
		t.Fatalf("the pool holds %d servers, want 1", got)
	}

	if err := second.release(); err != nil {
		t.Fatal(err)
	}
	p.wait()
	if st := second.Status(); st.State != upstream.StateStopped {
		t.Errorf("released by every configuration, the server is %s, want stopped", st.State)
	}
	if got := len(p.snapshot()); got != 0 {
		t.Errorf("the pool holds %d servers, want none", got)
	}
}

// A configuration that fails to load after its handlers leased the
// running servers must leave them as the running configuration set them:
// they are handed over when a configuration starts, never before.
func TestPool_HandsARunningServerOverWhenTheNewConfigurationStarts(t *testing.T) {
	p := newTestPool(t)
	// An OAuth server that is never reachable, so that it keeps logging
	// failed starts, with the logger of the configuration it belongs to.
	r := resolved{
		spec: upstream.Spec{Name: "remote", Transport: upstream.TransportStreamableHTTP, URL: "http://127.0.0.1:1/mcp", AuthID: "test"},
		opts: upstream.Options{StartTimeout: testWait},
		oauth: &oauth.Config{ServerURL: "http://127.0.0.1:1/mcp", Grant: oauth.GrantClientCredentials,
			ClientID: "id", ClientSecret: "s3cret", StoreKey: "mcpo/oauth/test"},
	}
	type configuration struct {
		owner owner
		logs  *observer.ObservedLogs
	}
	newConfiguration := func() configuration {
		core, logs := observer.New(zapcore.InfoLevel)
		return configuration{owner{log: zap.New(core), storage: &certmagic.FileStorage{Path: t.TempDir()}}, logs}
	}
	lease := func(c configuration) *lease {
		l, err := p.acquire(r, c.owner)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = l.release()
			p.wait()
		})
		return l
	}
	running, failing, next := newConfiguration(), newConfiguration(), newConfiguration()

	first := lease(running)
	first.start()
	e := first.entry
	if e.oauth == nil || e.storage.get() != running.owner.storage {
		t.Fatalf("the new server has OAuth client %v and storage %v, want its configuration's", e.oauth, e.storage.get())
	}

	// A configuration provisions, leasing the server, then fails to load.
	l := lease(failing)
	if l.entry != e {
		t.Fatal("the failing configuration got another server")
	}
	if err := l.release(); err != nil {
		t.Fatal(err)
	}
	e.restart() // a failed start now, logged by whichever configuration holds the server
	waitLogged(t, running.logs, "MCP server failed to start", running.logs.FilterMessage("MCP server failed to start").Len()+1)
	if e.storage.get() != running.owner.storage {
		t.Error("a configuration that never started took the server's storage")
	}
	if n := failing.logs.Len(); n != 0 {
		t.Errorf("a configuration that never started got the server's logs: %v", failing.logs.All())
	}

	// The next configuration starts: the server is handed over to it.
	lease(next).start()
	if e.storage.get() != next.owner.storage {
		t.Error("the configuration that started did not get the server's storage")
	}
	e.restart()
	waitLogged(t, next.logs, "MCP server failed to start", 1)
}

// waitLogged waits until logs holds n messages msg.
func waitLogged(t *testing.T, logs *observer.ObservedLogs, msg string, n int) {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for logs.FilterMessage(msg).Len() < n {
		if time.Now().After(deadline) {
			t.Fatalf("no %q logged after %s; logged: %v", msg, testWait, logs.All())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitPID waits for a process to write its pid to file.
func waitPID(t *testing.T, file string) int {
	t.Helper()
	deadline := time.Now().Add(testWait)
	for {
		b, err := os.ReadFile(file)
		if pid, err2 := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && err2 == nil && pid > 0 {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s after %s", file, testWait)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Servers that ignore SIGTERM take their whole stop timeouts to stop: the
// pool stops those released together at once, and waits for every one.
func TestPool_StopsReleasedServersTogetherAndWaitsForThemAll(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	p := newPool()
	stop := upstream.StopTimeouts{Grace: 100 * time.Millisecond, Term: 1500 * time.Millisecond}
	var leases []*lease
	var pids []int
	for _, name := range []string{"a", "b", "c"} {
		pidFile := filepath.Join(t.TempDir(), "pid")
		spec := upstream.Spec{Name: name, Transport: upstream.TransportStdio, Command: sh,
			Args: []string{"-c", `echo $$ > "$0"; trap "" TERM; exec sleep 60`, pidFile}}
		l, err := p.acquire(resolved{spec: spec, opts: upstream.Options{StartTimeout: time.Minute, Stop: stop}},
			owner{log: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		l.start()
		leases, pids = append(leases, l), append(pids, waitPID(t, pidFile))
	}

	begun := time.Now()
	for _, l := range leases { // as the handlers' Cleanup, one after the other
		if err := l.release(); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(begun); took > stop.Grace {
		t.Errorf("releasing took %s: it must not wait for the servers to stop", took)
	}
	p.wait()
	took := time.Since(begun)
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d still exists after the wait (%v)", pid, err)
		}
	}
	one := stop.Grace + stop.Term
	if took < stop.Term {
		t.Errorf("the servers stopped in %s, before SIGKILL was due: they did not ignore SIGTERM, the test proves nothing", took)
	}
	if took > 2*one {
		t.Errorf("stopping 3 servers took %s; one takes %s: they were not stopped together", took, one)
	}
}

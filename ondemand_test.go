package caddymcpo

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// onDemandFixture configures the stdio fixture server started on demand,
// stopped after idle without calls.
func onDemandFixture(idle time.Duration) *ServerConfig {
	cmd, args, env := fixture.StdioCommand(fixture.Options{})
	s := &ServerConfig{Command: cmd, Args: args, Env: map[string]string{}, Start: startOnDemand, IdleTimeout: caddy.Duration(idle)}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		s.Env[k] = v
	}
	return s
}

// pidOf calls the fixture's pid tool without a caller.
func pidOf(t *testing.T, l *lease) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	res, err := l.CallTool(ctx, "pid", json.RawMessage(`{}`))
	if err != nil {
		t.Fatalf("calling pid: %v", err)
	}
	pid, err := strconv.Atoi(res.Content[0].Text)
	if err != nil {
		t.Fatalf("pid answered %+v", res.Content)
	}
	return pid
}

func TestOnDemand_ListsAtLoadThenStartsOnTheFirstCallAndStopsWhenIdle(t *testing.T) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	l := newTestPool(t).leaseStored(onDemandFixture(200*time.Millisecond), storage, true)
	listed(t, l)
	waitFor(t, "stored", func() bool { return storage.Exists(context.Background(), listingStoreKey(l.key)) })
	if st := l.Status(); st.State != upstream.StateIdle || st.Tools == 0 {
		t.Fatalf("after the listing at load: state %s with %d tools; want idle with the listing", st.State, st.Tools)
	}

	start := time.Now()
	pid := pidOf(t, l)
	t.Logf("first call, starting the server: %s", time.Since(start))
	if st := l.Status(); st.State != upstream.StateReady || st.PID != pid {
		t.Errorf("while running: state %s, pid %d; want ready, pid %d", st.State, st.PID, pid)
	}
	if again := pidOf(t, l); again != pid {
		t.Errorf("a second call ran in process %d, the first in %d: want the same", again, pid)
	}
	waitFor(t, "stopped when idle", func() bool { return gone(pid) })
	waitFor(t, "idle", func() bool { return l.Status().State == upstream.StateIdle })

	next := pidOf(t, l)
	if next == pid {
		t.Errorf("the call after the idle stop ran in the stopped process %d", pid)
	}
	if n := l.entry.users.startCount(); n != 3 {
		t.Errorf("starts = %d; want 3: the listing at load, the first call, the call after the idle stop", n)
	}
}

func TestOnDemand_AStoredListingServesTheDocumentWithoutStartingAnything(t *testing.T) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	s := onDemandFixture(time.Hour)
	first := newTestPool(t).leaseStored(s, storage, true)
	listed(t, first)
	waitFor(t, "stored", func() bool { return storage.Exists(context.Background(), listingStoreKey(first.key)) })

	// Another process, with the same storage, as after a restart.
	l := newTestPool(t).leaseStored(onDemandFixture(time.Hour), storage, true)
	if l.Tools() == nil || len(l.Tools().Tools) != len(first.Tools().Tools) {
		t.Fatalf("after the start: listing %+v; want the stored one, of %d tools", l.Tools(), len(first.Tools().Tools))
	}
	time.Sleep(100 * time.Millisecond)
	if n := l.entry.users.startCount(); n != 0 {
		t.Errorf("starts = %d with a stored listing; want 0", n)
	}
	if st := l.Status(); st.State != upstream.StateIdle {
		t.Errorf("state %s; want idle", st.State)
	}
	pidOf(t, l)
	if n := l.entry.users.startCount(); n != 1 {
		t.Errorf("starts = %d after a call; want 1", n)
	}
}

func TestOnDemand_ACallWaitsForAStartWithinTheStartTimeout(t *testing.T) {
	// A server that never answers the handshake: the call waits for the
	// start until start_timeout, then gets 503 rather than hanging.
	s := &ServerConfig{Command: "sh", Args: []string{"-c", "sleep 30"}, Start: startOnDemand,
		StartTimeout: caddy.Duration(300 * time.Millisecond)}
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	l := newTestPool(t).leaseStored(s, storage, true)
	ctx, cancel := context.WithTimeout(context.Background(), testWait)
	defer cancel()
	start := time.Now()
	_, err := l.CallTool(ctx, "pid", json.RawMessage(`{}`))
	var unavailable *upstream.UnavailableError
	if !errors.As(err, &unavailable) {
		t.Fatalf("call to a server that does not start: %v; want an *upstream.UnavailableError", err)
	}
	if took := time.Since(start); took < 250*time.Millisecond || took > 5*time.Second {
		t.Errorf("the call gave up after %s; want about the start timeout of 300ms", took)
	}
}

func TestServerConfig_StartOnDemand(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(s *ServerConfig)
		want string // in the error; "" for none
	}{
		{"on_demand with idle_timeout", func(s *ServerConfig) {}, ""},
		{"eager", func(s *ServerConfig) { s.Start, s.IdleTimeout = startEager, 0 }, ""},
		{"an unknown start", func(s *ServerConfig) { s.Start = "lazy" }, `start "lazy"`},
		{"idle_timeout without on_demand", func(s *ServerConfig) { s.Start = startEager }, "or start on_demand"},
		{"max_sessions with on_demand", func(s *ServerConfig) { s.MaxSessions = 2 }, "max_sessions applies"},
		{"on_demand with isolation user", func(s *ServerConfig) {
			s.Isolation = isolationUser
			s.Env["FIXTURE_USER"] = "{mcpo.user.id}"
		}, ""},
		{"on_demand with oauth", func(s *ServerConfig) {
			s.Command, s.Args, s.Env, s.URL = "", nil, nil, "https://mcp.example/mcp"
			s.OAuth = &OAuth{Grant: "client_credentials", ClientID: "c", ClientSecret: "s"}
		}, "does not go with oauth"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := onDemandFixture(time.Minute)
			tc.mod(s)
			err := s.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate() = %v; want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate() = %v; want an error with %q", err, tc.want)
			}
		})
	}
}

func TestPoolCollectorCountsTheStartsOfAServerStartedOnDemand(t *testing.T) {
	p := newTestPool(t)
	l := p.leaseStored(onDemandFixture(time.Hour), &certmagic.FileStorage{Path: t.TempDir()}, true)
	listed(t, l)
	registry := prometheus.NewPedanticRegistry()
	registry.MustRegister(newPoolCollector(p.pool))
	labels := `{id="` + l.entry.id + `",server="fx"`
	checkLines(t, exposition(t, registry),
		`caddy_mcpo_server_sessions_started_total`+labels+`} 1`,
		`caddy_mcpo_server_state`+labels+`,state="idle"} 1`,
		`# TYPE caddy_mcpo_server_sessions_started_total counter`,
	)
	pidOf(t, l)
	checkLines(t, exposition(t, registry),
		`caddy_mcpo_server_sessions_started_total`+labels+`} 2`,
		`caddy_mcpo_server_state`+labels+`,state="ready"} 1`,
		`caddy_mcpo_server_sessions`+labels+`} 1`,
	)
}

func TestOnDemand_AReloadKeepsTheRunningServer(t *testing.T) {
	p := newTestPool(t)
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	old := p.leaseStored(onDemandFixture(time.Hour), storage, true)
	listed(t, old)
	pid := pidOf(t, old)

	// The new configuration takes the server over, then the old one goes.
	l := p.leaseStored(onDemandFixture(time.Hour), storage, true)
	if err := old.release(); err != nil {
		t.Fatal(err)
	}
	if l.entry != old.entry {
		t.Fatal("the new configuration got a new server")
	}
	if again := pidOf(t, l); again != pid {
		t.Errorf("after the reload, the call ran in process %d; want the running %d", again, pid)
	}
	if n := l.entry.users.startCount(); n != 2 {
		t.Errorf("starts = %d; want 2: the listing at load and the first call", n)
	}
}

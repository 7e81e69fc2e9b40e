package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/client"
)

// Sessions is what a session per caller (isolation user) costs caddy-mcpo,
// on the echo server over stdio, against the same server shared by every
// caller, both in one Caddy: the first call of a new caller (its session's
// start included), the calls after it, the throughput of Users callers at
// Concurrency, and the resident memory an idle caller's session takes
// inside Caddy, its server process not counted.
type Sessions struct {
	// FirstCall is the first call of each of NewCallers callers, one
	// after the other; NextCall and SharedCall are calls one at a time by
	// a caller whose session runs, and on the shared server.
	NewCallers int     `json:"new_callers"`
	FirstCall  Latency `json:"first_call"`
	NextCall   Latency `json:"next_call"`
	SharedCall Latency `json:"shared_call"`
	// Loads are Users callers calling from Concurrency clients at once,
	// by upstream case; each the median of sessionsRounds.
	Users       int           `json:"users"`
	Concurrency int           `json:"concurrency"`
	Loads       []SessionLoad `json:"loads"`
	// IdleSessions sessions of callers were started and left idle: Caddy's
	// resident memory grew from BaseKiB by PerSessionKiB each. UpstreamKiB
	// is one echo server process's, not counted.
	IdleSessions  int     `json:"idle_sessions"`
	BaseKiB       float64 `json:"base_kib"`
	PerSessionKiB float64 `json:"per_idle_session_kib"`
	UpstreamKiB   float64 `json:"upstream_process_kib"`
}

// SessionLoad is one upstream case called by Users callers at once: with
// a session each, on the shared server, and, to tell the per-user path's
// own cost from that of running Users processes, by one caller alone
// (OneUser, a single session).
type SessionLoad struct {
	Case    string      `json:"case"`
	PerUser SessionCell `json:"per_user"`
	OneUser SessionCell `json:"one_user"`
	Shared  SessionCell `json:"shared"`
	// DirectPerUser and DirectShared are the same load without Caddy:
	// in-process MCP clients, one per caller each with a process of its
	// own, and one client of one process for every caller. Their ratio
	// is what running Users processes instead of one costs on this
	// machine, whatever the proxy.
	DirectPerUser LoadResult `json:"direct_per_user"`
	DirectShared  LoadResult `json:"direct_shared"`
}

// SessionCell is one load, with the CPU time per call of Caddy and of the
// upstream processes.
type SessionCell struct {
	Load                 LoadResult `json:"load"`
	CaddyCPUPerCallUS    float64    `json:"caddy_cpu_us_per_call"`
	UpstreamCPUPerCallUS float64    `json:"upstream_cpu_us_per_call"`
}

const (
	// userHeader names the caller of a call; the benchmark's Caddy takes
	// the identity from it, as behind a trusted proxy.
	userHeader         = "X-Bench-User"
	sessionsNewCallers = 40
	sessionsUsers      = 16
	sessionsConc       = 16
	sessionsIdle       = 40
	sessionsRounds     = 3 // of each load
)

// sessionsSite is a mount with the echo server twice: with a session per
// caller, and shared.
func (e *env) sessionsSite() string {
	return fmt.Sprintf(`mcpo /s {
		identity {http.request.header.%s}
		server user {
			command %s
			isolation user
			max_sessions 1000
		}
		server shared {
			command %s
		}
	}`, userHeader, e.echoBin, e.echoBin)
}

// errNoIdentity is the caddy under test lacking the identity setting.
var errNoIdentity = errors.New("this caddy's mcpo directive has no identity setting, which isolation user needs")

// checkIdentity adapts the sessions' Caddyfile, to tell a caddy that
// cannot run it from one that fails.
func (e *env) checkIdentity(ctx context.Context) error {
	file := filepath.Join(e.o.work, "caddy-sessions-check.Caddyfile")
	if err := os.WriteFile(file, []byte(caddyfile(1, 2, e.sessionsSite())), 0o644); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, e.caddyBin, "adapt", "--config", file, "--adapter", "caddyfile").CombinedOutput()
	switch {
	case err != nil && strings.Contains(string(out), `unknown subdirective "identity"`):
		return errNoIdentity
	case err != nil:
		return fmt.Errorf("caddy adapt: %w\n%s", err, out)
	}
	return nil
}

func (e *env) sessions(ctx context.Context) (*Sessions, error) {
	if err := e.checkIdentity(ctx); err != nil {
		return nil, err
	}
	res := &Sessions{NewCallers: sessionsNewCallers, Users: sessionsUsers, Concurrency: sessionsConc, IdleSessions: sessionsIdle}
	echo := cases(e.o.quick)[0]
	sequential := echo.calls / 10
	if e.o.quick {
		res.NewCallers = 10
	}
	c, err := e.startCaddy(ctx, "caddy-sessions", e.sessionsSite(), "/s")
	if err != nil {
		return nil, err
	}
	defer c.close()
	// call calls a case's tool on a server, as user.
	call := func(uc upstreamCase, server string, user func() string) caller {
		return postCallerAs(c.client, c.base+"/s/"+server+"/"+uc.Tool, []byte(uc.Args), uc.want, user)
	}
	as := func(server string, user func() string) caller { return call(echo, server, user) }
	named := func(name string) func() string { return func() string { return name } }

	// First calls, each starting a session.
	var first []time.Duration
	for i := range res.NewCallers {
		began := time.Now()
		if err := as("user", named(fmt.Sprintf("new-%03d", i)))(ctx); err != nil {
			return nil, fmt.Errorf("the first call of a new caller: %w", err)
		}
		first = append(first, time.Since(began))
	}
	res.FirstCall = summarize(first)
	next := runLoad(ctx, as("user", named("new-000")), 1, echo.warm/10, sequential, 2*time.Minute)
	shared := runLoad(ctx, as("shared", named("new-000")), 1, echo.warm/10, sequential, 2*time.Minute)
	if err := loadErr(next, shared); err != nil {
		return nil, err
	}
	res.NextCall, res.SharedCall = next.Latency, shared.Latency
	log.Printf("sessions: first call of a new caller p50 %.2f ms (p99 %.2f); then %.3f ms, shared %.3f ms (p50)",
		res.FirstCall.P50, res.FirstCall.P99, res.NextCall.P50, res.SharedCall.P50)

	// Users callers at once, against the shared server.
	users := make([]string, res.Users)
	for i := range users {
		users[i] = fmt.Sprintf("user-%02d", i)
		if err := as("user", named(users[i]))(ctx); err != nil {
			return nil, err
		}
	}
	var turn atomic.Int64
	roundRobin := func() string { return users[int(turn.Add(1))%len(users)] }
	rounds := sessionsRounds
	if e.o.quick {
		rounds = 1
	}
	for _, uc := range cases(e.o.quick)[:2] { // echo, sleep 10 ms
		load := SessionLoad{Case: uc.Name}
		runs := []struct {
			cell  *SessionCell
			call  caller
			cells []SessionCell
		}{
			{cell: &load.PerUser, call: call(uc, "user", roundRobin)},
			{cell: &load.Shared, call: call(uc, "shared", roundRobin)},
			{cell: &load.OneUser, call: call(uc, "user", named(users[0]))},
		}
		if err := e.directSessions(ctx, uc, res.Users, res.Concurrency, rounds, &load); err != nil {
			return nil, fmt.Errorf("%s without Caddy: %w", uc.Name, err)
		}
		// The three take turns, so that what else the machine does weighs
		// on each alike; each keeps its median round.
		for range rounds {
			for i := range runs {
				cell, err := e.sessionCell(ctx, c, runs[i].call, res.Concurrency, uc)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", uc.Name, err)
				}
				runs[i].cells = append(runs[i].cells, cell)
			}
		}
		for _, run := range runs {
			slices.SortFunc(run.cells, func(a, b SessionCell) int { return cmp.Compare(a.Load.Throughput, b.Load.Throughput) })
			*run.cell = run.cells[len(run.cells)/2]
		}
		res.Loads = append(res.Loads, load)
		log.Printf("sessions: %-11s %d callers at c=%d: %6.0f calls/s with a session each, %6.0f shared (%.2f×), %6.0f with one caller's session; without Caddy %6.0f and %6.0f (%.2f×)",
			uc.Name, res.Users, res.Concurrency, load.PerUser.Load.Throughput, load.Shared.Load.Throughput,
			load.PerUser.Load.Throughput/load.Shared.Load.Throughput, load.OneUser.Load.Throughput,
			load.DirectPerUser.Throughput, load.DirectShared.Throughput, load.DirectPerUser.Throughput/load.DirectShared.Throughput)
	}
	c.close()

	return res, e.idleSessionMemory(ctx, res)
}

// directSessions runs uc's load without Caddy: users in-process clients,
// each of an echo server process of its own, called in turn, against one
// client of one process; they take turns over rounds, each keeping its
// median, into load.
func (e *env) directSessions(ctx context.Context, uc upstreamCase, users, conc, rounds int, load *SessionLoad) error {
	var clients []*directPath
	defer func() {
		for _, d := range clients {
			d.close()
		}
	}()
	for range users {
		c, err := dialStdio(ctx, []string{e.echoBin})
		if err != nil {
			return err
		}
		clients = append(clients, &directPath{clients: map[string]*client.Client{uc.Server: c}})
	}
	callers := make([]caller, users)
	for i, d := range clients {
		callers[i] = d.caller(uc)
	}
	var turn atomic.Int64
	perUser := func(ctx context.Context) error { return callers[int(turn.Add(1))%users](ctx) }
	var per, shared []LoadResult
	for range rounds {
		per = append(per, runLoad(ctx, perUser, conc, uc.warm, uc.calls, 3*time.Minute))
		shared = append(shared, runLoad(ctx, callers[0], conc, uc.warm, uc.calls, 3*time.Minute))
	}
	median := func(ls []LoadResult) LoadResult {
		slices.SortFunc(ls, func(a, b LoadResult) int { return cmp.Compare(a.Throughput, b.Throughput) })
		return ls[len(ls)/2]
	}
	load.DirectPerUser, load.DirectShared = median(per), median(shared)
	return loadErr(append(per, shared...)...)
}

// sessionCell runs a load, measuring the CPU time per call of Caddy and of
// the echo server processes.
func (e *env) sessionCell(ctx context.Context, c *caddyPath, call caller, conc int, uc upstreamCase) (SessionCell, error) {
	upstreams := func() []procInfo {
		var out []procInfo
		for _, p := range tree(c.p.pid()) {
			if strings.Contains(p.cmdline, e.echoBin) {
				out = append(out, p)
			}
		}
		return out
	}
	p0, u0 := usageOf(c.proxy()), usageOf(upstreams())
	l := runLoad(ctx, call, conc, uc.warm, uc.calls, 3*time.Minute)
	p1, u1 := usageOf(c.proxy()), usageOf(upstreams())
	calls := float64(l.Calls + uc.warm)
	return SessionCell{
		Load:                 l,
		CaddyCPUPerCallUS:    float64((p1.cpu - p0.cpu).Microseconds()) / calls,
		UpstreamCPUPerCallUS: float64((u1.cpu - u0.cpu).Microseconds()) / calls,
	}, loadErr(l)
}

// loadErr reports the first failed call of loads.
func loadErr(loads ...LoadResult) error {
	for _, l := range loads {
		if l.Errors > 0 || l.Incomplete {
			return fmt.Errorf("%d of %d calls failed (incomplete: %v), the first: %s", l.Errors, l.Calls, l.Incomplete, l.FirstError)
		}
	}
	return nil
}

// idleSessionMemory measures Caddy's resident memory with its listing
// done and no caller's session, then with IdleSessions idle ones.
func (e *env) idleSessionMemory(ctx context.Context, res *Sessions) error {
	c, err := e.startCaddy(ctx, "caddy-sessions-idle", e.sessionsSite(), "/s")
	if err != nil {
		return err
	}
	defer c.close()
	echo := cases(true)[0]
	// The first call builds the tool's validator and document.
	if err := postCallerAs(c.client, c.base+"/s/user/echo", []byte(echo.Args), echo.want, func() string { return "warm" })(ctx); err != nil {
		return err
	}
	base := settledRSS(ctx, &c.httpPath)
	for i := range res.IdleSessions {
		call := postCallerAs(c.client, c.base+"/s/user/echo", []byte(echo.Args), echo.want, func() string { return fmt.Sprintf("idle-%03d", i) })
		if err := call(ctx); err != nil {
			return err
		}
	}
	with := settledRSS(ctx, &c.httpPath)
	var up int64
	ups := 0
	for _, p := range tree(c.p.pid()) {
		if strings.Contains(p.cmdline, e.echoBin) {
			up += p.rss
			ups++
		}
	}
	res.BaseKiB = float64(base) / 1024
	res.PerSessionKiB = float64(with-base) / float64(res.IdleSessions) / 1024
	if ups > 0 {
		res.UpstreamKiB = float64(up) / float64(ups) / 1024
	}
	log.Printf("sessions: caddy %.0f KiB, %.0f KiB more per idle caller's session (%d); an echo server process %.0f KiB",
		res.BaseKiB, res.PerSessionKiB, res.IdleSessions, res.UpstreamKiB)
	return nil
}

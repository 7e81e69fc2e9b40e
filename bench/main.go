// Command bench measures caddy-mcpo side by side with mcpo and with a
// direct MCP client, on one machine in one run, and writes the results to
// docs/bench: results.json, results.md and results.png.
//
// The paths (legs, listed in legs.go) reach the same upstream MCP servers
// with the same load; among them:
//
//   - direct: an in-process mcp-go client over stdio, the upstream's own
//     limit;
//   - caddy-mcpo: POST /<mount>/<tool> through a Caddy built from this
//     repository;
//   - caddy-mcpo-mcp and caddy-mcpo-mcp-2026: the same Caddy's MCP face,
//     <mount>/mcp, called by mcp-go clients of each protocol era;
//   - mcpo: the same through mcpo, run with uvx.
//
// The upstreams are a Go echo server (echoserver: negligible work per call,
// so the path's overhead dominates), its sleep tool (10 ms per call, so
// concurrency matters) and mcp-server-time from PyPI. Every load targets
// loopback; every run is bounded in calls and in time.
//
// Besides the paths, it measures start-up, reload, document generation and
// idle memory (-extras), what large request bodies cost caddy-mcpo in
// memory (-bodies), and what a session per caller costs (-sessions). With
// -paths= -extras=false it measures the bodies and sessions alone, without
// mcpo or mcp-server-time.
//
// Run it with `make bench` from the repository root.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command line.
type options struct {
	repo        string // the repository root
	out         string // where results go (docs/bench)
	work        string // scratch: binaries, logs, profiles (bench/out)
	timeServer  string // the mcp-server-time requirement for uvx
	mcpo        string // the mcpo requirement for uvx
	mcpoWith    string // the requirements mcpo runs with, comma-separated
	readme      string // the README whose benchmark section to rewrite, if any
	quick       bool   // a smoke run: few calls
	profile     bool   // take CPU and allocation profiles of caddy-mcpo
	concurrency []int
	paths       []string // the paths to measure
	extras      bool     // measure start-up, reload, documents and memory too
	bodies      bool     // measure the memory large request bodies take
	sessions    bool     // measure a session per caller against a shared server
	pairs       int      // rounds of the faces measured in turns; 0 for none
	caddy       string   // a caddy binary to measure instead of building one
}

func main() {
	var o options
	var conc string
	flag.StringVar(&o.repo, "repo", "..", "the repository root")
	flag.StringVar(&o.out, "out", "", "where to write the results (default <repo>/docs/bench)")
	flag.StringVar(&o.work, "work", "", "scratch directory (default <repo>/bench/out)")
	flag.StringVar(&o.timeServer, "time-server", "mcp-server-time==2026.10.19", "the mcp-server-time requirement")
	flag.StringVar(&o.mcpo, "mcpo", "mcpo==0.0.20", "the mcpo requirement")
	// mcpo 0.0.20 breaks with the MCP SDK 2.x, and the SDK it was released
	// with breaks with newer Pydantic: run it with its own lock file's pins.
	flag.StringVar(&o.mcpoWith, "mcpo-with", "mcp==1.17.0,pydantic==2.11.7,fastapi==0.116.1,starlette==0.47.2,uvicorn==0.35.0,httpx==0.28.1",
		"the requirements mcpo runs with, comma-separated")
	flag.BoolVar(&o.quick, "quick", false, "a smoke run with few calls; results go to the scratch directory")
	flag.BoolVar(&o.profile, "profile", true, "take CPU profiles of the floor and caddy-mcpo, and an allocation profile of caddy-mcpo, on the echo upstream at the highest concurrency")
	render := flag.String("render", "", "only render this results.json again into results.md and results.png beside it (and -readme)")
	flag.StringVar(&o.readme, "readme", "", "the README whose benchmark section to rewrite (default: the repository's, unless -quick)")
	flag.StringVar(&conc, "concurrency", "1,16,64", "concurrency levels")
	paths := flag.String("paths", strings.Join(legNames(), ","), "the paths to measure")
	flag.BoolVar(&o.extras, "extras", true, "also measure start-up, reload, document generation and idle memory")
	flag.BoolVar(&o.bodies, "bodies", true, "also measure caddy-mcpo's peak memory per MiB of request body in flight")
	flag.StringVar(&o.caddy, "caddy", "", "measure this caddy binary (built with this module) instead of building ./cmd/caddy")
	flag.BoolVar(&o.sessions, "sessions", true, "also measure a session per caller (isolation user) against a shared server")
	flag.IntVar(&o.pairs, "pairs", 5, "rounds of the REST face and the MCP face measured in turns on one Caddy (0: none)")
	flag.Parse()
	for _, s := range strings.Split(conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			log.Fatalf("bench: bad concurrency %q", s)
		}
		o.concurrency = append(o.concurrency, n)
	}
	if *render != "" {
		if err := rerender(*render, o.readme); err != nil {
			log.Fatalf("bench: %v", err)
		}
		return
	}
	for _, p := range strings.Split(*paths, ",") {
		if p = strings.TrimSpace(p); p != "" {
			o.paths = append(o.paths, p)
		}
	}
	var err error
	if o.repo, err = filepath.Abs(o.repo); err != nil {
		log.Fatal(err)
	}
	if o.work == "" {
		o.work = filepath.Join(o.repo, "bench", "out")
	}
	if o.out == "" {
		o.out = filepath.Join(o.repo, "docs", "bench")
		if o.quick {
			o.out = filepath.Join(o.work, "quick")
		}
	}
	if o.readme == "" && !o.quick {
		o.readme = filepath.Join(o.repo, "README.md")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// The whole run is bounded too.
	ctx, cancel := context.WithTimeout(ctx, 45*time.Minute)
	defer cancel()
	if err := run(ctx, o); err != nil {
		log.Fatalf("bench: %v", err)
	}
}

// upstreamCase is one upstream tool every path calls the same way.
type upstreamCase struct {
	Name   string `json:"name"`
	Server string `json:"server"` // the MCP server: "echo" or "time"
	Tool   string `json:"tool"`
	Args   string `json:"arguments"`
	want   string // a part of every good answer
	calls  int    // measured calls per concurrency level
	warm   int
}

func cases(quick bool) []upstreamCase {
	cs := []upstreamCase{
		{Name: "echo", Server: "echo", Tool: "echo", Args: `{"message":"hello"}`, want: "hello", calls: 20000, warm: 2000},
		{Name: "sleep 10 ms", Server: "echo", Tool: "sleep", Args: `{"ms":10}`, want: "slept", calls: 2000, warm: 200},
		{Name: "mcp-server-time", Server: "time", Tool: "get_current_time", Args: `{"timezone":"UTC"}`, want: "UTC", calls: 2000, warm: 200},
	}
	if quick {
		for i := range cs {
			cs[i].calls, cs[i].warm = cs[i].calls/20, cs[i].warm/20
		}
	}
	return cs
}

// path is a way to call the upstreams.
type path interface {
	// caller returns a caller of a case's tool.
	caller(c upstreamCase) caller
	// serves tells whether the path reaches a case's upstream server.
	serves(c upstreamCase) bool
	// proxy returns the proxy's processes (none for direct).
	proxy() []procInfo
	close()
}

// sessionOpener is a path that calls through sessions it opens as it needs
// them: the MCP face's clients.
type sessionOpener interface {
	// openSessions opens what calls of a case need at a concurrency.
	openSessions(ctx context.Context, c upstreamCase, concurrency int) error
}

// env is what every step needs.
type env struct {
	o          options
	caddyBin   string
	echoBin    string
	floorBin   string
	uvx        string
	timeArgv   []string // runs mcp-server-time
	mcpoArgv   []string // runs mcpo, without its own arguments
	upstreamID []string // command-line parts that identify upstream processes
}

func run(ctx context.Context, o options) error {
	for _, d := range []string{o.work, o.out} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	e, err := prepare(ctx, o)
	if err != nil {
		return err
	}
	res := &Results{Machine: describeMachine(), Versions: versions(ctx, o), Started: time.Now().UTC()}

	log.Printf("load: concurrency %v, paths %v", o.concurrency, o.paths)
	for _, name := range o.paths {
		p, err := e.open(ctx, name)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		for _, c := range cases(o.quick) {
			if !p.serves(c) {
				continue
			}
			for _, conc := range o.concurrency {
				cell := e.measure(ctx, p, c, conc)
				cell.Path = name
				log.Printf("%-19s %-16s c=%-3d %8.0f calls/s  p50 %7.2f ms  p99 %7.2f ms  errors %d  CPU/call client %4.0f proxy %4.0f upstream %4.0f µs",
					name, c.Name, conc, cell.Load.Throughput, cell.Load.Latency.P50, cell.Load.Latency.P99, cell.Load.Errors,
					cell.ClientCPUPerCallUS, cell.ProxyCPUPerCallUS, cell.UpstreamCPUPerCallUS)
				res.Cells = append(res.Cells, cell)
			}
		}
		if o.profile {
			if prof, err := e.profile(ctx, name, p); err != nil {
				log.Printf("profiling %s: %v", name, err)
			} else if prof != nil {
				res.Profiles = append(res.Profiles, *prof)
			}
		}
		p.close()
		if err := ctx.Err(); err != nil {
			return err
		}
	}

	if o.extras {
		log.Print("startup, reload, document generation and idle memory")
		if res.Startup, err = e.startup(ctx); err != nil {
			return fmt.Errorf("startup: %w", err)
		}
		if res.Reload, err = e.reload(ctx); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
		if res.Document, err = e.document(ctx); err != nil {
			return fmt.Errorf("document: %w", err)
		}
		if res.IdleMemory, err = e.idleMemory(ctx); err != nil {
			return fmt.Errorf("idle memory: %w", err)
		}
	}
	if o.bodies {
		log.Print("memory per MiB of request body in flight")
		if res.Bodies, err = e.bodyMemory(ctx); err != nil {
			return fmt.Errorf("body memory: %w", err)
		}
	}
	if o.sessions {
		log.Print("a session per caller against a shared server")
		res.Sessions, err = e.sessions(ctx)
		if errors.Is(err, errNoIdentity) {
			log.Printf("sessions: skipped: %v", err)
		} else if err != nil {
			return fmt.Errorf("sessions: %w", err)
		}
	}
	if o.pairs > 0 {
		log.Print("the REST face and the MCP face in turns")
		if res.FacePairs, err = e.facePairs(ctx, o.pairs); err != nil {
			return fmt.Errorf("faces in turns: %w", err)
		}
	}
	res.Finished = time.Now().UTC()
	if err := write(o.out, res); err != nil {
		return err
	}
	// The README shows a whole run only.
	if o.readme != "" && o.extras && o.bodies && len(res.Cells) > 0 {
		return updateReadme(o.readme, res)
	}
	return nil
}

// measure runs one case at one concurrency through a path, with the CPU
// time per call of the client (this process: the load generator, or the
// direct MCP client), the proxy and the upstream server, and the proxy's
// peak memory. The warm-up calls are counted in the CPU times too, which
// therefore cover calls+warm calls.
func (e *env) measure(ctx context.Context, p path, c upstreamCase, conc int) Cell {
	cell := Cell{Upstream: c.Name}
	// A path of sessions opens those the concurrency needs first, so that
	// the figures are of the calls alone.
	if s, ok := p.(sessionOpener); ok {
		if err := s.openSessions(ctx, c, conc); err != nil {
			log.Printf("opening %d sessions for %s: %v", conc, c.Name, err)
		}
	}
	proxy := p.proxy()
	resetPeak(proxy)
	mem, _ := p.(goMemPath)
	var m0 goMemStats
	if mem != nil {
		m0, _ = mem.memStats(ctx)
	}
	p0, s0, u0 := usageOf(proxy), usageOf(e.self()), usageOf(e.upstreams(c))
	cell.Load = runLoad(ctx, p.caller(c), conc, c.warm, c.calls, 3*time.Minute)
	p1, s1, u1 := usageOf(p.proxy()), usageOf(e.self()), usageOf(e.upstreams(c))
	calls := float64(cell.Load.Calls + c.warm)
	if mem != nil && m0.Mallocs > 0 {
		if m1, err := mem.memStats(ctx); err == nil {
			cell.ProxyAllocsPerCall = float64(m1.Mallocs-m0.Mallocs) / calls
			cell.ProxyBytesPerCall = float64(m1.TotalAlloc-m0.TotalAlloc) / calls
		}
	}
	perCall := func(d time.Duration) float64 { return float64(d.Microseconds()) / calls }
	cell.ClientCPUPerCallUS = perCall(s1.cpu - s0.cpu)
	cell.UpstreamCPUPerCallUS = perCall(u1.cpu - u0.cpu)
	if len(proxy) > 0 {
		cell.ProxyCPUSeconds = (p1.cpu - p0.cpu).Seconds()
		cell.ProxyCPUPerCallUS = perCall(p1.cpu - p0.cpu)
		cell.ProxyPeakRSSMB = float64(p1.hwm) / (1 << 20)
	}
	return cell
}

// goMemPath is a path whose proxy is a Go process that gives its memory
// statistics: a Caddy's allocations per call, which the machine's pace
// does not change, beside its CPU time per call, which it does.
type goMemPath interface {
	memStats(context.Context) (goMemStats, error)
}

// self is this process alone.
func (e *env) self() []procInfo {
	p, err := readProc(os.Getpid())
	if err != nil {
		return nil
	}
	return []procInfo{p}
}

// upstreams are the processes of a case's upstream server, wherever they
// run below this process.
func (e *env) upstreams(c upstreamCase) []procInfo {
	id := e.echoBin
	if c.Server == "time" {
		id = "mcp-server-time"
	}
	var out []procInfo
	for _, p := range tree(os.Getpid()) {
		// bench/floor names the servers it starts on its command line.
		if strings.Contains(p.cmdline, id) && !strings.HasPrefix(p.cmdline, e.floorBin+" ") {
			out = append(out, p)
		}
	}
	return out
}

// prepare builds the binaries and fetches the Python packages, so that no
// measurement waits for a download.
func prepare(ctx context.Context, o options) (*env, error) {
	e := &env{o: o, caddyBin: filepath.Join(o.work, "caddy"), echoBin: filepath.Join(o.work, "echoserver"), floorBin: filepath.Join(o.work, "floor")}
	log.Print("building caddy, the echo server and the floor")
	if o.caddy != "" {
		e.caddyBin = o.caddy
	} else if err := runQuiet(ctx, 10*time.Minute, o.repo, nil, "go", "build", "-o", e.caddyBin, "./cmd/caddy"); err != nil {
		return nil, err
	}
	for bin, pkg := range map[string]string{e.echoBin: "./echoserver", e.floorBin: "./floor"} {
		if err := runQuiet(ctx, 5*time.Minute, filepath.Join(o.repo, "bench"), nil, "go", "build", "-o", bin, pkg); err != nil {
			return nil, err
		}
	}
	e.upstreamID = []string{e.echoBin, "mcp-server-time"}
	// The load paths call mcp-server-time; the extras run mcpo.
	if len(o.paths) == 0 && !o.extras {
		return e, nil
	}
	uvx, err := lookUVX()
	if err != nil {
		return nil, err
	}
	e.uvx = uvx
	e.timeArgv = []string{uvx, "--from", o.timeServer, "mcp-server-time", "--local-timezone=UTC"}
	e.mcpoArgv = []string{uvx, "--from", o.mcpo}
	for _, req := range strings.Split(o.mcpoWith, ",") {
		e.mcpoArgv = append(e.mcpoArgv, "--with", req)
	}
	e.mcpoArgv = append(e.mcpoArgv, "mcpo")
	log.Print("fetching mcpo and mcp-server-time")
	if err := runQuiet(ctx, 10*time.Minute, o.work, nil, append(e.mcpoArgv, "--help")...); err != nil {
		return nil, err
	}
	if err := runQuiet(ctx, 10*time.Minute, o.work, nil, e.timeArgv[0], "--from", o.timeServer, "mcp-server-time", "--help"); err != nil {
		return nil, err
	}
	return e, nil
}

// lookUVX finds uvx on the PATH (make bench puts the one it installs
// there).
func lookUVX() (string, error) {
	for _, dir := range filepath.SplitList(os.Getenv("PATH")) {
		p := filepath.Join(dir, "uvx")
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("uvx is not on the PATH: run `make bench`, which installs it, or `pip install uv`")
}

// writeJSONFile writes v as indented JSON.
func writeJSONFile(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

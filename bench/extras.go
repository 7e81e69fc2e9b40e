package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/client"
)

// Startup is how long each path takes from process start to the first
// successful call, in milliseconds (median of startupRuns).
type Startup struct {
	Runs int                `json:"runs"`
	MS   map[string]float64 `json:"ms"`
}

const startupRuns = 3

// startup measures the time from starting each path to its first
// successful echo call.
func (e *env) startup(ctx context.Context) (Startup, error) {
	echo := cases(true)[0]
	res := Startup{Runs: startupRuns, MS: map[string]float64{}}
	for _, name := range []string{pathDirect, pathCaddy, pathMcpo} {
		var samples []time.Duration
		for range startupRuns {
			began := time.Now()
			var took time.Duration
			switch name {
			case pathDirect:
				c, err := dialStdio(ctx, []string{e.echoBin})
				if err != nil {
					return res, err
				}
				d := &directPath{clients: map[string]*client.Client{"echo": c}}
				_, err = retry(ctx, readyLimit, d.caller(echo))
				took = time.Since(began)
				d.close()
				if err != nil {
					return res, err
				}
			default:
				p, base, err := e.startBare(name)
				if err != nil {
					return res, err
				}
				_, err = retry(ctx, readyLimit, postCaller(newHTTPClient(), base+"/echo/echo", []byte(echo.Args), echo.want))
				took = time.Since(began)
				p.stop()
				if err != nil {
					return res, fmt.Errorf("%s: %w", name, err)
				}
			}
			samples = append(samples, took)
		}
		res.MS[name] = ms(median(samples))
		log.Printf("startup %-11s %8.1f ms", name, res.MS[name])
	}
	return res, nil
}

// startBare starts a proxy of the echo server without waiting for it.
func (e *env) startBare(name string) (*proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	if name == pathMcpo {
		file := filepath.Join(e.o.work, "mcpo-startup.json")
		if err := writeJSONFile(file, map[string]any{"mcpServers": map[string]any{"echo": map[string]any{"command": e.echoBin}}}); err != nil {
			return nil, "", err
		}
		argv := append(append([]string{}, e.mcpoArgv...), "--host", "127.0.0.1", "--port", fmt.Sprint(port), "--config", file)
		p, err := start(e.o.work, "mcpo-startup", nil, argv...)
		return p, base, err
	}
	adminPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	file := filepath.Join(e.o.work, "caddy-startup.Caddyfile")
	site := fmt.Sprintf("mcpo /echo {\n\t\tcommand %s\n\t}", e.echoBin)
	if err := os.WriteFile(file, []byte(caddyfile(port, adminPort, site)), 0o644); err != nil {
		return nil, "", err
	}
	home := filepath.Join(e.o.work, "caddy-home")
	p, err := start(e.o.work, "caddy-startup", []string{"XDG_CONFIG_HOME=" + home, "XDG_DATA_HOME=" + home},
		e.caddyBin, "run", "--config", file, "--adapter", "caddyfile")
	return p, base, err
}

// Reload is what `caddy reload` costs with reloadServers unchanged stdio
// servers, and how many of their processes it restarted.
type Reload struct {
	Servers   int     `json:"servers"`
	Runs      int     `json:"runs"`
	CLIms     float64 `json:"caddy_reload_ms"` // median of the `caddy reload` command
	APIms     float64 `json:"admin_load_ms"`   // median of POST /load alone
	Restarted int     `json:"processes_restarted"`
}

const (
	reloadServers = 20
	reloadRuns    = 5
)

// serverPIDs is GET /mcpo/servers of caddy's admin API, by server name.
func (c *caddyPath) serverPIDs(ctx context.Context) (map[string]int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.admin+"/mcpo/servers", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var servers []struct {
		Name string `json:"name"`
		PID  int    `json:"pid"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&servers); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, s := range servers {
		out[s.Name] = s.PID
	}
	return out, nil
}

func (e *env) reload(ctx context.Context) (Reload, error) {
	res := Reload{Servers: reloadServers, Runs: reloadRuns}
	site := func(generation int) string {
		var b strings.Builder
		b.WriteString("mcpo /many {\n")
		for i := range reloadServers {
			fmt.Fprintf(&b, "\t\tserver s%02d {\n\t\t\tcommand %s\n\t\t}\n", i, e.echoBin)
		}
		fmt.Fprintf(&b, "\t}\n\trespond /generation \"%d\"", generation)
		return b.String()
	}
	c, err := e.startCaddy(ctx, "caddy-reload", site(0), "/many")
	if err != nil {
		return res, err
	}
	defer c.close()
	before, err := c.serverPIDs(ctx)
	if err != nil {
		return res, err
	}
	if len(before) != reloadServers {
		return res, fmt.Errorf("%d servers listed, want %d", len(before), reloadServers)
	}
	httpPort, adminPort := portOf(c.base), portOf(c.admin)
	var cli, api []time.Duration
	for run := 1; run <= 2*reloadRuns; run++ {
		if err := os.WriteFile(c.config, []byte(caddyfile(httpPort, adminPort, site(run))), 0o644); err != nil {
			return res, err
		}
		began := time.Now()
		if run%2 == 1 { // the command users run
			cmd := exec.CommandContext(ctx, e.caddyBin, "reload", "--config", c.config, "--adapter", "caddyfile",
				"--address", strings.TrimPrefix(c.admin, "http://"))
			if out, err := cmd.CombinedOutput(); err != nil {
				return res, fmt.Errorf("caddy reload: %w\n%s", err, out)
			}
			cli = append(cli, time.Since(began))
		} else { // what it sends
			if err := c.load(ctx, caddyfile(httpPort, adminPort, site(run))); err != nil {
				return res, err
			}
			api = append(api, time.Since(began))
		}
		status, body, err := c.get(ctx, "/generation")
		if err != nil || status != http.StatusOK || string(body) != fmt.Sprint(run) {
			return res, fmt.Errorf("after reload %d: /generation is %d %q (%v)", run, status, body, err)
		}
		after, err := c.serverPIDs(ctx)
		if err != nil {
			return res, err
		}
		for name, pid := range before {
			if after[name] != pid {
				res.Restarted++
			}
		}
	}
	res.CLIms, res.APIms = ms(median(cli)), ms(median(api))
	log.Printf("reload with %d unchanged servers: caddy reload %.1f ms, POST /load %.1f ms, %d processes restarted",
		reloadServers, res.CLIms, res.APIms, res.Restarted)
	return res, nil
}

// load posts a Caddyfile to the admin API's /load.
func (c *caddyPath) load(ctx context.Context, config string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.admin+"/load", strings.NewReader(config))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("POST /load: %d %s", resp.StatusCode, b)
	}
	return nil
}

func portOf(base string) int {
	var port int
	fmt.Sscanf(base[strings.LastIndexByte(base, ':')+1:], "%d", &port)
	return port
}

// Document is what a server with documentTools tools costs after a tool
// listing: its first call, which needs only that tool's schema; the first
// request for its OpenAPI document, which converts every schema and builds
// the document; later requests, served from memory; and the heap the
// listing keeps (its routes, its document, its schemas' conversions).
type Document struct {
	Tools       int     `json:"tools"`
	Bytes       int     `json:"bytes"`
	FirstCallMS float64 `json:"first_call_ms"`     // median over documentRuns listings
	FirstMS     float64 `json:"first_request_ms"`  // median over documentRuns listings, each after its first call
	ColdMS      float64 `json:"cold_request_ms"`   // the first listing's first request, in a new process
	CachedMS    float64 `json:"cached_request_ms"` // median of the requests after
	// HeapPerTool is the growth of caddy's live heap (after a garbage
	// collection) from before the first listing's first request to after
	// its document, in bytes per tool.
	HeapPerTool float64 `json:"heap_per_tool_bytes"`
	// RSSKiB is caddy's settled resident memory with the server listed
	// and its document built; against IdleMemory's caddy with one echo
	// server, it gives the memory per listed tool.
	RSSKiB float64 `json:"rss_kib,omitempty"`
}

const (
	documentTools = 1000
	documentRuns  = 3
	// documentTool is the tool called first after each listing, and its
	// arguments.
	documentTool = "tool_0500"
	documentArgs = `{"query":"caddy","limit":5}`
)

func (e *env) document(ctx context.Context) (Document, error) {
	res := Document{Tools: documentTools}
	c, err := e.startCaddy(ctx, "caddy-document", fmt.Sprintf("mcpo /big {\n\t\tcommand %s -tools %d\n\t}", e.echoBin, documentTools), "/big")
	if err != nil {
		return res, err
	}
	defer c.close()
	call := postCaller(c.client, c.base+"/big/"+documentTool, []byte(documentArgs), documentTool)
	var calls, first, cached []time.Duration
	var heapBefore uint64
	for run := range documentRuns {
		if run > 0 { // a new listing: restart the server
			pids, err := c.serverPIDs(ctx)
			if err != nil {
				return res, err
			}
			if err := c.adminPost(ctx, "/mcpo/servers/big/restart"); err != nil {
				return res, err
			}
			if _, err := retry(ctx, readyLimit, func(ctx context.Context) error {
				now, err := c.serverPIDs(ctx)
				if err != nil || now["big"] == pids["big"] || now["big"] == 0 {
					return fmt.Errorf("not restarted yet: %v", err)
				}
				return c.waitHealthy(ctx, "/big")
			}); err != nil {
				return res, err
			}
		} else if heapBefore, err = c.liveHeap(ctx); err != nil {
			return res, err
		}
		began := time.Now()
		if err := call(ctx); err != nil {
			return res, fmt.Errorf("first call after a listing: %w", err)
		}
		calls = append(calls, time.Since(began))
		for i := range 6 {
			began := time.Now()
			status, body, err := c.get(ctx, "/big/openapi.json")
			took := time.Since(began)
			if err != nil || status != http.StatusOK {
				return res, fmt.Errorf("GET /big/openapi.json: %d (%v)", status, err)
			}
			if i == 0 {
				first = append(first, took)
				res.Bytes = len(body)
			} else {
				cached = append(cached, took)
			}
		}
		if run == 0 {
			heapAfter, err := c.liveHeap(ctx)
			if err != nil {
				return res, err
			}
			res.HeapPerTool = (float64(heapAfter) - float64(heapBefore)) / documentTools
		}
	}
	res.ColdMS = ms(first[0])
	res.FirstCallMS, res.FirstMS, res.CachedMS = ms(median(calls)), ms(median(first)), ms(median(cached))
	res.RSSKiB = float64(settledRSS(ctx, &c.httpPath)) / 1024
	log.Printf("server of %d tools after a listing: first call %.1f ms, first document %.1f ms (%.1f ms cold), then %.2f ms (%d bytes); %.0f bytes of heap per tool, %.0f KiB resident",
		documentTools, res.FirstCallMS, res.FirstMS, res.ColdMS, res.CachedMS, res.Bytes, res.HeapPerTool, res.RSSKiB)
	return res, nil
}

// liveHeap is caddy's live heap: its heap in use right after a garbage
// collection, which the admin API's heap profile runs.
func (c *caddyPath) liveHeap(ctx context.Context) (uint64, error) {
	resp, err := c.adminGet(ctx, "/debug/pprof/heap?gc=1")
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	m, err := c.memStats(ctx)
	return m.HeapAlloc, err
}

// goMemStats are the figures of a Go process's runtime.MemStats the
// benchmark reads.
type goMemStats struct {
	HeapAlloc  uint64
	Mallocs    uint64 // objects allocated, ever
	TotalAlloc uint64 // bytes allocated, ever
}

// memStats is caddy's runtime.MemStats, as its admin API's /debug/vars
// gives them.
func (c *caddyPath) memStats(ctx context.Context) (goMemStats, error) {
	resp, err := c.adminGet(ctx, "/debug/vars")
	if err != nil {
		return goMemStats{}, err
	}
	defer resp.Body.Close()
	var vars struct {
		MemStats goMemStats `json:"memstats"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&vars); err != nil {
		return goMemStats{}, fmt.Errorf("GET /debug/vars: %w", err)
	}
	return vars.MemStats, nil
}

// adminGet gets rel of caddy's admin API and wants a 200.
func (c *caddyPath) adminGet(ctx context.Context, rel string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.admin+rel, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err == nil && resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		err = fmt.Errorf("GET %s: %d", rel, resp.StatusCode)
	}
	return resp, err
}

// adminPost posts to caddy's admin API and wants a 2xx.
func (c *caddyPath) adminPost(ctx context.Context, rel string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.admin+rel, nil)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("POST %s: %d %s", rel, resp.StatusCode, b)
	}
	return nil
}

// IdleMemory is the resident memory an idle upstream session costs each
// proxy, in KiB: the proxy's growth from 1 to 1+idleSessions servers,
// divided by idleSessions. The server processes themselves are not counted
// (UpstreamKiB is one echo server's).
type IdleMemory struct {
	Sessions    int                `json:"sessions"`
	PerSession  map[string]float64 `json:"per_session_kib"`
	Base        map[string]float64 `json:"with_one_server_kib"`
	UpstreamKiB float64            `json:"upstream_process_kib"`
}

const idleSessions = 40

func (e *env) idleMemory(ctx context.Context) (IdleMemory, error) {
	res := IdleMemory{Sessions: idleSessions, PerSession: map[string]float64{}, Base: map[string]float64{}}
	for _, name := range []string{pathCaddy, pathMcpo} {
		var rss [2]int64
		for i, n := range []int{1, 1 + idleSessions} {
			p, err := e.startServers(ctx, name, n)
			if err != nil {
				return res, fmt.Errorf("%s with %d servers: %w", name, n, err)
			}
			rss[i] = settledRSS(ctx, p)
			if name == pathCaddy && n > 1 {
				var up int64
				ups := 0
				for _, pi := range tree(p.p.pid()) {
					if strings.Contains(pi.cmdline, e.echoBin) {
						up += pi.rss
						ups++
					}
				}
				if ups > 0 {
					res.UpstreamKiB = float64(up) / float64(ups) / 1024
				}
			}
			p.close()
		}
		res.Base[name] = float64(rss[0]) / 1024
		res.PerSession[name] = float64(rss[1]-rss[0]) / idleSessions / 1024
		log.Printf("idle memory %-11s %.0f KiB with 1 server, %.0f KiB per more session", name, res.Base[name], res.PerSession[name])
	}
	return res, nil
}

// settledRSS is a proxy's resident memory once start-up has settled: the
// median of five samples taken a second apart, after three seconds.
func settledRSS(ctx context.Context, p *httpPath) int64 {
	var samples []int64
	wait := 3 * time.Second
	for range 5 {
		select {
		case <-ctx.Done():
			return 0
		case <-time.After(wait):
		}
		wait = time.Second
		samples = append(samples, usageOf(p.proxy()).rss)
	}
	slices.Sort(samples)
	return samples[len(samples)/2]
}

// startServers starts a proxy of n echo servers and waits until all are
// ready.
func (e *env) startServers(ctx context.Context, name string, n int) (*httpPath, error) {
	if name == pathMcpo {
		servers := map[string]any{}
		for i := range n {
			servers[fmt.Sprintf("s%02d", i)] = map[string]any{"command": e.echoBin}
		}
		return e.startMcpo(ctx, "mcpo-idle", servers)
	}
	var b strings.Builder
	b.WriteString("mcpo /many {\n")
	for i := range n {
		fmt.Fprintf(&b, "\t\tserver s%02d {\n\t\t\tcommand %s\n\t\t}\n", i, e.echoBin)
	}
	b.WriteString("\t}")
	c, err := e.startCaddy(ctx, "caddy-idle", b.String(), "/many")
	if err != nil {
		return nil, err
	}
	return &c.httpPath, nil
}

// profile profiles a path that can be: the CPU time of the floor and of
// caddy-mcpo on each protocol era and on its MCP face, broken down, and
// the allocations of caddy-mcpo and of its MCP face, whose top entries go
// into <work>/profiles/allocs.txt and <leg>.allocs.txt.
func (e *env) profile(ctx context.Context, name string, p path) (*Profile, error) {
	switch h := p.(type) {
	case *httpPath:
		if name != pathFloor {
			return nil, nil
		}
		return e.profilePath(ctx, name, p, h.client, h.base, e.floorBin)
	case *caddyPath:
		if name != pathCaddy && name != pathModern {
			return nil, nil
		}
		prof, err := e.profilePath(ctx, name, p, h.client, h.admin, e.caddyBin)
		if err != nil || name != pathCaddy {
			return prof, err
		}
		return prof, e.allocProfile(ctx, h, "allocs")
	case *facePath:
		prof, err := e.profilePath(ctx, name, p, h.client, h.admin, e.caddyBin)
		if err != nil {
			return prof, err
		}
		return prof, e.allocProfile(ctx, h.caddyPath, name+".allocs")
	case *postFacePath:
		if name == pathRespondFace {
			return nil, nil
		}
		prof, err := e.profilePath(ctx, name, p, h.client, h.admin, e.caddyBin)
		if err != nil {
			return prof, err
		}
		return prof, e.allocProfile(ctx, h.caddyPath, name+".allocs")
	}
	return nil, nil
}

// allocProfile writes caddy's allocation profile, after the load of the
// CPU profile, with its top entries, into <work>/profiles: <file>.pprof
// and <file>.txt.
func (e *env) allocProfile(ctx context.Context, c *caddyPath, file string) error {
	dir := filepath.Join(e.o.work, "profiles")
	b, err := fetchURL(ctx, c.client, c.admin+"/debug/pprof/allocs")
	if err != nil {
		return err
	}
	prof := filepath.Join(dir, file+".pprof")
	if err := os.WriteFile(prof, b, 0o644); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-top", "-nodecount=40", "-sample_index=alloc_space", e.caddyBin, prof).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof: %w\n%s", err, out)
	}
	log.Printf("profile: %s", filepath.Join(dir, file+".txt"))
	return os.WriteFile(filepath.Join(dir, file+".txt"), out, 0o644)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Results is everything one run measured; results.json holds it as is.
type Results struct {
	Started    time.Time         `json:"started"`
	Finished   time.Time         `json:"finished"`
	Machine    Machine           `json:"machine"`
	Versions   map[string]string `json:"versions"`
	Cells      []Cell            `json:"cells"`
	Startup    Startup           `json:"startup"`
	Reload     Reload            `json:"reload"`
	Document   Document          `json:"document"`
	IdleMemory IdleMemory        `json:"idle_memory"`
	Bodies     *BodyMemory       `json:"bodies,omitempty"`
	Sessions   *Sessions         `json:"sessions,omitempty"`
	FacePairs  *FacePairs        `json:"face_pairs,omitempty"`
	Profiles   []Profile         `json:"profiles,omitempty"`
}

// Cell is one upstream case through one path at one concurrency.
type Cell struct {
	Upstream          string     `json:"upstream"`
	Path              string     `json:"path"`
	Load              LoadResult `json:"load"`
	ProxyCPUSeconds   float64    `json:"proxy_cpu_seconds,omitempty"`
	ProxyCPUPerCallUS float64    `json:"proxy_cpu_us_per_call,omitempty"`
	ProxyPeakRSSMB    float64    `json:"proxy_peak_rss_mib,omitempty"`
	// The proxy's heap allocations per call, objects and bytes, for a
	// proxy that gives them (a Caddy: its admin API's /debug/vars). The
	// few of its timers and health checks during the load are counted in.
	ProxyAllocsPerCall float64 `json:"proxy_allocs_per_call,omitempty"`
	ProxyBytesPerCall  float64 `json:"proxy_bytes_per_call,omitempty"`
	// CPU time per call of the client (the load generator, or the direct
	// MCP client) and of the upstream server.
	ClientCPUPerCallUS   float64 `json:"client_cpu_us_per_call"`
	UpstreamCPUPerCallUS float64 `json:"upstream_cpu_us_per_call"`
}

// Machine describes where the run happened.
type Machine struct {
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	Kernel string `json:"kernel"`
	Go     string `json:"go"`
}

func describeMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// versions names what ran: the repository's commit and the Python
// packages' requirements.
func versions(ctx context.Context, o options) map[string]string {
	v := map[string]string{"mcpo": o.mcpo, "mcpo runs with": o.mcpoWith, "mcp-server-time": o.timeServer}
	if out, err := exec.CommandContext(ctx, "git", "-C", o.repo, "describe", "--always", "--dirty").Output(); err == nil {
		v["caddy-mcpo"] = strings.TrimSpace(string(out))
	}
	return v
}

// write puts results.json, results.md and, for a run that measured the
// paths, results.png into dir.
func write(dir string, r *Results) error {
	if err := writeJSONFile(filepath.Join(dir, "results.json"), r); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(markdown(r)), 0o644); err != nil {
		return err
	}
	if len(r.Profiles) > 0 {
		if err := os.WriteFile(filepath.Join(dir, "profile.md"), []byte(markdownProfiles(r)), 0o644); err != nil {
			return err
		}
	}
	if len(r.Cells) == 0 {
		return nil
	}
	return chart(r, filepath.Join(dir, "results.png"))
}

// README markers around the benchmark's section, which write fills in.
const (
	readmeStart = "<!-- bench:start (written by make bench) -->"
	readmeEnd   = "<!-- bench:end -->"
)

// updateReadme puts the results' tables between the README's markers.
func updateReadme(readme string, r *Results) error {
	b, err := os.ReadFile(readme)
	if err != nil {
		return err
	}
	text := string(b)
	i, j := strings.Index(text, readmeStart), strings.Index(text, readmeEnd)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %q ... %q section", readme, readmeStart, readmeEnd)
	}
	section := readmeStart + "\n\n" + markdown(r) + "\n![Throughput and latency per concurrency](docs/bench/results.png)\n\n"
	return os.WriteFile(readme, []byte(text[:i]+section+text[j:]), 0o644)
}

// rerender writes results.md and results.png again from a results.json,
// and the README's section if readme is set.
func rerender(file, readme string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if err := write(filepath.Dir(file), &r); err != nil {
		return err
	}
	if readme != "" {
		return updateReadme(readme, &r)
	}
	return nil
}

// cell finds a cell of the results.
func (r *Results) cell(upstream, path string, conc int) *Cell {
	for i := range r.Cells {
		c := &r.Cells[i]
		if c.Upstream == upstream && c.Path == path && c.Load.Concurrency == conc {
			return c
		}
	}
	return nil
}

// upstreams and concurrencies list the results' dimensions in run order.
func (r *Results) upstreams() []string {
	var out []string
	for _, c := range r.Cells {
		if !contains(out, c.Upstream) {
			out = append(out, c.Upstream)
		}
	}
	return out
}

func (r *Results) concurrencies() []int {
	var out []int
	for _, c := range r.Cells {
		if !contains(out, c.Load.Concurrency) {
			out = append(out, c.Load.Concurrency)
		}
	}
	return out
}

func contains[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// markdown renders the results as the tables the README shows.
func markdown(r *Results) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "Measured %s on %s (%d cores, Linux %s, %s); caddy-mcpo %s, %s with %s, %s.\n",
		r.Started.Format("2006-01-02"), r.Machine.CPU, r.Machine.Cores, r.Machine.Kernel, r.Machine.Go,
		r.Versions["caddy-mcpo"], r.Versions["mcpo"], strings.ReplaceAll(r.Versions["mcpo runs with"], ",", ", "), r.Versions["mcp-server-time"])
	fmt.Fprintf(&b, "The load generator, the proxy and the upstream share the machine.\n\n")

	if len(r.Cells) > 0 {
		markdownLoad(&b, r)
	}
	if r.Startup.Runs > 0 {
		markdownExtras(&b, r)
	}
	if r.Bodies != nil {
		markdownBodies(&b, r.Bodies)
	}
	if r.Sessions != nil {
		markdownSessions(&b, r.Sessions)
	}
	if r.FacePairs != nil {
		markdownFacePairs(&b, r.FacePairs)
	}
	if len(r.Cells) > 0 || r.Sessions != nil || r.FacePairs != nil {
		markdownTargets(&b, r)
	}
	return b.String()
}

// paths lists the paths the results measured, in report order (that of
// legs).
func (r *Results) paths() []string {
	var out []string
	for _, l := range legs {
		for _, c := range r.Cells {
			if c.Path == l.name {
				out = append(out, l.name)
				break
			}
		}
	}
	return out
}

// loadRatios are the ratio columns of the throughput and latency tables:
// a path's figure over another's, when both were measured. The MCP face's
// ratios to the REST face have a table of their own (markdownFace).
var loadRatios = []struct{ num, den string }{{pathCaddy, pathFloor}, {pathModern, pathFloor}, {pathCaddy, pathDirect}, {pathCaddy, pathMcpo}}

// markdownLoad renders throughput, latency and cost per path.
func markdownLoad(b *bytes.Buffer, r *Results) {
	paths := r.paths()
	var ratios []struct{ num, den string }
	for _, q := range loadRatios {
		if contains(paths, q.num) && contains(paths, q.den) {
			ratios = append(ratios, q)
		}
	}
	header := func(cols []string, suffix func(num, den string) string) {
		fmt.Fprintf(b, "| upstream | concurrency | %s |", strings.Join(cols, " | "))
		for _, q := range ratios {
			fmt.Fprintf(b, " %s |", suffix(label(q.num), label(q.den)))
		}
		fmt.Fprintf(b, "\n|---|---:|%s%s\n", strings.Repeat("---:|", len(cols)), strings.Repeat("---:|", len(ratios)))
	}
	// rows writes a row per upstream and concurrency: a cell per path, then
	// the ratios of value.
	rows := func(cell func(*Cell) string, value func(*Cell) float64) {
		for _, u := range r.upstreams() {
			for _, c := range r.concurrencies() {
				fmt.Fprintf(b, "| %s | %d |", u, c)
				v := map[string]float64{}
				for _, p := range paths {
					text := ""
					if cl := r.cell(u, p, c); cl != nil {
						text, v[p] = cell(cl), value(cl)
					}
					fmt.Fprintf(b, " %s |", text)
				}
				for _, q := range ratios {
					fmt.Fprintf(b, " %s |", ratio(v[q.num], v[q.den]))
				}
				fmt.Fprintln(b)
			}
		}
	}

	fmt.Fprintf(b, "**Throughput** (calls/s; each cell a fixed number of calls after a warm-up)\n\n")
	header(labels(paths), func(num, den string) string { return num + " / " + den })
	rows(func(c *Cell) string { return fmt.Sprintf("%.0f", c.Load.Throughput) },
		func(c *Cell) float64 { return c.Load.Throughput })

	fmt.Fprintf(b, "\n**Latency** (ms, p50 / p99 / max)\n\n")
	header(labels(paths), func(num, den string) string { return "p99 " + num + " / " + den })
	rows(func(c *Cell) string {
		l := c.Load.Latency
		return fmt.Sprintf("%.2f / %.2f / %.1f", l.P50, l.P99, l.Max)
	}, func(c *Cell) float64 { return c.Load.Latency.P99 })

	fmt.Fprintf(b, "\n**Cost** (CPU time per call, µs, of client + proxy + upstream: the client is the load generator, or for direct the MCP client; "+
		"peak resident memory of the proxy; errors)\n\n")
	ratios = nil
	var proxies []string
	for _, p := range paths {
		if l, _ := legOf(p); !l.direct {
			proxies = append(proxies, p)
		}
	}
	header(append(labels(paths), "peak RSS, MiB ("+strings.Join(labels(proxies), " / ")+")", "errors ("+strings.Join(labels(paths), " / ")+")"), nil)
	for _, u := range r.upstreams() {
		for _, c := range r.concurrencies() {
			fmt.Fprintf(b, "| %s | %d |", u, c)
			var rss, errs []string
			for _, p := range paths {
				cl, l := r.cell(u, p, c), legFor(p)
				switch {
				case cl == nil:
					fmt.Fprintf(b, " |")
					errs = append(errs, "–")
					if !l.direct {
						rss = append(rss, "–")
					}
					continue
				case l.direct:
					fmt.Fprintf(b, " %.0f + %.0f |", cl.ClientCPUPerCallUS, cl.UpstreamCPUPerCallUS)
				default:
					fmt.Fprintf(b, " %.0f + %.0f + %.0f |", cl.ClientCPUPerCallUS, cl.ProxyCPUPerCallUS, cl.UpstreamCPUPerCallUS)
					rss = append(rss, fmt.Sprintf("%.0f", cl.ProxyPeakRSSMB))
				}
				errs = append(errs, fmt.Sprint(cl.Load.Errors))
			}
			fmt.Fprintf(b, " %s | %s |\n", strings.Join(rss, " / "), strings.Join(errs, " / "))
		}
	}
	markdownFloor(b, r)
	markdownFace(b, r)
}

// markdownFloor renders caddy-mcpo against the floor on the echo
// upstream: throughput, p99, and the proxy's CPU time per call against
// the floor's plus Caddy's own (a static respond).
func markdownFloor(b *bytes.Buffer, r *Results) {
	if !contains(r.paths(), pathFloor) {
		return
	}
	fmt.Fprintf(b, "\n**Against the floor** (echo upstream; the floor is bench/floor, the least a bridge does: net/http, one JSON-RPC line per call over stdio, "+
		"answers matched by id, the first text back; caddy-respond is Caddy answering the route with a static `respond`, Caddy's own cost)\n\n")
	fmt.Fprintf(b, "| path | concurrency | calls/s | / floor | p99 ms | / floor | proxy CPU µs/call | / floor | / (1.25 × floor + respond) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range r.concurrencies() {
		floor, respond := r.cell("echo", pathFloor, c), r.cell("echo", pathRespond, c)
		if floor == nil {
			continue
		}
		for _, p := range append([]string{pathFloor, pathRespond}, floorLegs()...) {
			cl := r.cell("echo", p, c)
			if cl == nil {
				continue
			}
			budget := ""
			if respond != nil && p != pathFloor && p != pathRespond {
				budget = ratio(cl.ProxyCPUPerCallUS, 1.25*floor.ProxyCPUPerCallUS+respond.ProxyCPUPerCallUS)
			}
			fmt.Fprintf(b, "| %s | %d | %.0f | %s | %.2f | %s | %.0f | %s | %s |\n", label(p), c,
				cl.Load.Throughput, ratio(cl.Load.Throughput, floor.Load.Throughput),
				cl.Load.Latency.P99, ratio(cl.Load.Latency.P99, floor.Load.Latency.P99),
				cl.ProxyCPUPerCallUS, ratio(cl.ProxyCPUPerCallUS, floor.ProxyCPUPerCallUS), budget)
		}
	}
}

// markdownFace renders the legs of the MCP face beside the REST face they
// are measured against and the direct client: throughput, latency and the
// proxy's CPU time per call, each with its ratio to the REST face's.
func markdownFace(b *bytes.Buffer, r *Results) {
	paths := r.paths()
	var faces []string
	rest := ""
	for _, l := range legs {
		if l.rest != "" && contains(paths, l.name) && contains(paths, l.rest) && (rest == "" || rest == l.rest) {
			faces, rest = append(faces, l.name), l.rest
		}
	}
	if len(faces) == 0 {
		return
	}
	fmt.Fprintf(b, "\n**The MCP face against the REST face** (%s: the tools are called at `<mount>/mcp` of the same Caddy configuration, "+
		"servers and load as %s's `POST <mount>/<tool>`: by mcp-go clients, with a session of their own per call under way, so one per load worker, "+
		"each opened and its tools listed before the measurement; or, on the plain-POST legs, by posts of prepared JSON-RPC messages, "+
		"as the REST leg posts prepared bodies (on 2025-11-25 in one session begun before the measurement); proxy CPU is Caddy's; "+
		"client CPU is the load generator's, which shares the machine: what a client costs lowers the throughput of every path on a small one)\n\n",
		strings.Join(labels(faces), " and "), label(rest))
	fmt.Fprintf(b, "| upstream | concurrency | path | calls/s | / REST | p50 / p99 ms | p99 / REST | client CPU µs/call | proxy CPU µs/call | / REST |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n")
	rows := append([]string{pathDirect, pathRespond, pathRespondFace, rest}, faces...)
	for _, u := range r.upstreams() {
		for _, c := range r.concurrencies() {
			rc := r.cell(u, rest, c)
			if rc == nil {
				continue
			}
			for _, p := range rows {
				cl := r.cell(u, p, c)
				if cl == nil {
					continue
				}
				cpu, cpuRatio := "", ""
				if !legFor(p).direct {
					cpu, cpuRatio = fmt.Sprintf("%.0f", cl.ProxyCPUPerCallUS), ratio(cl.ProxyCPUPerCallUS, rc.ProxyCPUPerCallUS)
				}
				fmt.Fprintf(b, "| %s | %d | %s | %.0f | %s | %.2f / %.2f | %s | %.0f | %s | %s |\n", u, c, label(p),
					cl.Load.Throughput, ratio(cl.Load.Throughput, rc.Load.Throughput),
					cl.Load.Latency.P50, cl.Load.Latency.P99, ratio(cl.Load.Latency.P99, rc.Load.Latency.P99), cl.ClientCPUPerCallUS, cpu, cpuRatio)
			}
		}
	}
	markdownFaceShape(b, r, rest)
}

// markdownFaceShape splits the CPU time of an echo call through the REST
// face and through the MCP face (plain POSTs, 2025-11-25) into Caddy's own
// cost for a request and answer of that shape (a static respond of them)
// and the rest, the module's.
func markdownFaceShape(b *bytes.Buffer, r *Results, rest string) {
	header := false
	for _, c := range r.concurrencies() {
		rs, rsFace, rc, face := r.cell("echo", pathRespond, c), r.cell("echo", pathRespondFace, c), r.cell("echo", rest, c), r.cell("echo", pathFacePost, c)
		if rs == nil || rsFace == nil || rc == nil || face == nil {
			continue
		}
		if !header {
			fmt.Fprintf(b, "\n**The cost of the MCP face's shape** (echo: %s and %s answer the request of %s and of %s with a static `respond` of their answer, "+
				"headers included: Caddy's and the client's own cost for a call of that shape; what the proxy spends beyond it is the module's)\n\n",
				label(pathRespond), label(pathRespondFace), label(rest), label(pathFacePost))
			fmt.Fprintf(b, "| concurrency | proxy CPU µs/call of a respond: REST / MCP shape | %s beyond its respond | %s beyond its respond | / REST | client CPU µs/call: REST / MCP shape |\n|---:|---:|---:|---:|---:|---:|\n",
				label(rest), label(pathFacePost))
			header = true
		}
		restOwn, faceOwn := rc.ProxyCPUPerCallUS-rs.ProxyCPUPerCallUS, face.ProxyCPUPerCallUS-rsFace.ProxyCPUPerCallUS
		fmt.Fprintf(b, "| %d | %.0f / %.0f | %.0f | %.0f | %s | %.0f / %.0f |\n", c, rs.ProxyCPUPerCallUS, rsFace.ProxyCPUPerCallUS,
			restOwn, faceOwn, ratio(faceOwn, restOwn), rs.ClientCPUPerCallUS, rsFace.ClientCPUPerCallUS)
	}
}

// markdownExtras renders start-up, reload, documents and idle memory.
func markdownExtras(b *bytes.Buffer, r *Results) {
	fmt.Fprintf(b, "\n**Start, reload, documents, memory**\n\n| measure | direct | caddy-mcpo | mcpo |\n|---|---:|---:|---:|\n")
	fmt.Fprintf(b, "| process start to first successful call (median of %d) | %.0f ms | %.0f ms | %.0f ms |\n",
		r.Startup.Runs, r.Startup.MS[pathDirect], r.Startup.MS[pathCaddy], r.Startup.MS[pathMcpo])
	fmt.Fprintf(b, "| resident memory with one server | | %.0f KiB | %.0f KiB |\n", r.IdleMemory.Base[pathCaddy], r.IdleMemory.Base[pathMcpo])
	fmt.Fprintf(b, "| resident memory per more idle session (%d added) | | %.0f KiB | %.0f KiB |\n",
		r.IdleMemory.Sessions, r.IdleMemory.PerSession[pathCaddy], r.IdleMemory.PerSession[pathMcpo])
	fmt.Fprintf(b, "\n- `caddy reload` with %d unchanged stdio servers: %.0f ms (median of %d; the admin API's `POST /load` alone: %.0f ms); processes restarted: **%d**.\n",
		r.Reload.Servers, r.Reload.CLIms, r.Reload.Runs, r.Reload.APIms, r.Reload.Restarted)
	fmt.Fprintf(b, "- A server with %d tools, after a tool listing: %.1f ms for the first call of a tool; its OpenAPI document (%d KiB) %.0f ms for the first request (%.0f ms in a new process), %.2f ms after; %.0f bytes of live heap per listed tool.\n",
		r.Document.Tools, r.Document.FirstCallMS, r.Document.Bytes>>10, r.Document.FirstMS, r.Document.ColdMS, r.Document.CachedMS, r.Document.HeapPerTool)
	fmt.Fprintf(b, "- One idle echo server process (not counted above): %.0f KiB resident.\n", r.IdleMemory.UpstreamKiB)
	if base := r.IdleMemory.Base[pathCaddy]; r.Document.RSSKiB > 0 && base > 0 && r.Document.Tools > 0 {
		fmt.Fprintf(b, "- caddy-mcpo's resident memory per listed tool (a server of %d tools, its document built: %.0f KiB, against %.0f KiB with one echo server): %.1f KiB.\n",
			r.Document.Tools, r.Document.RSSKiB, base, (r.Document.RSSKiB-base)/float64(r.Document.Tools))
	}
	if r.IdleMemory.PerSession[pathCaddy] > 0 {
		targetAtMost(b, "caddy-mcpo's resident memory per idle session < 200 KiB", r.IdleMemory.PerSession[pathCaddy]/200, 1)
	}

}

// markdownBodies renders what request bodies in flight cost in memory.
func markdownBodies(b *bytes.Buffer, m *BodyMemory) {
	fmt.Fprintf(b, "\n**Memory per MiB of request body in flight** (%d clients at once, or as many as the table says, each posting %d × %d MiB to the echo server through caddy-mcpo, "+
		"a 503 posted again after %s; caddy's peak resident memory, VmHWM)\n\n", m.Concurrency, m.CallsPerClient, m.BodyBytes>>20, bodyRetryDelay)
	fmt.Fprintf(b, "| tool | clients | `max_request_bytes_in_flight` | body in flight, at most | idle RSS | peak RSS | peak RSS per MiB in flight | growth per MiB in flight | calls | 503s posted again | errors |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, run := range m.Runs {
		tool := "echo (the body back)"
		if run.Tool == "discard" {
			tool = "discard (a 2-byte reply)"
		}
		budget := run.Budget + " (off)"
		if run.Budget == "" {
			budget = "default (64 MiB)"
		}
		clients := run.Clients
		if clients == 0 { // a run from before the runs per concurrent call
			clients = m.Concurrency
		}
		fmt.Fprintf(b, "| %s | %d | %s | %.0f MiB | %.0f MiB | %.0f MiB | %.2f MiB | %.2f MiB | %d | %d | %d |\n", tool, clients, budget,
			run.InFlightMiB, run.IdleRSSMiB, run.PeakRSSMiB, run.PeakPerMiB, run.GrowthPerMiB, run.Calls, run.Rejected, run.Errors)
	}
	fmt.Fprintf(b, "\n")
	bodyTargets(b, m)
}

// bodyTargets renders the target of the runs per concurrent call: a call
// in flight takes at most twice its body.
func bodyTargets(b *bytes.Buffer, m *BodyMemory) {
	for _, run := range m.Runs {
		if run.Clients == 0 || run.Clients == m.Concurrency || run.Tool != "echo" {
			continue
		}
		targetAtMost(b, fmt.Sprintf("echo, %d client%s: Caddy's growth per MiB of request body in flight ≤ 2 MiB", run.Clients, plural(run.Clients)),
			run.GrowthPerMiB, 2)
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// markdownSessions renders what a session per caller costs.
func markdownSessions(b *bytes.Buffer, s *Sessions) {
	fmt.Fprintf(b, "\n**A session per caller** (`isolation user`, the echo server over stdio, against the same server shared, in one Caddy)\n\n")
	fmt.Fprintf(b, "| measure | session per caller | shared |\n|---|---:|---:|\n")
	fmt.Fprintf(b, "| first call of a new caller, its session's start included (p50 / p99 of %d) | %.2f / %.2f ms | |\n",
		s.NewCallers, s.FirstCall.P50, s.FirstCall.P99)
	fmt.Fprintf(b, "| calls after it, one at a time (p50 / p99) | %.3f / %.3f ms | %.3f / %.3f ms |\n",
		s.NextCall.P50, s.NextCall.P99, s.SharedCall.P50, s.SharedCall.P99)
	fmt.Fprintf(b, "\n| upstream, %d callers at concurrency %d | session per caller | shared | ratio | one caller's session alone | CPU per call, Caddy + upstreams: per caller / shared / one caller | without Caddy: a process per caller / one process, ratio |\n|---|---:|---:|---:|---:|---:|---:|\n",
		s.Users, s.Concurrency)
	cpu := func(c SessionCell) string {
		return fmt.Sprintf("%.0f + %.0f µs", c.CaddyCPUPerCallUS, c.UpstreamCPUPerCallUS)
	}
	for _, l := range s.Loads {
		fmt.Fprintf(b, "| %s | %.0f calls/s | %.0f calls/s | %s | %.0f calls/s | %s / %s / %s | %.0f / %.0f calls/s, %s |\n", l.Case,
			l.PerUser.Load.Throughput, l.Shared.Load.Throughput, ratio(l.PerUser.Load.Throughput, l.Shared.Load.Throughput),
			l.OneUser.Load.Throughput, cpu(l.PerUser), cpu(l.Shared), cpu(l.OneUser),
			l.DirectPerUser.Throughput, l.DirectShared.Throughput, ratio(l.DirectPerUser.Throughput, l.DirectShared.Throughput))
	}
	fmt.Fprintf(b, "\n- Caddy's resident memory per idle caller's session (%d started): %.0f KiB, over %.0f KiB; each session's echo server process, not counted: %.0f KiB.\n",
		s.IdleSessions, s.PerSessionKiB, s.BaseKiB, s.UpstreamKiB)
}

// markdownTargets renders the targets of the echo upstream, of reload,
// and of sessions per caller.
func markdownTargets(b *bytes.Buffer, r *Results) {
	fmt.Fprintf(b, "\n**Targets** (echo upstream)\n\n")
	if s := r.Sessions; s != nil {
		for _, l := range s.Loads {
			if l.Shared.Load.Throughput > 0 {
				target(b, fmt.Sprintf("%s: throughput of %d callers with a session each at concurrency %d ≥ 0.9× a shared server's",
					l.Case, s.Users, s.Concurrency), l.PerUser.Load.Throughput/l.Shared.Load.Throughput, 0.9)
			}
		}
	}
	pairTargets(b, r.FacePairs)
	if len(r.Cells) == 0 {
		return
	}
	top := r.concurrencies()[len(r.concurrencies())-1]
	if cc, mc, dc := r.cell("echo", pathCaddy, top), r.cell("echo", pathMcpo, top), r.cell("echo", pathDirect, top); cc != nil && mc != nil && dc != nil {
		target(b, fmt.Sprintf("throughput at concurrency %d ≥ 10× mcpo's", top), cc.Load.Throughput/mc.Load.Throughput, 10)
		target(b, fmt.Sprintf("throughput at concurrency %d ≥ 0.5× the direct client's", top), cc.Load.Throughput/dc.Load.Throughput, 0.5)
	}
	if cc, mc := r.cell("echo", pathCaddy, 16), r.cell("echo", pathMcpo, 16); cc != nil && mc != nil {
		target(b, "p99 latency at concurrency 16 ≤ 1/10 of mcpo's", mc.Load.Latency.P99/cc.Load.Latency.P99, 10)
	}
	floorTargets(b, r)
	faceTargets(b, r)
	if r.Reload.Servers == 0 {
		return
	}
	met := "met"
	if r.Reload.Restarted != 0 {
		met = "missed"
	}
	fmt.Fprintf(b, "- reload with %d unchanged servers restarts 0 processes: %d, %s\n", r.Reload.Servers, r.Reload.Restarted, met)
}

// floorTargets renders the targets against the floor, of caddy-mcpo on
// each protocol era measured.
func floorTargets(b *bytes.Buffer, r *Results) {
	for _, p := range floorLegs() {
		name := label(p)
		for _, conc := range []int{16, 64} {
			if cl, fl := r.cell("echo", p, conc), r.cell("echo", pathFloor, conc); cl != nil && fl != nil && fl.Load.Throughput > 0 {
				target(b, fmt.Sprintf("%s throughput at concurrency %d ≥ 0.8× the floor's", name, conc), cl.Load.Throughput/fl.Load.Throughput, 0.8)
			}
		}
		if cl, fl := r.cell("echo", p, 16), r.cell("echo", pathFloor, 16); cl != nil && fl != nil && fl.Load.Latency.P99 > 0 {
			targetAtMost(b, fmt.Sprintf("%s p99 latency at concurrency 16 ≤ 1.25× the floor's", name), cl.Load.Latency.P99/fl.Load.Latency.P99, 1.25)
		}
		for _, conc := range []int{16, 64} {
			cl, fl, rs := r.cell("echo", p, conc), r.cell("echo", pathFloor, conc), r.cell("echo", pathRespond, conc)
			if cl == nil || fl == nil || rs == nil {
				continue
			}
			if budget := 1.25*fl.ProxyCPUPerCallUS + rs.ProxyCPUPerCallUS; budget > 0 {
				targetAtMost(b, fmt.Sprintf("%s CPU per call at concurrency %d ≤ 1.25× the floor's + Caddy's respond (%.0f µs; got %.0f µs)",
					name, conc, budget, cl.ProxyCPUPerCallUS), cl.ProxyCPUPerCallUS/budget, 1)
			}
		}
	}
}

// faceTargets renders the targets of the MCP face: on the echo upstream,
// at each concurrency, ≥ 0.9× the throughput of its REST leg.
func faceTargets(b *bytes.Buffer, r *Results) {
	for _, l := range legs {
		if l.rest == "" {
			continue
		}
		for _, conc := range r.concurrencies() {
			if cl, rest := r.cell("echo", l.name, conc), r.cell("echo", l.rest, conc); cl != nil && rest != nil && rest.Load.Throughput > 0 {
				target(b, fmt.Sprintf("%s throughput at concurrency %d ≥ 0.9× the REST face's (%s)", label(l.name), conc, label(l.rest)),
					cl.Load.Throughput/rest.Load.Throughput, 0.9)
			}
		}
	}
}

// targetAtMost renders a target that got must not exceed.
func targetAtMost(b *bytes.Buffer, what string, got, limit float64) {
	met := "met"
	if got > limit {
		met = "missed"
	}
	fmt.Fprintf(b, "- %s: %.2f×, %s\n", what, got, met)
}

func target(b *bytes.Buffer, what string, got, want float64) {
	met := "met"
	if got < want {
		met = "missed"
	}
	fmt.Fprintf(b, "- %s: %.2f×, %s\n", what, got, met)
}

// chart draws, for each upstream, throughput and latency percentiles
// against concurrency, every leg measured on log scales.
func chart(r *Results, file string) error {
	ups, concs := r.upstreams(), r.concurrencies()
	ticks := make([]plot.Tick, len(concs))
	for i, c := range concs {
		ticks[i] = plot.Tick{Value: float64(c), Label: fmt.Sprint(c)}
	}
	plots := make([][]*plot.Plot, len(ups))
	for row, u := range ups {
		tp, lat := plot.New(), plot.New()
		tp.Title.Text, lat.Title.Text = u+": throughput", u+": latency p50 (solid), p99 (dashed)"
		tp.Y.Label.Text, lat.Y.Label.Text = "calls/s", "ms"
		for _, p := range []*plot.Plot{tp, lat} {
			p.X.Label.Text = "concurrency"
			p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
			p.X.Tick.Marker = plot.ConstantTicks(ticks)
			p.Y.Tick.Marker = niceLogTicks{}
			p.Legend.Top, p.Legend.Left = true, true
		}
		drawn := 0 // legs in the legend
		for _, l := range legs {
			var thr, p50, p99 plotter.XYs
			for _, c := range concs {
				if cell := r.cell(u, l.name, c); cell != nil && cell.Load.Calls > 0 {
					thr = append(thr, plotter.XY{X: float64(c), Y: cell.Load.Throughput})
					p50 = append(p50, plotter.XY{X: float64(c), Y: max(cell.Load.Latency.P50, 0.001)})
					p99 = append(p99, plotter.XY{X: float64(c), Y: max(cell.Load.Latency.P99, 0.001)})
				}
			}
			if len(thr) == 0 {
				continue
			}
			drawn++
			if err := addLine(tp, l, thr, false, true); err != nil {
				return err
			}
			if err := addLine(lat, l, p50, false, true); err != nil {
				return err
			}
			if err := addLine(lat, l, p99, true, false); err != nil {
				return err
			}
		}
		for _, p := range []*plot.Plot{tp, lat} {
			roomForLegend(p, drawn)
		}
		plots[row] = []*plot.Plot{tp, lat}
	}
	img := vgimg.New(vg.Points(900), vg.Points(300*float64(len(ups))))
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(ups), Cols: 2, PadX: vg.Points(20), PadY: vg.Points(20),
		PadTop: vg.Points(10), PadBottom: vg.Points(10), PadLeft: vg.Points(10), PadRight: vg.Points(10)}
	canvases := plot.Align(plots, tiles, dc)
	for row := range plots {
		for col := range plots[row] {
			plots[row][col].Draw(canvases[row][col])
		}
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = vgimg.PngCanvas{Canvas: img}.WriteTo(f)
	return err
}

// roomForLegend widens a plot's log Y axis so that the lines stay below
// its legend at the top: the more legs, the more room.
func roomForLegend(p *plot.Plot, entries int) {
	p.Y.Min /= 1.5
	// The share of the axis the legend takes, at about 4.5% a line.
	share := min(0.6, 0.04+0.045*float64(entries))
	span := math.Log10(p.Y.Max / p.Y.Min)
	p.Y.Max *= math.Pow(10, max(share*span/(1-share), math.Log10(4)))
}

// addLine adds one leg's series to a plot, in the leg's color.
func addLine(p *plot.Plot, l leg, xys plotter.XYs, dashed, legend bool) error {
	line, points, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	line.Color, points.Color = l.color, l.color
	line.Width = vg.Points(1.5)
	if dashed {
		line.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
	}
	p.Add(line, points)
	if legend {
		p.Legend.Add(label(l.name), line, points)
	}
	return nil
}

// niceLogTicks marks a log axis at 1, 2 and 5 times the powers of ten,
// labelling each, so that even a range within one decade has labels.
type niceLogTicks struct{}

func (niceLogTicks) Ticks(lo, hi float64) []plot.Tick {
	var ticks []plot.Tick
	for exp := math.Floor(math.Log10(lo)); math.Pow(10, exp) <= hi; exp++ {
		for _, m := range []float64{1, 2, 5} {
			v := m * math.Pow(10, exp)
			if v < lo || v > hi {
				continue
			}
			ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', -1, 64)})
		}
	}
	return ticks
}

package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Profile is where one proxy spends its CPU time on the echo tool at the
// highest concurrency: a CPU profile of the proxy process taken while the
// load runs, its samples put into categories, each in µs per call.
type Profile struct {
	Path        string     `json:"path"`
	Concurrency int        `json:"concurrency"`
	Calls       int64      `json:"calls"`        // calls answered while profiling
	Seconds     float64    `json:"seconds"`      // the profile's length
	SampledUS   float64    `json:"sampled_us"`   // CPU time sampled, µs per call
	Categories  []Category `json:"categories"`   // in categoryOrder
	Top         []TopEntry `json:"top,omitzero"` // the functions with the most own time
}

// Category is the CPU time of one category, in µs per call: Flat counts a
// sample for the category of its innermost classified frame only (the
// categories add up to the whole); Cumulative for every category on its
// stack.
type Category struct {
	Name       string  `json:"name"`
	Flat       float64 `json:"flat_us_per_call"`
	Cumulative float64 `json:"cumulative_us_per_call"`
}

// TopEntry is a function with its own CPU time, µs per call.
type TopEntry struct {
	Function string  `json:"function"`
	Flat     float64 `json:"flat_us_per_call"`
}

// The categories, from the innermost frame outwards: the first frame that
// belongs to one decides a sample's flat category.
const (
	catGC       = "GC and allocation"
	catSched    = "scheduler, netpoll, futex"
	catSyscall  = "syscalls (read, write)"
	catJSON     = "JSON (encoding/json)"
	catValidate = "validation (jsonschema)"
	catMetrics  = "metrics (prometheus)"
	catLog      = "logging (zap)"
	catMCPGo    = "mcp-go client"
	// catMCPGoServer is mcp-go's server package: the MCP face's transport.
	catMCPGoServer = "mcp-go server (the MCP face)"
	catUpstream    = "caddy-mcpo: bridge/upstream"
	catBridge      = "caddy-mcpo: bridge (routing, call)"
	catHandler     = "caddy-mcpo: Caddy handler"
	catCaddy       = "Caddy (server, routes, matchers)"
	catNetHTTP     = "net/http, net, bufio"
	catFloor       = "floor: its own code"
	catOther       = "other"
)

var categoryOrder = []string{catCaddy, catNetHTTP, catHandler, catBridge, catUpstream, catValidate, catMetrics, catLog, catMCPGoServer, catMCPGo,
	catFloor, catJSON, catGC, catSched, catSyscall, catOther}

// classify returns the category of a function, or "" if it belongs to its
// caller's.
func classify(fn string) string {
	const mod = "github.com/caddy-mcpo/caddy-mcpo"
	switch {
	case hasAnyPrefix(fn, "runtime.mallocgc", "runtime.newobject", "runtime.makeslice", "runtime.growslice", "runtime.makemap",
		"runtime.gcBgMarkWorker", "runtime.gcAssistAlloc", "runtime.gcDrain", "runtime.scanobject", "runtime.bgsweep", "runtime.bgscavenge",
		"runtime.(*mheap)", "runtime.(*mcache)", "runtime.(*mcentral)", "runtime.(*sweepLocked)", "runtime.concatstring",
		"runtime.slicebytetostring", "runtime.rawstring", "runtime.rawbyteslice", "runtime.stringtoslicebyte", "runtime.mapassign",
		"runtime.makechan", "runtime.newproc", "runtime.wbBufFlush", "runtime.gcWriteBarrier", "runtime.markroot"):
		return catGC
	case hasAnyPrefix(fn, "runtime.futex", "runtime.schedule", "runtime.findRunnable", "runtime.netpoll", "runtime.stealWork",
		"runtime.usleep", "runtime.osyield", "runtime.park_m", "runtime.notesleep", "runtime.notewakeup", "runtime.wakep",
		"runtime.startm", "runtime.stopm", "runtime.epollwait", "runtime.mcall", "runtime.goexit0", "runtime.runqgrab", "runtime.nanotime"):
		return catSched
	case hasAnyPrefix(fn, "syscall.", "internal/runtime/syscall.", "runtime/internal/syscall.", "internal/poll.", "os.(*File)"):
		return catSyscall
	case hasAnyPrefix(fn, "encoding/json", "github.com/goccy/go-json", "github.com/bytedance/sonic", "github.com/tidwall/gjson", "github.com/buger/jsonparser"):
		return catJSON
	case hasAnyPrefix(fn, "github.com/santhosh-tekuri/jsonschema", "github.com/google/jsonschema-go", "github.com/kaptinlin/jsonschema"):
		return catValidate
	case hasAnyPrefix(fn, "github.com/prometheus/"):
		return catMetrics
	case hasAnyPrefix(fn, "go.uber.org/zap"):
		return catLog
	case hasAnyPrefix(fn, "github.com/mark3labs/mcp-go/server."):
		return catMCPGoServer
	case hasAnyPrefix(fn, "github.com/mark3labs/mcp-go"):
		return catMCPGo
	case hasAnyPrefix(fn, mod+"/bridge/upstream."):
		return catUpstream
	case hasAnyPrefix(fn, mod+"/bridge"):
		return catBridge
	case hasAnyPrefix(fn, mod+"."):
		return catHandler
	case hasAnyPrefix(fn, "github.com/caddyserver/"):
		return catCaddy
	case hasAnyPrefix(fn, "net/http", "net.", "net/textproto", "net/url", "bufio.", "vendor/golang.org/x/net/http"):
		return catNetHTTP
	case hasAnyPrefix(fn, "main."):
		return catFloor
	}
	return ""
}

func hasAnyPrefix(s string, prefixes ...string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// sample is one stack of a CPU profile with its time.
type sample struct {
	value  time.Duration
	frames []string // innermost first
}

// parseTraces reads the output of `go tool pprof -traces`: stacks
// separated by lines of dashes, each opening with its time.
func parseTraces(r io.Reader) ([]sample, error) {
	var out []sample
	var cur *sample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "-----------+") {
			cur = nil
			continue
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if cur == nil {
			d, err := time.ParseDuration(fields[0])
			if err != nil || len(fields) < 2 {
				continue // the header
			}
			out = append(out, sample{value: d})
			cur = &out[len(out)-1]
			fields = fields[1:]
		}
		cur.frames = append(cur.frames, fields[0])
	}
	return out, sc.Err()
}

// breakdown puts samples into categories, per call.
func breakdown(samples []sample, calls int64) (cats []Category, top []TopEntry, total time.Duration) {
	flat, cum, own := map[string]time.Duration{}, map[string]time.Duration{}, map[string]time.Duration{}
	for _, s := range samples {
		total += s.value
		if len(s.frames) > 0 {
			own[s.frames[0]] += s.value
		}
		decided := ""
		seen := map[string]bool{}
		for _, f := range s.frames {
			c := classify(f)
			if c == "" {
				continue
			}
			if decided == "" {
				decided = c
			}
			if !seen[c] {
				seen[c] = true
				cum[c] += s.value
			}
		}
		if decided == "" {
			decided = catOther
			cum[catOther] += s.value
		}
		flat[decided] += s.value
	}
	perCall := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 / float64(max(calls, 1)) }
	for _, name := range categoryOrder {
		cats = append(cats, Category{Name: name, Flat: perCall(flat[name]), Cumulative: perCall(cum[name])})
	}
	for fn, d := range own {
		top = append(top, TopEntry{Function: fn, Flat: perCall(d)})
	}
	slices.SortFunc(top, func(a, b TopEntry) int {
		return cmp.Or(cmp.Compare(b.Flat, a.Flat), strings.Compare(a.Function, b.Function))
	})
	return cats, top[:min(len(top), 25)], total
}

// profileWindow is how long each CPU profile runs.
func (e *env) profileWindow() time.Duration {
	if e.o.quick {
		return 3 * time.Second
	}
	return 10 * time.Second
}

// profilePath takes a CPU profile of a proxy serving the echo tool at the
// highest concurrency, from its net/http/pprof endpoint at pprofBase,
// keeps it in <work>/profiles and breaks it down. p makes the calls; cl
// fetches the profile; bin is the proxy's binary, for the symbols.
func (e *env) profilePath(ctx context.Context, name string, p path, cl *http.Client, pprofBase, bin string) (*Profile, error) {
	dir := filepath.Join(e.o.work, "profiles")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	echo := cases(false)[0]
	conc := e.o.concurrency[len(e.o.concurrency)-1]
	window := e.profileWindow()
	var answered atomic.Int64
	call := p.caller(echo)
	loadCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		runLoad(loadCtx, func(ctx context.Context) error {
			err := call(ctx)
			if err == nil {
				answered.Add(1)
			}
			return err
		}, conc, 0, 100_000_000, window+30*time.Second)
	}()
	defer func() { stop(); <-done }()
	time.Sleep(time.Second)
	before := answered.Load()
	began := time.Now()
	b, err := fetchURL(ctx, cl, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", pprofBase, int(window.Seconds())))
	if err != nil {
		return nil, err
	}
	prof := &Profile{Path: name, Concurrency: conc, Calls: answered.Load() - before, Seconds: time.Since(began).Seconds()}
	file := filepath.Join(dir, name+".cpu.pprof")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-traces", bin, file).Output()
	if err != nil {
		return nil, fmt.Errorf("go tool pprof -traces %s: %w", file, err)
	}
	samples, err := parseTraces(bytes.NewReader(out))
	if err != nil {
		return nil, err
	}
	var total time.Duration
	prof.Categories, prof.Top, total = breakdown(samples, prof.Calls)
	prof.SampledUS = float64(total.Nanoseconds()) / 1e3 / float64(max(prof.Calls, 1))
	log.Printf("profile %-19s %d calls in %.1f s, %.0f µs of CPU sampled per call: %s", name, prof.Calls, prof.Seconds, prof.SampledUS, file)
	return prof, nil
}

// fetchURL GETs a URL and wants a 200.
func fetchURL(ctx context.Context, cl *http.Client, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := cl.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %d %.300s", url, resp.StatusCode, b)
	}
	return b, err
}

// markdownProfiles renders the profiles side by side: profile.md.
func markdownProfiles(r *Results) string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Where the CPU time of a call goes\n\n")
	fmt.Fprintf(&b, "Written by `make bench` (bench/profile.go) on %s, %s (%d cores), caddy-mcpo %s. "+
		"Each proxy serves the echo tool of the echo server at concurrency %d while a CPU profile of the proxy process runs "+
		"(Caddy's admin endpoint /debug/pprof/, or the floor's net/http/pprof); its samples are put into categories and divided by the calls "+
		"answered meanwhile. **Flat**: a sample counts for the category of its innermost frame that has one (runtime.memmove in "+
		"encoding/json is JSON; a write(2) is a syscall whoever makes it); the flat column adds up to the sampled total. "+
		"**Cum.**: a sample counts for every category on its stack (everything mcp-go does, its JSON and allocation included). "+
		"What the figures mean, what remains and what it would take: [profile-notes.md](profile-notes.md).\n\n",
		r.Started.Format("2006-01-02"), r.Machine.CPU, r.Machine.Cores, r.Versions["caddy-mcpo"], r.Profiles[0].Concurrency)
	fmt.Fprintf(&b, "| µs per call |")
	for _, p := range r.Profiles {
		fmt.Fprintf(&b, " %s flat | cum. |", label(p.Path))
	}
	var floor *Profile
	for i := range r.Profiles {
		if r.Profiles[i].Path == pathFloor {
			floor = &r.Profiles[i]
		}
	}
	others := 0
	for _, p := range r.Profiles {
		if floor != nil && p.Path != pathFloor {
			fmt.Fprintf(&b, " %s − floor, flat |", label(p.Path))
			others++
		}
	}
	fmt.Fprintf(&b, "\n|---|%s%s\n", strings.Repeat("---:|---:|", len(r.Profiles)), strings.Repeat("---:|", others))
	for _, name := range categoryOrder {
		if !r.recorded(name) {
			continue
		}
		fmt.Fprintf(&b, "| %s |", name)
		for _, p := range r.Profiles {
			c := p.category(name)
			fmt.Fprintf(&b, " %s | %s |", us(c.Flat), us(c.Cumulative))
		}
		for _, p := range r.Profiles {
			if floor != nil && p.Path != pathFloor {
				fmt.Fprintf(&b, " %+.1f |", p.category(name).Flat-floor.category(name).Flat)
			}
		}
		fmt.Fprintln(&b)
	}
	fmt.Fprintf(&b, "| **sampled total** |")
	for _, p := range r.Profiles {
		fmt.Fprintf(&b, " **%.1f** | |", p.SampledUS)
	}
	for _, p := range r.Profiles {
		if floor != nil && p.Path != pathFloor {
			fmt.Fprintf(&b, " **%+.1f** |", p.SampledUS-floor.SampledUS)
		}
	}
	fmt.Fprintf(&b, "\n| calls profiled (in s) |")
	for _, p := range r.Profiles {
		fmt.Fprintf(&b, " %d (%.0f s) | |", p.Calls, p.Seconds)
	}
	fmt.Fprintf(&b, "%s\n", strings.Repeat(" |", others))
	for _, p := range r.Profiles {
		fmt.Fprintf(&b, "\n**%s: the functions with the most own time** (µs per call)\n\n| function | µs |\n|---|---:|\n", p.Path)
		for _, t := range p.Top[:min(len(p.Top), 15)] {
			fmt.Fprintf(&b, "| `%s` | %.2f |\n", t.Function, t.Flat)
		}
	}
	return b.String()
}

// category is the profile's category of a name; none (zero) for one it
// does not record.
func (p *Profile) category(name string) Category {
	for _, c := range p.Categories {
		if c.Name == name {
			return c
		}
	}
	return Category{Name: name}
}

// recorded tells whether some profile records a category: a results.json
// from before a category existed lacks its row.
func (r *Results) recorded(name string) bool {
	for _, p := range r.Profiles {
		for _, c := range p.Categories {
			if c.Name == name {
				return true
			}
		}
	}
	return false
}

// us renders µs per call, blank for none.
func us(v float64) string {
	if v == 0 {
		return ""
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

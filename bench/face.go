package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// The protocol eras of the MCP face's clients.
const (
	legacyProtocol = mcp.LATEST_LEGACY_PROTOCOL_VERSION // 2025-11-25: initialize, a session
	modernProtocol = mcp.LATEST_PROTOCOL_VERSION        // 2026-07-28: server/discover, no session
)

// facePath is caddy-mcpo's MCP face: the Caddy of the caddy-mcpo leg, the
// same mounts in front of the same servers, called at <mount>/mcp by
// mcp-go clients of one protocol era instead of POST <mount>/<tool>.
type facePath struct {
	*caddyPath
	pools map[string]*sessionPool // per server: echo, time
}

// startFace runs the caddy-mcpo leg's Caddy and opens a session of
// protocol with each mount's /mcp, so that a face that cannot be reached
// fails here rather than as errors of the load.
func (e *env) startFace(ctx context.Context, name, protocol string) (*facePath, error) {
	c, err := e.startCaddyMcpo(ctx, name)
	if err != nil {
		return nil, err
	}
	f := &facePath{caddyPath: c, pools: map[string]*sessionPool{}}
	for _, server := range []string{"echo", "time"} {
		pool := &sessionPool{url: c.base + "/" + server + "/mcp", protocol: protocol, http: c.client}
		f.pools[server] = pool
		s, err := pool.get(ctx)
		if err != nil {
			f.close()
			return nil, fmt.Errorf("%s/mcp: %w", server, err)
		}
		pool.put(s)
	}
	return f, nil
}

func (f *facePath) caller(uc upstreamCase) caller {
	pool, args := f.pools[uc.Server], caseArguments(uc)
	return func(ctx context.Context) error {
		c, err := pool.get(ctx)
		if err != nil {
			return err
		}
		defer pool.put(c)
		return callTool(ctx, c, uc, args)
	}
}

// openSessions opens sessions with the case's server until there are as
// many as calls under way at the concurrency.
func (f *facePath) openSessions(ctx context.Context, uc upstreamCase, concurrency int) error {
	return f.pools[uc.Server].fill(ctx, concurrency)
}

func (f *facePath) close() {
	for _, p := range f.pools {
		p.close()
	}
	f.caddyPath.close()
}

// sessionPool holds initialized MCP client sessions with one endpoint, each
// used by one call at a time: a call takes an idle one, or opens a new one
// when none is idle, and gives it back after. The pool thus grows to as
// many sessions as calls were ever under way at once, a session per load
// worker (the harness opens them before it measures: fill), as a service calling tools for
// that many users at once would hold one per user. The sessions share one
// HTTP client, with keep-alive, as the REST legs' calls do.
type sessionPool struct {
	url, protocol string
	http          *http.Client

	mu   sync.Mutex
	idle []*client.Client
	all  []*client.Client
}

// get returns an idle session, or a new one.
func (p *sessionPool) get(ctx context.Context) (*client.Client, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return c, nil
	}
	p.mu.Unlock()
	c, err := dialHTTP(ctx, p.url, p.protocol, p.http)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.all = append(p.all, c)
	p.mu.Unlock()
	return c, nil
}

// fill opens sessions until the pool holds n.
func (p *sessionPool) fill(ctx context.Context, n int) error {
	for {
		p.mu.Lock()
		have := len(p.all)
		p.mu.Unlock()
		if have >= n {
			return nil
		}
		c, err := dialHTTP(ctx, p.url, p.protocol, p.http)
		if err != nil {
			return err
		}
		p.mu.Lock()
		p.all = append(p.all, c)
		p.idle = append(p.idle, c)
		p.mu.Unlock()
	}
}

// put gives a session back.
func (p *sessionPool) put(c *client.Client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idle = append(p.idle, c)
}

// close ends every session (a legacy one with a DELETE).
func (p *sessionPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.all {
		_ = c.Close()
	}
	p.all, p.idle = nil, nil
}

// dialHTTP opens a session of protocol with a Streamable HTTP endpoint:
// initialize (or server/discover on 2026-07-28), then tools/list, as a
// client does before it calls a tool (on 2026-07-28, mcp-go mirrors the
// listed tools' x-mcp-header parameters into each call's headers). The
// client does not listen for server messages (no GET stream).
func dialHTTP(ctx context.Context, url, protocol string, hc *http.Client) (*client.Client, error) {
	tr, err := transport.NewStreamableHTTP(url, transport.WithHTTPBasicClient(hc))
	if err != nil {
		return nil, err
	}
	c, err := initialized(ctx, tr, protocol)
	if err != nil {
		return nil, err
	}
	lctx, cancel := context.WithTimeout(ctx, readyLimit)
	defer cancel()
	res, err := c.ListTools(lctx, mcp.ListToolsRequest{})
	if err == nil && len(res.Tools) == 0 {
		err = errors.New("no tools listed")
	}
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("tools/list: %w", err)
	}
	return c, nil
}

// postFacePath is caddy-mcpo's MCP face called with plain HTTP POSTs of
// prepared JSON-RPC messages, as the REST legs post prepared bodies: the
// client's cost is that of a POST, not of an MCP SDK, so that the load
// generator takes the same share of the machine as on the REST face and
// the two faces' throughputs compare the proxy alone. On 2025-11-25 every
// call goes in one session, begun before the load, each with an id of
// its own; on 2026-07-28 each is a request of its own, with the headers
// and _meta that era asks of every request.
type postFacePath struct {
	*caddyPath
	protocol string
	sessions map[string]string // per server: the Mcp-Session-Id, on 2025-11-25
	ids      atomic.Int64
}

// startPostFace runs the caddy-mcpo leg's Caddy and, on 2025-11-25, begins
// a session with each mount's /mcp.
func (e *env) startPostFace(ctx context.Context, name, protocol string) (*postFacePath, error) {
	c, err := e.startCaddyMcpo(ctx, name)
	if err != nil {
		return nil, err
	}
	f := &postFacePath{caddyPath: c, protocol: protocol, sessions: map[string]string{}}
	if protocol == modernProtocol {
		return f, nil
	}
	for _, server := range []string{"echo", "time"} {
		sid, err := f.initialize(ctx, c.base+"/"+server+"/mcp")
		if err != nil {
			c.close()
			return nil, fmt.Errorf("%s/mcp: %w", server, err)
		}
		f.sessions[server] = sid
	}
	return f, nil
}

// initialize begins a 2025-11-25 session with the endpoint at url.
func (f *postFacePath) initialize(ctx context.Context, url string) (string, error) {
	post := func(body string, header http.Header) (*http.Response, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header = header
		resp, err := f.client.Do(req)
		if err != nil {
			return nil, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp, nil
	}
	h := http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json, text/event-stream"}}
	resp, err := post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"`+legacyProtocol+
		`","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`, h)
	if err != nil {
		return "", err
	}
	sid := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != http.StatusOK || sid == "" {
		return "", fmt.Errorf("initialize answered %s without a session", resp.Status)
	}
	h.Set("Mcp-Session-Id", sid)
	h.Set("Mcp-Protocol-Version", legacyProtocol)
	if resp, err = post(`{"jsonrpc":"2.0","method":"notifications/initialized"}`, h); err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("notifications/initialized answered %s", resp.Status)
	}
	return sid, nil
}

func (f *postFacePath) caller(uc upstreamCase) caller {
	url := f.base + "/" + uc.Server + "/mcp"
	head := `{"jsonrpc":"2.0","id":`
	tail := `,"method":"tools/call","params":{"name":"` + uc.Tool + `","arguments":` + uc.Args + `}}`
	h := http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json, text/event-stream"}}
	if f.protocol == modernProtocol {
		tail = `,"method":"tools/call","params":{"name":"` + uc.Tool + `","arguments":` + uc.Args +
			`,"_meta":{"io.modelcontextprotocol/protocolVersion":"` + modernProtocol + `",` +
			`"io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"bench","version":"1"}}}}`
		h.Set("Mcp-Protocol-Version", modernProtocol)
		h.Set("Mcp-Method", "tools/call")
		h.Set("Mcp-Name", uc.Tool)
	} else {
		h.Set("Mcp-Protocol-Version", legacyProtocol)
		h.Set("Mcp-Session-Id", f.sessions[uc.Server])
	}
	want := []byte(uc.want)
	return func(ctx context.Context) error {
		body := strconv.AppendInt([]byte(head), f.ids.Add(1), 10)
		body = append(body, tail...)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header = h.Clone()
		return postChecked(f.client, req, []byte(`"result"`), want)
	}
}

// Command floor is the least an HTTP-to-MCP bridge must do, the
// benchmark's floor: an HTTP server whose POST /<server>/<tool> sends one
// JSON-RPC tools/call line to a stdio MCP server, a reader goroutine per
// server that matches the answers to the calls by id, and the first text
// content of the result written back as a JSON string. No validation, no
// limits, no logs, no Caddy. It performs the initialize handshake, and
// serves net/http/pprof under /debug/pprof/ so that the benchmark can
// profile it the way it profiles Caddy.
//
//	floor -listen 127.0.0.1:8080 -server echo=/path/to/echoserver -server time='uvx … mcp-server-time'
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	_ "net/http/pprof" // on http.DefaultServeMux
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
)

// servers is the repeated -server name=command flag.
type servers map[string]string

func (s servers) String() string { return fmt.Sprint(map[string]string(s)) }

func (s servers) Set(v string) error {
	name, cmd, ok := strings.Cut(v, "=")
	if !ok || name == "" || strings.TrimSpace(cmd) == "" {
		return fmt.Errorf("want name=command, got %q", v)
	}
	s[name] = cmd
	return nil
}

// conn is one stdio server: its stdin, and the calls waiting for answers.
type conn struct {
	wmu     sync.Mutex
	stdin   io.Writer
	next    atomic.Int64
	mu      sync.Mutex
	pending map[int64]chan response
}

// response is the part of a JSON-RPC answer the floor reads.
type response struct {
	ID     int64           `json:"id"`
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
}

func start(command string) (*conn, error) {
	argv := strings.Fields(command)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &conn{stdin: stdin, pending: map[int64]chan response{}}
	go c.read(bufio.NewReaderSize(stdout, 64<<10))
	init := `{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"floor","version":"1"}}`
	if r := c.call("initialize", json.RawMessage(init)); r.Error != nil || r.Result == nil {
		return nil, fmt.Errorf("initialize: %s", r.Error)
	}
	if _, err := io.WriteString(stdin, `{"jsonrpc":"2.0","method":"notifications/initialized"}`+"\n"); err != nil {
		return nil, err
	}
	return c, nil
}

// read hands each answer to its call, until the server's output ends.
func (c *conn) read(r *bufio.Reader) {
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 1 {
			var resp response
			if json.Unmarshal(line, &resp) == nil && (resp.Result != nil || resp.Error != nil) {
				c.mu.Lock()
				ch := c.pending[resp.ID]
				delete(c.pending, resp.ID)
				c.mu.Unlock()
				if ch != nil {
					ch <- resp
				}
			}
		}
		if err != nil {
			log.Fatalf("floor: the server's output ended: %v", err)
		}
	}
}

// call sends a request and waits for its answer.
func (c *conn) call(method string, params json.RawMessage) response {
	id := c.next.Add(1)
	ch := make(chan response, 1)
	c.mu.Lock()
	c.pending[id] = ch
	c.mu.Unlock()
	line, _ := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      int64           `json:"id"`
		Method  string          `json:"method"`
		Params  json.RawMessage `json:"params"`
	}{"2.0", id, method, params})
	c.wmu.Lock()
	_, err := c.stdin.Write(append(line, '\n'))
	c.wmu.Unlock()
	if err != nil {
		log.Fatalf("floor: writing to the server: %v", err)
	}
	return <-ch
}

func main() {
	addr := flag.String("listen", "127.0.0.1:8080", "the address to serve")
	cmds := servers{}
	flag.Var(cmds, "server", "name=command: a stdio MCP server served at /name/ (repeatable)")
	flag.Parse()
	conns := map[string]*conn{}
	for name, cmd := range cmds {
		c, err := start(cmd)
		if err != nil {
			log.Fatalf("floor: %s: %v", name, err)
		}
		conns[name] = c
	}
	http.HandleFunc("POST /{server}/{tool}", func(w http.ResponseWriter, r *http.Request) {
		c := conns[r.PathValue("server")]
		args, err := io.ReadAll(r.Body)
		if c == nil || err != nil {
			http.Error(w, "no such server", http.StatusNotFound)
			return
		}
		params, _ := json.Marshal(struct {
			Name      string          `json:"name"`
			Arguments json.RawMessage `json:"arguments"`
		}{r.PathValue("tool"), args})
		resp := c.call("tools/call", params)
		var result struct {
			Content []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"content"`
		}
		if resp.Error != nil || json.Unmarshal(resp.Result, &result) != nil || len(result.Content) == 0 {
			http.Error(w, string(resp.Error), http.StatusBadGateway)
			return
		}
		body, _ := json.Marshal(result.Content[0].Text)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	if err := http.ListenAndServe(*addr, nil); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatalf("floor: %v", err)
	}
}

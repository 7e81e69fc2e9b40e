//go:build unix

package upstream

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// BenchmarkCallTool measures one tools/call through Upstream.CallTool to the
// Go fixture served in-process over a pair of pipes, as a stdio server
// would be, read through the stdoutReader: the client side's cost per
// call (with the fixture server's, which the refactors of this package do
// not change), without a process to schedule.
func BenchmarkCallTool(b *testing.B) {
	for _, bc := range []struct {
		name     string
		protocol string
		list     bool // list the tools first, as the supervisor does
	}{
		{ProtocolLegacy, ProtocolLegacy, false},
		{ProtocolModern, ProtocolModern, false},
		{"modern, tools listed", ProtocolModern, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			u := pipeUpstream(b, bc.protocol)
			ctx := context.Background()
			if bc.list {
				if _, _, err := u.sess.listTools(ctx); err != nil {
					b.Fatal(err)
				}
			}
			args := json.RawMessage(`{"message":"hello"}`)
			b.ReportAllocs()
			for b.Loop() {
				res, err := u.CallTool(ctx, "echo", args)
				if err != nil {
					b.Fatal(err)
				}
				if len(res.Content) != 1 || res.Content[0].Text != "hello" {
					b.Fatalf("result %+v", res)
				}
			}
		})
	}
}

// BenchmarkCallToolStreamableHTTP measures one tools/call to the Go
// fixture served in-process over Streamable HTTP (legacy protocol): a call
// as it is, and with what a caller's identity adds (headers, _meta).
func BenchmarkCallToolStreamableHTTP(b *testing.B) {
	u := New(Spec{Name: "fx", Transport: TransportStreamableHTTP, Protocol: ProtocolLegacy,
		URL: fixture.NewStreamableHTTP(b, fixture.Options{})}, Options{StartTimeout: waitLimit}, zap.NewNop())
	u.Start()
	b.Cleanup(func() { _ = u.Close() })
	for u.Status().State != StateReady {
		<-u.Changed()
	}
	args := json.RawMessage(`{"message":"hello"}`)
	for _, bc := range []struct {
		name string
		ctx  context.Context
	}{
		{"plain", context.Background()},
		{"call_headers", WithCallHeaders(context.Background(), http.Header{"X-User": {"alice"}, "X-Chat": {"c1"}})},
		{"call_meta", WithCallMeta(context.Background(), map[string]any{"example.com/user": map[string]any{"id": "alice"}})},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				res, err := u.CallTool(bc.ctx, "echo", args)
				if err != nil {
					b.Fatal(err)
				}
				if len(res.Content) != 1 || res.Content[0].Text != "hello" {
					b.Fatalf("result %+v", res)
				}
			}
		})
	}
}

// pipeUpstream returns an Upstream whose ready session speaks protocol to
// fixture.New over in-process pipes. The Upstream is never started: the
// session is handed to it as the supervisor would.
func pipeUpstream(b *testing.B, protocol string) *Upstream {
	b.Helper()
	clientR, serverW := io.Pipe()
	serverR, clientW := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = server.NewStdioServer(fixture.New(fixture.Options{})).Listen(ctx, serverR, serverW)
	}()

	spec := Spec{Name: "bench", Transport: TransportStdio, Command: "fixture"}
	u := New(spec, Options{}, zap.NewNop())
	d := &dialer{spec: spec, log: zap.NewNop, notify: func(*session, mcp.JSONRPCNotification) {}, seen: u.sawMessage}
	s := d.newSession(ctx)
	s.tr = transport.NewIO(d.stdout(s, clientR, nil), clientW, nil)
	if err := d.initialize(ctx, s, protocol); err != nil {
		b.Fatal(err)
	}
	u.sess = s
	b.Cleanup(func() {
		_ = u.Close()
		_ = s.tr.Close()
		cancel()
		_ = serverR.Close()
		_ = serverW.Close()
		<-served
	})
	return u
}

// BenchmarkStdoutReader measures what the stdoutReader adds to mcp-go's
// reading of a stdio server's output (a bufio.Reader and ReadString per
// line), per message: a small answer and a 64 KiB one, with "jsonrpc"
// first (as Go and Python SDKs write it) or last (as the TypeScript SDK
// does), read as they come and through the reader.
func BenchmarkStdoutReader(b *testing.B) {
	const result = `"result":{"content":[{"type":"text","text":"%shello"}],"isError":false}`
	messages := map[string]string{
		"small":          `{"jsonrpc":"2.0","id":42,` + fmt.Sprintf(result, "") + `}`,
		"64KiB":          `{"jsonrpc":"2.0","id":42,` + fmt.Sprintf(result, strings.Repeat("x", 64<<10)) + `}`,
		"64KiB_key_last": `{` + fmt.Sprintf(result, strings.Repeat(`x\"`, 16<<10)) + `,"jsonrpc":"2.0","id":42}`,
	}
	for name, msg := range messages {
		line := []byte(msg + "\n")
		for _, through := range []bool{false, true} {
			mode := "direct"
			if through {
				mode = "reader"
			}
			b.Run(name+"/"+mode, func(b *testing.B) {
				b.SetBytes(int64(len(line)))
				b.ReportAllocs()
				src := &repeatReader{line: line}
				var r io.Reader = src
				if through {
					r = &stdoutReader{r: src, limit: defaultMaxMessageBytes, seen: func() {},
						junk: newJunkLog(zap.NewNop), tooLarge: func(*MessageTooLargeError) {}}
				}
				br := bufio.NewReader(r)
				for b.Loop() {
					if _, err := br.ReadString('\n'); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// repeatReader reads line over and over, as a pipe would: at most what is
// asked, never past the end of a line.
type repeatReader struct {
	line []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := copy(p, r.line[r.off:])
	r.off = (r.off + n) % len(r.line)
	return n, nil
}

//go:build unix

package upstream

import (
	"context"
	"encoding/json"
	"io"
	"testing"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/integration/fixture"
)

// BenchmarkCallTool measures one tools/call through Upstream.CallTool to the
// Go fixture served in-process over a pair of pipes, as a stdio server
// would be: the client side's cost per call (with the fixture server's,
// which the refactors of this package do not change), without a process
// to schedule.
func BenchmarkCallTool(b *testing.B) {
	for _, protocol := range []string{ProtocolLegacy, ProtocolModern} {
		b.Run(protocol, func(b *testing.B) {
			u := pipeUpstream(b, protocol)
			ctx := context.Background()
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
	d := &dialer{spec: spec, log: zap.NewNop, notify: func(*session, mcp.JSONRPCNotification) {}}
	s := d.newSession(ctx)
	s.tr = transport.NewIO(clientR, clientW, nil)
	if err := d.initialize(ctx, s, protocol); err != nil {
		b.Fatal(err)
	}
	u := New(spec, Options{}, zap.NewNop())
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

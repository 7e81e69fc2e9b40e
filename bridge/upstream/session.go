package upstream

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// session is one live connection to a server: an initialized mcp-go client,
// and for stdio the process behind it. A session that dies is never revived;
// the Upstream starts a new one.
type session struct {
	client *client.Client      // nil until initialized
	tr     transport.Interface // the transport, which the client reaches through a tap
	proc   *process            // nil for HTTP transports
	junk   *junkLog            // a stdio server's junk lines; nil for HTTP transports
	info   ServerInfo
	caps   mcp.ServerCapabilities
	// answers answers the server's input requests that a caller taking
	// part in a multi round trip leaves to the Upstream.
	answers inputAnswers
	// listenMu orders the openings of a 2026-07-28 session's
	// subscriptions/listen stream, each replacing the one before.
	listenMu sync.Mutex

	ctx    context.Context // ends when the session is closed
	cancel context.CancelFunc

	done    chan struct{} // closed when the session died or was closed
	endOnce sync.Once
	endErr  error // why it ended; set before done closes

	relist chan struct{} // a tools/list_changed arrived
	// recheck: a 2026-07-28 subscription to list changes was acknowledged;
	// a change between the first listing and the subscription would
	// otherwise go unheard.
	recheck chan struct{}

	// tasked is set once a task was started on the session: a request
	// the server sends on its own may then be about it (soleCaller).
	tasked atomic.Bool

	// callbacks passes what mcp-go's goroutines call back into (the
	// server's notifications, mcp-go's log lines). Those goroutines are
	// not the session's to join, so close shuts the gate instead: once it
	// has returned, none of them reaches the Upstream or its logger.
	callbacks gate
}

// gate passes the calls of goroutines that something else owns until it
// is shut, and none after. Shutting waits for the calls under way, so
// what passes must return at once.
type gate struct {
	mu   sync.RWMutex
	shut bool
}

// pass runs f unless the gate is shut.
func (g *gate) pass(f func()) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	if !g.shut {
		f()
	}
}

// close shuts the gate once the calls under way have returned.
func (g *gate) close() {
	g.mu.Lock()
	g.shut = true
	g.mu.Unlock()
}

// gatedHandler is a slog handler that logs only while its gate is open.
type gatedHandler struct {
	slog.Handler
	gate *gate
}

func (h gatedHandler) Handle(ctx context.Context, r slog.Record) error {
	var err error
	h.gate.pass(func() { err = h.Handler.Handle(ctx, r) })
	return err
}

func (h gatedHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return gatedHandler{h.Handler.WithAttrs(attrs), h.gate}
}

func (h gatedHandler) WithGroup(name string) slog.Handler {
	return gatedHandler{h.Handler.WithGroup(name), h.gate}
}

// gatedLog returns log, whose loggers write only while the session's
// callbacks gate is open: for what mcp-go's goroutines run (the handlers
// of the server's requests, the transport's tap).
func (s *session) gatedLog(log func() *zap.Logger) func() *zap.Logger {
	wrap := zap.WrapCore(func(c zapcore.Core) zapcore.Core { return gatedCore{c, &s.callbacks} })
	return func() *zap.Logger { return log().WithOptions(wrap) }
}

// gatedCore is a zap core that writes only while its gate is open.
type gatedCore struct {
	zapcore.Core
	gate *gate
}

func (c gatedCore) With(fields []zapcore.Field) zapcore.Core {
	return gatedCore{c.Core.With(fields), c.gate}
}

// Check has the core underneath pick where the entry goes (by its level,
// its sampling, each of a tee's cores by its own), and the entry written
// there through the gate.
func (c gatedCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	picked := c.Core.Check(e, nil)
	if picked == nil {
		return ce
	}
	return ce.AddCore(e, gatedEntry{c.Core, picked, c.gate})
}

func (c gatedCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	var err error
	c.gate.pass(func() { err = c.Core.Write(e, fields) })
	return err
}

// gatedEntry writes an entry the core underneath a gatedCore checked,
// while the gate is open.
type gatedEntry struct {
	zapcore.Core
	picked *zapcore.CheckedEntry
	gate   *gate
}

func (g gatedEntry) Write(_ zapcore.Entry, fields []zapcore.Field) error {
	g.gate.pass(func() { g.picked.Write(fields...) })
	return nil
}

// end marks the session dead with err. Only the first call counts.
func (s *session) end(err error) {
	s.endOnce.Do(func() {
		s.endErr = err
		close(s.done)
	})
}

// err returns why the session ended.
func (s *session) err() error {
	select {
	case <-s.done:
		return s.endErr
	default:
		return nil
	}
}

// close shuts the session down: the client (which for HTTP ends the
// server-side session) and, for stdio, the process group. It says how the
// server ended.
func (s *session) close(t StopTimeouts, log *zap.Logger) string {
	defer s.cancel()
	if s.junk != nil {
		// The transport's reader may never read the end of the stream
		// once the session is closed: say then how many lines went
		// unlogged.
		defer s.junk.flush()
	}
	s.end(errors.New("session closed"))
	if s.tr != nil {
		_ = s.tr.Close() // what the client's Close does
	}
	s.callbacks.close()
	if s.proc == nil {
		return stoppedHTTP
	}
	select {
	case <-s.proc.exited:
		return s.proc.reapGroup(t)
	default:
	}
	if hung(s.err()) {
		return s.proc.kill(t, log)
	}
	return s.proc.stop(t, log)
}

package bridge

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// callDeadline is the deadline of one tool call: timeout after its start
// and, when the server reports progress and max is longer, timeout after
// its latest progress notification, never later than max after its start.
// A call whose server reports nothing gets timeout, as without max.
type callDeadline struct {
	timeout, max time.Duration
	// stalled fires timeout after the start or the latest progress; nil
	// when progress cannot extend the deadline (max ≤ timeout).
	stalled  *time.Timer
	hard     context.Context // ends max after the start
	start    time.Time
	progress atomic.Int64 // notifications seen
}

// withCallDeadline returns ctx bounded by the deadline of a call of tool
// of s, and the function that releases its resources. When progress
// notifications extend the deadline, the returned context asks the server
// for them and passes each on to the progress function ctx already
// carries, if any (the MCP face's, a stream's).
func withCallDeadline(ctx context.Context, s *ServerConfig, tool string) (context.Context, *callDeadline, context.CancelFunc) {
	d := &callDeadline{timeout: s.timeoutFor(tool), start: time.Now()}
	d.max = max(s.MaxTimeout, d.timeout)
	if d.max == d.timeout {
		ctx, cancel := context.WithTimeout(ctx, d.timeout)
		return ctx, d, cancel
	}
	hard, cancelHard := context.WithTimeout(ctx, d.max)
	d.hard = hard
	ctx, cancel := context.WithCancelCause(hard)
	d.stalled = time.AfterFunc(d.timeout, func() { cancel(context.DeadlineExceeded) })
	outer := upstream.ProgressFrom(ctx)
	ctx = upstream.WithProgress(ctx, func(p upstream.Progress) {
		d.extend()
		if outer != nil {
			outer(p)
		}
	})
	return ctx, d, func() {
		d.stalled.Stop()
		cancel(context.Canceled)
		cancelHard()
	}
}

// extend moves the deadline to timeout from now, up to max after the
// start. It runs on the transport's reader goroutine.
func (d *callDeadline) extend() {
	d.progress.Add(1)
	if left := d.max - time.Since(d.start); left <= d.timeout {
		d.stalled.Stop() // the hard deadline comes first
		return
	}
	d.stalled.Reset(d.timeout)
}

// expired is the message of a call of tool of server that ran out of
// time.
func (d *callDeadline) expired(server, tool string) string {
	switch {
	case d.stalled == nil || d.progress.Load() == 0:
		return fmt.Sprintf("server %q: tool %q did not answer within %s", server, tool, d.timeout)
	case d.hard.Err() == context.DeadlineExceeded:
		return fmt.Sprintf("server %q: tool %q did not answer within %s, the longest a call may take when it reports progress (max_timeout)",
			server, tool, d.max)
	default:
		return fmt.Sprintf("server %q: tool %q reported no progress for %s and did not answer", server, tool, d.timeout)
	}
}

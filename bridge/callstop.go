package bridge

import (
	"context"
	"sync"
)

// callStop stops a call from outside the request that made it: the MCP
// face's notifications/cancelled, which arrives on a request of its own.
// It reaches the call where it waits for a slot and, once the call has
// its deadline, through the deadline's context, so that the call needs
// no cancellable context of its own (one more per call, with its
// registration in the request's, is most of what cancellation would cost
// otherwise). A nil callStop never stops.
type callStop struct {
	mu      sync.Mutex
	stopped bool
	cancel  context.CancelFunc // the call's deadline's, once it has one
	waiting chan struct{}      // closed when stopped; made for a call that waits
}

// stop stops the call: it cancels the call's deadline's context, or has
// the call end where it waits, or before it starts.
func (c *callStop) stop() {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	c.stopped = true
	cancel, waiting := c.cancel, c.waiting
	c.mu.Unlock()
	if waiting != nil {
		close(waiting)
	}
	if cancel != nil {
		cancel()
	}
}

// done returns a channel closed when the call is stopped; nil, which
// never is, for a nil callStop.
func (c *callStop) done() <-chan struct{} {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.waiting == nil {
		c.waiting = make(chan struct{})
		if c.stopped {
			close(c.waiting)
		}
	}
	return c.waiting
}

// bind makes cancel, the call's deadline's, what stop calls; when the call
// was stopped already, it calls cancel at once.
func (c *callStop) bind(cancel context.CancelFunc) {
	if c == nil {
		return
	}
	c.mu.Lock()
	stopped := c.stopped
	if !stopped {
		c.cancel = cancel
	}
	c.mu.Unlock()
	if stopped {
		cancel()
	}
}

// isStopped reports whether the call was stopped.
func (c *callStop) isStopped() bool {
	if c == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopped
}

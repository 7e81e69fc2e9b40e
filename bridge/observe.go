package bridge

import (
	"context"
	"time"
)

// Outcome classifies how a call ended, for metrics.
type Outcome string

// The outcomes of a call.
const (
	OutcomeOK               Outcome = "ok"
	OutcomeToolError        Outcome = "tool_error"        // the tool reported an error (isError)
	OutcomeInvalidArguments Outcome = "invalid_arguments" // the request, or the server, refused the arguments
	OutcomeUnavailable      Outcome = "unavailable"       // the server was not ready
	OutcomeTimeout          Outcome = "timeout"           // the call's deadline passed
	OutcomeCanceled         Outcome = "canceled"          // the client went away
	OutcomeRejected         Outcome = "rejected"          // a limit was reached: the server's concurrency cap, or the Caller refused (RefusedError)
	OutcomeUpstreamError    Outcome = "upstream_error"    // the server failed otherwise
	OutcomeInputRequired    Outcome = "input_required"    // the server asked the MCP client for input, which its next request brings (2026-07-28)
)

// Observer is told about every tool call, for metrics. Its methods must be
// safe for concurrent use and quick. Every CallFinished follows a
// CallStarted with the same server and tool. The tool is one the server
// listed, or empty for a call to a server that has not listed its tools
// yet (the name in the request's path is then unchecked).
type Observer interface {
	CallStarted(server, tool string)
	CallFinished(server, tool string, outcome Outcome, took time.Duration)
}

// FaceObserver is an Observer that tells the faces apart: the bridge
// calls its CallFinishedOn rather than CallFinished.
type FaceObserver interface {
	Observer
	CallFinishedOn(face Face, server, tool string, outcome Outcome, took time.Duration)
}

type noObserver struct{}

func (noObserver) CallStarted(string, string)                          {}
func (noObserver) CallFinished(string, string, Outcome, time.Duration) {}

// slots caps the calls under way for one server; a nil *slots caps nothing.
type slots chan struct{}

func newSlots(n int) slots {
	if n <= 0 {
		return nil
	}
	return make(slots, n)
}

// acquire takes a slot, waiting up to wait for one (not at all when wait
// is 0), or until ctx ends or stop stops the call. It returns the slot's
// release, or false when none came.
func (s slots) acquire(ctx context.Context, wait time.Duration, stop *callStop) (func(), bool) {
	if s == nil {
		return func() {}, true
	}
	release := func() { <-s }
	select {
	case s <- struct{}{}:
		return release, true
	default:
	}
	if wait <= 0 {
		return nil, false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case s <- struct{}{}:
		return release, true
	case <-t.C:
		return nil, false
	case <-ctx.Done():
		return nil, false
	case <-stop.done():
		return nil, false
	}
}

package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// Face names the way a call reached the bridge, for metrics and the
// audit log.
type Face string

// The faces of the bridge.
const (
	// FaceREST is a POST to a tool's path.
	FaceREST Face = "rest"
	// FaceMCP is a tools/call at an MCP endpoint (<mount>/mcp).
	FaceMCP Face = "mcp"
)

// callTrack is the bookkeeping every tool call gets, whatever its face:
// the Observer's start and finish, the call's span and its audit line.
type callTrack struct {
	b            *Bridge
	face         Face
	server, tool string // tool as listed, "" when unchecked
	name         string // tool as asked for, for the audit log
	start        time.Time
	span         trace.Span
}

// beginCall starts the bookkeeping of a call of tool (named name by the
// caller) of server, and returns ctx with the call's span when there is a
// trace context, in ctx or in header.
func (b *Bridge) beginCall(ctx context.Context, header http.Header, face Face, server, tool, name string) (context.Context, *callTrack) {
	t := &callTrack{b: b, face: face, server: server, tool: tool, name: name, start: time.Now()}
	b.obs.CallStarted(server, tool)
	ctx, t.span = startCallSpan(ctx, header, server, name)
	return ctx, t
}

// end tells the Observer, the audit log and the span how the call ended:
// its outcome, the HTTP status of its answer (0 when the client went
// away), and the bytes of its request and answer.
func (t *callTrack) end(ctx context.Context, outcome Outcome, status int, in, out int64) {
	took := time.Since(t.start)
	if fo, ok := t.b.obs.(FaceObserver); ok {
		fo.CallFinishedOn(t.face, t.server, t.tool, outcome, took)
	} else {
		t.b.obs.CallFinished(t.server, t.tool, outcome, took)
	}
	if t.b.audit != nil {
		audit(ctx, t.b.audit, auditRecord{face: t.face, server: t.server, tool: t.name, outcome: outcome,
			status: status, took: took, in: in, out: out})
	}
	endCallSpan(t.span, outcome, status)
}

// serveCall answers a POST to a tool of s and tells the Observer how the
// call ended. rt is the tool, nil when the server has not listed its tools
// yet: then down says why, and seg is the path segment asked for. base is
// the server's base path as the client sees it.
func (b *Bridge) serveCall(w http.ResponseWriter, r *http.Request, s *serverState, rt *route, seg string, down error, base string) {
	tool := ""
	if rt != nil {
		tool = rt.tool.Name
	}
	name := tool
	if name == "" {
		name = seg // unchecked: the server has not listed its tools
	}
	ctx, track := b.beginCall(r.Context(), r.Header, FaceREST, s.cfg.Name, tool, name)
	if ctx != r.Context() {
		r = r.WithContext(ctx)
	}
	var (
		in  *countingBody
		out *countingWriter
	)
	if b.audit != nil {
		c := &struct { // one allocation for both
			in  countingBody
			out countingWriter
		}{countingBody{ReadCloser: r.Body}, countingWriter{ResponseWriter: w}}
		in, out = &c.in, &c.out
		r.Body, w = in, out
	}
	body := hold{b: &b.bodies}
	defer body.release() // once the answer is written
	var e *httpError
	if rt != nil {
		e = b.call(w, r, s, rt, base, track.start, &body)
	} else {
		e = b.unlisted(r.Context(), s, base, seg, down)
	}
	outcome, status := OutcomeOK, http.StatusOK
	if e != nil {
		outcome, status = e.Outcome, e.Status
		b.logFailure(s.cfg.Name, e)
		writeError(w, e)
	}
	var nin, nout int64
	if in != nil {
		nin, nout = in.n, out.n
		if e == nil && out.status != 0 {
			status = out.status // a task's 202
		}
	}
	track.end(r.Context(), outcome, status, nin, nout)
}

// unlisted is the answer to a call of tool (unchecked) of s, which has
// not listed its tools: down says why. A server acting for each caller
// says why the caller's own session could not list them.
func (b *Bridge) unlisted(ctx context.Context, s *serverState, base, tool string, down error) *httpError {
	e := serverDown(s.cfg, base, tool, down)
	if uc, ok := s.cfg.Consent.(UserConsent); ok {
		if err := uc.Unlisted(ctx); err != nil {
			e = callFailed(ctx, s.cfg, base, tool, err, 0)
		}
	}
	return e
}

// logFailure logs a call of server that ended with e: at WARN when the
// server or the bridge failed, at DEBUG with what the answer leaves out
// otherwise.
func (b *Bridge) logFailure(server string, e *httpError) {
	switch {
	case e.Status >= 500 && e.Outcome != OutcomeToolError && e.Outcome != OutcomeRejected:
		b.log.Warn("tool call failed", zap.String("server", server), zap.String("tool", e.Detail.Tool),
			zap.Int("status", e.Status), zap.Error(e))
	case e.Cause != nil:
		// What the answer leaves out, such as a read error naming the
		// connection's addresses.
		b.log.Debug("tool call refused", zap.String("server", server), zap.String("tool", e.Detail.Tool),
			zap.Int("status", e.Status), zap.Error(e.Cause))
	}
}

// call runs one tool call: read and check the arguments, call, and write
// the mapped result, as JSON or, when the client prefers them, as
// server-sent events (stream). It returns the answer of a call that did not
// succeed, for serveCall to write. base is the server's base path as the
// client sees it; start is when the call started; held is what the body
// holds of the bytes in flight.
func (b *Bridge) call(w http.ResponseWriter, r *http.Request, st *serverState, rt *route, base string, start time.Time, held *hold) *httpError {
	s, tool := st.cfg, rt.tool.Name
	body, e := readArgs(w, r, b.cfg.MaxBodyBytes, held)
	if e == nil {
		body, e = prepareArgs(body, s, rt)
	}
	if e != nil {
		if e != clientGone { // shared: never written
			e.Detail.Server, e.Detail.Tool = s.Name, tool
		}
		return e
	}
	if startsTask(r, rt) {
		return b.startAsync(w, r, st, rt, body, base)
	}
	if prefersEvents(r.Header["Accept"]) {
		return b.stream(w, r, st, rt, body, base, start)
	}
	res, e := b.invoke(r.Context(), st, rt, body, base, nil)
	if e != nil {
		return e
	}
	out, e := answerOf(res, s, rt.tool)
	if e == nil {
		writeJSON(w, http.StatusOK, out)
	}
	b.logCall(s.Name, tool, start, body, func() []byte { return out }, e)
	return e
}

// answerOf is the body of a call's answer: the rendered result, or the
// error of a result the tool marked as one.
func answerOf(res *upstream.CallResult, s *ServerConfig, tool *upstream.Tool) ([]byte, *httpError) {
	if res.IsError {
		return nil, toolError(res, s, tool)
	}
	return renderResult(res, tool), nil
}

// logCall writes, at DEBUG, the line of a call of tool of server that
// began at start: its arguments and what it answered (out, or e's
// message), each capped. out is only called when the line is written.
func (b *Bridge) logCall(server, tool string, start time.Time, args []byte, out func() []byte, e *httpError) {
	ce := b.log.Check(zap.DebugLevel, "tool call")
	if ce == nil {
		return
	}
	status, answer := http.StatusOK, []byte(nil)
	if e != nil {
		status, answer = e.Status, []byte(e.Detail.Message)
	} else {
		answer = out()
	}
	ce.Write(zap.String("server", server), zap.String("tool", tool),
		zap.Int("status", status), zap.Duration("took", time.Since(start)),
		zap.ByteString("arguments", capped(args)), zap.ByteString("result", capped(answer)))
}

// invoke calls tool rt of st with checked arguments, whatever the face:
// it waits for a slot under the server's concurrency cap, calls with the
// tool's deadline (which progress notifications extend up to
// MaxTimeout), and returns the result, or the answer to a call that
// got none. ctx ends when the client goes away; stop, when not nil, stops
// the call as that does (the MCP face's direct path, whose client cancels
// with a message: a task-required tool's calls do not take it). base is
// the server's base path as the client sees it, for the links of the
// answers.
func (b *Bridge) invoke(ctx context.Context, st *serverState, rt *route, args json.RawMessage, base string, stop *callStop) (*upstream.CallResult, *httpError) {
	if rt.task == upstream.TaskRequired {
		return b.awaitTask(ctx, st, rt, args, base)
	}
	s, tool := st.cfg, rt.tool.Name
	release, e := st.slot(ctx, tool, stop)
	if e != nil {
		return nil, e
	}
	defer release()

	callCtx, deadline, cancel := withCallDeadline(ctx, s, tool)
	defer cancel()
	stop.bind(cancel)
	res, err := s.Upstream.CallTool(callCtx, tool, args)
	switch {
	case err != nil && (ctx.Err() != nil || stop.isStopped()):
		b.log.Debug("client disconnected during a call", zap.String("server", s.Name), zap.String("tool", tool))
		return nil, clientGone
	case err != nil:
		e := callFailed(callCtx, s, base, tool, err, deadline.timeout)
		if e.Outcome == OutcomeTimeout {
			e.Detail.Message = deadline.expired(s.Name, tool)
		}
		return nil, e
	}
	return res, nil
}

// slot waits, up to the server's queue_timeout, for one of the calls its
// max_concurrent allows, for tool ("" for a request that is no call). It
// fails with clientGone when ctx ends or the call is stopped first, with
// 429 when the wait does.
func (st *serverState) slot(ctx context.Context, tool string, stop *callStop) (release func(), e *httpError) {
	s := st.cfg
	release, ok := st.slots.acquire(ctx, s.QueueTimeout, stop)
	if ok && !stop.isStopped() {
		return release, nil
	}
	if ok {
		release()
		return nil, clientGone
	}
	if ctx.Err() != nil || stop.isStopped() {
		return nil, clientGone
	}
	return nil, &httpError{Status: http.StatusTooManyRequests, Outcome: OutcomeRejected, RetryAfter: time.Second,
		Detail: errorDetail{Server: s.Name, Tool: tool,
			Message: fmt.Sprintf("server %q is busy: %d calls are under way, its limit; try again shortly", s.Name, s.MaxConcurrent)}}
}

// maxLoggedBytes bounds the arguments and results in debug logs.
const maxLoggedBytes = 1024

func capped(b []byte) []byte {
	if len(b) <= maxLoggedBytes {
		return b
	}
	return append(b[:maxLoggedBytes:maxLoggedBytes], "…"...)
}

// invalidArgs is the answer to arguments refused before the call.
func invalidArgs(status int, msg string) *httpError {
	return &httpError{Status: status, Outcome: OutcomeInvalidArguments, Detail: errorDetail{Message: msg}}
}

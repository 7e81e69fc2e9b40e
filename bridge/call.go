package bridge

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// serveCall answers a POST to a tool of s and tells the Observer how the
// call ended. rt is the tool, nil when the server has not listed its tools
// yet: then down says why, and seg is the path segment asked for. base is
// the server's base path as the client sees it.
func (b *Bridge) serveCall(w http.ResponseWriter, r *http.Request, s *serverState, rt *route, seg string, down error, base string) {
	tool := ""
	if rt != nil {
		tool = rt.tool.Name
	}
	start := time.Now()
	b.obs.CallStarted(s.cfg.Name, tool)
	name := tool
	if name == "" {
		name = seg // unchecked: the server has not listed its tools
	}
	r, span := startCallSpan(r, s.cfg.Name, name)
	var rec auditRecord
	if b.audit != nil {
		c := &struct { // one allocation for both
			in  countingBody
			out countingWriter
		}{countingBody{ReadCloser: r.Body}, countingWriter{ResponseWriter: w}}
		rec.in, rec.out = &c.in, &c.out
		r.Body, w = rec.in, rec.out
	}
	body := hold{b: &b.bodies}
	defer body.release() // once the answer is written
	var e *httpError
	if rt != nil {
		e = b.call(w, r, s, rt, base, start, &body)
	} else {
		e = serverDown(s.cfg, base, seg, down)
		if uc, ok := s.cfg.Consent.(UserConsent); ok {
			if err := uc.Unlisted(r.Context()); err != nil {
				e = callFailed(r.Context(), s.cfg, base, seg, err, 0)
			}
		}
	}
	outcome, status := OutcomeOK, http.StatusOK
	if e != nil {
		outcome, status = e.Outcome, e.Status
		switch {
		case e.Status >= 500 && e.Outcome != OutcomeToolError && e.Outcome != OutcomeRejected:
			b.log.Warn("tool call failed", zap.String("server", s.cfg.Name), zap.String("tool", e.Detail.Tool),
				zap.Int("status", e.Status), zap.Error(e))
		case e.Cause != nil:
			// What the answer leaves out, such as a read error naming the
			// connection's addresses.
			b.log.Debug("tool call refused", zap.String("server", s.cfg.Name), zap.String("tool", e.Detail.Tool),
				zap.Int("status", e.Status), zap.Error(e.Cause))
		}
		writeError(w, e)
	}
	took := time.Since(start)
	b.obs.CallFinished(s.cfg.Name, tool, outcome, took)
	if b.audit != nil {
		rec.server, rec.tool, rec.outcome, rec.status, rec.took = s.cfg.Name, name, outcome, status, took
		audit(b.audit, r, rec)
	}
	endCallSpan(span, outcome, status)
}

// call runs one tool call: read and check the arguments, wait for a slot
// under the server's concurrency cap, call with the tool's deadline, and
// write the mapped result. It returns the answer of a call that did not
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
		e.Detail.Server, e.Detail.Tool = s.Name, tool
		return e
	}
	release, ok := st.slots.acquire(r.Context(), s.QueueTimeout)
	if !ok {
		if r.Context().Err() != nil {
			return clientGone
		}
		return &httpError{Status: http.StatusTooManyRequests, Outcome: OutcomeRejected, RetryAfter: time.Second,
			Detail: errorDetail{Server: s.Name, Tool: tool,
				Message: fmt.Sprintf("server %q is busy: %d calls are under way, its limit; try again shortly", s.Name, s.MaxConcurrent)}}
	}
	defer release()

	timeout := s.timeoutFor(tool)
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	res, err := s.Upstream.CallTool(ctx, tool, body)
	switch {
	case err != nil && r.Context().Err() != nil:
		b.log.Debug("client disconnected during a call", zap.String("server", s.Name), zap.String("tool", tool))
		return clientGone
	case err != nil:
		return callFailed(ctx, s, base, tool, err, timeout)
	}
	var out []byte
	if res.IsError {
		e = toolError(res, s, rt.tool)
	} else {
		out = renderResult(res, rt.tool)
		writeJSON(w, http.StatusOK, out)
	}
	if ce := b.log.Check(zap.DebugLevel, "tool call"); ce != nil {
		status := http.StatusOK
		if e != nil {
			status, out = e.Status, []byte(e.Detail.Message)
		}
		ce.Write(zap.String("server", s.Name), zap.String("tool", tool),
			zap.Int("status", status), zap.Duration("took", time.Since(start)),
			zap.ByteString("arguments", capped(body)), zap.ByteString("result", capped(out)))
	}
	return e
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

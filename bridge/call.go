package bridge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/schema"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// call runs one tool call: read and check the arguments, wait for a slot
// under the server's concurrency cap, call with the tool's deadline, and
// write the mapped result or error. base is the server's base path as the
// client sees it.
func (b *Bridge) call(w http.ResponseWriter, r *http.Request, st *serverState, rt *route, base string) {
	s, tool := st.cfg, rt.tool.Name
	start := time.Now()
	outcome := OutcomeOK
	b.obs.CallStarted(s.Name, tool)
	defer func() { b.obs.CallFinished(s.Name, tool, outcome, time.Since(start)) }()

	body, status, msg := readArgs(w, r, b.cfg.MaxBodyBytes)
	if status != 0 {
		outcome = OutcomeInvalidArguments
		writeError(w, status, errorDetail{Message: msg, Server: s.Name, Tool: tool})
		return
	}
	args, status, d := prepareArgs(body, s, rt)
	if status != 0 {
		outcome = OutcomeInvalidArguments
		d.Server, d.Tool = s.Name, tool
		writeError(w, status, d)
		return
	}
	release, ok := st.slots.acquire(r.Context(), s.QueueTimeout)
	if !ok {
		outcome = OutcomeRejected
		if r.Context().Err() != nil {
			outcome = OutcomeCanceled
			return
		}
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, errorDetail{Server: s.Name, Tool: tool,
			Message: fmt.Sprintf("server %q is busy: %d calls are under way, its limit; try again shortly", s.Name, s.MaxConcurrent)})
		return
	}
	defer release()

	timeout := s.timeoutFor(tool)
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	res, err := s.Upstream.CallTool(ctx, tool, args)
	if err != nil {
		outcome = b.callError(w, r, s, base, tool, err, ctx, timeout)
		return
	}
	status, out := renderResult(res, s, rt.tool)
	if res.IsError {
		outcome = OutcomeToolError
	}
	writeJSON(w, status, out)
	if ce := b.log.Check(zap.DebugLevel, "tool call"); ce != nil {
		ce.Write(zap.String("server", s.Name), zap.String("tool", tool),
			zap.Int("status", status), zap.Duration("took", time.Since(start)),
			zap.ByteString("arguments", capped(args)), zap.ByteString("result", capped(out)))
	}
}

// maxLoggedBytes bounds the arguments and results in debug logs.
const maxLoggedBytes = 1024

func capped(b []byte) []byte {
	if len(b) <= maxLoggedBytes {
		return b
	}
	return append(b[:maxLoggedBytes:maxLoggedBytes], "…"...)
}

// readArgs reads the request body as the tool's arguments: a JSON object,
// or {} for an empty body. A non-zero status reports a bad body.
func readArgs(w http.ResponseWriter, r *http.Request, limit int64) (json.RawMessage, int, string) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is larger than %d bytes", limit)
		}
		return nil, http.StatusBadRequest, "reading the request body: " + err.Error()
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return json.RawMessage("{}"), 0, ""
	}
	if !json.Valid(body) {
		var v any
		err := json.Unmarshal(body, &v)
		return nil, http.StatusBadRequest, fmt.Sprintf("the request body is not valid JSON (%v); send the tool's arguments as a JSON object, e.g. {\"name\": \"value\"}", err)
	}
	if body[0] != '{' {
		return nil, http.StatusUnprocessableEntity, "the request body must be a JSON object of the tool's arguments (keyed by argument name), not " + jsonKind(body[0])
	}
	return body, 0, ""
}

func jsonKind(first byte) string {
	switch first {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	default:
		return "a number"
	}
}

// callError writes the response for a failed call and returns its outcome.
// base is the server's base path as the client sees it; tool may be empty
// (a document request), ctx is the call's context and timeout its timeout
// (nil and 0 when no call ran).
func (b *Bridge) callError(w http.ResponseWriter, r *http.Request, s *Server, base, tool string, err error, ctx context.Context, timeout time.Duration) Outcome {
	d := errorDetail{Server: s.Name, Tool: tool}
	var status int
	var outcome Outcome
	var (
		unavailable *upstream.UnavailableError
		rpc         *upstream.RPCError
		input       *upstream.InputRequiredError
	)
	switch {
	case r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
		b.log.Debug("client disconnected during a call", zap.String("server", s.Name), zap.String("tool", tool))
		return OutcomeCanceled
	case errors.As(err, &unavailable):
		status, outcome = http.StatusServiceUnavailable, OutcomeUnavailable
		secs := int(math.Ceil(unavailable.RetryAfter.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
		d.Message = unavailable.Error() + "; try again later"
		if unavailable.State == upstream.StateNeedsAuth && s.Consent != nil {
			d.Authorize = base + consentAuthorize
			d.Message = fmt.Sprintf("server %q needs authorization: an administrator must open %s in a browser and grant access; calls work once that is done",
				s.Name, d.Authorize)
		}
	case errors.As(err, &rpc):
		switch rpc.Code {
		case upstream.CodeInvalidParams:
			status, outcome = http.StatusUnprocessableEntity, OutcomeInvalidArguments
		case upstream.CodeMethodNotFound:
			status, outcome = http.StatusNotFound, OutcomeUpstreamError
		default:
			status, outcome = http.StatusBadGateway, OutcomeUpstreamError
		}
		d.Message = rpc.Message
		code := rpc.Code
		d.Code = &code
		d.Data = rpc.Data
	case errors.As(err, &input):
		status, outcome = http.StatusBadGateway, OutcomeUpstreamError
		d.Message = fmt.Sprintf("server %q: tool %q: %v", s.Name, tool, input)
	case ctx != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		status, outcome = http.StatusGatewayTimeout, OutcomeTimeout
		d.Message = fmt.Sprintf("server %q: tool %q did not answer within %s", s.Name, tool, timeout)
	default:
		status, outcome = http.StatusBadGateway, OutcomeUpstreamError
		d.Message = fmt.Sprintf("server %q: calling tool %q failed: %v", s.Name, tool, err)
	}
	if status >= 500 {
		b.log.Warn("tool call failed", zap.String("server", s.Name), zap.String("tool", tool),
			zap.Int("status", status), zap.Error(err))
	}
	writeError(w, status, d)
	return outcome
}

// errorDetail is the body of every error response, inside {"detail": ...}.
type errorDetail struct {
	Message string                 `json:"message"`
	Server  string                 `json:"server,omitempty"`
	Tool    string                 `json:"tool,omitempty"`
	Code    *int                   `json:"code,omitempty"`
	Data    json.RawMessage        `json:"data,omitempty"`
	Errors  []schema.ArgumentError `json:"errors,omitempty"`
	// Authorize is where to authorize a server that needs it.
	Authorize string `json:"authorize,omitempty"`
}

func writeError(w http.ResponseWriter, status int, d errorDetail) {
	body, err := json.Marshal(struct {
		Detail errorDetail `json:"detail"`
	}{d})
	if err != nil { // only Data can fail, and it came from valid JSON
		d.Data = nil
		body, _ = json.Marshal(struct {
			Detail errorDetail `json:"detail"`
		}{d})
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// errorOf turns a status's last error back into an error.
func errorOf(msg string) error {
	if msg == "" {
		return nil
	}
	return errors.New(msg)
}

// retryAfter estimates when a server that is not ready may be.
func retryAfter(st upstream.Status) time.Duration {
	if st.State == upstream.StateFailed && !st.RetryAt.IsZero() {
		return max(time.Until(st.RetryAt), time.Second)
	}
	return 2 * time.Second
}

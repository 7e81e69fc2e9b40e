package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/schema"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// httpError is every answer other than a success: what handlers return,
// and writeError writes as {"detail": {...}}.
type httpError struct {
	// Status is the answer's status; 0 writes nothing, for a client that
	// went away.
	Status int
	// Detail is the body, inside {"detail": ...}.
	Detail errorDetail
	// Outcome is how a call answered with this error ended.
	Outcome Outcome
	// RetryAfter, when positive, is sent as Retry-After, in whole seconds
	// rounded up.
	RetryAfter time.Duration
	// Header holds more headers of the answer: Allow, WWW-Authenticate.
	Header http.Header
	// Cause is the error behind the answer, for the log.
	Cause error
	// streamed is set once the answer went out as the error event of a
	// streamed call: writeError writes nothing more.
	streamed bool
}

func (e *httpError) Error() string { return e.Detail.Message }

func (e *httpError) Unwrap() error { return e.Cause }

// clientGone ends a call whose client went away: nobody reads the answer.
var clientGone = &httpError{Outcome: OutcomeCanceled}

// RefusedError is a Caller's refusal of a call it will not make now or for
// this caller, such as one over a limit of its own: the bridge answers
// Status with Message, and Retry-After when RetryAfter is positive. The
// call counts as rejected.
type RefusedError struct {
	Status     int
	Message    string
	RetryAfter time.Duration
	// Authorize, when set, is the absolute URL where the caller
	// authorizes the server for themselves (per-user OAuth), for the
	// answer's "authorize" (the Message names it too).
	Authorize string
}

func (e *RefusedError) Error() string { return e.Message }

// errorDetail is the body of every error response, inside {"detail": ...}.
// Open WebUI and the LLMs behind it read it, so its shape is fixed.
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

// writeError writes e.
func writeError(w http.ResponseWriter, e *httpError) {
	if e.Status == 0 || e.streamed {
		return
	}
	e.setHeaders(w.Header())
	writeJSON(w, e.Status, detailBody(e.Detail))
}

// setHeaders adds the headers of the answer e to h: its own, and
// Retry-After.
func (e *httpError) setHeaders(h http.Header) {
	for k, v := range e.Header {
		h[k] = append(h[k], v...)
	}
	if e.RetryAfter > 0 {
		h.Set("Retry-After", retryAfterSeconds(e.RetryAfter))
	}
}

// retryAfterSeconds is d as a Retry-After: whole seconds, rounded up.
func retryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(int(math.Ceil(d.Seconds())))
}

// detailBody is {"detail": d}.
func detailBody(d errorDetail) []byte {
	body, err := json.Marshal(struct {
		Detail errorDetail `json:"detail"`
	}{d})
	if err != nil { // only Data can fail, and it came from valid JSON
		d.Data = nil
		body, _ = json.Marshal(struct {
			Detail errorDetail `json:"detail"`
		}{d})
	}
	return body
}

// writeJSON writes a JSON body. Its headers are set by their canonical
// keys, which Set would check on every call.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// callFailed is the answer to a call of tool that ran under ctx, with
// timeout, and failed with err. base is the server's base path as the
// client sees it.
func callFailed(ctx context.Context, s *ServerConfig, base, tool string, err error, timeout time.Duration) *httpError {
	var (
		unavailable *upstream.UnavailableError
		rpc         *upstream.RPCError
		input       *upstream.InputRequiredError
		tooLarge    *upstream.MessageTooLargeError
		ping        *upstream.PingTimeoutError
		refused     *RefusedError
	)
	e := &httpError{Status: http.StatusBadGateway, Outcome: OutcomeUpstreamError, Cause: err,
		Detail: errorDetail{Server: s.Name, Tool: tool}}
	switch {
	case errors.As(err, &refused):
		e.Status, e.Outcome, e.RetryAfter = refused.Status, OutcomeRejected, refused.RetryAfter
		e.Detail.Message, e.Detail.Authorize = refused.Message, refused.Authorize
	case errors.As(err, &unavailable):
		e = notReady(s, base, tool, unavailable)
		e.Cause = err
	case errors.As(err, &rpc):
		switch rpc.Code {
		case upstream.CodeInvalidParams:
			e.Status, e.Outcome = http.StatusUnprocessableEntity, OutcomeInvalidArguments
		case upstream.CodeMethodNotFound:
			e.Status = http.StatusNotFound
		}
		code := rpc.Code
		e.Detail.Message, e.Detail.Code, e.Detail.Data = rpc.Message, &code, rpc.Data
	case errors.As(err, &input):
		e.Detail.Message = fmt.Sprintf("server %q: tool %q: %v", s.Name, tool, input)
	case errors.As(err, &tooLarge):
		// It names the server, the limit and the setting that raises it.
		e.Detail.Message = tooLarge.Error()
	case errors.As(err, &ping):
		// It names the server and says it stopped answering pings.
		e.Detail.Message = ping.Error()
	case errors.Is(context.Cause(ctx), context.DeadlineExceeded):
		e.Status, e.Outcome = http.StatusGatewayTimeout, OutcomeTimeout
		e.Detail.Message = fmt.Sprintf("server %q: tool %q did not answer within %s", s.Name, tool, timeout)
	default:
		e.Detail.Message = fmt.Sprintf("server %q: calling tool %q failed: %v", s.Name, tool, err)
	}
	return e
}

// serverDown is the answer to a request for a server whose tools are not
// known: err is why (current's error). tool is the tool asked for, if any.
func serverDown(s *ServerConfig, base, tool string, err error) *httpError {
	var unavailable *upstream.UnavailableError
	if errors.As(err, &unavailable) {
		return notReady(s, base, tool, unavailable)
	}
	return &httpError{Status: http.StatusBadGateway, Outcome: OutcomeUpstreamError, Cause: err,
		Detail: errorDetail{Server: s.Name, Tool: tool, Message: err.Error()}}
}

// notReady is the answer to a request for a server that is not ready:
// 503, with when to try again, and where to authorize a server that needs
// it.
func notReady(s *ServerConfig, base, tool string, u *upstream.UnavailableError) *httpError {
	e := &httpError{Status: http.StatusServiceUnavailable, Outcome: OutcomeUnavailable, Cause: u,
		RetryAfter: max(u.RetryAfter, time.Second),
		Detail:     errorDetail{Server: s.Name, Tool: tool, Message: u.Error() + "; try again later"}}
	if u.State == upstream.StateFailed {
		e.Detail.Message = u.Error() + fmt.Sprintf(
			"; an administrator restarts it with POST /mcpo/servers/%s/restart on Caddy's admin API, or by reloading a configuration that changes it",
			s.Name)
	}
	if u.State == upstream.StateNeedsAuth && s.Consent != nil {
		e.Detail.Authorize = base + consentAuthorize
		e.Detail.Message = fmt.Sprintf("server %q needs authorization: an administrator must open %s in a browser and grant access; calls work once that is done",
			s.Name, e.Detail.Authorize)
		if _, ok := s.Consent.(UserConsent); ok {
			e.Detail.Authorize = ""
			e.Detail.Message = fmt.Sprintf("server %q acts for each caller with their own account, and has not listed its tools yet: "+
				"a caller who has authorized it lists them with their first call; try again shortly", s.Name)
		}
	}
	return e
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
	if st.State == upstream.StateBackoff && !st.RetryAt.IsZero() {
		return max(time.Until(st.RetryAt), time.Second)
	}
	return 2 * time.Second
}

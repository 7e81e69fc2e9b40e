package bridge

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/jsonbody"
)

// This file reads a call's request body: its coding and declared length,
// the memory it may take, and the checks that make every server read the
// arguments the way the bridge validated them.

// MaxBodyDepth is the most levels of arrays and objects a request body may
// nest. The JSON-RPC request that carries the arguments to a server adds
// two levels (the message and its params), and 64 is the least that a
// JSON parser an MCP server may use accepts by default: .NET's
// System.Text.Json (Ruby's json accepts 100, Rust's serde_json 127,
// Python's json about 1000, Go's encoding/json 10000). Deeper bodies are
// refused with 400 rather than forwarded to a server that may fail to
// parse them, and so never answer.
const MaxBodyDepth = 62

// DefaultBodiesInFlight is how many bodies of MaxBodyBytes
// MaxBodyBytesInFlight holds when left zero.
const DefaultBodiesInFlight = 8

// budget bounds the bytes of request bodies a Bridge holds at once.
type budget struct {
	max  int64
	used atomic.Int64
}

// take reserves n bytes, or nothing when they do not fit.
func (b *budget) take(n int64) bool {
	for {
		used := b.used.Load()
		if used+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

// hold is what one call holds of the budget: every byte of its body's
// buffer, until its answer is written.
type hold struct {
	b *budget
	n int64
}

// take adds n bytes to the hold, reporting false when they do not fit.
func (h *hold) take(n int64) bool {
	if !h.b.take(n) {
		return false
	}
	h.n += n
	return true
}

// release gives back all the hold took.
func (h *hold) release() {
	h.b.used.Add(-h.n)
	h.n = 0
}

// Errors of reading a body that readArgs answers.
var (
	// errBusy: the body's buffer cannot grow within the budget.
	errBusy = errors.New("the bytes in flight are at their limit")
	// errDecodedTooLarge: the decoded body is over the limit.
	errDecodedTooLarge = errors.New("the decoded body is over the limit")
)

// readArgs reads the request body as the tool's arguments: a JSON object,
// or {} for an empty body, decoded if gzipped. Its buffer is taken from h
// before any byte is read when the body's length is declared, and as it
// grows otherwise. It returns the answer to a body it refuses, whose Cause
// has the details that do not belong in the answer.
func readArgs(w http.ResponseWriter, r *http.Request, limit int64, h *hold) (json.RawMessage, *httpError) {
	body, e := readBody(w, r, limit, h)
	if e != nil {
		settle(r, e, limit, h)
		return nil, e
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return json.RawMessage("{}"), nil
	}
	if err := jsonbody.Check(body, MaxBodyDepth); err != nil {
		return nil, refusedJSON(err)
	}
	if body[0] != '{' {
		return nil, invalidArgs(http.StatusUnprocessableEntity, "the request body must be a JSON object of the tool's arguments (keyed by argument name), not "+jsonKind(body[0]))
	}
	return body, nil
}

// settle readies the answer e to a body not read to its end. Over
// HTTP/1, a client that sends its whole body before it reads the answer
// may lose the answer when the connection closes on the body's unread
// bytes; and Caddy's server, which wraps the body, reads on (up to 256 KiB
// of it, or until its read timeout) to reuse the connection before it
// sends the answer. So what is left of a body that may be within limit is
// read and dropped, its buffer given back first; after the answer to any
// other (over limit, or whose reading failed), and to a client that waits
// for 100 Continue to send its body, the connection closes.
func settle(r *http.Request, e *httpError, limit int64, h *hold) {
	if e.Status == 0 || r.ProtoMajor != 1 {
		return
	}
	if e.Status != http.StatusRequestEntityTooLarge && e.Status != http.StatusRequestTimeout &&
		!strings.EqualFold(r.Header.Get("Expect"), "100-continue") {
		h.release()
		if n, err := io.Copy(io.Discard, io.LimitReader(r.Body, limit+1)); err == nil && n <= limit {
			return
		}
	}
	if e.Header == nil {
		e.Header = http.Header{}
	}
	e.Header["Connection"] = []string{"close"}
}

// readBody reads the whole body, decoded, holding its buffer in h. It
// returns the answer to a body it could not read.
func readBody(w http.ResponseWriter, r *http.Request, limit int64, h *hold) ([]byte, *httpError) {
	gz, e := gzipped(r)
	if e != nil {
		return nil, e
	}
	if r.ContentLength > limit {
		return nil, tooLarge(limit, "")
	}
	length := r.ContentLength
	if gz {
		length = -1 // of the decoded body: unknown
	}
	size := bufferSize(length, limit)
	if !h.take(size) {
		return nil, busyWithBodies()
	}
	var rd io.Reader = http.MaxBytesReader(w, r.Body, limit)
	if gz {
		zr, err := gzip.NewReader(wireReader{rd})
		switch {
		case err == io.EOF:
			rd = http.NoBody // an empty body
		case err != nil:
			return nil, readFailed(r, err, limit, gz)
		default:
			rd = zr
		}
	}
	body, err := readAll(rd, make([]byte, 0, size), limit, h)
	if err != nil {
		return nil, readFailed(r, err, limit, gz)
	}
	return body, nil
}

// readAll reads rd to its end into b, which h holds, growing it up to
// limit+1 bytes, each growth taken from h: a body that fills limit+1
// bytes is over the limit.
func readAll(rd io.Reader, b []byte, limit int64, h *hold) ([]byte, error) {
	for {
		n, err := rd.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) < cap(b) {
			continue
		}
		if int64(len(b)) > limit {
			return b, errDecodedTooLarge
		}
		grown := min(2*int64(cap(b)), limit+1)
		if !h.take(grown - int64(cap(b))) {
			return b, errBusy
		}
		b = append(make([]byte, 0, grown), b...)
	}
}

// bufferSize is the first buffer for a body of length bytes (-1 when
// unknown) within limit: most arguments are far smaller than io.ReadAll's
// first buffer.
func bufferSize(length, limit int64) int64 {
	if length >= 0 && length <= limit {
		return length + 1 // and the byte that finds the end
	}
	return 512
}

// gzipped reports whether the body is compressed with gzip, and refuses
// any coding other than gzip and identity with 415.
func gzipped(r *http.Request) (bool, *httpError) {
	values := r.Header["Content-Encoding"]
	gz := false
	for _, v := range values {
		for c := range strings.SplitSeq(v, ",") {
			switch c = strings.TrimSpace(c); {
			case c == "" || strings.EqualFold(c, "identity"):
			case !gz && (strings.EqualFold(c, "gzip") || strings.EqualFold(c, "x-gzip")):
				gz = true
			default: // another coding, or gzip twice
				coding := strings.Join(values, ", ")
				if len(coding) > 40 {
					coding = coding[:40] + "…"
				}
				return false, &httpError{Status: http.StatusUnsupportedMediaType, Outcome: OutcomeInvalidArguments,
					Header: http.Header{"Accept-Encoding": {"gzip"}}, // RFC 7694
					Detail: errorDetail{Message: fmt.Sprintf("the request body's Content-Encoding %q is not accepted here; "+
						"send the body uncompressed, or compressed once with Content-Encoding: gzip", coding)}}
			}
		}
	}
	return gz, nil
}

// wireReader marks the errors of the connection a gzipped body comes on,
// to tell them from those of decoding it.
type wireReader struct{ io.Reader }

func (r wireReader) Read(p []byte) (int, error) {
	n, err := r.Reader.Read(p)
	if err != nil && err != io.EOF {
		var tooBig *http.MaxBytesError
		if !errors.As(err, &tooBig) {
			err = wireError{err}
		}
	}
	return n, err
}

// wireError is an error of the connection a body comes on.
type wireError struct{ err error }

func (e wireError) Error() string { return e.err.Error() }
func (e wireError) Unwrap() error { return e.err }

// readFailed is the answer to a body that could not be read whole, gz
// if gzipped: err is the limit's, the budget's, or the connection's (for
// a gzipped body, a wireError; else gzip's).
func readFailed(r *http.Request, err error, limit int64, gz bool) *httpError {
	var (
		tooBig *http.MaxBytesError
		wire   wireError
	)
	switch {
	case errors.Is(err, errBusy):
		return busyWithBodies()
	case errors.As(err, &tooBig):
		return tooLarge(limit, "")
	case errors.Is(err, errDecodedTooLarge):
		return tooLarge(limit, " once decoded")
	case gz && !errors.As(err, &wire):
		e := invalidArgs(http.StatusBadRequest, "the request body is not valid gzip, as its Content-Encoding says; "+
			"send it compressed with gzip, or uncompressed without Content-Encoding")
		e.Cause = err
		return e
	case timedOut(err):
		// Checked before the context, which the server cancels on any
		// read error of the connection.
		e := invalidArgs(http.StatusRequestTimeout, "reading the request body timed out: the client sent part of it, "+
			"then nothing for too long; send the whole body without pausing")
		e.Cause = err
		return e
	case r.Context().Err() != nil:
		return clientGone
	}
	e := invalidArgs(http.StatusBadRequest, "reading the request body failed: the connection broke before the body's end")
	e.Cause = err
	return e
}

// timedOut reports an error of a read whose deadline passed.
func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// tooLarge is the answer to a body over limit; how says how it was
// measured, if not as sent.
func tooLarge(limit int64, how string) *httpError {
	return invalidArgs(http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is larger than %d bytes%s", limit, how))
}

// busyWithBodies is the answer to a body that does not fit in the bytes
// in flight.
func busyWithBodies() *httpError {
	return &httpError{Status: http.StatusServiceUnavailable, Outcome: OutcomeRejected, RetryAfter: time.Second,
		Detail: errorDetail{Message: "the server is busy with other large requests: their bodies fill the memory " +
			"set aside for request bodies (max_request_bytes_in_flight); try again shortly"}}
}

// refusedJSON is the answer to a body jsonbody.Check refused with err.
func refusedJSON(err error) *httpError {
	var je *jsonbody.Error
	kind := jsonbody.Syntax
	if errors.As(err, &je) {
		kind = je.Kind
	}
	var msg string
	switch kind {
	case jsonbody.InvalidUTF8:
		msg = fmt.Sprintf("the request body is not valid JSON (%v); send the tool's arguments as a JSON object in UTF-8", err)
	case jsonbody.RepeatedName:
		msg = fmt.Sprintf("the request body is refused (%v): the server could read either value; "+
			"send each argument, and each member of an object, once", err)
	case jsonbody.TooDeep:
		msg = fmt.Sprintf("the request body is refused (%v); send arguments that nest at most %d levels of arrays and objects",
			err, MaxBodyDepth)
	default:
		msg = fmt.Sprintf("the request body is not valid JSON (%v); send the tool's arguments as a JSON object, e.g. {\"name\": \"value\"}", err)
	}
	return invalidArgs(http.StatusBadRequest, msg)
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

// bodiesInFlight returns the budget of a Config's bytes in flight: set,
// or DefaultBodiesInFlight bodies of maxBody.
func bodiesInFlight(set, maxBody int64) (int64, error) {
	if set == 0 {
		if maxBody > math.MaxInt64/DefaultBodiesInFlight {
			return math.MaxInt64, nil
		}
		return DefaultBodiesInFlight * maxBody, nil
	}
	if set < maxBody {
		return 0, fmt.Errorf("%d bytes in flight are fewer than the largest body, %d bytes, which would never fit", set, maxBody)
	}
	return set, nil
}

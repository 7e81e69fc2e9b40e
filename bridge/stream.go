package bridge

// Streamed answers. A tool call whose Accept header prefers
// text/event-stream to application/json is answered as server-sent events
// once it is under way:
//
//	event: progress
//	data: {"progress":1,"total":3,"message":"step 1 of 3"}
//
//	event: log
//	data: {"level":"info","logger":"db","data":"connected"}
//
//	event: result
//	data: <the body of the JSON answer's 200>
//
// or, for a call that fails after the stream opened,
//
//	event: error
//	data: {"status":504,"detail":{...}}
//
// with the status and {"detail": ...} body the JSON answer would have had.
// Log events are the server's notifications/message about the call, as
// it sent them: only those on the stream answering the call's own request
// to a Streamable HTTP server, the only ones that can be told apart from
// those of other calls (upstream.WithLog).
//
// The stream opens with the first event, or with a keep-alive comment when
// the call has been silent for keepAliveInterval: until then nothing is
// written, so a call refused before it runs (busy, server not ready, an
// error at once) is answered with its status and JSON body as without
// streaming. A client that goes away cancels the call at the server, as
// for a JSON answer.

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// The events of a streamed answer.
const (
	eventProgress = "progress"
	eventLog      = "log"
	eventResult   = "result"
	eventError    = "error"
)

// keepAliveInterval is how long a stream stays silent before a comment
// line keeps proxies and clients from closing it as idle. A variable for
// the tests.
var keepAliveInterval = 15 * time.Second

// maxQueuedEvents bounds the events of a call waiting to be written to a
// client that reads slowly: past it, a newer progress notification
// replaces the last one queued.
const maxQueuedEvents = 256

// prefersEvents reports whether the Accept header values ask for
// text/event-stream over application/json: it is acceptable, and ranks
// higher by quality than JSON (the most specific range that matches each
// decides its quality). A tie, "*/*" or no header at all keeps JSON.
func prefersEvents(accept []string) bool {
	var sse, js struct {
		q           float64
		specificity int // 0 none, 1 */*, 2 type/*, 3 exact
	}
	for _, v := range accept {
		for _, part := range strings.Split(v, ",") {
			media, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			q := 1.0
			if s, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 0 && f <= 1 {
					q = f
				}
			}
			if n := matches(media, "text", "event-stream"); n > sse.specificity {
				sse.q, sse.specificity = q, n
			}
			if n := matches(media, "application", "json"); n > js.specificity {
				js.q, js.specificity = q, n
			}
		}
	}
	return sse.q > 0 && sse.q > js.q
}

// matches is how specifically the media range matches type/sub: 3 for
// type/sub, 2 for type/*, 1 for */*, 0 for no match.
func matches(media, typ, sub string) int {
	t, s, _ := strings.Cut(media, "/")
	switch {
	case t == typ && s == sub:
		return 3
	case t == typ && s == "*":
		return 2
	case t == "*" && s == "*":
		return 1
	}
	return 0
}

// streamEvent is an event waiting to be written.
type streamEvent struct {
	name string
	data []byte
	// after is, for a log event, how many progress events come before it.
	after int
}

// eventQueue holds the events of a call waiting to be written: filled on
// the transport's reader goroutine, which must not wait for the client,
// and drained on the handler's.
//
// Log events come in before the progress the server sent ahead of them
// (upstream.LogMessage.AfterProgress): each is held until the progress
// events before it are queued, or the call ends.
type eventQueue struct {
	mu       sync.Mutex
	events   []streamEvent
	held     []streamEvent // log events waiting for progress
	progress int           // progress events pushed
	ready    chan struct{} // holds a token while events wait
}

func newEventQueue() *eventQueue { return &eventQueue{ready: make(chan struct{}, 1)} }

// push queues ev without waiting.
func (q *eventQueue) push(ev streamEvent) {
	q.mu.Lock()
	switch {
	case ev.name == eventProgress:
		q.progress++
		q.add(ev)
		kept := q.held[:0]
		for _, h := range q.held {
			if h.after <= q.progress {
				q.add(h)
			} else {
				kept = append(kept, h)
			}
		}
		q.held = kept
	case ev.after > q.progress && len(q.held) < maxQueuedEvents:
		q.held = append(q.held, ev)
	default:
		q.add(ev)
	}
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// add queues ev; past maxQueuedEvents, an event replaces the last queued
// if it is of the same kind (the newest progress is the one that matters).
func (q *eventQueue) add(ev streamEvent) {
	switch n := len(q.events); {
	case n < maxQueuedEvents:
		q.events = append(q.events, ev)
	case q.events[n-1].name == ev.name:
		q.events[n-1] = ev
	}
}

// take returns the events queued and empties the queue; with all, the
// events held too.
func (q *eventQueue) take(all bool) []streamEvent {
	q.mu.Lock()
	defer q.mu.Unlock()
	evs := q.events
	if all {
		evs = append(evs, q.held...)
		q.held = nil
	}
	q.events = nil
	return evs
}

// progressEvent is the data of a progress event: total and message are
// left out when the server sent none.
func progressEvent(p upstream.Progress) streamEvent {
	data, _ := json.Marshal(struct {
		Progress float64 `json:"progress"`
		Total    float64 `json:"total,omitempty"`
		Message  string  `json:"message,omitempty"`
	}{p.Progress, p.Total, p.Message})
	return streamEvent{name: eventProgress, data: data}
}

// logEvent is the data of a log event: the server's level, logger and
// data.
func logEvent(m upstream.LogMessage) streamEvent {
	data, err := json.Marshal(m)
	if err != nil { // data is JSON the server sent, and checked
		data, _ = json.Marshal(upstream.LogMessage{Level: m.Level, Logger: m.Logger})
	}
	return streamEvent{name: eventLog, data: data, after: m.AfterProgress}
}

// errorEvent is the data of an error event: the status the answer would
// have had, the seconds of its Retry-After when it has one, and its
// {"detail": ...} body as is.
func errorEvent(e *httpError) []byte {
	var b bytes.Buffer
	b.WriteString(`{"status":`)
	b.WriteString(strconv.Itoa(e.Status))
	if e.RetryAfter > 0 {
		b.WriteString(`,"retry_after":`)
		b.WriteString(retryAfterSeconds(e.RetryAfter))
	}
	b.WriteByte(',')
	body := detailBody(e.Detail)
	b.Write(body[1:]) // "detail":{...}}
	return b.Bytes()
}

// eventStream writes the events of one answer.
type eventStream struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	open bool
	err  error // the first write's that failed: the client is gone
}

// start writes the stream's headers.
func (s *eventStream) start() {
	h := s.w.Header()
	h["Content-Type"] = []string{"text/event-stream"}
	h["Cache-Control"] = []string{"no-cache"}
	h["X-Accel-Buffering"] = []string{"no"} // nginx: pass each event on at once
	s.w.WriteHeader(http.StatusOK)
	s.open = true
}

// write sends ev, opening the stream first if need be, and flushes it.
// Each line of the data is a data line of its own, so that a result
// holding line breaks (a server's pretty-printed JSON) arrives whole.
func (s *eventStream) write(ev streamEvent) {
	s.put("event: ", []byte(ev.name))
	data := ev.data
	for {
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			s.put("data: ", data)
			break
		}
		s.put("data: ", data[:i])
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		data = data[i+1:]
	}
	s.send("\n")
}

// keepAlive sends a comment line, which clients ignore.
func (s *eventStream) keepAlive() { s.send(": keep-alive\n\n") }

// put writes the line field value, opening the stream first if need be:
// the value is written as it is, a result's bytes never copied.
func (s *eventStream) put(field string, value []byte) {
	if !s.open {
		s.start()
	}
	if s.err != nil {
		return
	}
	if _, s.err = io.WriteString(s.w, field); s.err == nil {
		if _, s.err = s.w.Write(value); s.err == nil {
			_, s.err = io.WriteString(s.w, "\n")
		}
	}
}

// send writes text, opening the stream first if need be, and flushes what
// was written.
func (s *eventStream) send(text string) {
	if !s.open {
		s.start()
	}
	if s.err != nil {
		return
	}
	if _, s.err = io.WriteString(s.w, text); s.err == nil {
		// A writer that cannot flush still gets every event, at its
		// end.
		if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			s.err = err
		}
	}
}

// streamLogLevel is the least level of the log messages a streamed call
// asks a 2026-07-28 server for.
const streamLogLevel = "debug"

// stream runs a call of tool rt of st with checked arguments and answers
// it as server-sent events: progress and log messages as the server sends
// them, then the result or the error. An error before the stream opened
// is returned for serveCall to write as JSON; one after is written as an
// error event and returned marked streamed. base is the server's base path as the client
// sees it; start is when the call started.
func (b *Bridge) stream(w http.ResponseWriter, r *http.Request, st *serverState, rt *route, args json.RawMessage, base string, start time.Time) *httpError {
	q := newEventQueue()
	hooks := upstream.HooksFrom(r.Context())
	hooks.Progress = func(p upstream.Progress) { q.push(progressEvent(p)) }
	// A 2026-07-28 server logs about a call only at the level the call
	// asks for; streamed calls ask for every level, as an MCP client that
	// set none gets them at the MCP endpoint.
	hooks.Log, hooks.LogLevel = func(m upstream.LogMessage) { q.push(logEvent(m)) }, streamLogLevel
	ctx := upstream.WithHooks(r.Context(), &hooks)
	type answer struct {
		res *upstream.CallResult
		e   *httpError
	}
	done := make(chan answer, 1)
	go func() { // ends with the call, which ends when the client goes away
		res, e := b.invoke(ctx, st, rt, args, base, nil)
		done <- answer{res, e}
	}()
	s := &eventStream{w: w, rc: http.NewResponseController(w)}
	keepAlive := time.NewTimer(keepAliveInterval)
	defer keepAlive.Stop()
	var a answer
wait:
	for {
		select {
		case <-q.ready:
			for _, ev := range q.take(false) {
				s.write(ev)
			}
		case <-keepAlive.C:
			s.keepAlive()
		case a = <-done:
			break wait
		}
		keepAlive.Reset(keepAliveInterval)
	}
	for _, ev := range q.take(true) { // what came before the answer
		s.write(ev)
	}
	e := a.e
	var body []byte
	if e == nil {
		body, e = answerOf(a.res, st.cfg, rt.tool)
	}
	switch {
	case e == clientGone:
	case e == nil:
		s.write(streamEvent{name: eventResult, data: body})
	case s.open:
		s.write(streamEvent{name: eventError, data: errorEvent(e)})
		e = streamed(e)
	}
	if a.e == nil {
		b.logCall(st.cfg.Name, rt.tool.Name, start, args, func() []byte { return body }, e)
	}
	return e
}

// streamed is e as answered by an error event: serveCall records its
// outcome and status and writes nothing.
func streamed(e *httpError) *httpError {
	c := *e
	c.streamed = true
	return &c
}

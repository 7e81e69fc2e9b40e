package upstream

import (
	"bytes"
	"io"
	"mime"
	"net/http"
	"sync"

	"go.uber.org/zap"
)

// A server reached over HTTP sends its messages as response bodies: a
// JSON body holding one message, or an event stream whose events each hold
// one. mcp-go reads both without bound (a JSON decoder, a line reader), so
// limitTransport bounds them as a stdio server's lines are bounded
// (Options.MaxMessageBytes): a JSON body, or one event of a stream, larger
// than the limit ends that body with a *MessageTooLargeError. Only the
// request it answers fails: unlike a stdio stream, the session is intact.
// Bytes are counted as they are read, never held.

// limitTransport bounds the messages in the responses of base.
type limitTransport struct {
	base   http.RoundTripper
	server string
	limit  int64
	log    func() *zap.Logger
}

func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || resp.Body == nil || resp.Body == http.NoBody {
		return resp, err
	}
	media, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	b := &limitedBody{ReadCloser: resp.Body, limit: t.limit, events: media == "text/event-stream"}
	x, _ := req.Context().Value(exchangeKey{}).(*exchange)
	b.over = func() error {
		e := &MessageTooLargeError{Server: t.server, Limit: t.limit}
		if x != nil {
			x.setTooLarge(e)
		} else {
			// A standing stream, which answers no request of its own.
			t.log().Warn("the MCP server sent a message over the limit on its event stream; the stream is closed",
				zap.String("server", t.server), zap.Int64("limit", t.limit))
		}
		return e
	}
	resp.Body = b
	if fn := logOf(req.Context()); fn != nil && b.events {
		// The stream answering a call: the log messages on it are the
		// call's.
		token, _ := req.Context().Value(tokenKey{}).(string)
		resp.Body = &logTap{ReadCloser: b, fn: fn, token: token}
	}
	return resp, nil
}

// limitedBody is a response body that fails once a message in it goes past
// limit: the whole body, or with events set one event of a stream (the
// bytes of its lines up to the blank line that ends it).
type limitedBody struct {
	io.ReadCloser
	limit  int64
	events bool
	over   func() error // the error to fail with, and the report of it

	// Read is never called concurrently; Close may be, from another
	// goroutine, and touches only close.
	size  int64 // of the body, or of the event being read
	line  int64 // length of the line being read, of an event stream
	cr    bool  // the line being read ends in '\r' so far
	err   error // once over the limit
	close sync.Once
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.ReadCloser.Read(p)
	if b.count(p[:n]) {
		b.err = b.over()
		// The server may be writing the rest: stop reading it.
		b.close.Do(func() { _ = b.ReadCloser.Close() })
		return 0, b.err
	}
	return n, err
}

func (b *limitedBody) Close() error {
	var err error
	b.close.Do(func() { err = b.ReadCloser.Close() })
	return err
}

// count adds p to what has been read and says whether a message went past
// the limit.
func (b *limitedBody) count(p []byte) bool {
	if !b.events {
		b.size += int64(len(p))
		return b.size > b.limit
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		seg := p
		if i >= 0 {
			seg = p[:i]
		}
		if len(seg) > 0 {
			b.line += int64(len(seg))
			b.size += int64(len(seg))
			b.cr = seg[len(seg)-1] == '\r'
		}
		if b.size > b.limit {
			return true
		}
		if i < 0 {
			return false
		}
		// A line ended; a blank one ends the event.
		if b.line == 0 || (b.line == 1 && b.cr) {
			b.size = 0
		}
		b.line, b.cr = 0, false
		p = p[i+1:]
	}
	return false
}

package upstream

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
)

// defaultMaxMessageBytes bounds one message from a stdio server where
// Options.MaxMessageBytes is zero. It takes a tool result carrying a dozen
// megabytes of binary content (base64 in JSON: screenshots, files), twice
// the bridge's default request body limit. A message at the limit costs a
// few times its size while it is handled (mcp-go holds the line as a
// string and copies it for each of its two decodings; the tap keeps the
// result); a longer one costs about twice the limit before it is refused.
const defaultMaxMessageBytes = 16 << 20

// MessageTooLargeError reports a server that sent a message larger than
// Options.MaxMessageBytes. A stdio server's session (whose stream cannot be
// read past the line) is ended and the server restarted, and the calls
// under way on it fail with this error; over HTTP, only the request the
// message answered fails.
type MessageTooLargeError struct {
	Server string
	// Limit is the limit the message went past, in bytes.
	Limit int64
	// Restarted says that the session ended and the server restarts.
	Restarted bool
}

func (e *MessageTooLargeError) Error() string {
	restarted := ""
	if e.Restarted {
		restarted = "; the server is restarted"
	}
	return fmt.Sprintf("server %q sent a message larger than %s%s (max_message_size raises the limit)",
		e.Server, formatBytes(e.Limit), restarted)
}

// formatBytes writes a size the way configuration files write it.
func formatBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// stdoutReader is what mcp-go's stdio transport reads a server's stdout
// through. mcp-go reads a line per message with no bound on its length,
// and skips a line it cannot parse without a word; the reader ends the
// stream at a line longer than the limit (so that mcp-go never holds more
// than about the limit), reports lines that are not JSON-RPC messages, and
// notes when the server last sent anything.
//
// It passes the bytes on where mcp-go's buffer has them, copying only the
// first bytes of each line (to report a junk line), and tells junk from
// messages without parsing, which mcp-go does after it: a message is a line
// whose first non-space byte is '{', whose next one is '"' or '}', whose
// last one is '}', and that holds "jsonrpc" (every JSON-RPC message has
// that member; the Go and Python SDKs write it first, where the search
// ends at once, the TypeScript SDK last). Anything else but a blank line
// is junk: plain text, a pretty-printed or Python-printed object, a JSON
// log record. A line that passes these checks and still does not parse is
// skipped by mcp-go unreported.
type stdoutReader struct {
	r     io.Reader
	limit int64
	// seen is called on every read that brought bytes.
	seen func()
	// tooLarge is called with the error of a line over the limit, before
	// the stream ends.
	tooLarge func(*MessageTooLargeError)
	// pipe, if set, is closed at a line over the limit, so that a server
	// blocked writing the rest of it gets an error rather than waiting to
	// be stopped.
	pipe   io.Closer
	server string
	junk   *junkLog

	ended bool // the stream ended at a line over the limit

	// The line being read.
	size  int64 // its length so far, without the newline
	shape lineShape
	keyed bool // it holds "jsonrpc"
	last  byte // its last non-space byte so far
	head  [junkHead]byte
	headN int
	// The last bytes of the line so far, while keyed is false, to find
	// "jsonrpc" across two reads.
	tail  [len(jsonrpcKey) - 1]byte
	tailN int
}

// lineShape is what the start of a line says it is.
type lineShape uint8

const (
	lineBlank  lineShape = iota // nothing but white space so far
	lineOpen                    // '{' and nothing more
	lineObject                  // '{' then '"' or '}'
	lineJunk                    // anything else
)

// jsonrpcKey is the member every JSON-RPC message has.
const jsonrpcKey = `"jsonrpc"`

func (r *stdoutReader) Read(p []byte) (int, error) {
	if r.ended {
		return 0, io.EOF
	}
	n, err := r.r.Read(p)
	if n > 0 {
		r.seen()
		if keep, ok := r.scan(p[:n]); !ok {
			// The complete lines before the long one go to mcp-go, then
			// the stream ends: mcp-go logs nothing at io.EOF, and the
			// session ends with the reason why.
			r.ended = true
			e := &MessageTooLargeError{Server: r.server, Limit: r.limit, Restarted: true}
			r.tooLarge(e)
			if r.pipe != nil {
				_ = r.pipe.Close()
			}
			r.junk.flush()
			return keep, io.EOF
		}
	}
	if err != nil {
		r.junk.flush()
	}
	return n, err
}

// scan follows b, the next bytes of the stream, through its lines. It
// reports false when a line goes past the limit, with the length of the
// complete lines in b before it.
func (r *stdoutReader) scan(b []byte) (keep int, ok bool) {
	for i := 0; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		end := len(b)
		if j >= 0 {
			end = i + j
		}
		seg := b[i:end]
		r.size += int64(len(seg))
		if r.size > r.limit {
			return i, false
		}
		r.feed(seg)
		if j < 0 {
			break
		}
		r.endLine()
		i = end + 1
	}
	return len(b), true
}

// feed takes the next part of the current line.
func (r *stdoutReader) feed(seg []byte) {
	if r.headN < len(r.head) {
		r.headN += copy(r.head[r.headN:], seg)
	}
	rest := seg
	for r.shape == lineBlank || r.shape == lineOpen {
		i := firstNonSpace(rest)
		if i < 0 {
			break
		}
		c := rest[i]
		rest = rest[i+1:]
		switch {
		case r.shape == lineBlank && c == '{':
			r.shape = lineOpen
		case r.shape == lineOpen && (c == '"' || c == '}'):
			r.shape = lineObject
		default:
			r.shape = lineJunk
		}
	}
	if r.shape == lineObject && !r.keyed {
		r.findKey(seg)
	}
	if i := lastNonSpace(seg); i >= 0 {
		r.last = seg[i]
	}
}

// findKey looks for "jsonrpc" in seg and across its boundary with what
// came before it on the line.
func (r *stdoutReader) findKey(seg []byte) {
	if bytes.Contains(seg, []byte(jsonrpcKey)) {
		r.keyed = true
		return
	}
	var joint [2 * (len(jsonrpcKey) - 1)]byte
	n := copy(joint[:], r.tail[:r.tailN])
	n += copy(joint[n:], seg[:min(len(seg), len(jsonrpcKey)-1)])
	if bytes.Contains(joint[:n], []byte(jsonrpcKey)) {
		r.keyed = true
		return
	}
	// Keep the last bytes of tail+seg.
	if len(seg) >= len(r.tail) {
		r.tailN = copy(r.tail[:], seg[len(seg)-len(r.tail):])
		return
	}
	keep := min(r.tailN, len(r.tail)-len(seg))
	copy(r.tail[:], r.tail[r.tailN-keep:r.tailN])
	r.tailN = keep + copy(r.tail[keep:], seg)
}

// endLine judges the line that just ended and makes ready for the next.
func (r *stdoutReader) endLine() {
	if r.shape != lineBlank && !(r.shape == lineObject && r.keyed && r.last == '}') {
		r.junk.line(r.head[:r.headN], r.size)
	}
	r.size, r.shape, r.keyed, r.last, r.headN, r.tailN = 0, lineBlank, false, 0, 0, 0
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

func firstNonSpace(b []byte) int {
	for i, c := range b {
		if !isSpace(c) {
			return i
		}
	}
	return -1
}

func lastNonSpace(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if !isSpace(b[i]) {
			return i
		}
	}
	return -1
}

// Bounds on the junk lines logged: the first junkHead bytes of each, at
// most junkBurst lines per junkInterval; the rest are counted, and their
// number logged at the end of the interval.
const (
	junkHead     = 200
	junkBurst    = 10
	junkInterval = time.Minute
)

// junkLog logs a server's junk lines, within bounds.
type junkLog struct {
	log      func() *zap.Logger // names the server
	burst    int
	interval time.Duration

	mu        sync.Mutex
	windowEnd time.Time
	logged    int         // lines logged in the current window
	dropped   int         // lines not logged since the last summary
	timer     *time.Timer // logs the summary at the end of the window
}

func newJunkLog(log func() *zap.Logger) *junkLog {
	return &junkLog{log: log, burst: junkBurst, interval: junkInterval}
}

// line reports a junk line of size bytes that begins with head.
func (j *junkLog) line(head []byte, size int64) {
	now := time.Now()
	j.mu.Lock()
	defer j.mu.Unlock()
	if !now.Before(j.windowEnd) {
		j.flushLocked()
		j.windowEnd = now.Add(j.interval)
		j.logged = 0
	}
	if j.logged >= j.burst {
		j.dropped++
		if j.timer == nil {
			var t *time.Timer
			t = time.AfterFunc(j.windowEnd.Sub(now), func() {
				j.mu.Lock()
				defer j.mu.Unlock()
				if j.timer == t { // not a window that ended already
					j.flushLocked()
				}
			})
			j.timer = t
		}
		return
	}
	j.logged++
	s := strings.TrimRight(string(head), "\r\n")
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if size > int64(len(head)) {
		s += "…"
	}
	j.log().Warn("MCP server wrote a line to stdout that is not a JSON-RPC message; ignoring it",
		zap.String("line", s), zap.Int64("bytes", size))
}

// flush logs how many lines were not logged, if any, and stops the timer.
func (j *junkLog) flush() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.flushLocked()
}

func (j *junkLog) flushLocked() {
	if j.timer != nil {
		j.timer.Stop()
		j.timer = nil
	}
	if j.dropped == 0 {
		return
	}
	j.log().Warn("MCP server wrote more lines to stdout that are not JSON-RPC messages; not logged",
		zap.Int("lines", j.dropped), zap.Duration("interval", j.interval))
	j.dropped = 0
}

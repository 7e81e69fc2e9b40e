package bridge

// The MCP face's direct path for tools/call. mcp-go's transport reads a
// tools/call six to eight times over (its probe, the era, the envelope,
// the protocol information, the trace context, the header checks, the
// request), starts a goroutine and a channel per request to forward
// notifications, registers the request for cancellation, builds an
// ephemeral session per 2026-07-28 request, and writes the result through
// a map: together they cost more than the whole call through the REST
// face. So a tools/call that needs nothing of the transport but its answer
// is served here, by the same handler (mcpFace.call), with the same
// checks, and answered as mcp-go answers it; everything else, and every
// request this path is not sure of, goes to mcp-go unchanged.
//
// A request takes this path when it is a single tools/call with a plain id
// (a string of letters, digits and ._:-, or an integer), no task, no
// progress token and no result member, with a _meta read as mcp-go reads
// it (readMeta), of a tool the caller is granted that does not require a
// task, and:
//   - on 2025-11-25, names a session this endpoint registered, whose client
//     declared neither elicitation nor sampling (a server's requests are
//     relayed on the POST's stream by mcp-go), with nothing queued for it
//     (mcp-go sends that on the answer), and that mcp-go's transport saw
//     within fastTouch (which keeps the session from being swept as idle);
//   - on 2026-07-28, passes mcp-go's transport checks (the versions of the
//     header and of _meta agree and are served, the client's capabilities
//     are declared, no Last-Event-ID, the standard headers agree with the
//     body), of a tool without x-mcp-header parameters.
//
// The call's log messages, the only notifications it can send its client
// without a progress token, upgrade the answer to server-sent events as
// mcp-go does: on 2025-11-25 each event is stored for resumption under the
// session, and a client resuming with Last-Event-ID gets them replayed by
// mcp-go. notifications/cancelled of such a call is seen in serveMCP.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/jsonbody"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// lastEventID is mcp.HeaderLastEventID as http.Header keeps it: Get
// would make it so, a string per request.
var lastEventID = http.CanonicalHeaderKey(mcp.HeaderLastEventID)

// fastTouch is how long a session's calls may take the direct path after
// mcp-go's transport last handled one of its requests.
const fastTouch = time.Minute

// fastQueue bounds the notifications of a call waiting to be written to
// a client that reads its stream slowly; past it they are dropped, as
// mcp-go drops those of a full session channel.
const fastQueue = 64

// liveSession is a 2025-11-25 session mcp-go's transport registered on the
// endpoint.
type liveSession struct {
	s server.ClientSession
	// seen is when mcp-go's transport last handled a request of the
	// session, in Unix seconds.
	seen atomic.Int64
}

// fastRequest is a JSON-RPC message as the direct path reads it
// (readRequest).
type fastRequest struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  fastParams      `json:"params"`
	// Result makes the message a response to mcp-go, which answers it 202
	// without calling anything.
	Result json.RawMessage `json:"result"`
	// checked is set when scanRequest read the message: jsonbody checked
	// it whole, the raw members' values too.
	checked bool
}

// The members of fastRequest and fastParams, by their names.
var (
	requestMembers = []string{"jsonrpc", "id", "method", "params", "result"}
	paramsMembers  = []string{"name", "arguments", "_meta", "task", "inputResponses", "requestState"}
)

// scanRequest reads message into m as json.Unmarshal reads it, without
// its reflection and copies (the raw members are slices of message), and
// reports whether it could. It cannot, and the caller decodes message with
// json.Unmarshal, when message is not an object that jsonbody accepts
// (one JSON value, valid UTF-8, no repeated names), when a member name is
// one encoding/json could match to a field in another case or after its
// escapes (matchMember), when a string member is not a string without
// escapes, when params is not an object, and when params carries a
// 2026-07-28 retry's inputResponses or requestState.
func scanRequest(message []byte, m *fastRequest) bool {
	sure := true
	var params []byte
	err := jsonbody.RawMembers(message, MaxBodyDepth, func(name []byte, escaped bool, value []byte) {
		i, ok := matchMember(name, escaped, requestMembers)
		sure = sure && ok
		switch i {
		case 0:
			m.JSONRPC, ok = plainString(value, mcp.JSONRPC_VERSION)
			sure = sure && ok
		case 1:
			m.ID = value
		case 2:
			m.Method, ok = plainString(value, string(mcp.MethodToolsCall))
			sure = sure && ok
		case 3:
			params = value
		case 4:
			m.Result = value
		}
	})
	if err != nil || !sure {
		return false
	}
	if params != nil && params[0] != '{' {
		return false
	}
	p := &m.Params
	jsonbody.Split(params, func(name []byte, escaped bool, value []byte) { // checked with the message
		i, ok := matchMember(name, escaped, paramsMembers)
		sure = sure && ok
		switch i {
		case 0:
			p.Name, ok = plainString(value, "")
			sure = sure && ok
		case 1:
			p.Arguments = value
		case 2:
			p.Meta = value
		case 3:
			p.Task = value
		case 4, 5:
			sure = false // decoded by json.Unmarshal
		}
	})
	m.checked = sure
	return sure
}

// readRequest reads message as json.Unmarshal reads it, with scanRequest
// where it can, and reports false for a message json.Unmarshal refuses.
func readRequest(message []byte) (fastRequest, bool) {
	var m fastRequest
	if scanRequest(message, &m) {
		return m, true
	}
	u := new(fastRequest)
	err := json.Unmarshal(message, u)
	return *u, err == nil
}

// matchMember returns the index in names of the member name (as it stands
// in a message, quotes excluded, escaped if it holds escapes), -1 for a
// name that is none of them, and false when encoding/json could match it
// to one of them where the comparison here cannot: a name with escapes or
// non-ASCII bytes (which encoding/json folds), or one of names in another
// case.
func matchMember(name []byte, escaped bool, names []string) (int, bool) {
	if escaped {
		return -1, false
	}
	for _, c := range name {
		if c >= utf8.RuneSelf {
			return -1, false
		}
	}
	for i, n := range names {
		if string(name) == n {
			return i, true
		}
		if len(name) == len(n) && bytes.EqualFold(name, []byte(n)) {
			return -1, false
		}
	}
	return -1, true
}

// plainString returns the contents of value, a JSON string without
// escapes (as common if it is common, without a copy), or false when
// value is anything else.
func plainString(value []byte, common string) (string, bool) {
	if len(value) < 2 || value[0] != '"' || bytes.IndexByte(value, '\\') >= 0 {
		return "", false
	}
	v := value[1 : len(value)-1]
	if string(v) == common {
		return common, true
	}
	return string(v), true
}

// fastParams is the params of a tools/call, as mcp.CallToolParams but
// without decoding the arguments.
type fastParams struct {
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
	Meta      json.RawMessage `json:"_meta"` // a second _meta replaces the first, as in mcp-go's map
	Task      json.RawMessage `json:"task"`
	mcp.MultiRoundTripParams
}

// fastMeta is the members of a request's _meta the direct path reads,
// decoded as mcp.Meta's accessors decode them.
type fastMeta struct {
	ProgressToken      json.RawMessage         `json:"progressToken"`
	ProtocolVersion    string                  `json:"io.modelcontextprotocol/protocolVersion"`
	ClientInfo         *mcp.Implementation     `json:"io.modelcontextprotocol/clientInfo"`
	ClientCapabilities *mcp.ClientCapabilities `json:"io.modelcontextprotocol/clientCapabilities"`
	LogLevel           mcp.LoggingLevel        `json:"io.modelcontextprotocol/logLevel"`
}

// metaNames are fastMeta's members, quoted.
var metaNames = [][]byte{[]byte(`"progressToken"`), []byte(`"` + mcp.MetaKeyProtocolVersion + `"`),
	[]byte(`"` + mcp.MetaKeyClientInfo + `"`), []byte(`"` + mcp.MetaKeyClientCapabilities + `"`), []byte(`"` + mcp.MetaKeyLogLevel + `"`)}

// readMeta decodes raw, a request's _meta, as mcp-go's mcp.Meta reads it,
// or reports false when the two could read it differently: mcp.Meta is a
// map, whose members are found by their exact names, where a struct's
// decoding matches names in any case (and after their escapes), and a
// value of another shape reads as none, where it fails a struct's
// decoding.
func readMeta(raw json.RawMessage, checked bool) (fastMeta, bool) {
	var m fastMeta
	if nonNullJSON(raw) == nil || scanMeta(raw, checked, &m) {
		return m, true
	}
	// scanMeta reads no name it could mistake; json.Unmarshal could.
	if bytes.IndexByte(raw, '\\') >= 0 || otherCase(raw) {
		return fastMeta{}, false
	}
	u := new(fastMeta) // as json.Unmarshal reads it: a repeated member's last value
	if json.Unmarshal(raw, u) != nil {
		return fastMeta{}, false
	}
	return *u, true
}

// metaMembers are fastMeta's members, by their names.
var metaMembers = []string{"progressToken", mcp.MetaKeyProtocolVersion, mcp.MetaKeyClientInfo, mcp.MetaKeyClientCapabilities, mcp.MetaKeyLogLevel}

// scanMeta reads raw, a _meta, into m as mcp.Meta reads it, with a
// decoding of its own for the object and the strings (see scanRequest),
// and reports whether it could: not when one of its names is escaped or
// one of metaNames in another case, where mcp.Meta's map and a struct's
// decoding part. checked says a check of the message accepted raw.
func scanMeta(raw []byte, checked bool, m *fastMeta) bool {
	sure := true
	ok := objectMembers(raw, checked, func(name []byte, escaped bool, value []byte) {
		i, ok := matchMember(name, escaped, metaMembers)
		sure = sure && ok
		var s string
		switch i {
		case 0:
			m.ProgressToken = value
		case 1:
			m.ProtocolVersion, ok = plainString(value, mcp.ProtocolVersion20260728)
		case 2:
			m.ClientInfo, ok = clientInfos.decode(value)
		case 3:
			m.ClientCapabilities, ok = clientCapabilities.decode(value)
		case 4:
			s, ok = plainString(value, "")
			m.LogLevel = mcp.LoggingLevel(s)
		}
		sure = sure && ok
	})
	return ok && sure
}

// objectMembers calls f with the members of raw as jsonbody.RawMembers does,
// and reports false when raw is not an object, or fails the check. When
// checked (a check of the message accepted raw), raw is only split.
func objectMembers(raw []byte, checked bool, f func(name []byte, escaped bool, value []byte)) bool {
	if !checked {
		return jsonbody.RawMembers(raw, MaxBodyDepth, f) == nil
	}
	if len(raw) == 0 || raw[0] != '{' {
		return false
	}
	jsonbody.Split(raw, f)
	return true
}

// clientInfos and clientCapabilities are the clientInfo and
// clientCapabilities of 2026-07-28 requests' _meta, decoded: a client
// sends the same ones with every request, and decoding them took longer
// than reading the rest of the message.
var (
	clientInfos        decodedJSON[mcp.Implementation]
	clientCapabilities decodedJSON[mcp.ClientCapabilities]
)

// maxDecodedJSON bounds a decodedJSON: past it, it starts again empty;
// and a value of more than maxDecodedJSONBytes is decoded without being
// kept, so that clients cannot make it hold more than 256 KiB of keys.
const (
	maxDecodedJSON      = 256
	maxDecodedJSONBytes = 1024
)

// decodedJSON keeps JSON values decoded into a *T by their bytes. The
// values it gives are shared by every request that sent those bytes, and
// are only read.
type decodedJSON[T any] struct {
	mu sync.RWMutex
	m  map[string]*T
}

// decode returns raw decoded as json.Unmarshal decodes it into a *T (nil
// for null), and false when it fails.
func (d *decodedJSON[T]) decode(raw []byte) (*T, bool) {
	d.mu.RLock()
	v, ok := d.m[string(raw)]
	d.mu.RUnlock()
	if ok {
		return v, true
	}
	return d.add(raw)
}

// add is decode of bytes it has not kept.
func (d *decodedJSON[T]) add(raw []byte) (*T, bool) {
	var v *T
	if json.Unmarshal(raw, &v) != nil {
		return nil, false
	}
	if len(raw) > maxDecodedJSONBytes {
		return v, true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil || len(d.m) >= maxDecodedJSON {
		d.m = make(map[string]*T)
	}
	d.m[string(raw)] = v
	return v, true
}

// otherCase reports one of metaNames in raw in another case.
func otherCase(raw []byte) bool {
	for i, c := range raw {
		if c != '"' {
			continue
		}
		for _, name := range metaNames {
			if n := raw[i:min(i+len(name), len(raw))]; len(n) == len(name) && bytes.EqualFold(n, name) && !bytes.Equal(n, name) {
				return true
			}
		}
	}
	return false
}

// initFast registers the hooks that keep the face's live sessions.
func (f *mcpFace) initFast(hooks *server.Hooks) {
	hooks.AddOnRegisterSession(func(_ context.Context, s server.ClientSession) {
		ls := &liveSession{s: s}
		ls.seen.Store(time.Now().Unix())
		f.live.Store(s.SessionID(), ls)
	})
	hooks.AddOnUnregisterSession(func(_ context.Context, s server.ClientSession) {
		f.live.Delete(s.SessionID())
	})
}

// passing notes a POST (its body message) that mcp-go's transport is
// about to handle: the session was seen. When the message is a
// notifications/cancelled of a call on the direct path, it returns the
// call's stop, for the caller to carry out once the transport has
// accepted the message (a 202: it checked the session and the headers);
// nil otherwise.
func (f *mcpFace) passing(r *http.Request, message []byte) *callStop {
	sid := r.Header.Get(server.HeaderKeySessionID)
	if sid == "" {
		return nil
	}
	if ls, ok := f.live.Load(sid); ok {
		ls.(*liveSession).seen.Store(time.Now().Unix())
	}
	if !bytes.Contains(message, []byte(mcp.MethodNotificationCancelled)) {
		return nil
	}
	var n struct {
		Method string `json:"method"`
		Params struct {
			RequestID json.RawMessage `json:"requestId"`
		} `json:"params"`
	}
	if json.Unmarshal(message, &n) != nil || n.Method != string(mcp.MethodNotificationCancelled) {
		return nil
	}
	var id any
	if json.Unmarshal(n.Params.RequestID, &id) != nil {
		return nil
	}
	return f.fastCalls.find(sid, fastID(id))
}

// fastID is a call's id as decoded from JSON (a string or a float64),
// printed as mcp-go prints it to name its own calls (%v): a notification
// names a call as mcp-go would find it.
func fastID(id any) string {
	switch id := id.(type) {
	case string:
		return id
	case float64:
		return strconv.FormatFloat(id, 'g', -1, 64) // as %v prints it
	default:
		return fmt.Sprint(id)
	}
}

// fastCalls are the calls under way on the direct path of 2025-11-25
// sessions, for notifications/cancelled to stop. A call is kept as its
// message names it; a notification, rare beside calls, names it by
// fastID, which find works out for each call of the session.
type fastCalls struct {
	mu sync.Mutex
	m  map[*callStop]fastCall
}

// fastCall is a call on the direct path: its session, and its id as its
// message wrote it (a plainID; the message outlives the call's entry).
type fastCall struct {
	session string
	id      json.RawMessage
}

func (c *fastCalls) add(stop *callStop, call fastCall) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[*callStop]fastCall)
	}
	c.m[stop] = call
}

func (c *fastCalls) remove(stop *callStop) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, stop)
}

// find returns the stop of the call of session whose id is named id
// (fastID), or nil.
func (c *fastCalls) find(session, id string) *callStop {
	c.mu.Lock()
	defer c.mu.Unlock()
	for stop, call := range c.m {
		if call.session == session && fastID(plainIDValue(call.id)) == id {
			return stop
		}
	}
	return nil
}

// plainIDValue is a plainID as JSON decodes it.
func plainIDValue(id json.RawMessage) any {
	if id[0] == '"' {
		return string(id[1 : len(id)-1]) // nothing in it is escaped
	}
	f, _ := strconv.ParseFloat(string(id), 64)
	return f
}

// serveFast answers r, a POST whose body is message, under ctx (r's with
// fr, its faceRequest), when it is a tools/call the direct path serves
// (see the file's comment), and reports whether it did; when not, nothing
// is written.
func (f *mcpFace) serveFast(w http.ResponseWriter, r *http.Request, ctx context.Context, fr *faceRequest, message []byte) bool {
	if !bytes.Contains(message, []byte(mcp.MethodToolsCall)) {
		return false
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return false
		}
	}
	m, ok := readRequest(message)
	if !ok {
		return false
	}
	if m.JSONRPC != mcp.JSONRPC_VERSION || m.Method != string(mcp.MethodToolsCall) || !plainID(m.ID) || nonNullJSON(m.Result) != nil {
		return false
	}
	p := &m.Params
	meta, ok := readMeta(p.Meta, m.checked)
	if !ok || nonNullJSON(p.Task) != nil || nonNullJSON(meta.ProgressToken) != nil {
		return false
	}
	t := f.tools.Load()
	if t == nil {
		return false
	}
	ft, ok := t.byName[p.Name]
	if !ok || ft.rt.task == upstream.TaskRequired {
		return false
	}
	ctx, session, ok := f.fastContext(r, ctx, fr, meta, p.Name, ft)
	if !ok {
		return false
	}
	if f.b.policy != nil && !f.b.policy.grantOf(ctx).of(ft.st, ft.v).permits(ft.rt) {
		return false
	}

	fr.fast = fastSink{f: f, w: w, session: session, argsChecked: m.checked}
	sink := &fr.fast
	if session != "" { // a 2026-07-28 client cancels by closing its request
		f.fastCalls.add(&sink.stop, fastCall{session, m.ID})
		defer f.fastCalls.remove(&sink.stop)
	}
	sink.ctx = ctx
	fr.sink = sink
	req := mcp.CallToolRequest{Header: r.Header}
	req.Method = string(mcp.MethodToolsCall)
	// No _meta: the handler reads only its progress token, which a call on
	// this path has none of.
	req.Params = mcp.CallToolParams{Name: p.Name, MultiRoundTripParams: p.MultiRoundTripParams, RawArguments: p.Arguments}
	res, asked, err := f.recovered(ctx, req)
	streamed := sink.end()
	if !streamed && err != nil && r.Context().Err() != nil {
		return true // the client is gone, as mcp-go leaves it (a stream's answer is stored)
	}
	if streamed {
		sink.event(f.fastAnswer(nil, m.ID, res, asked, err, session == ""))
		return true
	}
	buf := answers.Get().(*[]byte)
	answer := append(f.fastAnswer((*buf)[:0], m.ID, res, asked, err, session == ""), '\n')
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK) // an rpcWriter gives a 2026-07-28 error its status
	_, _ = w.Write(answer)
	if cap(answer) <= maxPooledAnswer {
		*buf = answer
		answers.Put(buf)
	}
	return true
}

// answers are the buffers the direct path writes its answers in, and
// maxPooledAnswer the largest kept: most answers are small, and writing
// copies them out.
var answers = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledAnswer = 16 << 10

// fastContext returns ctx as mcp-go's transport would make it for r, a
// tools/call of tool ft under name (with the _meta of its params), and the
// 2025-11-25 session it is of ("" on 2026-07-28); false when the request
// is left to mcp-go. A 2026-07-28 request's protocol information goes in
// its faceRequest fr, where requesterOf and modernRequest find it, not in
// a context value of mcp-go's: the face asks mcp-go for it only through
// those two.
func (f *mcpFace) fastContext(r *http.Request, ctx context.Context, fr *faceRequest, meta fastMeta, name string, ft faceTool) (context.Context, string, bool) {
	header := r.Header.Get(mcp.HeaderProtocolVersion)
	version := meta.ProtocolVersion
	if !mcp.IsModernProtocol(header) && !mcp.IsModernProtocol(version) {
		if header != "" && !mcp.IsValidProtocolVersion(header) {
			return nil, "", false
		}
		sid := r.Header.Get(server.HeaderKeySessionID)
		v, ok := f.live.Load(sid)
		if !ok || time.Now().Unix()-v.(*liveSession).seen.Load() > int64(fastTouch/time.Second) {
			return nil, "", false
		}
		if f.sessions.ended(sid) { // an ID mcp-go registered is one the endpoint issued
			return nil, "", false
		}
		s := v.(*liveSession).s
		if len(s.NotificationChannel()) > 0 {
			// mcp-go sends what is queued for the session on the answer.
			return nil, "", false
		}
		if c, ok := s.(server.SessionWithClientInfo); ok {
			caps := c.GetClientCapabilities()
			if caps.Elicitation != nil || caps.Sampling != nil {
				return nil, "", false
			}
		}
		return f.mcp.WithContext(ctx, s), sid, true
	}
	if header == "" || header != version || !mcp.IsValidProtocolVersion(version) || r.Header.Get(lastEventID) != "" {
		return nil, "", false
	}
	caps := meta.ClientCapabilities
	if caps == nil {
		return nil, "", false
	}
	if !standardHeadersAgree(r.Header, version, name) || ft.headerParams {
		return nil, "", false // mcp-go checks the parameters' headers
	}
	fr.info = server.RequestProtocolInfo{
		Modern: true, ProtocolVersion: version, ClientInfo: meta.ClientInfo,
		ClientCapabilities: caps, LogLevel: meta.LogLevel,
	}
	return ctx, "", true
}

// standardHeadersAgree is mcp.ValidateStandardHeaders of a tools/call of
// tool name, made of its parts, on the name already read from the body.
func standardHeadersAgree(h http.Header, version, name string) bool {
	if !mcp.RequiresStandardHeaders(version) {
		return true
	}
	if h.Get(mcp.HeaderMethod) != string(mcp.MethodToolsCall) {
		return false
	}
	header := h.Get(mcp.HeaderName)
	decoded, ok := mcp.DecodeHeaderValue(header)
	return header != "" && ok && decoded == name
}

// plainID reports a JSON-RPC id the direct path echoes byte for byte as
// mcp-go would re-encode it: a string of letters, digits and ._:-, or an
// integer of at most 15 digits.
func plainID(id json.RawMessage) bool {
	if len(id) < 1 || len(id) > 130 {
		return false
	}
	if id[0] == '"' {
		if len(id) < 2 || id[len(id)-1] != '"' {
			return false
		}
		for _, c := range id[1 : len(id)-1] {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
				return false
			}
		}
		return true
	}
	digits := id
	if digits[0] == '-' {
		digits = digits[1:]
	}
	if len(digits) == 0 || len(digits) > 15 || (digits[0] == '0' && len(digits) > 1) {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// recovered calls the tool as mcp-go's WithRecovery does: a panic is the
// call's error.
func (f *mcpFace) recovered(ctx context.Context, req mcp.CallToolRequest) (res *upstream.CallResult, asked *mcp.MultiRoundTripResult, err error) {
	defer func() {
		if r := recover(); r != nil {
			res, asked, err = nil, nil, fmt.Errorf("panic recovered in %s tool handler: %v", req.Params.Name, r)
		}
	}()
	res, asked, err = f.callTool(ctx, req)
	if res == nil && asked == nil && err == nil {
		err = fmt.Errorf("tool %q returned no result", req.Params.Name)
	}
	return res, asked, err
}

// fastAnswer appends to b the JSON-RPC response of request id: the
// server's result res, the input it asks for, or err as mcp-go answers a
// handler's error. It writes what mcp-go writes for the same answer: a
// 2026-07-28 (modern) result carries its resultType and the endpoint's
// identity in _meta, as mcp-go stamps them.
func (f *mcpFace) fastAnswer(b []byte, id json.RawMessage, res *upstream.CallResult, asked *mcp.MultiRoundTripResult, err error, modern bool) []byte {
	if err == nil {
		head := len(b)
		b = append(append(append(b, `{"jsonrpc":"2.0","id":`...), id...), `,"result":`...)
		if asked == nil && nonNullJSON(res.Meta) == nil {
			var meta json.RawMessage
			if modern {
				meta = f.serverMeta
			}
			return append(appendCallResult(b, res, meta, modern), '}')
		}
		var rb []byte
		if rb, err = f.appendMCPResult(b, toolResult(res, asked), modern); err == nil {
			return append(rb, '}')
		}
		b = b[:head] // not expected: the result is made of JSON read from the server
		id = nil
	}
	var v any // the id as mcp-go reads and writes it
	if json.Unmarshal(id, &v) != nil {
		v = nil
	}
	e, _ := json.Marshal(mcp.NewJSONRPCError(mcp.NewRequestId(v), mcp.INTERNAL_ERROR, err.Error(), nil))
	return append(b, e...)
}

// appendMCPResult appends r as mcp-go writes it, a 2026-07-28 (modern)
// one with its resultType and the endpoint's identity in its _meta.
func (f *mcpFace) appendMCPResult(b []byte, r *mcp.CallToolResult, modern bool) ([]byte, error) {
	var meta json.RawMessage // r.Meta's JSON, when known
	if modern {
		if r.ResultType == "" {
			r.ResultType = mcp.ResultTypeComplete
		}
		switch {
		case r.Meta == nil:
			meta = f.serverMeta
		case r.Meta.ServerInfo() == nil:
			r.Meta.SetServerInfo(f.implementation())
		}
	}
	return appendToolResult(b, r, meta)
}

// appendCallResult appends what appendToolResult appends for
// mcpResult(res), res without a _meta of its own, without making it:
// meta is the result's _meta (nil for none), and a complete result says
// so when modern.
func appendCallResult(b []byte, res *upstream.CallResult, meta json.RawMessage, modern bool) []byte {
	b = append(b, '{')
	if meta != nil {
		b = append(append(append(b, `"_meta":`...), meta...), ',')
	}
	b = append(b, `"content":[`...)
	for i := range res.Content {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, contentOf(&res.Content[i])...)
	}
	b = append(b, "],"...)
	if res.IsError {
		b = append(b, `"isError":true,`...)
	}
	if modern {
		b = append(b, `"resultType":"complete",`...)
	}
	if len(res.Structured) > 0 {
		b = append(append(append(b, `"structuredContent":`...), res.Structured...), ',')
	}
	b[len(b)-1] = '}' // the last member's comma
	return b
}

// implementation is the endpoint's identity, as mcp-go gives it in
// results.
func (f *mcpFace) implementation() mcp.Implementation {
	return mcp.Implementation{Name: f.title, Version: mcpFaceVersion}
}

// appendToolResult appends r's JSON, with the members mcp-go's
// CallToolResult.MarshalJSON writes, in its order (a map's: by name), and
// without its map and copies: content items passed on as the server sent
// them are written as they are.
func appendToolResult(b []byte, r *mcp.CallToolResult, meta json.RawMessage) ([]byte, error) {
	member := func(name string, v any) error {
		enc, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		b = append(append(append(append(b, '"'), name...), `":`...), enc...)
		b = append(b, ',')
		return nil
	}
	b = append(b, '{')
	switch {
	case meta != nil:
		b = append(append(append(b, `"_meta":`...), meta...), ',')
	case r.Meta != nil:
		if err := member("_meta", r.Meta); err != nil {
			return nil, err
		}
	}
	b = append(b, `"content":[`...)
	for i, c := range r.Content {
		if i > 0 {
			b = append(b, ',')
		}
		if rc, ok := c.(rawContent); ok {
			b = append(b, rc.raw...)
			continue
		}
		enc, err := json.Marshal(c)
		if err != nil {
			return nil, fmt.Errorf("content %d: %w", i, err)
		}
		b = append(b, enc...)
	}
	b = append(b, "],"...)
	if len(r.InputRequests) > 0 {
		if err := member("inputRequests", r.InputRequests); err != nil {
			return nil, err
		}
	}
	if r.IsError {
		b = append(b, `"isError":true,`...)
	}
	if r.RequestState != "" {
		if err := member("requestState", r.RequestState); err != nil {
			return nil, err
		}
	}
	if r.ResultType == mcp.ResultTypeComplete {
		b = append(b, `"resultType":"complete",`...)
	} else if r.ResultType != "" {
		if err := member("resultType", r.ResultType); err != nil {
			return nil, err
		}
	}
	if len(r.RawStructuredContent) > 0 {
		b = append(append(b, `"structuredContent":`...), r.RawStructuredContent...)
		b = append(b, ',')
	} else if r.StructuredContent != nil {
		if err := member("structuredContent", r.StructuredContent); err != nil {
			return nil, err
		}
	}
	b[len(b)-1] = '}' // the last member's comma
	return b, nil
}

// fastSink is where the notifications of a call on the direct path go:
// its response, upgraded to server-sent events at the first. They are
// queued, and written by a goroutine started with the first, so that the
// server's reader that sends them never waits for the client.
type fastSink struct {
	f       *mcpFace
	w       http.ResponseWriter
	session string // the 2025-11-25 session the events are stored under; "" for none
	ctx     context.Context
	// argsChecked says jsonbody checked the call's arguments with its
	// message (scanRequest), so they need no second pass.
	argsChecked bool
	// stop is the call's, for notifications/cancelled (2025-11-25).
	stop callStop

	mu     sync.Mutex
	ended  bool
	queue  chan []byte   // nil until the first notification
	done   chan struct{} // closed when the writer has written the queue
	stream string        // the stored events' stream
}

// notify queues a notification of method with params for the client.
func (s *fastSink) notify(method string, params map[string]any) {
	msg, err := json.Marshal(mcp.JSONRPCNotification{JSONRPC: mcp.JSONRPC_VERSION,
		Notification: mcp.Notification{Method: method, Params: mcp.NotificationParams{AdditionalFields: params}}})
	if err != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	if s.queue == nil {
		s.queue, s.done = make(chan []byte, fastQueue), make(chan struct{})
		s.w.Header().Set("Content-Type", "text/event-stream")
		s.w.Header().Set("Connection", "keep-alive")
		s.w.Header().Set("Cache-Control", "no-cache")
		s.w.WriteHeader(http.StatusOK)
		if s.session != "" {
			s.stream = uuid.NewString()
		}
		go s.write(s.queue, s.done)
	}
	select {
	case s.queue <- msg:
	default: // the client does not read
	}
}

// write writes the queued notifications until the queue is closed.
func (s *fastSink) write(queue <-chan []byte, done chan<- struct{}) {
	defer close(done)
	for msg := range queue {
		s.event(msg)
	}
}

// event writes msg as an event of the stream, stored first when the
// stream is a session's.
func (s *fastSink) event(msg []byte) {
	var id string
	if s.session != "" {
		id, _ = s.f.events().StoreEvent(context.WithoutCancel(s.ctx), s.session, s.stream, msg)
	}
	var b []byte
	if id != "" {
		b = append(append(append(b, "id: "...), id...), '\n')
	}
	b = append(append(append(b, "event: message\ndata: "...), msg...), "\n\n"...)
	if _, err := s.w.Write(b); err == nil {
		_ = http.NewResponseController(s.w).Flush()
	}
}

// end stops the notifications, once those queued are written, and reports
// whether the response is a stream.
func (s *fastSink) end() bool {
	s.mu.Lock()
	s.ended = true
	queue, done := s.queue, s.done
	s.mu.Unlock()
	if queue == nil {
		return false
	}
	close(queue)
	<-done
	return true
}

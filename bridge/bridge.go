// Package bridge serves MCP servers' tools over plain HTTP. It routes
// POST <base>/<tool> to the tool, turns results and errors into JSON
// responses, and serves each server's OpenAPI document and Swagger UI, plus
// one document covering every server of a mount. It works on any Caller and
// knows nothing of Caddy: the Caddy handler strips its mount and calls Serve.
package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/swaggerui"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// Caller is what the bridge needs of an MCP server; *upstream.Upstream
// implements it.
type Caller interface {
	// Tools returns the last tool listing, nil before the first.
	Tools() *upstream.ToolSet
	// CallTool calls a tool with a JSON object of arguments.
	CallTool(ctx context.Context, name string, args json.RawMessage) (*upstream.CallResult, error)
	// Status describes the server's state.
	Status() upstream.Status
}

// Server is one MCP server as the bridge exposes it.
type Server struct {
	// Name is the server's path segment in a mount of several servers, and
	// its name in logs, errors and operation tags.
	Name     string
	Upstream Caller
	// Tools, when not empty, lists the only tools exposed.
	Tools []string
	// DisabledTools lists tools never exposed.
	DisabledTools []string
	// Timeout bounds each call; DefaultTimeout when zero.
	Timeout time.Duration
	// ToolTimeouts overrides Timeout for the tools it names.
	ToolTimeouts map[string]time.Duration
	// MaxConcurrent caps the calls under way at once; 0 caps nothing.
	MaxConcurrent int
	// QueueTimeout is how long a call waits for a slot when MaxConcurrent
	// calls are under way, before it gets 429; 0 refuses it at once.
	QueueTimeout time.Duration
	// ToolErrorStatus is the HTTP status of a result the tool marked as an
	// error (isError); DefaultToolErrorStatus when zero.
	ToolErrorStatus int
	// Title, when set, is the title of the server's OpenAPI document.
	Title string
	// LenientArgs coerces arguments that fail the tool's input schema when
	// coercing makes them valid (strings holding numbers or booleans, nulls
	// for arguments that take none), for LLMs that send strings. By default
	// such arguments are refused with 422.
	LenientArgs bool
	// Consent, when set, serves the server's OAuth authorization at
	// <server>/oauth/authorize and <server>/oauth/callback.
	Consent Consent
}

// Defaults for Server and Config fields left zero.
const (
	DefaultTimeout         = 5 * time.Minute
	DefaultToolErrorStatus = http.StatusInternalServerError
	DefaultMaxBodyBytes    = 8 << 20
)

// Config configures a Bridge.
type Config struct {
	Servers []*Server
	// Single serves the only server at the mount itself (<base>/<tool>)
	// rather than under its name (<base>/<name>/<tool>).
	Single bool
	// Title is the title of the document covering every server.
	Title string
	// MaxBodyBytes caps request bodies; DefaultMaxBodyBytes when zero.
	MaxBodyBytes int64
	Logger       *zap.Logger
	// Observer is told about every call; nil tells nobody.
	Observer Observer
	// Access guards every endpoint; the zero value guards none.
	Access Access
}

// Bridge serves the tools of a set of MCP servers. It is safe for
// concurrent use.
type Bridge struct {
	cfg     Config
	log     *zap.Logger
	obs     Observer
	gate    *gate
	servers map[string]*serverState // by name

	mu  sync.Mutex // guards all
	all *aggregate // the document covering every server, rebuilt on change
}

// Names used by the router itself; a server cannot take them in a mount of
// several servers.
var reservedNames = map[string]bool{"docs": true, "openapi.json": true, "health": true}

// timeoutFor returns the deadline of a call of tool.
func (s *Server) timeoutFor(tool string) time.Duration {
	if d, ok := s.ToolTimeouts[tool]; ok && d > 0 {
		return d
	}
	return s.Timeout
}

var validName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// ValidateServerName reports a name that cannot be a path segment of a
// mount of several servers.
func ValidateServerName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("server name %q: use letters, digits, '_', '-' and '.', not starting with '-' or '.'", name)
	}
	if reservedNames[name] {
		return fmt.Errorf("server name %q is reserved", name)
	}
	return nil
}

// New returns a Bridge for cfg.
func New(cfg Config) (*Bridge, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("no servers")
	}
	if cfg.Single && len(cfg.Servers) != 1 {
		return nil, fmt.Errorf("a single-server mount has %d servers", len(cfg.Servers))
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Title == "" {
		cfg.Title = "MCP tools"
	}
	b := &Bridge{cfg: cfg, log: cfg.Logger, obs: cfg.Observer, servers: map[string]*serverState{}}
	if b.obs == nil {
		b.obs = noObserver{}
	}
	var err error
	if b.gate, err = newGate(cfg.Access); err != nil {
		return nil, err
	}
	for _, s := range cfg.Servers {
		if !cfg.Single {
			if err := ValidateServerName(s.Name); err != nil {
				return nil, err
			}
		}
		if b.servers[s.Name] != nil {
			return nil, fmt.Errorf("server name %q is used twice", s.Name)
		}
		if s.Timeout <= 0 {
			s.Timeout = DefaultTimeout
		}
		if s.ToolErrorStatus == 0 {
			s.ToolErrorStatus = DefaultToolErrorStatus
		}
		b.servers[s.Name] = newServerState(s, b.gate.scheme)
	}
	return b, nil
}

// Serve answers a request. rel is the request path below the mount ("" or
// starting with "/"); base is the mount's path as the client sees it, used
// for the documents' server URL.
func (b *Bridge) Serve(w http.ResponseWriter, r *http.Request, rel, base string) {
	base = strings.TrimSuffix(base, "/")
	if b.gate.cors(w, r) {
		return
	}
	if s, path := b.consentRoute(rel); s != nil {
		serverBase := base
		if !b.cfg.Single {
			serverBase += "/" + s.cfg.Name
		}
		b.serveConsent(w, r, s, path, serverBase)
		return
	}
	read := r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions
	if !b.gate.admit(w, r, read) {
		return
	}
	if rel == "/health" && (r.Method != http.MethodPost || !b.cfg.Single) {
		if allow(w, r, methodsDoc) {
			b.serveHealth(w, r, base)
		}
		return
	}
	if b.cfg.Single {
		b.serveServer(w, r, b.servers[b.cfg.Servers[0].Name], rel, base)
		return
	}
	switch {
	case rel == "/openapi.json":
		if allow(w, r, methodsDoc) {
			b.serveAggregateDoc(w, r, base)
		}
		return
	case rel == "/docs" || strings.HasPrefix(rel, "/docs/"):
		if allow(w, r, methodsDoc) {
			swaggerui.Serve(w, r, strings.TrimPrefix(rel, "/docs"), b.cfg.Title)
		}
		return
	}
	name, rest, _ := strings.Cut(strings.TrimPrefix(rel, "/"), "/")
	s := b.servers[name]
	if s == nil || name == "" {
		writeError(w, http.StatusNotFound, errorDetail{Message: b.notFoundHint(rel)})
		return
	}
	if rest != "" || strings.HasSuffix(rel, "/") {
		rest = "/" + rest
	}
	b.serveServer(w, r, s, rest, base+"/"+name)
}

func (b *Bridge) notFoundHint(rel string) string {
	names := make([]string, 0, len(b.cfg.Servers))
	for _, s := range b.cfg.Servers {
		names = append(names, s.Name)
	}
	return fmt.Sprintf("no endpoint at %q: the servers here are %s; each serves POST <server>/<tool>, "+
		"<server>/openapi.json and <server>/docs, and openapi.json and docs here cover them all",
		rel, strings.Join(names, ", "))
}

// Methods per kind of path.
var (
	methodsDoc  = []string{http.MethodGet, http.MethodHead}
	methodsTool = []string{http.MethodPost}
	methodsBoth = []string{http.MethodGet, http.MethodHead, http.MethodPost}
)

// serveServer serves one server's paths; rel is below the server's base.
func (b *Bridge) serveServer(w http.ResponseWriter, r *http.Request, s *serverState, rel, base string) {
	var docPath bool
	var sub string
	switch {
	case rel == "/openapi.json":
		docPath = true
	case rel == "/docs" || strings.HasPrefix(rel, "/docs/"):
		docPath, sub = true, strings.TrimPrefix(rel, "/docs")
	}
	seg, isSeg := strings.CutPrefix(rel, "/")
	isSeg = isSeg && seg != "" && !strings.Contains(seg, "/")

	v, err := s.current(b.log)
	var rt *route
	if isSeg && v != nil {
		rt = v.bySegment[seg]
	}
	switch {
	case docPath && rt != nil:
		if !allow(w, r, methodsBoth) {
			return
		}
	case docPath:
		if !allow(w, r, methodsDoc) {
			return
		}
	case rt != nil || (isSeg && v == nil):
		// A known tool, or a server that has not listed its tools yet:
		// only POST makes sense, and a call says why the server is down.
		if !allow(w, r, methodsTool) {
			return
		}
	default:
		b.notFound(w, s, v, rel)
		return
	}

	if r.Method == http.MethodPost {
		if rt == nil { // the server is not ready; nothing is known of the tool
			start := time.Now()
			b.obs.CallStarted(s.cfg.Name, "")
			outcome := b.callError(w, r, s.cfg, base, seg, err, nil, 0)
			b.obs.CallFinished(s.cfg.Name, "", outcome, time.Since(start))
			return
		}
		b.call(w, r, s, rt, base)
		return
	}
	if rel == "/openapi.json" {
		if v == nil {
			b.callError(w, r, s.cfg, base, "", err, nil, 0)
			return
		}
		serveDocument(w, r, v.doc, v.etag, base)
		return
	}
	swaggerui.Serve(w, r, sub, v.titleOr(s.cfg))
}

// notFound answers a path that is neither a tool nor a document.
func (b *Bridge) notFound(w http.ResponseWriter, s *serverState, v *view, rel string) {
	msg := fmt.Sprintf("server %q has no tool at %q; see its openapi.json or docs for the tools it has", s.cfg.Name, rel)
	if v != nil && len(v.routes) <= 20 {
		segs := make([]string, len(v.routes))
		for i, rt := range v.routes {
			segs[i] = rt.segment
		}
		msg = fmt.Sprintf("server %q has no tool at %q; its tools are at: %s (POST)", s.cfg.Name, rel, strings.Join(segs, ", "))
	}
	writeError(w, http.StatusNotFound, errorDetail{Message: msg, Server: s.cfg.Name})
}

// allow checks the request's method against methods, answering OPTIONS and
// anything else not allowed. It reports whether to go on.
func allow(w http.ResponseWriter, r *http.Request, methods []string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(append(methods, http.MethodOptions), ", "))
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return false
	}
	msg := fmt.Sprintf("method %s is not allowed here; use %s", r.Method, strings.Join(methods, " or "))
	if len(methods) == 1 && methods[0] == http.MethodPost {
		msg = fmt.Sprintf("method %s is not allowed: call the tool with POST and a JSON object of its arguments as the body", r.Method)
	}
	writeError(w, http.StatusMethodNotAllowed, errorDetail{Message: msg})
	return false
}

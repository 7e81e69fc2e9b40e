package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

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

// ServerConfig configures one MCP server as the bridge exposes it. New fills in
// the defaults of the fields left zero.
type ServerConfig struct {
	// Name is the server's path segment in a mount of several servers, and
	// its name in logs, errors and operation tags.
	Name string
	// Upstream is the server itself.
	Upstream Caller
	// Tools, when not empty, lists the only tools exposed.
	Tools []string
	// DisabledTools lists tools never exposed.
	DisabledTools []string
	// Timeout bounds each call; DefaultTimeout when zero.
	Timeout time.Duration
	// ToolTimeouts overrides Timeout for the tools it names.
	ToolTimeouts map[string]time.Duration
	// MaxTimeout, when longer than a call's timeout, lets the server's
	// progress notifications extend the call's deadline: each moves it to
	// the timeout after the notification, up to MaxTimeout after the
	// call's start. Zero or shorter: progress extends nothing.
	MaxTimeout time.Duration
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
	// DisableResources and DisablePrompts turn off the server's resources
	// (and resource templates) and its prompts: neither served nor in the
	// documents. Completions are served while either is on, for the
	// references of what is.
	DisableResources, DisablePrompts bool
	// TaskTTL is how long the outcome of a task of the server's tools
	// (tasks.go) is kept after it ends; DefaultTaskTTL when zero.
	TaskTTL time.Duration
	// Tasks keeps the tasks of the server's tools started over REST; nil
	// has the bridge keep them itself, until Close. A store that outlives
	// the bridge keeps the tasks across a reload.
	Tasks *TaskStore
	// Consent, when set, serves the server's OAuth authorization at
	// <server>/oauth/authorize, <server>/oauth/callback and
	// <server>/oauth/client-metadata.json.
	Consent Consent
}

// Defaults for ServerConfig and Config fields left zero.
const (
	DefaultTimeout         = 5 * time.Minute
	DefaultToolErrorStatus = http.StatusInternalServerError
	DefaultMaxBodyBytes    = 8 << 20
)

// Config configures a Bridge.
type Config struct {
	// Servers are the servers of the mount, in the order the documents
	// list them.
	Servers []*ServerConfig
	// Single serves the only server at the mount itself (<base>/<tool>)
	// rather than under its name (<base>/<name>/<tool>).
	Single bool
	// Title is the title of the document covering every server.
	Title string
	// MaxBodyBytes caps request bodies, as sent and once decoded;
	// DefaultMaxBodyBytes when zero.
	MaxBodyBytes int64
	// MaxBodyBytesInFlight caps the bytes of the bodies of all the calls
	// under way: a call whose body does not fit gets 503 with Retry-After.
	// A body is counted from its declared length before it is read (as it
	// is read when its length is unknown, or it is compressed) until its
	// answer is written. DefaultBodiesInFlight bodies of MaxBodyBytes when
	// zero; it may not be less than MaxBodyBytes.
	MaxBodyBytesInFlight int64
	// Logger logs failed calls, consent flows and, at debug level, every
	// call; nil logs nothing.
	Logger *zap.Logger
	// Observer is told about every call; nil tells nobody.
	Observer Observer
	// Audit, when set, gets one line at INFO per tool call: the server,
	// the tool, the caller's ID (IdentityFrom; left out without one), the
	// outcome (as the Observer's), the HTTP status (0 when the client went
	// away before the answer), the duration, and the bytes of the request
	// body as sent and of the answer's body. Never the arguments or the
	// result.
	Audit *zap.Logger
	// Access guards every endpoint; the zero value guards none.
	Access Access
}

// Bridge serves the tools of a set of MCP servers. It is safe for
// concurrent use.
type Bridge struct {
	cfg     Config
	log     *zap.Logger
	obs     Observer
	audit   *zap.Logger // nil for no audit log
	gate    *gate
	policy  *policy                 // nil without Access.Rules
	bodies  budget                  // of MaxBodyBytesInFlight
	servers map[string]*serverState // by name
	mux     *http.ServeMux          // the route table; see routes
	faces   []*mcpFace              // the MCP endpoints, for Close
	// tasks keeps the tasks of the servers without a TaskStore of their
	// own; nil when they all have one. Close closes it.
	tasks *TaskStore

	mu  sync.Mutex // guards all and granted
	all *aggregate // the document covering every server, rebuilt on change
	// granted holds, with Access.Rules, the documents covering every
	// server as each distinct set of granted tools sees them, for the
	// views of grantedViews.
	granted      map[string]*aggregate
	grantedViews []*view
	// docsBuilt counts the documents built, for the tests.
	docsBuilt atomic.Int64
}

// Names of the mount's own pages (mcp is its MCP endpoint); a server
// cannot take them in a mount of several servers.
var reservedNames = map[string]bool{"docs": true, "openapi.json": true, "health": true, MCPSegment: true}

// timeoutFor returns the deadline of a call of tool.
func (s *ServerConfig) timeoutFor(tool string) time.Duration {
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

// New returns a Bridge for cfg, filling in the defaults of its servers'
// fields left zero, and builds its route table.
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
	var err error
	if cfg.MaxBodyBytesInFlight, err = bodiesInFlight(cfg.MaxBodyBytesInFlight, cfg.MaxBodyBytes); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Title == "" {
		cfg.Title = "MCP tools"
	}
	b := &Bridge{cfg: cfg, log: cfg.Logger, obs: cfg.Observer, audit: cfg.Audit, servers: map[string]*serverState{}}
	b.bodies.max = cfg.MaxBodyBytesInFlight
	if b.obs == nil {
		b.obs = noObserver{}
	}
	if b.gate, err = newGate(cfg.Access); err != nil {
		return nil, err
	}
	if b.policy, err = newPolicy(cfg.Access.Rules, cfg.Access.Vary, cfg.Servers, b.log); err != nil {
		return nil, err
	}
	for i, s := range cfg.Servers {
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
		if s.TaskTTL <= 0 {
			s.TaskTTL = DefaultTaskTTL
		}
		st := newServerState(s, b.gate.scheme)
		st.tasks = b.taskStoreOf(s)
		st.index, st.docsBuilt = i, &b.docsBuilt
		if b.policy != nil {
			st.built = func(v *view) { b.policy.lint(b, st, v) }
		}
		b.servers[s.Name] = st
	}
	b.mux = b.routes()
	return b, nil
}

package caddymcpo

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/getkin/kin-openapi/openapi3"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
	"github.com/caddy-mcpo/caddy-mcpo/oauth"
)

// This file holds the configuration types below Handler and every rule
// about a configuration as written. Rules about values that hold
// placeholders are checked where the placeholders are resolved (resolve.go).

// ServerConfig configures one MCP server: a command to run over stdio, or a URL to
// reach over Streamable HTTP or HTTP+SSE.
//
// Values of command, args, env, dir, url and headers may hold Caddy's global
// placeholders, such as {env.API_KEY} or {file./run/secrets/key}, which are
// resolved when the configuration loads (unlike {$VAR}, which the Caddyfile
// adapter bakes into the JSON configuration). A header value may also hold
// placeholders of the caller's request, resolved per call.
type ServerConfig struct {
	// The server's name: its path segment under the mount when a handler
	// serves several servers, and its name in logs and errors.
	Name string `json:"name,omitempty"`

	// The program to run for a stdio server, found through the PATH of the
	// server's environment. It is run directly, never through a shell.
	Command string `json:"command,omitempty"`
	// Arguments passed to the command.
	Args []string `json:"args,omitempty"`
	// Environment variables set for the command.
	Env map[string]string `json:"env,omitempty"`
	// Names of Caddy's own environment variables passed on to the command,
	// besides HOME, LOGNAME, PATH, SHELL, TERM, USER, TMPDIR, TZ and the
	// locale, XDG directory, proxy and CA certificate variables, which
	// always are. "*" passes all of them.
	InheritEnv []string `json:"inherit_env,omitempty"`
	// The command's working directory. Default: Caddy's.
	Dir string `json:"dir,omitempty"`

	// The endpoint of a server reached over HTTP.
	URL string `json:"url,omitempty"`
	// HTTP headers sent with every request to URL, such as Authorization.
	// A value holding a placeholder of the caller's request, such as
	// {mcpo.user.id} or {http.request.header.X-OpenWebUI-Chat-Id}, is
	// resolved per call (with its global placeholders) and sent with that
	// call's requests only; left out when it resolves to nothing.
	Headers map[string]string `json:"headers,omitempty"`
	// Names of the caller's request headers copied to the requests of each
	// call to an HTTP server, such as X-OpenWebUI-Chat-Id. Nothing by
	// default. Hop-by-hop headers and those the MCP transport sets are
	// refused; Authorization and Cookie pass only when named (with a
	// warning at load), and never to a server with oauth.
	ForwardHeaders []string `json:"forward_headers,omitempty"`
	// The key of params._meta under which each tools/call carries the
	// caller's identity, such as "example.com/user": {"id", "email",
	// "name", "role"}, empty ones left out; nothing for a caller without
	// one.
	MetaIdentity string `json:"meta_identity,omitempty"`

	// How the server is reached: "stdio" (the default with command),
	// "streamable_http" (the default with url), "sse" for the legacy
	// HTTP+SSE transport, or "auto" to try Streamable HTTP and fall back to
	// HTTP+SSE.
	Transport string `json:"transport,omitempty"`
	// The MCP protocol era: "auto" (the default), "legacy" (2025-11-25 and
	// earlier, with the initialize handshake), "modern" (2026-07-28), or an
	// exact protocol version.
	Protocol string `json:"protocol,omitempty"`

	// When not empty, only these tools are exposed.
	Tools []string `json:"tools,omitempty"`
	// Tools never exposed.
	DisabledTools []string `json:"disabled_tools,omitempty"`

	// How long a tool call may take before the caller gets 504 and the
	// call is cancelled at the server. Default: 5m.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Timeouts of particular tools, overriding timeout.
	ToolTimeouts map[string]caddy.Duration `json:"tool_timeouts,omitempty"`
	// How long a call that reports progress may take: each progress
	// notification of the server moves the call's deadline to timeout (or
	// the tool's tool_timeout) after it, up to max_timeout after the call
	// started. At least timeout. Default: timeout, so progress extends
	// nothing.
	MaxTimeout caddy.Duration `json:"max_timeout,omitempty"`
	// How long the outcome of a tool run as a task (started with Prefer:
	// respond-async, or a task-only tool's call that outlived its timeout)
	// is kept for its caller to fetch after the task ends. Default: 10m.
	TaskTTL caddy.Duration `json:"task_ttl,omitempty"`
	// The most calls under way at once; further calls wait up to
	// queue_timeout for a free slot, then get 429 with Retry-After.
	// Default: no limit.
	MaxConcurrent int `json:"max_concurrent,omitempty"`
	// How long a call waits for a free slot under max_concurrent.
	// Default: 0, refused at once.
	QueueTimeout caddy.Duration `json:"queue_timeout,omitempty"`
	// How long calls under way may take to finish when a configuration
	// change replaces or removes the server, before it is stopped.
	// Default: 30s.
	DrainTimeout caddy.Duration `json:"drain_timeout,omitempty"`
	// How long a stdio server may take to exit after its stdin is closed,
	// before its process group gets SIGTERM. Default: 2s.
	StopTimeout caddy.Duration `json:"stop_timeout,omitempty"`
	// How long after SIGTERM before the process group gets SIGKILL.
	// Default: 3s.
	KillTimeout caddy.Duration `json:"kill_timeout,omitempty"`
	// How long starting the server (process start or connect, handshake
	// and tool listing) may take before it counts as failed and is retried
	// with backoff. Default: 60s.
	StartTimeout caddy.Duration `json:"start_timeout,omitempty"`
	// The largest message the server may send, in bytes: one line of a
	// stdio server's output, or one JSON response or event of a server
	// reached over HTTP. A stdio server that sends a larger one is
	// restarted and the calls under way get 502 saying so; over HTTP, the
	// call the message answers gets 502. The message is counted as it is
	// read, never held whole. Default: 16 MiB.
	MaxMessageSize int64 `json:"max_message_size,omitempty"`
	// How often a ready server is pinged (ping; server/discover on
	// 2026-07-28 connections). Negative (the Caddyfile's off): never.
	// Default: 30s.
	PingInterval caddy.Duration `json:"ping_interval,omitempty"`
	// How long a ping may go unanswered, while the server sends nothing
	// else, before the server is killed (a stdio server's whole process
	// group, with SIGKILL) and restarted, the calls under way getting 502.
	// Default: 20s.
	PingTimeout caddy.Duration `json:"ping_timeout,omitempty"`
	// How many failures (failed starts, exits, connections lost, pings
	// unanswered) within failure_window put the server in state failed:
	// no more restarts until the admin API's restart or a reload that
	// changes the server. Negative (the Caddyfile's off): never. Default:
	// 5 for stdio servers, never for HTTP ones.
	MaxFailures int `json:"max_failures,omitempty"`
	// The window of max_failures. Default: 1m.
	FailureWindow caddy.Duration `json:"failure_window,omitempty"`
	// Bounds on a stdio server's process, on Linux (resource limits, set
	// on the process as it starts and inherited by what it starts). A
	// change starts a new process.
	Limits *Limits `json:"limits,omitempty"`
	// The HTTP status of a result the tool marked as an error (isError).
	// Default: 500.
	ToolErrorStatus int `json:"tool_error_status,omitempty"`
	// The title of the server's own OpenAPI document. Default: its name.
	Title string `json:"title,omitempty"`
	// Whether arguments must match the tool's input schema as sent. When
	// false, arguments that fail are coerced if that makes them valid:
	// strings holding numbers or booleans become numbers or booleans, and
	// nulls for arguments that take none are left out (for LLMs that send
	// every value as a string). Default: true; failing arguments get 422.
	StrictArgs *bool `json:"strict_args,omitempty"`

	// Whether the server's resources and resource templates are served
	// (GET <base>/resources, GET <base>/resources/read) and listed in the
	// documents, when it declares them. Default: true.
	Resources *bool `json:"resources,omitempty"`
	// Whether the server's prompts are served (GET <base>/prompts, POST
	// <base>/prompts/<name>) and listed in the documents, when it declares
	// them. Default: true.
	Prompts *bool `json:"prompts,omitempty"`
	// Directories (absolute paths) the proxy declares as its roots: it
	// answers the server's roots/list with them, as file:// URIs. Default:
	// none, and no roots capability.
	Roots []string `json:"roots,omitempty"`
	// How the server's requests for input during a call
	// (elicitation/create) are answered: "off" (the default) declares no
	// elicitation capability, so the server asks nothing (a tool that
	// needs input fails, saying so); "decline" declares it and declines
	// every request; "defaults" accepts every form with the defaults its
	// schema gives (a URL elicitation is declined). With "decline" or
	// "defaults", an elicitation during a call made at the MCP endpoint goes
	// to the client that made the call when it declared elicitation.
	Elicitation string `json:"elicitation,omitempty"`
	// Whether the server's sampling requests during a call
	// (sampling/createMessage) are passed on: "off" (the default) declares
	// no sampling capability, so the server asks nothing (the proxy has no
	// model of its own); "relay" declares it and passes each request made
	// during a call at the MCP endpoint to the client that made the call
	// when it declared sampling, refusing every other request with JSON-RPC
	// error -32601 that says why (the HTTP API's calls, clients without
	// the capability, requests not tied to a call).
	Sampling string `json:"sampling,omitempty"`

	// OAuth authorizes the requests to an HTTP server with OAuth 2.1.
	// With isolation "user" (and the authorization-code grant), each
	// caller authorizes the server for themselves and their session
	// carries their own token.
	OAuth *OAuth `json:"oauth,omitempty"`

	// Who shares a session of the server (a stdio process, or an HTTP
	// session): "shared" (the default), every caller one session; or
	// "user", each caller identity a session of its own, started on its
	// first call. "user" needs the handler's identity. Values of args,
	// env, dir, url and headers may then hold the caller's placeholders
	// ({mcpo.user.id}, .email, .name, .role, .groups), resolved when the
	// caller's session starts.
	Isolation string `json:"isolation,omitempty"`
	// How long a caller's session may go without calls before it is
	// stopped (isolation "user"). Default: 10m.
	IdleTimeout caddy.Duration `json:"idle_timeout,omitempty"`
	// The most sessions the server runs at once (isolation "user"): when
	// all run, a new caller's session replaces the least recently used
	// one without a call under way, or the call gets 429 when every one
	// has a call under way. Default: 100.
	MaxSessions int `json:"max_sessions,omitempty"`
	// The caller ID the server's tools are listed as (isolation "user"):
	// a listing session, apart from the callers', runs with every
	// {mcpo.user.*} placeholder resolved to it. Default: "mcpo". Not with
	// oauth: the first caller who authorizes lists the tools.
	ListAs string `json:"list_as,omitempty"`
	// When the server's process (or HTTP session) starts: "eager" (the
	// default), with the configuration; or "on_demand", on the first call,
	// which waits for the start (within start_timeout and the call's
	// timeout), and it stops again after idle_timeout without calls. The
	// documents come from the last tool listing kept in Caddy's storage,
	// or, when none is kept, from a listing made at load (start, list,
	// stop). With isolation "user", whose sessions start on demand
	// anyway, it keeps the listing in storage as well.
	Start string `json:"start,omitempty"`
}

// Limits bound the resources of a stdio server's process, each process on
// its own (not the process group as a whole), with Linux resource limits.
// A server stopped by one is reported as such in health and the log.
type Limits struct {
	// The most memory the process may allocate, in bytes: its heap and
	// private writable mappings (RLIMIT_DATA), not its address space,
	// which Node and Go reserve far beyond what they use.
	Memory int64 `json:"memory,omitempty"`
	// The most CPU time the process may use (RLIMIT_CPU, whole seconds):
	// then SIGXCPU, and SIGKILL 5 s later.
	CPU caddy.Duration `json:"cpu,omitempty"`
	// The most files the process may hold open (RLIMIT_NOFILE).
	OpenFiles uint64 `json:"open_files,omitempty"`
	// The most processes and threads of the user the server runs as
	// (RLIMIT_NPROC): counted for the whole user, Caddy's own threads and
	// other servers included, and not binding root.
	Processes uint64 `json:"processes,omitempty"`
}

// SecurityScheme declares how callers authenticate, for the documents.
type SecurityScheme struct {
	// "basic" or "bearer" (HTTP authentication), or "header", "query" or
	// "cookie" (an API key there, under Name).
	Type string `json:"type"`
	// The name of the header, query parameter or cookie holding the key.
	Name string `json:"name,omitempty"`
	// For "bearer", a hint of the tokens' format, such as "JWT".
	BearerFormat string `json:"bearer_format,omitempty"`
	// A description shown in the documents.
	Description string `json:"description,omitempty"`
}

// CORS lets pages of other origins call the handler from a browser.
// Preflight requests are answered before any API key is checked, and every
// answer to an allowed origin, errors included, carries the CORS headers.
type CORS struct {
	// The origins allowed, such as "https://chat.example.com"; "*" allows
	// any origin.
	Origins []string `json:"origins,omitempty"`
	// How long browsers may cache a preflight answer. Default: 10m.
	MaxAge caddy.Duration `json:"max_age,omitempty"`
}

// OAuth authorizes the requests to an HTTP server with OAuth 2.1, as the
// MCP authorization specification describes. Nothing blocks: until a user
// has authorized the server (once; tokens are kept in Caddy's storage and
// refreshed), calls to it get 503 with the address of its authorize page,
// and every other server works as usual.
//
// Values may hold placeholders, such as {env.CLIENT_SECRET} or
// {file./run/secrets/key.pem}.
type OAuth struct {
	// "authorization_code" (the default: a user consents in a browser at
	// <mount>/<server>/oauth/authorize) or "client_credentials" (the
	// server is called on Caddy's own behalf, with the client's
	// credentials, and no browser is involved).
	Grant string `json:"grant,omitempty"`

	// The external URL of <mount>/<server>/oauth/callback (of
	// <mount>/oauth/callback for a single-server mount), where the
	// authorization server sends the browser back, such as
	// https://caddy.example.com/tools/github/oauth/callback. Required for
	// the authorization-code grant; register it with the provider when
	// the client is pre-registered.
	RedirectURI string `json:"redirect_uri,omitempty"`

	// A pre-registered client. Without one, the client registers itself
	// with a client ID metadata document (see ClientMetadataURL) or by
	// dynamic client registration, and keeps the registration in storage.
	ClientID string `json:"client_id,omitempty"`
	// The pre-registered client's secret, best as a placeholder such as
	// {env.CLIENT_SECRET}.
	ClientSecret string `json:"client_secret,omitempty"`
	// How the client authenticates at the token endpoint:
	// client_secret_basic, client_secret_post, none or private_key_jwt.
	// Default: chosen from what the client has and the server supports.
	TokenEndpointAuthMethod string `json:"token_endpoint_auth_method,omitempty"`
	// The PEM private key (RSA or ECDSA P-256) of private_key_jwt client
	// authentication, best as {file./path/key.pem}.
	PrivateKey string `json:"private_key,omitempty"`
	// RS256 or ES256; default from the key.
	SigningAlgorithm string `json:"signing_algorithm,omitempty"`
	// The authorization server the pre-registered client belongs to: its
	// credentials are never sent to another one.
	Issuer string `json:"issuer,omitempty"`

	// The scopes to ask for. Default: those the server asks for in its
	// challenge or lists in its metadata.
	Scopes []string `json:"scopes,omitempty"`

	// The HTTPS URL of <mount>/<server>/oauth/client-metadata.json, which
	// the handler serves: with authorization servers that support client
	// ID metadata documents, it is the client's ID and no registration is
	// needed.
	ClientMetadataURL string `json:"client_metadata_url,omitempty"`
	// The client name shown on consent pages. Default: caddy-mcpo.
	ClientName string `json:"client_name,omitempty"`
}

// errNoServer refuses a handler without any server, before and after its
// config files are read.
var errNoServer = errors.New("no MCP server configured: give a command, a url, server blocks or a config file")

// Validate checks the handler's configuration as written: its mount, its
// servers (present, named as the mount needs, each valid) and who may call.
// Provision runs it first; Caddy runs it again after Provision.
func (h *Handler) Validate() error {
	if _, err := normalizeMount(h.Mount); err != nil {
		return fieldErr(err, "mount")
	}
	if len(h.Servers) == 0 && len(h.ConfigFiles) == 0 {
		return errNoServer
	}
	if err := validateNames(h.Servers, h.single()); err != nil {
		return err
	}
	for i, s := range h.Servers {
		name := h.serverName(s)
		if err := s.Validate(); err != nil {
			return &serverError{index: i, name: name, err: err}
		}
		if s.perUser() && h.Identity == nil {
			return &serverError{index: i, name: name, err: fieldErr(errors.New(
				"isolation user gives each caller a session of their own, and needs to know who calls: "+
					"set identity on the handler"), "isolation")}
		}
		if s.OAuth != nil && s.OAuth.Grant != oauth.GrantClientCredentials && !s.perUser() &&
			len(h.APIKeys)+len(h.AdminKeys) == 0 && h.Security == nil {
			return &serverError{index: i, name: name, err: fieldErr(errors.New(
				"the oauth authorize page would be open to anyone: set admin_key or api_key, "+
					"or declare security when a handler in front authenticates callers"), "oauth")}
		}
	}
	if err := h.validateBodyLimits(); err != nil {
		return err
	}
	if err := h.validateIdentity(); err != nil {
		return err
	}
	if err := h.validateAccess(); err != nil {
		return err
	}
	if h.ProtectDocs && len(h.APIKeys) == 0 && h.Identity == nil {
		return fieldErr(errors.New("protect_docs needs an api_key or an identity"), "protect_docs")
	}
	if h.Security != nil {
		if len(h.APIKeys) > 0 {
			return fieldErr(errors.New("security declares how another handler authenticates callers; "+
				"with api_key the documents already declare the bearer key: drop one"), "security", "api_keys")
		}
		if err := h.Security.Validate(); err != nil {
			return nested("security", err)
		}
	}
	if h.CORS != nil {
		if err := h.CORS.Validate(); err != nil {
			return nested("cors", err)
		}
	}
	return nil
}

// validateBodyLimits checks that a body of max_request_body fits in
// max_request_bytes_in_flight.
func (h *Handler) validateBodyLimits() error {
	if h.MaxRequestBytesInFlight == 0 {
		return nil
	}
	body := h.MaxRequestBody
	if body <= 0 {
		body = bridge.DefaultMaxBodyBytes
	}
	if h.MaxRequestBytesInFlight < body {
		return fieldErr(fmt.Errorf("max_request_bytes_in_flight %d is less than max_request_body (%d): a body of that size would never fit",
			h.MaxRequestBytesInFlight, body), "max_request_bytes_in_flight")
	}
	return nil
}

// single reports a handler serving its only server at the mount itself.
func (h *Handler) single() bool {
	return len(h.ConfigFiles) == 0 && len(h.Servers) == 1 && h.Servers[0].Name == ""
}

// serverName is the name a server of the handler goes by: its own, or for
// the single server of a mount, the mount's last segment.
func (h *Handler) serverName(s *ServerConfig) string {
	if h.single() {
		mount, err := normalizeMount(h.Mount)
		if err != nil {
			mount = h.Mount
		}
		return mountName(mount)
	}
	return s.Name
}

// validateNames checks the names of a handler's servers: present,
// path-safe and unique, unless the handler serves a single server at its
// mount.
func validateNames(servers []*ServerConfig, single bool) error {
	if single {
		return nil
	}
	seen := map[string]bool{}
	for i, s := range servers {
		var err error
		switch {
		case s.Name == "":
			err = errors.New("with several servers, every server needs a name")
		case seen[s.Name]:
			err = fmt.Errorf("server name %q is used twice", s.Name)
		default:
			err = bridge.ValidateServerName(s.Name)
		}
		if err != nil {
			return &serverError{index: i, err: err} // the error names the server
		}
		seen[s.Name] = true
	}
	return nil
}

// Validate checks a server's configuration as written: a command or a url,
// a known transport and protocol, settings that fit the transport, and the
// limits.
func (s *ServerConfig) Validate() error {
	switch {
	case s.Command != "" && s.URL != "":
		return fieldErr(errors.New("command and url are exclusive: a server runs a command (stdio) or is reached at a url"),
			"command", "url")
	case s.Command == "" && s.URL == "":
		return errors.New("needs a command (stdio) or a url (HTTP)")
	}
	transport, err := s.transport()
	if err != nil {
		return fieldErr(err, "transport")
	}
	if _, err := upstream.ParseProtocol(s.Protocol); err != nil {
		return fieldErr(err, "protocol")
	}
	if transport != upstream.TransportStdio && (len(s.Env) > 0 || len(s.InheritEnv) > 0) {
		return fieldErr(errors.New("env and inherit_env apply to stdio servers only"), "env", "inherit_env")
	}
	if s.ToolErrorStatus != 0 && (s.ToolErrorStatus < 400 || s.ToolErrorStatus > 599) {
		return fieldErr(fmt.Errorf("tool_error_status %d: want an HTTP error status (400-599)", s.ToolErrorStatus),
			"tool_error_status")
	}
	if err := s.validateForwarding(transport); err != nil {
		return err
	}
	if s.MaxMessageSize < 0 {
		return fieldErr(fmt.Errorf("max_message_size %d: want a size in bytes", s.MaxMessageSize), "max_message_size")
	}
	if s.Limits != nil {
		if transport != upstream.TransportStdio {
			return fieldErr(errors.New("limits apply to stdio servers only"), "limits")
		}
		if err := s.Limits.upstream().Validate(); err != nil {
			return fieldErr(err, "limits")
		}
	}
	if s.PingTimeout < 0 || s.FailureWindow < 0 {
		return fieldErr(errors.New("ping_timeout and failure_window take positive durations"), "ping_timeout", "failure_window")
	}
	if s.MaxConcurrent < 0 {
		return fieldErr(fmt.Errorf("max_concurrent %d: want 0 (no limit) or more", s.MaxConcurrent), "max_concurrent")
	}
	if s.MaxTimeout < 0 {
		return fieldErr(fmt.Errorf("max_timeout %s: want a positive duration", time.Duration(s.MaxTimeout)), "max_timeout")
	}
	if s.MaxTimeout != 0 {
		timeout := cmp.Or(time.Duration(s.Timeout), bridge.DefaultTimeout)
		if time.Duration(s.MaxTimeout) < timeout {
			return fieldErr(fmt.Errorf("max_timeout %s is shorter than timeout %s: want max_timeout at least timeout",
				time.Duration(s.MaxTimeout), timeout), "max_timeout", "timeout")
		}
	}
	if s.TaskTTL < 0 {
		return fieldErr(fmt.Errorf("task_ttl %s: want a positive duration", time.Duration(s.TaskTTL)), "task_ttl")
	}
	if s.QueueTimeout > 0 && s.MaxConcurrent == 0 {
		return fieldErr(errors.New("queue_timeout needs max_concurrent: without a limit no call waits"), "queue_timeout")
	}
	if err := s.validateIsolation(); err != nil {
		return err
	}
	if err := s.validateClientFeatures(); err != nil {
		return err
	}
	if s.OAuth != nil {
		if transport == upstream.TransportStdio {
			return fieldErr(errors.New("oauth applies to servers reached at a url; give a stdio server its credentials through env"),
				"oauth")
		}
		if err := s.OAuth.Validate(); err != nil {
			return nested("oauth", err)
		}
	}
	return nil
}

// upstream returns the limits as the upstream package takes them; nil for
// none.
func (l *Limits) upstream() *upstream.Limits {
	if l == nil || *l == (Limits{}) {
		return nil
	}
	return &upstream.Limits{Memory: l.Memory, CPU: time.Duration(l.CPU), OpenFiles: l.OpenFiles, Processes: l.Processes}
}

// Isolations of a server.
const (
	isolationShared = "shared"
	isolationUser   = "user"
)

// When a server starts.
const (
	startEager    = "eager"
	startOnDemand = "on_demand"
)

// onDemand reports a server started by its first call.
func (s *ServerConfig) onDemand() bool { return s.Start == startOnDemand }

// perUser reports a server that gives each caller a session of its own.
func (s *ServerConfig) perUser() bool { return s.Isolation == isolationUser }

// validateIsolation checks the isolation, the settings that go with it
// and where the caller's placeholders are written.
func (s *ServerConfig) validateIsolation() error {
	switch s.Isolation {
	case "", isolationShared, isolationUser:
	default:
		return fieldErr(fmt.Errorf("isolation %q: want %s or %s", s.Isolation, isolationShared, isolationUser), "isolation")
	}
	switch s.Start {
	case "", startEager, startOnDemand:
	default:
		return fieldErr(fmt.Errorf("start %q: want %s or %s", s.Start, startEager, startOnDemand), "start")
	}
	if s.Start == startOnDemand && s.OAuth != nil && !s.perUser() {
		return fieldErr(errors.New("start on_demand does not go with oauth yet: the server's authorization lives with its session"),
			"start", "oauth")
	}
	if !s.perUser() {
		for _, f := range []struct {
			set   bool
			field string
		}{{s.IdleTimeout != 0 && !s.onDemand(), "idle_timeout"}, {s.MaxSessions != 0, "max_sessions"}, {s.ListAs != "", "list_as"}} {
			if f.set {
				msg := "%s applies to servers with isolation user"
				if f.field == "idle_timeout" {
					msg += " or start on_demand"
				}
				return fieldErr(fmt.Errorf(msg, f.field), f.field)
			}
		}
	}
	if s.IdleTimeout < 0 {
		return fieldErr(fmt.Errorf("idle_timeout %s: want a positive duration", time.Duration(s.IdleTimeout)), "idle_timeout")
	}
	if s.MaxSessions < 0 {
		return fieldErr(fmt.Errorf("max_sessions %d: want 1 or more", s.MaxSessions), "max_sessions")
	}
	if s.perUser() && s.OAuth != nil {
		if err := s.validateUserOAuth(); err != nil {
			return err
		}
	}
	return s.validateUserPlaceholders()
}

// validateUserOAuth checks a per-user server with oauth, which each caller
// authorizes for themselves.
func (s *ServerConfig) validateUserOAuth() error {
	switch {
	case s.OAuth.Grant == oauth.GrantClientCredentials:
		return fieldErr(errors.New("isolation user with oauth has each caller authorize the server with their own account, "+
			"which the client_credentials grant cannot do: use the authorization_code grant, or drop isolation user "+
			"for a server that acts as caddy-mcpo itself"), "isolation", "oauth.grant")
	case s.ListAs != "":
		return fieldErr(errors.New("list_as does not go with oauth: nobody authorizes as list_as; "+
			"the first caller who authorizes lists the tools"), "list_as")
	case holdsUser(s.URL):
		return fieldErr(errors.New("url holds a caller's placeholder, which oauth does not take: "+
			"the callers authorize one server, at one url"), "url", "oauth")
	}
	return nil
}

// validateUserPlaceholders checks the caller's placeholders: known ones,
// never in command, and in args, env and dir only where each caller has a
// session of their own (on a shared server, headers resolve them per call).
func (s *ServerConfig) validateUserPlaceholders() error {
	check := func(field, v string, allowed bool) error {
		names, err := userPlaceholders(v)
		if err != nil {
			return fieldErr(fmt.Errorf("%s: %w", field, err), field)
		}
		if len(names) > 0 && !allowed {
			return fieldErr(fmt.Errorf("%s holds {%s}, which needs isolation user: a session shared by every caller cannot start as one of them",
				field, names[0]), field)
		}
		return nil
	}
	if err := check("command", s.Command, false); err != nil {
		return fieldErr(fmt.Errorf("command %q: the program is the same for every caller; pass the caller in args or env", s.Command), "command")
	}
	errs := []error{check("dir", s.Dir, s.perUser()), check("url", s.URL, s.perUser())}
	for _, a := range s.Args {
		errs = append(errs, check("args", a, s.perUser()))
	}
	for _, v := range s.Env {
		errs = append(errs, check("env", v, s.perUser()))
	}
	for _, v := range s.Headers {
		errs = append(errs, check("headers", v, true))
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// transport returns how the server is reached: as configured, or stdio
// with a command and Streamable HTTP with a url.
func (s *ServerConfig) transport() (upstream.Transport, error) {
	switch {
	case s.Transport != "":
		return upstream.ParseTransport(s.Transport)
	case s.Command != "":
		return upstream.TransportStdio, nil
	default:
		return upstream.TransportStreamableHTTP, nil
	}
}

// Validate checks the grant. The other settings may hold placeholders:
// they are checked once resolved (see OAuth.config), by
// oauth.Config.Validate.
func (o *OAuth) Validate() error {
	switch o.Grant {
	case "", oauth.GrantAuthorizationCode, oauth.GrantClientCredentials:
		return nil
	}
	return fieldErr(fmt.Errorf("oauth grant %q: want %s or %s", o.Grant, oauth.GrantAuthorizationCode, oauth.GrantClientCredentials),
		"grant")
}

// Validate checks that the declaration is one OpenAPI can express.
func (s *SecurityScheme) Validate() error {
	switch s.Type {
	case "basic", "bearer":
		if s.Type == "basic" && s.BearerFormat != "" {
			return fieldErr(errors.New(`security: bearer_format applies to type "bearer" only`), "bearer_format")
		}
		if s.Name != "" {
			return fieldErr(fmt.Errorf("security: type %q takes no name", s.Type), "name")
		}
	case "header", "query", "cookie":
		if s.Name == "" {
			return fieldErr(fmt.Errorf("security: type %q needs the name of the %s holding the key", s.Type, s.Type), "name")
		}
	default:
		return fieldErr(fmt.Errorf("security: unknown type %q: want basic, bearer, header, query or cookie", s.Type), "type")
	}
	return nil
}

// openAPI converts the validated declaration to an OpenAPI security scheme.
func (s *SecurityScheme) openAPI() *openapi3.SecurityScheme {
	out := &openapi3.SecurityScheme{Description: s.Description}
	switch s.Type {
	case "basic", "bearer":
		out.Type, out.Scheme, out.BearerFormat = "http", s.Type, s.BearerFormat
	default:
		out.Type, out.In, out.Name = "apiKey", s.Type, s.Name
	}
	return out
}

// Validate checks the origins: at least one, each an origin a browser
// sends.
func (c *CORS) Validate() error {
	if len(c.Origins) == 0 {
		return fieldErr(errors.New(`cors needs the origins allowed, or "*" for any`), "origins")
	}
	for _, o := range c.Origins {
		if err := checkOrigin(o); err != nil {
			return fieldErr(err, "origins")
		}
	}
	return nil
}

// checkOrigin reports an origin that no browser sends: an Origin is a
// scheme and a host, with an optional port, and nothing else.
func checkOrigin(o string) error {
	if o == "*" {
		return nil
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("cors origin %q: want a scheme and a host, such as https://chat.example.com, or *", o)
	}
	return nil
}

// fieldError is an error about some fields of a configuration object,
// named by their JSON names, dotted below a nested object ("oauth.grant"),
// so that the Caddyfile adapter can report it at the line that set them.
type fieldError struct {
	fields []string
	err    error
}

// fieldErr returns err as an error about fields.
func fieldErr(err error, fields ...string) error {
	return &fieldError{fields: fields, err: err}
}

func (e *fieldError) Error() string { return e.err.Error() }
func (e *fieldError) Unwrap() error { return e.err }

// nested returns err, an error of the object under field, as an error of
// the object holding it.
func nested(field string, err error) error {
	var fe *fieldError
	if !errors.As(err, &fe) {
		return fieldErr(err, field)
	}
	out := &fieldError{err: err}
	for _, f := range fe.fields {
		out.fields = append(out.fields, field+"."+f)
	}
	return out
}

// serverError is an error about one of a handler's servers.
type serverError struct {
	index int    // in Handler.Servers
	name  string // the server's name, or "" when err names the server
	err   error
}

func (e *serverError) Error() string {
	if e.name == "" {
		return e.err.Error()
	}
	return fmt.Sprintf("server %q: %v", e.name, e.err)
}

func (e *serverError) Unwrap() error { return e.err }

// AccessControl says which tools each caller may call. With it, what no
// rule grants a caller is denied: a call gets 403, and the caller's
// OpenAPI documents, Swagger UI and health list only their tools.
// Without it, every caller may call every tool.
type AccessControl struct {
	// The rules, each granting tools to callers.
	Rules []AccessRule `json:"rules,omitempty"`
}

// AccessRule grants tools to callers.
type AccessRule struct {
	// Who the rule grants to: "user:<id>", "role:<role>",
	// "group:<group>", "email:<email>" (compared without regard to
	// case), "anonymous" (a caller without an identity: with identity
	// set, one that may read the documents but call nothing, such as
	// Open WebUI fetching a document) or "*" (any caller, identified or
	// not). Any but "*" and "anonymous" needs identity.
	Subjects []string `json:"subjects"`
	// Glob patterns (path.Match) over "<server>/<tool>", such as "time/*",
	// "*/read_*" or "memory/search_nodes"; "*" alone is every tool of
	// every server. At a single-server mount too, the server's name (the
	// mount's last segment) comes first.
	Tools []string `json:"tools"`
}

// validateAccess checks the rules: each valid, at least one, and an
// identity for those that name callers.
func (h *Handler) validateAccess() error {
	if h.Access == nil {
		return nil
	}
	if len(h.Access.Rules) == 0 {
		return fieldErr(errors.New("access grants nothing: add a grant <subject> <patterns...> line, or drop access"), "access")
	}
	for i, r := range h.Access.Rules {
		field := fmt.Sprintf("access.rules.%d", i)
		br := bridge.Rule{Subjects: r.Subjects, Tools: r.Tools}
		if err := br.Validate(); err != nil {
			return fieldErr(fmt.Errorf("access: %w", err), field)
		}
		for _, sub := range r.Subjects {
			if h.Identity == nil && sub != bridge.SubjectAnyone && sub != bridge.SubjectAnonymous {
				return fieldErr(fmt.Errorf("access: subject %q needs to know who calls: set identity on the handler", sub), field)
			}
		}
	}
	return nil
}

// rules returns the access rules as the bridge takes them, and the
// request headers that decide who the caller is.
func (h *Handler) rules() ([]bridge.Rule, []string) {
	if h.Access == nil {
		return nil, nil
	}
	out := make([]bridge.Rule, len(h.Access.Rules))
	for i, r := range h.Access.Rules {
		out[i] = bridge.Rule{Subjects: r.Subjects, Tools: r.Tools}
	}
	var vary []string
	if h.Identity != nil {
		vary = h.Identity.vary()
	}
	return out, vary
}

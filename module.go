package caddymcpo

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
	"github.com/caddy-mcpo/caddy-mcpo/oauth"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler serves the tools of one or more MCP servers under a mount path.
//
// With one unnamed server, the server is served at the mount itself:
// POST <mount>/<tool>, GET <mount>/openapi.json and GET <mount>/docs.
// With named servers (or a config file), each is served at <mount>/<name>/...
// and <mount>/openapi.json and <mount>/docs describe all of them at once.
type Handler struct {
	// The path prefix the handler serves, such as "/time". Requests outside
	// it go to the next handler. Default: "/".
	Mount string `json:"mount,omitempty"`

	// The MCP servers to serve. A single server without a name is served at
	// the mount itself; otherwise every server needs a unique name.
	Servers []*ServerConfig `json:"servers,omitempty"`

	// Claude Desktop / mcpo configuration files (with an "mcpServers"
	// object) whose servers are added to Servers each time the
	// configuration is loaded. Relative paths are relative to Caddy's
	// working directory.
	ConfigFiles []string `json:"config_files,omitempty"`

	// The title of the OpenAPI document: the server's document with a
	// single server, the document covering every server otherwise.
	Title string `json:"title,omitempty"`

	// The largest request body accepted, in bytes, as sent and, for a
	// gzip-compressed body, once decoded. Default: 8 MiB.
	MaxRequestBody int64 `json:"max_request_body,omitempty"`

	// The most bytes of request bodies the calls under way at this handler
	// hold at once: a call whose body does not fit gets 503 with
	// Retry-After. A body counts from its declared length before it is
	// read (as it is read when its length is unknown or it is compressed)
	// until its answer is written. At least max_request_body. Default: 8
	// times max_request_body (64 MiB), so that the memory calls take stays
	// bounded whatever the number of clients.
	MaxRequestBytesInFlight int64 `json:"max_request_bytes_in_flight,omitempty"`

	// API keys a caller must present as "Authorization: Bearer <key>" to
	// call tools: a missing key gets 401, a wrong one 403. Write them as
	// placeholders, such as {env.MCPO_KEY} or {file./run/secrets/key},
	// so that they stay out of the configuration; a placeholder that
	// resolves to nothing is an error. The documents then declare a bearer
	// scheme. Keys are never logged. With identity api_key, a key may name
	// its user.
	APIKeys []APIKey `json:"api_keys,omitempty"`

	// Where the caller's identity comes from: a placeholder an
	// authentication handler in front sets, Open WebUI's signed user
	// token, or the user an API key names. With it, a call without a
	// valid identity gets 401. Default: none; calls are anonymous.
	Identity *IdentitySource `json:"identity,omitempty"`

	// Require an API key (and with identity, the caller's identity) for
	// openapi.json, Swagger UI and health as well: Bearer, or Basic
	// authentication with the key as the password, so that a browser can
	// open the docs.
	ProtectDocs bool `json:"protect_docs,omitempty"`

	// The security scheme the documents declare when another handler in
	// front (basic_auth, forward_auth, a JWT plugin) authenticates
	// callers, so that the documents and Swagger UI's Authorize button
	// match. It checks nothing itself.
	Security *SecurityScheme `json:"security,omitempty"`

	// Cross-origin access for clients running in a browser, such as Open
	// WebUI's direct tool servers. Default: none.
	CORS *CORS `json:"cors,omitempty"`

	// Keys that guard the pages starting a server's OAuth authorization
	// (<mount>/<server>/oauth/authorize), in place of the API keys:
	// Bearer, or Basic with the key as the password. Placeholders as for
	// api_key.
	AdminKeys []string `json:"admin_keys,omitempty"`

	// Which tools each caller may call, by who they are (see identity).
	// Default: every caller may call every tool.
	Access *AccessControl `json:"access,omitempty"`

	mount    string
	bridge   *bridge.Bridge
	identity *identifier // nil without Identity
	leases   []*lease    // the servers this handler holds
	logger   *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mcpo",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision validates the configuration, loads config files, resolves
// placeholders, and takes the handler's upstreams from the pool. It starts
// nothing: the mcpo app starts them once the configuration runs, so
// `caddy validate` spawns no process.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if err := h.Validate(); err != nil {
		return err
	}
	h.mount, _ = normalizeMount(h.Mount) // valid
	servers, err := h.allServers()
	if err != nil {
		return err
	}
	appModule, err := ctx.App("mcpo")
	if err != nil {
		return err
	}
	app := appModule.(*App)
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	repl := caddy.NewReplacer()
	cfg := bridge.Config{
		Single:               h.single(),
		Title:                h.Title,
		MaxBodyBytes:         h.MaxRequestBody,
		MaxBodyBytesInFlight: h.MaxRequestBytesInFlight,
		Logger:               h.logger,
		Observer:             callObserver{},
		// Its own name, so that Caddy's logging config can send it elsewhere.
		Audit: h.logger.Named("audit"),
	}
	if cfg.Access, err = h.access(repl); err != nil {
		return err
	}
	cfg.Access.Rules, cfg.Access.Vary = h.rules()
	if h.Identity != nil {
		if h.identity, err = h.Identity.identifier(repl); err != nil {
			return err
		}
	}
	for _, s := range servers {
		bs, err := h.provisionServer(ctx, app, s, repl)
		if err != nil {
			return err
		}
		cfg.Servers = append(cfg.Servers, bs)
	}
	h.bridge, err = bridge.New(cfg)
	return err
}

// allServers returns the handler's servers followed by those of its config
// files, each file's validated as it is read.
func (h *Handler) allServers() ([]*ServerConfig, error) {
	servers := slices.Clone(h.Servers)
	if len(h.ConfigFiles) == 0 {
		return servers, nil // validated with the handler
	}
	for _, f := range h.ConfigFiles {
		more, err := loadConfigFile(f, h.logger)
		if err != nil {
			return nil, err
		}
		servers = append(servers, more...)
	}
	if len(servers) == 0 {
		return nil, errNoServer
	}
	return servers, validateNames(servers, false)
}

// provisionServer resolves a server, takes it from the pool, registers it
// with the app to start with the configuration, and returns it as the
// bridge serves it.
func (h *Handler) provisionServer(ctx caddy.Context, app *App, s *ServerConfig, repl *caddy.Replacer) (*bridge.ServerConfig, error) {
	name := h.serverName(s)
	r, err := s.resolve(name, h.single(), repl)
	if err != nil {
		return nil, fmt.Errorf("server %q: %w", name, err)
	}
	if r.oauth != nil && r.oauth.Grant != oauth.GrantClientCredentials && r.users == nil && len(h.AdminKeys) == 0 && len(h.APIKeys) > 0 {
		h.logger.Warn("any API key holder can authorize this server with their own account; set admin_key",
			zap.String("server", name))
	}
	if creds := s.forwardedCredentials(); len(creds) > 0 {
		h.logger.Warn("forward_headers forwards the caller's credentials upstream",
			zap.String("server", name), zap.Strings("headers", creds))
	}
	l, err := shared.acquire(r, owner{log: h.logger, storage: ctx.Storage()})
	if err != nil {
		return nil, fmt.Errorf("server %q: %w", name, err)
	}
	h.leases = append(h.leases, l)
	app.register(l)
	return h.bridgeServer(s, name, l), nil
}

// bridgeServer returns the server named name, held through l, as the
// bridge serves it.
func (h *Handler) bridgeServer(s *ServerConfig, name string, l *lease) *bridge.ServerConfig {
	title := s.Title
	if h.single() && title == "" {
		title = h.Title
	}
	return &bridge.ServerConfig{
		Name:             name,
		Upstream:         l,
		Tools:            s.Tools,
		DisabledTools:    s.DisabledTools,
		Timeout:          time.Duration(s.Timeout),
		ToolErrorStatus:  s.ToolErrorStatus,
		Title:            title,
		LenientArgs:      s.StrictArgs != nil && !*s.StrictArgs,
		DisableResources: s.Resources != nil && !*s.Resources,
		DisablePrompts:   s.Prompts != nil && !*s.Prompts,
		ToolTimeouts:     durations(s.ToolTimeouts),
		MaxTimeout:       time.Duration(s.MaxTimeout),
		MaxConcurrent:    s.MaxConcurrent,
		QueueTimeout:     time.Duration(s.QueueTimeout),
		TaskTTL:          time.Duration(s.TaskTTL),
		Tasks:            l.entry.tasks,
		Consent:          l.consent(),
	}
}

// Cleanup releases the handler's servers; the pool stops those no other
// configuration uses.
func (h *Handler) Cleanup() error {
	if h.bridge != nil {
		h.bridge.Close()
	}
	var errs []error
	for _, l := range h.leases {
		errs = append(errs, l.release())
	}
	h.leases = nil
	return errors.Join(errs...)
}

// ServeHTTP serves requests under the mount and passes others on. With
// an identity source, it first establishes the caller's identity (see
// IdentitySource), for the bridge and the placeholders.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	rel, ok := cutMount(r.URL.Path, h.mount)
	if !ok {
		return next.ServeHTTP(w, r)
	}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			h.logger.Error("panic while serving an MCP request", zap.Any("panic", v), zap.Stack("stack"))
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"detail":{"message":"internal error in caddy-mcpo; see Caddy's log"}}`)
		}
	}()
	if h.identity != nil {
		r = h.establish(r)
	}
	h.bridge.Serve(w, r, rel, externalBase(r, rel, h.mount))
	return nil
}

// normalizeMount cleans a mount path: "/" for none, no trailing slash.
func normalizeMount(m string) (string, error) {
	if m == "" {
		return "/", nil
	}
	if !strings.HasPrefix(m, "/") {
		return "", fmt.Errorf("mount %q must start with '/'", m)
	}
	if strings.ContainsAny(m, "*?{}") {
		return "", fmt.Errorf("mount %q must be a plain path, without wildcards or placeholders", m)
	}
	m = path.Clean(m)
	return m, nil
}

// mountName names the single server of a mount after its last segment.
func mountName(mount string) string {
	if name := path.Base(mount); name != "/" && name != "." {
		return name
	}
	return "mcp"
}

// cutMount returns the part of p below mount ("" or starting with "/").
// Caddy's path matcher ignores case, so the prefix does too.
func cutMount(p, mount string) (string, bool) {
	if mount == "/" {
		return p, true
	}
	if len(p) < len(mount) || !strings.EqualFold(p[:len(mount)], mount) {
		return "", false
	}
	rel := p[len(mount):]
	if rel != "" && rel[0] != '/' {
		return "", false // "/timeX" is not under "/time"
	}
	return rel, true
}

// externalBase returns the mount's path as the client sees it, so that
// documents stay right behind handle_path or another prefix: the original
// request path minus what is left below the mount.
func externalBase(r *http.Request, rel, mount string) string {
	base := mount
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		if p := orig.URL.Path; strings.HasSuffix(p, rel) {
			base = p[:len(p)-len(rel)]
		}
	}
	if base == "" {
		base = "/"
	}
	return (&url.URL{Path: base}).EscapedPath()
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)

// Package caddymcpo is a Caddy module that serves the tools of MCP (Model
// Context Protocol) servers as a REST API, with an OpenAPI 3.1 document and
// Swagger UI, for Open WebUI and any other OpenAPI tool client.
//
// The HTTP handler http.handlers.mcpo owns the MCP sessions (stdio,
// Streamable HTTP, HTTP+SSE); Caddy does TLS, subpaths, authentication,
// logging and reloads. Sessions are pooled by their configuration, so a
// reload keeps every server whose configuration did not change running.
// The bridge logic lives in the bridge packages, which do not depend on Caddy.
package caddymcpo

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/getkin/kin-openapi/openapi3"
	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
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
	Servers []*Server `json:"servers,omitempty"`

	// Claude Desktop / mcpo configuration files (with an "mcpServers"
	// object) whose servers are added to Servers each time the
	// configuration is loaded. Relative paths are relative to Caddy's
	// working directory.
	ConfigFiles []string `json:"config_files,omitempty"`

	// The title of the OpenAPI document: the server's document with a
	// single server, the document covering every server otherwise.
	Title string `json:"title,omitempty"`

	// The largest request body accepted, in bytes. Default: 8 MiB.
	MaxRequestBody int64 `json:"max_request_body,omitempty"`

	// API keys a caller must present as "Authorization: Bearer <key>" to
	// call tools: a missing key gets 401, a wrong one 403. Write them as
	// placeholders, such as {env.MCPO_KEY} or {file./run/secrets/key},
	// so that they stay out of the configuration; a placeholder that
	// resolves to nothing is an error. The documents then declare a bearer
	// scheme. Keys are never logged.
	APIKeys []string `json:"api_keys,omitempty"`

	// Require an API key for openapi.json, Swagger UI and health as well:
	// Bearer, or Basic authentication with the key as the password, so
	// that a browser can open the docs.
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

	mount  string
	bridge *bridge.Bridge
	keys   []string // pool keys of the upstreams this handler holds
	logger *zap.Logger
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

// openAPI converts the declaration to an OpenAPI security scheme.
func (s *SecurityScheme) openAPI() (*openapi3.SecurityScheme, error) {
	out := &openapi3.SecurityScheme{Description: s.Description}
	switch s.Type {
	case "basic", "bearer":
		out.Type, out.Scheme = "http", s.Type
		if s.Type == "bearer" {
			out.BearerFormat = s.BearerFormat
		} else if s.BearerFormat != "" {
			return nil, errors.New(`security: bearer_format applies to type "bearer" only`)
		}
		if s.Name != "" {
			return nil, fmt.Errorf("security: type %q takes no name", s.Type)
		}
	case "header", "query", "cookie":
		if s.Name == "" {
			return nil, fmt.Errorf("security: type %q needs the name of the %s holding the key", s.Type, s.Type)
		}
		out.Type, out.In, out.Name = "apiKey", s.Type, s.Name
	default:
		return nil, fmt.Errorf("security: unknown type %q: want basic, bearer, header, query or cookie", s.Type)
	}
	return out, nil
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

// access resolves the handler's authentication settings.
func (h *Handler) access(repl *caddy.Replacer) (bridge.Access, error) {
	a := bridge.Access{ProtectDocs: h.ProtectDocs}
	for i, k := range h.APIKeys {
		key, err := repl.ReplaceOrErr(k, true, true)
		if err != nil {
			// The error names the placeholder, never a value.
			return a, fmt.Errorf("api_key %d: %w", i+1, err)
		}
		a.Keys = append(a.Keys, key)
	}
	for i, k := range h.AdminKeys {
		key, err := repl.ReplaceOrErr(k, true, true)
		if err != nil {
			return a, fmt.Errorf("admin_key %d: %w", i+1, err)
		}
		a.AdminKeys = append(a.AdminKeys, key)
	}
	if h.ProtectDocs && len(a.Keys) == 0 {
		return a, errors.New("protect_docs needs an api_key")
	}
	if h.Security != nil {
		if len(a.Keys) > 0 {
			return a, errors.New("security declares how another handler authenticates callers; with api_key the documents already declare the bearer key: drop one")
		}
		var err error
		if a.Scheme, err = h.Security.openAPI(); err != nil {
			return a, err
		}
	}
	if c := h.CORS; c != nil {
		if len(c.Origins) == 0 {
			return a, errors.New(`cors needs origins ("*" for any)`)
		}
		for _, o := range c.Origins {
			if err := checkOrigin(o); err != nil {
				return a, err
			}
		}
		a.CORS = &bridge.CORS{Origins: c.Origins, MaxAge: time.Duration(c.MaxAge)}
	}
	return a, nil
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

// Server configures one MCP server: a command to run over stdio, or a URL to
// reach over Streamable HTTP or HTTP+SSE.
//
// Values of command, args, env, dir, url and headers may hold Caddy's global
// placeholders, such as {env.API_KEY} or {file./run/secrets/key}, which are
// resolved when the configuration loads (unlike {$VAR}, which the Caddyfile
// adapter bakes into the JSON configuration).
type Server struct {
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
	Headers map[string]string `json:"headers,omitempty"`

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

	// OAuth authorizes the requests to an HTTP server with OAuth 2.1.
	OAuth *OAuth `json:"oauth,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mcpo",
		New: func() caddy.Module { return new(Handler) },
	}
}

// upstreams holds every running MCP server, keyed by its identity, so that
// a configuration reload hands unchanged servers over to the new handlers.
var upstreams = caddy.NewUsagePool()

// pooled makes an Upstream a caddy.Destructor.
type pooled struct {
	*upstream.Upstream
	storage *liveStorage // the OAuth client's storage; nil without OAuth
}

// closing tracks the servers stopping in the background.
var closing sync.WaitGroup

// Destruct stops a server no configuration uses any more. On a reload it
// does so in the background, letting calls under way finish (within the
// drain timeout) without holding up the new configuration; when Caddy
// exits, it waits.
func (p pooled) Destruct() error {
	if caddy.Exiting() {
		return p.Close()
	}
	closing.Add(1)
	go func() {
		defer closing.Done()
		_ = p.Close()
	}()
	return nil
}

// Provision resolves the configuration, loads config files, and takes the
// handler's upstreams from the pool. It starts nothing: the mcpo app starts
// them once the configuration runs, so `caddy validate` spawns no process.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	mount, err := normalizeMount(h.Mount)
	if err != nil {
		return err
	}
	h.mount = mount

	servers := slices.Clone(h.Servers)
	for _, f := range h.ConfigFiles {
		more, err := loadConfigFile(f, h.logger)
		if err != nil {
			return err
		}
		servers = append(servers, more...)
	}
	single := len(h.ConfigFiles) == 0 && len(servers) == 1 && servers[0].Name == ""
	if len(servers) == 0 {
		return errors.New("no MCP server configured: give a command, a url, server blocks or a config file")
	}
	if err := checkNames(servers, single); err != nil {
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
		Single:       single,
		Title:        h.Title,
		MaxBodyBytes: h.MaxRequestBody,
		Logger:       h.logger,
		Observer:     callObserver{},
	}
	if cfg.Access, err = h.access(repl); err != nil {
		return err
	}
	for _, s := range servers {
		name := s.Name
		if single {
			name = mountName(mount)
		}
		spec, opts, err := s.spec(name, repl)
		if err != nil {
			return fmt.Errorf("server %q: %w", name, err)
		}
		var oauthCfg *oauth.Config
		if s.OAuth != nil {
			cfg, id, err := s.OAuth.config(spec, single, repl)
			if err != nil {
				return fmt.Errorf("server %q: %w", name, err)
			}
			if cfg.Grant != oauth.GrantClientCredentials && len(h.APIKeys)+len(h.AdminKeys) == 0 && h.Security == nil {
				return fmt.Errorf("server %q: its authorize page would be open to anyone: set admin_key or api_key, "+
					"or declare security when a handler in front authenticates callers", name)
			}
			if cfg.Grant != oauth.GrantClientCredentials && len(h.AdminKeys) == 0 && len(h.APIKeys) > 0 {
				h.logger.Warn("any API key holder can authorize this server with their own account; set admin_key",
					zap.String("server", name))
			}
			oauthCfg, spec.AuthID = &cfg, id
		}
		key := spec.Key()
		val, loaded, err := upstreams.LoadOrNew(key, func() (caddy.Destructor, error) {
			var store *liveStorage
			if oauthCfg != nil {
				store = newLiveStorage(ctx.Storage())
				c, err := newOAuthClient(*oauthCfg, store, h.logger.With(zap.String("server", name)))
				if err != nil {
					return nil, err
				}
				spec.Auth = c
			}
			return pooled{upstream.New(spec, opts, h.logger), store}, nil
		})
		if err != nil {
			return fmt.Errorf("server %q: %w", name, err)
		}
		h.keys = append(h.keys, key)
		p := val.(pooled)
		u := p.Upstream
		var handover func()
		if loaded { // a running server handed over from the previous configuration
			log, storage := h.logger, ctx.Storage()
			handover = func() {
				u.SetLogger(log)
				u.SetOptions(opts)
				if p.storage != nil {
					p.storage.set(storage)
				}
				if c, ok := u.Spec().Auth.(*oauth.Client); ok {
					c.SetLogger(log.With(zap.String("server", name)))
				}
			}
		}
		app.register(u, handover)

		title := s.Title
		if single && title == "" {
			title = h.Title
		}
		cfg.Servers = append(cfg.Servers, &bridge.Server{
			Name:            name,
			Upstream:        u,
			Tools:           s.Tools,
			DisabledTools:   s.DisabledTools,
			Timeout:         time.Duration(s.Timeout),
			ToolErrorStatus: s.ToolErrorStatus,
			Title:           title,
			LenientArgs:     s.StrictArgs != nil && !*s.StrictArgs,
			ToolTimeouts:    durations(s.ToolTimeouts),
			MaxConcurrent:   s.MaxConcurrent,
			QueueTimeout:    time.Duration(s.QueueTimeout),
			Consent:         consentOf(u),
		})
	}
	h.bridge, err = bridge.New(cfg)
	return err
}

// Cleanup releases the handler's upstreams; the pool stops those no other
// configuration uses.
func (h *Handler) Cleanup() error {
	var errs []error
	for _, key := range h.keys {
		if _, err := upstreams.Delete(key); err != nil {
			errs = append(errs, err)
		}
	}
	h.keys = nil
	return errors.Join(errs...)
}

// ServeHTTP serves requests under the mount and passes others on.
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
	h.bridge.Serve(w, r, rel, externalBase(r, rel, h.mount))
	return nil
}

// consentOf returns the consent pages of a server authorized by a user,
// nil for others.
func consentOf(u *upstream.Upstream) bridge.Consent {
	c, ok := u.Spec().Auth.(*oauth.Client)
	if !ok || c.Status().Grant != oauth.GrantAuthorizationCode {
		return nil
	}
	return c
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

// checkNames checks server names: unique, path-safe, and present when the
// handler serves several servers.
func checkNames(servers []*Server, single bool) error {
	if single {
		return nil
	}
	seen := map[string]bool{}
	for _, s := range servers {
		if s.Name == "" {
			return errors.New("with several servers, every server needs a name")
		}
		if err := bridge.ValidateServerName(s.Name); err != nil {
			return err
		}
		if seen[s.Name] {
			return fmt.Errorf("server name %q is used twice", s.Name)
		}
		seen[s.Name] = true
	}
	return nil
}

// alwaysInherited are the variables of Caddy's environment every stdio
// server gets: what programs and package runners (npx, uvx) need to work,
// including behind a proxy or a TLS-intercepting gateway, and nothing that
// usually holds a secret.
var alwaysInherited = []string{
	"HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER", "TMPDIR", "TZ",
	"LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE",
	"XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR",
	"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
	"SSL_CERT_FILE", "SSL_CERT_DIR", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
}

// spec resolves placeholders and builds the upstream's identity and options.
func (s *Server) spec(name string, repl *caddy.Replacer) (upstream.Spec, upstream.Options, error) {
	r := func(v string) string { return repl.ReplaceKnown(v, "") }
	spec := upstream.Spec{Name: name, Command: r(s.Command), Dir: r(s.Dir), URL: r(s.URL)}
	for _, a := range s.Args {
		spec.Args = append(spec.Args, r(a))
	}
	var err error
	switch {
	case s.Transport != "":
		if spec.Transport, err = upstream.ParseTransport(s.Transport); err != nil {
			return spec, upstream.Options{}, err
		}
	case s.Command != "":
		spec.Transport = upstream.TransportStdio
	case s.URL != "":
		spec.Transport = upstream.TransportStreamableHTTP
	default:
		return spec, upstream.Options{}, errors.New("needs a command (stdio) or a url (HTTP)")
	}
	if s.Command != "" && s.URL != "" {
		return spec, upstream.Options{}, errors.New("has both a command and a url: give one")
	}
	if spec.Protocol, err = upstream.ParseProtocol(s.Protocol); err != nil {
		return spec, upstream.Options{}, err
	}
	if len(s.Headers) > 0 {
		spec.Headers = make(map[string]string, len(s.Headers))
		for k, v := range s.Headers {
			spec.Headers[k] = r(v)
		}
	}
	if spec.Transport == upstream.TransportStdio {
		spec.Env = childEnv(os.Environ(), s.InheritEnv, s.Env, r)
	} else if len(s.Env) > 0 || len(s.InheritEnv) > 0 {
		return spec, upstream.Options{}, errors.New("env and inherit_env apply to stdio servers only")
	}
	if err := spec.Validate(); err != nil {
		return spec, upstream.Options{}, err
	}
	if s.ToolErrorStatus != 0 && (s.ToolErrorStatus < 400 || s.ToolErrorStatus > 599) {
		return spec, upstream.Options{}, fmt.Errorf("tool_error_status %d is not an HTTP error status (400-599)", s.ToolErrorStatus)
	}
	if s.MaxConcurrent < 0 {
		return spec, upstream.Options{}, fmt.Errorf("max_concurrent %d: want 0 (no limit) or more", s.MaxConcurrent)
	}
	if s.QueueTimeout > 0 && s.MaxConcurrent == 0 {
		return spec, upstream.Options{}, errors.New("queue_timeout needs max_concurrent: without a limit no call waits")
	}
	opts := upstream.Options{
		StartTimeout: time.Duration(s.StartTimeout),
		Drain:        time.Duration(s.DrainTimeout),
		Stop:         upstream.StopTimeouts{Grace: time.Duration(s.StopTimeout), Term: time.Duration(s.KillTimeout)},
	}
	return spec, opts, nil
}

func durations(m map[string]caddy.Duration) map[string]time.Duration {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]time.Duration, len(m))
	for k, d := range m {
		out[k] = time.Duration(d)
	}
	return out
}

// childEnv builds a stdio server's whole environment: the inherited
// variables of parent, then the configured ones (resolved by r), sorted so
// that equal configurations give equal environments.
func childEnv(parent, inherit []string, set map[string]string, r func(string) string) []string {
	all := slices.Contains(inherit, "*")
	want := map[string]bool{}
	for _, k := range alwaysInherited {
		want[k] = true
	}
	for _, k := range inherit {
		want[k] = true
	}
	env := map[string]string{}
	for _, kv := range parent {
		k, v, ok := strings.Cut(kv, "=")
		if ok && (all || want[k]) {
			env[k] = v
		}
	}
	for k, v := range set {
		env[k] = r(v)
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddy.Destructor            = pooled{}
)

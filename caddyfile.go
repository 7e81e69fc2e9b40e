package caddymcpo

import (
	"math"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

func init() {
	httpcaddyfile.RegisterDirective("mcpo", parseCaddyfile)
	// After the auth directives (basic_auth, forward_auth) and handle/route,
	// before the proxy and file server.
	httpcaddyfile.RegisterDirectiveOrder("mcpo", httpcaddyfile.Before, "reverse_proxy")
}

// parseCaddyfile sets up the handler from Caddyfile tokens and mounts it:
// "mcpo /time {...}" serves /time and everything below it, unlike a matcher
// token, which would match /time alone.
func parseCaddyfile(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	var handler Handler
	if err := handler.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	var matcher caddy.ModuleMap
	if handler.Mount != "/" {
		// One path, so that Caddy sorts nested mounts longest first; the
		// handler passes on what the pattern matches beyond the mount
		// ("/timeline" for "/time").
		matcher = caddy.ModuleMap{"path": h.JSON(caddyhttp.MatchPath{handler.Mount + "*"})}
	}
	return h.NewRoute(matcher, &handler), nil
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	mcpo [<mount>] {
//		# one server, served at the mount
//		command <program> [<args...>]
//		args <args...>
//		env <name> <value>
//		inherit_env <names...> | *
//		dir <path>
//		url <url>
//		header <name> <value>
//		transport stdio|streamable_http|sse|auto
//		protocol auto|legacy|modern|<version>
//		tools <names...>
//		disabled_tools <names...>
//		timeout <duration>
//		tool_timeout <tool> <duration>
//		start_timeout <duration>
//		max_concurrent <calls>
//		queue_timeout <duration>
//		drain_timeout <duration>
//		stop_timeout <duration>
//		kill_timeout <duration>
//		tool_error_status <code>
//		strict_args on|off
//		oauth {
//			<see unmarshalOAuth>
//		}
//
//		# or several servers, each served at <mount>/<name>
//		server <name> {
//			<the subdirectives above>
//			title <text>
//		}
//		config <path to a Claude Desktop / mcpo config file>
//
//		title <text>
//		max_request_body <size>
//
//		# who may call
//		api_key <key>            # repeatable; best a placeholder: {env.MCPO_KEY}
//		admin_key <key>          # repeatable; guards the oauth authorize pages
//		protect_docs             # the key guards openapi.json, docs and health too
//		security basic|bearer [<format>]|header|query|cookie <name>
//		cors <origins...>|* {
//			max_age <duration>
//		}
//	}
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	blockLine := d.Line()
	h.Mount = "/"
	if d.NextArg() {
		m, err := normalizeMount(d.Val())
		if err != nil {
			return d.WrapErr(err)
		}
		h.Mount = m
	}
	if d.NextArg() {
		return d.ArgErr()
	}

	top := &Server{}
	topSeen := map[string]bool{}
	topLine := 0 // line of the first server subdirective at the top level
	names := map[string]bool{}
	for d.NextBlock(0) {
		switch d.Val() {
		case "server":
			if topLine != 0 {
				return d.Errf("server blocks cannot be mixed with a server configured at the top of the block (line %d): move it into a server block", topLine)
			}
			if !d.NextArg() {
				return d.ArgErr()
			}
			name, line := d.Val(), d.Line()
			if names[name] {
				return d.Errf("server name %q is used twice", name)
			}
			names[name] = true
			if d.NextArg() {
				return d.ArgErr()
			}
			s := &Server{Name: name}
			seen := map[string]bool{}
			for d.NextBlock(1) {
				if d.Val() == "title" {
					if !d.AllArgs(&s.Title) {
						return d.ArgErr()
					}
					continue
				}
				if err := s.unmarshalDirective(d, seen); err != nil {
					return err
				}
			}
			if s.Command == "" && s.URL == "" {
				return d.Errf("server %q (line %d) needs a command or a url", name, line)
			}
			h.Servers = append(h.Servers, s)
		case "config":
			if topLine != 0 {
				return d.Errf("config cannot be mixed with a server configured at the top of the block (line %d): move it into a server block", topLine)
			}
			var f string
			if !d.AllArgs(&f) {
				return d.ArgErr()
			}
			h.ConfigFiles = append(h.ConfigFiles, f)
		case "title":
			if !d.AllArgs(&h.Title) {
				return d.ArgErr()
			}
		case "max_request_body":
			var v string
			if !d.AllArgs(&v) {
				return d.ArgErr()
			}
			n, err := humanize.ParseBytes(v)
			if err != nil || n == 0 || n > math.MaxInt64 {
				return d.Errf("max_request_body %q: want a size such as 8MB", v)
			}
			h.MaxRequestBody = int64(n)
		case "api_key":
			var k string
			if !d.AllArgs(&k) {
				return d.Err("api_key takes one key (repeat the line for more): api_key {env.MCPO_KEY}")
			}
			h.APIKeys = append(h.APIKeys, k)
		case "admin_key":
			var k string
			if !d.AllArgs(&k) {
				return d.Err("admin_key takes one key (repeat the line for more): admin_key {env.MCPO_ADMIN_KEY}")
			}
			h.AdminKeys = append(h.AdminKeys, k)
		case "protect_docs":
			if d.NextArg() {
				return d.Err("protect_docs takes no argument")
			}
			h.ProtectDocs = true
		case "security":
			if h.Security != nil {
				return d.Err("security is given twice")
			}
			sec, err := unmarshalSecurity(d)
			if err != nil {
				return err
			}
			h.Security = sec
		case "cors":
			if h.CORS != nil {
				return d.Err("cors is given twice: list every origin on one line")
			}
			c, err := unmarshalCORS(d)
			if err != nil {
				return err
			}
			h.CORS = c
		default:
			if len(h.Servers) > 0 || len(h.ConfigFiles) > 0 {
				if isServerDirective(d.Val()) {
					return d.Errf("%s belongs in a server block when the mcpo block has server blocks or config files", d.Val())
				}
			}
			if topLine == 0 {
				topLine = d.Line()
			}
			if err := top.unmarshalDirective(d, topSeen); err != nil {
				return err
			}
		}
	}
	if topLine != 0 {
		if top.Command == "" && top.URL == "" {
			return d.Errf("the mcpo block starting on line %d needs a command or a url", blockLine)
		}
		h.Servers = []*Server{top}
	}
	if len(h.Servers) == 0 && len(h.ConfigFiles) == 0 {
		return d.Errf("the mcpo block starting on line %d configures no MCP server: give a command, a url, server blocks or config", blockLine)
	}
	return nil
}

// unmarshalSecurity reads "security basic", "security bearer [<format>]"
// or "security header|query|cookie <name>".
func unmarshalSecurity(d *caddyfile.Dispenser) (*SecurityScheme, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.ArgErr()
	}
	s := &SecurityScheme{Type: args[0]}
	switch {
	case s.Type == "basic" && len(args) == 1:
	case s.Type == "bearer" && len(args) <= 2:
		if len(args) == 2 {
			s.BearerFormat = args[1]
		}
	case (s.Type == "header" || s.Type == "query" || s.Type == "cookie") && len(args) == 2:
		s.Name = args[1]
	default:
		return nil, d.Errf("security %s: want basic, bearer [<format>], or header|query|cookie <name>", strings.Join(args, " "))
	}
	if err := s.Validate(); err != nil {
		return nil, d.WrapErr(err)
	}
	return s, nil
}

// unmarshalCORS reads "cors <origins...> [{ max_age <duration> }]".
func unmarshalCORS(d *caddyfile.Dispenser) (*CORS, error) {
	c := &CORS{Origins: d.RemainingArgs()}
	if len(c.Origins) == 0 {
		return nil, d.Err(`cors needs the origins allowed, or * for any`)
	}
	for _, o := range c.Origins {
		if err := checkOrigin(o); err != nil {
			return nil, d.WrapErr(err)
		}
	}
	for d.NextBlock(1) {
		switch d.Val() {
		case "max_age":
			var v string
			if !d.AllArgs(&v) {
				return nil, d.ArgErr()
			}
			dur, err := caddy.ParseDuration(v)
			if err != nil || dur <= 0 {
				return nil, d.Errf("max_age %q: want a positive duration such as 10m", v)
			}
			c.MaxAge = caddy.Duration(dur)
		default:
			return nil, d.Errf("unknown cors subdirective %q: want max_age", d.Val())
		}
	}
	return c, nil
}

func isServerDirective(name string) bool {
	switch name {
	case "command", "args", "env", "inherit_env", "dir", "url", "header", "transport", "protocol",
		"tools", "disabled_tools", "timeout", "start_timeout", "tool_error_status", "strict_args",
		"tool_timeout", "max_concurrent", "queue_timeout", "drain_timeout", "stop_timeout", "kill_timeout", "oauth":
		return true
	}
	return false
}

// singleValued are the subdirectives a server may have once.
var singleValued = map[string]bool{
	"command": true, "dir": true, "url": true, "transport": true, "protocol": true,
	"timeout": true, "start_timeout": true, "tool_error_status": true, "strict_args": true,
	"max_concurrent": true, "queue_timeout": true, "drain_timeout": true, "stop_timeout": true, "kill_timeout": true,
	"oauth": true,
}

// unmarshalDirective reads one server subdirective at the dispenser's
// current token; seen tracks the ones already given for this server.
func (s *Server) unmarshalDirective(d *caddyfile.Dispenser, seen map[string]bool) error {
	dir := d.Val()
	if singleValued[dir] {
		if seen[dir] {
			return d.Errf("%s given twice", dir)
		}
		seen[dir] = true
	}
	switch dir {
	case "command":
		if s.URL != "" {
			return d.Errf("command and url are exclusive: a server runs a command (stdio) or is reached at a url")
		}
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.ArgErr()
		}
		s.Command = args[0]
		s.Args = append(args[1:len(args):len(args)], s.Args...)
	case "args":
		return appendArgs(d, &s.Args)
	case "env":
		return setPair(d, &s.Env)
	case "inherit_env":
		return appendArgs(d, &s.InheritEnv)
	case "dir":
		if !d.AllArgs(&s.Dir) {
			return d.ArgErr()
		}
	case "url":
		if s.Command != "" {
			return d.Errf("command and url are exclusive: a server runs a command (stdio) or is reached at a url")
		}
		if !d.AllArgs(&s.URL) {
			return d.ArgErr()
		}
	case "header":
		return setPair(d, &s.Headers)
	case "transport":
		if !d.AllArgs(&s.Transport) {
			return d.ArgErr()
		}
		if _, err := upstream.ParseTransport(s.Transport); err != nil {
			return d.WrapErr(err)
		}
	case "protocol":
		if !d.AllArgs(&s.Protocol) {
			return d.ArgErr()
		}
		if _, err := upstream.ParseProtocol(s.Protocol); err != nil {
			return d.WrapErr(err)
		}
	case "tools":
		return appendArgs(d, &s.Tools)
	case "disabled_tools":
		return appendArgs(d, &s.DisabledTools)
	case "timeout", "start_timeout", "queue_timeout", "drain_timeout", "stop_timeout", "kill_timeout":
		var v string
		if !d.AllArgs(&v) {
			return d.ArgErr()
		}
		dur, err := parseDuration(d, dir, v)
		if err != nil {
			return err
		}
		*map[string]*caddy.Duration{
			"timeout": &s.Timeout, "start_timeout": &s.StartTimeout, "queue_timeout": &s.QueueTimeout,
			"drain_timeout": &s.DrainTimeout, "stop_timeout": &s.StopTimeout, "kill_timeout": &s.KillTimeout,
		}[dir] = dur
	case "tool_timeout":
		var tool, v string
		if !d.AllArgs(&tool, &v) {
			return d.ArgErr()
		}
		dur, err := parseDuration(d, dir, v)
		if err != nil {
			return err
		}
		if s.ToolTimeouts == nil {
			s.ToolTimeouts = map[string]caddy.Duration{}
		}
		s.ToolTimeouts[tool] = dur
	case "max_concurrent":
		var v string
		if !d.AllArgs(&v) {
			return d.ArgErr()
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return d.Errf("max_concurrent %q: want a number of calls, 1 or more", v)
		}
		s.MaxConcurrent = n
	case "strict_args":
		var v string
		if !d.AllArgs(&v) {
			return d.ArgErr()
		}
		switch v {
		case "on":
			s.StrictArgs = ptr(true)
		case "off":
			s.StrictArgs = ptr(false)
		default:
			return d.Errf("strict_args %q: want on or off", v)
		}
	case "tool_error_status":
		var v string
		if !d.AllArgs(&v) {
			return d.ArgErr()
		}
		code, err := strconv.Atoi(v)
		if err != nil || code < 400 || code > 599 {
			return d.Errf("tool_error_status %q: want an HTTP error status (400-599)", v)
		}
		s.ToolErrorStatus = code
	case "oauth":
		o, err := unmarshalOAuth(d)
		if err != nil {
			return err
		}
		s.OAuth = o
	default:
		return d.Errf("unknown subdirective %q", dir)
	}
	return nil
}

// unmarshalOAuth reads an oauth block:
//
//	oauth {
//		grant authorization_code|client_credentials
//		redirect_uri <url>
//		client_id <id>
//		client_secret <secret>
//		token_endpoint_auth_method client_secret_basic|client_secret_post|none|private_key_jwt
//		private_key <pem>
//		signing_algorithm RS256|ES256
//		issuer <url>
//		scopes <scopes...>
//		client_metadata_url <url>
//		client_name <name>
//	}
func unmarshalOAuth(d *caddyfile.Dispenser) (*OAuth, error) {
	if d.NextArg() {
		return nil, d.Err("oauth takes a block, not arguments")
	}
	o := &OAuth{}
	fields := map[string]*string{
		"grant": &o.Grant, "redirect_uri": &o.RedirectURI, "client_id": &o.ClientID,
		"client_secret": &o.ClientSecret, "token_endpoint_auth_method": &o.TokenEndpointAuthMethod,
		"private_key": &o.PrivateKey, "signing_algorithm": &o.SigningAlgorithm, "issuer": &o.Issuer,
		"client_metadata_url": &o.ClientMetadataURL, "client_name": &o.ClientName,
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		name := d.Val()
		if seen[name] {
			return nil, d.Errf("oauth %s given twice", name)
		}
		seen[name] = true
		if name == "scopes" {
			if o.Scopes = d.RemainingArgs(); len(o.Scopes) == 0 {
				return nil, d.Err("oauth scopes needs at least one scope")
			}
			continue
		}
		field, ok := fields[name]
		if !ok {
			return nil, d.Errf("unknown oauth subdirective %q", name)
		}
		if !d.AllArgs(field) {
			return nil, d.Errf("oauth %s takes one value", name)
		}
	}
	switch o.Grant {
	case "", "authorization_code", "client_credentials":
	default:
		return nil, d.Errf("oauth grant %q: want authorization_code or client_credentials", o.Grant)
	}
	return o, nil
}

// appendArgs appends the rest of the line, which must not be empty, to list.
func appendArgs(d *caddyfile.Dispenser, list *[]string) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	*list = append(*list, args...)
	return nil
}

// setPair reads "<name> <value>" into m.
func setPair(d *caddyfile.Dispenser, m *map[string]string) error {
	var k, v string
	if !d.AllArgs(&k, &v) {
		return d.ArgErr()
	}
	if *m == nil {
		*m = map[string]string{}
	}
	(*m)[k] = v
	return nil
}

func ptr[T any](v T) *T { return &v }

// parseDuration reads a subdirective's positive duration.
func parseDuration(d *caddyfile.Dispenser, dir, v string) (caddy.Duration, error) {
	dur, err := caddy.ParseDuration(v)
	if err != nil || dur <= 0 {
		return 0, d.Errf("%s %q: want a positive duration such as 30s", dir, v)
	}
	return caddy.Duration(dur), nil
}

// Interface guard.
var _ caddyfile.Unmarshaler = (*Handler)(nil)

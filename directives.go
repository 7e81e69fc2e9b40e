package caddymcpo

import (
	"fmt"
	"math"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/dustin/go-humanize"
)

// block is a kind of block of the mcpo directive: a set of them says where
// a subdirective may be written.
type block uint8

const (
	// mcpoBlock is the mcpo directive's own block.
	mcpoBlock block = 1 << iota
	// serverBlock is a "server <name> { ... }" block.
	serverBlock
	// oauthBlock is an "oauth { ... }" block.
	oauthBlock
	// corsBlock is a "cors <origins...> { ... }" block.
	corsBlock
	// identityBlock is an "identity openwebui_jwt <secret> { ... }" block.
	identityBlock
	// accessBlock is an "access { ... }" block.
	accessBlock
	// limitsBlock is a server's "limits { ... }" block.
	limitsBlock
)

// name is the block's name in messages and in the reference: the
// directive that opens it.
func (b block) name() string {
	switch {
	case b&mcpoBlock != 0:
		return "mcpo"
	case b&serverBlock != 0:
		return "server"
	case b&oauthBlock != 0:
		return "oauth"
	case b&identityBlock != 0:
		return "identity"
	case b&accessBlock != 0:
		return "access"
	case b&limitsBlock != 0:
		return "limits"
	default:
		return "cors"
	}
}

// directive is one subdirective of the mcpo block.
type directive struct {
	name string
	// in are the blocks it may be written in. A server's setting
	// (mcpoBlock|serverBlock) written at the top of the mcpo block
	// configures the block's single server.
	in block
	// syntax is what follows the name, as the reference shows it.
	syntax string
	// field is the JSON field it sets, in the object it configures.
	field string
	// repeat allows it more than once in a block.
	repeat bool
	// opens is the block that may follow its arguments; 0 for none.
	opens block
	// example is a valid use, for the tests.
	example string
	// parse reads its arguments at the dispenser's current token into
	// the parser's current objects.
	parse func(p *parser) error
}

// setting is where a server's setting may be written.
const setting = mcpoBlock | serverBlock

// directives are the subdirectives of the mcpo block, in the order of the
// reference (README.md's Caddyfile reference and UnmarshalCaddyfile's
// documentation, which a test checks against this table).
var directives = []directive{
	// A server's settings.
	{name: "command", in: setting, syntax: "<program> [<args...>]", field: "command",
		example: "command uvx mcp-server-time", parse: parseCommand},
	{name: "args", in: setting, syntax: "<args...>", field: "args", repeat: true,
		example: "args --local-timezone=UTC", parse: list(func(p *parser) *[]string { return &p.s.Args })},
	{name: "env", in: setting, syntax: "<name> <value>", field: "env", repeat: true,
		example: "env TZ Europe/Paris", parse: pair(func(p *parser) *map[string]string { return &p.s.Env })},
	{name: "inherit_env", in: setting, syntax: "<names...> | *", field: "inherit_env", repeat: true,
		example: "inherit_env NODE_OPTIONS", parse: list(func(p *parser) *[]string { return &p.s.InheritEnv })},
	{name: "dir", in: setting, syntax: "<path>", field: "dir",
		example: "dir /tmp", parse: text(func(p *parser) *string { return &p.s.Dir })},
	{name: "url", in: setting, syntax: "<url>", field: "url",
		example: "url http://127.0.0.1:9000/mcp", parse: text(func(p *parser) *string { return &p.s.URL })},
	{name: "header", in: setting, syntax: "<name> <value>", field: "headers", repeat: true,
		example: `header Authorization "Bearer {env.TOKEN}"`, parse: pair(func(p *parser) *map[string]string { return &p.s.Headers })},
	{name: "forward_headers", in: setting, syntax: "<names...>", field: "forward_headers", repeat: true,
		example: "forward_headers X-OpenWebUI-Chat-Id", parse: list(func(p *parser) *[]string { return &p.s.ForwardHeaders })},
	{name: "meta_identity", in: setting, syntax: "<key>", field: "meta_identity",
		example: "meta_identity example.com/user", parse: text(func(p *parser) *string { return &p.s.MetaIdentity })},
	{name: "transport", in: setting, syntax: "stdio|streamable_http|sse|auto", field: "transport",
		example: "transport sse", parse: text(func(p *parser) *string { return &p.s.Transport })},
	{name: "protocol", in: setting, syntax: "auto|legacy|modern|<version>", field: "protocol",
		example: "protocol legacy", parse: text(func(p *parser) *string { return &p.s.Protocol })},
	{name: "tools", in: setting, syntax: "<names...>", field: "tools", repeat: true,
		example: "tools get_current_time", parse: list(func(p *parser) *[]string { return &p.s.Tools })},
	{name: "disabled_tools", in: setting, syntax: "<names...>", field: "disabled_tools", repeat: true,
		example: "disabled_tools convert_time", parse: list(func(p *parser) *[]string { return &p.s.DisabledTools })},
	{name: "timeout", in: setting, syntax: "<duration>", field: "timeout",
		example: "timeout 30s", parse: duration(func(p *parser) *caddy.Duration { return &p.s.Timeout })},
	{name: "task_ttl", in: setting, syntax: "<duration>", field: "task_ttl",
		example: "task_ttl 30m", parse: duration(func(p *parser) *caddy.Duration { return &p.s.TaskTTL })},
	{name: "tool_timeout", in: setting, syntax: "<tool> <duration>", field: "tool_timeouts", repeat: true,
		example: "tool_timeout convert_time 10s", parse: parseToolTimeout},
	{name: "max_timeout", in: setting, syntax: "<duration>", field: "max_timeout",
		example: "max_timeout 30m", parse: duration(func(p *parser) *caddy.Duration { return &p.s.MaxTimeout })},
	{name: "start_timeout", in: setting, syntax: "<duration>", field: "start_timeout",
		example: "start_timeout 2m", parse: duration(func(p *parser) *caddy.Duration { return &p.s.StartTimeout })},
	{name: "max_concurrent", in: setting, syntax: "<calls>", field: "max_concurrent",
		example: "max_concurrent 4", parse: parseMaxConcurrent},
	{name: "queue_timeout", in: setting, syntax: "<duration>", field: "queue_timeout",
		example: "queue_timeout 2s", parse: duration(func(p *parser) *caddy.Duration { return &p.s.QueueTimeout })},
	{name: "drain_timeout", in: setting, syntax: "<duration>", field: "drain_timeout",
		example: "drain_timeout 1m", parse: duration(func(p *parser) *caddy.Duration { return &p.s.DrainTimeout })},
	{name: "stop_timeout", in: setting, syntax: "<duration>", field: "stop_timeout",
		example: "stop_timeout 500ms", parse: duration(func(p *parser) *caddy.Duration { return &p.s.StopTimeout })},
	{name: "kill_timeout", in: setting, syntax: "<duration>", field: "kill_timeout",
		example: "kill_timeout 1s", parse: duration(func(p *parser) *caddy.Duration { return &p.s.KillTimeout })},
	{name: "max_message_size", in: setting, syntax: "<size>", field: "max_message_size",
		example: "max_message_size 64MB", parse: size(func(p *parser) *int64 { return &p.s.MaxMessageSize })},
	{name: "ping_interval", in: setting, syntax: "<duration>|off", field: "ping_interval",
		example: "ping_interval 10s", parse: parsePingInterval},
	{name: "ping_timeout", in: setting, syntax: "<duration>", field: "ping_timeout",
		example: "ping_timeout 5s", parse: duration(func(p *parser) *caddy.Duration { return &p.s.PingTimeout })},
	{name: "max_failures", in: setting, syntax: "<failures> [<window>]|off", field: "max_failures",
		example: "max_failures 3 5m", parse: parseMaxFailures},
	{name: "limits", in: setting, field: "limits", opens: limitsBlock,
		example: "limits {\n\tmemory 512MiB\n\tcpu 10m\n\topen_files 1024\n\tprocesses 256\n}", parse: parseLimits},
	{name: "tool_error_status", in: setting, syntax: "<code>", field: "tool_error_status",
		example: "tool_error_status 502", parse: parseToolErrorStatus},
	{name: "strict_args", in: setting, syntax: "on|off", field: "strict_args",
		example: "strict_args off", parse: parseStrictArgs},
	{name: "resources", in: setting, syntax: "on|off", field: "resources",
		example: "resources off", parse: onOff("resources", func(p *parser) **bool { return &p.s.Resources })},
	{name: "prompts", in: setting, syntax: "on|off", field: "prompts",
		example: "prompts off", parse: onOff("prompts", func(p *parser) **bool { return &p.s.Prompts })},
	{name: "roots", in: setting, syntax: "<dirs...>", field: "roots", repeat: true,
		example: "roots /srv/data", parse: list(func(p *parser) *[]string { return &p.s.Roots })},
	{name: "elicitation", in: setting, syntax: "off|decline|defaults", field: "elicitation",
		example: "elicitation defaults", parse: text(func(p *parser) *string { return &p.s.Elicitation })},
	{name: "sampling", in: setting, syntax: "off|relay", field: "sampling",
		example: "sampling relay", parse: text(func(p *parser) *string { return &p.s.Sampling })},
	{name: "isolation", in: setting, syntax: "shared|user", field: "isolation",
		example: "isolation user", parse: text(func(p *parser) *string { return &p.s.Isolation })},
	{name: "idle_timeout", in: setting, syntax: "<duration>", field: "idle_timeout",
		example: "idle_timeout 30m", parse: duration(func(p *parser) *caddy.Duration { return &p.s.IdleTimeout })},
	{name: "max_sessions", in: setting, syntax: "<sessions>", field: "max_sessions",
		example: "max_sessions 20", parse: parseMaxSessions},
	{name: "list_as", in: setting, syntax: "<id>", field: "list_as",
		example: "list_as tool-lister", parse: text(func(p *parser) *string { return &p.s.ListAs })},
	{name: "start", in: setting, syntax: "eager|on_demand", field: "start",
		example: "start on_demand", parse: text(func(p *parser) *string { return &p.s.Start })},
	{name: "oauth", in: setting, field: "oauth", opens: oauthBlock,
		example: "oauth {\n\tgrant client_credentials\n\tclient_id caddy\n\tclient_secret {env.MCPO_CLIENT_SECRET}\n}", parse: parseOAuth},

	// A limits block.
	{name: "memory", in: limitsBlock, syntax: "<size>", field: "memory",
		example: "memory 512MiB", parse: size(func(p *parser) *int64 { return &p.l.Memory })},
	{name: "cpu", in: limitsBlock, syntax: "<duration>", field: "cpu",
		example: "cpu 10m", parse: duration(func(p *parser) *caddy.Duration { return &p.l.CPU })},
	{name: "open_files", in: limitsBlock, syntax: "<files>", field: "open_files",
		example: "open_files 1024", parse: count(func(p *parser) *uint64 { return &p.l.OpenFiles })},
	{name: "processes", in: limitsBlock, syntax: "<processes>", field: "processes",
		example: "processes 256", parse: count(func(p *parser) *uint64 { return &p.l.Processes })},

	// An oauth block.
	{name: "grant", in: oauthBlock, syntax: "authorization_code|client_credentials", field: "grant",
		example: "grant client_credentials", parse: text(func(p *parser) *string { return &p.o.Grant })},
	{name: "redirect_uri", in: oauthBlock, syntax: "<url>", field: "redirect_uri",
		example: "redirect_uri https://caddy.example.com/tools/oauth/callback", parse: text(func(p *parser) *string { return &p.o.RedirectURI })},
	{name: "client_id", in: oauthBlock, syntax: "<id>", field: "client_id",
		example: "client_id {env.MCPO_CLIENT_ID}", parse: text(func(p *parser) *string { return &p.o.ClientID })},
	{name: "client_secret", in: oauthBlock, syntax: "<secret>", field: "client_secret",
		example: "client_secret {env.MCPO_CLIENT_SECRET}", parse: text(func(p *parser) *string { return &p.o.ClientSecret })},
	{name: "token_endpoint_auth_method", in: oauthBlock, syntax: "client_secret_basic|client_secret_post|none|private_key_jwt",
		field: "token_endpoint_auth_method", example: "token_endpoint_auth_method private_key_jwt",
		parse: text(func(p *parser) *string { return &p.o.TokenEndpointAuthMethod })},
	{name: "private_key", in: oauthBlock, syntax: "<pem>", field: "private_key",
		example: "private_key {env.MCPO_PRIVATE_KEY}", parse: text(func(p *parser) *string { return &p.o.PrivateKey })},
	{name: "signing_algorithm", in: oauthBlock, syntax: "RS256|ES256", field: "signing_algorithm",
		example: "signing_algorithm ES256", parse: text(func(p *parser) *string { return &p.o.SigningAlgorithm })},
	{name: "issuer", in: oauthBlock, syntax: "<url>", field: "issuer",
		example: "issuer https://auth.example.com", parse: text(func(p *parser) *string { return &p.o.Issuer })},
	{name: "scopes", in: oauthBlock, syntax: "<scopes...>", field: "scopes",
		example: "scopes repo read:user", parse: list(func(p *parser) *[]string { return &p.o.Scopes })},
	{name: "client_metadata_url", in: oauthBlock, syntax: "<url>", field: "client_metadata_url",
		example: "client_metadata_url https://caddy.example.com/tools/oauth/client-metadata.json",
		parse:   text(func(p *parser) *string { return &p.o.ClientMetadataURL })},
	{name: "client_name", in: oauthBlock, syntax: "<name>", field: "client_name",
		example: `client_name "Caddy tools"`, parse: text(func(p *parser) *string { return &p.o.ClientName })},

	// Several servers.
	{name: "server", in: mcpoBlock, syntax: "<name>", field: "servers", repeat: true, opens: serverBlock,
		example: "server time {\n\tcommand uvx mcp-server-time\n}", parse: parseServer},
	{name: "title", in: serverBlock, syntax: "<text>", field: "title",
		example: "title Time", parse: text(func(p *parser) *string { return &p.s.Title })},
	{name: "config", in: mcpoBlock, syntax: "<path>", field: "config_files", repeat: true,
		example: "config testdata/claude_desktop_config.json", parse: parseConfig},

	// The handler's settings.
	{name: "title", in: mcpoBlock, syntax: "<text>", field: "title",
		example: `title "All the tools"`, parse: text(func(p *parser) *string { return &p.h.Title })},
	{name: "max_request_body", in: mcpoBlock, syntax: "<size>", field: "max_request_body",
		example: "max_request_body 1MB", parse: size(func(p *parser) *int64 { return &p.h.MaxRequestBody })},
	{name: "max_request_bytes_in_flight", in: mcpoBlock, syntax: "<size>", field: "max_request_bytes_in_flight",
		example: "max_request_bytes_in_flight 256MB", parse: size(func(p *parser) *int64 { return &p.h.MaxRequestBytesInFlight })},
	{name: "api_key", in: mcpoBlock, syntax: "<key> [<user>]", field: "api_keys", repeat: true,
		example: "api_key {env.MCPO_KEY}", parse: parseAPIKey},
	{name: "admin_key", in: mcpoBlock, syntax: "<key>", field: "admin_keys", repeat: true,
		example: "admin_key {env.MCPO_ADMIN_KEY}", parse: item(func(p *parser) *[]string { return &p.h.AdminKeys })},
	{name: "protect_docs", in: mcpoBlock, field: "protect_docs",
		example: "protect_docs", parse: parseProtectDocs},
	{name: "security", in: mcpoBlock, syntax: "basic|bearer [<format>]|header|query|cookie <name>", field: "security",
		example: "security bearer JWT", parse: parseSecurity},
	{name: "cors", in: mcpoBlock, syntax: "<origins...>|*", field: "cors", opens: corsBlock,
		example: "cors https://chat.example.com", parse: parseCORS},
	{name: "identity", in: mcpoBlock, syntax: "<placeholder>|openwebui_jwt <secret>|api_key", field: "identity", opens: identityBlock,
		example: "identity openwebui_jwt {env.MCPO_JWT_SECRET}", parse: parseIdentity},

	// A cors block.
	{name: "max_age", in: corsBlock, syntax: "<duration>", field: "max_age",
		example: "max_age 1h", parse: duration(func(p *parser) *caddy.Duration { return &p.c.MaxAge })},

	// An identity block.
	{name: "header", in: identityBlock, syntax: "<name>", field: "header",
		example: "header X-Forwarded-User-Jwt", parse: text(func(p *parser) *string { return &p.i.Header })},
	{name: "leeway", in: identityBlock, syntax: "<duration>", field: "leeway",
		example: "leeway 1m", parse: duration(func(p *parser) *caddy.Duration { return &p.i.Leeway })},
	{name: "role", in: identityBlock, syntax: "<placeholder>", field: "role",
		example: "role {http.request.header.X-User-Role}", parse: text(func(p *parser) *string { return &p.i.Role })},
	{name: "groups", in: identityBlock, syntax: "<placeholder>", field: "groups",
		example: "groups {http.request.header.Remote-Groups}", parse: text(func(p *parser) *string { return &p.i.Groups })},

	// Which tools each caller may call.
	{name: "access", in: mcpoBlock, field: "access", opens: accessBlock,
		example: "access {\n\tgrant * tools/get_*\n}", parse: parseAccess},
	{name: "grant", in: accessBlock, syntax: "<subject> <patterns...>", field: "rules", repeat: true,
		example: "grant * tools/get_*", parse: parseGrant},
}

// lookup returns the subdirective name written in block b, nil if there is
// none.
func lookup(name string, b block) *directive {
	for i := range directives {
		if d := &directives[i]; d.name == name && d.in&b != 0 {
			return d
		}
	}
	return nil
}

// directivesIn returns the names of the subdirectives of block b.
func directivesIn(b block) []string {
	var out []string
	for _, d := range directives {
		if d.in&b != 0 {
			out = append(out, d.name)
		}
	}
	return out
}

// arg returns the one argument of the current subdirective.
func (p *parser) arg() (string, error) {
	var v string
	if !p.d.AllArgs(&v) {
		return "", p.argErr()
	}
	return v, nil
}

// text reads the one argument of a directive into the field.
func text(field func(p *parser) *string) func(p *parser) error {
	return func(p *parser) error {
		v, err := p.arg()
		*field(p) = v
		return err
	}
}

// item appends the one argument of a directive to the field.
func item(field func(p *parser) *[]string) func(p *parser) error {
	return func(p *parser) error {
		v, err := p.arg()
		if err == nil {
			*field(p) = append(*field(p), v)
		}
		return err
	}
}

// list appends the arguments of a directive, at least one, to the field.
func list(field func(p *parser) *[]string) func(p *parser) error {
	return func(p *parser) error {
		args := p.d.RemainingArgs()
		if len(args) == 0 {
			return p.argErr()
		}
		*field(p) = append(*field(p), args...)
		return nil
	}
}

// pair reads "<name> <value>" into the map field.
func pair(field func(p *parser) *map[string]string) func(p *parser) error {
	return func(p *parser) error {
		var k, v string
		if !p.d.AllArgs(&k, &v) {
			return p.argErr()
		}
		m := field(p)
		if *m == nil {
			*m = map[string]string{}
		}
		(*m)[k] = v
		return nil
	}
}

// duration reads a positive duration into the field.
func duration(field func(p *parser) *caddy.Duration) func(p *parser) error {
	return func(p *parser) error {
		v, err := p.arg()
		if err != nil {
			return err
		}
		d, err := p.duration(v)
		*field(p) = d
		return err
	}
}

// duration parses the positive duration v of the current directive.
func (p *parser) duration(v string) (caddy.Duration, error) {
	d, err := caddy.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, p.d.Errf("%s %q: want a positive duration such as 30s", p.dir.name, v)
	}
	return caddy.Duration(d), nil
}

// size reads a positive size, such as 8MB or 8MiB, into the field.
func size(field func(p *parser) *int64) func(p *parser) error {
	return func(p *parser) error {
		v, err := p.arg()
		if err != nil {
			return err
		}
		n, err := humanize.ParseBytes(v)
		if err != nil || n == 0 || n > math.MaxInt64 {
			return p.d.Errf("%s %q: want a size such as 8MB", p.dir.name, v)
		}
		*field(p) = int64(n)
		return nil
	}
}

// parseCommand reads "command <program> [<args...>]"; its arguments come
// before those of args lines, wherever these are.
func parseCommand(p *parser) error {
	args := p.d.RemainingArgs()
	if len(args) == 0 {
		return p.argErr()
	}
	p.s.Command = args[0]
	p.s.Args = append(args[1:len(args):len(args)], p.s.Args...)
	return nil
}

// parseToolTimeout reads "tool_timeout <tool> <duration>".
func parseToolTimeout(p *parser) error {
	var tool, v string
	if !p.d.AllArgs(&tool, &v) {
		return p.argErr()
	}
	d, err := p.duration(v)
	if err != nil {
		return err
	}
	if p.s.ToolTimeouts == nil {
		p.s.ToolTimeouts = map[string]caddy.Duration{}
	}
	p.s.ToolTimeouts[tool] = d
	return nil
}

// parseMaxConcurrent reads "max_concurrent <calls>": no limit is written
// by leaving it out.
func parseMaxConcurrent(p *parser) error {
	v, err := p.arg()
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return p.d.Errf("max_concurrent %q: want a number of calls, 1 or more", v)
	}
	p.s.MaxConcurrent = n
	return nil
}

// parseMaxSessions reads "max_sessions <sessions>".
func parseMaxSessions(p *parser) error {
	v, err := p.arg()
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return p.d.Errf("max_sessions %q: want a number of sessions, 1 or more", v)
	}
	p.s.MaxSessions = n
	return nil
}

// parsePingInterval reads "ping_interval <duration>|off".
func parsePingInterval(p *parser) error {
	v, err := p.arg()
	if err != nil {
		return err
	}
	if v == "off" {
		p.s.PingInterval = -1
		return nil
	}
	p.s.PingInterval, err = p.duration(v)
	return err
}

// parseMaxFailures reads "max_failures <failures> [<window>]|off".
func parseMaxFailures(p *parser) error {
	args := p.d.RemainingArgs()
	if len(args) == 1 && args[0] == "off" {
		p.s.MaxFailures = -1
		return nil
	}
	if len(args) == 0 || len(args) > 2 {
		return p.argErr()
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return p.d.Errf("max_failures %q: want a number of failures, 1 or more, or off", args[0])
	}
	p.s.MaxFailures = n
	if len(args) == 2 {
		p.s.FailureWindow, err = p.duration(args[1])
	}
	return err
}

// parseLimits starts the server's limits block.
func parseLimits(p *parser) error {
	if p.d.NextArg() {
		return p.d.Err("limits takes a block, not arguments")
	}
	p.l = &Limits{}
	p.s.Limits = p.l
	return nil
}

// count reads a positive whole number into the field.
func count(field func(p *parser) *uint64) func(p *parser) error {
	return func(p *parser) error {
		v, err := p.arg()
		if err != nil {
			return err
		}
		n, err := strconv.ParseUint(v, 10, 63)
		if err != nil || n == 0 {
			return p.d.Errf("%s %q: want a whole number, 1 or more", p.dir.name, v)
		}
		*field(p) = n
		return nil
	}
}

// parseToolErrorStatus reads "tool_error_status <code>"; ServerConfig.Validate
// checks the range.
func parseToolErrorStatus(p *parser) error {
	v, err := p.arg()
	if err != nil {
		return err
	}
	code, err := strconv.Atoi(v)
	if err != nil {
		return p.d.Errf("tool_error_status %q: want an HTTP error status (400-599)", v)
	}
	p.s.ToolErrorStatus = code
	return nil
}

// parseStrictArgs reads "strict_args on|off".
func parseStrictArgs(p *parser) error {
	v, err := p.arg()
	if err != nil {
		return err
	}
	switch v {
	case "on", "off":
		strict := v == "on"
		p.s.StrictArgs = &strict
		return nil
	}
	return p.d.Errf("strict_args %q: want on or off", v)
}

// onOff reads on or off into the field.
func onOff(name string, field func(p *parser) **bool) func(p *parser) error {
	return func(p *parser) error {
		v, err := p.arg()
		if err != nil {
			return err
		}
		if v != "on" && v != "off" {
			return p.d.Errf("%s %q: want on or off", name, v)
		}
		on := v == "on"
		*field(p) = &on
		return nil
	}
}

// parseOAuth starts the server's oauth block.
func parseOAuth(p *parser) error {
	if p.d.NextArg() {
		return p.d.Err("oauth takes a block, not arguments")
	}
	p.o = &OAuth{}
	p.s.OAuth = p.o
	return nil
}

// parseServer starts a server block.
func parseServer(p *parser) error {
	if err := p.noTopServer("server blocks"); err != nil {
		return err
	}
	at := p.d.Token()
	s := &ServerConfig{}
	if !p.d.AllArgs(&s.Name) {
		return p.argErr()
	}
	p.addServer(s, at)
	return nil
}

// parseConfig reads "config <path>".
func parseConfig(p *parser) error {
	if err := p.noTopServer("config"); err != nil {
		return err
	}
	return item(func(p *parser) *[]string { return &p.h.ConfigFiles })(p)
}

// parseProtectDocs reads "protect_docs".
func parseProtectDocs(p *parser) error {
	if p.d.NextArg() {
		return p.argErr()
	}
	p.h.ProtectDocs = true
	return nil
}

// parseSecurity reads "security basic", "security bearer [<format>]" or
// "security header|query|cookie <name>"; SecurityScheme.Validate checks
// that the arguments fit the type.
func parseSecurity(p *parser) error {
	args := p.d.RemainingArgs()
	if len(args) == 0 || len(args) > 2 {
		return p.argErr()
	}
	s := &SecurityScheme{Type: args[0]}
	if len(args) == 2 {
		if s.Type == "bearer" {
			s.BearerFormat = args[1]
		} else {
			s.Name = args[1]
		}
	}
	p.h.Security = s
	return nil
}

// parseAPIKey reads "api_key <key> [<user>]".
func parseAPIKey(p *parser) error {
	args := p.d.RemainingArgs()
	if len(args) == 0 || len(args) > 2 {
		return p.argErr()
	}
	k := APIKey{Key: args[0]}
	if len(args) == 2 {
		k.User = args[1]
	}
	p.h.APIKeys = append(p.h.APIKeys, k)
	return nil
}

// parseIdentity reads "identity <placeholder>", "identity openwebui_jwt
// <secret>" (which may open a block) or "identity api_key";
// IdentitySource.Validate checks that a placeholder is one.
func parseIdentity(p *parser) error {
	args := p.d.RemainingArgs()
	s := &IdentitySource{}
	switch {
	case len(args) == 2 && args[0] == sourceOpenWebUI:
		s.Source, s.Secret = sourceOpenWebUI, args[1]
	case len(args) == 1 && args[0] == sourceAPIKey:
		s.Source = sourceAPIKey
	case len(args) == 1 && args[0] != sourceOpenWebUI:
		s.Source, s.Placeholder = sourcePlaceholder, args[0]
	default:
		return p.argErr()
	}
	p.i = s
	p.h.Identity = s
	return nil
}

// parseCORS reads "cors <origins...>|*" and starts its block; CORS.Validate
// checks the origins.
func parseCORS(p *parser) error {
	p.c = &CORS{Origins: p.d.RemainingArgs()}
	p.h.CORS = p.c
	return nil
}

// parseAccess starts the handler's access block.
func parseAccess(p *parser) error {
	if p.d.NextArg() {
		return p.d.Err("access takes a block of grant lines, not arguments")
	}
	p.a = &AccessControl{}
	p.h.Access = p.a
	return nil
}

// parseGrant reads "grant <subject> <patterns...>", recording its line as
// that of its rule, for the errors of Handler.Validate.
func parseGrant(p *parser) error {
	args := p.d.RemainingArgs()
	if len(args) < 2 {
		return p.argErr()
	}
	p.handler.fields[fmt.Sprintf("access.rules.%d", len(p.a.Rules))] = p.d.Token()
	p.a.Rules = append(p.a.Rules, AccessRule{Subjects: args[:1], Tools: args[1:]})
	return nil
}

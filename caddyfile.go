package caddymcpo

import (
	"errors"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
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

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens, reading
// the subdirectives of the directives table. Syntax:
//
//	mcpo [<mount>] {
//		# One server, served at the mount:
//		command <program> [<args...>]
//		args <args...>
//		env <name> <value>
//		inherit_env <names...> | *
//		dir <path>
//		url <url>
//		header <name> <value>
//		forward_headers <names...>
//		meta_identity <key>
//		transport stdio|streamable_http|sse|auto
//		protocol auto|legacy|modern|<version>
//		tools <names...>
//		disabled_tools <names...>
//		timeout <duration>
//		tool_timeout <tool> <duration>
//		max_timeout <duration>
//		task_ttl <duration>
//		start_timeout <duration>
//		max_concurrent <calls>
//		queue_timeout <duration>
//		drain_timeout <duration>
//		stop_timeout <duration>
//		kill_timeout <duration>
//		max_message_size <size>
//		ping_interval <duration>|off
//		ping_timeout <duration>
//		max_failures <failures> [<window>]|off
//		limits {
//			memory <size>
//			cpu <duration>
//			open_files <files>
//			processes <processes>
//		}
//		tool_error_status <code>
//		strict_args on|off
//		resources on|off
//		prompts on|off
//		roots <dirs...>
//		elicitation off|decline|defaults
//		sampling off|relay
//		isolation shared|user
//		idle_timeout <duration>
//		max_sessions <sessions>
//		list_as <id>
//		start eager|on_demand
//		oauth {
//			grant authorization_code|client_credentials
//			redirect_uri <url>
//			client_id <id>
//			client_secret <secret>
//			token_endpoint_auth_method client_secret_basic|client_secret_post|none|private_key_jwt
//			private_key <pem>
//			signing_algorithm RS256|ES256
//			issuer <url>
//			scopes <scopes...>
//			client_metadata_url <url>
//			client_name <name>
//		}
//
//		# Or several servers, each served at <mount>/<name>:
//		server <name> {
//			<the subdirectives above>
//			title <text>
//		}
//		config <path>            # a Claude Desktop / mcpo config file
//
//		title <text>
//		max_request_body <size>
//		max_request_bytes_in_flight <size>  # of all the calls under way
//
//		# Who may call:
//		api_key <key> [<user>]   # repeatable; best a placeholder: {env.MCPO_KEY}
//		admin_key <key>          # repeatable; guards the oauth authorize pages
//		protect_docs             # the key guards openapi.json, docs and health too
//		security basic|bearer [<format>]|header|query|cookie <name>
//		cors <origins...>|* {
//			max_age <duration>
//		}
//		identity <placeholder>|openwebui_jwt <secret>|api_key {
//			header <name>        # openwebui_jwt only
//			leeway <duration>
//			role <placeholder>   # <placeholder> only
//			groups <placeholder> # comma-separated
//		}
//		access {
//			grant <subject> <patterns...>  # repeatable
//		}
//	}
//
// The handler's Validate checks the result; its errors are reported at the
// line of the subdirective at fault.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	p := &parser{d: d, h: h, handler: newWhere(d.Token())}
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
	if err := p.readBlock(mcpoBlock, p.handler, ""); err != nil {
		return err
	}
	if err := h.Validate(); err != nil {
		return p.locate(err)
	}
	return nil
}

// parser reads an mcpo block into a Handler, remembering where each
// setting was written, so that errors name the line at fault.
type parser struct {
	d       *caddyfile.Dispenser
	h       *Handler
	handler *where        // the handler's settings
	servers []*where      // those of each of h.Servers
	top     *ServerConfig // the server configured at the top of the block
	topLine int           // the line of its first setting
	dir     *directive

	// The objects the current subdirective configures.
	s *ServerConfig
	o *OAuth
	c *CORS
	i *IdentitySource
	a *AccessControl
	l *Limits
}

// where records where an object of the configuration was written: the
// token of the line that opened it, and that of each of its settings, by
// JSON field (dotted below a nested object: "oauth.grant").
type where struct {
	at     caddyfile.Token
	fields map[string]caddyfile.Token
}

func newWhere(at caddyfile.Token) *where {
	return &where{at: at, fields: map[string]caddyfile.Token{}}
}

// readBlock reads the subdirectives of block b at the dispenser's nesting
// into w's object, recording their lines under prefix.
func (p *parser) readBlock(b block, w *where, prefix string) error {
	for nesting := p.d.Nesting(); p.d.NextBlock(nesting); {
		dir := lookup(p.d.Val(), b)
		if dir == nil {
			return p.unknown(b)
		}
		p.dir = dir
		target := w
		if b == mcpoBlock && dir.in&serverBlock != 0 {
			var err error
			if target, err = p.topServer(); err != nil {
				return err
			}
		}
		key := prefix + dir.field
		if _, ok := target.fields[key]; ok && !dir.repeat {
			return p.d.Errf("%s given twice", p.qualified(b, dir.name))
		}
		target.fields[key] = p.d.Token()
		if err := dir.parse(p); err != nil {
			return err
		}
		switch dir.opens {
		case 0:
		case serverBlock:
			if err := p.readBlock(serverBlock, p.servers[len(p.servers)-1], ""); err != nil {
				return err
			}
		default:
			if err := p.readBlock(dir.opens, target, key+"."); err != nil {
				return err
			}
		}
	}
	return nil
}

// topServer returns where the server configured at the top of the block
// is written, starting it at its first setting, and makes it the current
// server.
func (p *parser) topServer() (*where, error) {
	if p.top == nil {
		if len(p.h.Servers) > 0 || len(p.h.ConfigFiles) > 0 {
			return nil, p.d.Errf("%s belongs in a server block when the mcpo block has server blocks or config files", p.d.Val())
		}
		p.top, p.topLine = &ServerConfig{}, p.d.Line()
		p.addServer(p.top, p.handler.at)
	}
	p.s = p.top
	return p.servers[0], nil
}

// noTopServer refuses what, which adds servers, when the block configures
// a server at its top.
func (p *parser) noTopServer(what string) error {
	if p.top == nil {
		return nil
	}
	return p.d.Errf("%s cannot be mixed with a server configured at the top of the block (line %d): move it into a server block",
		what, p.topLine)
}

// addServer adds a server opened at the token at, and makes it the
// current server.
func (p *parser) addServer(s *ServerConfig, at caddyfile.Token) {
	p.h.Servers = append(p.h.Servers, s)
	p.servers = append(p.servers, newWhere(at))
	p.s = s
}

// qualified names a subdirective of block b in messages.
func (p *parser) qualified(b block, name string) string {
	if b&(oauthBlock|corsBlock|identityBlock|accessBlock|limitsBlock) != 0 {
		return b.name() + " " + name
	}
	return name
}

// unknown reports the current token, which is no subdirective of block b.
func (p *parser) unknown(b block) error {
	if b&(oauthBlock|corsBlock|identityBlock|accessBlock|limitsBlock) == 0 {
		return p.d.Errf("unknown subdirective %q", p.d.Val())
	}
	return p.d.Errf("unknown %s subdirective %q: want %s", b.name(), p.d.Val(), strings.Join(directivesIn(b), ", "))
}

// argErr reports arguments that do not fit the current subdirective.
func (p *parser) argErr() error {
	return p.d.Errf("wrong argument count or unexpected line ending after '%s': want %s",
		p.d.Val(), strings.TrimSpace(p.qualified(p.dir.in, p.dir.name)+" "+p.dir.syntax))
}

// locate reports a validation error at the line that set the settings at
// fault, else at the line opening the server or the block at fault.
func (p *parser) locate(err error) error {
	w, msg := p.handler, err
	var se *serverError
	if errors.As(err, &se) && se.index < len(p.servers) {
		w = p.servers[se.index]
		if p.h.Servers[se.index] == p.top {
			msg = se.err // the Caddyfile does not name it
		}
	}
	at := w.at
	var fe *fieldError
	if errors.As(err, &fe) {
		if tok, ok := w.last(fe.fields); ok {
			at, msg = tok, fe // the line says which server
		}
	}
	return errAt(at, msg)
}

// last returns the token of the last written of fields. A field its
// directive's line sets along with others (cors.origins) is found at that
// line (cors).
func (w *where) last(fields []string) (caddyfile.Token, bool) {
	var out caddyfile.Token
	found := false
	for _, f := range fields {
		for {
			if tok, ok := w.fields[f]; ok {
				if !found || tok.Line > out.Line {
					out, found = tok, true
				}
				break
			}
			i := strings.LastIndexByte(f, '.')
			if i < 0 {
				break
			}
			f = f[:i]
		}
	}
	return out, found
}

// errAt returns err located at tok, as the dispenser reports errors.
func errAt(tok caddyfile.Token, err error) error {
	d := caddyfile.NewDispenser([]caddyfile.Token{tok})
	d.Next()
	return d.WrapErr(err)
}

// Interface guard.
var _ caddyfile.Unmarshaler = (*Handler)(nil)

package caddymcpo

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"regexp"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// This file holds what a server's settings add to each call, from the
// caller's request: the headers forward_headers copies, the header values
// that hold per-request placeholders, and the caller's identity in _meta
// (meta_identity). None of them is part of the server's identity (its pool
// key): they change per call, and a reload that changes them keeps the
// running server.

// credentialHeaders are the headers that carry a caller's credentials:
// forward_headers passes them on only when named, with a warning.
var credentialHeaders = []string{"Authorization", "Cookie"}

// perRequest reports a header value holding a placeholder that only a
// request can resolve (any but Caddy's global ones: {env.*}, {file.*},
// {system.*}, {time.*}), such as {mcpo.user.id} or
// {http.request.header.X-Chat-Id}. The scan is Caddy's own: a literal brace
// is written \{.
func perRequest(v string) bool {
	if holdsUser(v) {
		return true // the caller's placeholders, maybe inside a global one
	}
	found := false
	// An empty replacer knows no placeholder, so f sees every one.
	_, _ = caddy.NewEmptyReplacer().ReplaceFunc(v, func(key string, _ any) (any, error) {
		if !globalPlaceholder(key) {
			found = true
		}
		return "", nil
	})
	return found
}

// sessionHeader reports a header value a caller's session resolves when
// it starts: of a per-user server, one holding the caller's placeholders
// ({mcpo.user.*}), which may then sit inside another placeholder, as in
// {file./run/secrets/{mcpo.user.id}}.
func (s *ServerConfig) sessionHeader(v string) bool {
	return s.perUser() && holdsUser(v)
}

// globalPlaceholder reports a placeholder Caddy resolves without a
// request, which is resolved when the configuration loads.
func globalPlaceholder(key string) bool {
	for _, p := range []string{"env.", "file.", "system.", "time."} {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// validateForwarding checks forward_headers, the header values resolved
// per call and meta_identity, for a server reached over transport.
func (s *ServerConfig) validateForwarding(transport upstream.Transport) error {
	if transport == upstream.TransportStdio {
		switch {
		case len(s.ForwardHeaders) > 0:
			return fieldErr(errors.New("forward_headers applies to servers reached at a url; a stdio server has no HTTP requests"),
				"forward_headers")
		case len(s.Headers) > 0:
			return fieldErr(errors.New("header applies to servers reached at a url; give a stdio server its settings through env"),
				"headers")
		}
	}
	var names []string // canonical
	for _, n := range s.ForwardHeaders {
		if !validHeaderName(n) {
			return fieldErr(fmt.Errorf("forward_headers %q is not a header name", n), "forward_headers")
		}
		names = append(names, textproto.CanonicalMIMEHeaderKey(n))
	}
	if bad := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return !upstream.ReservedHeader(n) }); len(bad) > 0 {
		return fieldErr(fmt.Errorf("forward_headers %s: hop-by-hop headers and those the MCP transport sets itself are never forwarded",
			strings.Join(bad, ", ")), "forward_headers")
	}
	for k, v := range s.Headers {
		name := textproto.CanonicalMIMEHeaderKey(k)
		if slices.Contains(names, name) {
			return fieldErr(fmt.Errorf("%s is both a header and in forward_headers: keep one", name), "headers", "forward_headers")
		}
		if !perRequest(v) {
			continue
		}
		switch {
		case !validHeaderName(k):
			return fieldErr(fmt.Errorf("header %q is not a header name", k), "headers")
		case upstream.ReservedHeader(name):
			return fieldErr(fmt.Errorf("header %s: a hop-by-hop header or one the MCP transport sets itself cannot take a value per request", name),
				"headers")
		case name == "Authorization" && s.OAuth != nil:
			return fieldErr(errors.New("header Authorization: the server's oauth sets Authorization with its own tokens"), "headers", "oauth")
		}
	}
	if s.OAuth != nil {
		for _, n := range credentialHeaders {
			if slices.Contains(names, n) {
				return fieldErr(fmt.Errorf("forward_headers %s: the server's oauth authorizes its requests with its own tokens; "+
					"the caller's credentials are never sent with them", n), "forward_headers", "oauth")
			}
		}
	}
	if s.MetaIdentity != "" {
		if err := checkMetaKey(s.MetaIdentity); err != nil {
			return fieldErr(fmt.Errorf("meta_identity %q: %w", s.MetaIdentity, err), "meta_identity")
		}
	}
	return nil
}

// forwardedCredentials returns the credential headers forward_headers
// names, for the warning at load.
func (s *ServerConfig) forwardedCredentials() []string {
	var out []string
	for _, n := range s.ForwardHeaders {
		if n = textproto.CanonicalMIMEHeaderKey(n); slices.Contains(credentialHeaders, n) && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// validHeaderName reports a header name HTTP can carry: a token.
func validHeaderName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// metaKey is the form of a _meta key: an optional prefix of dot-separated
// labels and a slash, and a name (MCP's "General fields: _meta").
var metaKey = regexp.MustCompile(`^(?:([A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)/)?[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$`)

// checkMetaKey checks a _meta key: well formed, and none MCP reserves
// (a prefix whose labels hold modelcontextprotocol or mcp before the last,
// such as modelcontextprotocol.io/; progressToken).
func checkMetaKey(k string) error {
	m := metaKey.FindStringSubmatch(k)
	if m == nil {
		return errors.New("want a _meta key such as example.com/user: an optional prefix of dot-separated labels " +
			"and a slash, and a name of letters, digits, '-', '_' and '.'")
	}
	if k == "progressToken" {
		return errors.New("progressToken is the protocol's own")
	}
	if labels := strings.Split(m[1], "."); m[1] != "" {
		for _, l := range labels[:len(labels)-1] {
			if l == "modelcontextprotocol" || l == "mcp" {
				return fmt.Errorf("the prefix %s/ is reserved for MCP", m[1])
			}
		}
	}
	return nil
}

// callExtras are what a server's settings add to each of its calls: nil
// for a server with none, whose calls then cost nothing more.
type callExtras struct {
	server  string
	forward []string     // canonical names of the caller's headers to copy
	headers []callHeader // header values resolved per call
	metaKey string       // the _meta key of the caller's identity; "" for none
}

// callHeader is a header whose value is resolved per call.
type callHeader struct {
	name     string // canonical
	template string // as configured, placeholders and all
	user     bool   // template holds the caller's placeholders (holdsUser)
}

// resolve returns the header's value for the call under ctx, made by
// repl. The caller's placeholders are the identity's values, which may sit
// inside another placeholder ({file./run/secrets/{mcpo.user.id}}, the
// value then a safe file name) and are never read as placeholders
// themselves; without an identity, or one lacking a value the template
// uses, the value is empty.
func (c callHeader) resolve(ctx context.Context, repl *caddy.Replacer) string {
	if !c.user {
		return repl.ReplaceAll(c.template, "")
	}
	id, ok := bridge.IdentityFrom(ctx)
	if !ok {
		return ""
	}
	v, err := expandUser(c.template, id, inHeader, repl)
	if err != nil {
		return ""
	}
	return v
}

// callExtras returns what the server adds to each call, nil for nothing.
// The server is validated.
func (s *ServerConfig) callExtras(name string) *callExtras {
	x := &callExtras{server: name, metaKey: s.MetaIdentity}
	for _, n := range s.ForwardHeaders {
		if n = textproto.CanonicalMIMEHeaderKey(n); !slices.Contains(x.forward, n) {
			x.forward = append(x.forward, n)
		}
	}
	for k, v := range s.Headers {
		if perRequest(v) && !s.sessionHeader(v) {
			x.headers = append(x.headers, callHeader{name: textproto.CanonicalMIMEHeaderKey(k), template: v, user: holdsUser(v)})
		}
	}
	slices.SortFunc(x.headers, func(a, b callHeader) int { return strings.Compare(a.name, b.name) })
	if len(x.forward) == 0 && len(x.headers) == 0 && x.metaKey == "" {
		return nil
	}
	return x
}

// apply returns ctx carrying what x adds to a call made under it: the
// headers, read and resolved with the replacer of the request ctx belongs
// to, and the identity ctx carries. A value a header cannot carry is left
// out, with a warning on log; so is an empty one.
func (x *callExtras) apply(ctx context.Context, log *zap.Logger) context.Context {
	if len(x.forward) > 0 || len(x.headers) > 0 {
		repl, _ := ctx.Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
		if repl == nil {
			repl = caddy.NewReplacer() // not a request's call: nothing per request
		}
		var h http.Header
		add := func(name, value string) {
			switch {
			case value == "":
			case !validHeaderValue(value):
				log.Warn("a header value made from the caller's request holds characters a header cannot carry; left out",
					zap.String("server", x.server), zap.String("header", name))
			default:
				if h == nil {
					h = make(http.Header, len(x.forward)+len(x.headers))
				}
				h[name] = []string{value}
			}
		}
		for _, name := range x.forward {
			// Caddy joins a header's several values with commas, which
			// RFC 9110 makes the same field.
			v, _ := repl.GetString("http.request.header." + name)
			add(name, v)
		}
		for _, c := range x.headers {
			add(c.name, c.resolve(ctx, repl))
		}
		if h != nil {
			ctx = upstream.WithCallHeaders(ctx, h)
		}
	}
	if x.metaKey != "" {
		if id, ok := bridge.IdentityFrom(ctx); ok {
			if m := (metaIdentity{ID: id.ID, Email: id.Email, Name: id.Name, Role: id.Role}); m != (metaIdentity{}) {
				ctx = upstream.WithCallMeta(ctx, map[string]any{x.metaKey: m})
			}
		}
	}
	return ctx
}

// metaIdentity is the caller's identity in a call's _meta.
type metaIdentity struct {
	ID    string `json:"id,omitempty"`
	Email string `json:"email,omitempty"`
	Name  string `json:"name,omitempty"`
	Role  string `json:"role,omitempty"`
}

// validHeaderValue reports a value a header can carry: no control
// character but tab (Go's client refuses the whole request otherwise).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

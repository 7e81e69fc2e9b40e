package caddymcpo

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
	"github.com/caddy-mcpo/caddy-mcpo/oauth"
)

// This file resolves the placeholders of a validated configuration (see
// config.go) when it loads, and checks what only resolved values tell.

// access resolves the handler's authentication settings. A key whose
// placeholder resolves to nothing is an error, never an open door.
func (h *Handler) access(repl *caddy.Replacer) (bridge.Access, error) {
	a := bridge.Access{ProtectDocs: h.ProtectDocs, RequireIdentity: h.Identity != nil}
	var err error
	if a.Keys, a.KeyUsers, err = resolveAPIKeys(h.APIKeys, repl); err != nil {
		return a, err
	}
	if a.AdminKeys, err = resolveKeys("admin_key", h.AdminKeys, repl); err != nil {
		return a, err
	}
	if h.Security != nil {
		a.Scheme = h.Security.openAPI()
	}
	if c := h.CORS; c != nil {
		a.CORS = &bridge.CORS{Origins: c.Origins, MaxAge: time.Duration(c.MaxAge)}
	}
	return a, nil
}

// resolveKeys resolves the keys of field; each must resolve to something.
func resolveKeys(field string, keys []string, repl *caddy.Replacer) ([]string, error) {
	var out []string
	for i, k := range keys {
		key, err := repl.ReplaceOrErr(k, true, true)
		if err != nil {
			// The error names the placeholder, never a value.
			return nil, fmt.Errorf("%s %d: %w", field, i+1, err)
		}
		out = append(out, key)
	}
	return out, nil
}

// resolved is a server with its placeholders resolved: what the pool needs
// to find it running, or to start it.
type resolved struct {
	spec   upstream.Spec
	opts   upstream.Options
	oauth  *oauth.Config // nil without OAuth
	extras *callExtras   // what each call adds; nil for nothing
	// users, for a server that gives each caller a session of their own,
	// is spec as the template of the sessions; nil for a shared server.
	users *userTemplate
}

// resolve resolves a validated server, named name, served at the mount
// itself when single.
func (s *ServerConfig) resolve(name string, single bool, repl *caddy.Replacer) (resolved, error) {
	var r resolved
	var err error
	if r.spec, r.opts, err = s.spec(name, repl); err != nil {
		return r, err
	}
	if s.OAuth != nil {
		cfg, id, err := s.OAuth.config(r.spec, single, repl)
		if err != nil {
			return r, err
		}
		r.oauth, r.spec.AuthID = &cfg, id
	}
	switch {
	case s.perUser():
		r.users = &userTemplate{spec: r.spec, stored: s.onDemand(), settings: userSettings{
			idle:   cmp.Or(time.Duration(s.IdleTimeout), defaultIdleTimeout),
			max:    cmp.Or(s.MaxSessions, defaultMaxSessions),
			listAs: cmp.Or(s.ListAs, defaultListAs),
		}}
	case s.onDemand():
		r.users = onDemandTemplate(r.spec, time.Duration(s.IdleTimeout))
		r.extras = s.callExtras(name)
		return r, nil
	}
	if r.users != nil {
		for k, v := range s.Env {
			if strings.Contains(v, userPrefix) {
				r.users.envKeys = append(r.users.envKeys, k)
			}
		}
		// The sessions' specs must be valid: check one's.
		if _, err := r.users.resolve(listerIdentity(r.users.settings.listAs)); err != nil {
			return r, err
		}
	}
	r.extras = s.callExtras(name)
	return r, nil
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

// spec resolves placeholders and builds the upstream's identity and
// options; upstream.Spec.Validate checks the resolved values. Values that
// hold a caller's placeholder are left as written: a per-user server's
// session resolves them when it starts (userTemplate), and a shared
// server's headers for each call.
func (s *ServerConfig) spec(name string, repl *caddy.Replacer) (upstream.Spec, upstream.Options, error) {
	r := func(v string) string {
		if strings.Contains(v, userPrefix) {
			return v
		}
		return repl.ReplaceKnown(v, "")
	}
	spec := upstream.Spec{Name: name, Command: r(s.Command), Dir: r(s.Dir), URL: r(s.URL)}
	for _, a := range s.Args {
		spec.Args = append(spec.Args, r(a))
	}
	var err error
	if spec.Transport, err = s.transport(); err != nil {
		return spec, upstream.Options{}, err
	}
	if spec.Protocol, err = upstream.ParseProtocol(s.Protocol); err != nil {
		return spec, upstream.Options{}, err
	}
	for k, v := range s.Headers {
		if perRequest(v) && !s.sessionHeader(v) {
			continue // resolved per call (callExtras), not part of the identity
		}
		if spec.Headers == nil {
			spec.Headers = make(map[string]string, len(s.Headers))
		}
		spec.Headers[k] = r(v)
	}
	if spec.Transport == upstream.TransportStdio {
		spec.Env = childEnv(os.Environ(), s.InheritEnv, s.Env, r)
		spec.Limits = s.Limits.upstream()
	}
	if !s.perUser() { // a per-user server's sessions are checked (resolve)
		if err := spec.Validate(); err != nil {
			return spec, upstream.Options{}, err
		}
	}
	opts := upstream.Options{
		StartTimeout:    time.Duration(s.StartTimeout),
		Drain:           time.Duration(s.DrainTimeout),
		Stop:            upstream.StopTimeouts{Grace: time.Duration(s.StopTimeout), Term: time.Duration(s.KillTimeout)},
		MaxMessageBytes: s.MaxMessageSize,
		PingInterval:    time.Duration(s.PingInterval),
		PingTimeout:     time.Duration(s.PingTimeout),
		MaxFailures:     s.MaxFailures,
		FailureWindow:   time.Duration(s.FailureWindow),
		Roots:           s.Roots,
		Elicitation:     elicitPolicy(s.Elicitation),
		Sampling:        s.Sampling == samplingRelay,
	}
	return spec, opts, nil
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

// config resolves the settings for the server spec, served at the mount
// itself when single, checks them (oauth.Config.Validate, and that the
// pages' URLs point at the handler), and returns the client configuration
// and an identity for the server's pool key (a digest: no secret in clear
// text).
func (o *OAuth) config(spec upstream.Spec, single bool, repl *caddy.Replacer) (oauth.Config, string, error) {
	cfg, err := o.resolve(spec.URL, repl)
	if err != nil {
		return cfg, "", err
	}
	if cfg.Grant != oauth.GrantClientCredentials {
		if err := checkPageURL("redirect_uri", cfg.RedirectURI, consentPath(spec.Name, single, "callback"),
			"where the handler completes the authorization"); err != nil {
			return cfg, "", err
		}
	}
	if cfg.ClientMetadataURL != "" {
		if err := checkPageURL("client_metadata_url", cfg.ClientMetadataURL, consentPath(spec.Name, single, "client-metadata.json"),
			"which the handler serves"); err != nil {
			return cfg, "", err
		}
	}
	// The store key names the client's tokens: a changed client gets its
	// own.
	store := sha256.Sum256([]byte(cfg.ServerURL + "\x00" + cfg.Grant + "\x00" + cfg.ClientID))
	cfg.StoreKey = "mcpo/oauth/" + hex.EncodeToString(store[:16])
	if err := cfg.Validate(); err != nil {
		return cfg, "", err
	}
	// The identity covers every setting, the secrets only as digests.
	id, err := json.Marshal([]any{cfg.ServerURL, cfg.Grant, cfg.RedirectURI, cfg.ClientID, cfg.ClientSecret,
		cfg.TokenEndpointAuthMethod, cfg.PrivateKeyPEM, cfg.SigningAlgorithm, cfg.Issuer, cfg.Scopes,
		cfg.ClientMetadataURL, cfg.ClientName})
	if err != nil {
		return cfg, "", err
	}
	sum := sha256.Sum256(id)
	return cfg, hex.EncodeToString(sum[:]), nil
}

// resolve resolves the placeholders of the settings, for the server at
// serverURL. Secrets must resolve; other values may resolve to nothing.
func (o *OAuth) resolve(serverURL string, repl *caddy.Replacer) (oauth.Config, error) {
	var errs []error
	secret := func(field, v string) string {
		if v == "" {
			return ""
		}
		out, err := repl.ReplaceOrErr(v, true, true)
		if err != nil {
			errs = append(errs, fmt.Errorf("oauth %s: %w", field, err))
		}
		return out
	}
	plain := func(v string) string { return repl.ReplaceKnown(v, "") }
	cfg := oauth.Config{
		ServerURL:               serverURL,
		Grant:                   o.Grant,
		RedirectURI:             plain(o.RedirectURI),
		ClientID:                plain(o.ClientID),
		ClientSecret:            secret("client_secret", o.ClientSecret),
		TokenEndpointAuthMethod: o.TokenEndpointAuthMethod,
		PrivateKeyPEM:           secret("private_key", o.PrivateKey),
		SigningAlgorithm:        o.SigningAlgorithm,
		Issuer:                  plain(o.Issuer),
		Scopes:                  o.Scopes,
		ClientMetadataURL:       plain(o.ClientMetadataURL),
		ClientName:              o.ClientName,
	}
	return cfg, errors.Join(errs...)
}

// checkPageURL checks that v, the resolved URL of an oauth field, is the
// external URL of a page the handler serves at path (below the mount).
func checkPageURL(field, v, path, what string) error {
	if v == "" {
		return fmt.Errorf("oauth needs %s: the external URL of %s, such as https://caddy.example.com/tools%s", field, path, path)
	}
	if u, err := url.Parse(v); err != nil || !strings.HasSuffix(u.Path, path) {
		return fmt.Errorf("oauth %s %q must be the external URL of %s, %s", field, v, path, what)
	}
	return nil
}

// consentPath is the path of a consent page of a server, below the mount.
func consentPath(name string, single bool, page string) string {
	if single {
		return "/oauth/" + page
	}
	return "/" + name + "/oauth/" + page
}

// durations converts a map of Caddy durations.
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

// Defaults of a per-user server's settings.
const (
	defaultIdleTimeout = 10 * time.Minute
	defaultMaxSessions = 100
	defaultListAs      = "mcpo"
)

// userSettings are the settings of a per-user server's sessions that may
// change while they run.
type userSettings struct {
	idle   time.Duration // idle_timeout
	max    int           // max_sessions
	listAs string        // list_as
}

// userTemplate is a per-user server: its spec, every placeholder resolved
// but in the values that hold a caller's, from which each caller's session
// is made, and the settings of its sessions.
type userTemplate struct {
	spec     upstream.Spec
	envKeys  []string // the configured variables whose values hold a caller's placeholder
	settings userSettings
	// shared makes the sessions a shared server's started on demand (start
	// on_demand): one session, of onDemandIdentity, for every caller.
	shared bool
	// stored keeps the tool listing in Caddy's storage (start on_demand).
	stored bool
}

// key is the server's pool key: its template's, apart from any shared
// server's, and apart from the same server started otherwise.
func (t *userTemplate) key() string {
	switch {
	case t.shared:
		return "on_demand:" + t.spec.Key()
	case t.stored:
		return "user+stored:" + t.spec.Key()
	}
	return "user:" + t.spec.Key()
}

// listerIdentity is the pseudo-identity a per-user server's tools are
// listed as: every placeholder of the caller is listAs.
func listerIdentity(listAs string) bridge.Identity {
	return bridge.Identity{ID: listAs, Email: listAs, Name: listAs, Role: listAs, Groups: []string{listAs}}
}

// resolve returns the spec of id's session: the caller's placeholders
// replaced by id's values (see expandUser), then the global placeholders
// of those values resolved. It fails when the identity lacks a value the
// template uses (*bridge.RefusedError), or the spec is not valid.
func (t *userTemplate) resolve(id bridge.Identity) (upstream.Spec, error) {
	spec := t.spec
	repl := caddy.NewReplacer()
	var errs []error
	expand := func(v string, as userValueUse) string {
		if !strings.Contains(v, userPrefix) {
			return v
		}
		out, err := expandUser(v, id, as, repl)
		errs = append(errs, err)
		return out
	}
	spec.Args = slices.Clone(spec.Args)
	for i, a := range spec.Args {
		spec.Args[i] = expand(a, inComponent)
	}
	spec.Env = slices.Clone(spec.Env)
	for i, kv := range spec.Env {
		if k, v, _ := strings.Cut(kv, "="); slices.Contains(t.envKeys, k) {
			spec.Env[i] = k + "=" + expand(v, inComponent)
		}
	}
	spec.Dir = expand(spec.Dir, inComponent)
	spec.URL = expand(spec.URL, inURL)
	if len(spec.Headers) > 0 {
		spec.Headers = maps.Clone(spec.Headers)
		for k, v := range spec.Headers {
			spec.Headers[k] = expand(v, inHeader)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return spec, err
	}
	if err := spec.Validate(); err != nil {
		return spec, err
	}
	return spec, nil
}

// userPrefix starts every placeholder of the caller.
const userPrefix = "{mcpo.user."

// userFields read the values of the caller's placeholders,
// {mcpo.user.<field>}, from an identity.
var userFields = map[string]func(bridge.Identity) string{
	"id":     func(id bridge.Identity) string { return id.ID },
	"email":  func(id bridge.Identity) string { return id.Email },
	"name":   func(id bridge.Identity) string { return id.Name },
	"role":   func(id bridge.Identity) string { return id.Role },
	"groups": func(id bridge.Identity) string { return strings.Join(id.Groups, ",") },
}

// userToken is a caller's placeholder in a value: where it is, its field,
// and whether another placeholder holds it, as in
// {file./run/secrets/token-{mcpo.user.id}}.
type userToken struct {
	start, end int
	field      string
	nested     bool
}

// userTokens finds the caller's placeholders in v; an unknown field is an
// error.
func userTokens(v string) ([]userToken, error) {
	var out []userToken
	depth := 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && i+1 < len(v) && (v[i+1] == '{' || v[i+1] == '}'):
			i++ // an escaped brace, which Caddy's replacer keeps as a brace
		case strings.HasPrefix(v[i:], userPrefix):
			n := strings.IndexByte(v[i:], '}')
			if n < 0 {
				return nil, fmt.Errorf("unclosed placeholder %s", v[i:])
			}
			field := v[i+len(userPrefix) : i+n]
			if userFields[field] == nil {
				return nil, fmt.Errorf("unknown placeholder %s%s}: the caller's are {mcpo.user.id}, .email, .name, .role and .groups",
					userPrefix, field)
			}
			out = append(out, userToken{start: i, end: i + n + 1, field: field, nested: depth > 0})
			i += n
		case c == '{':
			depth++
		case c == '}' && depth > 0:
			depth--
		}
	}
	return out, nil
}

// holdsUser reports whether v holds a caller's placeholder (an escaped
// brace is not one).
func holdsUser(v string) bool {
	if !strings.Contains(v, userPrefix) {
		return false
	}
	tokens, err := userTokens(v)
	return len(tokens) > 0 || err != nil
}

// userPlaceholders returns the caller's placeholders v holds, such as
// "mcpo.user.id", or an error naming an unknown one.
func userPlaceholders(v string) ([]string, error) {
	tokens, err := userTokens(v)
	var out []string
	for _, t := range tokens {
		out = append(out, "mcpo.user."+t.field)
	}
	return out, err
}

// userValueUse is where a caller's value goes, which decides how it is
// written there.
type userValueUse int

const (
	// inComponent: an argument, a variable or a directory, where the value
	// may become a file name: a safe component (safeComponent).
	inComponent userValueUse = iota
	// inURL: a URL, where the safe component is escaped as a query value
	// (which suits a path segment too).
	inURL
	// inHeader: a header value, where the value goes as it is: the
	// identity's source refused bytes a header cannot carry.
	inHeader
)

// expandUser returns v with the caller's placeholders replaced by id's
// values, written as use wants, and the other placeholders resolved by
// repl. A caller's value inside another placeholder (the name of a file or
// a variable) is always a safe component. The values are never read again
// as placeholders: a caller cannot inject one. A value the identity lacks
// is a *bridge.RefusedError (403): an empty value would let callers share
// what the template keeps apart.
func expandUser(v string, id bridge.Identity, use userValueUse, repl *caddy.Replacer) (string, error) {
	tokens, err := userTokens(v)
	if err != nil {
		return "", err
	}
	var out, text strings.Builder
	flush := func() {
		out.WriteString(repl.ReplaceKnown(text.String(), ""))
		text.Reset()
	}
	last := 0
	for _, t := range tokens {
		text.WriteString(v[last:t.start])
		last = t.end
		val := userFields[t.field](id)
		if val == "" {
			return "", &bridge.RefusedError{Status: http.StatusForbidden, Message: fmt.Sprintf(
				"the caller's identity has no %s, which this server's configuration needs ({mcpo.user.%s})", t.field, t.field)}
		}
		switch {
		case t.nested:
			text.WriteString(safeComponent(val))
		case use == inComponent:
			flush()
			out.WriteString(safeComponent(val))
		case use == inURL:
			flush()
			out.WriteString(url.QueryEscape(safeComponent(val)))
		default:
			flush()
			out.WriteString(val)
		}
	}
	text.WriteString(v[last:])
	flush()
	return out.String(), nil
}

// verbatimComponent matches the values a safe component keeps as they are.
var verbatimComponent = regexp.MustCompile(`^[A-Za-z0-9_@+=:][A-Za-z0-9._@+=:-]*$`)

// safeComponent returns v as it is when it matches verbatimComponent, and
// otherwise with every byte outside [A-Za-z0-9_@+=:-], and a leading '-',
// percent-encoded: a reversible file name that cannot name a parent or the
// directory itself, hold a separator, NUL or newline, or pass for an
// option. "../x" becomes "%2E%2E%2Fx", "." "%2E", "-v" "%2Dv".
func safeComponent(v string) string {
	if verbatimComponent.MatchString(v) {
		return v
	}
	var b strings.Builder
	b.Grow(len(v) * 3)
	for i := 0; i < len(v); i++ {
		c := v[i]
		keep := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("_@+=:-", c) >= 0
		if keep && !(i == 0 && c == '-') {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

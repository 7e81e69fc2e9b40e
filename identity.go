package caddymcpo

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
	"github.com/caddy-mcpo/caddy-mcpo/internal/identity"
)

// This file holds the caller's identity: where it comes from (the
// identity setting and API keys naming their users), and how the handler
// establishes it for each request before the bridge sees the request.

// IdentitySource says where the caller's identity comes from. With it, a
// call without a valid identity (and, with protect_docs, a document)
// gets 401 with a message saying what is missing or wrong. The identity
// is set as the placeholders {mcpo.user.id}, {mcpo.user.email},
// {mcpo.user.name}, {mcpo.user.role} and {mcpo.user.groups}, and as
// {http.auth.user.id} when no authentication handler set it, so that
// Caddy's access log names the user.
type IdentitySource struct {
	// "placeholder": Placeholder, resolved for each request, is the
	// caller's ID (empty: no identity). "openwebui_jwt": the token Open
	// WebUI forwards when FORWARD_USER_INFO_HEADER_JWT_SECRET is set,
	// verified with Secret; its claims sub, email, name, role (and
	// groups, if present) make the identity. "api_key": the user named by
	// the API key the caller presents (APIKey.User).
	Source string `json:"source"`
	// For "placeholder": a value holding placeholders, such as
	// "{http.auth.user.id}" behind basic_auth or forward_auth. A request
	// header's placeholder is only as trustworthy as what sets it: use one
	// only where a trusted proxy sets the header and callers cannot.
	Placeholder string `json:"placeholder,omitempty"`
	// For "placeholder": a value holding placeholders, resolved with the
	// ID, that is the caller's role, such as
	// "{http.request.header.X-OpenWebUI-User-Role}" behind a trusted
	// proxy. Empty: the caller has no role.
	Role string `json:"role,omitempty"`
	// For "placeholder": a value holding placeholders, resolved with the
	// ID, that lists the caller's groups separated by commas, such as
	// "{http.request.header.Remote-Groups}" behind forward_auth.
	Groups string `json:"groups,omitempty"`
	// For "openwebui_jwt": the secret shared with Open WebUI
	// (FORWARD_USER_INFO_HEADER_JWT_SECRET), at least 32 bytes, best a
	// placeholder resolved when the configuration loads, such as
	// {env.OWUI_JWT_SECRET} or {file./run/secrets/owui-jwt}.
	Secret string `json:"secret,omitempty"`
	// For "openwebui_jwt": the header holding the token (Open WebUI's
	// FORWARD_USER_INFO_HEADER_JWT). Default: X-OpenWebUI-User-Jwt.
	Header string `json:"header,omitempty"`
	// For "openwebui_jwt": the clock skew allowed on the token's exp, iat
	// and nbf, at most 5m. Default: 30s.
	Leeway caddy.Duration `json:"leeway,omitempty"`
}

// The sources of an identity.
const (
	sourcePlaceholder = "placeholder"
	sourceOpenWebUI   = "openwebui_jwt"
	sourceAPIKey      = "api_key"
)

// maxLeeway bounds IdentitySource.Leeway: a token outlives its exp by
// that much.
const maxLeeway = 5 * time.Minute

var (
	// aPlaceholder matches a placeholder in a value.
	aPlaceholder = regexp.MustCompile(`\{[^{}\s]+\}`)
	// headerName matches a header's name (RFC 9110's token).
	headerName = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
)

// Validate checks the source and that the settings fit it.
func (s *IdentitySource) Validate() error {
	jwtOnly := func() error {
		if s.Secret != "" || s.Header != "" || s.Leeway != 0 {
			return fieldErr(fmt.Errorf("secret, header and leeway apply to identity %s only", sourceOpenWebUI),
				"secret", "header", "leeway")
		}
		return nil
	}
	if err := s.validateRoleAndGroups(); err != nil {
		return err
	}
	switch s.Source {
	case sourcePlaceholder:
		if !aPlaceholder.MatchString(s.Placeholder) {
			return fieldErr(fmt.Errorf("identity %q: want a placeholder such as {http.auth.user.id}, %s <secret> or %s",
				s.Placeholder, sourceOpenWebUI, sourceAPIKey), "placeholder")
		}
		return jwtOnly()
	case sourceOpenWebUI:
		switch {
		case s.Placeholder != "":
			return fieldErr(fmt.Errorf("placeholder applies to identity %s only", sourcePlaceholder), "placeholder")
		case s.Secret == "":
			return fieldErr(fmt.Errorf("identity %s needs the secret Open WebUI signs with (FORWARD_USER_INFO_HEADER_JWT_SECRET), "+
				"best a placeholder such as {env.OWUI_JWT_SECRET}", sourceOpenWebUI), "secret")
		case s.Header != "" && !headerName.MatchString(s.Header):
			return fieldErr(fmt.Errorf("identity header %q is not a header name", s.Header), "header")
		case s.Leeway < 0 || time.Duration(s.Leeway) > maxLeeway:
			return fieldErr(fmt.Errorf("identity leeway %s: want a duration up to %s", time.Duration(s.Leeway), maxLeeway), "leeway")
		}
		return nil
	case sourceAPIKey:
		if s.Placeholder != "" {
			return fieldErr(fmt.Errorf("placeholder applies to identity %s only", sourcePlaceholder), "placeholder")
		}
		return jwtOnly()
	}
	return fieldErr(fmt.Errorf("identity source %q: want %s, %s or %s", s.Source, sourcePlaceholder, sourceOpenWebUI, sourceAPIKey),
		"source")
}

// validateRoleAndGroups checks that role and groups, which only a
// placeholder source takes, are placeholders.
func (s *IdentitySource) validateRoleAndGroups() error {
	for _, f := range []struct{ field, v string }{{"role", s.Role}, {"groups", s.Groups}} {
		switch {
		case f.v == "":
		case s.Source != sourcePlaceholder:
			return fieldErr(fmt.Errorf("identity %s applies to identity <placeholder> only: %s gives the %s itself", f.field, s.Source, f.field), f.field)
		case !aPlaceholder.MatchString(f.v):
			return fieldErr(fmt.Errorf("identity %s %q: want a placeholder such as {http.request.header.X-User-Role}", f.field, f.v), f.field)
		}
	}
	return nil
}

// validateIdentity checks the identity setting against the API keys: only
// identity api_key takes keys naming users, and it needs one.
func (h *Handler) validateIdentity() error {
	named := slices.ContainsFunc(h.APIKeys, func(k APIKey) bool { return k.User != "" })
	if h.Identity == nil {
		if named {
			return fieldErr(fmt.Errorf("an api_key names a user, which only identity %s uses: add it, or drop the user", sourceAPIKey),
				"api_keys")
		}
		return nil
	}
	if err := h.Identity.Validate(); err != nil {
		return nested("identity", err)
	}
	switch {
	case h.Identity.Source == sourceAPIKey && !named:
		return fieldErr(fmt.Errorf("identity %s needs API keys naming their users: api_key <key> <user>", sourceAPIKey), "identity")
	case h.Identity.Source != sourceAPIKey && named:
		return fieldErr(fmt.Errorf("an api_key names a user, but the identity comes from %s: a request has one source of identity",
			h.Identity.Source), "api_keys", "identity")
	}
	return nil
}

// APIKey is an API key, and the user it names for identity api_key. In
// JSON, a key without a user is a string; one with a user an object
// {"key": ..., "user": ...}.
type APIKey struct {
	// The key, best a placeholder such as {env.MCPO_KEY}: a placeholder
	// that resolves to nothing is an error.
	Key string `json:"key"`
	// The user presenting the key is, as the caller's identity (its ID).
	// Valid UTF-8 without control characters, at most 128 bytes.
	User string `json:"user,omitempty"`
}

// MarshalJSON writes a key without a user as a string.
func (k APIKey) MarshalJSON() ([]byte, error) {
	if k.User == "" {
		return json.Marshal(k.Key)
	}
	type object APIKey
	return json.Marshal(object(k))
}

// UnmarshalJSON reads a string or an object.
func (k *APIKey) UnmarshalJSON(b []byte) error {
	if b = bytes.TrimSpace(b); len(b) > 0 && b[0] == '"' {
		*k = APIKey{}
		return json.Unmarshal(b, &k.Key)
	}
	type object APIKey
	var o object
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&o); err != nil {
		return fmt.Errorf(`an API key is a string or an object {"key": ..., "user": ...}: %w`, err)
	}
	*k = APIKey(o)
	return nil
}

// resolveAPIKeys resolves the keys and their users, checking each user as
// an identity: a key whose placeholder resolves to nothing, a user that
// cannot be an identity, or a key given twice with different users is an
// error. The errors name keys by their place, never by their value.
func resolveAPIKeys(keys []APIKey, repl *caddy.Replacer) ([]string, map[string]string, error) {
	secrets := make([]string, len(keys))
	for i, k := range keys {
		secrets[i] = k.Key
	}
	resolved, err := resolveKeys("api_key", secrets, repl)
	if err != nil {
		return nil, nil, err
	}
	var users map[string]string
	first := map[string]int{} // key → index of its first api_key
	user := make([]string, len(keys))
	for i, k := range keys {
		key := resolved[i]
		user[i] = repl.ReplaceKnown(k.User, "")
		if j, ok := first[key]; ok {
			if user[j] != user[i] {
				return nil, nil, fmt.Errorf("api_key %d is api_key %d again, with another user", i+1, j+1)
			}
			continue
		}
		first[key] = i
		if user[i] == "" {
			continue
		}
		if err := identity.Check(bridge.Identity{ID: user[i]}); err != nil {
			return nil, nil, fmt.Errorf("api_key %d: its user cannot be an identity: %w", i+1, err)
		}
		if users == nil {
			users = map[string]string{}
		}
		users[key] = user[i]
	}
	return resolved, users, nil
}

// identifier establishes the caller's identity of a request, as a
// validated IdentitySource says, with its placeholders resolved.
type identifier struct {
	source      string
	placeholder string              // for sourcePlaceholder
	role        string              // for sourcePlaceholder
	groups      string              // for sourcePlaceholder
	header      string              // for sourceOpenWebUI
	jwt         *identity.OpenWebUI // for sourceOpenWebUI
}

// identifier resolves the source's settings: a secret must resolve to at
// least identity.MinSecretBytes. Errors never hold the secret.
func (s *IdentitySource) identifier(repl *caddy.Replacer) (*identifier, error) {
	x := &identifier{source: s.Source, placeholder: s.Placeholder, role: s.Role, groups: s.Groups}
	if s.Source != sourceOpenWebUI {
		return x, nil
	}
	secret, err := repl.ReplaceOrErr(s.Secret, true, true)
	if err != nil {
		return nil, fmt.Errorf("identity %s secret: %w", sourceOpenWebUI, err)
	}
	if x.jwt, err = identity.NewOpenWebUI(secret, time.Duration(s.Leeway)); err != nil {
		return nil, fmt.Errorf("identity %s secret: %w", sourceOpenWebUI, err)
	}
	x.header = cmp.Or(s.Header, identity.OpenWebUIHeader)
	return x, nil
}

// identify returns the identity of r, or why it has none, in words for
// the caller that never hold a token or a secret. keyUser finds the user
// the request's API key names.
func (x *identifier) identify(r *http.Request, repl *caddy.Replacer, keyUser func(*http.Request) (string, bool)) (bridge.Identity, error) {
	var id bridge.Identity
	switch x.source {
	case sourcePlaceholder:
		if repl != nil {
			id.ID = repl.ReplaceAll(x.placeholder, "")
			id.Role = repl.ReplaceAll(x.role, "")
			id.Groups = splitGroups(repl.ReplaceAll(x.groups, ""))
		}
		if id.ID == "" {
			return id, fmt.Errorf("this needs the caller's identity, and %s is empty: is the caller authenticated in front of this server?",
				x.placeholder)
		}
	case sourceOpenWebUI:
		tokens := r.Header.Values(x.header)
		switch {
		case len(tokens) == 0 || tokens[0] == "":
			return id, fmt.Errorf("this needs the caller's identity: the %s header is missing "+
				"(Open WebUI sends it when ENABLE_FORWARD_USER_INFO_HEADERS and FORWARD_USER_INFO_HEADER_JWT_SECRET are set)", x.header)
		case len(tokens) > 1:
			return id, fmt.Errorf("the caller's identity could not be verified: the %s header is sent more than once", x.header)
		}
		var err error
		if id, err = x.jwt.Verify(strings.TrimSpace(tokens[0])); err != nil {
			return id, fmt.Errorf("the caller's identity could not be verified: the %s token is not valid: %w", x.header, err)
		}
	case sourceAPIKey:
		user, ok := keyUser(r)
		if !ok {
			return id, errors.New("this needs the caller's identity: the API key presented names no user")
		}
		id.ID = user
	}
	if err := identity.Check(id); err != nil {
		return bridge.Identity{}, fmt.Errorf("the caller's identity is not acceptable: %w", err)
	}
	return id, nil
}

// establish returns r carrying the caller's identity, with the identity
// placeholders set, or carrying why it has none, for the bridge's 401
// where one is needed.
func (h *Handler) establish(r *http.Request) *http.Request {
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	id, err := h.identity.identify(r, repl, h.bridge.KeyUser)
	if repl != nil {
		setIdentityPlaceholders(repl, id)
	}
	if err != nil {
		h.logger.Debug("no caller identity", zap.String("reason", err.Error()))
		return r.WithContext(bridge.WithIdentityError(r.Context(), err))
	}
	return r.WithContext(bridge.WithIdentity(r.Context(), id))
}

// setIdentityPlaceholders sets the placeholders of an identity, every one
// of them, empty when the source does not say or there is no identity (so
// that they resolve to nothing rather than stay as written where Caddy
// resolves only known placeholders: log_append, header); and
// {http.auth.user.id} to the ID when nothing set it, so that Caddy's access
// log names the user.
func setIdentityPlaceholders(repl *caddy.Replacer, id bridge.Identity) {
	repl.Set("mcpo.user.id", id.ID)
	repl.Set("mcpo.user.email", id.Email)
	repl.Set("mcpo.user.name", id.Name)
	repl.Set("mcpo.user.role", id.Role)
	repl.Set("mcpo.user.groups", strings.Join(id.Groups, ","))
	if v, _ := repl.GetString("http.auth.user.id"); v == "" && id.ID != "" {
		repl.Set("http.auth.user.id", id.ID)
	}
}

// splitGroups splits a comma-separated list of groups, trimming spaces
// and dropping empty entries; nil for none.
func splitGroups(v string) []string {
	var out []string
	for _, g := range strings.Split(v, ",") {
		if g = strings.TrimSpace(g); g != "" {
			out = append(out, g)
		}
	}
	return out
}

// requestHeader matches a placeholder of a request header, capturing its
// name.
var requestHeader = regexp.MustCompile(`\{http\.request\.header\.([^{}\s]+)\}`)

// vary returns the request headers that decide who the caller is, as far
// as the source tells: Open WebUI's token header, Authorization for API
// keys, and the request headers a placeholder source reads. Other
// placeholders (set by an authentication handler from whatever it
// checks) name none.
func (s *IdentitySource) vary() []string {
	switch s.Source {
	case sourceOpenWebUI:
		return []string{cmp.Or(s.Header, identity.OpenWebUIHeader)}
	case sourceAPIKey:
		return []string{"Authorization"}
	}
	var out []string
	for _, v := range []string{s.Placeholder, s.Role, s.Groups} {
		for _, m := range requestHeader.FindAllStringSubmatch(v, -1) {
			if !slices.ContainsFunc(out, func(h string) bool { return strings.EqualFold(h, m[1]) }) {
				out = append(out, m[1])
			}
		}
	}
	return out
}

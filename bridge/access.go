package bridge

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
)

// Access says who may use the bridge and what its documents declare about
// it. The zero value lets everyone in and declares nothing.
type Access struct {
	// Keys are the API keys a caller may present as
	// "Authorization: Bearer <key>". Empty means no key is checked (and a
	// bare "Authorization: Bearer " header, which some clients send, is
	// ignored).
	Keys []string
	// ProtectDocs requires a key for reading documents, Swagger UI and
	// health too: Bearer, or Basic with the key as the password (so that a
	// browser can open the docs). Without it, only calls need a key.
	ProtectDocs bool
	// AdminKeys guard the pages that start an upstream server's OAuth
	// authorization; without them, Keys do. Bearer, or Basic with the key
	// as the password.
	AdminKeys []string
	// Scheme is the security scheme the documents declare for every
	// operation, for when another handler (basic_auth, forward_auth, a JWT
	// plugin) authenticates callers. With Keys and no Scheme, the documents
	// declare a bearer scheme.
	Scheme *openapi3.SecurityScheme
	// CORS answers browsers calling from other origins; nil answers none.
	CORS *CORS
	// KeyUsers names the users of some of Keys: a caller presenting such a
	// key is that user (see Bridge.KeyUser). Every key it maps must be one
	// of Keys.
	KeyUsers map[string]string
	// RequireIdentity refuses with 401 a call, and with ProtectDocs a read,
	// whose request's context carries no identity (see WithIdentity), after
	// its key is checked. The answer's message is the reason
	// WithIdentityError put in the context.
	RequireIdentity bool
	// Rules, when there are any, grant tools to callers: a caller may call
	// only the tools some rule whose subjects match it grants (others get
	// 403), and its documents and health report list only those. Without
	// rules, every caller may call every tool.
	Rules []Rule
	// Vary names the request headers that decide who the caller is, sent
	// as Vary with the answers that depend on the caller's grant when
	// there are Rules; empty names none.
	Vary []string
}

// CORS is the cross-origin policy.
type CORS struct {
	// Origins allowed to call, such as "https://chat.example.com"; "*"
	// allows any origin.
	Origins []string
	// MaxAge is how long a browser may cache a preflight answer; zero
	// means DefaultCORSMaxAge.
	MaxAge time.Duration
}

// DefaultCORSMaxAge is how long browsers cache a preflight by default.
const DefaultCORSMaxAge = 10 * time.Minute

// SecuritySchemeName names the declared scheme in the documents'
// components.
const SecuritySchemeName = "mcpoAuth"

// BearerScheme is the scheme declared for API keys.
func BearerScheme() *openapi3.SecurityScheme {
	return &openapi3.SecurityScheme{
		Type:        "http",
		Scheme:      "bearer",
		Description: "An API key of this server, sent as `Authorization: Bearer <key>`.",
	}
}

// gate enforces an Access. Keys are kept as digests, so that comparing
// them takes the same time whatever the candidate.
type gate struct {
	keys        [][sha256.Size]byte
	users       []string            // the user each of keys names, or ""
	named       bool                // some key names a user
	identity    bool                // an identity is required
	adminKeys   [][sha256.Size]byte // keys, when no admin key is set
	adminName   string              // "admin key", or "API key" when keys stand in
	protectDocs bool
	scheme      *openapi3.SecurityScheme

	anyOrigin bool
	origins   map[string]bool // lower-cased
	maxAge    string
}

func newGate(a Access) (*gate, error) {
	g := &gate{protectDocs: a.ProtectDocs, scheme: a.Scheme, identity: a.RequireIdentity}
	var err error
	if g.keys, err = digests("API key", a.Keys); err != nil {
		return nil, err
	}
	if g.users, err = keyUsers(a.Keys, a.KeyUsers); err != nil {
		return nil, err
	}
	g.named = len(a.KeyUsers) > 0
	if g.adminKeys, err = digests("admin key", a.AdminKeys); err != nil {
		return nil, err
	}
	g.adminName = "admin key"
	if len(g.adminKeys) == 0 {
		g.adminKeys, g.adminName = g.keys, "API key"
	}
	if g.protectDocs && len(g.keys) == 0 && !g.identity {
		return nil, fmt.Errorf("protecting the documents needs an API key or an identity")
	}
	if len(g.keys) > 0 && g.scheme == nil {
		g.scheme = BearerScheme()
	}
	if c := a.CORS; c != nil {
		g.origins = map[string]bool{}
		for _, o := range c.Origins {
			if o == "*" {
				g.anyOrigin = true
				continue
			}
			g.origins[strings.ToLower(strings.TrimSuffix(o, "/"))] = true
		}
		maxAge := c.MaxAge
		if maxAge <= 0 {
			maxAge = DefaultCORSMaxAge
		}
		g.maxAge = strconv.Itoa(int(maxAge / time.Second))
	}
	return g, nil
}

// digests hashes keys, refusing empty ones.
func digests(what string, keys []string) ([][sha256.Size]byte, error) {
	var out [][sha256.Size]byte
	for i, k := range keys {
		if k == "" {
			return nil, fmt.Errorf("%s %d is empty (a placeholder that resolved to nothing?)", what, i+1)
		}
		out = append(out, sha256.Sum256([]byte(k)))
	}
	return out, nil
}

// keyUsers returns the user each of keys names in users, refusing a user
// given for a key that is not one of keys.
func keyUsers(keys []string, users map[string]string) ([]string, error) {
	if len(users) == 0 {
		return nil, nil
	}
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = users[k]
	}
	for k := range users {
		if !slices.Contains(keys, k) {
			return nil, errors.New("a user is given for a key that is not an API key")
		}
	}
	return out, nil
}

// Headers a browser script may read from answers, besides the safelisted
// ones: Mcp-Session-Id for the MCP endpoints' browser clients, Location
// and Preference-Applied for tasks (tasks.go).
const corsExposed = "ETag, Retry-After, WWW-Authenticate, Mcp-Session-Id, Location, Preference-Applied"

// cors adds the CORS headers to the answer to r and answers a preflight
// itself. It reports whether the request is answered.
func (g *gate) cors(w http.ResponseWriter, r *http.Request) bool {
	if g.origins == nil {
		return false
	}
	origin := r.Header.Get("Origin")
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	h := w.Header()
	h.Add("Vary", "Origin")
	if preflight {
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
	}
	if origin == "" {
		return false
	}
	if !g.allowsOrigin(origin) {
		if preflight {
			writeError(w, &httpError{Status: http.StatusForbidden, Detail: errorDetail{
				Message: fmt.Sprintf("origin %s is not allowed to call this server (see the cors setting)", origin),
			}})
			return true
		}
		return false // no CORS headers: the browser keeps the answer from the page
	}
	if g.anyOrigin {
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Set("Access-Control-Allow-Origin", origin)
	}
	if !preflight {
		h.Set("Access-Control-Expose-Headers", corsExposed)
		return false
	}
	h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST, DELETE, OPTIONS") // DELETE ends an MCP session
	if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
		// Any header may be sent; Authorization must be named, as "*" does
		// not cover it.
		h.Set("Access-Control-Allow-Headers", req)
	}
	h.Set("Access-Control-Max-Age", g.maxAge)
	w.WriteHeader(http.StatusNoContent)
	return true
}

// allowsOrigin reports whether the cors setting allows origin.
func (g *gate) allowsOrigin(origin string) bool {
	return g.anyOrigin || g.origins[strings.ToLower(origin)]
}

// admit checks the caller's key, then that the request carries an
// identity if one is required, returning the 401 or 403 of a request it
// refuses. read says whether the request only reads documents or health.
func (g *gate) admit(r *http.Request, read bool) *httpError {
	if read && !g.protectDocs {
		return nil
	}
	if e := check(r, g.keys, read, "API key"); e != nil {
		return e
	}
	if !g.identity {
		return nil
	}
	if _, ok := IdentityFrom(r.Context()); ok {
		return nil
	}
	msg := "this needs the caller's identity, and none was established"
	if err, _ := r.Context().Value(identityErrorKey{}).(error); err != nil {
		msg = err.Error()
	}
	e := &httpError{Status: http.StatusUnauthorized, Detail: errorDetail{Message: msg}}
	if g.named {
		// The identity comes from the key: another key may name a user.
		e.Header = http.Header{}
		e.Header.Add("WWW-Authenticate", `Bearer realm="caddy-mcpo"`)
	}
	return e
}

type identityErrorKey struct{}

// WithIdentityError returns ctx carrying why the caller's identity could
// not be established, for the 401 of a request that needs one (see
// Access.RequireIdentity). err's message is the answer's: it says what is
// missing or wrong in words the caller can act on, and never holds a
// token or a secret.
func WithIdentityError(ctx context.Context, err error) context.Context {
	return context.WithValue(ctx, identityErrorKey{}, err)
}

// KeyUser returns the user named by the API key r presents, as its key is
// checked (Bearer, or for a read also Basic's password), and whether r
// presents a valid key that names a user.
func (b *Bridge) KeyUser(r *http.Request) (string, bool) {
	g := b.gate
	if !g.named {
		return "", false
	}
	key, _ := credentials(r, isRead(r.Method))
	if key == "" {
		return "", false
	}
	if i := match(g.keys, key); i >= 0 && g.users[i] != "" {
		return g.users[i], true
	}
	return "", false
}

// admitAdmin checks the key of a request for an administrator's page.
func (g *gate) admitAdmin(r *http.Request) *httpError {
	return check(r, g.adminKeys, true, g.adminName)
}

// check admits a request bearing one of keys, and returns the 401 or 403
// of others. A browser's Basic authentication is accepted if basic, with
// the key as the password; what names the key in messages.
func check(r *http.Request, keys [][sha256.Size]byte, basic bool, what string) *httpError {
	if len(keys) == 0 {
		return nil
	}
	key, why := credentials(r, basic)
	if key == "" {
		e := &httpError{Status: http.StatusUnauthorized, Header: http.Header{}}
		msg := "this needs the " + what + ": send it as 'Authorization: Bearer <key>'"
		if basic {
			// Browsers prompt for Basic, so pages open in one.
			e.Header.Add("WWW-Authenticate", `Basic realm="caddy-mcpo", charset="UTF-8"`)
			msg += ", or as the password of Basic authentication"
		}
		if why != "" {
			msg = why + "; " + msg
		}
		e.Header.Add("WWW-Authenticate", `Bearer realm="caddy-mcpo"`)
		e.Detail.Message = msg
		return e
	}
	if !valid(keys, key) {
		return &httpError{Status: http.StatusForbidden, Detail: errorDetail{Message: "the " + what + " is not valid for this server"}}
	}
	return nil
}

// valid compares key with every one of keys, in constant time.
func valid(keys [][sha256.Size]byte, key string) bool {
	return match(keys, key) >= 0
}

// match returns the index of key in keys, -1 if it is not there,
// comparing it with every one of them in constant time.
func match(keys [][sha256.Size]byte, key string) int {
	sum := sha256.Sum256([]byte(key))
	found := -1
	for i := range keys {
		found = subtle.ConstantTimeSelect(subtle.ConstantTimeCompare(sum[:], keys[i][:]), i, found)
	}
	return found
}

// credentials returns the key of the request's Authorization header:
// Bearer, or for reads also Basic's password. Without a key, why says
// what is wrong with a header that is there, never repeating any of it
// but the name of a registered scheme: what stands in a scheme's place
// may be a key sent without one.
func credentials(r *http.Request, read bool) (key, why string) {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return "", ""
	}
	scheme, rest, _ := strings.Cut(auth, " ")
	rest = strings.TrimSpace(rest)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		if rest == "" {
			return "", ""
		}
		return rest, ""
	case strings.EqualFold(scheme, "Basic") && read:
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return "", "the Basic credentials are not valid base64"
		}
		_, password, _ := strings.Cut(string(raw), ":")
		if password == "" {
			return "", ""
		}
		return password, ""
	}
	for _, known := range registeredSchemes {
		if strings.EqualFold(scheme, known) {
			return "", fmt.Sprintf("authorization scheme %q is not accepted here", known)
		}
	}
	return "", "the Authorization header does not start with a scheme accepted here"
}

// registeredSchemes are the HTTP authentication schemes IANA registers:
// the only words of an Authorization header an answer names.
var registeredSchemes = []string{
	"Basic", "Bearer", "Concealed", "Digest", "DPoP", "GNAP", "HOBA", "Mutual", "Negotiate", "NTLM",
	"OAuth", "PrivateToken", "SCRAM-SHA-1", "SCRAM-SHA-256", "vapid",
}

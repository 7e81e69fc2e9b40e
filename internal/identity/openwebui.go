package identity

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
)

// Settings of Open WebUI's forwarded user token.
const (
	// OpenWebUIHeader is the header Open WebUI sends the token in
	// (FORWARD_USER_INFO_HEADER_JWT).
	OpenWebUIHeader = "X-OpenWebUI-User-Jwt"
	// OpenWebUIIssuer is the token's iss.
	OpenWebUIIssuer = "open-webui"
	// DefaultLeeway is the clock skew allowed on exp, iat and nbf.
	DefaultLeeway = 30 * time.Second
	// MinSecretBytes is the shortest secret HS256 takes (RFC 7518,
	// section 3.2: a key at least as long as the hash).
	MinSecretBytes = 32
	// MaxTokenBytes bounds the tokens read: Open WebUI's are a few hundred
	// bytes.
	MaxTokenBytes = 16 << 10
)

// Why a token is refused, in words the caller (an LLM relaying them to a
// person) can act on. None holds the token, a claim or the secret.
var (
	ErrMalformed      = errors.New("it is not a well-formed JWT (three base64url parts, the first two JSON)")
	ErrSignature      = errors.New("its signature does not match the shared secret (FORWARD_USER_INFO_HEADER_JWT_SECRET)")
	ErrClaims         = errors.New("its claims are not what Open WebUI sends (sub, email, name and role strings, iat and exp numbers)")
	ErrIssuer         = errors.New(`it was not issued by Open WebUI (iss is not "open-webui")`)
	ErrNoExpiry       = errors.New("it has no expiry (exp)")
	ErrExpired        = errors.New("it has expired (exp)")
	ErrIssuedInFuture = errors.New("it was issued in the future (iat): are the clocks of Open WebUI and Caddy apart?")
	ErrNotYetValid    = errors.New("it is not valid yet (nbf)")
	ErrNoSubject      = errors.New("it names no user (sub)")
)

// AlgorithmError refuses a token signed with another algorithm than
// HS256, or with none.
type AlgorithmError struct {
	// Alg is the token's alg when it is a registered JWS algorithm, else
	// empty.
	Alg string
}

func (e *AlgorithmError) Error() string {
	if e.Alg == "" {
		return "it names no algorithm this server knows: only HS256 is accepted"
	}
	return fmt.Sprintf("it is signed with %q: only HS256 is accepted", e.Alg)
}

// jwsAlgorithms are the algorithms JWS registers (RFC 7518 and later):
// the only values of a token's alg an error names.
var jwsAlgorithms = []string{
	"none", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512",
	"PS256", "PS384", "PS512", "EdDSA", "ES256K", "Ed25519", "Ed448",
}

// OpenWebUI verifies the tokens Open WebUI sends when
// FORWARD_USER_INFO_HEADER_JWT_SECRET is set: HS256 with the shared
// secret, iss "open-webui", exp required, iat not in the future, each
// within the leeway. It is safe for concurrent use.
type OpenWebUI struct {
	secret []byte
	leeway time.Duration
	now    func() time.Time
}

// NewOpenWebUI returns a verifier of tokens signed with secret, allowing
// leeway of clock skew (DefaultLeeway when zero). The error never holds
// the secret.
func NewOpenWebUI(secret string, leeway time.Duration) (*OpenWebUI, error) {
	switch {
	case secret == "":
		return nil, errors.New("the secret is empty")
	case len(secret) < MinSecretBytes:
		return nil, fmt.Errorf("the secret is shorter than %d bytes, the least HS256 takes (RFC 7518, section 3.2): "+
			"set a longer FORWARD_USER_INFO_HEADER_JWT_SECRET on both sides", MinSecretBytes)
	case leeway < 0:
		return nil, fmt.Errorf("the leeway %s is negative", leeway)
	case leeway == 0:
		leeway = DefaultLeeway
	}
	return &OpenWebUI{secret: []byte(secret), leeway: leeway, now: time.Now}, nil
}

// claims are the claims of Open WebUI's token besides the registered ones.
type claims struct {
	Email  string `json:"email"`
	Name   string `json:"name"`
	Role   string `json:"role"`
	Groups groups `json:"groups"`
}

// groups reads a list of group names, or a single one.
type groups []string

func (g *groups) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		if one != "" {
			*g = groups{one}
		}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(g))
}

// Verify returns the identity token names: sub is its ID, and the email,
// name, role and groups claims, when present, the rest. The error says
// why a token is refused (one of the errors above); the identity's values
// are not checked (see Check).
func (v *OpenWebUI) Verify(token string) (bridge.Identity, error) {
	if len(token) > MaxTokenBytes {
		return bridge.Identity{}, ErrMalformed
	}
	// The algorithm is checked first, to say which one is refused.
	head, _, ok := strings.Cut(token, ".")
	if !ok {
		return bridge.Identity{}, ErrMalformed
	}
	raw, err := base64.RawURLEncoding.DecodeString(head)
	var header struct {
		Alg *string `json:"alg"`
	}
	if err != nil || json.Unmarshal(raw, &header) != nil {
		return bridge.Identity{}, ErrMalformed
	}
	if header.Alg == nil || *header.Alg != string(jose.HS256) {
		e := &AlgorithmError{}
		if header.Alg != nil && slices.Contains(jwsAlgorithms, *header.Alg) {
			e.Alg = *header.Alg
		}
		return bridge.Identity{}, e
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.HS256})
	if err != nil {
		return bridge.Identity{}, ErrMalformed
	}
	var std jwt.Claims
	var more claims
	if err := tok.Claims(v.secret, &std, &more); err != nil {
		if errors.Is(err, jose.ErrCryptoFailure) {
			return bridge.Identity{}, ErrSignature
		}
		return bridge.Identity{}, ErrClaims
	}
	// Signed with the secret: the claims are Open WebUI's.
	if std.Issuer != OpenWebUIIssuer {
		return bridge.Identity{}, ErrIssuer
	}
	if std.Expiry == nil {
		return bridge.Identity{}, ErrNoExpiry
	}
	switch err := std.ValidateWithLeeway(jwt.Expected{Time: v.now()}, v.leeway); {
	case errors.Is(err, jwt.ErrExpired):
		return bridge.Identity{}, ErrExpired
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return bridge.Identity{}, ErrIssuedInFuture
	case errors.Is(err, jwt.ErrNotValidYet):
		return bridge.Identity{}, ErrNotYetValid
	case err != nil:
		return bridge.Identity{}, ErrClaims
	}
	if std.Subject == "" {
		return bridge.Identity{}, ErrNoSubject
	}
	return bridge.Identity{ID: std.Subject, Email: more.Email, Name: more.Name, Role: more.Role, Groups: more.Groups}, nil
}

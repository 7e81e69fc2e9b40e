package oauth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Grants.
const (
	// GrantAuthorizationCode is the authorization-code flow with PKCE: a
	// user consents in a browser. The default.
	GrantAuthorizationCode = "authorization_code"
	// GrantClientCredentials is the client_credentials grant, for
	// upstreams the proxy uses on its own behalf: no browser, the token is
	// fetched (and fetched again when it expires) with the client's own
	// credentials.
	GrantClientCredentials = "client_credentials"
)

// Token endpoint client authentication methods.
const (
	AuthMethodClientSecretBasic = "client_secret_basic"
	AuthMethodClientSecretPost  = "client_secret_post"
	AuthMethodNone              = "none"
	AuthMethodPrivateKeyJWT     = "private_key_jwt"
)

// DefaultHTTPTimeout bounds each discovery, registration and token request
// when Config.HTTPClient is nil.
const DefaultHTTPTimeout = 30 * time.Second

// DefaultClientName is the client_name registered when Config.ClientName
// is empty.
const DefaultClientName = "caddy-mcpo"

// Config configures a Client for one upstream MCP server.
type Config struct {
	// ServerURL is the MCP endpoint (Streamable HTTP), e.g.
	// https://mcp.example.com/mcp. Required.
	ServerURL string

	// RedirectURI is where the authorization server sends the user's
	// browser back to: the proxy's callback route. Required for the
	// authorization-code grant.
	RedirectURI string

	// ClientID and ClientSecret are pre-registered credentials. When
	// ClientID is set, no client metadata document or dynamic
	// registration is used. ClientSecret may be empty for a public client
	// or with PrivateKeyPEM.
	ClientID     string
	ClientSecret string

	// Issuer, if set, is the authorization server the pre-registered
	// credentials belong to: they are never sent to another one (an
	// upstream naming another issuer is refused). If empty, they are used
	// with whatever authorization server the upstream names.
	Issuer string

	// TokenEndpointAuthMethod chooses how pre-registered credentials
	// authenticate at the token endpoint: client_secret_basic,
	// client_secret_post, none or private_key_jwt. Empty: private_key_jwt
	// with PrivateKeyPEM, else the first of client_secret_basic and
	// client_secret_post the server supports (none without a secret). For
	// dynamic registration it is the method asked for.
	TokenEndpointAuthMethod string

	// ClientMetadataURL is the HTTPS URL (with a path) of this client's
	// Client ID Metadata Document, which the proxy serves (see
	// Client.ClientMetadata for its content). It is used as the client_id
	// with authorization servers that advertise
	// client_id_metadata_document_supported, in preference to dynamic
	// registration. Plain http is accepted for loopback hosts only.
	ClientMetadataURL string

	// ClientName is the client_name registered; default DefaultClientName.
	ClientName string

	// Scopes, if set, are the scopes requested, overriding the server's
	// challenge and metadata. Step-up challenges still add to them.
	Scopes []string

	// Grant is GrantAuthorizationCode (default) or GrantClientCredentials.
	Grant string

	// PrivateKeyPEM is the PEM-encoded private key (PKCS #8, PKCS #1 or
	// SEC 1; RSA or ECDSA P-256) for private_key_jwt client authentication
	// (RFC 7523). It needs ClientID.
	PrivateKeyPEM string
	// SigningAlgorithm is RS256 or ES256; default from the key's type.
	SigningAlgorithm string

	// HTTPClient makes the discovery, registration and token requests;
	// default a client with a DefaultHTTPTimeout timeout. It must not be
	// the client that uses Transport.
	HTTPClient *http.Client

	// Store keeps registrations and tokens; default a MemoryStore.
	Store Store
	// StoreKey is the key prefix for this server in Store, e.g.
	// "mcpo/oauth/<digest>"; default "oauth/" and a digest of ServerURL.
	StoreKey string

	// Logger receives the client's logs; may be nil.
	Logger *zap.Logger

	// OnChange, if set, is called after Status changes, with the new
	// Status, on the goroutine that made the change (possibly one sending
	// a request through Transport, or renewing a token). It must return
	// quickly and must not call the Client except Status; hand longer work
	// to another goroutine. See also Client.Changed.
	OnChange func(Status)

	// Now returns the current time; default time.Now. For tests.
	Now func() time.Time
}

// checkRedirect lets metadata requests follow up to five redirects to
// secure URLs, and no other request: a token or registration request sent
// again elsewhere would carry codes, verifiers and secrets there.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if via[0].Method != http.MethodGet || len(via) >= 5 || checkSecureURL(req.URL.String()) != nil {
		return http.ErrUseLastResponse
	}
	return nil
}

// Validate reports a configuration New refuses, without I/O: the URLs,
// the grant and what it needs, the client's credentials and how they
// authenticate, the private key (parsed, never quoted), the scopes and the
// store key.
func (cfg Config) Validate() error {
	_, _, _, err := cfg.validate()
	return err
}

// validate checks cfg and returns it with the grant and the token endpoint
// authentication method defaulted, its server URL without fragment or user
// info, and the signer of its private key (nil without one).
func (cfg Config) validate() (Config, *url.URL, *assertionSigner, error) {
	su, err := url.Parse(cfg.ServerURL)
	if err != nil || su.Host == "" || (su.Scheme != "http" && su.Scheme != "https") {
		return cfg, nil, nil, errors.New("oauth: ServerURL: not an absolute http(s) URL")
	}
	su.Fragment, su.RawFragment = "", ""
	su.User = nil

	switch cfg.Grant {
	case "":
		cfg.Grant = GrantAuthorizationCode
	case GrantAuthorizationCode, GrantClientCredentials:
	default:
		return cfg, nil, nil, fmt.Errorf("oauth: Grant: unknown grant %q (want %s or %s)",
			cfg.Grant, GrantAuthorizationCode, GrantClientCredentials)
	}

	if cfg.Grant == GrantAuthorizationCode {
		ru, err := url.Parse(cfg.RedirectURI)
		if cfg.RedirectURI == "" || err != nil || !ru.IsAbs() || ru.Fragment != "" {
			return cfg, nil, nil, errors.New("oauth: RedirectURI: an absolute URL without fragment is required for the authorization-code grant")
		}
	}
	if err := cfg.validateClient(); err != nil {
		return cfg, nil, nil, err
	}
	if cfg.TokenEndpointAuthMethod == "" && cfg.PrivateKeyPEM != "" {
		cfg.TokenEndpointAuthMethod = AuthMethodPrivateKeyJWT
	}

	var signer *assertionSigner
	if cfg.PrivateKeyPEM != "" {
		signer, err = newAssertionSigner(cfg.PrivateKeyPEM, cfg.SigningAlgorithm)
		if err != nil {
			return cfg, nil, nil, err // names the field, never quotes the key
		}
	} else if cfg.SigningAlgorithm != "" {
		return cfg, nil, nil, errors.New("oauth: SigningAlgorithm: set without PrivateKeyPEM")
	}

	if cfg.ClientMetadataURL != "" {
		mu, err := url.Parse(cfg.ClientMetadataURL)
		if err != nil || checkSecureURL(cfg.ClientMetadataURL) != nil || strings.Trim(mu.Path, "/") == "" ||
			mu.RawQuery != "" || mu.Fragment != "" {
			return cfg, nil, nil, errors.New("oauth: ClientMetadataURL: an https URL with a path is required")
		}
	}
	for _, s := range cfg.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\"\\") {
			return cfg, nil, nil, fmt.Errorf("oauth: Scopes: %q is not a valid scope", s)
		}
	}
	if cfg.StoreKey != "" && !validStoreKey(cfg.StoreKey) {
		return cfg, nil, nil, fmt.Errorf("oauth: StoreKey: %q is not a slash-separated key without empty, \".\" or \"..\" segments", cfg.StoreKey)
	}
	return cfg, su, signer, nil
}

// validateClient checks the pre-registered client's credentials against
// the grant (already defaulted) and the token endpoint authentication
// method.
func (cfg Config) validateClient() error {
	if cfg.ClientSecret != "" && cfg.ClientID == "" {
		return errors.New("oauth: ClientSecret: set without ClientID")
	}
	if cfg.PrivateKeyPEM != "" && cfg.ClientID == "" {
		return errors.New("oauth: PrivateKeyPEM: set without ClientID")
	}
	if cfg.Issuer != "" && cfg.ClientID == "" {
		return errors.New("oauth: Issuer: set without ClientID")
	}
	switch cfg.TokenEndpointAuthMethod {
	case "", AuthMethodNone:
	case AuthMethodClientSecretBasic, AuthMethodClientSecretPost:
		if cfg.ClientID != "" && cfg.ClientSecret == "" {
			return fmt.Errorf("oauth: TokenEndpointAuthMethod: %s needs ClientSecret", cfg.TokenEndpointAuthMethod)
		}
	case AuthMethodPrivateKeyJWT:
		if cfg.PrivateKeyPEM == "" {
			return errors.New("oauth: TokenEndpointAuthMethod: private_key_jwt needs PrivateKeyPEM")
		}
	default:
		return fmt.Errorf("oauth: TokenEndpointAuthMethod: unknown method %q", cfg.TokenEndpointAuthMethod)
	}
	if cfg.Grant == GrantClientCredentials {
		if cfg.ClientID == "" {
			return errors.New("oauth: ClientID: required for the client_credentials grant")
		}
		if cfg.ClientSecret == "" && cfg.PrivateKeyPEM == "" {
			return errors.New("oauth: ClientSecret or PrivateKeyPEM: required for the client_credentials grant")
		}
		if cfg.TokenEndpointAuthMethod == AuthMethodNone {
			return errors.New("oauth: TokenEndpointAuthMethod: none cannot be used with the client_credentials grant")
		}
	}
	return nil
}

// New validates cfg (see Validate) and returns a Client. It does no I/O:
// stored tokens are loaded on first use (or by Load).
func New(cfg Config) (*Client, error) {
	cfg, su, signer, err := cfg.defaults()
	if err != nil {
		return nil, err
	}
	return newClient(cfg, su, signer, cfg.StoreKey, newRegistry(), nil), nil
}

// defaults validates cfg and fills in the defaults of what it leaves out.
func (cfg Config) defaults() (Config, *url.URL, *assertionSigner, error) {
	cfg, su, signer, err := cfg.validate()
	if err != nil {
		return cfg, nil, nil, err
	}
	cfg.Scopes = slices.Clone(cfg.Scopes)
	if cfg.ClientName == "" {
		cfg.ClientName = DefaultClientName
	}
	if cfg.StoreKey == "" {
		sum := sha256.Sum256([]byte(canonicalURL(su)))
		cfg.StoreKey = "oauth/" + hex.EncodeToString(sum[:16])
	}
	if cfg.Store == nil {
		cfg.Store = &MemoryStore{}
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: DefaultHTTPTimeout, CheckRedirect: checkRedirect}
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg, su, signer, nil
}

// newClient returns the client of cfg (with its defaults) keeping its
// token below storeKey and its registrations in reg; users is the Users it
// belongs to, nil for a client of its own.
func newClient(cfg Config, su *url.URL, signer *assertionSigner, storeKey string, reg *registry, users *Users) *Client {
	c := &Client{
		cfg:             cfg,
		serverURL:       su,
		canonicalServer: canonicalURL(su),
		storeKey:        storeKey,
		regKey:          cfg.StoreKey,
		store:           cfg.Store,
		hc:              cfg.HTTPClient,
		now:             cfg.Now,
		signer:          signer,
		reg:             reg,
		users:           users,
		pending:         make(map[string]*pendingFlow),
		changed:         make(chan struct{}),
	}
	c.SetLogger(cfg.Logger)
	return c
}

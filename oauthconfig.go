package caddymcpo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
	"github.com/caddy-mcpo/caddy-mcpo/oauth"
)

// OAuth authorizes the requests to an HTTP server with OAuth 2.1, as the
// MCP authorization specification describes. Nothing blocks: until a user
// has authorized the server (once; tokens are kept in Caddy's storage and
// refreshed), calls to it get 503 with the address of its authorize page,
// and every other server works as usual.
//
// Values may hold placeholders, such as {env.CLIENT_SECRET} or
// {file./run/secrets/key.pem}.
type OAuth struct {
	// "authorization_code" (the default: a user consents in a browser at
	// <mount>/<server>/oauth/authorize) or "client_credentials" (the
	// server is called on Caddy's own behalf, with the client's
	// credentials, and no browser is involved).
	Grant string `json:"grant,omitempty"`

	// The external URL of <mount>/<server>/oauth/callback (of
	// <mount>/oauth/callback for a single-server mount), where the
	// authorization server sends the browser back, such as
	// https://caddy.example.com/tools/github/oauth/callback. Required for
	// the authorization-code grant; register it with the provider when
	// the client is pre-registered.
	RedirectURI string `json:"redirect_uri,omitempty"`

	// A pre-registered client. Without one, the client registers itself
	// with a client ID metadata document (see ClientMetadataURL) or by
	// dynamic client registration, and keeps the registration in storage.
	ClientID     string `json:"client_id,omitempty"`
	ClientSecret string `json:"client_secret,omitempty"`
	// How the client authenticates at the token endpoint:
	// client_secret_basic, client_secret_post, none or private_key_jwt.
	// Default: chosen from what the client has and the server supports.
	TokenEndpointAuthMethod string `json:"token_endpoint_auth_method,omitempty"`
	// The PEM private key (RSA or ECDSA P-256) of private_key_jwt client
	// authentication, best as {file./path/key.pem}.
	PrivateKey string `json:"private_key,omitempty"`
	// RS256 or ES256; default from the key.
	SigningAlgorithm string `json:"signing_algorithm,omitempty"`
	// The authorization server the pre-registered client belongs to: its
	// credentials are never sent to another one.
	Issuer string `json:"issuer,omitempty"`

	// The scopes to ask for. Default: those the server asks for in its
	// challenge or lists in its metadata.
	Scopes []string `json:"scopes,omitempty"`

	// The HTTPS URL of <mount>/<server>/oauth/client-metadata.json, which
	// the handler serves: with authorization servers that support client
	// ID metadata documents, it is the client's ID and no registration is
	// needed.
	ClientMetadataURL string `json:"client_metadata_url,omitempty"`
	// The client name shown on consent pages. Default: caddy-mcpo.
	ClientName string `json:"client_name,omitempty"`
}

// config resolves the settings for the server spec, named name in a
// single-server mount or not, and returns the client configuration and an
// identity for the server's pool key (a digest: no secret in clear text).
func (o *OAuth) config(spec upstream.Spec, single bool, repl *caddy.Replacer) (oauth.Config, string, error) {
	if spec.Transport == upstream.TransportStdio {
		return oauth.Config{}, "", errors.New("oauth applies to servers reached at a url; give a stdio server its credentials through env")
	}
	var errs []error
	// Secrets must resolve; other values may hold nothing.
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
		ServerURL:               spec.URL,
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
	if err := errors.Join(errs...); err != nil {
		return cfg, "", err
	}
	if cfg.Grant != oauth.GrantClientCredentials {
		if cfg.RedirectURI == "" {
			return cfg, "", fmt.Errorf("oauth needs redirect_uri: the external URL of %s, such as https://caddy.example.com/tools/%s%s",
				consentPath(spec.Name, single, "callback"), spec.Name, "/oauth/callback")
		}
		u, err := url.Parse(cfg.RedirectURI)
		if err != nil || !strings.HasSuffix(u.Path, consentPath(spec.Name, single, "callback")) {
			return cfg, "", fmt.Errorf("oauth redirect_uri %q must be the external URL of %s, where the handler completes the authorization",
				cfg.RedirectURI, consentPath(spec.Name, single, "callback"))
		}
	}
	if cfg.ClientMetadataURL != "" {
		u, err := url.Parse(cfg.ClientMetadataURL)
		if err != nil || !strings.HasSuffix(u.Path, consentPath(spec.Name, single, "client-metadata.json")) {
			return cfg, "", fmt.Errorf("oauth client_metadata_url %q must be the external URL of %s, which the handler serves",
				cfg.ClientMetadataURL, consentPath(spec.Name, single, "client-metadata.json"))
		}
	}
	// The identity covers every setting, the secrets only as digests, and
	// names the storage keys: a changed client gets its own tokens.
	id, err := json.Marshal([]any{cfg.ServerURL, cfg.Grant, cfg.RedirectURI, cfg.ClientID, cfg.ClientSecret,
		cfg.TokenEndpointAuthMethod, cfg.PrivateKeyPEM, cfg.SigningAlgorithm, cfg.Issuer, cfg.Scopes,
		cfg.ClientMetadataURL, cfg.ClientName})
	if err != nil {
		return cfg, "", err
	}
	sum := sha256.Sum256(id)
	store := sha256.Sum256([]byte(cfg.ServerURL + "\x00" + cfg.Grant + "\x00" + cfg.ClientID))
	cfg.StoreKey = "mcpo/oauth/" + hex.EncodeToString(store[:16])
	if _, err := oauth.New(cfg); err != nil { // validates without I/O
		return cfg, "", err
	}
	return cfg, hex.EncodeToString(sum[:]), nil
}

// consentPath is the path of a consent page of a server, below the mount.
func consentPath(name string, single bool, page string) string {
	if single {
		return "/oauth/" + page
	}
	return "/" + name + "/oauth/" + page
}

// newOAuthClient builds the client of a server that is not pooled yet,
// keeping its tokens in store.
func newOAuthClient(cfg oauth.Config, store *liveStorage, log *zap.Logger) (*oauth.Client, error) {
	cfg.Store = store
	cfg.Logger = log
	return oauth.New(cfg)
}

// liveStorage is the storage of the newest configuration that uses a
// pooled server. A server outlives the configuration that started it,
// while Caddy cleans up a configuration's storage module when that
// configuration stops; each configuration that takes the server over
// hands it its own storage.
type liveStorage struct {
	cur atomic.Pointer[certmagic.Storage]
}

func newLiveStorage(s certmagic.Storage) *liveStorage {
	l := &liveStorage{}
	l.set(s)
	return l
}

func (l *liveStorage) set(s certmagic.Storage) { l.cur.Store(&s) }

func (l *liveStorage) get() certmagic.Storage { return *l.cur.Load() }

func (l *liveStorage) Store(ctx context.Context, key string, value []byte) error {
	return l.get().Store(ctx, key, value)
}

func (l *liveStorage) Load(ctx context.Context, key string) ([]byte, error) {
	return l.get().Load(ctx, key)
}

func (l *liveStorage) Delete(ctx context.Context, key string) error {
	return l.get().Delete(ctx, key)
}

package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// Store keeps client registrations and tokens. Keys are slash-separated
// paths without leading or trailing slashes. Caddy's certmagic.Storage
// satisfies it, so the proxy can pass the storage Caddy is configured with.
//
// Values are confidential (they hold client secrets and refresh tokens);
// the Store is trusted to keep them so.
type Store interface {
	// Store puts value at key, creating or replacing it.
	Store(ctx context.Context, key string, value []byte) error
	// Load returns the value at key, or an error wrapping fs.ErrNotExist
	// when there is none.
	Load(ctx context.Context, key string) ([]byte, error)
	// Delete removes key. Deleting a key that does not exist is not an
	// error.
	Delete(ctx context.Context, key string) error
}

// MemoryStore is a Store in memory, for tests and for proxies without
// persistent storage (tokens are then lost on restart). The zero value is
// ready to use.
type MemoryStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

// Store implements Store.
func (s *MemoryStore) Store(_ context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string][]byte)
	}
	s.m[key] = slices.Clone(value)
	return nil
}

// Load implements Store.
func (s *MemoryStore) Load(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	if !ok {
		return nil, fmt.Errorf("%s: %w", key, fs.ErrNotExist)
	}
	return slices.Clone(v), nil
}

// Delete implements Store.
func (s *MemoryStore) Delete(_ context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}

// Keys returns the keys held, sorted.
func (s *MemoryStore) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.m))
}

// Key layout below Config.StoreKey:
//
//	<prefix>/current          which issuer the server's token is from
//	<prefix>/as-<hash>/client the registration with that issuer
//	<prefix>/as-<hash>/token  the token from that issuer
//
// and for a server each user authorizes for themselves (Users), the
// registrations as above, and:
//
//	<prefix>/users/key                     the key of the users' digests
//	<prefix>/users/<digest>/current        as <prefix>/current, for one user
//	<prefix>/users/<digest>/as-<hash>/token  as <prefix>/as-<hash>/token
//
// <hash> is the first 128 bits of SHA-256 of the issuer, in hex, so keys
// are safe path segments whatever the issuer looks like. <digest> is the
// HMAC-SHA-256 of the user's ID keyed by users/key, in hex: no key names a
// user, and guessing IDs does not find them without the key.
const (
	keyCurrent = "current"
	keyClient  = "client"
	keyToken   = "token"
)

// recordVersion is written into every stored record; records of another
// version are ignored.
const recordVersion = 1

func issuerDir(issuer string) string {
	sum := sha256.Sum256([]byte(issuer))
	return "as-" + hex.EncodeToString(sum[:16])
}

func (c *Client) currentKey() string { return c.storeKey + "/" + keyCurrent }

func (c *Client) clientKey(issuer string) string {
	return c.regKey + "/" + issuerDir(issuer) + "/" + keyClient
}

func (c *Client) tokenKey(issuer string) string {
	return c.storeKey + "/" + issuerDir(issuer) + "/" + keyToken
}

// validStoreKey reports whether k is usable as a key prefix: non-empty
// segments separated by single slashes, no "." or ".." segments, no
// backslashes.
func validStoreKey(k string) bool {
	if k == "" || strings.ContainsAny(k, "\\\x00") {
		return false
	}
	for seg := range strings.SplitSeq(k, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// currentRecord names the issuer whose token is in use.
type currentRecord struct {
	Version int    `json:"v"`
	Issuer  string `json:"issuer"`
}

// clientRecord is a client registration with one authorization server.
type clientRecord struct {
	Version      int    `json:"v"`
	Issuer       string `json:"issuer"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret,omitempty"`
	AuthMethod   string `json:"token_endpoint_auth_method"`
	// RedirectURI is the redirect URI registered; a registration made for
	// another one is not reused.
	RedirectURI string `json:"redirect_uri,omitempty"`
	// SecretExpiresAt is when the secret expires (zero: never).
	SecretExpiresAt time.Time `json:"client_secret_expires_at,omitzero"`
	RegisteredAt    time.Time `json:"registered_at,omitzero"`

	// source says where the credentials come from; not stored (only
	// dynamic registrations are).
	source string
}

// Sources of client credentials.
const (
	sourcePreRegistered = "pre-registered"
	sourceMetadataDoc   = "client ID metadata document"
	sourceDynamic       = "dynamic registration"
)

// tokenRecord is a token for the upstream server.
type tokenRecord struct {
	Version int `json:"v"`
	// Server is the canonical URL of the MCP server the token is for.
	Server        string `json:"server"`
	Issuer        string `json:"issuer"`
	Resource      string `json:"resource"`
	TokenEndpoint string `json:"token_endpoint"`
	ClientID      string `json:"client_id"`
	// ClientAuth is the token endpoint authentication method used.
	ClientAuth   string `json:"token_endpoint_auth_method"`
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token,omitempty"`
	// ExpiresAt is zero when the authorization server did not say.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Requested are the scopes asked for; Granted those the server said it
	// granted (nil if it did not say, meaning as requested).
	Requested []string  `json:"requested_scopes,omitempty"`
	Granted   []string  `json:"granted_scopes,omitempty"`
	Obtained  time.Time `json:"obtained"`
}

// scopes are the scopes the token carries, as far as is known.
func (r *tokenRecord) scopes() []string {
	if r.Granted != nil {
		return r.Granted
	}
	return r.Requested
}

// loadJSON reads key into v. It returns (false, nil) when the key does not
// exist.
func (c *Client) loadJSON(ctx context.Context, key string, v any) (bool, error) {
	return loadJSON(ctx, c.store, key, v)
}

// loadJSON reads key of store into v. It returns (false, nil) when the key
// does not exist.
func loadJSON(ctx context.Context, store Store, key string, v any) (bool, error) {
	b, err := store.Load(ctx, key)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("oauth: loading %s: %w", key, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		// The error may quote the value; do not wrap it.
		return false, fmt.Errorf("oauth: loading %s: not a valid record", key)
	}
	return true, nil
}

func (c *Client) storeJSON(ctx context.Context, key string, v any) error {
	return storeJSON(ctx, c.store, key, v)
}

// storeJSON writes v at key of store.
func storeJSON(ctx context.Context, store Store, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("oauth: storing %s: %w", key, err)
	}
	if err := store.Store(ctx, key, b); err != nil {
		return fmt.Errorf("oauth: storing %s: %w", key, err)
	}
	return nil
}

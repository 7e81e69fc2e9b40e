package caddymcpo

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
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
// options; upstream.Spec.Validate checks the resolved values.
func (s *ServerConfig) spec(name string, repl *caddy.Replacer) (upstream.Spec, upstream.Options, error) {
	r := func(v string) string { return repl.ReplaceKnown(v, "") }
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
		if perRequest(v) {
			continue // resolved per call (callExtras), not part of the identity
		}
		if spec.Headers == nil {
			spec.Headers = make(map[string]string, len(s.Headers))
		}
		spec.Headers[k] = r(v)
	}
	if spec.Transport == upstream.TransportStdio {
		spec.Env = childEnv(os.Environ(), s.InheritEnv, s.Env, r)
	}
	if err := spec.Validate(); err != nil {
		return spec, upstream.Options{}, err
	}
	opts := upstream.Options{
		StartTimeout:    time.Duration(s.StartTimeout),
		Drain:           time.Duration(s.DrainTimeout),
		Stop:            upstream.StopTimeouts{Grace: time.Duration(s.StopTimeout), Term: time.Duration(s.KillTimeout)},
		MaxMessageBytes: s.MaxMessageSize,
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

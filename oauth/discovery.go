package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"go.uber.org/zap"
)

// protectedResourceMetadata is the RFC 9728 document, the fields used.
type protectedResourceMetadata struct {
	Resource             string   `json:"resource"`
	AuthorizationServers []string `json:"authorization_servers"`
	ScopesSupported      []string `json:"scopes_supported"`
}

// authServerMetadata is the RFC 8414 / OpenID discovery document, the
// fields used.
type authServerMetadata struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	RegistrationEndpoint              string   `json:"registration_endpoint"`
	ScopesSupported                   []string `json:"scopes_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	ClientIDMetadataDocumentSupported bool     `json:"client_id_metadata_document_supported"`
	IssParameterSupported             bool     `json:"authorization_response_iss_parameter_supported"`
}

// discovery is what discovery found for one authorization.
type discovery struct {
	// resource is the RFC 8707 resource indicator to send: the PRM
	// resource exactly as published, or the canonical server URL when the
	// server has no PRM.
	resource string
	prm      *protectedResourceMetadata // nil for a 2025-03-26 server
	issuer   string
	as       authServerMetadata
	// defaults is true when the server had no metadata at all and the
	// 2025-03-26 default endpoints are used.
	defaults bool
}

// maxBody bounds every response body read.
const maxBody = 1 << 20

// discover finds the authorization server for the upstream server. ch is
// the latest Bearer challenge, if any. pkce says whether the
// authorization-code flow will be used (then S256 support is required).
func (c *Client) discover(ctx context.Context, ch *bearerChallenge, pkce bool) (*discovery, error) {
	prm, err := c.fetchPRM(ctx, ch)
	if err != nil {
		return nil, err
	}
	if prm == nil {
		return c.discoverLegacy(ctx, pkce)
	}
	issuer := prm.AuthorizationServers[0]
	if err := checkSecureURL(issuer); err != nil {
		return nil, fmt.Errorf("oauth: authorization server %s: %w", redactURL(issuer), err)
	}
	as, err := c.fetchASMetadata(ctx, issuer)
	if err != nil {
		return nil, err
	}
	d := &discovery{resource: prm.Resource, prm: prm, issuer: issuer, as: *as}
	if err := checkASMetadata(d, pkce); err != nil {
		return nil, err
	}
	return d, nil
}

// fetchPRM fetches the protected-resource metadata: from the challenge's
// resource_metadata if there is one, else from the path-based well-known
// URL, then the root one. It returns nil, nil when the server publishes
// none (a 2025-03-26 server).
func (c *Client) fetchPRM(ctx context.Context, ch *bearerChallenge) (*protectedResourceMetadata, error) {
	var candidates []string
	advertised := false
	if ch != nil && ch.resourceMetadata != "" {
		ref, err := c.serverURL.Parse(ch.resourceMetadata)
		if err != nil {
			return nil, fmt.Errorf("oauth: resource_metadata in the server's challenge is not a URL")
		}
		// Metadata elsewhere than on the server's own origin would let
		// whoever serves it choose the authorization server: it is
		// ignored for the well-known places.
		if sameOrigin(ref, c.serverURL) {
			candidates = append(candidates, ref.String())
			advertised = true
		} else {
			c.logger().Warn("ignoring resource metadata named on another origin",
				zap.String("resource_metadata", redactURL(ref.String())))
		}
	}
	for _, u := range prmWellKnown(c.serverURL) {
		if !slices.Contains(candidates, u) {
			candidates = append(candidates, u)
		}
	}

	var lastErr error
	for _, u := range candidates {
		var prm protectedResourceMetadata
		found, err := c.getJSON(ctx, u, &prm)
		if err != nil {
			lastErr = err
			continue
		}
		if !found {
			continue
		}
		if prm.Resource == "" {
			return nil, fmt.Errorf("oauth: protected resource metadata %s: no resource", redactURL(u))
		}
		if !resourceMatches(prm.Resource, c.serverURL) {
			return nil, fmt.Errorf("oauth: protected resource metadata %s: %w: %q is not %s",
				redactURL(u), errResourceMismatch, redactURL(prm.Resource), c.canonicalServer)
		}
		prm.AuthorizationServers = slices.DeleteFunc(prm.AuthorizationServers, func(s string) bool { return s == "" })
		if len(prm.AuthorizationServers) == 0 {
			return nil, fmt.Errorf("oauth: protected resource metadata %s: %w", redactURL(u), errNoAuthServer)
		}
		c.logger().Debug("found protected resource metadata",
			zap.String("url", redactURL(u)),
			zap.String("resource", prm.Resource),
			zap.Strings("authorization_servers", prm.AuthorizationServers))
		return &prm, nil
	}
	if lastErr != nil {
		return nil, fmt.Errorf("oauth: protected resource metadata: %w", lastErr)
	}
	if advertised {
		return nil, fmt.Errorf("oauth: protected resource metadata: none at %s, which the server's challenge names, nor at the well-known URLs",
			redactURL(candidates[0]))
	}
	return nil, nil
}

// prmWellKnown returns the RFC 9728 well-known URLs for the server, the
// path-based one first; the root one is never tried first.
func prmWellKnown(server *url.URL) []string {
	const wk = "/.well-known/oauth-protected-resource"
	origin := server.Scheme + "://" + server.Host
	p := strings.TrimSuffix(server.EscapedPath(), "/")
	if p == "" {
		return []string{origin + wk}
	}
	withPath := origin + wk + p
	if server.RawQuery != "" {
		withPath += "?" + server.RawQuery
	}
	return []string{withPath, origin + wk}
}

// asWellKnown returns the metadata URLs to try for an issuer, in order
// (RFC 8414 §3.1 and OpenID Connect Discovery, as the MCP specification
// orders them).
func asWellKnown(issuer *url.URL) []string {
	const (
		oauthWK = "/.well-known/oauth-authorization-server"
		oidcWK  = "/.well-known/openid-configuration"
	)
	origin := issuer.Scheme + "://" + issuer.Host
	p := strings.TrimSuffix(issuer.EscapedPath(), "/")
	if p == "" {
		return []string{origin + oauthWK, origin + oidcWK}
	}
	return []string{origin + oauthWK + p, origin + oidcWK + p, origin + p + oidcWK}
}

// fetchASMetadata fetches and checks the metadata of issuer.
func (c *Client) fetchASMetadata(ctx context.Context, issuer string) (*authServerMetadata, error) {
	iu, err := url.Parse(issuer)
	if err != nil || iu.Host == "" || iu.RawQuery != "" || iu.Fragment != "" {
		return nil, fmt.Errorf("oauth: authorization server %q: not a valid issuer identifier", redactURL(issuer))
	}
	var lastErr error
	for _, u := range asWellKnown(iu) {
		var md authServerMetadata
		found, err := c.getJSON(ctx, u, &md)
		if err != nil {
			lastErr = err
			continue
		}
		if !found {
			continue
		}
		// RFC 8414 §3.3, OpenID Discovery §4.3: the issuer must be the
		// one the metadata was looked up for, exactly.
		if md.Issuer != issuer {
			return nil, fmt.Errorf("oauth: authorization server %s: metadata %s: %w (it says %q)",
				issuer, redactURL(u), errIssuerMismatch, md.Issuer)
		}
		c.logger().Debug("found authorization server metadata",
			zap.String("issuer", issuer), zap.String("url", redactURL(u)))
		return &md, nil
	}
	if lastErr != nil {
		return nil, fmt.Errorf("oauth: authorization server %s: metadata: %w", issuer, lastErr)
	}
	return nil, fmt.Errorf("oauth: authorization server %s: no metadata at its well-known URLs", issuer)
}

// discoverLegacy serves servers without protected-resource metadata
// (MCP 2025-03-26): the authorization server is the MCP server's origin,
// with metadata at its root well-known URL or, failing that, the default
// endpoints /authorize, /token and /register.
func (c *Client) discoverLegacy(ctx context.Context, pkce bool) (*discovery, error) {
	origin := url.URL{Scheme: c.serverURL.Scheme, Host: c.serverURL.Host}
	issuer := origin.String()
	d := &discovery{resource: c.canonicalServer, issuer: issuer}
	mdURL := origin
	mdURL.Path = "/.well-known/oauth-authorization-server"
	var md authServerMetadata
	found, err := c.getJSON(ctx, mdURL.String(), &md)
	if err != nil {
		return nil, fmt.Errorf("oauth: server %s publishes no protected resource metadata; authorization server metadata: %w",
			c.canonicalServer, err)
	}
	if found {
		// Accept the origin with or without its slash; iss is then
		// compared with exactly what the metadata says.
		if md.Issuer != issuer && md.Issuer != issuer+"/" {
			return nil, fmt.Errorf("oauth: authorization server %s: metadata %s: %w (it says %q)",
				issuer, redactURL(mdURL.String()), errIssuerMismatch, md.Issuer)
		}
		d.issuer = md.Issuer
		d.as = md
	} else {
		// No metadata at all: the 2025-03-26 default endpoints. That
		// revision made PKCE mandatory, so S256 support is assumed.
		at := func(p string) string { u := origin; u.Path = p; return u.String() }
		d.defaults = true
		d.as = authServerMetadata{
			Issuer:                        issuer,
			AuthorizationEndpoint:         at("/authorize"),
			TokenEndpoint:                 at("/token"),
			RegistrationEndpoint:          at("/register"),
			CodeChallengeMethodsSupported: []string{"S256"},
		}
	}
	c.logger().Debug("server publishes no protected resource metadata; using its origin as the authorization server",
		zap.String("issuer", d.issuer), zap.Bool("default_endpoints", d.defaults))
	if err := checkASMetadata(d, pkce); err != nil {
		return nil, err
	}
	return d, nil
}

// checkASMetadata checks the endpoints and, for the authorization-code
// flow, PKCE support.
func checkASMetadata(d *discovery, pkce bool) error {
	md := &d.as
	if md.TokenEndpoint == "" {
		return fmt.Errorf("oauth: authorization server %s: metadata has no token_endpoint", d.issuer)
	}
	check := []string{md.TokenEndpoint}
	if pkce {
		if md.AuthorizationEndpoint == "" {
			return fmt.Errorf("oauth: authorization server %s: metadata has no authorization_endpoint", d.issuer)
		}
		// PKCE is mandatory; absent code_challenge_methods_supported means
		// no support (MCP authorization, "Authorization Code Protection").
		if !slices.Contains(md.CodeChallengeMethodsSupported, "S256") {
			return fmt.Errorf("oauth: authorization server %s: %w", d.issuer, errPKCEUnsupported)
		}
		check = append(check, md.AuthorizationEndpoint)
	}
	if md.RegistrationEndpoint != "" {
		check = append(check, md.RegistrationEndpoint)
	}
	for _, e := range check {
		if err := checkSecureURL(e); err != nil {
			return fmt.Errorf("oauth: authorization server %s: endpoint %s: %w", d.issuer, redactURL(e), err)
		}
	}
	return nil
}

// getJSON GETs u and decodes a JSON answer into v. It returns found=false
// for a 4xx answer (nothing there), and an error for transport failures,
// 5xx answers and undecodable bodies.
func (c *Client) getJSON(ctx context.Context, u string, v any) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, fmt.Errorf("%s: %w", redactURL(u), err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return false, redactErr(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return false, fmt.Errorf("%s: reading: %w", redactURL(u), err)
	}
	c.logger().Debug("metadata request", zap.String("url", redactURL(u)), zap.Int("status", resp.StatusCode))
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return false, nil
	default:
		return false, fmt.Errorf("%s: HTTP %d", redactURL(u), resp.StatusCode)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return false, fmt.Errorf("%s: not a JSON metadata document", redactURL(u))
	}
	return true, nil
}

// canonicalURL is the canonical form of an MCP server URI: lower-case
// scheme and host, no fragment, no user info, no trailing slash.
func canonicalURL(u *url.URL) string {
	c := url.URL{
		Scheme:   strings.ToLower(u.Scheme),
		Host:     strings.ToLower(u.Host),
		Path:     strings.TrimSuffix(u.Path, "/"),
		RawPath:  strings.TrimSuffix(u.RawPath, "/"),
		RawQuery: u.RawQuery,
	}
	return c.String()
}

// resourceMatches reports whether the PRM resource identifier covers the
// server URL: same scheme, host and port, and a path that is the server's
// path or a parent of it on a segment boundary (a root PRM may declare the
// origin as its resource).
func resourceMatches(resource string, server *url.URL) bool {
	r, err := url.Parse(resource)
	if err != nil || !r.IsAbs() || r.Fragment != "" || r.User != nil {
		return false
	}
	if !strings.EqualFold(r.Scheme, server.Scheme) || !strings.EqualFold(r.Host, server.Host) {
		return false
	}
	if r.RawQuery != "" && r.RawQuery != server.RawQuery {
		return false
	}
	rp := strings.TrimSuffix(r.EscapedPath(), "/")
	sp := strings.TrimSuffix(server.EscapedPath(), "/")
	return rp == "" || rp == sp || strings.HasPrefix(sp, rp+"/")
}

// checkSecureURL accepts https URLs, and http URLs to loopback hosts.
func checkSecureURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return errors.New("not an absolute URL")
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
	}
	return errInsecureURL
}

// isLoopback reports whether host is localhost or a loopback address.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

package oauth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"time"

	"go.uber.org/zap"
)

// clientFor returns the client credentials to use with the authorization
// server d found, in the MCP order of preference: pre-registered, Client
// ID Metadata Document, dynamic registration. Credentials are bound to
// the issuer: a registration made with one authorization server is never
// presented to another.
func (c *Client) clientFor(ctx context.Context, d *discovery) (*clientRecord, error) {
	if c.cfg.ClientID != "" {
		if c.cfg.Issuer != "" && c.cfg.Issuer != d.issuer {
			return nil, fmt.Errorf("oauth: authorization server %s: %w (%s)", d.issuer, errPreRegisteredElse, c.cfg.Issuer)
		}
		return &clientRecord{
			Issuer:       d.issuer,
			ClientID:     c.cfg.ClientID,
			ClientSecret: c.cfg.ClientSecret,
			AuthMethod:   c.preRegisteredMethod(d),
			source:       sourcePreRegistered,
		}, nil
	}
	if c.cfg.Grant == GrantAuthorizationCode && c.cfg.ClientMetadataURL != "" && d.as.ClientIDMetadataDocumentSupported {
		return &clientRecord{
			Issuer:     d.issuer,
			ClientID:   c.cfg.ClientMetadataURL,
			AuthMethod: AuthMethodNone,
			source:     sourceMetadataDoc,
		}, nil
	}
	return c.dynamicClient(ctx, d)
}

// preRegisteredMethod chooses the token endpoint authentication of the
// pre-registered client.
func (c *Client) preRegisteredMethod(d *discovery) string {
	switch {
	case c.cfg.TokenEndpointAuthMethod != "":
		return c.cfg.TokenEndpointAuthMethod
	case c.cfg.ClientSecret == "":
		return AuthMethodNone
	}
	supported := d.as.TokenEndpointAuthMethodsSupported
	if !slices.Contains(supported, AuthMethodClientSecretBasic) && slices.Contains(supported, AuthMethodClientSecretPost) {
		return AuthMethodClientSecretPost
	}
	// RFC 8414 §2: client_secret_basic is the default when unlisted.
	return AuthMethodClientSecretBasic
}

// credentialsFor returns the credentials rec was issued to, for refreshing
// it.
func (c *Client) credentialsFor(ctx context.Context, rec *tokenRecord) (*clientRecord, error) {
	switch {
	case c.cfg.ClientID != "" && rec.ClientID == c.cfg.ClientID:
		return &clientRecord{
			Issuer: rec.Issuer, ClientID: c.cfg.ClientID, ClientSecret: c.cfg.ClientSecret,
			AuthMethod: rec.ClientAuth, source: sourcePreRegistered,
		}, nil
	case c.cfg.ClientMetadataURL != "" && rec.ClientID == c.cfg.ClientMetadataURL:
		return &clientRecord{
			Issuer: rec.Issuer, ClientID: rec.ClientID, AuthMethod: AuthMethodNone, source: sourceMetadataDoc,
		}, nil
	}
	cl, err := c.storedClient(ctx, rec.Issuer)
	if err != nil {
		return nil, err
	}
	if cl == nil || cl.ClientID != rec.ClientID {
		return nil, errRegistrationGone
	}
	return cl, nil
}

// storedClient returns the dynamic registration with issuer, from memory
// or the Store; nil if there is none.
func (c *Client) storedClient(ctx context.Context, issuer string) (*clientRecord, error) {
	c.reg.mu.Lock()
	cl := c.reg.clients[issuer]
	c.reg.mu.Unlock()
	if cl != nil {
		return cl, nil
	}
	var rec clientRecord
	ok, err := c.loadJSON(ctx, c.clientKey(issuer), &rec)
	if err != nil || !ok {
		return nil, err
	}
	if rec.Version != recordVersion || rec.Issuer != issuer || rec.ClientID == "" {
		return nil, nil
	}
	rec.source = sourceDynamic
	c.reg.mu.Lock()
	c.reg.clients[issuer] = &rec
	c.reg.mu.Unlock()
	return &rec, nil
}

// dynamicClient returns the stored registration with the authorization
// server, registering (RFC 7591) if there is none usable.
func (c *Client) dynamicClient(ctx context.Context, d *discovery) (*clientRecord, error) {
	c.reg.regMu.Lock()
	defer c.reg.regMu.Unlock()
	cl, err := c.storedClient(ctx, d.issuer)
	if err != nil {
		return nil, err
	}
	if cl != nil && cl.RedirectURI == c.cfg.RedirectURI &&
		(cl.SecretExpiresAt.IsZero() || c.now().Before(cl.SecretExpiresAt)) {
		return cl, nil
	}
	if c.cfg.Grant != GrantAuthorizationCode {
		return nil, fmt.Errorf("oauth: authorization server %s: %w", d.issuer, errNoRegistration)
	}
	if d.as.RegistrationEndpoint == "" {
		return nil, fmt.Errorf("oauth: authorization server %s: %w", d.issuer, errNoRegistration)
	}
	cl, err = c.register(ctx, d)
	if err != nil {
		return nil, err
	}
	c.persistM.Lock()
	err = c.storeJSON(context.WithoutCancel(ctx), c.clientKey(d.issuer), cl)
	c.persistM.Unlock()
	if err != nil {
		// Usable for now; the next start registers again.
		c.logger().Warn("cannot store the OAuth client registration", zap.Error(err))
	}
	c.reg.mu.Lock()
	c.reg.clients[d.issuer] = cl
	c.reg.mu.Unlock()
	return cl, nil
}

// registrationRequest is the RFC 7591 client metadata sent.
type registrationRequest struct {
	ClientName              string   `json:"client_name"`
	RedirectURIs            []string `json:"redirect_uris"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	ApplicationType         string   `json:"application_type"`
}

// registrationResponse is the RFC 7591 answer, the fields used.
type registrationResponse struct {
	ClientID                string `json:"client_id"`
	ClientSecret            string `json:"client_secret"`
	ClientSecretExpiresAt   int64  `json:"client_secret_expires_at"`
	TokenEndpointAuthMethod string `json:"token_endpoint_auth_method"`
}

// register performs dynamic client registration.
func (c *Client) register(ctx context.Context, d *discovery) (*clientRecord, error) {
	wrap := func(err error) error {
		return fmt.Errorf("oauth: authorization server %s: dynamic client registration: %w", d.issuer, err)
	}
	method := c.cfg.TokenEndpointAuthMethod
	if method == "" || method == AuthMethodPrivateKeyJWT {
		method = registrationMethod(d.as.TokenEndpointAuthMethodsSupported)
	}
	reqBody := registrationRequest{
		ClientName:              c.cfg.ClientName,
		RedirectURIs:            []string{c.cfg.RedirectURI},
		GrantTypes:              []string{GrantAuthorizationCode, "refresh_token"},
		ResponseTypes:           []string{"code"},
		TokenEndpointAuthMethod: method,
		ApplicationType:         applicationType(c.cfg.RedirectURI),
	}
	b, err := json.Marshal(reqBody)
	if err != nil {
		return nil, wrap(err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.as.RegistrationEndpoint, bytes.NewReader(b))
	if err != nil {
		return nil, wrap(fmt.Errorf("%s: %w", redactURL(d.as.RegistrationEndpoint), err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, wrap(redactErr(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, wrap(fmt.Errorf("reading the answer: %w", err))
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return nil, wrap(errorResponse("registration", resp.StatusCode, body, nil))
	}
	var rr registrationResponse
	if err := json.Unmarshal(body, &rr); err != nil || rr.ClientID == "" {
		return nil, wrap(errors.New("the answer has no client_id"))
	}
	cl := &clientRecord{
		Version:      recordVersion,
		Issuer:       d.issuer,
		ClientID:     rr.ClientID,
		ClientSecret: rr.ClientSecret,
		AuthMethod:   rr.TokenEndpointAuthMethod,
		RedirectURI:  c.cfg.RedirectURI,
		RegisteredAt: c.now(),
		source:       sourceDynamic,
	}
	if rr.ClientSecretExpiresAt > 0 {
		cl.SecretExpiresAt = time.Unix(rr.ClientSecretExpiresAt, 0)
	}
	switch {
	case cl.AuthMethod != "":
	case cl.ClientSecret == "":
		cl.AuthMethod = AuthMethodNone
	case method == AuthMethodNone:
		cl.AuthMethod = AuthMethodClientSecretBasic
	default:
		cl.AuthMethod = method
	}
	if cl.AuthMethod != AuthMethodNone && cl.ClientSecret == "" ||
		!slices.Contains([]string{AuthMethodNone, AuthMethodClientSecretBasic, AuthMethodClientSecretPost}, cl.AuthMethod) {
		return nil, wrap(fmt.Errorf("unusable token_endpoint_auth_method %q", scrub(cl.AuthMethod)))
	}
	c.logger().Info("registered an OAuth client",
		zap.String("issuer", d.issuer), zap.String("client_id", cl.ClientID),
		zap.String("token_endpoint_auth_method", cl.AuthMethod), zap.String("application_type", reqBody.ApplicationType))
	return cl, nil
}

// registrationMethod picks the token endpoint authentication method to
// register with: the first of client_secret_basic, client_secret_post and
// none the server supports; client_secret_basic, the RFC 8414 default,
// when it does not say.
func registrationMethod(supported []string) string {
	if len(supported) == 0 {
		return AuthMethodClientSecretBasic
	}
	for _, m := range []string{AuthMethodClientSecretBasic, AuthMethodClientSecretPost, AuthMethodNone} {
		if slices.Contains(supported, m) {
			return m
		}
	}
	return AuthMethodClientSecretBasic
}

// applicationType is "native" for redirect URIs to loopback hosts or
// custom schemes, "web" otherwise (OpenID Connect Registration §2, as the
// MCP specification applies it).
func applicationType(redirect string) string {
	u, err := url.Parse(redirect)
	if err != nil {
		return "web"
	}
	switch u.Scheme {
	case "http", "https":
		if isLoopback(u.Hostname()) {
			return "native"
		}
		return "web"
	}
	return "native"
}

// forgetInvalidClient drops a dynamic registration the token endpoint
// answered invalid_client for, so that the next authorization registers
// again.
func (c *Client) forgetInvalidClient(ctx context.Context, er *ErrorResponse, cl *clientRecord) {
	if er.Code != "invalid_client" || cl.source != sourceDynamic {
		return
	}
	c.reg.mu.Lock()
	if c.reg.clients[cl.Issuer] == cl {
		delete(c.reg.clients, cl.Issuer)
	}
	c.reg.mu.Unlock()
	c.persistM.Lock()
	defer c.persistM.Unlock()
	if err := c.store.Delete(context.WithoutCancel(ctx), c.clientKey(cl.Issuer)); err != nil {
		c.logger().Warn("cannot delete the rejected OAuth client registration", zap.Error(err))
	}
	c.logger().Info("the authorization server no longer knows the registered client; it will register again",
		zap.String("issuer", cl.Issuer), zap.String("client_id", cl.ClientID))
}

// clientMetadataDocument is a Client ID Metadata Document: the metadata
// a registration sends, and the client's ID.
type clientMetadataDocument struct {
	ClientID string `json:"client_id"`
	registrationRequest
}

// ClientMetadata returns the Client ID Metadata Document to serve at
// Config.ClientMetadataURL (as application/json), or nil if that is not
// set.
func (c *Client) ClientMetadata() []byte { return clientMetadata(c.cfg) }

// clientMetadata is the Client ID Metadata Document of cfg, nil for none.
func clientMetadata(cfg Config) []byte {
	if cfg.ClientMetadataURL == "" || cfg.Grant != GrantAuthorizationCode {
		return nil
	}
	b, _ := json.Marshal(clientMetadataDocument{
		ClientID: cfg.ClientMetadataURL,
		registrationRequest: registrationRequest{
			ClientName:              cfg.ClientName,
			RedirectURIs:            []string{cfg.RedirectURI},
			GrantTypes:              []string{GrantAuthorizationCode, "refresh_token"},
			ResponseTypes:           []string{"code"},
			TokenEndpointAuthMethod: AuthMethodNone,
			ApplicationType:         applicationType(cfg.RedirectURI),
		},
	})
	return b
}

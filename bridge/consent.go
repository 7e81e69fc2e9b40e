package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"time"

	"go.uber.org/zap"
)

// Consent is the OAuth authorization of an upstream server that a user
// grants in a browser. The bridge serves it at <server>/oauth/authorize,
// which sends the browser to the authorization server, and
// <server>/oauth/callback, where the browser comes back. Package oauth's
// Client is one.
type Consent interface {
	// Authorize starts an authorization and returns the URL to send the
	// user's browser to.
	Authorize(ctx context.Context) (string, error)
	// Callback completes it with the query of the callback request.
	Callback(ctx context.Context, query url.Values) error
	// ClientMetadata is the client ID metadata document served at
	// <server>/oauth/client-metadata.json, nil for none.
	ClientMetadata() []byte
}

// The consent pages, below a server's base.
const (
	consentAuthorize = "/oauth/authorize"
	consentCallback  = "/oauth/callback"
	consentMetadata  = "/oauth/client-metadata.json"
)

// The cookie that ties a callback to the browser that started the flow.
const (
	flowCookieName = "mcpo_oauth_flow"
	flowCookieAge  = 10 * time.Minute // as long as a pending authorization
)

// flowCookie is the flow cookie with value, for path; a negative maxAge
// deletes it.
func flowCookie(r *http.Request, path, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: flowCookieName, Value: value, Path: path, MaxAge: maxAge,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode,
	}
}

// stateDigest is what the flow cookie holds of a state: enough to match
// it, nothing to replay.
func stateDigest(state string) string {
	sum := sha256.Sum256([]byte(state))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// serveClientMetadata serves the client ID metadata document. It is
// public: authorization servers fetch it.
func (b *Bridge) serveClientMetadata(w http.ResponseWriter, _ *http.Request, p *page, _ string) *httpError {
	name := p.server.cfg.Name
	doc := p.server.cfg.Consent.ClientMetadata()
	if doc == nil {
		return &httpError{Status: http.StatusNotFound, Detail: errorDetail{Server: name,
			Message: fmt.Sprintf("server %q has no client metadata document: set its oauth client_metadata_url", name)}}
	}
	w.Header().Set("Cache-Control", "max-age=300")
	writeJSON(w, http.StatusOK, doc)
	return nil
}

// serveAuthorize starts an authorization and sends the browser to the
// authorization server. It needs the admin key (or an API key).
//
// It sets a cookie, for the callback path only, holding a digest of the
// flow's state: the callback completes only the flow the same browser
// started, so an authorization URL that leaks cannot bind the server to
// whoever opens it.
func (b *Bridge) serveAuthorize(w http.ResponseWriter, r *http.Request, p *page, base string) *httpError {
	name := p.server.cfg.Name
	to, err := p.server.cfg.Consent.Authorize(r.Context())
	if err != nil {
		b.log.Error("cannot start the authorization of an MCP server", zap.String("server", name), zap.Error(err))
		return &httpError{Status: http.StatusBadGateway, Cause: err, Detail: errorDetail{Server: name,
			Message: fmt.Sprintf("server %q: cannot start the authorization: %v", name, err)}}
	}
	u, err := url.Parse(to)
	if err != nil || u.Query().Get("state") == "" {
		return &httpError{Status: http.StatusBadGateway, Detail: errorDetail{Server: name,
			Message: fmt.Sprintf("server %q: the authorization URL has no state", name)}}
	}
	http.SetCookie(w, flowCookie(r, base+consentCallback, stateDigest(u.Query().Get("state")), int(flowCookieAge/time.Second)))
	b.log.Info("authorization of an MCP server started", zap.String("server", name))
	http.Redirect(w, r, to, http.StatusFound)
	return nil
}

// serveCallback completes an authorization where the authorization
// server sends the browser back. It needs no key, as that redirect brings
// nothing else; it checks the flow's state against the cookie of the
// browser that started the flow.
func (b *Bridge) serveCallback(w http.ResponseWriter, r *http.Request, p *page, base string) *httpError {
	name := p.server.cfg.Name
	// The flow is over either way: the cookie goes.
	http.SetCookie(w, flowCookie(r, base+consentCallback, "", -1))
	if c, err := r.Cookie(flowCookieName); err != nil || c.Value != stateDigest(r.URL.Query().Get("state")) {
		b.log.Warn("OAuth callback without the cookie of the browser that started the authorization", zap.String("server", name))
		return &httpError{Status: http.StatusBadRequest, Detail: errorDetail{Server: name,
			Message: fmt.Sprintf("server %q: this authorization was not started in this browser (or its cookie was lost); start again at %s",
				name, consentAuthorize[1:])}}
	}
	if err := p.server.cfg.Consent.Callback(r.Context(), r.URL.Query()); err != nil {
		b.log.Warn("authorization of an MCP server failed", zap.String("server", name), zap.Error(err))
		return &httpError{Status: http.StatusBadRequest, Cause: err, Detail: errorDetail{Server: name,
			Message: fmt.Sprintf("server %q: the authorization failed: %v; start again at %s", name, err, consentAuthorize[1:])}}
	}
	b.log.Info("MCP server authorized", zap.String("server", name))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprintf(w, "<!doctype html><meta charset=utf-8><title>Authorized</title>"+
		"<p>The MCP server %s is authorized and connecting. You can close this page.</p>\n", html.EscapeString(name))
	return nil
}

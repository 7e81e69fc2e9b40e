package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
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

// The consent paths, below a server's base.
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

// consentRoute returns the server whose consent path rel is, if any, and
// which of the two it is.
func (b *Bridge) consentRoute(rel string) (*serverState, string) {
	var s *serverState
	rest := rel
	if b.cfg.Single {
		s = b.servers[b.cfg.Servers[0].Name]
	} else {
		name, r, ok := strings.Cut(strings.TrimPrefix(rel, "/"), "/")
		if !ok {
			return nil, ""
		}
		s, rest = b.servers[name], "/"+r
	}
	if s == nil || s.cfg.Consent == nil || (rest != consentAuthorize && rest != consentCallback && rest != consentMetadata) {
		return nil, ""
	}
	return s, rest
}

// serveConsent serves a consent path. The authorize path needs the admin
// key (or an API key); the callback path needs none, as the authorization
// server's redirect brings nothing else, and it checks the flow's state;
// the client metadata document is public.
//
// The authorize path sets a cookie, for the callback path only, holding a
// digest of the flow's state: the callback completes only the flow the
// same browser started, so an authorization URL that leaks cannot bind
// the server to whoever opens it.
func (b *Bridge) serveConsent(w http.ResponseWriter, r *http.Request, s *serverState, path, base string) {
	if !allow(w, r, methodsDoc) {
		return
	}
	name := s.cfg.Name
	if path == consentMetadata {
		// Public: authorization servers fetch it.
		doc := s.cfg.Consent.ClientMetadata()
		if doc == nil {
			writeError(w, http.StatusNotFound, errorDetail{Server: name,
				Message: fmt.Sprintf("server %q has no client metadata document: set its oauth client_metadata_url", name)})
			return
		}
		w.Header().Set("Cache-Control", "max-age=300")
		writeJSON(w, http.StatusOK, doc)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	if path == consentAuthorize {
		if !b.gate.admitAdmin(w, r) {
			return
		}
		to, err := s.cfg.Consent.Authorize(r.Context())
		if err != nil {
			b.log.Error("cannot start the authorization of an MCP server", zap.String("server", name), zap.Error(err))
			writeError(w, http.StatusBadGateway, errorDetail{Server: name,
				Message: fmt.Sprintf("server %q: cannot start the authorization: %v", name, err)})
			return
		}
		u, err := url.Parse(to)
		if err != nil || u.Query().Get("state") == "" {
			writeError(w, http.StatusBadGateway, errorDetail{Server: name,
				Message: fmt.Sprintf("server %q: the authorization URL has no state", name)})
			return
		}
		http.SetCookie(w, flowCookie(r, base+consentCallback, stateDigest(u.Query().Get("state")), int(flowCookieAge/time.Second)))
		b.log.Info("authorization of an MCP server started", zap.String("server", name))
		http.Redirect(w, r, to, http.StatusFound)
		return
	}
	// The flow is over either way: the cookie goes.
	http.SetCookie(w, flowCookie(r, base+consentCallback, "", -1))
	if c, err := r.Cookie(flowCookieName); err != nil || c.Value != stateDigest(r.URL.Query().Get("state")) {
		b.log.Warn("OAuth callback without the cookie of the browser that started the authorization", zap.String("server", name))
		writeError(w, http.StatusBadRequest, errorDetail{Server: name,
			Message: fmt.Sprintf("server %q: this authorization was not started in this browser (or its cookie was lost); start again at %s",
				name, consentAuthorize[1:])})
		return
	}
	if err := s.cfg.Consent.Callback(r.Context(), r.URL.Query()); err != nil {
		b.log.Warn("authorization of an MCP server failed", zap.String("server", name), zap.Error(err))
		writeError(w, http.StatusBadRequest, errorDetail{Server: name,
			Message: fmt.Sprintf("server %q: the authorization failed: %v; start again at %s", name, err, consentAuthorize[1:])})
		return
	}
	b.log.Info("MCP server authorized", zap.String("server", name))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprintf(w, "<!doctype html><meta charset=utf-8><title>Authorized</title>"+
		"<p>The MCP server %s is authorized and connecting. You can close this page.</p>\n", html.EscapeString(name))
}

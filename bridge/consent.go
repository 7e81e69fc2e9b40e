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

// UserConsent is a Consent each caller grants for themselves (per-user
// OAuth): the upstream account of whoever completes the authorization
// acts for one caller, not for the server as a whole.
//
// A call from a caller who has not authorized gets a link to the
// authorize page carrying a ticket that names the caller. The person
// opens it in a browser, which usually carries no identity of its own
// (Open WebUI's token is sent by Open WebUI, not by the browser): the
// page names the upstream and the caller the account will act for, and
// starts the authorization only when the person confirms with a POST
// from that page. So a link someone else made for themselves cannot
// silently link the victim's upstream account to the sender (login CSRF).
// A browser whose own request carries an identity (basic_auth or
// forward_auth in front) authorizes for that identity, which a ticket
// must then name too.
type UserConsent interface {
	Consent
	// Ticket returns the caller the ticket of an authorize link names, or
	// an error saying why the ticket is not valid (expired, made by
	// another process, altered), in words for the person holding it.
	Ticket(ticket string) (Identity, error)
	// NewTicket returns a ticket naming id, for a browser that carries
	// its own identity.
	NewTicket(id Identity) string
	// AuthorizeFor starts id's authorization and returns the URL to send
	// the browser to.
	AuthorizeFor(ctx context.Context, id Identity) (string, error)
	// Unlisted answers a call made while the server has no tool listing:
	// a *RefusedError for a caller ctx carries who has to authorize first
	// (with their link), or nil once something lists the tools.
	Unlisted(ctx context.Context) error
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

// The cookie that ties the confirmation of a per-user authorization to
// the page that asked for it: SameSite=Strict, so that a form another site
// posts comes without it.
const confirmCookieName = "mcpo_oauth_confirm"

// confirmCookie is the confirmation cookie with value, for path; a
// negative maxAge deletes it.
func confirmCookie(r *http.Request, path, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: confirmCookieName, Value: value, Path: path, MaxAge: maxAge,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
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
	if uc, ok := p.server.cfg.Consent.(UserConsent); ok {
		return b.serveUserAuthorize(w, r, p, base, uc)
	}
	to, err := p.server.cfg.Consent.Authorize(r.Context())
	if e := b.redirectToAuthorization(w, r, name, base, to, err, http.StatusFound); e != nil {
		return e
	}
	b.log.Info("authorization of an MCP server started", zap.String("server", name))
	return nil
}

// redirectToAuthorization sends the browser to to, the authorization URL
// that starting an authorization of server name gave (or failed with
// err), with the flow cookie of its state for the callback; status is the
// redirect's.
func (b *Bridge) redirectToAuthorization(w http.ResponseWriter, r *http.Request, name, base, to string, err error, status int) *httpError {
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
	http.Redirect(w, r, to, status)
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
	done := "The MCP server %s is authorized and connecting. You can close this page."
	if _, ok := p.server.cfg.Consent.(UserConsent); ok {
		done = "Your account is linked: the MCP server %s is authorized for you. You can close this page and call its tools again."
	}
	_, _ = fmt.Fprintf(w, "<!doctype html><meta charset=utf-8><title>Authorized</title><p>"+done+"</p>\n", html.EscapeString(name))
	return nil
}

// maxConfirmBody bounds the form of a confirmation.
const maxConfirmBody = 8 << 10

// serveUserAuthorize serves the authorize page of a server each caller
// authorizes for themselves (see UserConsent). GET shows, for the caller
// the link's ticket names (or the browser's own identity), a page naming
// the upstream and the caller, with a button that POSTs the confirmation
// back; the POST, from that page only (its SameSite=Strict cookie), starts
// the caller's authorization and sends the browser to the authorization
// server.
func (b *Bridge) serveUserAuthorize(w http.ResponseWriter, r *http.Request, p *page, base string, uc UserConsent) *httpError {
	name := p.server.cfg.Name
	refuse := func(status int, msg string) *httpError {
		return &httpError{Status: status, Detail: errorDetail{Server: name, Message: fmt.Sprintf("server %q: %s", name, msg)}}
	}
	ticket := r.URL.Query().Get("ticket")
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxConfirmBody)
		if err := r.ParseForm(); err != nil {
			return refuse(http.StatusBadRequest, "the confirmation is not a form")
		}
		ticket = r.PostForm.Get("ticket")
	}
	own, signedIn := IdentityFrom(r.Context())
	signedIn = signedIn && own.ID != ""
	var id Identity
	switch {
	case ticket != "":
		var err error
		if id, err = uc.Ticket(ticket); err != nil {
			return refuse(http.StatusBadRequest, fmt.Sprintf("this authorization link cannot be used: %v; call one of the server's tools again for a new link", err))
		}
		if signedIn && own.ID != id.ID {
			b.log.Warn("a per-user authorization link opened by another user than the one it names", zap.String("server", name))
			return refuse(http.StatusForbidden, "this authorization link was made for another user than the one signed in here")
		}
	case signedIn:
		id, ticket = own, uc.NewTicket(own)
	default:
		return refuse(http.StatusBadRequest, "this page links your own account to the server: open the link that a call of one of its tools "+
			"gave you (it carries a ticket naming you)")
	}
	path := base + consentAuthorize
	w.Header().Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodPost {
		http.SetCookie(w, confirmCookie(r, path, stateDigest(ticket), int(flowCookieAge/time.Second)))
		writeConfirmPage(w, name, p.server.cfg.Upstream.Status().Endpoint, id, ticket)
		return nil
	}
	c, err := r.Cookie(confirmCookieName)
	if site := r.Header.Get("Sec-Fetch-Site"); (site != "" && site != "same-origin") || err != nil || c.Value != stateDigest(ticket) {
		b.log.Warn("a per-user authorization confirmed from elsewhere than its confirmation page", zap.String("server", name))
		return refuse(http.StatusForbidden, "confirm on the page the authorization link opens, in the same browser")
	}
	to, err := uc.AuthorizeFor(r.Context(), id)
	http.SetCookie(w, confirmCookie(r, path, "", -1)) // confirmed, or to confirm again
	if e := b.redirectToAuthorization(w, r, name, base, to, err, http.StatusSeeOther); e != nil {
		return e
	}
	b.log.Info("a caller's authorization of an MCP server started", zap.String("server", name))
	return nil
}

// writeConfirmPage writes the page that asks the person to confirm whose
// account the server will act for.
func writeConfirmPage(w http.ResponseWriter, server, endpoint string, id Identity, ticket string) {
	who := []string{}
	for _, v := range []string{id.Name, id.Email} {
		if v != "" {
			who = append(who, html.EscapeString(v))
		}
	}
	who = append(who, "user ID "+html.EscapeString(id.ID))
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	w.WriteHeader(http.StatusOK)
	_, _ = fmt.Fprintf(w, `<!doctype html><meta charset=utf-8><title>Link your account to %[1]s</title>
<h1>Link your account to %[1]s</h1>
<p>You are about to sign in to the MCP server <b>%[1]s</b> (%[2]s) with your account there.
Its tools will then act with that account whenever this user calls them:</p>
<p><b>%[3]s</b></p>
<p>If this is not you, or you did not ask for this link yourself, close this page:
whoever sent it to you would act with your account.</p>
<form method=post><input type=hidden name=ticket value="%[4]s"><button type=submit>Link my account</button></form>
`, html.EscapeString(server), html.EscapeString(endpoint), strings.Join(who, ", "), html.EscapeString(ticket))
}

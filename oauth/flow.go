package oauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// pendingFlow is an authorization URL handed out, awaiting its callback.
type pendingFlow struct {
	created  time.Time
	verifier string // PKCE code_verifier
	d        *discovery
	client   *clientRecord
	scopes   []string
}

// Authorize starts an authorization-code flow and returns the URL to send
// the user's browser to. It runs discovery (using the server's latest
// challenge), registers the client if needed, and records the flow for
// Callback; it neither blocks on the user nor opens anything.
func (c *Client) Authorize(ctx context.Context) (string, error) {
	if c.cfg.Grant != GrantAuthorizationCode {
		return "", errors.New("oauth: Authorize: the client_credentials grant needs no user authorization")
	}
	c.ensureLoaded(ctx)
	if err := c.checkAttempts(); err != nil {
		c.setError(err)
		return "", err
	}
	ch := c.latestChallenge()
	d, err := c.discover(ctx, ch, true)
	if err != nil {
		c.setError(err)
		return "", err
	}
	cl, err := c.clientFor(ctx, d)
	if err != nil {
		c.setError(err)
		return "", err
	}
	scopes := c.selectScopes(d, ch, true)

	verifier := randomString()
	state := randomString()
	sum := sha256.Sum256([]byte(verifier))

	au, err := url.Parse(d.as.AuthorizationEndpoint)
	if err != nil {
		err = fmt.Errorf("oauth: authorization server %s: authorization_endpoint is not a URL", d.issuer)
		c.setError(err)
		return "", err
	}
	q := au.Query()
	q.Set("response_type", "code")
	q.Set("client_id", cl.ClientID)
	q.Set("redirect_uri", c.cfg.RedirectURI)
	q.Set("state", state)
	q.Set("code_challenge", base64.RawURLEncoding.EncodeToString(sum[:]))
	q.Set("code_challenge_method", "S256")
	q.Set("resource", d.resource)
	if len(scopes) > 0 {
		q.Set("scope", strings.Join(scopes, " "))
	}
	au.RawQuery = q.Encode()

	now := c.now()
	c.mu.Lock()
	c.purgeLocked(now)
	for len(c.pending) >= MaxPending {
		c.evictOldestLocked()
	}
	c.pending[state] = &pendingFlow{created: now, verifier: verifier, d: d, client: cl, scopes: scopes}
	notify := c.changedLocked()
	c.mu.Unlock()
	notify()

	c.logger().Info("OAuth authorization started; waiting for the user's consent",
		zap.String("issuer", d.issuer), zap.Strings("scopes", scopes),
		zap.String("client", cl.source), zap.String("resource", d.resource))
	return au.String(), nil
}

// checkAttempts enforces MaxAttempts.
func (c *Client) checkAttempts() error {
	n := c.unaccepted.Load()
	if n < MaxAttempts {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	until := c.lastAttempt.Add(AttemptsReset)
	if !c.now().Before(until) {
		c.unaccepted.Store(0)
		return nil
	}
	why := "the server refused the token"
	if ch := c.challenge; ch != nil {
		why = fmt.Sprintf("last answer HTTP %d", ch.status)
		if ch.err != "" {
			why += " " + scrub(ch.err)
		}
		if len(ch.scope) > 0 {
			why += fmt.Sprintf(", wanting scope %q", scrub(strings.Join(ch.scope, " ")))
		}
	}
	return fmt.Errorf("%w: the server refused the tokens of the last %d authorizations (%s); giving up until %s",
		ErrTooManyAttempts, n, why, until.UTC().Format(time.RFC3339))
}

// selectScopes returns the scopes to request: Config.Scopes, else the
// challenge's scope, else the PRM's scopes_supported, else none; with the
// scopes of a pending step-up added, and offline_access when the
// authorization server lists it (authorization-code grant only, and only
// when other scopes are requested: alone it would narrow the grant).
func (c *Client) selectScopes(d *discovery, ch *bearerChallenge, code bool) []string {
	var s []string
	switch {
	case len(c.cfg.Scopes) > 0:
		s = slices.Clone(c.cfg.Scopes)
	case ch != nil && len(ch.scope) > 0:
		s = slices.Clone(ch.scope)
	case d.prm != nil && len(d.prm.ScopesSupported) > 0:
		s = slices.Clone(d.prm.ScopesSupported)
	}
	c.mu.Lock()
	stepUp := slices.Clone(c.stepUp)
	c.mu.Unlock()
	if len(stepUp) > 0 {
		s = union(stepUp, s)
	}
	if !code {
		return s
	}
	const offline = "offline_access"
	if len(s) > 0 && slices.Contains(d.as.ScopesSupported, offline) && !slices.Contains(s, offline) {
		s = append(s, offline)
	}
	return s
}

// Callback completes the authorization started by Authorize, given the
// query of the request to the redirect URI. It checks state and (RFC 9207)
// iss before anything else, then exchanges the code for a token and stores
// it. An error from the authorization server is returned as an
// *ErrorResponse; an unknown or expired state as ErrUnknownState.
func (c *Client) Callback(ctx context.Context, query url.Values) error {
	c.ensureLoaded(ctx)
	state := query.Get("state")
	now := c.now()
	c.mu.Lock()
	c.purgeLocked(now)
	f := c.pending[state]
	if state == "" || f == nil {
		c.mu.Unlock()
		c.logger().Info("OAuth callback with an unknown or expired state")
		return ErrUnknownState
	}
	delete(c.pending, state) // one use only
	notify := c.changedLocked()
	c.mu.Unlock()
	notify()

	err := c.complete(ctx, f, query)
	if err != nil {
		c.logger().Warn("OAuth authorization failed", zap.String("issuer", f.d.issuer), zap.Error(err))
		c.setError(err)
	}
	return err
}

// complete checks the authorization response and exchanges its code.
func (c *Client) complete(ctx context.Context, f *pendingFlow, q url.Values) error {
	issuer := f.d.issuer
	// RFC 9207 §2.4: compare iss exactly, without normalization, before
	// acting on the response at all, error responses included.
	if iss, ok := q["iss"]; ok {
		if len(iss) != 1 || iss[0] != issuer {
			return fmt.Errorf("oauth: authorization server %s: authorization response: %w", issuer, errIssMismatch)
		}
	} else if f.d.as.IssParameterSupported {
		return fmt.Errorf("oauth: authorization server %s: authorization response: %w", issuer, errIssMissing)
	}
	if errCode := q.Get("error"); errCode != "" {
		return &ErrorResponse{
			Endpoint:    "authorization",
			Code:        scrub(errCode),
			Description: scrub(q.Get("error_description")),
		}
	}
	code := q.Get("code")
	if code == "" {
		return fmt.Errorf("oauth: authorization server %s: authorization response has no code", issuer)
	}
	form := url.Values{
		"grant_type":    {GrantAuthorizationCode},
		"code":          {code},
		"redirect_uri":  {c.cfg.RedirectURI},
		"code_verifier": {f.verifier},
		"resource":      {f.d.resource},
	}
	tr, err := c.tokenRequest(ctx, issuer, f.d.as.TokenEndpoint, f.client, form, code, f.verifier)
	if err != nil {
		var er *ErrorResponse
		if errors.As(err, &er) {
			c.forgetInvalidClient(ctx, er, f.client)
		}
		return err
	}
	rec := c.newRecord(tr, issuer, f.d.resource, f.d.as.TokenEndpoint, f.client, f.scopes)

	c.mu.Lock()
	c.lastAttempt = c.now()
	c.mu.Unlock()
	c.unaccepted.Add(1)
	if _, err := c.install(ctx, rec, true, nil); err != nil {
		// The token works; it will not survive a restart.
		c.logger().Warn("cannot store the OAuth token", zap.Error(err))
	}
	c.logger().Info("OAuth authorization completed",
		zap.String("issuer", issuer), zap.Strings("scopes", rec.scopes()),
		zap.Time("expires_at", rec.ExpiresAt), zap.Bool("refreshable", rec.RefreshToken != ""))
	return nil
}

// hasPendingLocked reports whether an unexpired flow awaits its callback.
func (c *Client) hasPendingLocked(now time.Time) bool {
	for _, f := range c.pending {
		if now.Sub(f.created) < PendingTTL {
			return true
		}
	}
	return false
}

// purgeLocked drops expired flows.
func (c *Client) purgeLocked(now time.Time) {
	for s, f := range c.pending {
		if now.Sub(f.created) >= PendingTTL {
			delete(c.pending, s)
		}
	}
}

// evictOldestLocked drops the oldest flow.
func (c *Client) evictOldestLocked() {
	var oldest string
	var t time.Time
	for s, f := range c.pending {
		if oldest == "" || f.created.Before(t) {
			oldest, t = s, f.created
		}
	}
	delete(c.pending, oldest)
}

// randomString returns 256 random bits, base64url-encoded (43 characters,
// a valid PKCE code_verifier and state).
func randomString() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

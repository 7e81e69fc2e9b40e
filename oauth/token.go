package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// tokenResponse is a successful token endpoint answer (RFC 6749 §5.1).
type tokenResponse struct {
	AccessToken  string    `json:"access_token"`
	TokenType    string    `json:"token_type"`
	ExpiresIn    expiresIn `json:"expires_in"`
	RefreshToken string    `json:"refresh_token"`
	Scope        *string   `json:"scope"`
}

// expiresIn accepts a JSON number or a numeric string, as some servers
// send.
type expiresIn int64

func (e *expiresIn) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if s == "" || s == "null" {
		*e = 0
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return errors.New("expires_in is not a number")
	}
	*e = expiresIn(f)
	return nil
}

// errorBody is an OAuth error answer (RFC 6749 §5.2).
type errorBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// flight is a token refresh or fetch under way, shared by its callers.
type flight struct {
	done chan struct{}
	h    *heldToken
	err  error
}

// renew gets a new token without a user: with the refresh token of used
// (authorization-code grant) or with the client's credentials
// (client_credentials grant; used may be nil). One renewal runs at a time;
// concurrent callers wait for it and share its result. It returns a nil
// token with the error when renewal fails.
func (c *Client) renew(ctx context.Context, used *heldToken) (*heldToken, error) {
	c.mu.Lock()
	if cur := c.cur.Load(); cur != nil && cur != used && cur.fresh(c.now()) {
		c.mu.Unlock()
		return cur, nil // renewed by someone else meanwhile
	}
	if f := c.flight; f != nil {
		c.mu.Unlock()
		select {
		case <-f.done:
			return f.h, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f := &flight{done: make(chan struct{})}
	c.flight = f
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.flight = nil
		c.mu.Unlock()
		close(f.done)
	}()

	// The renewal serves every waiter: it does not end with the context
	// of the caller that happened to start it.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultHTTPTimeout)
	defer cancel()
	if c.cfg.Grant == GrantClientCredentials {
		f.h, f.err = c.fetchClientCredentials(rctx)
	} else {
		f.h, f.err = c.refresh(rctx, used)
	}
	return f.h, f.err
}

// refresh uses the refresh token of used.
func (c *Client) refresh(ctx context.Context, used *heldToken) (*heldToken, error) {
	if used == nil || used.rec.RefreshToken == "" {
		return nil, c.needsAuth()
	}
	if h := c.adoptStored(ctx, used); h != nil {
		return h, nil
	}
	rec := used.rec
	cl, err := c.credentialsFor(ctx, rec)
	if errors.Is(err, errRegistrationGone) {
		c.drop(used, "its client registration is gone")
		return nil, &NeedsAuthorizationError{Reason: err.Error()}
	}
	if err != nil {
		c.setError(err)
		return nil, err
	}
	form := url.Values{
		"grant_type":    {"refresh_token"},
		"refresh_token": {rec.RefreshToken},
		"resource":      {rec.Resource},
	}
	tr, err := c.tokenRequest(ctx, rec.Issuer, rec.TokenEndpoint, cl, form, rec.RefreshToken)
	if err != nil {
		var er *ErrorResponse
		if errors.As(err, &er) && er.Status >= 400 && er.Status < 500 {
			// The authorization server refused: the refresh token (or
			// the client) is no longer valid, unless another instance
			// rotated it a moment ago and stored the new token.
			if h := c.adoptStored(ctx, used); h != nil {
				return h, nil
			}
			c.forgetInvalidClient(ctx, er, cl)
			c.drop(used, "the authorization server refused the refresh token ("+er.Code+")")
			c.setError(err)
			return nil, &NeedsAuthorizationError{Reason: err.Error()}
		}
		c.logger().Warn("cannot refresh the OAuth token", zap.String("issuer", rec.Issuer), zap.Error(err))
		c.setError(err)
		return nil, err
	}
	next := c.newRecord(tr, rec.Issuer, rec.Resource, rec.TokenEndpoint, cl, rec.Requested)
	if next.RefreshToken == "" {
		next.RefreshToken = rec.RefreshToken // not rotated
	}
	if tr.Scope == nil {
		next.Granted = rec.Granted
	}
	h, err := c.install(ctx, next, false, used)
	if err != nil {
		c.logger().Warn("cannot store the refreshed OAuth token", zap.Error(err))
	}
	c.logger().Debug("refreshed the OAuth token",
		zap.String("issuer", rec.Issuer), zap.Time("expires_at", next.ExpiresAt))
	return h, nil
}

// fetchClientCredentials gets a token with the client_credentials grant.
func (c *Client) fetchClientCredentials(ctx context.Context) (*heldToken, error) {
	ch := c.latestChallenge()
	d, err := c.discover(ctx, ch, false)
	if err != nil {
		c.setError(err)
		return nil, err
	}
	cl, err := c.clientFor(ctx, d)
	if err != nil {
		c.setError(err)
		return nil, err
	}
	scopes := c.selectScopes(d, ch, false)
	form := url.Values{"grant_type": {"client_credentials"}, "resource": {d.resource}}
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	tr, err := c.tokenRequest(ctx, d.issuer, d.as.TokenEndpoint, cl, form)
	if err != nil {
		c.logger().Warn("cannot get an OAuth token with the client_credentials grant",
			zap.String("issuer", d.issuer), zap.Error(err))
		c.setError(err)
		return nil, err
	}
	rec := c.newRecord(tr, d.issuer, d.resource, d.as.TokenEndpoint, cl, scopes)
	// Renewed with the credentials, never refreshed; never stored, so
	// install cannot fail.
	rec.RefreshToken = ""
	h, _ := c.install(ctx, rec, true, nil)
	c.logger().Info("got an OAuth token with the client_credentials grant",
		zap.String("issuer", d.issuer), zap.Strings("scopes", rec.scopes()), zap.Time("expires_at", rec.ExpiresAt))
	return h, nil
}

// newRecord builds the record of a token response.
func (c *Client) newRecord(tr *tokenResponse, issuer, resource, endpoint string, cl *clientRecord, requested []string) *tokenRecord {
	now := c.now()
	rec := &tokenRecord{
		Version:       recordVersion,
		Server:        c.canonicalServer,
		Issuer:        issuer,
		Resource:      resource,
		TokenEndpoint: endpoint,
		ClientID:      cl.ClientID,
		ClientAuth:    cl.AuthMethod,
		AccessToken:   tr.AccessToken,
		RefreshToken:  tr.RefreshToken,
		Requested:     slices.Clone(requested),
		Obtained:      now,
	}
	if tr.ExpiresIn > 0 {
		rec.ExpiresAt = now.Add(time.Duration(tr.ExpiresIn) * time.Second)
	}
	if tr.Scope != nil {
		rec.Granted = strings.Fields(*tr.Scope)
		if rec.Granted == nil {
			rec.Granted = []string{}
		}
	}
	return rec
}

// tokenRequest posts form to the token endpoint with the client's
// authentication. secrets are values in form that must not appear in
// errors (the client's own secrets are added).
func (c *Client) tokenRequest(ctx context.Context, issuer, endpoint string, cl *clientRecord, form url.Values, secrets ...string) (*tokenResponse, error) {
	grant := form.Get("grant_type")
	wrap := func(err error) error {
		return fmt.Errorf("oauth: authorization server %s: token request (%s): %w", issuer, grant, err)
	}
	var basic [2]string
	switch cl.AuthMethod {
	case AuthMethodClientSecretBasic:
		// RFC 6749 §2.3.1: form-encode both before Basic encoding.
		basic = [2]string{url.QueryEscape(cl.ClientID), url.QueryEscape(cl.ClientSecret)}
	case AuthMethodClientSecretPost:
		form.Set("client_id", cl.ClientID)
		form.Set("client_secret", cl.ClientSecret)
	case AuthMethodPrivateKeyJWT:
		if c.signer == nil {
			return nil, wrap(errors.New("private_key_jwt needs PrivateKeyPEM"))
		}
		a, err := c.signer.assertion(cl.ClientID, issuer, c.now())
		if err != nil {
			return nil, wrap(err)
		}
		form.Set("client_id", cl.ClientID)
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		form.Set("client_assertion", a)
		secrets = append(secrets, a)
	default: // none
		form.Set("client_id", cl.ClientID)
	}
	secrets = append(secrets, cl.ClientSecret)

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, wrap(fmt.Errorf("%s: %w", redactURL(endpoint), err))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if basic[0] != "" {
		req.SetBasicAuth(basic[0], basic[1])
		secrets = append(secrets, strings.TrimPrefix(req.Header.Get("Authorization"), "Basic "))
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, wrap(redactErr(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, wrap(fmt.Errorf("reading the answer: %w", err))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, wrap(errorResponse("token", resp.StatusCode, body, secrets))
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		return nil, wrap(errors.New("the answer is not a JSON token response"))
	}
	if tr.AccessToken == "" {
		return nil, wrap(errors.New("the answer has no access_token"))
	}
	if tr.TokenType != "" && !strings.EqualFold(tr.TokenType, "Bearer") {
		return nil, wrap(fmt.Errorf("%w (it is %q)", errUnsupportedToken, scrub(tr.TokenType, tr.AccessToken)))
	}
	return &tr, nil
}

// errorResponse builds the error for a non-success answer.
func errorResponse(endpoint string, status int, body []byte, secrets []string) *ErrorResponse {
	er := &ErrorResponse{Endpoint: endpoint, Status: status}
	var eb errorBody
	if json.Unmarshal(body, &eb) == nil {
		er.Code = scrub(eb.Error, secrets...)
		er.Description = scrub(eb.ErrorDescription, secrets...)
	}
	return er
}

// latestChallenge returns a copy of the latest Bearer challenge, or nil;
// a user's client that has seen none takes the latest 401 challenge any
// user's client saw (see Users).
func (c *Client) latestChallenge() *bearerChallenge {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.challenge == nil {
		if c.users != nil {
			return c.users.latestChallenge()
		}
		return nil
	}
	ch := *c.challenge
	return &ch
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
	"github.com/caddy-mcpo/caddy-mcpo/oauth"
)

// The client's OAuth identity toward the suite's authorization servers.
const (
	// redirectURI is never contacted: the mock authorization server
	// redirects to it at once, and the command reads the redirect.
	redirectURI = "http://localhost:3000/callback"
	// clientMetadataURL is the Client ID Metadata Document URL the suite
	// expects (auth/basic-cimd); the mock never fetches it.
	clientMetadataURL = "https://conformance-test.local/client-metadata.json"
)

// maxConsents bounds the authorizations one scenario may drive, above
// oauth.MaxAttempts so that the OAuth client's own bound is what stops a
// server that never accepts a token.
const maxConsents = oauth.MaxAttempts + 1

// client is the product's MCP client layer set up for one scenario: an
// Upstream for the mock server and, for authorization scenarios, the OAuth
// client that authorizes it.
type client struct {
	cfg *config
	log *zap.Logger
	oc  *oauth.Client // nil without authorization
	up  *upstream.Upstream
	// hc follows authorization URLs, as a browser would.
	hc *http.Client

	consentMu sync.Mutex // one authorization at a time
	consents  int        // authorizations driven so far

	unrelatedCalled atomic.Bool // sep-2322-client-request-state
}

// newClient builds the Upstream (and OAuth client) for cfg; nothing runs
// until connect.
func newClient(cfg *config, log *zap.Logger) (*client, error) {
	c := &client{cfg: cfg, log: log, hc: &http.Client{Timeout: 10 * time.Second}}
	spec := upstream.Spec{
		Name:      "conformance",
		Transport: upstream.TransportStreamableHTTP,
		URL:       cfg.ServerURL,
		Protocol:  cfg.Protocol,
	}
	if needsAuth(cfg.Scenario) {
		oc, err := newOAuthClient(cfg, log)
		if err != nil {
			return nil, err
		}
		c.oc = oc
		spec.Auth = oc
		spec.AuthID = "conformance"
	}
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("upstream spec: %w", err)
	}
	c.up = upstream.New(spec, upstream.Options{
		StartTimeout: 15 * time.Second,
		Drain:        time.Second,
		Elicitation:  c.elicitationPolicy(),
	}, log)
	return c, nil
}

// elicitationPolicy is the proxy's elicitation policy for the scenarios
// that exercise elicitation, nil (the proxy's default: no elicitation
// capability) for the others.
func (c *client) elicitationPolicy() upstream.ElicitFunc {
	switch c.cfg.Scenario {
	case "elicitation-sep1034-client-defaults":
		return acceptDefaults
	case "sep-2322-client-request-state":
		return c.confirmMRTR
	}
	return nil
}

// acceptDefaults accepts every form as the server filled it in and
// declines URL elicitations: the upstream adds the defaults of the fields
// left out (SEP-1034).
func acceptDefaults(_ context.Context, e upstream.Elicitation) (upstream.ElicitationAnswer, error) {
	if e.Mode == "url" {
		return upstream.ElicitationAnswer{Action: upstream.ElicitDecline}, nil
	}
	return upstream.ElicitationAnswer{Action: upstream.ElicitAccept}, nil
}

// needsAuth reports the scenarios whose server is protected.
func needsAuth(scenario string) bool {
	return strings.HasPrefix(scenario, "auth/")
}

// clientCredentials reports the scenarios of the client_credentials
// extension.
func clientCredentials(scenario string) bool {
	return strings.HasPrefix(scenario, "auth/client-credentials-")
}

// newOAuthClient configures the OAuth client as an operator of the proxy
// would for this upstream.
func newOAuthClient(cfg *config, log *zap.Logger) (*oauth.Client, error) {
	ctx := cfg.Context
	oc := oauth.Config{
		ServerURL:         cfg.ServerURL,
		RedirectURI:       redirectURI,
		ClientMetadataURL: clientMetadataURL,
		ClientID:          ctx.ClientID,
		ClientSecret:      ctx.ClientSecret,
		Issuer:            ctx.Issuer,
		ClientName:        "caddy-mcpo conformance client",
		Logger:            log.Named("oauth"),
	}
	if clientCredentials(cfg.Scenario) {
		oc.Grant = oauth.GrantClientCredentials
		oc.RedirectURI = ""
		oc.ClientMetadataURL = ""
		if ctx.PrivateKeyPEM != "" {
			oc.PrivateKeyPEM = ctx.PrivateKeyPEM
			oc.SigningAlgorithm = ctx.SigningAlgorithm
			oc.TokenEndpointAuthMethod = oauth.AuthMethodPrivateKeyJWT
		} else {
			oc.TokenEndpointAuthMethod = oauth.AuthMethodClientSecretBasic
		}
	}
	c, err := oauth.New(oc)
	if err != nil {
		return nil, fmt.Errorf("oauth client: %w", err)
	}
	return c, nil
}

// close stops the upstream.
func (c *client) close() {
	_ = c.up.Close()
}

// connect starts the upstream and waits until it is ready, consenting
// whenever it needs authorization.
func (c *client) connect(ctx context.Context) error {
	c.up.Start()
	for {
		changed := c.up.Changed()
		st := c.up.Status()
		switch st.State {
		case upstream.StateReady:
			c.log.Info("upstream ready",
				zap.String("protocol", st.Server.Protocol), zap.Int("tools", st.Tools))
			return nil
		case upstream.StateNeedsAuth:
			if err := c.consent(ctx); err != nil {
				return fmt.Errorf("upstream needs authorization (%s): %w", st.LastError, err)
			}
		case upstream.StateBackoff, upstream.StateFailed:
			if c.oc == nil || c.oc.Status().State != oauth.StateNeedsAuth {
				return fmt.Errorf("upstream failed to start: %s", st.LastError)
			}
			// The server refused the token for want of scopes (step-up):
			// consent again, then start at once.
			if err := c.consent(ctx); err != nil {
				return fmt.Errorf("upstream failed to start (%s): %w", st.LastError, err)
			}
			c.up.Restart()
		case upstream.StateStopped:
			return errors.New("upstream stopped")
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the upstream (%s, last error %q): %w", st.State, st.LastError, ctx.Err())
		}
	}
}

// consent does what a person does through the proxy's authorization
// routes: open the authorization URL, consent, and let the browser follow
// the redirect to the callback. The suite's authorization server redirects
// at once, so following the URL is the consent.
func (c *client) consent(ctx context.Context) error {
	if c.oc == nil {
		return errors.New("the server wants authorization, but none is configured")
	}
	c.consentMu.Lock()
	defer c.consentMu.Unlock()
	if c.consents >= maxConsents {
		return fmt.Errorf("gave up after %d authorizations", c.consents)
	}
	c.consents++
	authURL, err := c.oc.Authorize(ctx)
	if err != nil {
		return fmt.Errorf("starting authorization: %w", err)
	}
	query, err := followRedirect(ctx, c.hc, authURL)
	if err != nil {
		return fmt.Errorf("following the authorization URL: %w", err)
	}
	if err := c.oc.Callback(ctx, query); err != nil {
		return fmt.Errorf("authorization callback: %w", err)
	}
	st := c.oc.Status()
	c.log.Info("authorized", zap.Int("authorization", c.consents),
		zap.String("issuer", st.Issuer), zap.Strings("scopes", st.Scopes))
	return nil
}

// followRedirect does what the browser does with an authorization URL
// whose authorization server redirects at once: it GETs authURL with hc
// without following the redirect, and returns the query of the Location,
// the callback's parameters. Its errors leave out the URL, whose query the
// log does not need.
func followRedirect(ctx context.Context, hc *http.Client, authURL string) (url.Values, error) {
	noFollow := *hc
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	resp, err := noFollow.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	loc, err := resp.Location()
	if resp.StatusCode < 300 || resp.StatusCode > 399 || err != nil {
		return nil, fmt.Errorf("HTTP %d, not a redirect", resp.StatusCode)
	}
	return loc.Query(), nil
}

// callTool calls a tool as the proxy's REST route would, and after a
// refusal for want of scopes consents to the wider scopes and calls again,
// as the person using the proxy would.
func (c *client) callTool(ctx context.Context, name string, args json.RawMessage) (*upstream.CallResult, error) {
	for {
		res, err := c.up.CallTool(ctx, name, args)
		if err == nil {
			c.log.Info("tool called", zap.String("tool", name), zap.Bool("is_error", res.IsError),
				zap.String("text", firstText(res)))
			return res, nil
		}
		if c.oc == nil || c.oc.Status().State != oauth.StateNeedsAuth || ctx.Err() != nil {
			return nil, fmt.Errorf("calling %s: %w", name, err)
		}
		c.log.Info("the call needs authorization; consenting", zap.String("tool", name), zap.Error(err))
		if cerr := c.consent(ctx); cerr != nil {
			return nil, fmt.Errorf("calling %s: %w; then authorizing: %w", name, err, cerr)
		}
	}
}

// firstText returns the first text content of a result, for the log.
func firstText(res *upstream.CallResult) string {
	for _, c := range res.Content {
		if c.Type == "text" {
			return c.Text
		}
	}
	return ""
}

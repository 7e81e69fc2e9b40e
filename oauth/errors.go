package oauth

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// ErrNeedsAuthorization is matched (errors.Is) by every
// *NeedsAuthorizationError.
var ErrNeedsAuthorization = errors.New("oauth: authorization needed")

// NeedsAuthorizationError says that no usable token is held: a user has to
// authorize (Client.Authorize, then Client.Callback) before the upstream
// server can be used.
type NeedsAuthorizationError struct {
	// Reason says why, without secrets.
	Reason string
}

func (e *NeedsAuthorizationError) Error() string {
	if e.Reason == "" {
		return ErrNeedsAuthorization.Error()
	}
	return ErrNeedsAuthorization.Error() + ": " + e.Reason
}

// Is makes errors.Is(err, ErrNeedsAuthorization) true.
func (e *NeedsAuthorizationError) Is(target error) bool { return target == ErrNeedsAuthorization }

// NeedsUser says that only a user can resolve the error, by authorizing:
// waiting for that is right, retrying is not (see upstream.Authorizer).
func (e *NeedsAuthorizationError) NeedsUser() bool { return true }

// ErrUnknownState is returned by Client.Callback when the state parameter
// names no pending authorization: it was never handed out, was used
// already, or expired.
var ErrUnknownState = errors.New("oauth: unknown or expired authorization state")

// ErrTooManyAttempts is returned by Client.Authorize when the last
// authorizations were all refused by the server (for example, repeated
// insufficient_scope challenges); see MaxAttempts.
var ErrTooManyAttempts = errors.New("oauth: too many authorization attempts")

// ErrorResponse is an OAuth error answered by the authorization server,
// at the authorization endpoint (through the redirect) or at the token or
// registration endpoint.
type ErrorResponse struct {
	// Endpoint is "authorization", "token" or "registration".
	Endpoint string
	// Status is the HTTP status (0 for the authorization endpoint).
	Status int
	// Code is the error code, such as "invalid_grant" or "access_denied".
	Code string
	// Description is the server's error_description, cleaned of control
	// characters and of any secret this client sent.
	Description string
}

func (e *ErrorResponse) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "oauth: %s endpoint: ", e.Endpoint)
	if e.Code != "" {
		b.WriteString(e.Code)
	} else {
		fmt.Fprintf(&b, "HTTP %d", e.Status)
	}
	if e.Description != "" {
		b.WriteString(": ")
		b.WriteString(e.Description)
	}
	return b.String()
}

// Errors for the discovery and flow checks; wrapped with context.
var (
	errResourceMismatch  = errors.New("protected resource metadata names another resource")
	errIssuerMismatch    = errors.New("metadata issuer differs from the issuer it was fetched for")
	errPKCEUnsupported   = errors.New("authorization server does not support PKCE with S256")
	errIssMismatch       = errors.New("iss parameter differs from the authorization server's issuer")
	errIssMissing        = errors.New("iss parameter missing, but the authorization server advertises it")
	errNoAuthServer      = errors.New("protected resource metadata names no authorization server")
	errInsecureURL       = errors.New("not an https URL (plain http is accepted for loopback hosts only)")
	errNoRegistration    = errors.New("no client credentials: nothing is pre-registered, no client metadata document URL applies, and the authorization server offers no dynamic registration")
	errUnsupportedToken  = errors.New("token type is not Bearer")
	errPreRegisteredElse = errors.New("the pre-registered client belongs to another authorization server")
	errRegistrationGone  = errors.New("the client registration the token was issued to is no longer known")
)

// redactURL returns u without user info, query and fragment, for errors and
// logs: authorization URLs and callbacks carry codes and states there.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		if i := strings.IndexAny(u, "?#"); i >= 0 {
			return u[:i]
		}
		return u
	}
	p.User = nil
	p.RawQuery = ""
	p.ForceQuery = false
	p.Fragment = ""
	p.RawFragment = ""
	return p.String()
}

// redactErr rewrites *url.Error values (which the http package returns,
// quoting the full URL) so that their URL loses its query.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return &url.Error{Op: ue.Op, URL: redactURL(ue.URL), Err: ue.Err}
	}
	return err
}

// scrub cleans text that came from a server for use in an error: it drops
// control characters, bounds the length, and replaces any of the secrets
// (values this client sent) that the server may have echoed.
func scrub(s string, secrets ...string) string {
	for _, sec := range secrets {
		if len(sec) < 4 {
			continue
		}
		// As sent, and as form-encoded (a server may echo the body).
		s = strings.ReplaceAll(s, sec, "[redacted]")
		if enc := url.QueryEscape(sec); enc != sec {
			s = strings.ReplaceAll(s, enc, "[redacted]")
		}
	}
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	const maxLen = 300
	if len(s) > maxLen {
		cut := maxLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return strings.TrimSpace(s)
}

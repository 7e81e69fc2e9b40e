package oauth

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"go.uber.org/zap"
)

// Transport returns an http.RoundTripper for requests to the upstream
// server, sending them through base (http.DefaultTransport if nil).
//
// While a token is held it sets "Authorization: Bearer <token>", replacing
// any Authorization header the request has, and refreshes the token first
// when it is within RefreshBefore of its expiry (one refresh at a time;
// concurrent requests wait for it). Without a token it sends the request
// without Authorization, so that the server's challenge is seen. It
// records every 401 and 403 Bearer challenge for the next Authorize; on a
// 401 to a request that carried a token it renews the token once and, if
// the request body can be replayed (req.GetBody), sends the request once
// more. A 403 insufficient_scope challenge makes the client need
// authorization with the union of the scopes requested so far and those
// challenged. The token never goes into a URL.
//
// With a valid token, the cost per request is one shallow copy of the
// request and its header map, and no lock.
func (c *Client) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &transport{c: c, base: base}
}

type transport struct {
	c    *Client
	base http.RoundTripper
}

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	c := t.c
	ctx := req.Context()
	c.ensureLoaded(ctx)
	h := c.cur.Load()
	if h == nil || !h.fresh(c.now()) {
		h, _ = c.usable(ctx) // failures are in Status; send what we have
		if h == nil && c.cfg.Grant == GrantClientCredentials && c.latestChallenge() != nil {
			h, _ = c.renew(ctx, nil)
		}
	}
	resp, err := t.send(req, h)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		c.refusals.Add(1)
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		c.observe(resp, h)
		if nh := c.afterUnauthorized(ctx, h); nh != nil {
			return t.replay(req, resp, nh)
		}
	case http.StatusForbidden:
		// A client acting for itself steps up at once: a token with the
		// wider scopes, and the request once more. Users step up through
		// Authorize.
		if c.observe(resp, h) && c.cfg.Grant == GrantClientCredentials {
			if nh, _ := c.renew(ctx, h); nh != nil && nh != h {
				return t.replay(req, resp, nh)
			}
		}
	default:
		if h != nil {
			c.accepted()
		}
	}
	return resp, nil
}

// replay sends req once more with nh, in place of the refused resp, if its
// body can be sent again; else it returns resp.
func (t *transport) replay(req *http.Request, resp *http.Response, nh *heldToken) (*http.Response, error) {
	c := t.c
	if !replayable(req) {
		return resp, nil
	}
	retry, err := rewind(req)
	if err != nil {
		return resp, nil
	}
	discard(resp)
	resp, err = t.send(retry, nh)
	if err != nil {
		return nil, err
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		c.observe(resp, nh)
		c.drop(nh, "the server refused a new token (HTTP 401)")
	case http.StatusForbidden:
		c.observe(resp, nh)
	default:
		c.accepted()
	}
	return resp, nil
}

// send sends req with h's token, or without Authorization if h is nil.
// RoundTrippers must not modify their request, so it is copied (shallowly,
// with its own header map) when a header changes.
func (t *transport) send(req *http.Request, h *heldToken) (*http.Response, error) {
	r := req
	switch {
	case h != nil && sameOrigin(req.URL, t.c.serverURL):
		r = shallowCopy(req)
		r.Header["Authorization"] = []string{h.header}
	case req.Header.Get("Authorization") != "":
		// Never pass on a credential that is not a token for this
		// server (no token passthrough), nor the token to another origin
		// (a redirect, an endpoint the server names elsewhere).
		r = shallowCopy(req)
		delete(r.Header, "Authorization")
	}
	return t.base.RoundTrip(r)
}

// Refusals counts the requests the server refused with 401 or 403 (before
// any renewal and replay), so that a caller can tell whether its request
// was among them.
func (c *Client) Refusals() uint64 { return c.refusals.Load() }

// sameOrigin reports whether a and b have the same scheme, host and port.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}

// port is a URL's port, the scheme's default when it has none.
func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

// shallowCopy copies req and its header map; the header values are
// shared, and must be replaced rather than modified.
func shallowCopy(req *http.Request) *http.Request {
	r := new(http.Request)
	*r = *req
	r.Header = make(http.Header, len(req.Header)+1)
	for k, v := range req.Header {
		r.Header[k] = v
	}
	return r
}

// replayable reports whether req can be sent again.
func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// rewind returns a copy of req with a fresh body.
func rewind(req *http.Request) (*http.Request, error) {
	r := new(http.Request)
	*r = *req
	if req.Body != nil && req.Body != http.NoBody {
		body, err := req.GetBody()
		if err != nil {
			return nil, err
		}
		r.Body = body
	}
	return r, nil
}

// discard drains a little of resp's body, so the connection can be reused,
// and closes it.
func discard(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
}

// accepted notes that the server accepted a token.
func (c *Client) accepted() {
	if c.unaccepted.Load() != 0 {
		c.unaccepted.Store(0)
	}
}

// observe records the Bearer challenge of a 401 or 403 answer to a request
// that carried h (nil: no token), and starts a step-up on
// insufficient_scope. It reports whether the step-up scopes grew.
func (c *Client) observe(resp *http.Response, h *heldToken) bool {
	ch, ok := findBearer(resp.Header, resp.StatusCode)
	if !ok {
		return false
	}
	if c.users != nil && resp.StatusCode == http.StatusUnauthorized {
		c.users.noteChallenge(ch)
	}
	c.mu.Lock()
	c.challenge = &ch
	// RFC 6750 §3.1 names the error; a 403 challenge that only lists
	// scopes is read the same way.
	stepUp := ch.err == "insufficient_scope" || (ch.err == "" && len(ch.scope) > 0)
	if resp.StatusCode != http.StatusForbidden || !stepUp {
		c.mu.Unlock()
		return false
	}
	var prev []string
	if h != nil {
		prev = h.rec.Requested
	}
	want := union(union(c.stepUp, prev), ch.scope)
	if slices.Equal(want, c.stepUp) || (h != nil && containsAll(h.rec.scopes(), want)) {
		// Nothing new to ask for: the server refuses scopes it was
		// already asked for (MaxAttempts bounds the retries).
		c.mu.Unlock()
		return false
	}
	c.stepUp = want
	c.lastErr = "the server needs more scopes (insufficient_scope); authorize again"
	notify := c.changedLocked()
	c.mu.Unlock()
	notify()
	c.logger().Info("the server answered insufficient_scope; authorization is needed for more scopes",
		zap.Strings("scopes", want))
	return true
}

// afterUnauthorized handles a 401 to a request that carried h: it returns
// the token to replay the request with (renewed, or already replaced by
// another request), or nil after dropping h.
func (c *Client) afterUnauthorized(ctx context.Context, h *heldToken) *heldToken {
	if h == nil {
		if cur := c.cur.Load(); cur != nil && cur.fresh(c.now()) {
			return cur // a token arrived meanwhile
		}
		if c.cfg.Grant == GrantClientCredentials {
			nh, _ := c.renew(ctx, nil)
			return nh
		}
		return nil
	}
	if cur := c.cur.Load(); cur != h {
		return cur // replaced meanwhile (nil if dropped)
	}
	if !c.canRenew(h) {
		c.drop(h, "the server refused it (HTTP 401)")
		return nil
	}
	nh, _ := c.renew(ctx, h)
	if nh == nil && c.cfg.Grant == GrantClientCredentials {
		c.drop(h, "the server refused it (HTTP 401) and no new one could be had")
	}
	// A refresh the authorization server refused has dropped the token
	// already. After a transient failure it is kept, with its refresh
	// token, so that the next request tries again.
	return nh
}

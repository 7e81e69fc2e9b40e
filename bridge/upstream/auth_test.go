//go:build unix

package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeAuth is an Authorizer whose token the test hands out.
type fakeAuth struct {
	mu       sync.Mutex
	token    string
	stepUp   bool  // a user must authorize more scopes, though the token works
	failing  error // an authorization server failing: no user can help
	checks   int   // calls of Authorized
	refusals atomic.Uint64
	changed  chan struct{}
}

// needUser is an error only a user resolves.
type needUser string

func (e needUser) Error() string   { return string(e) }
func (e needUser) NeedsUser() bool { return true }

func newFakeAuth() *fakeAuth { return &fakeAuth{changed: make(chan struct{})} }

func (a *fakeAuth) Transport(base http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if tok, _ := a.Token(r.Context()); tok != "" {
			r = r.Clone(r.Context())
			r.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := base.RoundTrip(r)
		if err == nil && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
			a.refusals.Add(1)
		}
		return resp, err
	})
}

func (a *fakeAuth) Refusals() uint64 { return a.refusals.Load() }

func (a *fakeAuth) Token(context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.token == "" {
		return "", needUser("no token: authorize first")
	}
	return a.token, nil
}

// Authorized answers like oauth.Client's: a failing authorization server
// signals a change of state each time it is asked, as a client recording
// its last error does.
func (a *fakeAuth) Authorized(ctx context.Context) error {
	a.mu.Lock()
	a.checks++
	if a.failing != nil {
		close(a.changed)
		a.changed = make(chan struct{})
		err := a.failing
		a.mu.Unlock()
		return err
	}
	a.mu.Unlock()
	if _, err := a.Token(ctx); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stepUp {
		return needUser("more scopes needed: authorize again")
	}
	return nil
}

func (a *fakeAuth) Changed() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.changed
}

// set changes the token ("" for none) and signals the change.
func (a *fakeAuth) set(token string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.token = token
	close(a.changed)
	a.changed = make(chan struct{})
}

// startAuthorized starts an Upstream for the modern server at url with
// auth as its Authorizer; the test's cleanup closes it.
func startAuthorized(t *testing.T, url string, auth Authorizer) *Upstream {
	t.Helper()
	spec := modernSpec(url)
	spec.Auth = auth
	log, _ := testLogger(t)
	u := New(spec, Options{StartTimeout: 5 * time.Second}, log)
	u.Start()
	t.Cleanup(func() { _ = u.Close() })
	return u
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// protected answers like modernAnswers to requests with the token "good",
// and 401 to others, after calling onRefused (if set).
func protected(onRefused func()) func(r rpcRequest) (int, any) {
	return func(r rpcRequest) (int, any) {
		if r.Header.Get("Authorization") != "Bearer good" {
			if onRefused != nil {
				onRefused()
			}
			return http.StatusUnauthorized, map[string]any{"error": "invalid_token"}
		}
		return modernAnswers(r)
	}
}

func TestUpstream_WaitsInNeedsAuthUntilTheAuthorizerHasCredentials(t *testing.T) {
	auth := newFakeAuth()
	srv := newRawServer(t, protected(nil))
	u := startAuthorized(t, srv.URL, auth)
	waitState(t, u, StateNeedsAuth)
	sent := len(srv.methods())

	// A change that brings no credentials (an authorization started) does
	// not start the server, which would only fail again.
	auth.set("")
	time.Sleep(200 * time.Millisecond)
	if st := u.Status(); st.State != StateNeedsAuth {
		t.Fatalf("state %s after a change without credentials, want %s", st.State, StateNeedsAuth)
	}
	if n := len(srv.methods()); n != sent {
		t.Errorf("the server got %d more requests after a change without credentials", n-sent)
	}

	auth.set("good")
	waitState(t, u, StateReady)
}

func TestUpstream_StartsAtOnceWhenAuthorizedDuringAFailedStart(t *testing.T) {
	auth := newFakeAuth()
	var once sync.Once
	// The user completes the authorization while the first start is under
	// way, just before the server refuses it for want of a token.
	srv := newRawServer(t, protected(func() { once.Do(func() { auth.set("good") }) }))
	begun := time.Now()
	u := startAuthorized(t, srv.URL, auth)
	st := waitState(t, u, StateReady)
	// A backoff would have taken at least backoffMin less its jitter.
	if took := time.Since(begun); took >= backoffMin*7/10 {
		t.Errorf("ready after %s: the start was not retried at once", took)
	}
	if st.Failures != 0 {
		t.Errorf("%d failures counted", st.Failures)
	}
}

func TestUpstream_WaitsInNeedsAuthWhenAStepUpIsPending(t *testing.T) {
	auth := newFakeAuth()
	auth.token, auth.stepUp = "scant", true
	// The server refuses the token it has (a 403 for more scopes would be
	// the same): the start fails, and the Authorizer wants a user.
	srv := newRawServer(t, protected(nil))
	u := startAuthorized(t, srv.URL, auth)
	st := waitState(t, u, StateNeedsAuth)
	if st.Failures != 0 {
		t.Errorf("%d failures counted: the server was retried with backoff instead of waiting", st.Failures)
	}
	auth.mu.Lock()
	auth.stepUp = false
	auth.mu.Unlock()
	auth.set("good")
	waitState(t, u, StateReady)
}

func TestUpstream_BacksOffWhenTheAuthorizationServerFails(t *testing.T) {
	auth := newFakeAuth()
	auth.failing = errors.New("token endpoint: HTTP 500")
	srv := newRawServer(t, protected(nil))
	u := startAuthorized(t, srv.URL, auth)
	time.Sleep(1500 * time.Millisecond)
	auth.mu.Lock()
	checks := auth.checks
	auth.mu.Unlock()
	// Starts back off from one second; a loop on the Authorizer's own
	// change signal would have asked thousands of times.
	if checks > 5 {
		t.Errorf("the authorizer was asked %d times in 1.5 s", checks)
	}
	if st := u.Status(); st.State != StateBackoff && st.State != StateStarting {
		t.Errorf("state %s, want backoff (retried with backoff)", st.State)
	}
}

func TestUpstream_ARequestRefusedForWantOfScopesWaitsForAUser(t *testing.T) {
	requests := map[string]func(ctx context.Context, u *Upstream) error{
		"tools/call": func(ctx context.Context, u *Upstream) error {
			_, err := u.CallTool(ctx, "add", json.RawMessage(`{}`))
			return err
		},
		"resources/read": func(ctx context.Context, u *Upstream) error {
			_, err := u.ReadResource(ctx, "test:r")
			return err
		},
	}
	for method, request := range requests {
		t.Run(method, func(t *testing.T) {
			auth := newFakeAuth()
			auth.token = "good"
			// The token serves the handshake and the listing; the request
			// wants more scopes.
			srv := newRawServer(t, func(r rpcRequest) (int, any) {
				if r.Method == method {
					return http.StatusForbidden, map[string]any{"error": "insufficient_scope"}
				}
				return protected(nil)(r)
			})
			u := startAuthorized(t, srv.URL, auth)
			waitState(t, u, StateReady)
			auth.mu.Lock()
			auth.stepUp = true // what the Authorizer learns from the 403
			auth.mu.Unlock()

			err := request(context.Background(), u)
			var un *UnavailableError
			if !errors.As(err, &un) || un.State != StateNeedsAuth {
				t.Fatalf("error %v, want an *UnavailableError in %s", err, StateNeedsAuth)
			}
			if st := u.Status(); st.State != StateReady {
				t.Errorf("state %s: a step-up ended the session, whose token still serves the rest", st.State)
			}
		})
	}
}

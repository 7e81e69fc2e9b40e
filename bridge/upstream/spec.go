package upstream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
)

// Transport names how an upstream MCP server is reached.
type Transport string

// The transports an upstream can use.
const (
	// TransportStdio runs the server as a child process speaking over its
	// standard input and output.
	TransportStdio Transport = "stdio"
	// TransportStreamableHTTP dials a Streamable HTTP endpoint.
	TransportStreamableHTTP Transport = "streamable_http"
	// TransportSSE dials a legacy HTTP+SSE endpoint (protocol 2024-11-05).
	TransportSSE Transport = "sse"
	// TransportAuto dials Streamable HTTP and falls back to HTTP+SSE when the
	// endpoint turns out to be a legacy SSE server.
	TransportAuto Transport = "auto"
)

// ParseTransport reads a transport name as users write it in configuration
// files: "stdio", "sse", "streamable_http" with its spellings
// "streamable-http", "streamablehttp" and "http", and "auto".
func ParseTransport(s string) (Transport, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "stdio":
		return TransportStdio, nil
	case "streamable_http", "streamable-http", "streamablehttp", "http":
		return TransportStreamableHTTP, nil
	case "sse":
		return TransportSSE, nil
	case "auto":
		return TransportAuto, nil
	}
	return "", fmt.Errorf("unknown transport %q: use stdio, streamable_http, sse or auto", s)
}

// The protocol choices besides an exact protocol version.
const (
	// ProtocolAuto lets the upstream pick the era: on stdio the legacy
	// initialize handshake is tried first (a silent legacy server would stall
	// a server/discover probe), falling back to the 2026-07-28 protocol when
	// the server refuses it; over HTTP the server/discover probe comes first.
	ProtocolAuto = "auto"
	// ProtocolLegacy pins the newest protocol version that uses the
	// initialize handshake (2025-11-25).
	ProtocolLegacy = "legacy"
	// ProtocolModern pins the stateless protocol (2026-07-28).
	ProtocolModern = "modern"
)

// ParseProtocol validates a protocol choice: "", "auto", "legacy", "modern"
// or an exact protocol version such as "2025-06-18".
func ParseProtocol(s string) (string, error) {
	switch s {
	case "", ProtocolAuto:
		return "", nil
	case ProtocolLegacy, ProtocolModern:
		return s, nil
	}
	if mcp.IsValidProtocolVersion(s) {
		return s, nil
	}
	return "", fmt.Errorf("unknown protocol %q: use auto, legacy, modern or one of %s",
		s, strings.Join(mcp.ValidProtocolVersions, ", "))
}

// Spec identifies an upstream MCP server: everything that decides which
// process runs or which endpoint is dialled. Upstreams with equal Specs are
// interchangeable, so a configuration reload that keeps a Spec keeps its
// running process; any change starts a fresh one.
//
// Every value is final: placeholders are resolved and Env is the child's
// complete environment.
type Spec struct {
	// Name names the server in logs and errors.
	Name      string    `json:"name"`
	Transport Transport `json:"transport"`

	// Command, Args, Env and Dir start a stdio server. Env holds KEY=VALUE
	// entries and is the child's whole environment.
	Command string   `json:"command,omitempty"`
	Args    []string `json:"args,omitempty"`
	Env     []string `json:"env,omitempty"`
	Dir     string   `json:"dir,omitempty"`

	// URL and Headers reach an HTTP server.
	URL     string            `json:"url,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`

	// Protocol is "", "legacy", "modern" or an exact protocol version.
	Protocol string `json:"protocol,omitempty"`

	// Limits bound a stdio server's process (Linux only); a change
	// starts a fresh process.
	Limits *Limits `json:"limits,omitempty"`

	// Auth authenticates the requests to an HTTP server, such as package
	// oauth's Client; nil sends Headers only. AuthID identifies its
	// configuration, so that Key tells configurations apart; it must hold
	// no secret in clear text.
	Auth   Authorizer `json:"-"`
	AuthID string     `json:"auth,omitempty"`
}

// Authorizer authenticates the requests to an HTTP server.
type Authorizer interface {
	// Transport wraps base so that each request carries credentials.
	Transport(base http.RoundTripper) http.RoundTripper
	// Authorized returns nil when requests can carry usable credentials,
	// or an error saying why not. An error with a method NeedsUser()
	// returning true means only a user can resolve it (by authorizing):
	// the Upstream waits in needs_auth. Others (an authorization server
	// failing) are retried with backoff like any failed start.
	Authorized(ctx context.Context) error
	// Refusals counts the requests the server refused for want of
	// credentials or scopes (401, 403).
	Refusals() uint64
	// Changed returns a channel closed at the next change of the
	// authorization.
	Changed() <-chan struct{}
}

// Key returns a stable digest of the Spec, suitable as a pool key. It holds
// no secret in clear text.
func (s Spec) Key() string {
	b, err := json.Marshal(s) // map keys are sorted, so equal Specs encode equally
	if err != nil {
		panic(fmt.Sprintf("upstream: encoding spec: %v", err)) // only strings, slices and maps
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Validate reports a Spec that cannot work whatever the environment.
func (s Spec) Validate() error {
	if s.Name == "" {
		return errors.New("server has no name")
	}
	switch s.Transport {
	case TransportStdio:
		if s.Command == "" {
			return errors.New("stdio server needs a command")
		}
		if s.URL != "" || len(s.Headers) > 0 {
			return errors.New("stdio server takes no url or headers")
		}
		if s.Auth != nil {
			return errors.New("stdio server takes no HTTP authorization: give it credentials through its environment")
		}
		if err := s.Limits.Validate(); err != nil {
			return err
		}
	case TransportStreamableHTTP, TransportSSE, TransportAuto:
		if s.URL == "" {
			return fmt.Errorf("%s server needs a url", s.Transport)
		}
		if s.Command != "" || len(s.Args) > 0 || s.Dir != "" {
			return fmt.Errorf("%s server takes no command, args or dir", s.Transport)
		}
		if s.Limits != nil {
			return fmt.Errorf("%s server takes no limits: they bound a stdio server's process", s.Transport)
		}
		u, err := url.Parse(s.URL)
		if err != nil {
			return fmt.Errorf("url: %w", err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return fmt.Errorf("url %q: scheme must be http or https", redactURL(u))
		}
		if u.Host == "" {
			return fmt.Errorf("url %q has no host", redactURL(u))
		}
	default:
		return fmt.Errorf("unknown transport %q", s.Transport)
	}
	if s.Transport == TransportSSE && pinnedModern(s.Protocol) {
		return errors.New("the sse transport only speaks the legacy protocol")
	}
	return nil
}

// redactURL returns u without user info or query, which may hold credentials.
func redactURL(u *url.URL) string {
	c := *u
	c.User = nil
	c.RawQuery = ""
	c.Fragment = ""
	return c.String()
}

// Endpoint describes where the server runs without revealing secrets: the
// command name for stdio, the URL without credentials or query otherwise.
func (s Spec) Endpoint() string {
	if s.Transport == TransportStdio {
		return s.Command
	}
	u, err := url.Parse(s.URL)
	if err != nil {
		return "(invalid url)"
	}
	return redactURL(u)
}

// redactor returns a function that removes the Spec's secrets (the URL's
// credentials and query, header values) from error messages.
func (s Spec) redactor() func(error) error {
	var pairs []string
	if s.URL != "" {
		if ep := s.Endpoint(); ep != s.URL {
			pairs = append(pairs, s.URL, ep)
		}
	}
	for _, v := range s.Headers {
		if len(v) >= 4 {
			pairs = append(pairs, v, "[redacted]")
		}
	}
	// An Authorizer's credentials change over time: it removes them
	// itself, from every message.
	authRedact := func(m string) string { return m }
	if r, ok := s.Auth.(interface{ Redact(string) string }); ok {
		authRedact = r.Redact
	} else if len(pairs) == 0 {
		return func(err error) error { return err }
	}
	r := strings.NewReplacer(pairs...)
	return func(err error) error {
		if err == nil {
			return nil
		}
		msg := err.Error()
		if red := authRedact(r.Replace(msg)); red != msg {
			return &redactedError{msg: red, err: err}
		}
		return err
	}
}

// redactedError is an error whose message had secrets removed; it still
// unwraps to the original for errors.Is and errors.As.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

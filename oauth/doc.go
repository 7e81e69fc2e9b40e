// Package oauth is the OAuth 2.1 client caddy-mcpo uses toward upstream MCP
// servers that are protected by the MCP authorization specification
// (revisions 2025-11-25 and 2026-07-28, with the 2025-03-26 fallbacks).
//
// It owns, for one upstream server:
//
//   - reading WWW-Authenticate challenges (RFC 6750, RFC 7235 syntax);
//   - discovery: protected-resource metadata (RFC 9728) and authorization
//     server metadata (RFC 8414 and OpenID Connect discovery), with the
//     resource and issuer checks the MCP specification requires;
//   - client registration: pre-registered credentials, Client ID Metadata
//     Documents, or dynamic client registration (RFC 7591), persisted and
//     keyed by the authorization server's issuer;
//   - the authorization-code flow with PKCE (S256), RFC 8707 resource
//     indicators and RFC 9207 issuer checks, as two non-blocking steps
//     (Client.Authorize hands out a URL, Client.Callback completes it) that
//     the proxy serves from its own routes: nothing here opens a browser or
//     listens on a port;
//   - the client_credentials grant for machine-to-machine upstreams, with
//     client_secret_basic, client_secret_post or private_key_jwt (RFC 7523);
//   - tokens: kept in a Store (Caddy's storage satisfies it) so that a
//     restarted proxy needs no new consent, refreshed before they expire,
//     and put on upstream requests by an http.RoundTripper
//     (Client.Transport) that also records every 401 and 403 challenge and
//     handles step-up authorization (insufficient_scope);
//   - per-user authorization (Users): one registration shared by every
//     user of a server, a Client and a token per user, stored under an
//     HMAC digest of the user's ID (never the ID), and revoked per user.
//
// The MCP client library (mcp-go) sees none of this: it gets an HTTP
// client whose transport adds the bearer token. The package has no Caddy
// imports, starts no goroutines, and never logs or returns secrets (client
// secrets, codes, verifiers, access and refresh tokens); URLs in errors lose
// their query strings.
//
// Token and registration requests are hand-written form posts rather than
// golang.org/x/oauth2: x/oauth2 cannot add the RFC 8707 resource parameter
// to refresh requests made by its TokenSource, has no private_key_jwt,
// guesses the client authentication style by trial and error (sending the
// secret twice), and hides the token endpoint's error body behind its own
// types. The requests themselves are a few lines each.
package oauth

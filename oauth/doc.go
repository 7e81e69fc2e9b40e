// Package oauth will own OAuth 2.1 toward upstream MCP servers: discovery of
// protected-resource and authorization-server metadata, client registration,
// the authorization-code flow with PKCE served from Caddy routes, and tokens
// kept in Caddy's storage. It holds no logic yet; until it does, upstream
// servers take static credentials through headers and environment variables.
package oauth

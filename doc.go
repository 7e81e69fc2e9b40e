// Package caddymcpo is a Caddy module that serves the tools of MCP (Model
// Context Protocol) servers as a REST API, with an OpenAPI 3.1 document and
// Swagger UI, for Open WebUI and any other OpenAPI tool client.
//
// The HTTP handler http.handlers.mcpo owns the MCP sessions (stdio,
// Streamable HTTP, HTTP+SSE); Caddy does TLS, subpaths, authentication,
// logging and reloads. Sessions are pooled by their configuration, so a
// reload keeps every server whose configuration did not change running.
// The bridge logic lives in the bridge packages, which do not depend on Caddy.
//
// The files of the package:
//
//   - module.go: the handler, http.handlers.mcpo: provisioning and serving.
//   - config.go: the configuration types below the handler, and Validate,
//     which holds every rule about a configuration as written.
//   - resolve.go: placeholders resolved when a configuration loads, and
//     the rules only resolved values tell.
//   - identity.go: the caller's identity: where it comes from, and how a
//     request's is established before the bridge sees the request
//     (package internal/identity verifies Open WebUI's token).
//   - directives.go, caddyfile.go: the Caddyfile directive, read through
//     one table of subdirectives.
//   - configfile.go: Claude Desktop / mcpo configuration files.
//   - pool.go: the running servers, shared by the configurations that use
//     them; app.go: the app that starts a configuration's servers.
//   - sessions.go: a server with a session per caller (isolation user):
//     each caller's session, started on their first call, stopped when
//     idle, at most max_sessions, and the server's one tool listing.
//   - useroauth.go: such a server with oauth, which each caller authorizes
//     for themselves: their tokens (package oauth's Users), the tickets of
//     their authorize links, and the listing kept in storage.
//   - admin.go, metrics.go: the admin API and the Prometheus metrics.
//   - storage.go: brings in caddy.storage.mcpo_redis (package
//     storage/redisstorage), Caddy's storage on Redis, for several Caddy
//     instances sharing their OAuth tokens and tool listings.
package caddymcpo

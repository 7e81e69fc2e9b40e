// Package integration runs caddy-mcpo end to end: a real Caddy, started in
// the test process from Caddyfiles, in front of real MCP servers (the Go
// fixtures, and servers from npm and PyPI installed by `make test`).
package integration

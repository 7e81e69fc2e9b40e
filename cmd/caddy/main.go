// Command caddy is Caddy with its standard modules and caddy-mcpo.
//
// Build it with "go build ./cmd/caddy". It is the same Caddy that
// "xcaddy build --with github.com/caddy-mcpo/caddy-mcpo" produces.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	// Caddy's standard modules.
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	// The mcpo handler and app.
	_ "github.com/caddy-mcpo/caddy-mcpo"
)

func main() {
	caddycmd.Main()
}

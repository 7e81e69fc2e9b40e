package caddymcpo

import (
	"sync"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(new(App))
}

// App starts the MCP servers of the running configuration. Handlers add it
// to the configuration themselves and register the servers they lease
// from the pool with it while they are provisioned; Start then launches
// them in the background. Nothing starts during `caddy validate`, which
// provisions but never starts apps.
//
// Servers outlive the App: they belong to the pool, shared across
// configurations, which stops those no configuration uses any more.
type App struct {
	mu      sync.Mutex
	started bool
	leases  []*lease
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "mcpo",
		New: func() caddy.Module { return new(App) },
	}
}

// register adds a leased server to start with the configuration, or starts
// it at once when the configuration already runs.
func (a *App) register(l *lease) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started {
		l.start()
		return
	}
	a.leases = append(a.leases, l)
}

// Start starts every registered server in the background, handing those
// that already run over to this configuration.
func (a *App) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.started = true
	for _, l := range a.leases {
		l.start()
	}
	a.leases = nil
	return nil
}

// Stop waits, when Caddy exits, for the servers still stopping in the
// background after earlier reloads. Servers in use are stopped by the pool
// when the last configuration using them is cleaned up.
func (a *App) Stop() error {
	if caddy.Exiting() {
		shared.wait()
	}
	return nil
}

// Interface guards.
var _ caddy.App = (*App)(nil)

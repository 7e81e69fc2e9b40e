package caddymcpo

import (
	"context"
	"sync"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(new(App))
	// When Caddy exits, it stops the apps, then cleans up the modules:
	// handlers release their servers then, and the pool stops them all at
	// once, in the background. Caddy runs its exit callbacks after that.
	caddy.OnExit(func(context.Context) { shared.wait() })
}

// App starts the MCP servers of the running configuration. Handlers add it
// to the configuration themselves and register the servers they lease
// from the pool with it while they are provisioned; Start then launches
// them in the background. Nothing starts during `caddy validate`, which
// provisions but never starts apps.
//
// Servers outlive the App: they belong to the pool, shared across
// configurations, which stops those no configuration uses any more. When
// Caddy exits, the process waits for them to stop (see init).
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

// Stop does nothing: the next configuration takes over the servers it
// keeps, and the pool stops the others as handlers release them, which
// Caddy has them do after it stopped the apps.
func (a *App) Stop() error { return nil }

// Interface guards.
var _ caddy.App = (*App)(nil)

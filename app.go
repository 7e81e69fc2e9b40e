package caddymcpo

import (
	"sync"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

func init() {
	caddy.RegisterModule(new(App))
}

// App starts the MCP servers of the running configuration. Handlers add it
// to the configuration themselves and register their servers with it while
// they are provisioned; Start then launches them in the background. Nothing
// starts during `caddy validate`, which provisions but never starts apps.
//
// Servers outlive the App: they belong to a pool shared across
// configurations, and the handlers' Cleanup stops the ones no longer used.
type App struct {
	mu        sync.Mutex
	started   bool
	upstreams []*upstream.Upstream
	handovers []func()
}

// CaddyModule returns the Caddy module information.
func (*App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "mcpo",
		New: func() caddy.Module { return new(App) },
	}
}

// register adds an upstream to start with the configuration. Starting an
// upstream that already runs (handed over from the previous configuration)
// does nothing; handover, if not nil, gives such an upstream this
// configuration's logger, options and storage when the configuration
// starts, not before: a configuration that fails to load leaves running
// servers as the previous one set them.
func (a *App) register(u *upstream.Upstream, handover func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started {
		if handover != nil {
			handover()
		}
		u.Start()
		return
	}
	a.upstreams = append(a.upstreams, u)
	if handover != nil {
		a.handovers = append(a.handovers, handover)
	}
}

// Start hands running upstreams over to this configuration and starts
// every registered upstream in the background.
func (a *App) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.started = true
	for _, h := range a.handovers {
		h()
	}
	for _, u := range a.upstreams {
		u.Start()
	}
	a.upstreams, a.handovers = nil, nil
	return nil
}

// Stop waits, when Caddy exits, for the servers still stopping in the
// background after earlier reloads. Servers in use are stopped by the pool
// when the last configuration using them is cleaned up.
func (a *App) Stop() error {
	if caddy.Exiting() {
		closing.Wait()
	}
	return nil
}

// Interface guards.
var _ caddy.App = (*App)(nil)

package main

import (
	"context"
	"fmt"
	"image/color"
	"strings"
)

// The paths (legs) by name, as -paths and results.json name them.
const (
	pathDirect = "direct"
	// pathFloor is bench/floor: the least a bridge must do, no Caddy.
	pathFloor = "floor"
	// pathRespond is Caddy answering the echo route with a static
	// respond: Caddy's own cost per request.
	pathRespond = "caddy-respond"
	// pathRespondFace is the same for the echo call of the MCP face: its
	// request and answer, as the plain-POST 2025-11-25 leg sends and
	// gets them, answered by a static respond: Caddy's own cost per
	// request of that shape.
	pathRespondFace = "caddy-respond-mcp"
	pathCaddy       = "caddy-mcpo"
	// pathModern is caddy-mcpo pinned to the 2026-07-28 protocol
	// (protocol modern), on the echo server only.
	pathModern = "caddy-mcpo-2026"
	// pathFace and pathFaceModern are caddy-mcpo's MCP face, <mount>/mcp,
	// called by mcp-go clients of the 2025-11-25 and of the 2026-07-28
	// protocol, in front of the same servers as pathCaddy.
	pathFace       = "caddy-mcpo-mcp"
	pathFaceModern = "caddy-mcpo-mcp-2026"
	// pathFacePost and pathFacePostModern are the same face called with
	// plain POSTs of prepared messages, as the REST legs call theirs.
	pathFacePost       = "caddy-mcpo-mcp-post"
	pathFacePostModern = "caddy-mcpo-mcp-2026-post"
	pathMcpo           = "mcpo"
)

// leg is one way to call the upstreams: how the harness opens it, and how
// the report shows it. The report knows the legs by these fields alone.
type leg struct {
	name  string // in -paths and results.json
	label string // in the tables and the chart; the name when empty
	color color.Color
	// direct is a leg with no proxy process: its cost is the client's and
	// the upstream's, and it has no proxy memory.
	direct bool
	// againstFloor puts the leg in the table against the floor, with the
	// targets against it: the REST face on each protocol era.
	againstFloor bool
	// rest names the REST leg an MCP face leg is measured against, in the
	// table of the MCP face and its target.
	rest string
	// open starts the leg.
	open func(ctx context.Context, e *env) (path, error)
}

// legs are every leg, in run and report order.
var legs = []leg{
	{name: pathDirect, color: color.RGBA{R: 120, G: 120, B: 120, A: 255}, direct: true,
		open: func(ctx context.Context, e *env) (path, error) { return e.openDirect(ctx) }},
	{name: pathFloor, color: color.RGBA{R: 40, G: 40, B: 200, A: 255},
		open: func(ctx context.Context, e *env) (path, error) { return e.startFloor(ctx) }},
	{name: pathRespond, color: color.RGBA{R: 180, G: 180, B: 180, A: 255},
		open: func(ctx context.Context, e *env) (path, error) { return e.startRespond(ctx) }},
	{name: pathRespondFace, label: "caddy-respond (/mcp)", color: color.RGBA{R: 210, G: 180, B: 220, A: 255},
		open: func(ctx context.Context, e *env) (path, error) { return e.startRespondFace(ctx) }},
	{name: pathCaddy, color: color.RGBA{R: 0, G: 150, B: 136, A: 255}, againstFloor: true,
		open: func(ctx context.Context, e *env) (path, error) { return e.startCaddyMcpo(ctx, "caddy") }},
	{name: pathModern, color: color.RGBA{R: 0, G: 90, B: 80, A: 255}, againstFloor: true,
		open: func(ctx context.Context, e *env) (path, error) { return e.startCaddyModern(ctx) }},
	{name: pathFace, label: "caddy-mcpo /mcp (2025-11-25)", color: color.RGBA{R: 150, G: 60, B: 190, A: 255}, rest: pathCaddy,
		open: func(ctx context.Context, e *env) (path, error) { return e.startFace(ctx, "caddy-mcp", legacyProtocol) }},
	{name: pathFaceModern, label: "caddy-mcpo /mcp (2026-07-28)", color: color.RGBA{R: 220, G: 60, B: 120, A: 255}, rest: pathCaddy,
		open: func(ctx context.Context, e *env) (path, error) {
			return e.startFace(ctx, "caddy-mcp-2026", modernProtocol)
		}},
	{name: pathFacePost, label: "caddy-mcpo /mcp (2025-11-25, plain POST)", color: color.RGBA{R: 110, G: 30, B: 140, A: 255}, rest: pathCaddy,
		open: func(ctx context.Context, e *env) (path, error) {
			return e.startPostFace(ctx, "caddy-mcp-post", legacyProtocol)
		}},
	{name: pathFacePostModern, label: "caddy-mcpo /mcp (2026-07-28, plain POST)", color: color.RGBA{R: 170, G: 30, B: 80, A: 255}, rest: pathCaddy,
		open: func(ctx context.Context, e *env) (path, error) {
			return e.startPostFace(ctx, "caddy-mcp-2026-post", modernProtocol)
		}},
	{name: pathMcpo, color: color.RGBA{R: 230, G: 120, B: 0, A: 255},
		open: func(ctx context.Context, e *env) (path, error) {
			return e.startMcpo(ctx, "mcpo", map[string]any{
				"echo": map[string]any{"command": e.echoBin},
				"time": map[string]any{"command": e.timeArgv[0], "args": e.timeArgv[1:]},
			})
		}},
}

// legNames are the legs' names, in order.
func legNames() []string {
	names := make([]string, len(legs))
	for i, l := range legs {
		names[i] = l.name
	}
	return names
}

// legOf finds a leg by name.
func legOf(name string) (leg, bool) {
	for _, l := range legs {
		if l.name == name {
			return l, true
		}
	}
	return leg{}, false
}

// label is how the report names a leg.
func label(name string) string {
	if l, ok := legOf(name); ok && l.label != "" {
		return l.label
	}
	return name
}

// labels are label of each name.
func labels(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = label(n)
	}
	return out
}

// open starts a leg by name.
func (e *env) open(ctx context.Context, name string) (path, error) {
	l, ok := legOf(name)
	if !ok {
		return nil, fmt.Errorf("unknown path %q (the paths: %s)", name, strings.Join(legNames(), ", "))
	}
	return l.open(ctx, e)
}

// legFor is the leg of a name; an unknown one (from an older results.json)
// is a proxy leg of no particular kind.
func legFor(name string) leg {
	l, _ := legOf(name)
	return l
}

// floorLegs are the legs measured against the floor, in order.
func floorLegs() []string {
	var out []string
	for _, l := range legs {
		if l.againstFloor {
			out = append(out, l.name)
		}
	}
	return out
}

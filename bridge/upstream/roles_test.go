//go:build unix

package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mark3labs/mcp-go/server"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// roleEnv makes the test binary play a role other than the fixture's when
// TestMain starts: a faulty server, or Caddy itself.
const roleEnv = "CADDY_MCPO_UPSTREAM_TEST_ROLE"

// roles are what the test binary can play, by the value of roleEnv.
var roles = map[string]func(){
	"stubborn": serveStubborn,
}

// playRole plays the role roleEnv names, if any, and exits.
func playRole() {
	role, ok := os.LookupEnv(roleEnv)
	if !ok {
		return
	}
	play, ok := roles[role]
	if !ok {
		fmt.Fprintf(os.Stderr, "unknown %s %q\n", roleEnv, role)
		os.Exit(2)
	}
	play()
	os.Exit(0)
}

// roleCommand returns the command and environment that run the test binary
// in a role.
func roleCommand(role string) (command string, args, env []string) {
	command, err := os.Executable()
	if err != nil {
		command = os.Args[0]
	}
	env = append(os.Environ(), roleEnv+"="+role)
	if _, set := os.LookupEnv("GORACE"); !set {
		env = append(env, "GORACE=atexit_sleep_ms=0")
	}
	return command, []string{"-test.run=^$"}, env
}

func roleSpec(name, role string) Spec {
	cmd, args, env := roleCommand(role)
	return Spec{Name: name, Transport: TransportStdio, Command: cmd, Args: args, Env: env}
}

// serveStubborn serves the fixture over stdio, and ignores both the end of
// its stdin and SIGTERM: only SIGKILL ends it (or two minutes, so that a
// failed test leaves nothing behind for long).
func serveStubborn() {
	signal.Ignore(syscall.SIGTERM)
	_ = server.NewStdioServer(fixture.New(fixture.Options{})).Listen(context.Background(), os.Stdin, os.Stdout)
	time.Sleep(2 * time.Minute)
}

// callWithin calls tool with args within waitLimit.
func callWithin(u *Upstream, tool, args string) (*CallResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	return u.CallTool(ctx, tool, json.RawMessage(args))
}

//go:build unix

package upstream

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
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
	"deaf":     serveDeaf,
	"slowping": serveSlowPing,
	"exit":     func() { os.Exit(3) },
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

// serveDeaf serves the fixture over stdio until it reads a ping, then
// stops reading its stdin and answering, as a deadlocked server would
// (for two minutes at most, so that a failed test leaves nothing behind
// for long).
func serveDeaf() {
	r, w := io.Pipe()
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			if bytes.Contains(sc.Bytes(), []byte(`"method":"ping"`)) {
				time.Sleep(2 * time.Minute)
				os.Exit(0)
			}
			if _, err := w.Write(append(sc.Bytes(), '\n')); err != nil {
				return
			}
		}
		w.Close()
	}()
	_ = server.NewStdioServer(fixture.New(fixture.Options{})).Listen(context.Background(), r, os.Stdout)
}

// serveSlowPing serves the fixture over stdio, answering each ping a
// second late and everything else at once, as a server working through a
// queue does.
func serveSlowPing() {
	r, w := io.Pipe()
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			line := append(bytes.Clone(sc.Bytes()), '\n')
			if bytes.Contains(line, []byte(`"method":"ping"`)) {
				time.AfterFunc(time.Second, func() { _, _ = w.Write(line) })
				continue
			}
			if _, err := w.Write(line); err != nil {
				return
			}
		}
		w.Close()
	}()
	_ = server.NewStdioServer(fixture.New(fixture.Options{})).Listen(context.Background(), r, os.Stdout)
}

// callWithin calls tool with args within waitLimit.
func callWithin(u *Upstream, tool, args string) (*CallResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	return u.CallTool(ctx, tool, json.RawMessage(args))
}

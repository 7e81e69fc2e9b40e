// Command mcpo-conformance is caddy-mcpo's client under test for the MCP
// conformance suite (@modelcontextprotocol/conformance, `conformance client`).
//
// It speaks to the suite's mock servers through the same code the Caddy
// module uses toward real upstream servers: an upstream.Upstream for the
// server's URL (Streamable HTTP) and, for the authorization scenarios, an
// oauth.Client as its Authorizer. Where the proxy would wait for a person to
// consent in a browser (the upstream in needs_auth, the authorization URL
// shown on the proxy's routes), the command follows the authorization URL
// itself and hands the redirect's query to the callback, as the browser
// would.
//
// The runner's contract:
//
//   - the server URL is the last argument;
//   - MCP_CONFORMANCE_SCENARIO names the scenario;
//   - MCP_CONFORMANCE_CONTEXT is a JSON object with scenario data
//     (pre-registered credentials, tool calls);
//   - MCP_CONFORMANCE_PROTOCOL_VERSION, when set, is the protocol revision to
//     speak, which pins the era (upstream.Spec.Protocol);
//   - exit status 0 when the scenario ran to its end, non-zero otherwise,
//     always within the runner's 30 s per-scenario timeout; logs go to
//     stderr.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// deadline bounds a whole scenario, under the runner's 30 s timeout.
const deadline = 25 * time.Second

func main() {
	os.Exit(run())
}

func run() int {
	log := newLogger(os.Getenv("MCPO_CONFORMANCE_DEBUG") != "")
	defer func() { _ = log.Sync() }()

	cfg, err := configFromEnv(os.Args[1:], os.Getenv)
	if err != nil {
		log.Error("bad invocation", zap.Error(err))
		fmt.Fprintln(os.Stderr, "usage: MCP_CONFORMANCE_SCENARIO=name [MCP_CONFORMANCE_CONTEXT=json] [MCP_CONFORMANCE_PROTOCOL_VERSION=v] mcpo-conformance <server-url>")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()

	log = log.With(zap.String("scenario", cfg.Scenario))
	log.Info("scenario starting", zap.String("url", cfg.ServerURL), zap.String("protocol", cfg.Protocol))
	begun := time.Now()
	if err := runScenario(ctx, cfg, log); err != nil {
		log.Error("scenario failed", zap.Error(err), zap.Duration("took", time.Since(begun)))
		return 1
	}
	log.Info("scenario done", zap.Duration("took", time.Since(begun)))
	return 0
}

// newLogger logs to stderr, which the runner keeps as stderr.txt.
func newLogger(debug bool) *zap.Logger {
	enc := zap.NewDevelopmentEncoderConfig()
	enc.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
	level := zapcore.InfoLevel
	if debug {
		level = zapcore.DebugLevel
	}
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.Lock(os.Stderr), level)
	return zap.New(core)
}

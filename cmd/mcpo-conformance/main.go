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

package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestGate_PassesUntilShutAndShuttingWaitsForTheCallUnderWay(t *testing.T) {
	var g gate
	ran := 0
	g.pass(func() { ran++ })
	if ran != 1 {
		t.Fatalf("an open gate ran %d calls, want 1", ran)
	}

	inside, release := make(chan struct{}), make(chan struct{})
	go g.pass(func() { close(inside); <-release })
	<-inside
	shut := make(chan struct{})
	go func() { g.close(); close(shut) }()
	select {
	case <-shut:
		t.Fatal("close returned while a call was under way")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	select {
	case <-shut:
	case <-time.After(5 * time.Second):
		t.Fatal("close did not return once the call under way had")
	}

	g.pass(func() { ran++ })
	if ran != 1 {
		t.Error("a shut gate ran a call")
	}
}

func TestGatedHandler_LogsNothingOnceItsGateIsShut(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	d := &dialer{log: func() *zap.Logger { return zap.New(core) }}
	s := &session{}
	l := d.slog(s).With("k", "v").WithGroup("grp")
	l.Info("before")
	s.callbacks.close()
	l.Info("after")
	l.Log(context.Background(), slog.LevelError, "after, as an error")
	if got := logs.All(); len(got) != 1 || got[0].Message != "before" {
		t.Errorf("logged %v, want only the line before the gate shut", got)
	}
}

func TestGatedLog_LogsAtTheLevelsOfTheCoresUnderneathUntilTheGateIsShut(t *testing.T) {
	info, infoLogs := observer.New(zapcore.InfoLevel)
	debug, debugLogs := observer.New(zapcore.DebugLevel)
	s := &session{}
	log := s.gatedLog(func() *zap.Logger { return zap.New(zapcore.NewTee(info, debug)) })
	log().Debug("below the first core's level")
	log().With(zap.String("server", "x")).Info("while open")
	s.callbacks.close()
	log().Info("once shut")
	messages := func(logs *observer.ObservedLogs) (out []string) {
		for _, e := range logs.AllUntimed() {
			out = append(out, e.Message+" "+fmt.Sprint(e.ContextMap()))
		}
		return out
	}
	if got, want := messages(infoLogs), []string{"while open map[server:x]"}; !slices.Equal(got, want) {
		t.Errorf("the info core got %q, want %q", got, want)
	}
	if got, want := messages(debugLogs), []string{"below the first core's level map[]", "while open map[server:x]"}; !slices.Equal(got, want) {
		t.Errorf("the debug core got %q, want %q", got, want)
	}
}

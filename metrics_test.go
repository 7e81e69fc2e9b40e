package caddymcpo

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// exposition scrapes registry the way Caddy's metrics endpoints do and
// returns the text exposition. A collection error fails the test, as it
// fails a real scrape.
func exposition(t *testing.T, registry *prometheus.Registry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(registry, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != 200 {
		t.Fatalf("scraping: %d %s", rec.Code, body)
	}
	return string(body)
}

// serverNames numbers the server names of uniqueServerName.
var serverNames atomic.Int32

// uniqueServerName returns a server name no other test, or run of a test,
// uses: the call metrics belong to the process.
func uniqueServerName(base string) string {
	return fmt.Sprintf("%s-%d", base, serverNames.Add(1))
}

// checkLines fails the test for every line of want missing from text.
func checkLines(t *testing.T, text string, want ...string) {
	t.Helper()
	have := map[string]bool{}
	for _, l := range strings.Split(text, "\n") {
		have[l] = true
	}
	for _, l := range want {
		if !have[l] {
			t.Errorf("missing line %s", l)
		}
	}
	if t.Failed() {
		t.Logf("exposition:\n%s", text)
	}
}

func TestCallObserverCountsCallsByOutcome(t *testing.T) {
	// The metrics are the package's own, shared by every test and run:
	// each case uses a server name of its own.
	type event struct {
		start   bool // CallStarted, or else CallFinished
		tool    string
		outcome bridge.Outcome
		took    time.Duration
	}
	tests := []struct {
		name     string
		events   []event
		calls    map[[2]string]float64 // by tool and outcome
		inFlight float64
		observed map[string]int // durations recorded, by tool
	}{
		{
			name: "finished calls count by outcome and leave nothing in flight",
			events: []event{
				{start: true, tool: "add"}, {tool: "add", outcome: bridge.OutcomeOK, took: time.Millisecond},
				{start: true, tool: "add"}, {tool: "add", outcome: bridge.OutcomeInvalidArguments, took: time.Millisecond},
				{start: true, tool: "fail"}, {tool: "fail", outcome: bridge.OutcomeToolError, took: time.Second},
			},
			calls: map[[2]string]float64{
				{"add", "ok"}: 1, {"add", "invalid_arguments"}: 1, {"fail", "tool_error"}: 1, {"add", "tool_error"}: 0,
			},
			observed: map[string]int{"add": 2, "fail": 1},
		},
		{
			name: "calls under way are in flight",
			events: []event{
				{start: true, tool: "slow"}, {start: true, tool: "slow"}, {start: true, tool: "add"},
				{tool: "slow", outcome: bridge.OutcomeTimeout, took: time.Minute},
			},
			calls:    map[[2]string]float64{{"slow", "timeout"}: 1},
			inFlight: 2,
			observed: map[string]int{"slow": 1, "add": 0},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			server := uniqueServerName("observer")
			o := callObserver{}
			for _, e := range tc.events {
				if e.start {
					o.CallStarted(server, e.tool)
				} else {
					o.CallFinished(server, e.tool, e.outcome, e.took)
				}
			}
			for k, want := range tc.calls {
				if got := testutil.ToFloat64(metrics.calls.WithLabelValues(server, k[0], k[1], "rest")); got != want {
					t.Errorf("calls{tool=%q,outcome=%q} = %v, want %v", k[0], k[1], got, want)
				}
			}
			if got := testutil.ToFloat64(metrics.inFlight.WithLabelValues(server)); got != tc.inFlight {
				t.Errorf("in flight = %v, want %v", got, tc.inFlight)
			}
			registry := prometheus.NewPedanticRegistry()
			if err := registerMetrics(registry); err != nil {
				t.Fatal(err)
			}
			text := exposition(t, registry)
			for tool, n := range tc.observed {
				line := `caddy_mcpo_call_duration_seconds_count{face="rest",server="` + server + `",tool="` + tool + `"} `
				if n == 0 {
					if strings.Contains(text, line) {
						t.Errorf("a duration was recorded for tool %q", tool)
					}
					continue
				}
				checkLines(t, text, line+strconv.Itoa(n))
			}
		})
	}
}

func TestCallDurationsFallInTheirBuckets(t *testing.T) {
	server := uniqueServerName("buckets")
	o := callObserver{}
	for _, d := range []time.Duration{3 * time.Millisecond, 700 * time.Millisecond, 4 * time.Minute, 6 * time.Minute} {
		o.CallStarted(server, "t")
		o.CallFinished(server, "t", bridge.OutcomeOK, d)
	}
	registry := prometheus.NewPedanticRegistry()
	if err := registerMetrics(registry); err != nil {
		t.Fatal(err)
	}
	checkLines(t, exposition(t, registry),
		`caddy_mcpo_call_duration_seconds_bucket{face="rest",server="`+server+`",tool="t",le="0.005"} 1`,
		`caddy_mcpo_call_duration_seconds_bucket{face="rest",server="`+server+`",tool="t",le="0.5"} 1`,
		`caddy_mcpo_call_duration_seconds_bucket{face="rest",server="`+server+`",tool="t",le="1"} 2`,
		`caddy_mcpo_call_duration_seconds_bucket{face="rest",server="`+server+`",tool="t",le="120"} 2`,
		`caddy_mcpo_call_duration_seconds_bucket{face="rest",server="`+server+`",tool="t",le="300"} 3`,
		`caddy_mcpo_call_duration_seconds_bucket{face="rest",server="`+server+`",tool="t",le="+Inf"} 4`,
		`caddy_mcpo_call_duration_seconds_count{face="rest",server="`+server+`",tool="t"} 4`,
	)
}

func TestMetricsCarryOverToTheNextConfigurationsRegistry(t *testing.T) {
	// Caddy gives each configuration a registry of its own, which the
	// configuration's mcpo handlers each register the metrics in.
	first, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	for range 2 { // two handlers of one configuration
		if err := registerMetrics(first.GetMetricsRegistry()); err != nil {
			t.Fatalf("registering in the first configuration: %v", err)
		}
	}
	server := uniqueServerName("reloaded")
	o := callObserver{}
	o.CallStarted(server, "add")
	o.CallFinished(server, "add", bridge.OutcomeOK, time.Millisecond)
	line := `caddy_mcpo_calls_total{face="rest",outcome="ok",server="` + server + `",tool="add"} 1`
	checkLines(t, exposition(t, first.GetMetricsRegistry()), line)

	second, cancel2 := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel2()
	if err := registerMetrics(second.GetMetricsRegistry()); err != nil {
		t.Fatalf("registering in the next configuration: %v", err)
	}
	checkLines(t, exposition(t, second.GetMetricsRegistry()), line)

	if err := registerMetrics(nil); err != nil {
		t.Errorf("registering in no registry: %v", err)
	}
}

func TestRegisteringOverSomeoneElsesMetricFails(t *testing.T) {
	registry := prometheus.NewPedanticRegistry()
	registry.MustRegister(prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy_mcpo", Name: "calls_total", Help: "Another module's.",
	}, []string{"server", "tool", "outcome"}))
	if err := registerMetrics(registry); err == nil || !strings.Contains(err.Error(), "mcpo metrics") {
		t.Errorf("registering over another collector: %v, want an error", err)
	}
}

func TestPoolCollectorReportsEveryServerEvenWithSharedNames(t *testing.T) {
	p := newTestPool(t)
	fx, fxID := p.add(fixtureSpec("fx", fixture.Options{}), true)
	_, dupA := p.add(upstream.Spec{Name: "dup", Transport: upstream.TransportStdio, Command: "never-started", Args: []string{"a"}}, false)
	_, dupB := p.add(upstream.Spec{Name: "dup", Transport: upstream.TransportStdio, Command: "never-started", Args: []string{"b"}}, false)
	waitStatus(t, fx, "ready", isReady)
	registry := prometheus.NewPedanticRegistry()
	registry.MustRegister(newPoolCollector(p.pool))

	tools := strconv.Itoa(len(fixture.ToolNames(fixture.Options{})))
	fxLabels := `{id="` + fxID + `",server="fx"`
	checkLines(t, exposition(t, registry),
		`caddy_mcpo_server_up`+fxLabels+`} 1`,
		`caddy_mcpo_server_up{id="`+dupA+`",server="dup"} 0`,
		`caddy_mcpo_server_up{id="`+dupB+`",server="dup"} 0`,
		`caddy_mcpo_server_state`+fxLabels+`,state="ready"} 1`,
		`caddy_mcpo_server_state`+fxLabels+`,state="idle"} 0`,
		`caddy_mcpo_server_state`+fxLabels+`,state="starting"} 0`,
		`caddy_mcpo_server_state`+fxLabels+`,state="backoff"} 0`,
		`caddy_mcpo_server_state`+fxLabels+`,state="failed"} 0`,
		`caddy_mcpo_server_state`+fxLabels+`,state="stopped"} 0`,
		`caddy_mcpo_server_state{id="`+dupA+`",server="dup",state="idle"} 1`,
		`caddy_mcpo_server_state{id="`+dupB+`",server="dup",state="ready"} 0`,
		`caddy_mcpo_server_restarts_total`+fxLabels+`} 0`,
		`caddy_mcpo_server_tools`+fxLabels+`} `+tools,
		`caddy_mcpo_server_tools{id="`+dupA+`",server="dup"} 0`,
		`# TYPE caddy_mcpo_server_restarts_total counter`,
	)

	fx.Restart()
	waitStatus(t, fx, "ready after a restart", func(st upstream.Status) bool {
		return st.State == upstream.StateReady && st.Restarts == 1
	})
	checkLines(t, exposition(t, registry), `caddy_mcpo_server_restarts_total`+fxLabels+`} 1`)
}

func TestPoolCollectorCountsSessionsNeverNamingTheCallers(t *testing.T) {
	p := newTestPool(t)
	l := p.leaseServer(perUserFixture(func(s *ServerConfig) { s.MaxSessions = 2 }), true)
	shared, sharedID := p.add(fixtureSpec("shared", fixture.Options{}), true)
	waitStatus(t, shared, "ready", isReady)
	listed(t, l)
	for _, id := range []string{"alice@example.com", "bob", "carol"} { // carol evicts alice
		pidAs(t, l, id)
	}
	l.entry.users.end("bob")
	registry := prometheus.NewPedanticRegistry()
	registry.MustRegister(newPoolCollector(p.pool))
	labels := `{id="` + l.entry.id + `",server="fx"`
	text := exposition(t, registry)
	checkLines(t, text,
		`caddy_mcpo_server_sessions`+labels+`} 1`,
		`caddy_mcpo_server_sessions_stopped_total{id="`+l.entry.id+`",reason="evicted",server="fx"} 1`,
		`caddy_mcpo_server_sessions_stopped_total{id="`+l.entry.id+`",reason="ended",server="fx"} 1`,
		`caddy_mcpo_server_sessions_stopped_total{id="`+l.entry.id+`",reason="idle",server="fx"} 0`,
		`caddy_mcpo_server_up`+labels+`} 1`,
		`# TYPE caddy_mcpo_server_sessions gauge`,
		`# TYPE caddy_mcpo_server_sessions_stopped_total counter`,
	)
	if strings.Contains(text, `caddy_mcpo_server_sessions{id="`+sharedID+`"`) {
		t.Error("a shared server reports sessions")
	}
	for _, id := range []string{"alice", "bob", "carol", sessionKey("carol")[:12]} {
		if strings.Contains(text, id) {
			t.Errorf("the metrics name the caller %q", id)
		}
	}
}

// BenchmarkCallObserver measures what the call metrics cost a call: a
// CallStarted and a CallFinished.
func BenchmarkCallObserver(b *testing.B) {
	o := callObserver{}
	b.ReportAllocs()
	for b.Loop() {
		o.CallStarted("bench", "echo")
		o.CallFinished("bench", "echo", bridge.OutcomeOK, time.Millisecond)
	}
}

func TestCallObserverCountsCallsFromManyGoroutinesAtOnce(t *testing.T) {
	server := uniqueServerName("parallel")
	o := callObserver{}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outcome := bridge.OutcomeOK
			if i%2 == 1 {
				outcome = bridge.OutcomeTimeout
			}
			for range 100 {
				o.CallStarted(server, "t")
				o.CallFinished(server, "t", outcome, time.Millisecond)
			}
		}()
	}
	wg.Wait()
	for _, outcome := range []string{"ok", "timeout"} {
		if got := testutil.ToFloat64(metrics.calls.WithLabelValues(server, "t", outcome, "rest")); got != 400 {
			t.Errorf("calls{outcome=%q} = %v, want 400", outcome, got)
		}
	}
	if got := testutil.ToFloat64(metrics.inFlight.WithLabelValues(server)); got != 0 {
		t.Errorf("in flight = %v, want 0", got)
	}
}

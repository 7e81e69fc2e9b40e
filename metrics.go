package caddymcpo

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// The module's Prometheus metrics, served with Caddy's own at the admin
// endpoint's /metrics and by the metrics handler.
//
// Caddy gives every configuration a new registry
// (caddy.Context.GetMetricsRegistry), so each configuration registers the
// collectors again. They are package-level, like Caddy's own admin and
// reload metrics, so that counters carry over a reload instead of starting
// from zero.
//
// Call metrics are labelled with the server's name as the bridge serves it
// (the same name under two mounts adds up), the tool's MCP name, and the
// call's outcome (bridge.Outcome), and the face that served it: "rest"
// for a POST to a tool's path, "mcp" for a tools/call at an MCP endpoint
// (bridge.Face). Tool labels only come from tools a server
// listed: the bridge routes a call only to a listed tool. A call refused
// before its server ever listed tools (the tool in its URL cannot be
// checked) has an empty tool label.
//
// Server metrics are read from the pool of running servers at each scrape,
// labelled with the server's name and its id, the id the admin API
// (admin.api.mcpo) uses: two servers may share a name (under two mounts,
// or for a moment while a reload replaces one), and two series with the
// same labels would fail the whole scrape. A server with a session per
// caller reports how many run, never who runs them: callers' identities
// are no labels.
var metrics = struct {
	calls    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight *prometheus.GaugeVec
	pool     *poolCollector
}{
	calls: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: metricsNamespace,
		Name:      "calls_total",
		Help:      "Tool calls served, by server, tool, outcome and face (rest or mcp).",
	}, []string{"server", "tool", "outcome", "face"}),
	duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: metricsNamespace,
		Name:      "call_duration_seconds",
		Help:      "How long tool calls took, from the request to the answer, by server, tool and face (rest or mcp).",
		Buckets:   callDurationBuckets,
	}, []string{"server", "tool", "face"}),
	inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: metricsNamespace,
		Name:      "calls_in_flight",
		Help:      "Tool calls under way, by server.",
	}, []string{"server"}),
	pool: newPoolCollector(shared),
}

// metricsNamespace prefixes every metric name of the module.
const metricsNamespace = "caddy_mcpo"

// callDurationBuckets spans what tool calls take: from a few milliseconds
// for a local lookup to the default call timeout of five minutes.
var callDurationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// registerMetrics adds the module's collectors to registry, the metrics
// registry of the configuration being provisioned. A collector already
// there (another mcpo handler of the same configuration registered it) is
// fine. A nil registry, as in a bare caddy.Context, registers nothing.
func registerMetrics(registry *prometheus.Registry) error {
	if registry == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{metrics.calls, metrics.duration, metrics.inFlight, metrics.pool} {
		err := registry.Register(c)
		var dup prometheus.AlreadyRegisteredError
		if errors.As(err, &dup) && dup.ExistingCollector == c {
			continue
		}
		if err != nil {
			return fmt.Errorf("registering the mcpo metrics: %w", err)
		}
	}
	return nil
}

// callObserver records the tool calls of the bridges in the package's
// call metrics.
type callObserver struct{}

// CallStarted counts a call under way.
func (callObserver) CallStarted(server, tool string) {
	callSeriesOf(server, tool).inFlight.Inc()
}

// CallFinished counts a finished call of the REST face.
func (o callObserver) CallFinished(server, tool string, outcome bridge.Outcome, took time.Duration) {
	o.CallFinishedOn(bridge.FaceREST, server, tool, outcome, took)
}

// CallFinishedOn counts a finished call by its outcome and face, and
// records how long it took.
func (callObserver) CallFinishedOn(face bridge.Face, server, tool string, outcome bridge.Outcome, took time.Duration) {
	s := callSeriesOf(server, tool)
	s.inFlight.Dec()
	s.calls(face, outcome).Inc()
	s.observe(face, took)
}

// callSeries are the call metrics' series of one server's tool. Finding a
// series by its label values validates and hashes them under the vector's
// lock: four times per call. The vectors never delete a series, so those
// of a tool are found once and kept, in callSeriesCache.
type callSeries struct {
	inFlight prometheus.Gauge
	// durations are made at the first call of a face that finishes, so
	// that a tool has no duration series before then (as with
	// WithLabelValues at each call).
	durations sync.Map // bridge.Face → prometheus.Observer
	outcomes  sync.Map // faceOutcome → prometheus.Counter
	server    string
	tool      string
}

// faceOutcome keys the calls_total series of a tool.
type faceOutcome struct {
	face    bridge.Face
	outcome bridge.Outcome
}

// callSeriesKey identifies a callSeries.
type callSeriesKey struct{ server, tool string }

// callSeriesCache holds the callSeries found so far, by callSeriesKey;
// tools come only from what servers listed, as the vectors' labels do.
var callSeriesCache sync.Map

func callSeriesOf(server, tool string) *callSeries {
	k := callSeriesKey{server, tool}
	if s, ok := callSeriesCache.Load(k); ok {
		return s.(*callSeries)
	}
	s, _ := callSeriesCache.LoadOrStore(k, &callSeries{
		inFlight: metrics.inFlight.WithLabelValues(server),
		server:   server,
		tool:     tool,
	})
	return s.(*callSeries)
}

// observe records the duration of a call of a face.
func (s *callSeries) observe(face bridge.Face, took time.Duration) {
	d, ok := s.durations.Load(face)
	if !ok {
		d, _ = s.durations.LoadOrStore(face, metrics.duration.WithLabelValues(s.server, s.tool, string(face)))
	}
	d.(prometheus.Observer).Observe(took.Seconds())
}

// calls is the calls_total series of a face and an outcome.
func (s *callSeries) calls(face bridge.Face, outcome bridge.Outcome) prometheus.Counter {
	k := faceOutcome{face, outcome}
	if c, ok := s.outcomes.Load(k); ok {
		return c.(prometheus.Counter)
	}
	c, _ := s.outcomes.LoadOrStore(k, metrics.calls.WithLabelValues(s.server, s.tool, string(outcome), string(face)))
	return c.(prometheus.Counter)
}

// upstreamStates are the states of the server_state metric; a state the
// upstream package adds later is reported too, but only while a server is
// in it.
var upstreamStates = []upstream.State{
	upstream.StateIdle, upstream.StateStarting, upstream.StateReady, upstream.StateBackoff, upstream.StateFailed, upstream.StateNeedsAuth, upstream.StateStopped,
}

// poolCollector reports the state of every server of a pool when scraped.
type poolCollector struct {
	pool     *pool
	up       *prometheus.Desc
	state    *prometheus.Desc
	restarts *prometheus.Desc
	tools    *prometheus.Desc
	sessions *prometheus.Desc
	stops    *prometheus.Desc
	failures *prometheus.Desc
	starts   *prometheus.Desc
}

// newPoolCollector returns a collector over the servers of p.
func newPoolCollector(p *pool) *poolCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(metricsNamespace, "", name), help,
			append([]string{"server", "id"}, labels...), nil)
	}
	return &poolCollector{
		pool:     p,
		up:       desc("server_up", "Whether the MCP server is ready for calls (1) or not (0)."),
		state:    desc("server_state", "The MCP server's state: 1 for the current one, 0 for the others.", "state"),
		restarts: desc("server_restarts_total", "How often the MCP server was started again after it had been ready."),
		tools:    desc("server_tools", "How many tools the MCP server listed last, before any filtering."),
		sessions: desc("server_sessions", "How many sessions an MCP server with a session per caller runs, its listing session included."),
		stops: desc("server_sessions_stopped_total",
			"How many sessions of callers an MCP server with a session per caller stopped, by reason: idle, evicted or ended.", "reason"),
		failures: desc("server_failures_total",
			"How often the MCP server failed, by reason: start, exit, ping_timeout, message_too_large or limit.", "reason"),
		starts: desc("server_sessions_started_total",
			"How many sessions an MCP server started on demand, or with a session per caller, started, its listing sessions included."),
	}
}

// Describe sends the descriptors of every metric the collector reports.
func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.state
	ch <- c.restarts
	ch <- c.tools
	ch <- c.sessions
	ch <- c.stops
	ch <- c.failures
	ch <- c.starts
}

// Collect sends the current metrics of every server in the pool.
func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.pool.snapshot() {
		st := s.status
		up := 0.0
		if st.State == upstream.StateReady {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, st.Name, s.id)
		known := false
		for _, state := range upstreamStates {
			v := 0.0
			if state == st.State {
				v, known = 1, true
			}
			ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, v, st.Name, s.id, string(state))
		}
		if !known {
			ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, 1, st.Name, s.id, string(st.State))
		}
		ch <- prometheus.MustNewConstMetric(c.restarts, prometheus.CounterValue, float64(st.Restarts), st.Name, s.id)
		ch <- prometheus.MustNewConstMetric(c.tools, prometheus.GaugeValue, float64(st.Tools), st.Name, s.id)
		for reason, n := range st.FailureCounts {
			ch <- prometheus.MustNewConstMetric(c.failures, prometheus.CounterValue, float64(n), st.Name, s.id, string(reason))
		}
		if u := s.entry.users; u != nil {
			ch <- prometheus.MustNewConstMetric(c.starts, prometheus.CounterValue, float64(u.startCount()), st.Name, s.id)
			n, _ := u.count()
			ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.GaugeValue, float64(n), st.Name, s.id)
			for reason, n := range u.stopCounts() {
				ch <- prometheus.MustNewConstMetric(c.stops, prometheus.CounterValue, float64(n), st.Name, s.id, reason)
			}
		}
	}
}

// Interface guards.
var (
	_ bridge.FaceObserver  = callObserver{}
	_ prometheus.Collector = (*poolCollector)(nil)
)

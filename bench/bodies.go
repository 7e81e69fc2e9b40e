package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// BodyMemory is what large request bodies cost caddy-mcpo in resident
// memory: Concurrency clients at once each POST CallsPerClient bodies of
// BodyBytes to a tool of the echo server, through a Caddy started for each
// run, and a client refused with 503 posts again after bodyRetryDelay.
type BodyMemory struct {
	Concurrency    int       `json:"concurrency"`
	BodyBytes      int       `json:"body_bytes"`
	CallsPerClient int       `json:"calls_per_client"`
	Runs           []BodyRun `json:"runs"`
}

// BodyRun is one tool with one max_request_bytes_in_flight.
type BodyRun struct {
	// Clients is how many clients post at once: BodyMemory's Concurrency
	// for the runs of each budget, fewer for the runs per concurrent
	// call.
	Clients int `json:"clients"`
	// Tool is echo (the body's message comes back) or discard (a 2-byte
	// reply).
	Tool string `json:"tool"`
	// Budget is max_request_bytes_in_flight as written, "" for the
	// default (8 × max_request_body, 64 MiB).
	Budget string `json:"max_request_bytes_in_flight"`
	// InFlightMiB is the most body bytes caddy-mcpo may hold at once:
	// every client's body, or the budget if less.
	InFlightMiB float64 `json:"in_flight_mib"`
	// IdleRSSMiB is caddy's resident memory just before the load;
	// PeakRSSMiB its peak (VmHWM) during the load.
	IdleRSSMiB float64 `json:"idle_rss_mib"`
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// PeakPerMiB is PeakRSSMiB / InFlightMiB; GrowthPerMiB counts only
	// the growth over IdleRSSMiB.
	PeakPerMiB   float64 `json:"peak_rss_per_mib_in_flight"`
	GrowthPerMiB float64 `json:"growth_per_mib_in_flight"`
	Calls        int     `json:"calls"`    // answered with 200
	Rejected     int     `json:"rejected"` // 503 answers, each posted again
	Errors       int     `json:"errors"`
	FirstError   string  `json:"first_error,omitempty"`
	Seconds      float64 `json:"seconds"`
}

const (
	bodyConcurrency = 32
	bodyBytes       = 8 << 20 // max_request_body's default: the largest body accepted
	bodyRetryDelay  = 100 * time.Millisecond
	bodyLimit       = 3 * time.Minute // per run
)

// bodyClients are the numbers of clients of the runs that measure the
// memory of each call in flight.
var bodyClients = []int{1, 16}

// budgets are the max_request_bytes_in_flight of the runs: one no load
// here reaches, and the default, 8 × max_request_body.
var budgets = []struct {
	setting string // as written, "" for the default
	bytes   float64
}{{"1TB", 1e12}, {"", 8 * bodyBytes}}

// bodyMemory runs each tool with the budget off, then at its default,
// then the echo tool with the budget off for each of bodyClients.
func (e *env) bodyMemory(ctx context.Context) (*BodyMemory, error) {
	res := &BodyMemory{Concurrency: bodyConcurrency, BodyBytes: bodyBytes, CallsPerClient: 3}
	if e.o.quick {
		res.CallsPerClient = 1
	}
	// {"message":"xx…x"}, bodyBytes long.
	const head, tail = `{"message":"`, `"}`
	body := []byte(head + strings.Repeat("x", bodyBytes-len(head)-len(tail)) + tail)
	type runSpec struct {
		tool    string
		budget  string
		limit   float64
		clients int
	}
	var specs []runSpec
	for _, tool := range []string{"echo", "discard"} {
		for _, budget := range budgets {
			specs = append(specs, runSpec{tool, budget.setting, budget.bytes, res.Concurrency})
		}
	}
	// What one call in flight costs, alone and among a few.
	for _, clients := range bodyClients {
		specs = append(specs, runSpec{"echo", budgets[0].setting, budgets[0].bytes, clients})
	}
	for _, spec := range specs {
		run, err := e.bodyRun(ctx, res, spec.tool, spec.budget, spec.limit, body, spec.clients)
		if err != nil {
			return nil, fmt.Errorf("%s, %d clients, with max_request_bytes_in_flight %q: %w", spec.tool, spec.clients, spec.budget, err)
		}
		log.Printf("bodies: %-7s %2d clients, max_request_bytes_in_flight %-7s %4.0f MiB in flight: peak RSS %6.0f MiB (idle %3.0f), %5.2f MiB per MiB in flight; %d calls, %d rejected and retried, %d errors",
			spec.tool, run.Clients, orDefault(spec.budget), run.InFlightMiB, run.PeakRSSMiB, run.IdleRSSMiB, run.PeakPerMiB, run.Calls, run.Rejected, run.Errors)
		res.Runs = append(res.Runs, run)
	}
	return res, nil
}

func orDefault(budget string) string {
	if budget == "" {
		return "default"
	}
	return budget
}

// bodyRun starts a Caddy with one mount of the echo server, its
// max_request_bytes_in_flight set to budget (of limit bytes), and measures
// its peak memory while the clients post their bodies to tool.
func (e *env) bodyRun(ctx context.Context, res *BodyMemory, tool, budget string, limit float64, body []byte, clients int) (BodyRun, error) {
	run := BodyRun{Tool: tool, Budget: budget, Clients: clients}
	site := fmt.Sprintf("mcpo /echo {\n\t\tcommand %s\n", e.echoBin)
	if budget != "" {
		site += "\t\tmax_request_bytes_in_flight " + budget + "\n"
	}
	c, err := e.startCaddy(ctx, "caddy-bodies", site+"\t}", "/echo")
	if err != nil {
		return run, err
	}
	defer c.close()
	url := c.base + "/echo/" + tool
	// The first call builds the tool's validator and document.
	if _, err := retry(ctx, readyLimit, postCaller(c.client, url, []byte(`{"message":"warm"}`), "")); err != nil {
		return run, err
	}
	proxy := c.proxy()
	resetPeak(proxy)
	run.IdleRSSMiB = float64(usageOf(proxy).rss) / (1 << 20)
	run.InFlightMiB = min(float64(clients*len(body)), limit) / (1 << 20)

	ctx, cancel := context.WithTimeout(ctx, bodyLimit)
	defer cancel()
	var (
		calls, rejected, errs atomic.Int64
		firstErr              atomic.Pointer[error]
		wg                    sync.WaitGroup
	)
	began := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range res.CallsPerClient {
				for ctx.Err() == nil {
					status, err := postBody(ctx, c.client, url, body, tool)
					if status == http.StatusServiceUnavailable {
						rejected.Add(1)
						time.Sleep(bodyRetryDelay)
						continue
					}
					if err != nil {
						errs.Add(1)
						firstErr.CompareAndSwap(nil, &err)
					} else {
						calls.Add(1)
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	run.Seconds = time.Since(began).Seconds()
	run.PeakRSSMiB = float64(usageOf(c.proxy()).hwm) / (1 << 20)
	run.PeakPerMiB = run.PeakRSSMiB / run.InFlightMiB
	run.GrowthPerMiB = (run.PeakRSSMiB - run.IdleRSSMiB) / run.InFlightMiB
	run.Calls, run.Rejected, run.Errors = int(calls.Load()), int(rejected.Load()), int(errs.Load())
	if p := firstErr.Load(); p != nil {
		run.FirstError = (*p).Error()
	}
	if ctx.Err() != nil {
		return run, fmt.Errorf("the clients were not done within %s", bodyLimit)
	}
	return run, nil
}

// postBody posts body to url and checks the answer of tool: the message
// back for echo, "ok" for discard. It returns the status, and an error
// for anything but a good 200.
func postBody(ctx context.Context, cl *http.Client, url string, body []byte, tool string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := cl.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return resp.StatusCode, fmt.Errorf("%s: %d %s", url, resp.StatusCode, b)
	}
	if tool == "discard" {
		b, err := io.ReadAll(resp.Body)
		if err == nil && string(b) != `"ok"` {
			err = fmt.Errorf("%s: %q, want \"ok\"", url, b)
		}
		return resp.StatusCode, err
	}
	// The message comes back as a JSON string: read it without keeping it.
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && n < int64(len(body))-64 {
		err = errors.New("the echo is shorter than the message")
	}
	return resp.StatusCode, err
}

package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// caller makes one tool call and reports whether it failed.
type caller func(ctx context.Context) error

// Latency sums up a set of call durations, in milliseconds.
type Latency struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

// LoadResult is what a fixed number of calls at one concurrency measured.
type LoadResult struct {
	Concurrency int     `json:"concurrency"`
	Calls       int     `json:"calls"`  // calls measured (after warm-up)
	Errors      int     `json:"errors"` // calls that failed or answered wrongly
	FirstError  string  `json:"first_error,omitempty"`
	Seconds     float64 `json:"seconds"`
	Throughput  float64 `json:"calls_per_second"`
	Latency     Latency `json:"latency"`
	Incomplete  bool    `json:"incomplete,omitempty"` // the time limit cut the run short
}

// runLoad makes warm calls, then n measured calls, from concurrency
// goroutines at once, within limit. Every duration is kept, so the
// percentiles are exact rather than bucketed.
func runLoad(ctx context.Context, call caller, concurrency, warm, n int, limit time.Duration) LoadResult {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	res := LoadResult{Concurrency: concurrency}

	var errs atomic.Int64
	var firstErr atomic.Pointer[error]
	// drive makes total calls and returns the durations of those that
	// finished within the time limit, if record is set.
	drive := func(total int, record bool) []time.Duration {
		var next atomic.Int64
		var mu sync.Mutex
		var all []time.Duration
		var wg sync.WaitGroup
		for range concurrency {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var mine []time.Duration
				for ctx.Err() == nil && int(next.Add(1)) <= total {
					start := time.Now()
					err := call(ctx)
					took := time.Since(start)
					if !record || ctx.Err() != nil {
						continue
					}
					mine = append(mine, took)
					if err != nil {
						errs.Add(1)
						firstErr.CompareAndSwap(nil, &err)
					}
				}
				mu.Lock()
				all = append(all, mine...)
				mu.Unlock()
			}()
		}
		wg.Wait()
		return all
	}

	drive(warm, false)
	start := time.Now()
	durations := drive(n, true)
	elapsed := time.Since(start)
	res.Incomplete = ctx.Err() != nil
	res.Calls = len(durations)
	res.Errors = int(errs.Load())
	if p := firstErr.Load(); p != nil {
		res.FirstError = (*p).Error()
	}
	res.Seconds = elapsed.Seconds()
	if elapsed > 0 {
		res.Throughput = float64(len(durations)) / elapsed.Seconds()
	}
	res.Latency = summarize(durations)
	return res
}

// summarize computes exact percentiles of durations (nearest rank).
func summarize(durations []time.Duration) Latency {
	if len(durations) == 0 {
		return Latency{}
	}
	sorted := slices.Clone(durations)
	slices.Sort(sorted)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(sorted)))) - 1
		return sorted[min(max(i, 0), len(sorted)-1)]
	}
	var sum time.Duration
	for _, d := range sorted {
		sum += d
	}
	return Latency{
		P50: ms(rank(0.50)), P90: ms(rank(0.90)), P99: ms(rank(0.99)),
		Max: ms(sorted[len(sorted)-1]), Mean: ms(sum / time.Duration(len(sorted))),
	}
}

// median returns the median of durations.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// retry calls f until it succeeds or limit passes, and returns how long that
// took.
func retry(ctx context.Context, limit time.Duration, f func(context.Context) error) (time.Duration, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		err := f(ctx)
		if err == nil {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("not ready after %s: %w", limit, err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

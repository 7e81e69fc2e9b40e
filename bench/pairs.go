package main

// The MCP face against the REST face in turns. The face's legs and the
// REST leg run minutes apart, each in a Caddy process of its own, and the
// pace of a shared machine drifts between them by as much as the faces
// differ. So the REST face and the MCP face (plain POSTs of each protocol
// era) of one Caddy are also measured in turns, round after round, and
// compared by their medians.

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"slices"
)

// FacePairs is the REST face and the MCP face measured in turns.
type FacePairs struct {
	Rounds int        `json:"rounds"`
	Runs   []FacePair `json:"runs"`
}

// FacePair is the rounds of one protocol era at one concurrency, on the
// echo upstream: REST[i] and Face[i] are round i's.
type FacePair struct {
	Protocol    string `json:"protocol"`
	Concurrency int    `json:"concurrency"`
	REST        []Cell `json:"rest"`
	Face        []Cell `json:"face"`
}

// facePairs measures the echo call through the REST face and through the
// MCP face of one Caddy (the caddy-mcpo leg's configuration), in turns,
// rounds times for each protocol era at each concurrency but 1 (whose
// calls take the longest and whose ratio the legs measure best): the
// REST face first in even rounds, the MCP face first in odd ones.
func (e *env) facePairs(ctx context.Context, rounds int) (*FacePairs, error) {
	legacy, err := e.startPostFace(ctx, "caddy-pairs", legacyProtocol)
	if err != nil {
		return nil, err
	}
	defer legacy.close()
	modern := &postFacePath{caddyPath: legacy.caddyPath, protocol: modernProtocol}
	rest := legacy.caddyPath
	echo := cases(e.o.quick)[0]
	out := &FacePairs{Rounds: rounds}
	for _, face := range []*postFacePath{legacy, modern} {
		for _, conc := range e.o.concurrency {
			if conc == 1 {
				continue
			}
			run := FacePair{Protocol: face.protocol, Concurrency: conc}
			for i := range rounds {
				turns := []path{rest, face}
				if i%2 == 1 {
					slices.Reverse(turns)
				}
				for _, p := range turns {
					cell := e.measure(ctx, p, echo, conc)
					if p == rest {
						run.REST = append(run.REST, cell)
					} else {
						run.Face = append(run.Face, cell)
					}
				}
				if err := ctx.Err(); err != nil {
					return nil, err
				}
			}
			r, f := medianCell(run.REST), medianCell(run.Face)
			log.Printf("in turns, %s c=%-3d REST %8.0f calls/s %4.0f µs %5.1f allocs %6.0f B, /mcp %8.0f calls/s %4.0f µs %5.1f allocs %6.0f B: %.2f×",
				face.protocol, conc, r.Load.Throughput, r.ProxyCPUPerCallUS, r.ProxyAllocsPerCall, r.ProxyBytesPerCall,
				f.Load.Throughput, f.ProxyCPUPerCallUS, f.ProxyAllocsPerCall, f.ProxyBytesPerCall, f.Load.Throughput/r.Load.Throughput)
			out.Runs = append(out.Runs, run)
		}
	}
	return out, nil
}

// medianCell is the median throughput, the median proxy and client CPU
// per call and the median proxy allocations per call of cells, each on
// its own.
func medianCell(cells []Cell) Cell {
	of := func(v func(Cell) float64) float64 {
		if len(cells) == 0 {
			return 0
		}
		s := make([]float64, len(cells))
		for i, c := range cells {
			s[i] = v(c)
		}
		slices.Sort(s)
		if len(s)%2 == 0 {
			return (s[len(s)/2-1] + s[len(s)/2]) / 2
		}
		return s[len(s)/2]
	}
	var m Cell
	m.Load.Throughput = of(func(c Cell) float64 { return c.Load.Throughput })
	m.ProxyCPUPerCallUS = of(func(c Cell) float64 { return c.ProxyCPUPerCallUS })
	m.ClientCPUPerCallUS = of(func(c Cell) float64 { return c.ClientCPUPerCallUS })
	m.ProxyAllocsPerCall = of(func(c Cell) float64 { return c.ProxyAllocsPerCall })
	m.ProxyBytesPerCall = of(func(c Cell) float64 { return c.ProxyBytesPerCall })
	return m
}

// ratios are the rounds' throughputs of the MCP face over the REST face's.
func (p FacePair) ratios() []float64 {
	var out []float64
	for i := range min(len(p.REST), len(p.Face)) {
		if p.REST[i].Load.Throughput > 0 {
			out = append(out, p.Face[i].Load.Throughput/p.REST[i].Load.Throughput)
		}
	}
	return out
}

// markdownFacePairs renders the faces measured in turns.
func markdownFacePairs(b *bytes.Buffer, p *FacePairs) {
	fmt.Fprintf(b, "\n**The MCP face and the REST face in turns** (echo, one Caddy of %s's configuration: %d rounds each of `POST <mount>/<tool>` "+
		"and of plain POSTs of prepared messages to `<mount>/mcp` (as the plain-POST legs post them), in turns, the REST face first in even rounds; "+
		"medians, and the range of the rounds' ratios. The legs above run minutes apart in Caddy processes of their own, "+
		"and the pace of a shared machine drifts between them by as much as the faces differ. "+
		"Caddy's heap allocations per call, from its runtime's counters, do not drift with the machine: what a call through each face costs Caddy in objects and bytes)\n\n", label(pathCaddy), p.Rounds)
	fmt.Fprintf(b, "| protocol | concurrency | REST calls/s | /mcp calls/s | / REST | rounds' / REST | proxy CPU µs/call: REST / /mcp | / REST | client CPU µs/call: REST / /mcp | Caddy allocations/call: REST / /mcp | Caddy bytes/call: REST / /mcp |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, run := range p.Runs {
		r, f := medianCell(run.REST), medianCell(run.Face)
		rounds := "–"
		if rs := run.ratios(); len(rs) > 0 {
			rounds = fmt.Sprintf("%.2f–%.2f×", slices.Min(rs), slices.Max(rs))
		}
		fmt.Fprintf(b, "| %s | %d | %.0f | %.0f | %s | %s | %.0f / %.0f | %s | %.0f / %.0f | %s | %s |\n", run.Protocol, run.Concurrency,
			r.Load.Throughput, f.Load.Throughput, ratio(f.Load.Throughput, r.Load.Throughput), rounds,
			r.ProxyCPUPerCallUS, f.ProxyCPUPerCallUS, ratio(f.ProxyCPUPerCallUS, r.ProxyCPUPerCallUS),
			r.ClientCPUPerCallUS, f.ClientCPUPerCallUS,
			pairOf(r.ProxyAllocsPerCall, f.ProxyAllocsPerCall), pairOf(r.ProxyBytesPerCall, f.ProxyBytesPerCall))
	}
}

// pairOf renders a figure of each face, "–" where a run did not measure
// it.
func pairOf(rest, face float64) string {
	if rest == 0 || face == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f / %.0f", rest, face)
}

// pairTargets renders the MCP face's target measured in turns: ≥ 0.9× the
// REST face's throughput, by the medians.
func pairTargets(b *bytes.Buffer, p *FacePairs) {
	if p == nil {
		return
	}
	for _, run := range p.Runs {
		if r, f := medianCell(run.REST), medianCell(run.Face); r.Load.Throughput > 0 {
			target(b, fmt.Sprintf("/mcp (%s, plain POST) in turns with the REST face at concurrency %d ≥ 0.9× its throughput (medians of %d rounds)",
				run.Protocol, run.Concurrency, len(run.Face)), f.Load.Throughput/r.Load.Throughput, 0.9)
		}
	}
}

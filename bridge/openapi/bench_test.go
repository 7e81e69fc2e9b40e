package openapi

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// BenchmarkBuild1000Tools measures converting 1,000 tools' schemas and
// building their document, what a server with 1,000 tools costs once per
// tool listing.
func BenchmarkBuild1000Tools(b *testing.B) {
	const input = `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{
		"query":{"type":"string","description":"What to look for","minLength":1},
		"limit":{"type":"integer","minimum":1,"maximum":100,"default":10},
		"filter":{"$ref":"#/$defs/Filter"}},"required":["query"],
		"$defs":{"Filter":{"type":"object","properties":{"kind":{"enum":["a","b","c"]},"since":{"type":["string","null"],"format":"date-time"}}}}}`
	var ops []Operation
	var namer Namer
	for i := range 1000 {
		name := fmt.Sprintf("tool_%04d", i)
		ops = append(ops, Operation{
			Path: "/" + name, OperationID: namer.OperationID(name),
			Tool: &upstream.Tool{Name: name, Description: "A generated tool.", InputSchema: json.RawMessage(input)},
		})
	}
	b.ReportAllocs()
	for b.Loop() {
		fresh := make([]Operation, len(ops))
		for i, op := range ops {
			fresh[i] = Operation{Path: op.Path, OperationID: op.OperationID, Tool: op.Tool}
		}
		if _, err := Build(Info{Title: "bench"}, fresh, false); err != nil {
			b.Fatal(err)
		}
	}
}

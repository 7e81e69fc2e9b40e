package openapi

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// benchInput is the input schema of every generated tool: draft-07, with a
// default, a $ref into $defs and a nullable type.
const benchInput = `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{
		"query":{"type":"string","description":"What to look for","minLength":1},
		"limit":{"type":"integer","minimum":1,"maximum":100,"default":10},
		"filter":{"$ref":"#/$defs/Filter"}},"required":["query"],
		"$defs":{"Filter":{"type":"object","properties":{"kind":{"enum":["a","b","c"]},"since":{"type":["string","null"],"format":"date-time"}}}}}`

// generatedOperations returns n tools taking benchInput, not converted yet.
func generatedOperations(n int) []Operation {
	var ops []Operation
	var namer Namer
	for i := range n {
		name := fmt.Sprintf("tool_%04d", i)
		ops = append(ops, Operation{
			Path: "/" + name, OperationID: namer.OperationID(name),
			Tool: Tool{Name: name, Description: "A generated tool.", InputSchema: json.RawMessage(benchInput)},
		})
	}
	return ops
}

// capturedTool decodes a tool as the bridge lists it.
func capturedTool(raw json.RawMessage) Tool {
	var t struct {
		Name         string          `json:"name"`
		Title        string          `json:"title"`
		Description  string          `json:"description"`
		InputSchema  json.RawMessage `json:"inputSchema"`
		OutputSchema json.RawMessage `json:"outputSchema"`
		Annotations  json.RawMessage `json:"annotations"`
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		panic(err)
	}
	tool := Tool{Name: t.Name, Title: t.Title, Description: t.Description,
		InputSchema: t.InputSchema, OutputSchema: t.OutputSchema, Annotations: t.Annotations}
	if tool.Title == "" && t.Annotations != nil {
		var a struct {
			Title string `json:"title"`
		}
		if json.Unmarshal(t.Annotations, &a) == nil {
			tool.Title = a.Title
		}
	}
	return tool
}

// typicalOperations returns 20 real tools, taken in turn from the servers
// captured in internal/fixture, not converted yet: a server of typical
// size and schemas (zod's, pydantic's, with and without output schemas).
func typicalOperations() []Operation {
	var lists [][]json.RawMessage
	for _, server := range fixture.CapturedServers() {
		lists = append(lists, fixture.CapturedTools(server))
	}
	var ops []Operation
	var namer Namer
	for i := 0; len(ops) < 20; i++ {
		for _, list := range lists {
			if i < len(list) && len(ops) < 20 {
				t := capturedTool(list[i])
				ops = append(ops, Operation{Path: "/" + namer.PathSegment(t.Name), OperationID: namer.OperationID(t.Name), Tool: t})
			}
		}
	}
	return ops
}

// benchmarkBuild measures converting the tools' schemas and building their
// document, what a server costs once per tool listing.
func benchmarkBuild(b *testing.B, ops []Operation) {
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

// BenchmarkBuild1000Tools measures a server with 1,000 tools.
func BenchmarkBuild1000Tools(b *testing.B) { benchmarkBuild(b, generatedOperations(1000)) }

// BenchmarkBuild20Tools measures a server with 20 typical tools.
func BenchmarkBuild20Tools(b *testing.B) { benchmarkBuild(b, typicalOperations()) }

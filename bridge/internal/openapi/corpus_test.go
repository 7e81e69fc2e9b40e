package openapi

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// corpusDocument is the operations of one document built from the test
// corpus.
type corpusDocument struct {
	name   string
	ops    []Operation
	tagged bool
}

// corpusDocuments returns the documents of the test corpus, not converted
// yet: one per server captured in internal/fixture (159 tools of 12 real
// servers), one of the hard schemas (fixture.HardSchemas), and one
// aggregate of them all, as a mount of several servers documents them.
func corpusDocuments() []corpusDocument {
	var docs []corpusDocument
	var ids Namer
	all := corpusDocument{name: "aggregate", tagged: true}
	add := func(server string, tools []Tool) {
		d := corpusDocument{name: server}
		var namer, segs Namer
		segs.Reserve("openapi.json")
		for _, t := range tools {
			seg := segs.PathSegment(t.Name)
			d.ops = append(d.ops, Operation{Path: "/" + seg, OperationID: namer.OperationID(t.Name), Tool: t})
			all.ops = append(all.ops, Operation{Path: "/" + server + "/" + seg, OperationID: ids.OperationID(server, t.Name), Server: server, Tool: t})
		}
		docs = append(docs, d)
	}
	for _, server := range fixture.CapturedServers() {
		var tools []Tool
		for _, raw := range fixture.CapturedTools(server) {
			tools = append(tools, capturedTool(raw))
		}
		add(server, tools)
	}
	var hard []Tool
	for _, h := range fixture.HardSchemas {
		hard = append(hard, Tool{Name: h.Tool, Description: h.Why, InputSchema: json.RawMessage(h.Schema)})
	}
	add("hard", hard)
	return append(docs, all)
}

// build builds the document, converting every tool afresh.
func (d corpusDocument) build(t testing.TB) *Document {
	t.Helper()
	fresh := make([]Operation, len(d.ops))
	for i, op := range d.ops {
		fresh[i] = Operation{Path: op.Path, OperationID: op.OperationID, Server: op.Server, Tool: op.Tool}
	}
	doc, err := Build(Info{Title: d.name, Description: "The test corpus."}, fresh, d.tagged)
	if err != nil {
		t.Fatalf("%s: %v", d.name, err)
	}
	return doc
}

// function is an operation the way an LLM client offers it to a model:
// Open WebUI and the OpenAPI tool loaders of LLM frameworks make one
// function of each operation, named by its operationId, whose parameters
// are the JSON request body's schema.
type function struct {
	Tool        string         `json:"tool"` // the MCP tool's name
	Name        string         `json:"name"`
	Description string         `json:"description"`
	Parameters  map[string]any `json:"parameters"`
}

// functions returns the document's operations as functions, in path order.
func functions(t testing.TB, body []byte) []function {
	t.Helper()
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	comps, _ := get(doc, "components", "schemas").(map[string]any)
	paths, _ := doc["paths"].(map[string]any)
	var out []function
	for _, path := range keysOf(paths) {
		op, _ := get(paths[path], "post").(map[string]any)
		params, _ := get(op, "requestBody", "content", "application/json", "schema").(map[string]any)
		if ref, ok := params["$ref"].(string); ok {
			params, _ = comps[strings.TrimPrefix(ref, "#/components/schemas/")].(map[string]any)
		}
		out = append(out, function{
			Tool: str(op["x-mcp-tool-name"]), Name: str(op["operationId"]), Description: str(op["description"]), Parameters: params,
		})
	}
	return out
}

package integration

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// TestToolArgumentsArriveIntactThroughCaddy serves every hard schema and
// every tool of every captured real server from echo fixtures, fetches the
// documents as a client would, and calls each tool with valid arguments
// written under the documented names: the server must receive exactly the
// arguments, byte for byte, under their wire names.
func TestToolArgumentsArriveIntactThroughCaddy(t *testing.T) {
	var blocks strings.Builder
	// Each captured server twice: as captured (its documents keep the output
	// schemas), and without output schemas, so that calls return the echo
	// rather than the structured content.
	servers := []string{"hard"}
	opts := map[string]fixture.Options{"hard": {HardSchemas: true}}
	for _, name := range fixture.CapturedServers() {
		servers = append(servers, name, name+"-echo")
		opts[name] = fixture.Options{Captured: name}
		opts[name+"-echo"] = fixture.Options{Captured: name, EchoOnly: true}
	}
	for _, name := range servers {
		fmt.Fprintf(&blocks, "\t\tserver %s {\n\t\t\t%s\t\t}\n", name, fixtureCommand(opts[name]))
	}
	startCaddy(t, fmt.Sprintf(":%d {\n\tmcpo /schemas {\n%s\t}\n}\n", httpPort, blocks.String()))

	all := map[string]json.RawMessage{} // every tool's input schema, for the aggregate document
	for _, name := range servers {
		for tool, raw := range fixture.InputSchemas(opts[name]) {
			all[tool] = raw
		}
	}
	for _, name := range servers {
		t.Run(name, func(t *testing.T) {
			inputs := fixture.InputSchemas(opts[name])
			doc := loadDoc(t, "schemas-"+name, waitReady(t, "/schemas/"+name+"/openapi.json"), inputs)
			if o := opts[name]; o.Captured != "" && !o.EchoOnly {
				return
			}
			calls := callAllWithSamples(t, doc, inputs, samplesFor(t, name, inputs))
			t.Logf("%s: %d tools, %d called with sample arguments", name, len(inputs), calls)
		})
	}
	// The aggregate holds tools of the same name from several servers; the
	// captured ones share schemas where they share names.
	loadDoc(t, "schemas-aggregate", waitReady(t, "/schemas/openapi.json"), nil)
}

// samplesFor returns valid arguments per tool: the hard schemas' own
// samples, or generated ones for captured tools.
func samplesFor(t *testing.T, server string, inputs map[string]json.RawMessage) map[string]json.RawMessage {
	t.Helper()
	out := map[string]json.RawMessage{}
	if server == "hard" {
		for _, h := range fixture.HardSchemas {
			out[h.Tool] = json.RawMessage(h.Sample)
		}
		return out
	}
	for tool, raw := range inputs {
		sample, err := fixture.SampleArguments(raw)
		if err != nil {
			t.Logf("%s: no sample arguments for %s: %v", server, tool, err)
			continue
		}
		out[tool] = sample
	}
	return out
}

// callAllWithSamples calls each documented tool that has a sample and
// checks the echo; it returns how many it called.
func callAllWithSamples(t *testing.T, doc *openapi3.T, inputs, samples map[string]json.RawMessage) int {
	t.Helper()
	base := serverURL(t, doc)
	calls := 0
	documented := map[string]bool{}
	for path, item := range doc.Paths.Map() {
		op := item.Post
		tool, _ := op.Extensions["x-mcp-tool-name"].(string)
		documented[tool] = true
		sample, ok := samples[tool]
		if !ok {
			continue
		}
		body := requestBody(t, op, sample)
		r := do(t, http.MethodPost, base+path, string(body))
		calls++
		if r.status != http.StatusOK {
			t.Errorf("%s: POST %s with %s: %s", tool, path, body, r)
			continue
		}
		// The echo tools return the arguments they received as their text,
		// which the bridge returns as JSON when it is JSON.
		if !bytes.Equal(r.body, sample) {
			t.Errorf("%s: the server received\n%s\nwant exactly\n%s", tool, r.body, sample)
		}
	}
	for tool := range inputs {
		if !documented[tool] && !taskOnly(tool) {
			t.Errorf("tool %s is not documented", tool)
		}
	}
	return calls
}

// taskOnly names the captured tool that needs task support, which the
// bridge hides.
func taskOnly(tool string) bool { return tool == "simulate-research-query" }

// requestBody writes sample arguments the way a client reading the
// document does: a non-object input goes in the wrapping argument, and
// renamed arguments go under their documented names.
func requestBody(t *testing.T, op *openapi3.Operation, sample json.RawMessage) []byte {
	t.Helper()
	if w, ok := op.Extensions["x-mcp-arguments-wrapped"].(string); ok {
		b, _ := json.Marshal(map[string]json.RawMessage{w: sample})
		return b
	}
	documented := map[string]string{} // wire name → documented name
	renames, _ := op.Extensions["x-mcp-argument-names"].(map[string]any)
	for name, wire := range renames {
		if w, ok := wire.(string); ok {
			documented[w] = name
		}
	}
	if len(documented) == 0 {
		return sample
	}
	// Rename the top-level keys, keeping their order and values.
	dec := json.NewDecoder(bytes.NewReader(sample))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i := 0; dec.More(); i++ {
		k, _ := dec.Token()
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		name := k.(string)
		if d, ok := documented[name]; ok {
			name = d
		}
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(name)
		b.Write(kb)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes()
}

func TestInvalidArgumentsAreRefusedWithEveryProblemNamed(t *testing.T) {
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /strict {
		%s
	}
	mcpo /lenient {
		%s
		strict_args off
	}
}
`, httpPort, fixtureCommand(fixture.Options{}), fixtureCommand(fixture.Options{})))
	waitReady(t, "/strict/openapi.json")
	waitReady(t, "/lenient/openapi.json")

	r := do(t, http.MethodPost, "/strict/add", `{"a":"2","b":null}`)
	var e struct {
		Detail struct {
			Message string                           `json:"message"`
			Errors  []struct{ Path, Message string } `json:"errors"`
		} `json:"detail"`
	}
	if r.status != http.StatusUnprocessableEntity || json.Unmarshal(r.body, &e) != nil {
		t.Fatalf("POST /strict/add with strings: %s", r)
	}
	var paths []string
	for _, ae := range e.Detail.Errors {
		paths = append(paths, ae.Path)
	}
	if !slices.Equal(paths, []string{"/a", "/b"}) || !strings.Contains(e.Detail.Message, "/a") {
		t.Errorf("errors = %+v, message %q; want /a and /b named", e.Detail.Errors, e.Detail.Message)
	}
	if r := do(t, http.MethodPost, "/lenient/add", `{"a":"2","b":"40"}`); r.status != 200 || string(r.body) != "42" {
		t.Errorf("POST /lenient/add with strings: %s, want 42", r)
	}
	if r := do(t, http.MethodPost, "/lenient/add", `{"a":"two","b":1}`); r.status != http.StatusUnprocessableEntity {
		t.Errorf("POST /lenient/add with a word: %s, want 422", r)
	}
}

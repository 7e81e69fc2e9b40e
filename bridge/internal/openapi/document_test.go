package openapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// loadAndValidate loads a served document with kin-openapi and validates
// it; the document says 3.1.0, so the 3.1 rules apply.
func loadAndValidate(t *testing.T, b []byte) *openapi3.T {
	t.Helper()
	if !json.Valid(b) {
		t.Fatalf("the document is not valid JSON: %s", b)
	}
	doc, err := openapi3.NewLoader().LoadFromData(b)
	if err != nil {
		t.Fatalf("loading the document: %v\n%s", err, b)
	}
	if !doc.IsOpenAPI31OrLater() {
		t.Fatalf("the document is not OpenAPI 3.1: %q", doc.OpenAPI)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("validating the document: %v\n%s", err, b)
	}
	return doc
}

// generic decodes b into generic JSON, numbers as json.Number.
func generic(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decoding %s: %v", b, err)
	}
	return m
}

func get(v any, keys ...string) any {
	for _, k := range keys {
		switch c := v.(type) {
		case map[string]any:
			v = c[k]
		case []any:
			var i int
			if _, err := fmt.Sscanf(k, "%d", &i); err != nil || i < 0 || i >= len(c) {
				return nil
			}
			v = c[i]
		default:
			return nil
		}
	}
	return v
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func jsonEqual(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	var va, vb any
	_ = json.Unmarshal(ja, &va)
	_ = json.Unmarshal(jb, &vb)
	return reflect.DeepEqual(va, vb)
}

var (
	toolTime = Tool{
		Name:        "get_current_time",
		Title:       "Get current time",
		Description: "Returns the current time in a time zone.",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"timezone":{"type":"string","description":"IANA name"}},"required":["timezone"]}`),
		Annotations: json.RawMessage(`{"readOnlyHint":true,"openWorldHint":false,"title":"Get current time"}`),
	}
	toolBare = Tool{
		Name: "ping",
	}
	toolStructured = Tool{
		Name:         "get-sum",
		Description:  "   ",
		Title:        "Sum numbers",
		InputSchema:  json.RawMessage(`{"type":"object","properties":{"a":{"type":"number"},"b":{"type":"number"}}}`),
		OutputSchema: json.RawMessage(`{"type":"object","properties":{"sum":{"type":"number"},"terms":{"type":"array","items":{"$ref":"#/$defs/Term"}}},"required":["sum"],"$defs":{"Term":{"type":"number"}}}`),
	}
	toolDefs = Tool{
		Name:        "create.user",
		Description: "Creates a user.",
		InputSchema: json.RawMessage(`{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{"user":{"$ref":"#/definitions/User"}},
			"definitions":{"User":{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer","minimum":0,"exclusiveMinimum":true},"nick":{"type":"string","nullable":true}}}}}`),
	}
	toolLossy = Tool{
		Name:        "lossy",
		Description: "Has a dangling reference.",
		InputSchema: json.RawMessage(`{"type":"object","properties":{"a":{"$ref":"#/$defs/Nowhere"}}}`),
	}
	toolBadInput = Tool{
		Name:         "bad",
		InputSchema:  json.RawMessage(`{"type":"string"}`),
		OutputSchema: json.RawMessage(`not json`),
	}
)

type wantOp struct {
	path, opID, summary, desc string
	tool                      Tool
	server                    string
	hasOutput                 bool
	bodyRequired              bool
}

func TestBuildDescribesEachTool(t *testing.T) {
	ops := []Operation{
		{Path: "/get_current_time", OperationID: "get_current_time", Tool: toolTime},
		{Path: "/ping", OperationID: "ping", Tool: toolBare},
		{Path: "/get-sum", OperationID: "get_sum", Tool: toolStructured},
		{Path: "/create.user", OperationID: "create_user", Tool: toolDefs},
	}
	wants := []wantOp{
		{path: "/get_current_time", opID: "get_current_time", summary: "Get current time", desc: toolTime.Description, tool: toolTime, bodyRequired: true},
		{path: "/ping", opID: "ping", summary: "ping", desc: "ping", tool: toolBare},
		{path: "/get-sum", opID: "get_sum", summary: "Sum numbers", desc: "Sum numbers", tool: toolStructured, hasOutput: true},
		{path: "/create.user", opID: "create_user", summary: "create.user", desc: toolDefs.Description, tool: toolDefs},
	}
	d, err := Build(Info{Title: "Time server", Description: "Tools.", Version: "2.1.0"}, ops, false)
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	if len(d.Warnings) != 0 {
		t.Errorf("warnings = %+v, want none", d.Warnings)
	}
	b := d.JSON("/base")
	loadAndValidate(t, b)
	m := generic(t, b)

	if got := m["openapi"]; got != "3.1.0" {
		t.Errorf("openapi = %v, want 3.1.0", got)
	}
	if got := m["servers"]; !jsonEqual(got, []any{map[string]any{"url": "/base"}}) {
		t.Errorf("servers = %v, want [{url: /base}]", got)
	}
	if got := get(m, "info", "title"); got != "Time server" {
		t.Errorf("info.title = %v", got)
	}
	if got := get(m, "info", "version"); got != "2.1.0" {
		t.Errorf("info.version = %v", got)
	}
	if got := get(m, "info", "description"); got != "Tools." {
		t.Errorf("info.description = %v", got)
	}
	if _, has := m["tags"]; has {
		t.Errorf("tags = %v in an untagged document", m["tags"])
	}
	paths, _ := m["paths"].(map[string]any)
	if len(paths) != len(wants) {
		t.Errorf("%d paths, want %d: %v", len(paths), len(wants), keysOf(paths))
	}
	for _, w := range wants {
		t.Run(w.opID, func(t *testing.T) {
			item, _ := paths[w.path].(map[string]any)
			if item == nil {
				t.Fatalf("no path %s", w.path)
			}
			if len(item) != 1 || item["post"] == nil {
				t.Errorf("path item %s has %v, want only post", w.path, keysOf(item))
			}
			op := get(item, "post")
			checkOperation(t, m, op, w)
		})
	}
}

func checkOperation(t *testing.T, doc map[string]any, op any, w wantOp) {
	t.Helper()
	if got := get(op, "operationId"); got != w.opID {
		t.Errorf("operationId = %v, want %s", got, w.opID)
	}
	if got := get(op, "summary"); got != w.summary {
		t.Errorf("summary = %v, want %s", got, w.summary)
	}
	if got := str(get(op, "description")); got != w.desc || strings.TrimSpace(got) == "" {
		t.Errorf("description = %q, want %q", got, w.desc)
	}
	if got := get(op, "x-mcp-tool-name"); got != w.tool.Name {
		t.Errorf("x-mcp-tool-name = %v, want %s", got, w.tool.Name)
	}
	if w.tool.Annotations != nil {
		var want any
		_ = json.Unmarshal(w.tool.Annotations, &want)
		if got := get(op, "x-mcp-annotations"); !jsonEqual(got, want) {
			t.Errorf("x-mcp-annotations = %v, want %s", got, w.tool.Annotations)
		}
	} else if got := get(op, "x-mcp-annotations"); got != nil {
		t.Errorf("x-mcp-annotations = %v, want none", got)
	}
	if w.server != "" {
		if got := get(op, "x-mcp-server"); got != w.server {
			t.Errorf("x-mcp-server = %v, want %s", got, w.server)
		}
		if got := get(op, "tags"); !jsonEqual(got, []string{w.server}) {
			t.Errorf("tags = %v, want [%s]", got, w.server)
		}
	} else {
		if got := get(op, "x-mcp-server"); got != nil {
			t.Errorf("x-mcp-server = %v, want none", got)
		}
		if got := get(op, "tags"); got != nil {
			t.Errorf("tags = %v, want none", got)
		}
	}

	// Request body: a reference to <opid>_input, which exists.
	inRef := "#/components/schemas/" + w.opID + "_input"
	if got := get(op, "requestBody", "content", "application/json", "schema", "$ref"); got != inRef {
		t.Errorf("request body schema $ref = %v, want %s", got, inRef)
	}
	if c := get(op, "requestBody", "content").(map[string]any); len(c) != 1 {
		t.Errorf("request body media types = %v, want only application/json", keysOf(c))
	}
	in := get(doc, "components", "schemas", w.opID+"_input")
	if in == nil {
		t.Fatalf("component %s_input missing", w.opID)
	}
	if got := get(in, "type"); got != "object" {
		t.Errorf("%s_input type = %v, want object", w.opID, got)
	}
	required, _ := get(op, "requestBody", "required").(bool)
	if required != w.bodyRequired {
		t.Errorf("requestBody.required = %v, want %v", required, w.bodyRequired)
	}

	// 200: the output schema when there is one.
	ok := get(op, "responses", "200", "content", "application/json", "schema")
	if ok == nil {
		t.Fatal("no 200 application/json response schema")
	}
	if str(get(op, "responses", "200", "description")) == "" {
		t.Error("200 response has no description")
	}
	outRef := "#/components/schemas/" + w.opID + "_output"
	if w.hasOutput {
		if got := get(ok, "$ref"); got != outRef {
			t.Errorf("200 schema $ref = %v, want %s", got, outRef)
		}
		if get(doc, "components", "schemas", w.opID+"_output") == nil {
			t.Errorf("component %s_output missing", w.opID)
		}
	} else {
		if got := get(ok, "$ref"); got != nil {
			t.Errorf("200 schema $ref = %v, want an inline schema", got)
		}
		if get(doc, "components", "schemas", w.opID+"_output") != nil {
			t.Errorf("component %s_output present for a tool without output schema", w.opID)
		}
	}

	// default: the shared Error schema.
	if got := get(op, "responses", "default", "content", "application/json", "schema", "$ref"); got != "#/components/schemas/Error" {
		t.Errorf("default response schema $ref = %v, want #/components/schemas/Error", got)
	}
	if str(get(op, "responses", "default", "description")) == "" {
		t.Error("default response has no description")
	}
}

func keysOf[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestBuildErrorSchema(t *testing.T) {
	d, err := Build(Info{Title: "t"}, []Operation{{Path: "/ping", OperationID: "ping", Tool: toolBare}}, false)
	if err != nil {
		t.Fatal(err)
	}
	doc := loadAndValidate(t, d.JSON("/"))
	e := doc.Components.Schemas[ErrorSchemaName]
	if e == nil || e.Value == nil {
		t.Fatal("no Error component")
	}
	if !e.Value.Type.Is(openapi3.TypeObject) || !reflect.DeepEqual(e.Value.Required, []string{"detail"}) {
		t.Errorf("Error = %+v, want an object requiring detail", e.Value)
	}
	detail := e.Value.Properties["detail"]
	if detail == nil || detail.Value == nil {
		t.Fatal("Error has no detail")
	}
	if !reflect.DeepEqual(detail.Value.Required, []string{"message"}) {
		t.Errorf("detail.required = %v, want [message]", detail.Value.Required)
	}
	for _, p := range []string{"message", "server", "tool", "code", "data"} {
		if detail.Value.Properties[p] == nil {
			t.Errorf("detail has no %s", p)
		}
	}
	// What the bridge sends validates against it.
	body := map[string]any{"detail": map[string]any{"message": "boom", "server": "s", "tool": "t", "code": -32602, "data": map[string]any{"x": 1}}}
	if err := doc.ValidateSchemaJSON(e.Value, body, openapi3.EnableJSONSchema2020()); err != nil {
		t.Errorf("an error body does not match the Error schema: %v", err)
	}
}

func TestBuildTagsOperationsByServer(t *testing.T) {
	ops := []Operation{
		{Path: "/time/get_current_time", OperationID: "time_get_current_time", Server: "time", Tool: toolTime},
		{Path: "/math/get-sum", OperationID: "math_get_sum", Server: "math", Tool: toolStructured},
		{Path: "/math/ping", OperationID: "math_ping", Server: "math", Tool: toolBare},
	}
	d, err := Build(Info{Title: "MCP tools"}, ops, true)
	if err != nil {
		t.Fatal(err)
	}
	b := d.JSON("/mcp")
	loadAndValidate(t, b)
	m := generic(t, b)
	tags, _ := m["tags"].([]any)
	var names []string
	for _, tag := range tags {
		names = append(names, str(get(tag, "name")))
		if str(get(tag, "description")) == "" {
			t.Errorf("tag %v has no description", tag)
		}
	}
	if !reflect.DeepEqual(names, []string{"math", "time"}) {
		t.Errorf("tags = %v, want [math time] (sorted, once each)", names)
	}
	checkOperation(t, m, get(m, "paths", "/time/get_current_time", "post"), wantOp{
		path: "/time/get_current_time", opID: "time_get_current_time", summary: "Get current time", desc: toolTime.Description,
		tool: toolTime, server: "time", bodyRequired: true,
	})
	checkOperation(t, m, get(m, "paths", "/math/get-sum", "post"), wantOp{
		path: "/math/get-sum", opID: "math_get_sum", summary: "Sum numbers", desc: "Sum numbers",
		tool: toolStructured, server: "math", hasOutput: true,
	})
	checkOperation(t, m, get(m, "paths", "/math/ping", "post"), wantOp{
		path: "/math/ping", opID: "math_ping", summary: "ping", desc: "ping", tool: toolBare, server: "math",
	})
}

func TestBuildServerWithoutTagsInUntaggedDocument(t *testing.T) {
	// A server name on an operation of an untagged document names it, but
	// makes no tag.
	d, err := Build(Info{Title: "t"}, []Operation{{Path: "/ping", OperationID: "ping", Server: "s", Tool: toolBare}}, false)
	if err != nil {
		t.Fatal(err)
	}
	m := generic(t, d.JSON("/"))
	loadAndValidate(t, d.JSON("/"))
	if m["tags"] != nil || get(m, "paths", "/ping", "post", "tags") != nil {
		t.Errorf("tags in an untagged document: %v / %v", m["tags"], get(m, "paths", "/ping", "post", "tags"))
	}
	if got := get(m, "paths", "/ping", "post", "x-mcp-server"); got != "s" {
		t.Errorf("x-mcp-server = %v, want s", got)
	}
}

func TestBuildInlinesDefinitions(t *testing.T) {
	ops := []Operation{
		{Path: "/create.user", OperationID: "create_user", Tool: toolDefs},
		{Path: "/get-sum", OperationID: "get_sum", Tool: toolStructured},
	}
	d, err := Build(Info{Title: "t"}, ops, false)
	if err != nil {
		t.Fatal(err)
	}
	b := d.JSON("/")
	loadAndValidate(t, b)
	m := generic(t, b)
	user := get(m, "components", "schemas", "create_user_input", "properties", "user")
	if user == nil {
		t.Fatalf("the user argument is missing: %s", b)
	}
	// Draft-04's exclusive minimum 0 of an integer, in the words LLM
	// providers take; an optional nullable argument without null.
	if got := get(user, "properties", "age", "minimum"); fmt.Sprint(got) != "1" {
		t.Errorf("age.minimum = %v, want 1", got)
	}
	if got := get(user, "properties", "nick", "type"); got != "string" {
		t.Errorf("nick.type = %v, want string", got)
	}
	if get(m, "components", "schemas", "get_sum_output", "properties", "terms", "items", "type") == nil {
		t.Errorf("terms.items is not inlined: %s", b)
	}
	// Only the operations' own schemas are components; nothing refers elsewhere.
	if n := len(get(m, "components", "schemas").(map[string]any)); n != 4 {
		t.Errorf("%d components, want Error and the three tool schemas", n)
	}
	for _, kw := range []string{`"$defs"`, `"definitions"`, `"$schema"`, `"#/$defs`} {
		if strings.Contains(string(b), kw) {
			t.Errorf("the document still holds %s: %s", kw, b)
		}
	}
}

func TestBuildReportsWarningsInTheDescription(t *testing.T) {
	ops := []Operation{
		{Path: "/lossy", OperationID: "lossy", Tool: toolLossy},
		{Path: "/bad", OperationID: "bad", Tool: toolBadInput},
		{Path: "/ping", OperationID: "ping", Tool: toolBare},
	}
	d, err := Build(Info{Title: "t"}, ops, false)
	if err != nil {
		t.Fatal(err)
	}
	b := d.JSON("/")
	loadAndValidate(t, b)
	m := generic(t, b)

	byTool := map[string][]string{}
	for _, w := range d.Warnings {
		byTool[w.Tool] = append(byTool[w.Tool], w.Message)
	}
	if len(byTool["lossy"]) == 0 || !strings.Contains(strings.Join(byTool["lossy"], " "), "#/$defs/Nowhere") {
		t.Errorf("warnings for lossy = %q, want the dangling reference", byTool["lossy"])
	}
	if len(byTool["bad"]) < 2 {
		t.Errorf("warnings for bad = %q, want the input and the output schema's", byTool["bad"])
	}
	if len(byTool["ping"]) != 0 {
		t.Errorf("warnings for ping = %q, want none", byTool["ping"])
	}
	desc := str(get(m, "paths", "/lossy", "post", "description"))
	if !strings.HasPrefix(desc, toolLossy.Description) || !strings.Contains(desc, "#/$defs/Nowhere") {
		t.Errorf("description = %q, want the tool's description and the warning", desc)
	}
	// A string input is wrapped in an "input" argument.
	if got := get(m, "components", "schemas", "bad_input", "properties", "input", "type"); got != "string" {
		t.Errorf("bad_input.properties.input.type = %v, want string", got)
	}
	if got := get(m, "paths", "/bad", "post", WrappedExtension); got != "input" {
		t.Errorf("%s = %v, want input", WrappedExtension, got)
	}
}

func TestBuildWithoutOperations(t *testing.T) {
	d, err := Build(Info{Title: "nothing yet"}, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	b := d.JSON("/empty")
	loadAndValidate(t, b)
	m := generic(t, b)
	if got := get(m, "info", "version"); got != "1.0.0" {
		t.Errorf("info.version = %v, want the default 1.0.0", got)
	}
	if m["tags"] != nil {
		t.Errorf("tags = %v, want none", m["tags"])
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	ops := []Operation{
		{Path: "/get_current_time", OperationID: "get_current_time", Tool: toolTime},
		{Path: "/get-sum", OperationID: "get_sum", Tool: toolStructured},
		{Path: "/create.user", OperationID: "create_user", Tool: toolDefs},
		{Path: "/lossy", OperationID: "lossy", Tool: toolLossy},
	}
	first, err := Build(Info{Title: "t"}, ops, true)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		again, err := Build(Info{Title: "t"}, ops, true)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first.JSON("/"), again.JSON("/")) {
			t.Fatal("two builds of the same operations differ (ETags would change)")
		}
		if first.Size() != again.Size() {
			t.Fatal("sizes differ")
		}
	}
}

func TestDocumentJSONServerURL(t *testing.T) {
	d, err := Build(Info{Title: "t"}, []Operation{{Path: "/ping", OperationID: "ping", Tool: toolBare}}, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"/base", "/", "https://example.com/mcp/time", `/odd"path\with<chars>`, "/ü"} {
		b := d.JSON(u)
		loadAndValidate(t, b)
		m := generic(t, b)
		if got := get(m, "servers", "0", "url"); got != u {
			t.Errorf("JSON(%q): servers[0].url = %v", u, got)
		}
		if n := len(m["servers"].([]any)); n != 1 {
			t.Errorf("JSON(%q): %d servers", u, n)
		}
		if len(b) <= d.Size() {
			t.Errorf("JSON(%q) is %d bytes, Size() %d", u, len(b), d.Size())
		}
	}
	// The document does not keep one server URL's bytes for the next.
	a, b := string(d.JSON("/a")), string(d.JSON("/b"))
	if strings.Contains(b, `"/a"`) || !strings.Contains(a, `"/a"`) {
		t.Error("JSON(\"/b\") still holds /a")
	}
}

// Many tools with the names a Namer hands out, from messy servers: the
// document must load and validate, whatever the schemas look like.
func TestBuildManyToolsValidates(t *testing.T) {
	schemas := []string{
		``, `{}`, `true`, `false`, `{"type":"object"}`, `{"type":"string"}`, `not json`, `[]`, `null`,
		`{"type":"object","properties":{"a":{"$ref":"#/$defs/A"},"b":{"$ref":"#/definitions/B"}},"$defs":{"A":{"type":"string"}},"definitions":{"B":{"type":"integer"}}}`,
		`{"type":"object","properties":{"t":{"$ref":"#/$defs/Node"}},"$defs":{"Node":{"type":"object","properties":{"kids":{"type":"array","items":{"$ref":"#/$defs/Node"}}}}}}`,
		`{"type":"object","properties":{"x":{"type":"number","minimum":1,"exclusiveMinimum":true,"nullable":true},"y":{"type":"array","items":[{"type":"string"}],"additionalItems":false}},"dependencies":{"x":["y"]}}`,
		`{"type":"object","markdownDescription":"m","properties":{"a":{"type":"string","pattern":"^a$","format":"uuid","default":"a","examples":["a"]}}}`,
		`{"type":"object","properties":{"a":{"type":"string","pattern":"(?<=x)"}}}`,
		`{"type":"object","properties":{"a":{"$ref":"#/properties/b"},"b":{"type":"string"}}}`,
		deepObject(100),
	}
	var n Namer
	n.Reserve("openapi.json")
	var ops []Operation
	names := []string{"get-sum", "get_sum", "get.sum", "naïve", "naéve", "openapi.json", "", ".", "..", strings.Repeat("long", 30), "1st", "Error", "Error_input", "x_input__A"}
	for i := 0; i < 60; i++ {
		name := names[i%len(names)]
		if i >= len(names) {
			name = fmt.Sprintf("%s-%d", name, i)
		}
		tool := Tool{
			Name:        name,
			Description: fmt.Sprintf("Tool %d.", i),
			InputSchema: json.RawMessage(schemas[i%len(schemas)]),
		}
		if s := schemas[(i+3)%len(schemas)]; i%2 == 0 && s != "" {
			tool.OutputSchema = json.RawMessage(s)
		}
		if i%3 == 0 {
			tool.Annotations = json.RawMessage(`{"destructiveHint":true}`)
		}
		server := []string{"alpha", "beta"}[i%2]
		ops = append(ops, Operation{
			Path:        "/" + server + "/" + n.PathSegment(name),
			OperationID: n.OperationID(server, name),
			Server:      server,
			Tool:        tool,
		})
	}
	d, err := Build(Info{Title: "many"}, ops, true)
	if err != nil {
		t.Fatal(err)
	}
	doc := loadAndValidate(t, d.JSON("/"))
	if got := doc.Paths.Len(); got != len(ops) {
		t.Errorf("%d paths, want %d", got, len(ops))
	}
	for _, op := range ops {
		item := doc.Paths.Value(op.Path)
		if item == nil || item.Post == nil {
			t.Errorf("no POST %s", op.Path)
			continue
		}
		if item.Post.OperationID != op.OperationID {
			t.Errorf("POST %s: operationId %q, want %q", op.Path, item.Post.OperationID, op.OperationID)
		}
		if strings.TrimSpace(item.Post.Description) == "" {
			t.Errorf("POST %s: empty description", op.Path)
		}
	}
}

func deepObject(n int) string {
	s := `{"type":"string"}`
	for range n {
		s = `{"type":"object","properties":{"a":` + s + `}}`
	}
	return s
}

func TestBuildMapsRenamedArgumentsOnTheOperation(t *testing.T) {
	tool := Tool{Name: "t", InputSchema: json.RawMessage(`{"type":"object","properties":{"user-id":{"type":"string","x-order":1},"ok":{"type":"integer"}},"required":["user-id"]}`)}
	d, err := Build(Info{Title: "t"}, []Operation{{Path: "/t", OperationID: "t", Tool: tool}}, false)
	if err != nil {
		t.Fatal(err)
	}
	m := generic(t, d.JSON("/"))
	if got := get(m, "paths", "/t", "post", ArgumentNamesExtension); !jsonEqual(got, map[string]string{"user_id": "user-id"}) {
		t.Errorf("%s = %v, want user_id → user-id", ArgumentNamesExtension, got)
	}
	props, _ := get(m, "components", "schemas", "t_input", "properties").(map[string]any)
	if !jsonEqual(keysOf(props), []string{"ok", "user_id"}) {
		t.Errorf("arguments = %v, want ok and user_id", keysOf(props))
	}
	for name, p := range props {
		for k := range p.(map[string]any) {
			if strings.HasPrefix(k, "x-") {
				t.Errorf("argument %s has the extension %s", name, k)
			}
		}
	}
}

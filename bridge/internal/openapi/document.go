package openapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/schema"
)

// Version is the OpenAPI version of the documents built here.
const Version = "3.1.0"

// Info is the document's info object.
type Info struct {
	Title       string
	Description string
	Version     string
	// Security is the scheme every operation requires, declared in the
	// components under SecurityName; nil declares none.
	Security *openapi3.SecurityScheme
	// SecurityName names Security; "auth" when empty.
	SecurityName string
}

// Tool is what a document says about one MCP tool: what the server's tool
// listing says about it.
type Tool struct {
	Name        string
	Title       string // the tool's title, or its annotations' title; "" for none
	Description string
	// InputSchema and OutputSchema are the server's JSON Schemas, byte for
	// byte; OutputSchema is nil when the tool declares none.
	InputSchema  json.RawMessage
	OutputSchema json.RawMessage
	// Annotations holds the tool's behaviour hints (readOnlyHint and the
	// like) as the server sent them, nil when absent.
	Annotations json.RawMessage
}

// Operation is one tool, served as POST Path.
type Operation struct {
	Path        string // e.g. "/get_current_time", or "/time/get_current_time" in a document of several servers
	OperationID string
	// Server names the tool's server; in a document of several servers it
	// becomes the operation's tag.
	Server string
	Tool   Tool
	// Input and Output are the tool's converted schemas (see Convert);
	// Output is nil when the tool declares no output schema. Build converts
	// them when Input.Schema is nil.
	Input  schema.Result
	Output *schema.Result
	// TaskSupport is the tool's task support, "optional" or "required",
	// when it runs as a task: its operation then also answers 202 with a
	// TaskStatus. "" for a tool that runs no task.
	TaskSupport string
}

// Convert converts a tool's schemas for an Operation.
func Convert(t Tool) (schema.Result, *schema.Result) {
	in := schema.Input(t.InputSchema)
	if t.OutputSchema == nil {
		return in, nil
	}
	out := schema.Output(t.OutputSchema)
	return in, &out
}

// WrappedExtension marks an operation whose tool takes a non-object input,
// sent as the one argument it names.
const WrappedExtension = "x-mcp-arguments-wrapped"

// ArgumentNamesExtension maps, on an operation, the documented names of
// renamed arguments (names LLM providers refuse, such as "user-id",
// documented as "user_id") to the names the tool takes. The bridge renames
// them back; the argument schemas carry no extension, which some LLM
// providers refuse.
const ArgumentNamesExtension = "x-mcp-argument-names"

// Warning is something a tool's schemas lost in conversion.
type Warning struct {
	Tool    string
	Message string
}

// Document is a generated OpenAPI document, ready to serve.
type Document struct {
	// Warnings lists what the conversion of each tool's schemas lost.
	Warnings []Warning
	body     []byte // the document without "servers"
}

// ErrorSchemaName is the component describing every error response.
const ErrorSchemaName = "Error"

// Build generates the document for ops. tagged says whether operations are
// grouped by server (for a document covering several servers).
//
// It writes the document in one pass, each converted schema as encoded
// once (Result.JSON): as kin-openapi would encode the document, with every
// title an earlier schema of the components already has dropped (see
// schema.DropRepeatedTitles).
func Build(info Info, ops []Operation, tagged bool) (*Document, error) {
	errComp, err := errorComponent()
	if err != nil {
		return nil, fmt.Errorf("encoding OpenAPI document: %w", err)
	}
	var security json.RawMessage
	secName := info.SecurityName
	if secName == "" {
		secName = "auth"
	}
	if info.Security != nil {
		if security, err = json.Marshal(openapi3.SecurityRequirements{openapi3.NewSecurityRequirement().Authenticate(secName)}); err != nil {
			return nil, fmt.Errorf("encoding OpenAPI document: %w", err)
		}
	}
	out := &Document{}
	comps := map[string]component{ErrorSchemaName: errComp}
	paths := make(map[string][]byte, len(ops))
	tags := map[string]bool{}
	for _, op := range ops {
		o, warnings, err := operation(comps, op)
		if err != nil {
			return nil, fmt.Errorf("encoding OpenAPI document: tool %q: %w", op.Tool.Name, err)
		}
		o.Security = security
		for _, w := range warnings {
			out.Warnings = append(out.Warnings, Warning{Tool: op.Tool.Name, Message: w})
		}
		if tagged {
			o.Tags = []string{op.Server}
			tags[op.Server] = true
		}
		if paths[op.Path], err = json.Marshal(pathItem{Post: o}); err != nil {
			return nil, fmt.Errorf("encoding OpenAPI document: tool %q: %w", op.Tool.Name, err)
		}
	}

	var b bytes.Buffer
	b.Grow(len(paths) * 2048)
	b.WriteString(`{"components":{"schemas":`)
	if err := writeSchemas(&b, comps); err != nil {
		return nil, fmt.Errorf("encoding OpenAPI document: %w", err)
	}
	if info.Security != nil {
		b.WriteString(`,"securitySchemes":`)
		if err := writeJSON(&b, openapi3.SecuritySchemes{secName: &openapi3.SecuritySchemeRef{Value: info.Security}}); err != nil {
			return nil, fmt.Errorf("encoding OpenAPI document: %w", err)
		}
	}
	b.WriteString(`},"info":`)
	version := info.Version
	if version == "" {
		version = "1.0.0"
	}
	if err := writeJSON(&b, &openapi3.Info{Title: info.Title, Description: info.Description, Version: version}); err != nil {
		return nil, fmt.Errorf("encoding OpenAPI document: %w", err)
	}
	b.WriteString(`,"openapi":"` + Version + `","paths":{`)
	for i, path := range slices.Sorted(maps.Keys(paths)) {
		if i > 0 {
			b.WriteByte(',')
		}
		writeKey(&b, path)
		b.Write(paths[path])
	}
	b.WriteByte('}')
	if len(tags) > 0 {
		var list openapi3.Tags
		for _, t := range slices.Sorted(maps.Keys(tags)) {
			list = append(list, &openapi3.Tag{Name: t, Description: fmt.Sprintf("Tools of the MCP server %q.", t)})
		}
		b.WriteString(`,"tags":`)
		if err := writeJSON(&b, list); err != nil {
			return nil, fmt.Errorf("encoding OpenAPI document: %w", err)
		}
	}
	b.WriteByte('}')
	out.body = b.Bytes()
	return out, nil
}

// component is a schema of the document's components, encoded.
type component struct {
	json   []byte
	titles []string // the keys of its titles; see schema.TitleKeys
}

// errorComponent is the Error schema, encoded once.
var errorComponent = sync.OnceValues(func() (component, error) {
	b, titles, err := schema.Encode(errorSchema())
	return component{json: b, titles: titles}, err
})

// writeSchemas writes comps as a JSON object, in the order of their names,
// dropping the titles an earlier schema already has: a schema that keeps
// them all is written as encoded, the others decoded, stripped and encoded
// again.
func writeSchemas(b *bytes.Buffer, comps map[string]component) error {
	seen := schema.Titles{}
	b.WriteByte('{')
	for i, name := range slices.Sorted(maps.Keys(comps)) {
		c := comps[name]
		if i > 0 {
			b.WriteByte(',')
		}
		writeKey(b, name)
		if !repeatsTitle(seen, c.titles) {
			for _, k := range c.titles {
				seen[k] = true
			}
			b.Write(c.json)
			continue
		}
		var v any
		dec := json.NewDecoder(bytes.NewReader(c.json))
		dec.UseNumber()
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("schema %q: %w", name, err)
		}
		seen.Drop(v)
		if err := writeJSON(b, v); err != nil {
			return fmt.Errorf("schema %q: %w", name, err)
		}
	}
	b.WriteByte('}')
	return nil
}

// repeatsTitle says whether a title of keys (in the order of
// schema.TitleKeys) is in seen or repeats an earlier one.
func repeatsTitle(seen schema.Titles, keys []string) bool {
	for i, k := range keys {
		if seen[k] || slices.Contains(keys[:i], k) {
			return true
		}
	}
	return false
}

// writeJSON appends v encoded as json.Marshal encodes it.
func writeJSON(b *bytes.Buffer, v any) error {
	enc, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b.Write(enc)
	return nil
}

// writeKey appends s as an object key.
func writeKey(b *bytes.Buffer, s string) {
	k, _ := json.Marshal(s) // a string always encodes
	b.Write(k)
	b.WriteByte(':')
}

// The parts of an operation, as kin-openapi encodes them: keys in sorted
// order, empty ones left out.
type (
	pathItem struct {
		Post *operationJSON `json:"post"`
	}
	operationJSON struct {
		Description string            `json:"description,omitempty"`
		OperationID string            `json:"operationId,omitempty"`
		RequestBody requestBodyJSON   `json:"requestBody"`
		Responses   responsesJSON     `json:"responses"`
		Security    json.RawMessage   `json:"security,omitempty"`
		Summary     string            `json:"summary,omitempty"`
		Tags        []string          `json:"tags,omitempty"`
		Annotations json.RawMessage   `json:"x-mcp-annotations,omitempty"`
		Renames     map[string]string `json:"x-mcp-argument-names,omitempty"`
		Wrapped     string            `json:"x-mcp-arguments-wrapped,omitempty"`
		Server      string            `json:"x-mcp-server,omitempty"`
		TaskSupport string            `json:"x-mcp-task-support,omitempty"`
		ToolName    string            `json:"x-mcp-tool-name"`
	}
	requestBodyJSON struct {
		Content     contentJSON `json:"content"`
		Description string      `json:"description,omitempty"`
		Required    bool        `json:"required,omitempty"`
	}
	responsesJSON struct {
		OK       responseJSON  `json:"200"`
		Accepted *responseJSON `json:"202,omitempty"`
		Default  responseJSON  `json:"default"`
	}
	responseJSON struct {
		Content     contentJSON `json:"content"`
		Description string      `json:"description"`
	}
	contentJSON struct {
		JSON mediaTypeJSON `json:"application/json"`
		// Events is the alternative of a 200: the call as server-sent
		// events.
		Events *mediaTypeJSON `json:"text/event-stream,omitempty"`
	}
	mediaTypeJSON struct {
		Schema schemaJSON `json:"schema"`
	}
	// schemaJSON is a reference, or a schema of a description (and a
	// type) alone.
	schemaJSON struct {
		Ref         string `json:"$ref,omitempty"`
		Description string `json:"description,omitempty"`
		Type        string `json:"type,omitempty"`
	}
)

// Descriptions of every operation's parts.
const (
	requestDescription = "The tool's arguments, as a JSON object."
	resultDescription  = "The tool's result: its JSON value when it returns a single text that is JSON, " +
		"else that text as a string; a list when it returns several items or any image or audio " +
		"(as data: URIs)."
	eventsDescription = "With Accept: text/event-stream, the call as server-sent events: progress " +
		`({"progress", "total", "message"}) and log ({"level", "logger", "data"}) as the server sends them, ` +
		`then result (the JSON answer's body) ` +
		`or error ({"status", "detail"}: the status and body the JSON answer would have had).`
	ranDescription    = "The tool ran."
	failedDescription = "The call failed: invalid arguments (4xx), a tool error, or an unavailable server (5xx)."
	// startedDescription is that of the 202 of a tool that runs as a task.
	startedDescription = "With the header Prefer: respond-async, the tool started as a task: " +
		"its Location header is where to poll it (GET) or cancel it (DELETE)."
)

// eventsMediaType is every operation's streamed answer.
var eventsMediaType = mediaTypeJSON{schemaJSON{Type: "string", Description: eventsDescription}}

// operation describes one tool and adds its schemas to comps.
func operation(comps map[string]component, op Operation) (*operationJSON, []string, error) {
	t := op.Tool
	o := &operationJSON{OperationID: op.OperationID, Summary: t.Title, ToolName: t.Name, Server: op.Server}
	if o.Summary == "" {
		o.Summary = t.Name
	}
	if t.Annotations != nil {
		o.Annotations = json.RawMessage(t.Annotations)
	}

	if op.Input.Schema == nil { // not converted by the caller
		op.Input, op.Output = Convert(t)
	}
	warnings := append(slices.Clone(op.Input.Warnings), outputWarnings(op.Output)...)
	o.Wrapped = op.Input.Wrapped
	o.Renames = op.Input.Renames
	inName := op.OperationID + "_input"
	c, err := componentOf(op.Input)
	if err != nil {
		return nil, nil, err
	}
	comps[inName] = c
	o.RequestBody = requestBodyJSON{
		Content:     contentJSON{JSON: mediaTypeJSON{schemaJSON{Ref: schema.ComponentsPrefix + inName}}},
		Description: requestDescription,
		Required:    len(op.Input.Schema.Required) > 0,
	}

	result := schemaJSON{Description: resultDescription}
	if op.Output != nil {
		outName := op.OperationID + "_output"
		if comps[outName], err = componentOf(*op.Output); err != nil {
			return nil, nil, err
		}
		result = schemaJSON{Ref: schema.ComponentsPrefix + outName}
	}
	o.Responses = responsesJSON{
		OK: responseJSON{Content: contentJSON{JSON: mediaTypeJSON{result}, Events: &eventsMediaType},
			Description: ranDescription},
		Default: responseJSON{
			Content:     contentJSON{JSON: mediaTypeJSON{schemaJSON{Ref: schema.ComponentsPrefix + ErrorSchemaName}}},
			Description: failedDescription,
		},
	}

	if op.TaskSupport != "" {
		c, err := taskStatusComponent()
		if err != nil {
			return nil, nil, err
		}
		comps[TaskStatusSchemaName] = c
		o.TaskSupport = op.TaskSupport
		o.Responses.Accepted = &responseJSON{
			Content:     contentJSON{JSON: mediaTypeJSON{schemaJSON{Ref: schema.ComponentsPrefix + TaskStatusSchemaName}}},
			Description: startedDescription,
		}
	}

	o.Description = description(t, warnings)
	return o, warnings, nil
}

// componentOf is a converted schema as a component, encoded now if the
// conversion did not.
func componentOf(r schema.Result) (component, error) {
	if r.JSON != nil {
		return component{json: r.JSON, titles: r.TitleKeys}, nil
	}
	b, titles, err := schema.Encode(r.Schema)
	return component{json: b, titles: titles}, err
}

func outputWarnings(r *schema.Result) []string {
	if r == nil {
		return nil
	}
	return r.Warnings
}

// description is never empty: clients use it as the function description
// and some prefer an empty one over the summary.
func description(t Tool, warnings []string) string {
	d := strings.TrimSpace(t.Description)
	if d == "" {
		d = t.Title
	}
	if d == "" {
		d = t.Name
	}
	if len(warnings) > 0 {
		d += "\n\nNote: the argument schema could not be rendered exactly (" + strings.Join(warnings, "; ") + ")."
	}
	return d
}

func errorSchema() *openapi3.Schema {
	described := func(s *openapi3.Schema, desc string) *openapi3.SchemaRef {
		s.Description = desc
		return openapi3.NewSchemaRef("", s)
	}
	detail := openapi3.NewObjectSchema()
	detail.Properties = openapi3.Schemas{
		"message": described(openapi3.NewStringSchema(), "What went wrong and what to do about it."),
		"server":  described(openapi3.NewStringSchema(), "The MCP server involved."),
		"tool":    described(openapi3.NewStringSchema(), "The tool involved."),
		"code":    described(openapi3.NewIntegerSchema(), "The JSON-RPC error code, when the server answered with one."),
		"data":    described(&openapi3.Schema{}, "The JSON-RPC error data, when the server sent any."),
		"errors": described(&openapi3.Schema{
			Type: &openapi3.Types{openapi3.TypeArray},
			Items: openapi3.NewSchemaRef("", &openapi3.Schema{
				Type: &openapi3.Types{openapi3.TypeObject},
				Properties: openapi3.Schemas{
					"path":    described(openapi3.NewStringSchema(), "A JSON pointer to the failing argument; empty for the whole object."),
					"message": described(openapi3.NewStringSchema(), "What is wrong with it."),
				},
			}),
		}, "For arguments that do not match the tool's input schema: each problem found."),
	}
	detail.Required = []string{"message"}
	detail.AdditionalProperties = openapi3.AdditionalProperties{Has: ptrBool(true)}
	s := openapi3.NewObjectSchema()
	s.Properties = openapi3.Schemas{"detail": openapi3.NewSchemaRef("", detail)}
	s.Required = []string{"detail"}
	return s
}

func ptrBool(b bool) *bool { return &b }

// JSON returns the document with servers set to the one URL given, which
// depends on where the request came in (behind handle_path or a prefix).
func (d *Document) JSON(serverURL string) []byte {
	servers, _ := json.Marshal([]map[string]string{{"url": serverURL}})
	var b bytes.Buffer
	b.Grow(len(d.body) + len(servers) + 12)
	b.WriteString(`{"servers":`)
	b.Write(servers)
	if len(d.body) > 2 { // not "{}"
		b.WriteByte(',')
	}
	b.Write(d.body[1:])
	return b.Bytes()
}

// Size is the length of the document without servers, for logs.
func (d *Document) Size() int { return len(d.body) }

// TaskStatusSchemaName is the component describing a task's status, in a
// document with tools that run as tasks.
const TaskStatusSchemaName = "TaskStatus"

// taskStatusComponent is the TaskStatus schema, encoded once.
var taskStatusComponent = sync.OnceValues(func() (component, error) {
	b, titles, err := schema.Encode(taskStatusSchema())
	return component{json: b, titles: titles}, err
})

// taskStatusSchema describes the status of a task.
func taskStatusSchema() *openapi3.Schema {
	described := func(s *openapi3.Schema, desc string) *openapi3.SchemaRef {
		s.Description = desc
		return openapi3.NewSchemaRef("", s)
	}
	s := openapi3.NewObjectSchema()
	s.Description = "A task: a tool call that runs on while its caller polls it."
	s.Properties = openapi3.Schemas{
		"id":            described(openapi3.NewStringSchema(), "The task's id, the last segment of its Location."),
		"tool":          described(openapi3.NewStringSchema(), "The tool the task runs."),
		"status":        described(openapi3.NewStringSchema().WithEnum("working", "input_required", "completed", "failed", "cancelled"), "Where the task is."),
		"statusMessage": described(openapi3.NewStringSchema(), "What the server says of the task's progress."),
		"createdAt":     described(openapi3.NewStringSchema(), "When the task started (RFC 3339)."),
		"lastUpdatedAt": described(openapi3.NewStringSchema(), "When the server last updated the task (ISO 8601)."),
		"pollInterval":  described(openapi3.NewIntegerSchema(), "How often to poll, in milliseconds."),
	}
	s.Required = []string{"id", "tool", "status", "createdAt"}
	return s
}

package openapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

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
func Build(info Info, ops []Operation, tagged bool) (*Document, error) {
	doc := &openapi3.T{
		OpenAPI: Version,
		Info: &openapi3.Info{
			Title:       info.Title,
			Description: info.Description,
			Version:     info.Version,
		},
		Paths: openapi3.NewPathsWithCapacity(len(ops)),
		Components: &openapi3.Components{
			Schemas: openapi3.Schemas{ErrorSchemaName: openapi3.NewSchemaRef("", errorSchema())},
		},
	}
	if doc.Info.Version == "" {
		doc.Info.Version = "1.0.0"
	}
	var security *openapi3.SecurityRequirements
	if info.Security != nil {
		name := info.SecurityName
		if name == "" {
			name = "auth"
		}
		doc.Components.SecuritySchemes = openapi3.SecuritySchemes{name: &openapi3.SecuritySchemeRef{Value: info.Security}}
		security = &openapi3.SecurityRequirements{openapi3.NewSecurityRequirement().Authenticate(name)}
	}
	out := &Document{}
	tags := map[string]bool{}
	for _, op := range ops {
		o, warnings := operation(doc.Components.Schemas, op)
		o.Security = security
		for _, w := range warnings {
			out.Warnings = append(out.Warnings, Warning{Tool: op.Tool.Name, Message: w})
		}
		if tagged {
			o.Tags = []string{op.Server}
			tags[op.Server] = true
		}
		doc.Paths.Set(op.Path, &openapi3.PathItem{Post: o})
	}
	names := make([]string, 0, len(tags))
	for t := range tags {
		names = append(names, t)
	}
	sort.Strings(names)
	for _, t := range names {
		doc.Tags = append(doc.Tags, &openapi3.Tag{Name: t, Description: fmt.Sprintf("Tools of the MCP server %q.", t)})
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("encoding OpenAPI document: %w", err)
	}
	if body, err = uniqueTitles(body); err != nil {
		return nil, fmt.Errorf("encoding OpenAPI document: %w", err)
	}
	out.body = body
	return out, nil
}

// uniqueTitles drops the titles of body's schemas that an earlier schema
// already has (see schema.DropRepeatedTitles), in the order of the
// components' names. The converted schemas are shared by the documents a
// tool appears in, so this works on the encoded document.
func uniqueTitles(body []byte) ([]byte, error) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	comps, _ := doc["components"].(map[string]any)
	schemas, _ := comps["schemas"].(map[string]any)
	names := make([]string, 0, len(schemas))
	for name := range schemas {
		names = append(names, name)
	}
	sort.Strings(names)
	ordered := make([]any, len(names))
	for i, name := range names {
		ordered[i] = schemas[name]
	}
	if !schema.DropRepeatedTitles(ordered...) {
		return body, nil
	}
	return json.Marshal(doc)
}

// operation describes one tool and adds its schemas to comps.
func operation(comps openapi3.Schemas, op Operation) (*openapi3.Operation, []string) {
	t := op.Tool
	o := openapi3.NewOperation()
	o.OperationID = op.OperationID
	o.Summary = t.Title
	if o.Summary == "" {
		o.Summary = t.Name
	}
	o.Extensions = map[string]any{"x-mcp-tool-name": t.Name}
	if op.Server != "" {
		o.Extensions["x-mcp-server"] = op.Server
	}
	if t.Annotations != nil {
		o.Extensions["x-mcp-annotations"] = json.RawMessage(t.Annotations)
	}

	if op.Input.Schema == nil { // not converted by the caller
		op.Input, op.Output = Convert(t)
	}
	warnings := append(slices.Clone(op.Input.Warnings), outputWarnings(op.Output)...)
	if op.Input.Wrapped != "" {
		o.Extensions[WrappedExtension] = op.Input.Wrapped
	}
	if len(op.Input.Renames) > 0 {
		o.Extensions[ArgumentNamesExtension] = op.Input.Renames
	}
	inName := op.OperationID + "_input"
	comps[inName] = openapi3.NewSchemaRef("", op.Input.Schema)
	body := openapi3.NewRequestBody().
		WithDescription("The tool's arguments, as a JSON object.").
		WithJSONSchemaRef(openapi3.NewSchemaRef(schema.ComponentsPrefix+inName, op.Input.Schema))
	body.Required = len(op.Input.Schema.Required) > 0
	o.RequestBody = &openapi3.RequestBodyRef{Value: body}

	result := openapi3.NewSchemaRef("", &openapi3.Schema{
		Description: "The tool's result: its JSON value when it returns a single text that is JSON, " +
			"else that text as a string; a list when it returns several items or any image or audio " +
			"(as data: URIs).",
	})
	if op.Output != nil {
		outName := op.OperationID + "_output"
		comps[outName] = openapi3.NewSchemaRef("", op.Output.Schema)
		result = openapi3.NewSchemaRef(schema.ComponentsPrefix+outName, op.Output.Schema)
	}
	o.Responses = openapi3.NewResponses(
		openapi3.WithStatus(200, &openapi3.ResponseRef{Value: openapi3.NewResponse().
			WithDescription("The tool ran.").
			WithContent(openapi3.NewContentWithJSONSchemaRef(result))}),
		openapi3.WithName("default", openapi3.NewResponse().
			WithDescription("The call failed: invalid arguments (4xx), a tool error, or an unavailable server (5xx).").
			WithContent(openapi3.NewContentWithJSONSchemaRef(
				openapi3.NewSchemaRef(schema.ComponentsPrefix+ErrorSchemaName, errorSchema())))),
	)

	o.Description = description(t, warnings)
	return o, warnings
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

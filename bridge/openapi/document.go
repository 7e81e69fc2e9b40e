package openapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/schema"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// Version is the OpenAPI version of the documents built here.
const Version = "3.1.0"

// Info is the document's info object.
type Info struct {
	Title       string
	Description string
	Version     string
}

// Operation is one tool, served as POST Path.
type Operation struct {
	Path        string // e.g. "/get_current_time", or "/time/get_current_time" in a document of several servers
	OperationID string
	// Server names the tool's server; in a document of several servers it
	// becomes the operation's tag.
	Server string
	Tool   *upstream.Tool
}

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
	out := &Document{}
	tags := map[string]bool{}
	for _, op := range ops {
		o, warnings := operation(doc.Components.Schemas, op)
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
	out.body = body
	return out, nil
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

	in := schema.Input(t.InputSchema, op.OperationID+"_input")
	warnings := in.Warnings
	inName := op.OperationID + "_input"
	addComponents(comps, in.Components)
	comps[inName] = openapi3.NewSchemaRef("", in.Schema)
	body := openapi3.NewRequestBody().
		WithDescription("The tool's arguments, as a JSON object.").
		WithJSONSchemaRef(openapi3.NewSchemaRef(schema.ComponentsPrefix+inName, in.Schema))
	body.Required = len(in.Schema.Required) > 0
	o.RequestBody = &openapi3.RequestBodyRef{Value: body}

	result := openapi3.NewSchemaRef("", &openapi3.Schema{
		Description: "The tool's result: its JSON value when it returns a single text that is JSON, " +
			"else that text as a string; a list when it returns several items or any image or audio " +
			"(as data: URIs).",
	})
	if t.OutputSchema != nil {
		outRes := schema.Output(t.OutputSchema, op.OperationID+"_output")
		warnings = append(warnings, outRes.Warnings...)
		outName := op.OperationID + "_output"
		addComponents(comps, outRes.Components)
		comps[outName] = openapi3.NewSchemaRef("", outRes.Schema)
		result = openapi3.NewSchemaRef(schema.ComponentsPrefix+outName, outRes.Schema)
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

func addComponents(comps openapi3.Schemas, add map[string]*openapi3.Schema) {
	for name, s := range add {
		comps[name] = openapi3.NewSchemaRef("", s)
	}
}

// description is never empty: clients use it as the function description
// and some prefer an empty one over the summary.
func description(t *upstream.Tool, warnings []string) string {
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

package openapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/schema"
)

// referenceBuild is how Build generated the document for ops before it
// wrote it in one pass: kin-openapi encodes the whole document, which is
// then decoded to drop repeated titles. Build must mean the same.
//
// It generates the document for ops. tagged says whether operations are
// grouped by server (for a document covering several servers).
func referenceBuild(info Info, ops []Operation, tagged bool) (*Document, error) {
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
		o, warnings := referenceOperation(doc.Components.Schemas, op)
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
	if body, err = referenceUniqueTitles(body); err != nil {
		return nil, fmt.Errorf("encoding OpenAPI document: %w", err)
	}
	out.body = body
	return out, nil
}

// referenceUniqueTitles drops the titles of body's schemas that an earlier schema
// already has (see schema.DropRepeatedTitles), in the order of the
// components' names. The converted schemas are shared by the documents a
// tool appears in, so this works on the encoded document.
func referenceUniqueTitles(body []byte) ([]byte, error) {
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

// referenceOperation describes one tool and adds its schemas to comps.
func referenceOperation(comps openapi3.Schemas, op Operation) (*openapi3.Operation, []string) {
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
	ok := openapi3.NewContentWithJSONSchemaRef(result)
	ok["text/event-stream"] = openapi3.NewMediaType().WithSchema(&openapi3.Schema{
		Type: &openapi3.Types{openapi3.TypeString},
		Description: "With Accept: text/event-stream, the call as server-sent events: progress " +
			`({"progress", "total", "message"}) and log ({"level", "logger", "data"}) as the server sends them, ` +
			`then result (the JSON answer's body) ` +
			`or error ({"status", "detail"}: the status and body the JSON answer would have had).`,
	})
	o.Responses = openapi3.NewResponses(
		openapi3.WithStatus(200, &openapi3.ResponseRef{Value: openapi3.NewResponse().
			WithDescription("The tool ran.").
			WithContent(ok)}),
		openapi3.WithName("default", openapi3.NewResponse().
			WithDescription("The call failed: invalid arguments (4xx), a tool error, or an unavailable server (5xx).").
			WithContent(openapi3.NewContentWithJSONSchemaRef(
				openapi3.NewSchemaRef(schema.ComponentsPrefix+ErrorSchemaName, errorSchema())))),
	)

	if op.TaskSupport != "" {
		comps[TaskStatusSchemaName] = openapi3.NewSchemaRef("", taskStatusSchema())
		o.Extensions["x-mcp-task-support"] = op.TaskSupport
		o.Responses.Set("202", &openapi3.ResponseRef{Value: openapi3.NewResponse().
			WithDescription("With the header Prefer: respond-async, the tool started as a task: " +
				"its Location header is where to poll it (GET) or cancel it (DELETE).").
			WithContent(openapi3.NewContentWithJSONSchemaRef(
				openapi3.NewSchemaRef(schema.ComponentsPrefix+TaskStatusSchemaName, taskStatusSchema())))})
	}

	o.Description = description(t, warnings)
	return o, warnings
}

// canonical is a document decoded, for comparing what two encodings mean.
func canonical(t *testing.T, body []byte) any {
	t.Helper()
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	return v
}

// TestBuildMeansWhatKinOpenAPIEncodes builds the documents of the test
// corpus both in one pass and the way kin-openapi encodes them: they must
// hold the same JSON values (the one-pass document may keep the key order
// of a tool's annotations, which the other loses when it drops a title),
// and the same warnings, with and without security, tags and schemas
// converted beforehand.
func TestBuildMeansWhatKinOpenAPIEncodes(t *testing.T) {
	secured := Info{Title: "secured", Description: "With a scheme.", Version: "2.0",
		Security: openapi3.NewJWTSecurityScheme(), SecurityName: "mcpo"}
	docs := corpusDocuments()
	docs = append(docs, corpusDocument{name: "generated", ops: generatedOperations(50)})
	tasks := generatedOperations(3)
	tasks[0].TaskSupport, tasks[1].TaskSupport = "required", "optional"
	docs = append(docs, corpusDocument{name: "tasks", ops: tasks})
	for _, d := range docs {
		for _, info := range []Info{{Title: d.name}, secured} {
			for _, pre := range []string{"converted by Build", "converted beforehand", "converted without encoding"} {
				t.Run(d.name+"/"+info.Title+"/"+pre, func(t *testing.T) {
					fresh := func() []Operation {
						ops := make([]Operation, len(d.ops))
						for i, op := range d.ops {
							ops[i] = Operation{Path: op.Path, OperationID: op.OperationID, Server: op.Server, Tool: op.Tool, TaskSupport: op.TaskSupport}
							if pre != "converted by Build" {
								ops[i].Input, ops[i].Output = Convert(op.Tool)
							}
							if pre == "converted without encoding" {
								ops[i].Input.JSON, ops[i].Input.TitleKeys = nil, nil
								if ops[i].Output != nil {
									ops[i].Output.JSON, ops[i].Output.TitleKeys = nil, nil
								}
							}
						}
						return ops
					}
					got, err := Build(info, fresh(), d.tagged)
					if err != nil {
						t.Fatal(err)
					}
					want, err := referenceBuild(info, fresh(), d.tagged)
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(canonical(t, got.JSON("/m")), canonical(t, want.JSON("/m"))) {
						t.Errorf("the documents differ:\none pass: %s\nkin-openapi: %s", got.JSON("/m"), want.JSON("/m"))
					}
					if !slices.Equal(got.Warnings, want.Warnings) {
						t.Errorf("warnings %v, want %v", got.Warnings, want.Warnings)
					}
				})
			}
		}
	}
}

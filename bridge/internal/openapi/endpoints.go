package openapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/schema"
)

// EndpointKind is a server's endpoint other than a tool.
type EndpointKind uint8

// The endpoints of a server's resources, prompts and completions.
const (
	// ListResources is GET <base>/resources.
	ListResources EndpointKind = iota
	// ReadResource is GET <base>/resources/read?uri=...
	ReadResource
	// ListPrompts is GET <base>/prompts.
	ListPrompts
	// GetPrompt is POST <base>/prompts/{name}.
	GetPrompt
	// Complete is POST <base>/complete.
	Complete
	// GetTask is GET <base>/tasks/{id}.
	GetTask
	// CancelTask is DELETE <base>/tasks/{id}.
	CancelTask
)

// EndpointName is the operationId of an endpoint in a server's own
// document, and its part of the operationId in a document of several
// servers.
func (k EndpointKind) EndpointName() string {
	return [...]string{"list_resources", "read_resource", "list_prompts", "get_prompt", "complete", "get_task", "cancel_task"}[k]
}

// EndpointPath is an endpoint's path below its server's base.
func (k EndpointKind) EndpointPath() string {
	return [...]string{"/resources", "/resources/read", "/prompts", "/prompts/{name}", "/complete", "/tasks/{id}", "/tasks/{id}"}[k]
}

// Endpoint is one of a server's endpoints other than a tool, as a
// document lists it.
type Endpoint struct {
	Kind EndpointKind
	// Path is the endpoint's path in the document: Kind's path below the
	// server's base.
	Path        string
	OperationID string
	// Server names the endpoint's server; in a document of several servers
	// it becomes the operation's tag.
	Server string
}

// WithEndpoints returns d with the operations of eps added, secured and
// tagged as Build secures and tags the tools' (info and tagged as given
// to Build). A path that a tool's operation already takes gets the
// endpoint's method beside the tool's POST. d itself is not modified.
//
// The document is edited as raw JSON: only the paths the endpoints take
// are decoded, so that the cost does not grow with the tools' schemas.
func WithEndpoints(d *Document, info Info, eps []Endpoint, tagged bool) (*Document, error) {
	if len(eps) == 0 {
		return d, nil
	}
	var doc, paths map[string]json.RawMessage
	if err := json.Unmarshal(d.body, &doc); err != nil {
		return nil, fmt.Errorf("adding endpoints: %w", err)
	}
	if err := unmarshalPresent(doc["paths"], &paths); err != nil {
		return nil, fmt.Errorf("adding endpoints: %w", err)
	}
	if paths == nil {
		paths = map[string]json.RawMessage{}
	}
	var security *openapi3.SecurityRequirements
	if info.Security != nil {
		name := info.SecurityName
		if name == "" {
			name = "auth"
		}
		security = &openapi3.SecurityRequirements{openapi3.NewSecurityRequirement().Authenticate(name)}
	}
	tags := map[string]bool{}
	for _, ep := range eps {
		o := endpointOperation(ep)
		o.Security = security
		if tagged {
			o.Tags = []string{ep.Server}
			tags[ep.Server] = true
		}
		var item map[string]json.RawMessage
		if err := unmarshalPresent(paths[ep.Path], &item); err != nil {
			return nil, fmt.Errorf("adding endpoint %s: %w", ep.OperationID, err)
		}
		if item == nil {
			item = map[string]json.RawMessage{}
		}
		b, err := json.Marshal(o)
		if err != nil {
			return nil, fmt.Errorf("adding endpoint %s: %w", ep.OperationID, err)
		}
		method := "get"
		switch ep.Kind {
		case GetPrompt, Complete:
			method = "post"
		case CancelTask:
			method = "delete"
		}
		item[method] = b
		if paths[ep.Path], err = json.Marshal(item); err != nil {
			return nil, fmt.Errorf("adding endpoint %s: %w", ep.OperationID, err)
		}
	}
	var err error
	if doc["paths"], err = json.Marshal(paths); err != nil {
		return nil, fmt.Errorf("adding endpoints: %w", err)
	}
	if slices.ContainsFunc(eps, func(ep Endpoint) bool { return ep.Kind == GetTask || ep.Kind == CancelTask }) {
		if doc["components"], err = withTaskStatus(doc["components"]); err != nil {
			return nil, fmt.Errorf("adding endpoints: %w", err)
		}
	}
	if tagged {
		if doc["tags"], err = withTags(doc["tags"], tags); err != nil {
			return nil, fmt.Errorf("adding endpoints: %w", err)
		}
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("adding endpoints: %w", err)
	}
	return &Document{Warnings: d.Warnings, body: body}, nil
}

// withTaskStatus returns the document's components (raw) with the
// TaskStatus schema, which the task endpoints refer to, added when no
// tool's operation added it.
func withTaskStatus(raw json.RawMessage) (json.RawMessage, error) {
	var comps, schemas map[string]json.RawMessage
	if err := unmarshalPresent(raw, &comps); err != nil {
		return nil, err
	}
	if comps == nil {
		comps = map[string]json.RawMessage{}
	}
	if err := unmarshalPresent(comps["schemas"], &schemas); err != nil {
		return nil, err
	}
	if schemas == nil {
		schemas = map[string]json.RawMessage{}
	}
	if schemas[TaskStatusSchemaName] != nil {
		return raw, nil
	}
	c, err := taskStatusComponent()
	if err != nil {
		return nil, err
	}
	schemas[TaskStatusSchemaName] = c.json
	if comps["schemas"], err = json.Marshal(schemas); err != nil {
		return nil, err
	}
	return json.Marshal(comps)
}

// unmarshalPresent decodes b into v unless b is absent.
func unmarshalPresent(b json.RawMessage, v any) error {
	if b == nil {
		return nil
	}
	return json.Unmarshal(b, v)
}

// withTags returns the document's tags (raw, absent for none) with those
// of tags it lacks (a server with endpoints but no tools) added.
func withTags(raw json.RawMessage, tags map[string]bool) (json.RawMessage, error) {
	var list []*openapi3.Tag
	if err := unmarshalPresent(raw, &list); err != nil {
		return nil, err
	}
	for _, t := range list {
		delete(tags, t.Name)
	}
	names := make([]string, 0, len(tags))
	for name := range tags {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		list = append(list, &openapi3.Tag{Name: name, Description: fmt.Sprintf("Tools of the MCP server %q.", name)})
	}
	return json.Marshal(list)
}

// endpointOperation describes an endpoint.
func endpointOperation(ep Endpoint) *openapi3.Operation {
	o := openapi3.NewOperation()
	o.OperationID = ep.OperationID
	o.Extensions = map[string]any{"x-mcp-endpoint": ep.Kind.EndpointName()}
	if ep.Server != "" {
		o.Extensions["x-mcp-server"] = ep.Server
	}
	str := func(desc string) *openapi3.SchemaRef {
		s := openapi3.NewStringSchema()
		s.Description = desc
		return openapi3.NewSchemaRef("", s)
	}
	object := func(desc string, props openapi3.Schemas, required ...string) *openapi3.Schema {
		s := openapi3.NewObjectSchema()
		s.Description, s.Properties, s.Required = desc, props, required
		return s
	}
	stringMap := func(desc string) *openapi3.SchemaRef {
		s := openapi3.NewObjectSchema()
		s.Description = desc
		s.AdditionalProperties = openapi3.AdditionalProperties{Schema: openapi3.NewSchemaRef("", openapi3.NewStringSchema())}
		return openapi3.NewSchemaRef("", s)
	}
	var (
		ok       string
		result   = openapi3.NewContentWithJSONSchema(object("The server's result, as the MCP server sent it.", nil))
		failures = "The request failed: bad input (4xx), or an unavailable server (5xx)."
	)
	switch ep.Kind {
	case ListResources:
		o.Summary = "List resources"
		o.Description = fmt.Sprintf("Lists the resources of the MCP server %q (every page) and its resource templates: "+
			"their URIs (or URI templates), names, descriptions and MIME types. Read one with read_resource.", ep.Server)
		ok = "The resources and the resource templates."
		result = openapi3.NewContentWithJSONSchema(object(ok, openapi3.Schemas{
			"resources":         openapi3.NewSchemaRef("", openapi3.NewArraySchema().WithItems(object("A resource, as the server lists it.", nil))),
			"resourceTemplates": openapi3.NewSchemaRef("", openapi3.NewArraySchema().WithItems(object("A resource template (RFC 6570), as the server lists it.", nil))),
		}, "resources", "resourceTemplates"))
	case ReadResource:
		o.Summary = "Read a resource"
		o.Description = fmt.Sprintf("Reads a resource of the MCP server %q by its URI, as list_resources lists it "+
			"or as a resource template expands. Answers with the resource's content (text as such, binary content as bytes) "+
			"and its MIME type; with Accept: application/json, the server's result.", ep.Server)
		p := openapi3.NewQueryParameter("uri").WithRequired(true).WithSchema(openapi3.NewStringSchema())
		p.Description = "The resource's URI."
		o.AddParameter(p)
		ok = "The resource's content."
		result = openapi3.NewContent()
		result["application/json"] = openapi3.NewMediaType().WithSchema(object("With Accept: application/json, the server's result: its contents.", nil))
		binary := openapi3.NewStringSchema()
		binary.Description = "The content itself, with the resource's MIME type."
		result["*/*"] = openapi3.NewMediaType().WithSchema(binary)
	case ListPrompts:
		o.Summary = "List prompts"
		o.Description = fmt.Sprintf("Lists the prompts of the MCP server %q (every page): their names, descriptions and arguments. "+
			"Get one with get_prompt.", ep.Server)
		ok = "The prompts."
		result = openapi3.NewContentWithJSONSchema(object(ok, openapi3.Schemas{
			"prompts": openapi3.NewSchemaRef("", openapi3.NewArraySchema().WithItems(object("A prompt, as the server lists it.", nil))),
		}, "prompts"))
	case GetPrompt:
		o.Summary = "Get a prompt"
		o.Description = fmt.Sprintf("Renders a prompt of the MCP server %q, as list_prompts lists it, with its arguments "+
			"(strings), and answers with its messages.", ep.Server)
		p := openapi3.NewPathParameter("name").WithSchema(openapi3.NewStringSchema())
		p.Description = "The prompt's name."
		o.AddParameter(p)
		// The arguments are one property, which Open WebUI lets through
		// (it passes only the properties an operation names); the
		// endpoint also takes them as the body itself.
		o.RequestBody = &openapi3.RequestBodyRef{Value: openapi3.NewRequestBody().
			WithDescription("The prompt's arguments.").
			WithJSONSchema(object("", openapi3.Schemas{
				"arguments": stringMap("The prompt's arguments by name, each a string, as list_prompts lists them; {} for none."),
			}))}
		ok = "The prompt's messages."
	case Complete:
		o.Summary = "Complete an argument"
		o.Description = fmt.Sprintf("Suggests values for an argument of a prompt or of a resource template of the MCP server %q "+
			"(completion/complete).", ep.Server)
		ref := object("What the argument belongs to: {\"type\": \"ref/prompt\", \"name\": ...} or {\"type\": \"ref/resource\", \"uri\": <the URI template>}.",
			openapi3.Schemas{
				"type": openapi3.NewSchemaRef("", openapi3.NewStringSchema().WithEnum("ref/prompt", "ref/resource")),
				"name": str("The prompt's name."),
				"uri":  str("The resource template's URI template."),
			}, "type")
		arg := object("The argument completed.", openapi3.Schemas{
			"name":  str("The argument's name."),
			"value": str("What it holds so far."),
		}, "name", "value")
		context := object("The arguments already given.", openapi3.Schemas{"arguments": stringMap("Their values, by name.")})
		o.RequestBody = &openapi3.RequestBodyRef{Value: openapi3.NewRequestBody().WithRequired(true).
			WithDescription("The argument to complete.").
			WithJSONSchema(object("", openapi3.Schemas{
				"ref":      openapi3.NewSchemaRef("", ref),
				"argument": openapi3.NewSchemaRef("", arg),
				"context":  openapi3.NewSchemaRef("", context),
			}, "ref", "argument"))}
		ok = "The suggestions: {\"completion\": {\"values\": [...], \"total\": ..., \"hasMore\": ...}}."
	}
	errors := openapi3.WithName("default", openapi3.NewResponse().WithDescription(failures).WithContent(openapi3.NewContentWithJSONSchemaRef(
		openapi3.NewSchemaRef(schema.ComponentsPrefix+ErrorSchemaName, errorSchema()))))
	switch ep.Kind {
	case GetTask, CancelTask:
		status := openapi3.NewContentWithJSONSchemaRef(openapi3.NewSchemaRef(schema.ComponentsPrefix+TaskStatusSchemaName, taskStatusSchema()))
		p := openapi3.NewPathParameter("id").WithSchema(openapi3.NewStringSchema())
		p.Description = "The task's id: the last segment of the Location the call that started it answered with."
		o.AddParameter(p)
		if ep.Kind == GetTask {
			o.Summary = "Poll a task"
			o.Description = fmt.Sprintf("Polls a task of a tool of the MCP server %q, started with the header Prefer: respond-async "+
				"(or a call of a task-only tool that outlived its timeout). While it works: 202 and its status, with Retry-After. "+
				"Once it has completed: the tool's answer, as a call gets it. A task another caller started is not found.", ep.Server)
			o.Responses = openapi3.NewResponses(
				openapi3.WithStatus(http.StatusOK, &openapi3.ResponseRef{Value: openapi3.NewResponse().
					WithDescription("The task completed: " + resultDescription).
					WithContent(openapi3.NewContentWithJSONSchema(&openapi3.Schema{Description: resultDescription}))}),
				openapi3.WithStatus(http.StatusAccepted, &openapi3.ResponseRef{Value: openapi3.NewResponse().
					WithDescription("The task works: its status.").WithContent(status)}),
				errors)
		} else {
			o.Summary = "Cancel a task"
			o.Description = fmt.Sprintf("Cancels a task of a tool of the MCP server %q that works, or forgets one that has ended.", ep.Server)
			o.Responses = openapi3.NewResponses(
				openapi3.WithStatus(http.StatusOK, &openapi3.ResponseRef{Value: openapi3.NewResponse().
					WithDescription("The task was cancelled: its status.").WithContent(status)}),
				openapi3.WithStatus(http.StatusNoContent, &openapi3.ResponseRef{Value: openapi3.NewResponse().
					WithDescription("The task had ended: its outcome is forgotten.")}),
				errors)
		}
		return o
	}
	o.Responses = openapi3.NewResponses(
		openapi3.WithStatus(http.StatusOK, &openapi3.ResponseRef{Value: openapi3.NewResponse().WithDescription(ok).WithContent(result)}),
		errors,
	)
	return o
}

package openapi

import (
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

func TestWithEndpointsAddsOperationsBesideTheTools(t *testing.T) {
	sec := openapi3.NewSecurityScheme().WithType("http").WithScheme("bearer")
	info := Info{Title: "t", Security: sec, SecurityName: "key"}
	tool := Operation{Path: "/s/resources", OperationID: "s_resources", Server: "s",
		Tool: Tool{Name: "resources", Description: "A tool named resources.", InputSchema: []byte(`{"type":"object"}`)}}
	doc, err := Build(info, []Operation{tool}, true)
	if err != nil {
		t.Fatal(err)
	}
	var eps []Endpoint
	for _, server := range []string{"s", "other"} { // other has no tools
		for k := ListResources; k <= Complete; k++ {
			eps = append(eps, Endpoint{Kind: k, Path: "/" + server + k.EndpointPath(), OperationID: server + "_" + k.EndpointName(), Server: server})
		}
	}
	with, err := WithEndpoints(doc, info, eps, true)
	if err != nil {
		t.Fatal(err)
	}
	d := loadAndValidate(t, with.JSON("/m"))
	item := d.Paths.Find("/s/resources")
	if item == nil || item.Post == nil || item.Get == nil || item.Post.OperationID != "s_resources" || item.Get.OperationID != "s_list_resources" {
		t.Fatalf("the path a tool and an endpoint share: %+v", item)
	}
	for _, ep := range eps {
		op := d.Paths.Find(ep.Path).GetOperation(map[bool]string{true: "POST", false: "GET"}[ep.Kind == GetPrompt || ep.Kind == Complete])
		switch {
		case op == nil:
			t.Errorf("%s: no operation", ep.OperationID)
		case op.OperationID != ep.OperationID || op.Description == "" || len(op.Tags) != 1 || op.Tags[0] != ep.Server:
			t.Errorf("%s: %q %q tags %v", ep.OperationID, op.OperationID, op.Description, op.Tags)
		case op.Security == nil || len(*op.Security) != 1 || (*op.Security)[0]["key"] == nil:
			t.Errorf("%s: security %v", ep.OperationID, op.Security)
		}
	}
	var tags []string
	for _, tag := range d.Tags {
		tags = append(tags, tag.Name)
	}
	if len(tags) != 2 || tags[0] != "s" || tags[1] != "other" {
		t.Errorf("tags %q, want s and other", tags)
	}
	if same, _ := WithEndpoints(doc, info, nil, true); same != doc {
		t.Errorf("no endpoints: a new document")
	}
}

func TestWithEndpointsAddsTheTaskOperations(t *testing.T) {
	for _, c := range []struct {
		name string
		task string // of the one tool
	}{
		{"beside a tool that runs as a task", "required"},
		{"beside no tool that does (a document of granted tools)", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			tool := Operation{Path: "/research", OperationID: "research", TaskSupport: c.task,
				Tool: Tool{Name: "research", InputSchema: []byte(`{"type":"object"}`)}}
			doc, err := Build(Info{Title: "t"}, []Operation{tool}, false)
			if err != nil {
				t.Fatal(err)
			}
			var eps []Endpoint
			for _, k := range []EndpointKind{GetTask, CancelTask} {
				eps = append(eps, Endpoint{Kind: k, Path: k.EndpointPath(), OperationID: k.EndpointName(), Server: "s"})
			}
			with, err := WithEndpoints(doc, Info{Title: "t"}, eps, false)
			if err != nil {
				t.Fatal(err)
			}
			d := loadAndValidate(t, with.JSON("/m"))
			item := d.Paths.Find("/tasks/{id}")
			if item == nil || item.Get == nil || item.Delete == nil || item.Get.OperationID != "get_task" || item.Delete.OperationID != "cancel_task" {
				t.Fatalf("the task operations: %+v", item)
			}
			if item.Get.Responses.Status(202) == nil || item.Delete.Responses.Status(204) == nil || len(item.Get.Parameters) != 1 {
				t.Errorf("get_task responses %v, cancel_task's %v", item.Get.Responses, item.Delete.Responses)
			}
			if d.Components.Schemas[TaskStatusSchemaName] == nil {
				t.Error("no TaskStatus schema")
			}
			post := d.Paths.Find("/research").Post
			if accepted := post.Responses.Status(202) != nil; accepted != (c.task != "") || (c.task != "" && post.Extensions["x-mcp-task-support"] != c.task) {
				t.Errorf("the tool's 202 %v, x-mcp-task-support %v", accepted, post.Extensions["x-mcp-task-support"])
			}
		})
	}
}

// BenchmarkWithEndpoints measures what the endpoints add to the document
// of a server of 1,000 tools.
func BenchmarkWithEndpoints(b *testing.B) {
	doc, err := Build(Info{Title: "t"}, generatedOperations(1000), false)
	if err != nil {
		b.Fatal(err)
	}
	var eps []Endpoint
	for k := ListResources; k <= Complete; k++ {
		eps = append(eps, Endpoint{Kind: k, Path: k.EndpointPath(), OperationID: k.EndpointName(), Server: "s"})
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := WithEndpoints(doc, Info{Title: "t"}, eps, false); err != nil {
			b.Fatal(err)
		}
	}
}

package integration

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// resourceList is the answer of GET <base>/resources.
type resourceList struct {
	Resources []struct {
		URI      string `json:"uri"`
		Name     string `json:"name"`
		MIMEType string `json:"mimeType"`
	} `json:"resources"`
	ResourceTemplates []struct {
		URITemplate string `json:"uriTemplate"`
		Name        string `json:"name"`
	} `json:"resourceTemplates"`
}

// promptList is the answer of GET <base>/prompts, as of MCP's prompts/list.
type promptList struct {
	Prompts []struct {
		Name      string `json:"name"`
		Arguments []struct {
			Name     string `json:"name"`
			Required bool   `json:"required"`
		} `json:"arguments"`
	} `json:"prompts"`
}

func getJSON(t *testing.T, path string, v any, header ...string) {
	t.Helper()
	r := do(t, http.MethodGet, path, "", header...)
	if r.status != http.StatusOK {
		t.Fatalf("GET %s: %s", path, r)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, r.body)
	}
}

func readURI(uri string) string { return "/resources/read?uri=" + url.QueryEscape(uri) }

func TestResourcesPromptsAndCompletionsOverREST(t *testing.T) {
	opts := fixture.Options{Resources: true}
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /fx {
		%s
	}
	mcpo /multi {
		server fx {
			%s
		}
		server quiet {
			%s
			resources off
			prompts off
		}
	}
	mcpo /small {
		%s
		max_request_body 300
	}
}
`, httpPort, fixtureCommand(opts), nested(fixtureCommand(opts)), nested(fixtureCommand(opts)), fixtureCommand(opts)))
	body := waitReady(t, "/fx/openapi.json")
	loadDoc(t, "fixture-resources", body, fixture.InputSchemas(opts))
	waitReady(t, "/multi/quiet/openapi.json")
	waitReady(t, "/small/openapi.json")
	agg := waitReady(t, "/multi/openapi.json")
	loadDoc(t, "fixture-resources-aggregate", agg, fixture.InputSchemas(opts))

	t.Run("documents list the endpoints as operations", func(t *testing.T) {
		for _, c := range []struct {
			doc  []byte
			path string
			want map[string]string // operationId -> "METHOD path"
		}{
			{body, "/fx/openapi.json", map[string]string{
				"list_resources": "GET /resources", "read_resource": "GET /resources/read",
				"list_prompts": "GET /prompts", "get_prompt": "POST /prompts/{name}", "complete": "POST /complete",
			}},
			{agg, "/multi/openapi.json", map[string]string{
				"fx_list_resources": "GET /fx/resources", "fx_read_resource": "GET /fx/resources/read",
				"fx_list_prompts": "GET /fx/prompts", "fx_get_prompt": "POST /fx/prompts/{name}", "fx_complete": "POST /fx/complete",
			}},
		} {
			got := endpointOperations(t, c.doc)
			if !mapsEqual(got, c.want) {
				t.Errorf("%s: endpoints %v, want %v", c.path, got, c.want)
			}
		}
		quiet := waitReady(t, "/multi/quiet/openapi.json")
		if got := endpointOperations(t, quiet); len(got) != 0 {
			t.Errorf("with resources and prompts off, the document lists %v", got)
		}
	})

	t.Run("Open WebUI makes tools of the endpoints and calls them", func(t *testing.T) {
		// What each converter lets the model send, by function.
		want := map[string][]string{
			"list_resources": nil, "read_resource": {"uri"}, "list_prompts": nil,
			"get_prompt": {"arguments", "name"}, "complete": {"argument", "context", "ref"},
		}
		for _, variant := range owuiVariants {
			tools, err := openWebUITools(body, variant)
			if err != nil {
				t.Fatalf("%s: %v", variant, err)
			}
			got := map[string][]string{}
			for _, tool := range tools {
				if _, ok := want[tool.Name]; !ok {
					continue
				}
				props, _ := tool.Parameters["properties"].(map[string]any)
				got[tool.Name] = owuiSortedKeys(props)
				if len(props) == 0 {
					got[tool.Name] = nil
				}
			}
			for name, params := range want {
				if g, ok := got[name]; !ok || !slices.Equal(g, params) {
					t.Errorf("%s: function %s takes %q (present: %v), want %q", variant, name, g, ok, params)
				}
			}
		}
		// The calls Open WebUI's executor (v0.9) makes of them: the
		// query urlencoded, the path parameter quoted and sent in the
		// body too.
		if r := do(t, http.MethodGet, "/fx/resources/read?"+url.Values{"uri": {fixture.TextResourceURI}}.Encode(), ""); r.status != 200 || string(r.body) != fixture.TextResource {
			t.Errorf("read_resource: %s", r)
		}
		if r := do(t, http.MethodPost, "/fx/prompts/"+url.PathEscape(fixture.PlainPrompt), `{"name":"plain"}`, "Content-Type", "application/json"); r.status != 200 {
			t.Errorf("get_prompt: %s", r)
		}
		if r := do(t, http.MethodPost, "/fx/prompts/"+url.PathEscape(fixture.GreetPrompt), `{"name":"greet","arguments":{"who":"Bo"}}`,
			"Content-Type", "application/json"); r.status != 200 || !strings.Contains(string(r.body), "Hello, Bo!") {
			t.Errorf("get_prompt with arguments: %s", r)
		}
		if r := do(t, http.MethodPost, "/fx/complete", `{"ref":{"type":"ref/prompt","name":"greet"},"argument":{"name":"style","value":"fr"}}`,
			"Content-Type", "application/json"); r.status != 200 || !strings.Contains(string(r.body), `["friendly"]`) {
			t.Errorf("complete: %s", r)
		}
	})

	t.Run("resources are listed with their templates", func(t *testing.T) {
		var list resourceList
		getJSON(t, "/fx/resources", &list)
		var uris []string
		for _, r := range list.Resources {
			uris = append(uris, r.URI)
		}
		slices.Sort(uris)
		want := []string{fixture.BlobResourceURI, fixture.TextResourceURI, fixture.OddResourceURI, fixture.HTMLResourceURI}
		slices.Sort(want)
		if !slices.Equal(uris, want) {
			t.Errorf("resources %q, want %q", uris, want)
		}
		if len(list.ResourceTemplates) != 1 || list.ResourceTemplates[0].URITemplate != fixture.ItemTemplate {
			t.Errorf("templates %+v, want %s", list.ResourceTemplates, fixture.ItemTemplate)
		}
		if r := do(t, http.MethodHead, "/multi/fx/resources", ""); r.status != 200 || len(r.body) != 0 {
			t.Errorf("HEAD: %s", r)
		}
	})

	t.Run("reads", func(t *testing.T) {
		for _, c := range []struct {
			name, path               string
			header                   []string
			status                   int
			ctype, disposition, body string
			bodyBytes                []byte
			wantInMessage            string
		}{
			{name: "text with charset", path: "/fx" + readURI(fixture.TextResourceURI), status: 200,
				ctype: "text/plain; charset=utf-8", disposition: `inline; filename=hello.txt`, body: fixture.TextResource},
			{name: "binary byte for byte", path: "/multi/fx" + readURI(fixture.BlobResourceURI), status: 200,
				ctype: "application/octet-stream", disposition: `attachment; filename=all-bytes.bin`, bodyBytes: fixture.BlobResource()},
			{name: "html is an attachment", path: "/fx" + readURI(fixture.HTMLResourceURI), status: 200,
				ctype: "text/html; charset=utf-8", disposition: `attachment; filename=page.html`, body: fixture.HTMLResource},
			{name: "an unsafe file name is made safe", path: "/fx" + readURI(fixture.OddResourceURI), status: 200,
				ctype: "text/plain; charset=utf-8", disposition: `inline; filename="a_b__X-Injected_ 1.txt"`, body: "odd"},
			{name: "a template expands with its variable encoded", path: "/fx/resources/read?template=" + url.QueryEscape(fixture.ItemTemplate) + "&id=" + url.QueryEscape("../x?y=1\r\nZ: 2"),
				status: 200, ctype: "text/plain; charset=utf-8", body: "fixture://items/..%2Fx%3Fy%3D1%0D%0AZ%3A%202"},
			{name: "JSON on request", path: "/fx" + readURI(fixture.BlobResourceURI), header: []string{"Accept", "application/json"}, status: 200,
				ctype: "application/json", body: `{"contents":[{"uri":"` + fixture.BlobResourceURI + `","mimeType":"application/octet-stream","blob":"` +
					base64.StdEncoding.EncodeToString(fixture.BlobResource()) + `"}]}`},
			{name: "an unknown URI", path: "/fx" + readURI("fixture://nope"), status: 404, wantInMessage: "fixture://nope"},
			{name: "no URI", path: "/fx/resources/read", status: 422, wantInMessage: "uri"},
			{name: "a template the server does not list", path: "/fx/resources/read?template=" + url.QueryEscape("file:///{+path}") + "&path=etc/passwd",
				status: 404, wantInMessage: "no resource template"},
			{name: "a variable the template lacks", path: "/fx/resources/read?template=" + url.QueryEscape(fixture.ItemTemplate) + "&id=1&path=x",
				status: 422, wantInMessage: "variables are id"},
			{name: "both uri and template", path: "/fx/resources/read?uri=a&template=b", status: 422, wantInMessage: "not both"},
			{name: "turned off", path: "/multi/quiet" + readURI(fixture.TextResourceURI), status: 404, wantInMessage: "turned off"},
			{name: "larger than the mount serves", path: "/small" + readURI(fixture.BlobResourceURI), status: 502, wantInMessage: "max_request_body raises the limit"},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := do(t, http.MethodGet, c.path, "", c.header...)
				if r.status != c.status {
					t.Fatalf("GET %s: %s", c.path, r)
				}
				if c.status != 200 {
					if !strings.Contains(string(r.body), c.wantInMessage) || !strings.HasPrefix(string(r.body), `{"detail":{"message":`) {
						t.Errorf("body %s, want a detail naming %q", r.body, c.wantInMessage)
					}
					return
				}
				if got := r.header.Get("Content-Type"); got != c.ctype {
					t.Errorf("Content-Type %q, want %q", got, c.ctype)
				}
				if got := r.header.Get("Content-Disposition"); c.disposition != "" && got != c.disposition {
					t.Errorf("Content-Disposition %q, want %q", got, c.disposition)
				}
				if got := r.header.Get("X-Content-Type-Options"); got != "nosniff" {
					t.Errorf("X-Content-Type-Options %q", got)
				}
				want := c.bodyBytes
				if want == nil {
					want = []byte(c.body)
				}
				if !bytes.Equal(r.body, want) {
					t.Errorf("body %q, want %q", r.body, want)
				}
			})
		}
	})

	t.Run("prompts", func(t *testing.T) {
		var list promptList
		getJSON(t, "/fx/prompts", &list)
		var names []string
		for _, p := range list.Prompts {
			names = append(names, p.Name)
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{fixture.GreetPrompt, fixture.PlainPrompt}) {
			t.Errorf("prompts %q", names)
		}
		for _, c := range []struct {
			name, path, body string
			status           int
			want             string
		}{
			{"with arguments", "/fx/prompts/greet", `{"who":"Ada","style":"formal"}`, 200, `Hello, Ada! (formal)`},
			{"in a mount of several", "/multi/fx/prompts/greet", `{"who":"Ada"}`, 200, `Hello, Ada!"`},
			{"Open WebUI's name in the body", "/fx/prompts/greet", `{"name":"greet","who":"Ada"}`, 200, `Hello, Ada!"`},
			{"as the document declares them", "/fx/prompts/greet", `{"name":"greet","arguments":{"who":"Ada","style":"dry"}}`, 200, `Hello, Ada! (dry)"`},
			{"a required argument missing from the declared form", "/fx/prompts/greet", `{"arguments":{}}`, 422, `missing who`},
			{"without arguments", "/fx/prompts/plain", ``, 200, `"plain"`},
			{"a required argument missing", "/fx/prompts/greet", `{"style":"x"}`, 422,
				`{"detail":{"message":"invalid arguments for prompt \"greet\": missing who","server":"fx","errors":[{"path":"/who","message":"required argument missing"}]}}`},
			{"an unknown argument and a number", "/fx/prompts/greet", `{"who":1,"mood":"x"}`, 422,
				`"errors":[{"path":"/mood","message":"the prompt takes no such argument"},{"path":"/who","message":"a prompt's arguments are strings"}]`},
			{"an unknown prompt", "/fx/prompts/nope", `{}`, 404, `its prompts are: greet, plain`},
			{"not an object", "/fx/prompts/greet", `[1]`, 422, `JSON object`},
			{"turned off", "/multi/quiet/prompts/greet", `{"who":"x"}`, 404, `turned off`},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := do(t, http.MethodPost, c.path, c.body, "Content-Type", "application/json")
				if r.status != c.status || !strings.Contains(string(r.body), c.want) {
					t.Errorf("POST %s %s: %s, want %d with %s", c.path, c.body, r, c.status, c.want)
				}
			})
		}
		if r := do(t, http.MethodGet, "/fx/prompts/greet", ""); r.status != http.StatusMethodNotAllowed {
			t.Errorf("GET a prompt: %s, want 405", r)
		}
	})

	t.Run("completions", func(t *testing.T) {
		for _, c := range []struct {
			name, body string
			status     int
			want       string
		}{
			{"a prompt's argument", `{"ref":{"type":"ref/prompt","name":"greet"},"argument":{"name":"style","value":"f"}}`, 200,
				`"values":["formal","friendly","funny"]`},
			{"a template's variable", `{"ref":{"type":"ref/resource","uri":"fixture://items/{id}"},"argument":{"name":"id","value":"1"}}`, 200,
				`"values":["1","10"]`},
			{"an unknown ref type", `{"ref":{"type":"ref/tool","name":"x"},"argument":{"name":"a","value":""}}`, 422, `neither ref/prompt nor ref/resource`},
			{"no argument", `{"ref":{"type":"ref/prompt","name":"greet"}}`, 422, `argument.name is missing`},
			{"an unknown field", `{"ref":{"type":"ref/prompt","name":"greet"},"argument":{"name":"style","value":""},"x":1}`, 422, `unknown field`},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := do(t, http.MethodPost, "/fx/complete", c.body, "Content-Type", "application/json")
				if r.status != c.status || !strings.Contains(string(r.body), c.want) {
					t.Errorf("POST complete %s: %s, want %d with %s", c.body, r, c.status, c.want)
				}
			})
		}
		if r := do(t, http.MethodPost, "/multi/quiet/complete", `{"ref":{"type":"ref/prompt","name":"greet"},"argument":{"name":"style","value":""}}`); r.status != 404 {
			t.Errorf("completions with both off: %s, want 404", r)
		}
	})
}

// nested indents a fixtureCommand for a server block.
func nested(s string) string { return strings.ReplaceAll(s, "\n\t\t", "\n\t\t\t") }

// endpointOperations maps the operationIds of a document's endpoints to
// their method and path.
func endpointOperations(t *testing.T, body []byte) map[string]string {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
			Endpoint    string `json:"x-mcp-endpoint"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for path, item := range doc.Paths {
		for method, op := range item {
			if op.Endpoint != "" {
				out[op.OperationID] = strings.ToUpper(method) + " " + path
			}
		}
	}
	return out
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestServerEverythingResourcesPromptsAndCompletions(t *testing.T) {
	script := everythingScript(t)
	memory := memoryScript(t)
	dir := t.TempDir()
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /peers {
		server everything {
			command node %s stdio
		}
		server memory {
			command node %s
			env MEMORY_FILE_PATH %s/memory.jsonl
		}
	}
}
`, httpPort, script, memory, dir))
	doc := waitReady(t, "/peers/everything/openapi.json")
	loadDoc(t, "everything-resources", doc, nil)
	waitReady(t, "/peers/memory/openapi.json")
	loadDoc(t, "peers-resources-aggregate", waitReady(t, "/peers/openapi.json"), nil)

	var list resourceList
	getJSON(t, "/peers/everything/resources", &list)
	var templates []string
	for _, tm := range list.ResourceTemplates {
		templates = append(templates, tm.URITemplate)
	}
	slices.Sort(templates)
	wantTemplates := []string{"demo://resource/dynamic/blob/{resourceId}", "demo://resource/dynamic/text/{resourceId}"}
	if len(list.Resources) == 0 || !slices.Equal(templates, wantTemplates) {
		t.Fatalf("server-everything lists %d resources and the templates %q, want some and %q", len(list.Resources), templates, wantTemplates)
	}
	t.Logf("server-everything: %d resources, %d templates", len(list.Resources), len(list.ResourceTemplates))

	t.Run("every resource reads as its JSON form says", func(t *testing.T) {
		for _, res := range list.Resources {
			raw := do(t, http.MethodGet, "/peers/everything"+readURI(res.URI), "")
			var js struct {
				Contents []struct {
					MIMEType string  `json:"mimeType"`
					Text     *string `json:"text"`
					Blob     *string `json:"blob"`
				} `json:"contents"`
			}
			getJSON(t, "/peers/everything"+readURI(res.URI), &js, "Accept", "application/json")
			if raw.status != 200 || len(js.Contents) != 1 {
				t.Fatalf("%s: %s; JSON %+v", res.URI, raw, js)
			}
			c := js.Contents[0]
			want := []byte(nil)
			if c.Text != nil {
				want = []byte(*c.Text)
			} else if c.Blob != nil {
				want, _ = base64.StdEncoding.DecodeString(*c.Blob)
			}
			if !bytes.Equal(raw.body, want) {
				t.Errorf("%s: %d bytes, the JSON form holds %d", res.URI, len(raw.body), len(want))
			}
			if ct := raw.header.Get("Content-Type"); !strings.HasPrefix(ct, c.MIMEType) {
				t.Errorf("%s: Content-Type %q, listed as %q", res.URI, ct, c.MIMEType)
			}
		}
	})

	t.Run("templates", func(t *testing.T) {
		for _, c := range []struct {
			name, template, id string
			status             int
			prefix             string
		}{
			{"blob, decoded", "demo://resource/dynamic/blob/{resourceId}", "3", 200, "Resource 3: This is a base64 blob created at "},
			{"text", "demo://resource/dynamic/text/{resourceId}", "7", 200, "Resource 7: This is a plaintext resource"},
			{"a traversal, encoded and refused", "demo://resource/dynamic/text/{resourceId}", "1/../../etc/passwd", 502, `{"detail":{"message":"`},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := do(t, http.MethodGet, "/peers/everything/resources/read?template="+url.QueryEscape(c.template)+"&resourceId="+url.QueryEscape(c.id), "")
				if r.status != c.status || !strings.HasPrefix(string(r.body), c.prefix) {
					t.Errorf("%s: %s, want %d starting %q", c.id, r, c.status, c.prefix)
				}
				if c.status != 200 && !strings.Contains(string(r.body), "1%2F..%2F..%2Fetc%2Fpasswd") {
					t.Errorf("the answer does not name the encoded URI: %s", r.body)
				}
			})
		}
	})

	t.Run("prompts", func(t *testing.T) {
		var prompts promptList
		getJSON(t, "/peers/everything/prompts", &prompts)
		var names []string
		for _, p := range prompts.Prompts {
			names = append(names, p.Name)
		}
		t.Logf("server-everything: prompts %q", names)
		for _, want := range []string{"simple-prompt", "args-prompt", "completable-prompt"} {
			if !slices.Contains(names, want) {
				t.Errorf("prompts %q lack %s", names, want)
			}
		}
		for _, c := range []struct {
			name, path, body string
			status           int
			want             string
		}{
			{"simple", "simple-prompt", ``, 200, `"messages":[`},
			{"with arguments", "completable-prompt", `{"department":"Sales","name":"Eve"}`, 200, `Please promote Eve to the head of the Sales team.`},
			{"a required argument missing", "completable-prompt", `{"department":"Sales"}`, 422, `missing name`},
		} {
			r := do(t, http.MethodPost, "/peers/everything/prompts/"+c.path, c.body, "Content-Type", "application/json")
			if r.status != c.status || !strings.Contains(string(r.body), c.want) {
				t.Errorf("%s: %s, want %d with %s", c.name, r, c.status, c.want)
			}
		}
	})

	t.Run("completions", func(t *testing.T) {
		for _, c := range []struct{ name, body, want string }{
			{"a prompt's argument", `{"ref":{"type":"ref/prompt","name":"completable-prompt"},"argument":{"name":"department","value":"S"}}`,
				`"values":["Sales","Support"]`},
			{"with context", `{"ref":{"type":"ref/prompt","name":"completable-prompt"},"argument":{"name":"name","value":""},"context":{"arguments":{"department":"Engineering"}}}`,
				`"values":["Alice","Bob","Charlie"]`},
			{"a template's variable", `{"ref":{"type":"ref/resource","uri":"demo://resource/dynamic/text/{resourceId}"},"argument":{"name":"resourceId","value":"12"}}`,
				`"values":["12"]`},
		} {
			r := do(t, http.MethodPost, "/peers/everything/complete", c.body, "Content-Type", "application/json")
			if r.status != 200 || !strings.Contains(string(r.body), c.want) {
				t.Errorf("%s: %s, want %s", c.name, r, c.want)
			}
		}
	})

	t.Run("server-memory's knowledge graph", func(t *testing.T) {
		if r := do(t, http.MethodPost, "/peers/memory/create_entities",
			`{"entities":[{"name":"Ada","entityType":"person","observations":["wrote the first program"]}]}`); r.status != 200 {
			t.Fatalf("create_entities: %s", r)
		}
		var list resourceList
		getJSON(t, "/peers/memory/resources", &list)
		if len(list.Resources) != 1 || list.Resources[0].URI != "memory://knowledge-graph" {
			t.Fatalf("server-memory lists %+v", list)
		}
		r := do(t, http.MethodGet, "/peers/memory"+readURI("memory://knowledge-graph"), "")
		if r.status != 200 || r.header.Get("Content-Type") != "application/json; charset=utf-8" || !strings.Contains(string(r.body), `"Ada"`) {
			t.Errorf("reading the graph: %s %q", r, r.header.Get("Content-Type"))
		}
		if r := do(t, http.MethodGet, "/peers/memory/prompts", ""); r.status != 404 || !strings.Contains(string(r.body), "does not declare") {
			t.Errorf("prompts of server-memory: %s, want 404", r)
		}
	})
}

// filesystemScript is server-filesystem's entry point among the peers.
func filesystemScript(t *testing.T) string {
	t.Helper()
	return peerScript(t, "server-filesystem")
}

// peerScript is the entry point of one of the peers'
// @modelcontextprotocol servers.
func peerScript(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(peers(t), "node_modules", "@modelcontextprotocol", name, "dist", "index.js")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is not installed among the test peers (make peers installs it): %v", name, err)
	}
	return p
}

func TestRequestsFromTheServerFollowItsSettings(t *testing.T) {
	opts := fixture.Options{Resources: true}
	dir := t.TempDir()
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /off {
		%s
	}
	mcpo /decline {
		%s
		elicitation decline
	}
	mcpo /defaults {
		%s
		elicitation defaults
		roots %s /srv/other
	}
}
`, httpPort, fixtureCommand(opts), fixtureCommand(opts), fixtureCommand(opts), dir))
	for _, m := range []string{"off", "decline", "defaults"} {
		waitReady(t, "/"+m+"/openapi.json")
	}
	for _, c := range []struct {
		name, path string
		status     int
		want       string
	}{
		{"no elicitation capability: the tool fails", "/off/ask", 500, "elicitation failed"},
		{"decline", "/decline/ask", 200, `"decline"`},
		{"defaults fill a form", "/defaults/ask", 200, `"accept map[color:blue]"`},
		{"defaults that miss a required field decline", "/defaults/ask_name", 200, `"decline"`},
		{"no roots capability", "/off/roots", 500, "roots/list failed"},
		{"roots", "/defaults/roots", 200, `"file://` + dir + `\nfile:///srv/other"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := do(t, http.MethodPost, c.path, `{}`)
			if r.status != c.status || !strings.Contains(string(r.body), c.want) {
				t.Errorf("POST %s: %s, want %d with %s", c.path, r, c.status, c.want)
			}
		})
	}
}

func TestServerFilesystemWorksInTheRootsItIsGiven(t *testing.T) {
	script := filesystemScript(t)
	dir, other := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "note.txt"), []byte("inside"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "secret.txt"), []byte("outside"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Started without directories: it takes them from the roots.
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /fs {
		command node %s
		roots %s
	}
}
`, httpPort, script, dir))
	loadDoc(t, "filesystem", waitReady(t, "/fs/openapi.json"), nil)
	// The server asks for the roots once initialized: it may not have
	// them yet when it lists its tools.
	eventually(t, waitLimit, "server-filesystem takes the roots", func() bool {
		r := do(t, http.MethodPost, "/fs/list_allowed_directories", `{}`)
		return r.status == 200 && strings.Contains(string(r.body), dir)
	})
	if r := do(t, http.MethodPost, "/fs/read_text_file", fmt.Sprintf(`{"path":%q}`, filepath.Join(dir, "note.txt"))); r.status != 200 || !strings.Contains(string(r.body), "inside") {
		t.Errorf("reading inside the root: %s", r)
	}
	if r := do(t, http.MethodPost, "/fs/read_text_file", fmt.Sprintf(`{"path":%q}`, filepath.Join(other, "secret.txt"))); r.status == 200 || !strings.Contains(string(r.body), "Access denied") {
		t.Errorf("reading outside the root: %s", r)
	}
	if r := do(t, http.MethodGet, "/fs/resources", ""); r.status != 404 {
		t.Errorf("resources of server-filesystem: %s, want 404 (it declares none)", r)
	}
}

func TestResourcesOfPerUserAndOnDemandServersComeFromTheCallersSession(t *testing.T) {
	script := memoryScript(t)
	dir := t.TempDir()
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /mem {
		identity {http.request.header.%s}
		server private {
			command node %s
			env MEMORY_FILE_PATH %s/{mcpo.user.id}.json
			isolation user
		}
		server lazy {
			%s
			start on_demand
		}
	}
}
`, httpPort, userHeader, script, dir, nested(fixtureCommand(fixture.Options{Resources: true}))))
	waitReady(t, "/mem/private/openapi.json")
	waitReady(t, "/mem/lazy/openapi.json")
	for _, user := range []string{"alice", "bob"} {
		mustCallAs(t, user, "/mem/private/create_entities",
			fmt.Sprintf(`{"entities":[{"name":"%s-note","entityType":"note","observations":["mine"]}]}`, user))
	}
	graph := "/mem/private" + readURI("memory://knowledge-graph")
	for _, c := range []struct{ user, sees, seesNot string }{
		{"alice", "alice-note", "bob-note"},
		{"bob", "bob-note", "alice-note"},
	} {
		r := do(t, http.MethodGet, graph, "", userHeader, c.user)
		if r.status != 200 || !strings.Contains(string(r.body), c.sees) || strings.Contains(string(r.body), c.seesNot) {
			t.Errorf("%s reads %s", c.user, r)
		}
	}
	if r := do(t, http.MethodGet, graph, ""); r.status != http.StatusUnauthorized {
		t.Errorf("a caller without an identity reads a per-user server's resource: %s, want 401", r)
	}
	// The first request starts the server started on demand.
	var list resourceList
	getJSON(t, "/mem/lazy/resources", &list, userHeader, "alice")
	if len(list.Resources) != 4 {
		t.Errorf("the server started on demand lists %d resources, want 4", len(list.Resources))
	}
}

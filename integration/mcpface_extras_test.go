package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	mcpclient "github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// The MCP face's resources, prompts and completions, through Caddy, to
// the clients nobody here wrote, from server-everything, server-memory
// and the fixture.

// startExtras serves server-everything, server-memory and the fixture with
// resources at /ext, and returns once every one has listed its tools.
func startExtras(t *testing.T) {
	t.Helper()
	everything, memory, dir := everythingScript(t), memoryScript(t), t.TempDir()
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /ext {
		server everything {
			command node %s stdio
		}
		server memory {
			command node %s
			env MEMORY_FILE_PATH %s/memory.jsonl
		}
		server fx {
			%s
		}
	}
}
`, httpPort, everything, memory, dir, testFixture(t, fixture.Options{Resources: true})))
	for _, s := range []string{"everything", "memory", "fx"} {
		waitReady(t, "/ext/"+s+"/openapi.json")
	}
}

// textOf is the text of a read's contents, or of a prompt's messages, as
// JSON.
func textOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestMCPFaceServesResourcesAndPromptsToMCPGo(t *testing.T) {
	startExtras(t)
	for _, protocol := range mcpEras {
		t.Run(protocol, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			c := mcpGoClient(t, "/ext/mcp", protocol)
			if res, err := mcpCall(ctx, c, "memory_create_entities",
				`{"entities":[{"name":"Ada","entityType":"person","observations":["wrote the first program"]}]}`); err != nil || res.IsError {
				t.Fatalf("memory_create_entities = %+v, %v", res, err)
			}
			list, err := c.ListResources(ctx, mcp.ListResourcesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			var uris []string
			for _, r := range list.Resources {
				uris = append(uris, r.URI)
			}
			for _, want := range []string{"mcpo://memory/memory://knowledge-graph", "mcpo://fx/" + fixture.TextResourceURI} {
				if !slices.Contains(uris, want) {
					t.Errorf("resources %q lack %s", uris, want)
				}
			}
			everything := 0
			for _, u := range uris {
				if !strings.HasPrefix(u, "mcpo://everything/demo://") {
					continue
				}
				everything++
				read := mcp.ReadResourceRequest{}
				read.Params.URI = u
				res, err := c.ReadResource(ctx, read)
				if err != nil || len(res.Contents) != 1 || !strings.Contains(textOf(res.Contents), `"uri":"`+u+`"`) {
					t.Errorf("read %s = %s, %v; want one content under the face's URI", u, textOf(res), err)
				}
			}
			if everything == 0 {
				t.Errorf("no resource of server-everything in %q", uris)
			}
			for uri, want := range map[string]string{
				"mcpo://memory/memory://knowledge-graph":                                 `Ada`,
				"mcpo://fx/" + fixture.TextResourceURI:                                   `Hello, résumé`,
				"mcpo://everything/demo://resource/dynamic/text/7":                       `Resource 7: This is a plaintext resource`,
				"mcpo://fx/" + strings.Replace(fixture.ItemTemplate, "{id}", "a%2Fb", 1): `fixture://items/a%2Fb`,
			} {
				read := mcp.ReadResourceRequest{}
				read.Params.URI = uri
				res, err := c.ReadResource(ctx, read)
				if err != nil || !strings.Contains(textOf(res), want) {
					t.Errorf("read %s = %s, %v; want %s", uri, textOf(res), err, want)
				}
			}
			templates, err := c.ListResourceTemplates(ctx, mcp.ListResourceTemplatesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			var raws []string
			for _, tm := range templates.ResourceTemplates {
				raws = append(raws, tm.URITemplate.Raw())
			}
			if !slices.Contains(raws, "mcpo://everything/demo://resource/dynamic/text/{resourceId}") || !slices.Contains(raws, "mcpo://fx/"+fixture.ItemTemplate) {
				t.Errorf("templates %q", raws)
			}
			prompts, err := c.ListPrompts(ctx, mcp.ListPromptsRequest{})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, p := range prompts.Prompts {
				names = append(names, p.Name)
			}
			if !slices.Contains(names, "fx_greet") || !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "everything_") }) {
				t.Errorf("prompts %q; want fx_greet and server-everything's", names)
			}
			get := mcp.GetPromptRequest{}
			get.Params.Name, get.Params.Arguments = "fx_greet", map[string]string{"who": "Ada", "style": "formal"}
			if res, err := c.GetPrompt(ctx, get); err != nil || !strings.Contains(textOf(res.Messages), "Hello, Ada! (formal)") {
				t.Errorf("fx_greet = %s, %v", textOf(res), err)
			}
			completable := ""
			for _, n := range names {
				if strings.HasPrefix(n, "everything_") && strings.Contains(n, "completable") {
					completable = n
				}
			}
			get.Params.Name, get.Params.Arguments = completable, map[string]string{"department": "Sales", "name": "Eve"}
			if res, err := c.GetPrompt(ctx, get); err != nil || !strings.Contains(textOf(res.Messages), "Please promote Eve to the head of the Sales team.") {
				t.Errorf("%s = %s, %v", completable, textOf(res), err)
			}
			comp := mcp.CompleteRequest{}
			comp.Params.Ref = mcp.PromptReference{Type: "ref/prompt", Name: completable}
			comp.Params.Argument.Name, comp.Params.Argument.Value = "department", "S"
			if res, err := c.Complete(ctx, comp); err != nil || !slices.Equal(res.Completion.Values, []string{"Sales", "Support"}) {
				t.Errorf("completion of %s = %+v, %v", completable, res, err)
			}
			comp.Params.Ref = mcp.ResourceReference{Type: "ref/resource", URI: "mcpo://fx/" + fixture.ItemTemplate}
			comp.Params.Argument.Name, comp.Params.Argument.Value = "id", "1"
			if res, err := c.Complete(ctx, comp); err != nil || !slices.Equal(res.Completion.Values, []string{"1", "10"}) {
				t.Errorf("completion of the fixture's template = %+v, %v", res, err)
			}
		})
	}
}

func TestMCPFaceServesResourcesPromptsAndProgressToTheOfficialGoSDK(t *testing.T) {
	startExtras(t)
	for _, protocol := range mcpEras {
		t.Run(protocol, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			var (
				mu       sync.Mutex
				progress []float64
			)
			c := sdk.NewClient(&sdk.Implementation{Name: "go-sdk-test", Version: "1"}, &sdk.ClientOptions{
				ProgressNotificationHandler: func(_ context.Context, r *sdk.ProgressNotificationClientRequest) {
					mu.Lock()
					defer mu.Unlock()
					progress = append(progress, r.Params.Progress)
				},
			})
			s, err := c.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: base + "/ext/everything/mcp", MaxRetries: -1},
				&sdk.ClientSessionOptions{ProtocolVersion: protocol})
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			defer s.Close()
			res, err := s.ListResources(ctx, nil)
			if err != nil || len(res.Resources) == 0 {
				t.Fatalf("resources = %+v, %v", res, err)
			}
			read, err := s.ReadResource(ctx, &sdk.ReadResourceParams{URI: res.Resources[0].URI})
			if err != nil || len(read.Contents) != 1 || read.Contents[0].URI != res.Resources[0].URI {
				t.Errorf("read %s = %+v, %v", res.Resources[0].URI, read, err)
			}
			prompt, err := s.GetPrompt(ctx, &sdk.GetPromptParams{Name: "args-prompt", Arguments: map[string]string{"city": "Paris", "state": "TX"}})
			if err != nil || len(prompt.Messages) == 0 || !strings.Contains(textOf(prompt.Messages), "Paris") {
				t.Errorf("args-prompt = %s, %v", textOf(prompt), err)
			}
			comp, err := s.Complete(ctx, &sdk.CompleteParams{
				Ref:      &sdk.CompleteReference{Type: "ref/resource", URI: "demo://resource/dynamic/text/{resourceId}"},
				Argument: sdk.CompleteParamsArgument{Name: "resourceId", Value: "12"},
			})
			if err != nil || !slices.Equal(comp.Completion.Values, []string{"12"}) {
				t.Errorf("completion = %+v, %v", comp, err)
			}
			call, err := s.CallTool(ctx, &sdk.CallToolParams{Name: "trigger-long-running-operation",
				Arguments: map[string]any{"duration": 0.4, "steps": 2}, Meta: sdk.Meta{"progressToken": "sdk-" + protocol}})
			if err != nil || call.IsError {
				t.Fatalf("trigger-long-running-operation = %+v, %v", call, err)
			}
			mu.Lock()
			defer mu.Unlock()
			// The last may be lost (see TestMCPFaceRelaysServerEverythingsProgress).
			if len(progress) == 0 || progress[0] != 1 {
				t.Errorf("progress %v, want 1 first", progress)
			}
		})
	}
}

// pythonSDK is the Python of the test peers, skipping the test when it
// lacks the mcp SDK.
func pythonSDK(t *testing.T) string {
	t.Helper()
	peersDir := peers(t)
	python := filepath.Join(peersDir, "venv", "bin", "python")
	if err := exec.Command(python, "-c", "import mcp.client.streamable_http").Run(); err != nil {
		t.Skipf("the Python mcp SDK is not installed in %s (make peers installs it): %v", peersDir, err)
	}
	return python
}

// runPython runs script with args and returns what it printed.
func runPython(t *testing.T, python, script string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, append([]string{"-c", script}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the Python client: %v: %s", err, stderr.Bytes())
	}
	return out
}

// pythonMCPExtras lists and reads resources, gets a prompt and calls a
// tool with progress with the Python SDK's client over Streamable HTTP,
// pinned to the mode in argv[2], and prints what it got as JSON.
const pythonMCPExtras = `
import asyncio, json, sys
from mcp import Client

async def main(url, mode):
    progress = []
    async def on_progress(p, total, message):
        progress.append(p)
    async with Client(url, mode=mode) as c:
        resources = await c.list_resources()
        read = await c.read_resource("mcpo://fx/fixture://docs/hello.txt")
        prompt = await c.get_prompt("fx_greet", {"who": "Py"})
        await c.call_tool("everything_trigger_long_running_operation", {"duration": 0.4, "steps": 2}, progress_callback=on_progress)
        print(json.dumps({
            "resources": sorted(str(r.uri) for r in resources.resources),
            "read": read.contents[0].text,
            "prompt": prompt.messages[0].content.text,
            "progress": progress,
        }))

asyncio.run(main(sys.argv[1], sys.argv[2]))
`

func TestMCPFaceServesResourcesPromptsAndProgressToThePythonSDK(t *testing.T) {
	python := pythonSDK(t)
	startExtras(t)
	for _, mode := range []string{"legacy", "2026-07-28"} {
		t.Run(mode, func(t *testing.T) {
			out := runPython(t, python, pythonMCPExtras, base+"/ext/mcp", mode)
			var got struct {
				Resources []string
				Read      string
				Prompt    string
				Progress  []float64
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%s: %v", out, err)
			}
			if !slices.Contains(got.Resources, "mcpo://memory/memory://knowledge-graph") || got.Read != fixture.TextResource ||
				got.Prompt != "Hello, Py!" || len(got.Progress) == 0 {
				t.Errorf("the Python client got %s", out)
			}
		})
	}
}

func TestMCPFacePassesOnServerEverythingsLogListChangesAndUpdates(t *testing.T) {
	script := everythingScript(t)
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /evlog {
		command node %s stdio
	}
}
`, httpPort, script))
	waitReady(t, "/evlog/openapi.json")
	c := mcpGoClientWith(t, "/evlog/mcp", mcp.LATEST_LEGACY_PROTOCOL_VERSION, []transport.StreamableHTTPCOption{transport.WithContinuousListening()})
	logs, changed, updated := make(chan string, 16), make(chan struct{}, 16), make(chan string, 16)
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		switch n.Method {
		case string(mcp.MethodNotificationMessage):
			logs <- fmt.Sprint(n.Params.AdditionalFields["data"])
		case string(mcp.MethodNotificationResourcesListChanged):
			changed <- struct{}{}
		case string(mcp.MethodNotificationResourceUpdated):
			updated <- fmt.Sprint(n.Params.AdditionalFields["uri"])
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.SetLevel(ctx, mcp.SetLevelRequest{Params: mcp.SetLevelParams{Level: mcp.LoggingLevelDebug}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the GET stream opens
	if res, err := mcpCall(ctx, c, "toggle-simulated-logging", `{}`); err != nil || res.IsError {
		t.Fatalf("toggle-simulated-logging = %+v, %v", res, err)
	}
	defer func() { _, _ = mcpCall(context.Background(), c, "toggle-simulated-logging", `{}`) }()
	select {
	case msg := <-logs:
		if !strings.Contains(msg, "message") {
			t.Errorf("log message %q", msg)
		}
	case <-ctx.Done():
		t.Fatal("no log message of server-everything came")
	}
	res, err := mcpCall(ctx, c, "gzip-file-as-resource", `{"name":"hello.gz","data":"data:text/plain;base64,aGVsbG8=","outputType":"resourceLink"}`)
	if err != nil || res.IsError || len(res.Content) != 1 {
		t.Fatalf("gzip-file-as-resource = %+v, %v", res, err)
	}
	select {
	case <-changed:
	case <-ctx.Done():
		t.Fatal("no notifications/resources/list_changed came")
	}
	link, ok := res.Content[0].(mcp.ResourceLink)
	if !ok {
		t.Fatalf("gzip-file-as-resource answered %#v", res.Content[0])
	}
	list, err := c.ListResources(ctx, mcp.ListResourcesRequest{})
	if err != nil || !slices.ContainsFunc(list.Resources, func(r mcp.Resource) bool { return r.URI == link.URI }) {
		t.Errorf("the new resource %s is not listed: %+v, %v", link.URI, list, err)
	}
	read := mcp.ReadResourceRequest{}
	read.Params.URI = link.URI
	if got, err := c.ReadResource(ctx, read); err != nil || len(got.Contents) != 1 {
		t.Errorf("read %s = %+v, %v", link.URI, got, err)
	}

	// A subscription: server-everything tells of updates of the resources
	// subscribed to once toggle-subscriber-updates is called.
	const followed = "demo://resource/static/document/architecture.md"
	if err := c.Subscribe(ctx, mcp.SubscribeRequest{Params: mcp.SubscribeParams{URI: followed}}); err != nil {
		t.Fatalf("resources/subscribe: %v", err)
	}
	if res, err := mcpCall(ctx, c, "toggle-subscriber-updates", `{}`); err != nil || res.IsError {
		t.Fatalf("toggle-subscriber-updates = %+v, %v", res, err)
	}
	defer func() { _, _ = mcpCall(context.Background(), c, "toggle-subscriber-updates", `{}`) }()
	select {
	case uri := <-updated:
		if uri != followed {
			t.Errorf("told of an update of %s, want %s", uri, followed)
		}
	case <-ctx.Done():
		t.Fatal("no notifications/resources/updated came")
	}
	if err := c.Unsubscribe(ctx, mcp.UnsubscribeRequest{Params: mcp.UnsubscribeParams{URI: followed}}); err != nil {
		t.Errorf("resources/unsubscribe: %v", err)
	}
}

// colorPicker answers every elicitation with the color red.
type colorPicker struct{}

func (colorPicker) Elicit(context.Context, mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	return &mcp.ElicitationResult{ElicitationResponse: mcp.ElicitationResponse{Action: mcp.ElicitationResponseActionAccept,
		Content: map[string]any{"color": "red"}}}, nil
}

func TestMCPFacePassesTheFixturesElicitationOnToTheClientThatCalled(t *testing.T) {
	fxMCP := server.NewStreamableHTTPServer(fixture.New(fixture.Options{Resources: true}), server.WithDisableLocalhostProtection(true))
	fx := httptest.NewServer(fxMCP)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = fxMCP.Shutdown(ctx) // ends the sessions Caddy still holds
		fx.CloseClientConnections()
		fx.Close()
	})
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /asks {
		server http {
			url %s/mcp
			protocol legacy
			elicitation decline
		}
		server stdio {
			%s
			elicitation decline
		}
	}
}
`, httpPort, fx.URL, testFixture(t, fixture.Options{Resources: true})))
	waitReady(t, "/asks/http/openapi.json")
	waitReady(t, "/asks/stdio/openapi.json")
	tr, err := transport.NewStreamableHTTP(base + "/asks/mcp")
	if err != nil {
		t.Fatal(err)
	}
	c := mcpclient.NewClient(tr, mcpclient.WithProtocolVersion(mcp.LATEST_LEGACY_PROTOCOL_VERSION), mcpclient.WithElicitationHandler(colorPicker{}))
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{}); err != nil {
		t.Fatal(err)
	}
	for tool, want := range map[string]string{
		"http_ask": "accept map[color:red]", // in the call's answer: the client is asked
		// A stdio server's request comes on its own: with this client's
		// call the only one under way, it is the client's.
		"stdio_ask": "accept map[color:red]",
	} {
		res, err := mcpCall(ctx, c, tool, `{}`)
		if err != nil || firstText(res) != want {
			t.Errorf("%s = %+v, %v; want %q", tool, res, err, want)
		}
	}
	// A call of the HTTP API under way could be the one asking: the
	// policy answers.
	slow := make(chan response, 1)
	go func() {
		r, _ := send(ctx, http.MethodPost, "/asks/stdio/slow", `{"ms":3000}`)
		slow <- r
	}()
	deadline := time.Now().Add(waitLimit)
	for serverOf(t, "/asks", "stdio").InFlight == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if res, err := mcpCall(ctx, c, "stdio_ask", `{}`); err != nil || firstText(res) != "decline" {
		t.Errorf("stdio_ask with a call of the HTTP API under way = %+v, %v; want the policy's decline", res, err)
	}
	if r := <-slow; r.status != http.StatusOK {
		t.Errorf("the HTTP API's slow call: %s", r)
	}
	if r := do(t, http.MethodPost, "/asks/http/ask", `{}`); r.status != 200 || !strings.Contains(string(r.body), `"decline"`) {
		t.Errorf("the HTTP API's call: %s, want the policy's decline", r)
	}
}

package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mcpclient "github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// The MCP face: each mount is also an MCP server at <mount>/mcp, which
// clients nobody here wrote use through Caddy.

// mcpEras are the protocol versions the face serves, as mcp-go pins them.
var mcpEras = []string{mcp.LATEST_LEGACY_PROTOCOL_VERSION, mcp.LATEST_PROTOCOL_VERSION}

// mcpGoClient returns an mcp-go client of the endpoint at path, pinned to
// protocol, initialized.
func mcpGoClient(t *testing.T, path, protocol string, header ...string) *mcpclient.Client {
	t.Helper()
	return mcpGoClientWith(t, path, protocol, nil, header...)
}

// mcpGoClientWith is mcpGoClient with options of the transport.
func mcpGoClientWith(t *testing.T, path, protocol string, opts []transport.StreamableHTTPCOption, header ...string) *mcpclient.Client {
	t.Helper()
	headers := map[string]string{}
	for i := 0; i+1 < len(header); i += 2 {
		headers[header[i]] = header[i+1]
	}
	tr, err := transport.NewStreamableHTTP(base+path, append(opts, transport.WithHTTPHeaders(headers))...)
	if err != nil {
		t.Fatal(err)
	}
	c := mcpclient.NewClient(tr, mcpclient.WithProtocolVersion(protocol))
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	// The transport, and its GET stream, live as long as the client.
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	req := mcp.InitializeRequest{}
	req.Params.ClientInfo = mcp.Implementation{Name: "integration", Version: "1"}
	if _, err := c.Initialize(ctx, req); err != nil {
		t.Fatalf("initialize %s (%s): %v", path, protocol, err)
	}
	return c
}

// listedNames lists the tools of c, sorted.
func listedNames(t *testing.T, c *mcpclient.Client) []string {
	t.Helper()
	res, err := c.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	names := make([]string, 0, len(res.Tools))
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return names
}

// mcpCall calls a tool with raw JSON arguments.
func mcpCall(ctx context.Context, c *mcpclient.Client, name, args string) (*mcp.CallToolResult, error) {
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = json.RawMessage(args)
	return c.CallTool(ctx, req)
}

// firstText is the text of a result's first item.
func firstText(res *mcp.CallToolResult) string {
	if res == nil || len(res.Content) == 0 {
		return ""
	}
	if tc, ok := res.Content[0].(mcp.TextContent); ok {
		return tc.Text
	}
	return ""
}

func TestMCPFaceServesTheFixtureToMCPGoInBothEras(t *testing.T) {
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /one {
		%s
	}
	mcpo /many {
		server fx {
			%s
		}
		server other {
			%s
		}
	}
}
`, httpPort, testFixture(t, fixture.Options{}), testFixture(t, fixture.Options{}), testFixture(t, fixture.Options{Name: "other"})))
	waitReady(t, "/one/openapi.json")
	waitReady(t, "/many/fx/openapi.json")
	waitReady(t, "/many/other/openapi.json")
	names := fixture.ToolNames(fixture.Options{})
	// The aggregate names its tools as the document covering every server
	// names its operations.
	var doc struct {
		Paths map[string]struct {
			Post struct {
				OperationID string `json:"operationId"`
			} `json:"post"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(waitReady(t, "/many/openapi.json"), &doc); err != nil {
		t.Fatal(err)
	}
	var prefixed []string
	for _, item := range doc.Paths {
		prefixed = append(prefixed, item.Post.OperationID)
	}
	slices.Sort(prefixed)
	for _, protocol := range mcpEras {
		t.Run(protocol, func(t *testing.T) {
			c := mcpGoClient(t, "/one/mcp", protocol)
			if got := listedNames(t, c); !slices.Equal(got, names) {
				t.Errorf("/one/mcp lists %v, want %v", got, names)
			}
			ctx := context.Background()
			for _, tc := range []struct{ tool, args, want string }{
				{"add", `{"a":2,"b":40}`, "42"},
				// Arguments reach the server as sent: big integers exact.
				{"echo_args", `{"big":12345678901234567890,"z":null}`, `{"big":12345678901234567890,"z":null}`},
			} {
				res, err := mcpCall(ctx, c, tc.tool, tc.args)
				if err != nil || res.IsError || firstText(res) != tc.want {
					t.Errorf("%s = %+v, %v; want %s", tc.tool, res, err, tc.want)
				}
			}
			res, err := mcpCall(ctx, c, "structured", `{}`)
			if err != nil || string(res.RawStructuredContent) == "" && res.StructuredContent == nil {
				t.Errorf("structured = %+v, %v; want its structuredContent", res, err)
			}
			res, err = mcpCall(ctx, c, "image", `{}`)
			if err != nil || len(res.Content) != 2 {
				t.Fatalf("image = %+v, %v", res, err)
			}
			if img, ok := res.Content[1].(mcp.ImageContent); !ok || img.Data != fixture.PNGBase64 || img.MIMEType != "image/png" {
				t.Errorf("image item = %#v", res.Content[1])
			}
			res, err = mcpCall(ctx, c, "fail", `{"reason":"nope"}`)
			if err != nil || !res.IsError || firstText(res) != "fixture failure: nope" {
				t.Errorf("fail = %+v, %v; want the tool's own error result", res, err)
			}
			// The server's -32602, and its message, pass through.
			_, err = mcpCall(ctx, c, "invalid_params", `{}`)
			if !errors.Is(err, mcp.ErrInvalidParams) || !strings.HasSuffix(err.Error(), ": "+fixture.InvalidParamsMessage) {
				t.Errorf("invalid_params = %v; want the server's -32602 and its message", err)
			}

			many := mcpGoClient(t, "/many/mcp", protocol)
			if got := listedNames(t, many); !slices.Equal(got, prefixed) {
				t.Errorf("/many/mcp lists %v, want %v", got, prefixed)
			}
			if res, err := mcpCall(ctx, many, "other_add", `{"a":1,"b":2}`); err != nil || firstText(res) != "3" {
				t.Errorf("other_add = %+v, %v", res, err)
			}
			one := mcpGoClient(t, "/many/other/mcp", protocol)
			if got := listedNames(t, one); !slices.Equal(got, names) {
				t.Errorf("/many/other/mcp lists %v, want %v", got, names)
			}
		})
	}
}

func TestMCPFaceServesTheOfficialGoSDK(t *testing.T) {
	name := fmt.Sprintf("gosdk%d", mcpoRuns.Add(1)) // the metrics count every run's calls
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /%s {
		%s
	}
}
`, httpPort, name, testFixture(t, fixture.Options{})))
	waitReady(t, "/"+name+"/openapi.json")
	for _, protocol := range mcpEras {
		t.Run(protocol, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			c := sdk.NewClient(&sdk.Implementation{Name: "go-sdk-test", Version: "1"}, nil)
			s, err := c.Connect(ctx, &sdk.StreamableClientTransport{Endpoint: base + "/" + name + "/mcp", MaxRetries: -1},
				&sdk.ClientSessionOptions{ProtocolVersion: protocol})
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			defer s.Close()
			if got := s.InitializeResult().ProtocolVersion; got != protocol {
				t.Errorf("negotiated %s, want %s", got, protocol)
			}
			list, err := s.ListTools(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, tool := range list.Tools {
				got = append(got, tool.Name)
			}
			slices.Sort(got)
			if want := fixture.ToolNames(fixture.Options{}); !slices.Equal(got, want) {
				t.Errorf("tools = %v, want %v", got, want)
			}
			res, err := s.CallTool(ctx, &sdk.CallToolParams{Name: "add", Arguments: map[string]any{"a": 2, "b": 40}})
			if err != nil {
				t.Fatal(err)
			}
			if tc, ok := res.Content[0].(*sdk.TextContent); !ok || tc.Text != "42" || res.IsError {
				t.Errorf("add = %#v", res.Content[0])
			}
			res, err = s.CallTool(ctx, &sdk.CallToolParams{Name: "fail", Arguments: map[string]any{"reason": "x"}})
			if err != nil || !res.IsError {
				t.Errorf("fail = %+v, %v; want isError", res, err)
			}
		})
	}
	// The calls count as the MCP face's, beside the REST face's.
	do(t, http.MethodPost, "/"+name+"/add", `{"a":1,"b":1}`)
	mcpoScrapeMetrics(t,
		`caddy_mcpo_calls_total{face="mcp",outcome="ok",server="`+name+`",tool="add"} 2`,
		`caddy_mcpo_calls_total{face="mcp",outcome="tool_error",server="`+name+`",tool="fail"} 2`,
		`caddy_mcpo_calls_total{face="rest",outcome="ok",server="`+name+`",tool="add"} 1`,
		`caddy_mcpo_call_duration_seconds_count{face="mcp",server="`+name+`",tool="add"} 2`,
	)
}

// pythonMCPClient lists the tools and calls add with the Python SDK's
// client over Streamable HTTP, pinned to the mode in argv[2], and prints
// what it got as JSON.
const pythonMCPClient = `
import asyncio, json, sys
from mcp import Client

async def main(url, mode):
    async with Client(url, mode=mode) as c:
        tools = await c.list_tools()
        res = await c.call_tool("add", {"a": 2, "b": 40})
        failed = await c.call_tool("fail", {"reason": "py"})
        print(json.dumps({
            "protocol": c.protocol_version,
            "tools": sorted(t.name for t in tools.tools),
            "add": res.content[0].text,
            "fail": [failed.is_error, failed.content[0].text],
        }))

asyncio.run(main(sys.argv[1], sys.argv[2]))
`

func TestMCPFaceServesThePythonSDK(t *testing.T) {
	python := pythonSDK(t)
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /py {
		%s
	}
}
`, httpPort, testFixture(t, fixture.Options{})))
	waitReady(t, "/py/openapi.json")
	for _, mode := range []string{"legacy", "2026-07-28"} {
		t.Run(mode, func(t *testing.T) {
			out := runPython(t, python, pythonMCPClient, base+"/py/mcp", mode)
			var got struct {
				Protocol string
				Tools    []string
				Add      string
				Fail     []any
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%s: %v", out, err)
			}
			if want := fixture.ToolNames(fixture.Options{}); !slices.Equal(got.Tools, want) {
				t.Errorf("tools = %v, want %v", got.Tools, want)
			}
			if got.Add != "42" || len(got.Fail) != 2 || got.Fail[0] != true || got.Fail[1] != "fixture failure: py" {
				t.Errorf("the Python client got %s", out)
			}
			if mode != "legacy" && got.Protocol != mode {
				t.Errorf("protocol %s, want %s", got.Protocol, mode)
			}
		})
	}
}

func TestMCPFaceAppliesTheMountsRules(t *testing.T) {
	const aliceKey, bobKey = "mcp-key-of-alice-41d2", "mcp-key-of-bob-0c7e"
	t.Setenv("MCPO_TEST_ALICE_KEY", aliceKey)
	t.Setenv("MCPO_TEST_BOB_KEY", bobKey)
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /ruled {
		identity api_key
		api_key {env.MCPO_TEST_ALICE_KEY} alice
		api_key {env.MCPO_TEST_BOB_KEY} bob
		cors https://chat.example
		max_request_body 4KB
		access {
			grant user:alice *
			grant user:bob fx/add other/echo
		}
		server fx {
			%s
			timeout 300ms
		}
		server other {
			%s
		}
	}
}
`, httpPort, testFixture(t, fixture.Options{}), testFixture(t, fixture.Options{Name: "other"})))
	waitReady(t, "/ruled/fx/openapi.json")
	waitReady(t, "/ruled/other/openapi.json")
	alice := []string{"Authorization", "Bearer " + aliceKey}
	bob := []string{"Authorization", "Bearer " + bobKey}
	for _, protocol := range mcpEras {
		t.Run(protocol, func(t *testing.T) {
			c := mcpGoClient(t, "/ruled/mcp", protocol, bob...)
			if got, want := listedNames(t, c), []string{"fx_add", "other_echo"}; !slices.Equal(got, want) {
				t.Errorf("bob sees %v, want %v", got, want)
			}
			if _, err := mcpCall(context.Background(), c, "fx_pid", `{}`); err == nil {
				t.Error("bob called a tool he is not granted")
			}
			if res, err := mcpCall(context.Background(), c, "fx_add", `{"a":1,"b":1}`); err != nil || firstText(res) != "2" {
				t.Errorf("bob's granted call = %+v, %v", res, err)
			}
			one := mcpGoClient(t, "/ruled/other/mcp", protocol, bob...)
			if got, want := listedNames(t, one), []string{"echo"}; !slices.Equal(got, want) {
				t.Errorf("bob sees %v at other/mcp, want %v", got, want)
			}
			a := mcpGoClient(t, "/ruled/mcp", protocol, alice...)
			if got := listedNames(t, a); len(got) != 2*len(fixture.ToolNames(fixture.Options{})) {
				t.Errorf("alice sees %d tools, want every one", len(got))
			}
			// The server's timeout: an error, and the call cancelled upstream.
			before := cancelledCount(t, a)
			_, err := mcpCall(context.Background(), a, "fx_slow", `{"ms":5000}`)
			if err == nil || !strings.Contains(err.Error(), "did not answer within 300ms") {
				t.Errorf("a call past the timeout: %v", err)
			}
			eventually(t, waitLimit, "the upstream to see the call cancelled", func() bool { return cancelledCount(t, a) > before })
			// The client's cancellation reaches the server too.
			before = cancelledCount(t, a)
			ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
			_, err = mcpCall(ctx, a, "fx_slow", `{"ms":250}`) // within the timeout of 300ms
			cancel()
			if err == nil {
				t.Error("a call the client cancelled succeeded")
			}
			eventually(t, waitLimit, "the upstream to see the client's cancellation", func() bool { return cancelledCount(t, a) > before })
		})
	}
	initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
	mcpHeader := []string{"Content-Type", "application/json", "Accept", "application/json, text/event-stream"}
	for _, tc := range []struct {
		name   string
		body   string
		header []string
		status int
		want   string
	}{
		{"no key", initialize, nil, 401, "API key"},
		{"an origin not allowed", initialize, append(slices.Clone(alice), "Origin", "https://evil.example"), 403, `"code":-32600`},
		{"an allowed origin", initialize, append(slices.Clone(alice), "Origin", "https://chat.example"), 200, `"protocolVersion"`},
		{"bad JSON", `{"jsonrpc"`, alice, 400, `"code":-32700`},
		{"a batch", "[" + initialize + "]", alice, 400, `"code":-32600`},
		{"too large", `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"` + strings.Repeat("x", 5000) + `"}}`, alice, 413, "max_request_body"},
		{"an unknown session", `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`,
			append(slices.Clone(alice), "Mcp-Session-Id", "a36e7667-33d6-4ac6-b145-381df893c9b5.forged", "Mcp-Protocol-Version", "2025-11-25"), 404, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, http.MethodPost, "/ruled/mcp", tc.body, append(slices.Clone(mcpHeader), tc.header...)...)
			if r.status != tc.status || !strings.Contains(string(r.body), tc.want) {
				t.Errorf("%s, want %d with %s", r, tc.status, tc.want)
			}
		})
	}
}

// reloadDropped reports an error of a request whose connection the
// previous configuration's HTTP server closed (with the tests' grace period
// of 1ns, at once): no answer came, so the request was not served.
func reloadDropped(err error) bool {
	msg := err.Error()
	return strings.HasSuffix(msg, ": EOF") || strings.HasSuffix(msg, "connection reset by peer") ||
		strings.HasSuffix(msg, "server closed idle connection")
}

// cancelledCount is what fx's cancelled_calls answers.
func cancelledCount(t *testing.T, c *mcpclient.Client) int {
	t.Helper()
	res, err := mcpCall(context.Background(), c, "fx_cancelled_calls", `{}`)
	if err != nil {
		t.Fatalf("cancelled_calls: %v", err)
	}
	n, err := strconv.Atoi(firstText(res))
	if err != nil {
		t.Fatalf("cancelled_calls = %+v: %v", res, err)
	}
	return n
}

func TestMCPSessionsCarryOnThroughReloads(t *testing.T) {
	site := func(extra string) string {
		return fmt.Sprintf(`:%d {
	mcpo /reload {
		%s
		%s
	}
}
`, httpPort, testFixture(t, fixture.Options{}), extra)
	}
	startCaddy(t, site(""))
	waitReady(t, "/reload/openapi.json")
	for _, protocol := range mcpEras {
		t.Run(protocol, func(t *testing.T) {
			c := mcpGoClient(t, "/reload/mcp", protocol)
			res, err := mcpCall(context.Background(), c, "pid", `{}`)
			if err != nil {
				t.Fatal(err)
			}
			pid := firstText(res)
			var (
				calls, failed atomic.Int64
				dropped       atomic.Int64
				stop          = make(chan struct{})
				wg            sync.WaitGroup
				mu            sync.Mutex
				errs          []string
			)
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						calls.Add(1)
						res, err := mcpCall(context.Background(), c, "pid", `{}`)
						if err != nil && reloadDropped(err) {
							// The previous configuration's HTTP server closed
							// the connection the request went out on: the
							// client sends it again, in the same session.
							dropped.Add(1)
							continue
						}
						if err != nil || firstText(res) != pid {
							failed.Add(1)
							mu.Lock()
							errs = append(errs, fmt.Sprintf("%v %v", firstText(res), err))
							mu.Unlock()
						}
					}
				}()
			}
			for i := range 3 {
				startCaddy(t, site(fmt.Sprintf("timeout %ds", 40+i)))
				time.Sleep(200 * time.Millisecond)
			}
			close(stop)
			wg.Wait()
			if failed.Load() > 0 {
				t.Errorf("%d of %d calls through reloads failed: %v", failed.Load(), calls.Load(), errs[:min(len(errs), 5)])
			}
			if res, err := mcpCall(context.Background(), c, "pid", `{}`); err != nil || firstText(res) != pid {
				t.Errorf("after the reloads, the session's call = %+v, %v; want the same server (pid %s)", res, err, pid)
			}
			t.Logf("%d calls through 3 reloads, %d of them on a connection a reload closed", calls.Load(), dropped.Load())
		})
	}
}

func TestMCPFaceRelaysServerEverythingsProgress(t *testing.T) {
	script := everythingScript(t)
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /everything {
		command node %s stdio
	}
}
`, httpPort, script))
	waitReady(t, "/everything/openapi.json")
	for _, protocol := range mcpEras {
		t.Run(protocol, func(t *testing.T) {
			c := mcpGoClient(t, "/everything/mcp", protocol)
			var (
				mu       sync.Mutex
				progress []string
			)
			c.OnNotification(func(n mcp.JSONRPCNotification) {
				if n.Method != string(mcp.MethodNotificationProgress) {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				p := n.Params.AdditionalFields
				progress = append(progress, fmt.Sprintf("%v %v/%v", p["progressToken"], p["progress"], p["total"]))
			})
			req := mcp.CallToolRequest{}
			req.Params.Name = "trigger-long-running-operation"
			req.Params.Arguments = map[string]any{"duration": 0.4, "steps": 2}
			req.Params.Meta = &mcp.Meta{ProgressToken: "tok-" + protocol}
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			res, err := c.CallTool(ctx, req)
			if err != nil || !strings.HasPrefix(firstText(res), "Long running operation completed") {
				t.Fatalf("trigger-long-running-operation = %+v, %v", res, err)
			}
			mu.Lock()
			defer mu.Unlock()
			// The last one may be lost: mcp-go's server drops a notification
			// its stream writer took while the answer was being written
			// (server/streamable_http.go, the forwarder's <-done case).
			want := []string{"tok-" + protocol + " 1/2", "tok-" + protocol + " 2/2"}
			if len(progress) == 0 || len(progress) > len(want) || !slices.Equal(progress, want[:len(progress)]) {
				t.Errorf("progress notifications %q, want %q", progress, want)
			}
			// Content of every type, as server-everything sent it.
			res, err = mcpCall(ctx, c, "get-resource-links", `{"count":2}`)
			if err != nil {
				t.Fatal(err)
			}
			links := 0
			for _, item := range res.Content {
				if l, ok := item.(mcp.ResourceLink); ok && strings.HasPrefix(l.URI, "demo://") {
					links++
				}
			}
			if links != 2 {
				t.Errorf("get-resource-links = %+v, want 2 resource links", res.Content)
			}
			// Content items keep their annotations.
			res, err = mcpCall(ctx, c, "get-annotated-message", `{"messageType":"error"}`)
			if err != nil || len(res.Content) == 0 {
				t.Fatalf("get-annotated-message = %+v, %v", res, err)
			}
			if tc, ok := res.Content[0].(mcp.TextContent); !ok || tc.Annotations == nil || tc.Annotations.Priority == nil {
				t.Errorf("get-annotated-message's first item lost its annotations: %#v", res.Content[0])
			}
		})
	}
}

func TestMCPFaceTellsAListeningClientOfANewTool(t *testing.T) {
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /listen {
		%s
	}
}
`, httpPort, testFixture(t, fixture.Options{})))
	waitReady(t, "/listen/openapi.json")
	c := mcpGoClientWith(t, "/listen/mcp", mcp.LATEST_LEGACY_PROTOCOL_VERSION, []transport.StreamableHTTPCOption{transport.WithContinuousListening()})
	changed := make(chan struct{}, 16)
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == string(mcp.MethodNotificationToolsListChanged) {
			changed <- struct{}{}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	listedNames(t, c)
	// The server adds a tool and says so; the bridge lists again, and the
	// client hears of it on its GET stream.
	if res, err := mcpCall(ctx, c, "register_tool", `{"name":"late_tool"}`); err != nil || firstText(res) != "registered" {
		t.Fatalf("register_tool = %+v, %v", res, err)
	}
	select {
	case <-changed:
	case <-ctx.Done():
		t.Fatal("no notifications/tools/list_changed came on the GET stream")
	}
	eventually(t, waitLimit, "late_tool in the listing", func() bool { return slices.Contains(listedNames(t, c), "late_tool") })
}

func TestMCPFaceUsesTheCallersOwnSession(t *testing.T) {
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /mine {
		identity {http.request.header.%s}
		%s
	}
}
`, httpPort, userHeader, userFixture(t, "own")))
	waitReady(t, "/mine/own/openapi.json") // its listing session has listed the tools
	pids := map[string]string{}
	for _, user := range []string{"alice", "bob"} {
		c := mcpGoClient(t, "/mine/own/mcp", mcp.LATEST_PROTOCOL_VERSION, userHeader, user)
		res, err := mcpCall(context.Background(), c, "pid", `{}`)
		if err != nil || res.IsError {
			t.Fatalf("%s's pid = %+v, %v", user, res, err)
		}
		pids[user] = firstText(res)
		// The REST face calls the same session: the caller's own.
		if r := mustCallAs(t, user, "/mine/own/pid", `{}`); string(r.body) != pids[user] {
			t.Errorf("%s's pid over REST = %s, over MCP %s", user, r.body, pids[user])
		}
	}
	if pids["alice"] == pids["bob"] {
		t.Errorf("alice and bob share the process %s", pids["alice"])
	}
	// Without an identity, nothing: the endpoint asks who is calling.
	r := do(t, http.MethodPost, "/mine/own/mcp",
		`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`,
		"Content-Type", "application/json", "Accept", "application/json, text/event-stream")
	if r.status != http.StatusUnauthorized {
		t.Errorf("initialize without an identity: %s, want 401", r)
	}
}

// mcpFaceScenarios are the MCP conformance suite's server scenarios about
// the protocol rather than about the tools of its reference server: they
// hold for the MCP face in front of any server.
var mcpFaceScenarios = []string{
	"server-initialize", "server-session-lifecycle", "ping", "tools-list",
	"server-sse-multiple-streams", "http-header-validation", "dns-rebinding-protection",
}

func TestMCPFaceConformance(t *testing.T) {
	dir := os.Getenv("MCPO_CONFORMANCE")
	if dir == "" {
		t.Skip("MCPO_CONFORMANCE is not set: `make conformance` installs the MCP conformance suite's runner and runs this")
	}
	bin := filepath.Join(dir, "node_modules", ".bin")
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /conformance {
		%s
	}
}
`, httpPort, testFixture(t, fixture.Options{})))
	waitReady(t, "/conformance/openapi.json")
	for _, scenario := range mcpFaceScenarios {
		t.Run(scenario, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			cmd := exec.CommandContext(ctx, filepath.Join(bin, "conformance"), "server",
				"--url", base+"/conformance/mcp", "--scenario", scenario)
			// The runner needs Node 22, which the Makefile may have put beside it.
			cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "NO_COLOR=1")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("%v:\n%s", err, out)
			}
		})
	}
}

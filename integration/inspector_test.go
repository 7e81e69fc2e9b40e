package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The MCP Inspector's CLI mode (the version the Makefile pins, in the peers'
// inspector/ project) as a user runs it against the MCP face:
// `mcp-inspector --cli <url> --method …`, in both protocol eras.

// inspectorKey is the API key of the mount the Inspector reaches with a
// header.
const inspectorKey = "inspector-test-key"

// inspectorRun is one run of the Inspector's CLI: its exit status, the JSON
// of its --format json output on stdout, and its stderr.
type inspectorRun struct {
	code   int
	stdout []byte
	stderr []byte
}

func (r inspectorRun) String() string {
	return fmt.Sprintf("exit %d, stdout %s, stderr %s", r.code, r.stdout, r.stderr)
}

// inspector returns a function that runs the Inspector's CLI with the
// arguments, against the URL of path, with --format json, and waits for
// it. Its home is the test's, so that its catalog and secrets stay out of
// the user's.
func inspector(t *testing.T) func(ctx context.Context, path string, args ...string) inspectorRun {
	t.Helper()
	bin := filepath.Join(peers(t), "inspector", "node_modules", ".bin")
	if _, err := os.Stat(filepath.Join(bin, "mcp-inspector")); err != nil {
		t.Fatalf("the MCP Inspector is not among the test peers (`make peers` installs it): %v", err)
	}
	home := t.TempDir()
	return func(ctx context.Context, path string, args ...string) inspectorRun {
		t.Helper()
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "mcp-inspector"),
			append([]string{"--cli", base + path, "--transport", "http", "--format", "json", "--stored-auth-only"}, args...)...)
		// The Inspector needs Node 22.19, which the Makefile may have put
		// beside it.
		cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"), "HOME="+home, "NO_COLOR=1")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatalf("running the Inspector: %v", err)
		}
		return inspectorRun{code: cmd.ProcessState.ExitCode(), stdout: stdout.Bytes(), stderr: stderr.Bytes()}
	}
}

// inspectorResult decodes the result of a successful --format json run.
func inspectorResult[T any](t *testing.T, r inspectorRun) T {
	t.Helper()
	var out struct {
		Result *T `json:"result"`
	}
	if err := json.Unmarshal(r.stdout, &out); err != nil || out.Result == nil {
		t.Fatalf("the Inspector's output is no result: %s", r)
	}
	return *out.Result
}

// inspectorToolResult is a tools/call result as the Inspector prints it.
type inspectorToolResult struct {
	Content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	IsError bool `json:"isError"`
}

func (r inspectorToolResult) text() string {
	var texts []string
	for _, c := range r.Content {
		texts = append(texts, c.Text)
	}
	return strings.Join(texts, "\n")
}

func TestMCPInspectorCLIListsAndCallsToolsThroughTheFace(t *testing.T) {
	run := inspector(t)
	pkg := os.Getenv("MCPO_TIME_SERVER")
	if pkg == "" {
		t.Fatal("MCPO_TIME_SERVER is not set (the Makefile sets it with the peers)")
	}
	everything := "command node " + everythingScript(t) + " stdio"
	// --offline: `make test` fetched it already, so no test waits on the network.
	timeServer := "command uvx --offline --from " + pkg + " mcp-server-time --local-timezone=UTC"
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /everything {
		%s
	}
	mcpo /time {
		%s
		api_key %s
	}
	mcpo /both {
		server everything {
			%s
		}
		server time {
			%s
		}
	}
}
`, httpPort, everything, timeServer, inspectorKey, everything, timeServer))
	waitReady(t, "/everything/openapi.json")
	waitReady(t, "/time/openapi.json")
	waitReady(t, "/both/openapi.json")
	auth := []string{"--header", "Authorization: Bearer " + inspectorKey}

	cases := []struct {
		name   string
		path   string
		header []string
		// tools are some of the tools the listing must hold.
		tools []string
		// call is a tool call that must succeed, with --tool-arg pairs, and
		// want what its text must contain.
		call []string
		want string
	}{
		{
			name: "server-everything at its own mount", path: "/everything/mcp",
			tools: []string{"echo", "get-sum", "get-tiny-image"},
			call:  []string{"--tool-name", "echo", "--tool-arg", "message=hello from the Inspector"},
			want:  "Echo: hello from the Inspector",
		},
		{
			name: "mcp-server-time with the mount's API key", path: "/time/mcp", header: auth,
			tools: []string{"get_current_time", "convert_time"},
			call:  []string{"--tool-name", "convert_time", "--tool-arg", "source_timezone=UTC", "time=12:00", "target_timezone=Asia/Tokyo"},
			want:  "T21:00:00+09:00",
		},
		{
			name: "both at a mount of several servers", path: "/both/mcp",
			tools: []string{"everything_echo", "everything_get_sum", "time_get_current_time", "time_convert_time"},
			call:  []string{"--tool-name", "everything_get_sum", "--tool-arg", "a=2", "b=40"},
			want:  "The sum of 2 and 40 is 42.",
		},
		{
			name: "one server of a mount of several at its own endpoint", path: "/both/time/mcp",
			tools: []string{"get_current_time", "convert_time"},
			call:  []string{"--tool-name", "get_current_time", "--tool-arg", "timezone=UTC"},
			want:  `"timezone": "UTC"`,
		},
	}
	for _, era := range []string{"legacy", "modern"} {
		for _, tc := range cases {
			t.Run(era+"/"+tc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
				defer cancel()
				common := append([]string{"--protocol-era", era}, tc.header...)

				r := run(ctx, tc.path, append(common, "--method", "tools/list")...)
				if r.code != 0 {
					t.Fatalf("tools/list: %s", r)
				}
				listed := inspectorResult[struct {
					Tools []struct {
						Name        string          `json:"name"`
						InputSchema json.RawMessage `json:"inputSchema"`
					} `json:"tools"`
				}](t, r)
				var names []string
				for _, tool := range listed.Tools {
					names = append(names, tool.Name)
					if len(tool.InputSchema) == 0 {
						t.Errorf("tool %s has no input schema", tool.Name)
					}
				}
				for _, want := range tc.tools {
					if !slices.Contains(names, want) {
						t.Errorf("tools/list: no %s in %v", want, names)
					}
				}

				r = run(ctx, tc.path, append(append(common, "--method", "tools/call"), tc.call...)...)
				if r.code != 0 {
					t.Fatalf("tools/call %v: %s", tc.call, r)
				}
				if res := inspectorResult[inspectorToolResult](t, r); res.IsError || !strings.Contains(res.text(), tc.want) {
					t.Errorf("tools/call %v: %s, want a result with %q", tc.call, r.stdout, tc.want)
				}
			})
		}

		t.Run(era+"/a tool's own error is a result the Inspector reports", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			r := run(ctx, "/time/mcp", append(auth, "--protocol-era", era, "--method", "tools/call",
				"--tool-name", "get_current_time", "--tool-arg", "timezone=Not/AZone")...)
			// The Inspector exits 5 when a tool returns isError, printing
			// the result all the same.
			if r.code != 5 || !strings.Contains(string(r.stderr), "isError") {
				t.Fatalf("get_current_time in Not/AZone: %s, want exit 5 for isError", r)
			}
			if res := inspectorResult[inspectorToolResult](t, r); !res.IsError || !strings.Contains(res.text(), "Not/AZone") {
				t.Errorf("get_current_time in Not/AZone: %s, want an error result naming the zone", r.stdout)
			}
		})

		t.Run(era+"/without the API key the Inspector is refused", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			r := run(ctx, "/time/mcp", "--protocol-era", era, "--method", "tools/list")
			// Exit 3 is the Inspector's "authorization required", which it
			// tells from the 401 without trying to log in (--stored-auth-only).
			if r.code != 3 || !bytes.Contains(r.stderr, []byte("auth_required")) || bytes.Contains(r.stdout, []byte("get_current_time")) {
				t.Fatalf("tools/list without the key: %s, want auth_required (exit 3)", r)
			}
		})
	}
}

func TestMCPInspectorCLIReadsResourcesAndGetsPromptsThroughTheFace(t *testing.T) {
	run := inspector(t)
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /everything {
		command node %s stdio
	}
}
`, httpPort, everythingScript(t)))
	waitReady(t, "/everything/openapi.json")
	const doc = "demo://resource/static/document/architecture.md"
	type resource struct{ URI, Name, MimeType string }
	type content struct{ URI, MimeType, Text string }
	for _, era := range []string{"legacy", "modern"} {
		t.Run(era, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			call := func(args ...string) inspectorRun {
				t.Helper()
				r := run(ctx, "/everything/mcp", append([]string{"--protocol-era", era}, args...)...)
				if r.code != 0 {
					t.Fatalf("%v: %s", args, r)
				}
				return r
			}
			resources := inspectorResult[struct {
				Resources []resource `json:"resources"`
			}](t, call("--method", "resources/list"))
			if !slices.ContainsFunc(resources.Resources, func(r resource) bool {
				return r.URI == doc && r.MimeType == "text/markdown"
			}) {
				t.Errorf("resources/list has no %s: %+v", doc, resources.Resources)
			}
			templates := inspectorResult[struct {
				ResourceTemplates []struct{ URITemplate string } `json:"resourceTemplates"`
			}](t, call("--method", "resources/templates/list"))
			if !slices.ContainsFunc(templates.ResourceTemplates, func(r struct{ URITemplate string }) bool {
				return r.URITemplate == "demo://resource/dynamic/text/{resourceId}"
			}) {
				t.Errorf("resources/templates/list: %+v", templates.ResourceTemplates)
			}
			read := inspectorResult[struct {
				Contents []content `json:"contents"`
			}](t, call("--method", "resources/read", "--uri", doc))
			if len(read.Contents) != 1 || read.Contents[0].URI != doc || !strings.HasPrefix(read.Contents[0].Text, "# Everything Server") {
				t.Errorf("resources/read %s: %+v", doc, read.Contents)
			}
			// A URI of a template, read as the server fabricates it.
			read = inspectorResult[struct {
				Contents []content `json:"contents"`
			}](t, call("--method", "resources/read", "--uri", "demo://resource/dynamic/text/7"))
			if len(read.Contents) != 1 || !strings.Contains(read.Contents[0].Text, "7") {
				t.Errorf("resources/read of a template's URI: %+v", read.Contents)
			}
			prompts := inspectorResult[promptList](t, call("--method", "prompts/list"))
			var names []string
			for _, p := range prompts.Prompts {
				names = append(names, p.Name)
				if p.Name == "args-prompt" && (len(p.Arguments) != 2 || p.Arguments[0].Name != "city" || !p.Arguments[0].Required) {
					t.Errorf("args-prompt's arguments: %+v", p.Arguments)
				}
			}
			if !slices.Contains(names, "simple-prompt") || !slices.Contains(names, "args-prompt") {
				t.Errorf("prompts/list: %v", names)
			}
			got := inspectorResult[struct {
				Messages []struct {
					Role    string                      `json:"role"`
					Content struct{ Type, Text string } `json:"content"`
				} `json:"messages"`
			}](t, call("--method", "prompts/get", "--prompt-name", "args-prompt", "--prompt-args", "city=Paris"))
			if len(got.Messages) != 1 || got.Messages[0].Role != "user" || got.Messages[0].Content.Text != "What's weather in Paris?" {
				t.Errorf("prompts/get args-prompt: %+v", got.Messages)
			}
		})
	}
}

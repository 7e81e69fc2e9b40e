// Command echoserver is the benchmark's upstream: an MCP server over stdio
// whose tools do next to nothing, so that what a benchmark measures is the
// path to it.
//
// Tools:
//   - echo {message string}: returns the message as text.
//   - discard {message string}: returns "ok", whatever the message's size.
//   - sleep {ms integer, default 10}: sleeps, then returns "slept".
//   - with -tools N, also tool_0000 … tool_NNNN {query, limit, filter}: the
//     schema of a typical search tool; each returns its own name.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// searchSchema is the input schema of the generated tools: arguments with
// constraints, a default, a reference and a nullable format.
const searchSchema = `{"$schema":"http://json-schema.org/draft-07/schema#","type":"object","properties":{
	"query":{"type":"string","description":"What to look for","minLength":1},
	"limit":{"type":"integer","minimum":1,"maximum":100,"default":10},
	"filter":{"$ref":"#/$defs/Filter"}},"required":["query"],
	"$defs":{"Filter":{"type":"object","properties":{"kind":{"enum":["a","b","c"]},"since":{"type":["string","null"],"format":"date-time"}}}}}`

func main() {
	tools := flag.Int("tools", 0, "how many generated tools to add")
	flag.Parse()

	s := server.NewMCPServer("bench-echo", "1.0.0", server.WithToolCapabilities(false))
	s.AddTool(mcp.NewTool("echo", mcp.WithDescription("Returns the message."),
		mcp.WithString("message", mcp.Required(), mcp.Description("what to echo"))),
		func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText(req.GetString("message", "")), nil
		})
	s.AddTool(mcp.NewTool("discard", mcp.WithDescription(`Takes a message and returns "ok".`),
		mcp.WithString("message", mcp.Required(), mcp.Description("what to discard"))),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return mcp.NewToolResultText("ok"), nil
		})
	s.AddTool(mcp.NewTool("sleep", mcp.WithDescription("Sleeps ms milliseconds, then returns \"slept\"."),
		mcp.WithInteger("ms", mcp.DefaultNumber(10), mcp.Min(0), mcp.Max(60000), mcp.Description("milliseconds to sleep"))),
		func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			t := time.NewTimer(time.Duration(req.GetInt("ms", 10)) * time.Millisecond)
			defer t.Stop()
			select {
			case <-t.C:
				return mcp.NewToolResultText("slept"), nil
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		})
	for i := range *tools {
		name := fmt.Sprintf("tool_%04d", i)
		s.AddTool(mcp.NewToolWithRawSchema(name, "A generated search tool.", json.RawMessage(searchSchema)),
			func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return mcp.NewToolResultText(name), nil
			})
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stdio := server.NewStdioServer(s)
	stdio.SetErrorLogger(log.New(os.Stderr, "echoserver: ", 0))
	// mcp-go runs calls on 5 workers by default, which would cap a
	// benchmark at concurrency 5.
	server.WithWorkerPoolSize(256)(stdio)
	server.WithQueueSize(1024)(stdio)
	if err := stdio.Listen(ctx, os.Stdin, os.Stdout); err != nil && ctx.Err() == nil {
		log.Fatalf("echoserver: %v", err)
	}
}

package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	mcpclient "github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// haikuWriter samples a haiku with the model m1.
type haikuWriter struct{}

func (haikuWriter) CreateMessage(_ context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	if text, _ := req.Messages[0].Content.(mcp.TextContent); text.Text != fixture.SamplePrompt {
		return nil, fmt.Errorf("asked %+v", req.Messages)
	}
	return &mcp.CreateMessageResult{Model: "m1", StopReason: "endTurn",
		SamplingMessage: mcp.SamplingMessage{Role: mcp.RoleAssistant, Content: mcp.NewTextContent("quiet relay")}}, nil
}

func TestMCPFaceRelaysSamplingToTheClientThatCalledAndRefusesTheRest(t *testing.T) {
	sdk := httptest.NewServer(fixture.NewSamplingHandler())
	t.Cleanup(func() {
		sdk.CloseClientConnections()
		sdk.Close()
	})
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /samples {
		server http {
			url %s
			protocol legacy
			sampling relay
			timeout 5s
		}
		server stdio {
			%s
			sampling relay
			timeout 5s
		}
	}
}
`, httpPort, sdk.URL, testFixture(t, fixture.Options{Resources: true})))
	waitReady(t, "/samples/http/openapi.json")
	waitReady(t, "/samples/stdio/openapi.json")

	connect := func(t *testing.T, ctx context.Context, sampling bool) *mcpclient.Client {
		t.Helper()
		// The endpoint's server (mcp-go's) sends sampling/createMessage on
		// the standing GET stream.
		tr, err := transport.NewStreamableHTTP(base+"/samples/mcp", transport.WithContinuousListening())
		if err != nil {
			t.Fatal(err)
		}
		opts := []mcpclient.ClientOption{mcpclient.WithProtocolVersion(mcp.LATEST_LEGACY_PROTOCOL_VERSION)}
		if sampling {
			opts = append(opts, mcpclient.WithSamplingHandler(haikuWriter{}))
		}
		c := mcpclient.NewClient(tr, opts...)
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if _, err := c.Initialize(ctx, mcp.InitializeRequest{}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	const refused = "error -32601: sampling/createMessage is not relayed: "
	for _, tc := range []struct {
		name     string
		sampling bool
		tool     string
		want     string
	}{
		{"a request in the call's answer goes to the client", true, "http_sample", "m1: quiet relay"},
		{"a client without sampling is not asked", false, "http_sample",
			refused + "the MCP client that made the call did not declare sampling"},
		// A stdio server's request comes on its own: with this client's
		// call the only one under way, it is the client's. (mcp-go's stdio
		// server keeps the message of the -32601 only.)
		{"a stdio server's request goes to the only client calling", true, "stdio_sample", "m1: quiet relay"},
		{"a stdio server's request is not passed to a client without sampling", false, "stdio_sample",
			"sampling request failed: sampling/createMessage is not relayed: the MCP client that made the call did not declare sampling"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			c := connect(t, ctx, tc.sampling)
			res, err := mcpCall(ctx, c, tc.tool, `{}`)
			// A request sent on a GET connection that the client replaced
			// as its session started never reaches it (mcp-go keeps one
			// connection per stream): the call times out, and is made
			// again.
			for i := 0; i < 4 && err != nil && strings.Contains(err.Error(), "did not answer within"); i++ {
				res, err = mcpCall(ctx, c, tc.tool, `{}`)
			}
			if err != nil || !strings.Contains(firstText(res), tc.want) {
				t.Errorf("%s = %+v, %v; want a text with %q", tc.tool, res, err, tc.want)
			}
		})
	}
	if r := do(t, http.MethodPost, "/samples/http/sample", `{}`); !strings.Contains(string(r.body), refused+"no MCP client to ask") {
		t.Errorf("the HTTP API's call: %s, want the refusal", r)
	}
}

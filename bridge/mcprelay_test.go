package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	mcpclient "github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// samplingCaller samples, for its tool "sample", with the call's
// SampleFunc, as an Upstream does with a sampling request it ties to the
// call, and answers with the model and text sampled, or with the reason
// of a refusal.
type samplingCaller struct{ *faceCaller }

func (c samplingCaller) CallTool(ctx context.Context, tool string, args json.RawMessage) (*upstream.CallResult, error) {
	fn := upstream.SamplingFrom(ctx)
	if fn == nil {
		return &upstream.CallResult{Content: []upstream.Content{text("no SampleFunc")}}, nil
	}
	res, err := fn(ctx, mcp.CreateMessageRequest{CreateMessageParams: mcp.CreateMessageParams{MaxTokens: 8,
		Messages: []mcp.SamplingMessage{{Role: mcp.RoleUser, Content: mcp.NewTextContent("Say hi.")}}}})
	if refused := (*upstream.SamplingRefusedError)(nil); errors.As(err, &refused) {
		return &upstream.CallResult{Content: []upstream.Content{text("refused: " + refused.Reason)}}, nil
	}
	if err != nil {
		return nil, err
	}
	said, _ := res.Content.(mcp.TextContent)
	return &upstream.CallResult{Content: []upstream.Content{text(res.Model + ": " + said.Text)}}, nil
}

// greeter samples "hi" with the model m1, and counts the requests.
type greeter struct{ asked int }

func (g *greeter) CreateMessage(context.Context, mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	g.asked++
	return &mcp.CreateMessageResult{Model: "m1", StopReason: "endTurn",
		SamplingMessage: mcp.SamplingMessage{Role: mcp.RoleAssistant, Content: mcp.NewTextContent("hi")}}, nil
}

// sampleTimeout bounds a call of the sampling tools in these tests: see
// callSampling.
const sampleTimeout = 3 * time.Second

// callSampling calls the sampling tool "sample" until it answers within
// sampleTimeout, at most five times. mcp-go's server sends
// sampling/createMessage on the session's standing GET stream, which the
// client may open more than once as its session starts; each opening
// replaces the connection before, and a request sent on a replaced one
// never reaches the client: the call then times out, and is made again.
func callSampling(t *testing.T, cl *mcpclient.Client) (*mcp.CallToolResult, error) {
	t.Helper()
	for range 4 {
		res, err := callMCPTool(cl, "sample", nil)
		if err == nil || !strings.Contains(err.Error(), "did not answer within") {
			return res, err
		}
	}
	return callMCPTool(cl, "sample", nil)
}

func TestMCPFacePassesSamplingOnToTheClientThatCalledOrRefusesSayingWhy(t *testing.T) {
	b, err := New(Config{Single: true, Servers: []*ServerConfig{{Name: "s", Upstream: samplingCaller{newFaceCaller("sample")}, Timeout: sampleTimeout}}})
	if err != nil {
		t.Fatal(err)
	}
	url := serveBridge(t, b).URL + "/m/mcp"
	cases := []struct {
		name, protocol string
		sampler        *greeter
		want           string
	}{
		{"a client that declares sampling", mcp.LATEST_LEGACY_PROTOCOL_VERSION, &greeter{}, "m1: hi"},
		{"a client that does not", mcp.LATEST_LEGACY_PROTOCOL_VERSION, nil, "refused: " + samplingUndeclared},
		// Asked in an input_required result, the call parked meanwhile.
		{"a 2026-07-28 client that declares sampling", mcp.LATEST_PROTOCOL_VERSION, &greeter{}, "m1: hi"},
		{"a 2026-07-28 client that does not", mcp.LATEST_PROTOCOL_VERSION, nil, "refused: " + samplingUndeclared},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var topts []transport.StreamableHTTPCOption
			if tc.protocol != mcp.LATEST_PROTOCOL_VERSION {
				// mcp-go's server sends sampling/createMessage on the
				// standing GET stream.
				topts = append(topts, transport.WithContinuousListening())
			}
			var opts []mcpclient.ClientOption
			if tc.sampler != nil {
				opts = append(opts, mcpclient.WithSamplingHandler(tc.sampler))
			}
			cl, _ := initializeWith(t, url, tc.protocol, nil, opts, topts...)
			res, err := callSampling(t, cl)
			if err != nil || len(res.Content) != 1 || res.Content[0].(mcp.TextContent).Text != tc.want {
				t.Fatalf("sample = %+v, %v; want %q", res, err, tc.want)
			}
			if asked, want := tc.sampler != nil && tc.sampler.asked > 0, tc.want == "m1: hi"; asked != want {
				t.Errorf("the client was asked: %v, want %v", asked, want)
			}
		})
	}
}

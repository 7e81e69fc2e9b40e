package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

func TestUpstream_SamplingGoesToTheCallsSampleFuncOrIsRefused(t *testing.T) {
	haiku := func(_ context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
		text, _ := req.Messages[0].Content.(mcp.TextContent)
		if text.Text != fixture.SamplePrompt {
			return nil, errors.New("asked " + text.Text)
		}
		return &mcp.CreateMessageResult{Model: "m1", StopReason: "endTurn",
			SamplingMessage: mcp.SamplingMessage{Role: mcp.RoleAssistant, Content: mcp.NewTextContent("quiet relay")}}, nil
	}
	refused := func(context.Context, mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
		return nil, &SamplingRefusedError{Reason: "the client cannot sample"}
	}
	failed := func(context.Context, mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
		return nil, errors.New("the model is down")
	}
	sdkServer := httptest.NewServer(fixture.NewSamplingHandler())
	t.Cleanup(func() {
		sdkServer.CloseClientConnections()
		sdkServer.Close()
	})
	u, _ := start(t, Spec{Name: "sdk", Transport: TransportStreamableHTTP, Protocol: ProtocolLegacy, URL: sdkServer.URL},
		Options{Sampling: true})
	for _, tc := range []struct {
		name     string
		fn       SampleFunc
		want     string
		errorful bool
	}{
		{"the call's client samples", haiku, "m1: quiet relay", false},
		{"a call without a SampleFunc is refused as untied", nil,
			"error -32601: sampling/createMessage is not relayed: no MCP client to ask: the request is not tied to a call", true},
		{"a refusal keeps its reason", refused,
			"error -32601: sampling/createMessage is not relayed: the client cannot sample", true},
		{"another failure reaches the server as an internal error", failed,
			"error -32603: sampling request failed: sampling: the model is down", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.fn != nil {
				ctx = WithSampling(ctx, tc.fn)
			}
			res, err := u.CallTool(ctx, "sample", json.RawMessage(`{}`))
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Content) != 1 || res.IsError != tc.errorful || !strings.Contains(res.Content[0].Text, tc.want) {
				t.Errorf("sample = %+v, want isError %v and a text with %q", res, tc.errorful, tc.want)
			}
		})
	}
}

func TestUpstream_SamplingIsDeclaredAndListenedForOnlyWhenRelayed(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sampling bool
		want     string
	}{
		{"off", false, ""},
		{"relay", true, "{}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRawServer(t, legacyAnswers)
			// Under protocol auto, a legacy server whose tools do not
			// change is listened to only for requests of its own.
			u, _ := start(t, Spec{Name: "raw", Transport: TransportStreamableHTTP, URL: srv.URL + "/mcp"}, Options{Sampling: tc.sampling})
			if p := u.Tools().Server.Protocol; p != "2025-11-25" {
				t.Fatalf("protocol %q", p)
			}
			inits := srv.requests("initialize")
			var p struct {
				Capabilities struct {
					Sampling json.RawMessage `json:"sampling"`
				} `json:"capabilities"`
			}
			_ = json.Unmarshal(inits[len(inits)-1].Params, &p)
			if got := string(p.Capabilities.Sampling); got != tc.want {
				t.Errorf("initialize declared sampling %q, want %q", got, tc.want)
			}
			deadline := time.Now().Add(2 * time.Second)
			for tc.sampling && !slices.Contains(srv.methods(), http.MethodGet) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := slices.Contains(srv.methods(), http.MethodGet); got != tc.sampling {
				t.Errorf("standing GET stream opened: %v, want %v (requests %v)", got, tc.sampling, srv.methods())
			}
		})
	}
}

func TestUpstream_SamplingSentOnItsOwnIsRefusedAsUntied(t *testing.T) {
	// mcp-go's server sends sampling/createMessage on the standing GET
	// stream, not in the call's answer: the Upstream cannot tell whose
	// call it is for, and refuses it with -32601 whatever the call carries.
	u, _ := start(t, Spec{Name: "fx", Transport: TransportStreamableHTTP, Protocol: ProtocolLegacy,
		URL: fixture.NewStreamableHTTP(t, fixture.Options{Resources: true})}, Options{Sampling: true})
	ctx, cancel := context.WithTimeout(WithSampling(context.Background(), func(context.Context, mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
		t.Error("a request sent on its own reached the call's SampleFunc")
		return nil, errors.New("unexpected")
	}), waitLimit)
	defer cancel()
	res, err := u.CallTool(ctx, "sample", json.RawMessage(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	const want = "sampling/createMessage error -32601: sampling/createMessage is not relayed: no MCP client to ask"
	if !res.IsError || len(res.Content) != 1 || !strings.Contains(res.Content[0].Text, want) {
		t.Errorf("sample = %+v, want an error with %q", res.Content, want)
	}
}

func TestSamplingFromGivesTheCallersFunctionDeclaredOrNot(t *testing.T) {
	asked := ""
	sample := func(tag string) SampleFunc {
		return func(context.Context, mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			asked = tag
			return nil, nil
		}
	}
	for _, tc := range []struct {
		name     string
		ctx      context.Context
		want     string // the function SamplingFrom gives, "" for none
		declares bool
	}{
		{"a caller that samples", WithSampling(context.Background(), sample("relay")), "relay", true},
		{"a caller that cannot", WithoutSampling(context.Background(), sample("refuse")), "refuse", false},
		{"a caller of the HTTP API", context.Background(), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			asked = ""
			if fn := SamplingFrom(tc.ctx); fn != nil {
				_, _ = fn(tc.ctx, mcp.CreateMessageRequest{})
			}
			if asked != tc.want {
				t.Errorf("SamplingFrom gave %q's function, want %q's", asked, tc.want)
			}
			if got := declaresSampling(tc.ctx); got != tc.declares {
				t.Errorf("declaresSampling = %v, want %v", got, tc.declares)
			}
		})
	}
}

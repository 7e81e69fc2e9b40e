//go:build unix

package upstream

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// A stdio server sends its requests on its own, naming no call: they go to
// the client of the calls under way when all are one caller's, else the
// server's options answer them.
func TestUpstream_StdioRequestsGoToTheSoleCallerUnderWay(t *testing.T) {
	policy := func(context.Context, Elicitation) (ElicitationAnswer, error) {
		return ElicitationAnswer{Action: ElicitDecline}, nil
	}
	u, logs := start(t, stdioSpec(fixture.Options{Resources: true, Tasks: true}), Options{Elicitation: policy, Sampling: true})

	// caller makes the calls of one client: its elicitations are
	// accepted with red, its sampling requests answered by model m1.
	caller := func(ctx context.Context, who any) context.Context {
		if who != nil {
			ctx = WithCaller(ctx, who)
		}
		ctx = WithElicitation(ctx, func(context.Context, Elicitation) (ElicitationAnswer, error) {
			return ElicitationAnswer{Action: ElicitAccept, Content: map[string]any{"color": "red"}}, nil
		})
		return WithSampling(ctx, func(context.Context, mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			return &mcp.CreateMessageResult{Model: "m1", StopReason: "endTurn",
				SamplingMessage: mcp.SamplingMessage{Role: mcp.RoleAssistant, Content: mcp.NewTextContent("relayed")}}, nil
		})
	}
	const (
		relayedAsk    = "accept map[color:red]"
		policyAsk     = "decline"
		relayedSample = "m1: relayed"
		refusedSample = "sampling failed: sampling request failed: sampling/createMessage is not relayed: no MCP client to ask"
	)
	for _, tc := range []struct {
		name string
		// under are the callers of the slow calls under way while "alice"
		// calls (nil: a call of the HTTP API)
		under      []any
		ask, which string
		sample     string
	}{
		{"one caller alone is asked", nil, relayedAsk, "", relayedSample},
		{"one caller with another call of its own is asked", []any{"alice"}, relayedAsk, "", relayedSample},
		{"two callers leave it to the policy", []any{"bob"}, policyAsk, untiedCallers, refusedSample},
		{"a call of the HTTP API leaves it to the policy", []any{nil}, policyAsk, untiedAnon, refusedSample},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			slow, stop := context.WithCancel(ctx)
			var wg sync.WaitGroup
			for _, who := range tc.under {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, _ = u.CallTool(caller(slow, who), "slow", json.RawMessage(`{"ms":60000}`))
				}()
			}
			defer wg.Wait()
			defer stop()
			eventually(t, "the slow calls under way", func() bool { return u.InFlight() == len(tc.under) })

			logs.TakeAll()
			for _, c := range []struct{ tool, want string }{{"ask", tc.ask}, {"sample", tc.sample}} {
				res, err := u.CallTool(caller(ctx, "alice"), c.tool, json.RawMessage(`{}`))
				if err != nil {
					t.Fatal(err)
				}
				if got := res.Content[0].Text; !strings.HasPrefix(got, c.want) {
					t.Errorf("%s = %q, want %q", c.tool, got, c.want)
				}
			}
			if tc.which != "" {
				if n := logs.FilterMessage("server request tied to no call: the server's options answer it").
					FilterField(zap.String("reason", tc.which)).Len(); n != 2 {
					t.Errorf("%d requests logged as untied because %q, want 2", n, tc.which)
				}
			} else if n := logs.FilterMessage("server request passed to the only MCP client with calls under way").Len(); n != 2 {
				t.Errorf("%d requests logged as passed to the sole caller, want 2", n)
			}
		})
	}

	t.Run("a session that ran a task leaves it to the policy", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if _, err := u.StartTask(ctx, fixture.TaskOnlyTool, json.RawMessage(`{"ms":1}`), 0); err != nil {
			t.Fatal(err)
		}
		res, err := u.CallTool(caller(ctx, "alice"), "ask", json.RawMessage(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Content[0].Text; got != policyAsk {
			t.Errorf("ask = %q, want %q", got, policyAsk)
		}
	})
}

func TestUpstream_SoleCallerIsNamedOnlyWhenUnambiguous(t *testing.T) {
	alice, bob := WithCaller(context.Background(), "alice"), WithCaller(context.Background(), "bob")
	related := &mcp.Meta{AdditionalFields: map[string]any{mcp.RelatedTaskMetaKey: map[string]any{"taskId": "t1"}}}
	for _, tc := range []struct {
		name  string
		calls []context.Context
		meta  *mcp.Meta
		sole  context.Context
		why   string
	}{
		{"no call under way", nil, nil, nil, untiedNoCall},
		{"one caller", []context.Context{alice, alice}, nil, alice, ""},
		{"two callers", []context.Context{alice, bob}, nil, nil, untiedCallers},
		{"a call of the HTTP API", []context.Context{alice, context.Background()}, nil, nil, untiedAnon},
		{"a request about a task", []context.Context{alice}, related, nil, untiedRelated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := New(Spec{Name: "u", Transport: TransportStdio, Command: "true"}, Options{}, nil)
			for _, ctx := range tc.calls {
				u.calls.push(&activeCall{ctx: ctx})
			}
			sole, why := u.soleCaller(nil, tc.meta)
			if sole != tc.sole || why != tc.why {
				t.Errorf("soleCaller = %v, %q; want %v, %q", sole, why, tc.sole, tc.why)
			}
		})
	}
}

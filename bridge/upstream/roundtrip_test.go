package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
)

// roundAnswers is a 2026-07-28 server whose tools/call asks, in an
// input_required result with the state "s1", for an elicitation ("ask"),
// the roots ("where") and a sampling ("llm"), as many as the tool's
// argument "ask" lists; sent again with the state, it answers with the
// inputResponses it got, as JSON text.
func roundAnswers(r rpcRequest) (int, any) {
	if r.Method != "tools/call" {
		return modernAnswers(r)
	}
	var p struct {
		Arguments      struct{ Ask []string }     `json:"arguments"`
		InputResponses map[string]json.RawMessage `json:"inputResponses"`
		RequestState   string                     `json:"requestState"`
	}
	_ = json.Unmarshal(r.Params, &p)
	if p.RequestState == "s1" {
		b, _ := json.Marshal(p.InputResponses)
		return 200, result(r.ID, map[string]any{"content": []any{map[string]any{"type": "text", "text": string(b)}}})
	}
	requests := map[string]any{}
	for _, a := range p.Arguments.Ask {
		switch a {
		case "ask":
			requests[a] = map[string]any{"method": "elicitation/create",
				"params": map[string]any{"message": "Sure?", "requestedSchema": map[string]any{"type": "object", "properties": map[string]any{}}}}
		case "where":
			requests[a] = map[string]any{"method": "roots/list"}
		case "llm":
			requests[a] = map[string]any{"method": "sampling/createMessage",
				"params": map[string]any{"maxTokens": 5, "messages": []any{map[string]any{"role": "user", "content": map[string]any{"type": "text", "text": "hi"}}}}}
		}
	}
	return 200, result(r.ID, map[string]any{"resultType": "input_required", "requestState": "s1", "inputRequests": requests})
}

func TestUpstream_ACallerInTheRoundTripIsAskedWhatItAnswersAndTheRestIsAnsweredHere(t *testing.T) {
	decline := func(context.Context, Elicitation) (ElicitationAnswer, error) {
		return ElicitationAnswer{Action: ElicitDecline}, nil
	}
	roots := []string{"/srv/data"}
	asks := func(methods ...mcp.MCPMethod) func(mcp.MCPMethod) bool {
		return func(m mcp.MCPMethod) bool { return slices.Contains(methods, m) }
	}
	const declined, rooted = `{"action":"decline"}`, `{"roots":[{"uri":"file:///srv/data","name":"data"}]}`
	for _, tc := range []struct {
		name string
		opts Options
		ask  []string
		asks func(mcp.MCPMethod) bool
		// asked are the requests the caller gets; answered the answers
		// given here beside them. With none asked, the call completes
		// with the server's text.
		asked    []string
		answered map[string]string
		text     string
		err      string
	}{
		{name: "the caller answers the elicitation, the roots are the configuration's",
			opts: Options{Elicitation: decline, Roots: roots}, ask: []string{"ask", "where"},
			asks: asks(mcp.MethodElicitationCreate), asked: []string{"ask"}, answered: map[string]string{"where": rooted}},
		{name: "a caller that answers nothing leaves every request to the policy and roots",
			opts: Options{Elicitation: decline, Roots: roots}, ask: []string{"ask", "where"},
			asks: asks(), text: `{"ask":` + declined + `,"where":` + rooted + `}`},
		{name: "the caller is not asked what the configuration does not let the server ask",
			opts: Options{Roots: roots}, ask: []string{"ask"},
			asks: asks(mcp.MethodElicitationCreate), err: "elicitation/create is not answered: this server's configuration declares no such capability"},
		{name: "sampling goes to a caller that samples when the server may sample",
			opts: Options{Sampling: true}, ask: []string{"llm"},
			asks: asks(mcp.MethodSamplingCreateMessage), asked: []string{"llm"}, answered: map[string]string{}},
		{name: "sampling nobody answers is refused",
			opts: Options{Sampling: true}, ask: []string{"llm"},
			asks: asks(), err: "sampling/createMessage is not relayed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRawServer(t, roundAnswers)
			u, _ := start(t, modernSpec(srv.URL), tc.opts)
			args, _ := json.Marshal(map[string]any{"ask": tc.ask})
			ctx := WithRoundTrip(context.Background(), &RoundTrip{Asks: tc.asks})
			res, err := u.CallTool(ctx, "add", args)
			var ir *InputRequiredError
			switch {
			case tc.err != "":
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one saying %q", err, tc.err)
				}
				return
			case tc.asked == nil:
				if err != nil || res.Content[0].Text != tc.text {
					t.Fatalf("result %+v, %v; want the text %s", res, err, tc.text)
				}
				return
			case !errors.As(err, &ir):
				t.Fatalf("result %+v, %v; want an *InputRequiredError", res, err)
			}
			if got := slices.Sorted(maps.Keys(ir.Requests)); !slices.Equal(got, tc.asked) {
				t.Errorf("the caller is asked %v, want %v", got, tc.asked)
			}
			answered := map[string]string{}
			for id, a := range ir.Answered {
				answered[id] = string(a)
			}
			if !maps.Equal(answered, tc.answered) {
				t.Errorf("answered here %v, want %v", answered, tc.answered)
			}
			if ir.RequestState != "s1" {
				t.Errorf("state %q, want the server's", ir.RequestState)
			}

			// The next round carries the caller's answers beside those
			// given here, and the server's state.
			next := &RoundTrip{RequestState: ir.RequestState, Asks: tc.asks, InputResponses: maps.Clone(ir.Answered)}
			for _, id := range tc.asked {
				next.InputResponses[id] = json.RawMessage(`{"from":"the caller"}`)
			}
			res, err = u.CallTool(WithRoundTrip(context.Background(), next), "add", args)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]json.RawMessage
			if err := json.Unmarshal([]byte(res.Content[0].Text), &got); err != nil {
				t.Fatalf("the server got %s: %v", res.Content[0].Text, err)
			}
			if !maps.EqualFunc(got, next.InputResponses, func(a, b json.RawMessage) bool { return string(a) == string(b) }) {
				t.Errorf("the server got %s, want %v", res.Content[0].Text, next.InputResponses)
			}
		})
	}
}

func TestUpstream_A2026RequestDeclaresSamplingOnlyForACallerThatSamples(t *testing.T) {
	srv := newRawServer(t, roundAnswers)
	decline := func(context.Context, Elicitation) (ElicitationAnswer, error) {
		return ElicitationAnswer{Action: ElicitDecline}, nil
	}
	u, _ := start(t, modernSpec(srv.URL), Options{Sampling: true, Elicitation: decline})
	sample := func(context.Context, mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
		return nil, errors.New("not asked here")
	}
	for _, tc := range []struct {
		name     string
		ctx      context.Context
		declares bool
	}{
		{"a caller that samples", WithSampling(context.Background(), sample), true},
		{"a caller of the HTTP API", context.Background(), false},
		{"a caller whose client declared no sampling", WithoutSampling(context.Background(), sample), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(srv.requests("tools/call"))
			if _, err := u.CallTool(tc.ctx, "add", json.RawMessage(`{}`)); err != nil {
				t.Fatal(err)
			}
			calls := srv.requests("tools/call")
			if len(calls) <= before {
				t.Fatal("no tools/call sent")
			}
			var p struct {
				Meta struct {
					Caps map[string]json.RawMessage `json:"io.modelcontextprotocol/clientCapabilities"`
				} `json:"_meta"`
			}
			if err := json.Unmarshal(calls[before].Params, &p); err != nil {
				t.Fatal(err)
			}
			if _, ok := p.Meta.Caps["sampling"]; ok != tc.declares {
				t.Errorf("declared %s; sampling declared: %v, want %v", slices.Sorted(maps.Keys(p.Meta.Caps)), ok, tc.declares)
			}
			if p.Meta.Caps["elicitation"] == nil {
				t.Errorf("declared %s, without elicitation", slices.Sorted(maps.Keys(p.Meta.Caps)))
			}
		})
	}
}

func TestUpstream_A2026SessionSubscribesToTheListChangesTheServerAnnounces(t *testing.T) {
	srv := newRawServer(t, func(r rpcRequest) (int, any) {
		if r.Method == "server/discover" {
			return 200, result(r.ID, map[string]any{
				"resultType": "complete", "supportedVersions": []string{mcp.LATEST_PROTOCOL_VERSION},
				"capabilities": map[string]any{"tools": map[string]any{},
					"prompts": map[string]any{"listChanged": true}, "resources": map[string]any{"listChanged": true}},
				"serverInfo": map[string]any{"name": "raw", "version": "1"},
			})
		}
		return modernAnswers(r)
	})
	start(t, modernSpec(srv.URL), Options{})
	deadline := time.Now().Add(10 * time.Second)
	for len(srv.requests("subscriptions/listen")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no subscriptions/listen sent; the server got %v", srv.methods())
		}
		time.Sleep(10 * time.Millisecond)
	}
	var p struct {
		Filter map[string]any `json:"notifications"`
	}
	if err := json.Unmarshal(srv.requests("subscriptions/listen")[0].Params, &p); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"promptsListChanged": true, "resourcesListChanged": true}
	if !maps.Equal(p.Filter, want) {
		t.Errorf("subscribed to %v, want %v", p.Filter, want)
	}
}

func TestUpstream_A2026SessionSubscribesToAResourceInItsListenFilter(t *testing.T) {
	srv := newRawServer(t, func(r rpcRequest) (int, any) {
		if r.Method == "server/discover" {
			return 200, result(r.ID, map[string]any{
				"resultType": "complete", "supportedVersions": []string{mcp.LATEST_PROTOCOL_VERSION},
				"capabilities": map[string]any{"tools": map[string]any{}, "resources": map[string]any{"subscribe": true}},
				"serverInfo":   map[string]any{"name": "raw", "version": "1"},
			})
		}
		return modernAnswers(r)
	})
	u, _ := start(t, modernSpec(srv.URL), Options{})
	// listened waits for a subscriptions/listen whose filter is want:
	// mcp-go opens each stream in the background, and the one a newer
	// replaces before it is sent is not.
	listened := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			var got []string
			for _, r := range srv.requests("subscriptions/listen") {
				var p struct {
					Filter json.RawMessage `json:"notifications"`
				}
				_ = json.Unmarshal(r.Params, &p)
				got = append(got, string(p.Filter))
			}
			if slices.Contains(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("subscriptions/listen filters %v, none %s", got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	ctx := context.Background()
	for _, step := range []struct {
		subscribe bool
		uri, want string
	}{
		{true, "file:///a", `{"resourceSubscriptions":["file:///a"]}`},
		{true, "file:///b", `{"resourceSubscriptions":["file:///a","file:///b"]}`},
		{false, "file:///a", `{"resourceSubscriptions":["file:///b"]}`},
	} {
		do := u.UnsubscribeResource
		if step.subscribe {
			do = u.SubscribeResource
		}
		if err := do(ctx, step.uri); err != nil {
			t.Fatal(err)
		}
		listened(step.want)
	}
	if m := srv.methods(); slices.Contains(m, "resources/subscribe") || slices.Contains(m, "resources/unsubscribe") {
		t.Errorf("the server got %v: a method 2026-07-28 does not have", m)
	}
}

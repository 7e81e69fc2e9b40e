package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	mcpclient "github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// newRoundTripServer serves an mcp-go server whose tool "confirm" asks
// for input in input_required results (2026-07-28; mcp-go's server asks a
// 2025-11-25 client with requests of its own instead): an elicitation
// ("ok"), a sampling ("haiku") and the roots ("where"), those its argument
// "ask" names. Sent again with the answers and the state "round-1", it
// answers what it got, a line each, in the order asked. The prompt "brief"
// asks for the elicitation alone and puts the answer in its message.
func newRoundTripServer(t *testing.T) string {
	s := server.NewMCPServer("rounds", "1", server.WithToolCapabilities(false), server.WithPromptCapabilities(false))
	s.AddTool(mcp.NewTool("confirm", mcp.WithArray("ask", mcp.WithStringItems())), func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		ask := req.GetStringSlice("ask", nil)
		answers := req.Params.InputResponses
		if len(answers) == 0 {
			b := server.NewInputRequestBuilder("round-1")
			for _, a := range ask {
				switch a {
				case "ok":
					b.Elicit(a, mcp.ElicitationParams{Message: "Proceed?", RequestedSchema: map[string]any{"type": "object",
						"properties": map[string]any{"sure": map[string]any{"type": "boolean"}}}})
				case "haiku":
					b.Sample(a, mcp.CreateMessageParams{MaxTokens: 20, Messages: []mcp.SamplingMessage{{Role: mcp.RoleUser, Content: mcp.NewTextContent(fixture.SamplePrompt)}}})
				case "where":
					b.Roots(a)
				}
			}
			return b.ToolResult(), nil
		}
		if req.Params.RequestState != "round-1" {
			return nil, fmt.Errorf("requestState %q is not the server's", req.Params.RequestState)
		}
		var lines []string
		for _, a := range ask {
			switch a {
			case "ok":
				e := server.ElicitationResponse(answers, a)
				if e == nil {
					return nil, fmt.Errorf("no answer to %q", a)
				}
				c, _ := json.Marshal(e.Content)
				lines = append(lines, "ok: "+string(e.Action)+" "+string(c))
			case "haiku":
				m := server.SamplingResponse(answers, a)
				if m == nil {
					return nil, fmt.Errorf("no answer to %q", a)
				}
				lines = append(lines, "haiku: "+m.Model+" "+contentText(m.Content))
			case "where":
				r := server.RootsResponse(answers, a)
				if r == nil {
					return nil, fmt.Errorf("no answer to %q", a)
				}
				for _, root := range r.Roots {
					lines = append(lines, "where: "+root.URI)
				}
			}
		}
		return mcp.NewToolResultText(strings.Join(lines, "\n")), nil
	})
	s.AddPrompt(mcp.NewPrompt("brief"), func(_ context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		e := server.ElicitationResponse(req.Params.InputResponses, "ok")
		if e == nil {
			return server.NewInputRequestBuilder("round-1").Elicit("ok", mcp.ElicitationParams{Message: "Proceed?",
				RequestedSchema: map[string]any{"type": "object", "properties": map[string]any{"sure": map[string]any{"type": "boolean"}}}}).PromptResult(), nil
		}
		return mcp.NewGetPromptResult("brief", []mcp.PromptMessage{mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent("brief: "+string(e.Action)))}), nil
	})
	srv := httptest.NewServer(server.NewStreamableHTTPServer(s, server.WithDisableLocalhostProtection(true)))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv.URL + "/mcp"
}

// contentText is the text of a text content item, which mcp-go decodes as a
// TextContent or a map depending on where it meets it.
func contentText(content any) string {
	b, _ := json.Marshal(content)
	var c struct{ Text string }
	_ = json.Unmarshal(b, &c)
	return c.Text
}

// haikuSampler samples "quiet relay" with the model m1 when asked for
// fixture.SamplePrompt.
type haikuSampler struct{}

func (haikuSampler) CreateMessage(_ context.Context, req mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	if len(req.Messages) != 1 || contentText(req.Messages[0].Content) != fixture.SamplePrompt {
		return nil, fmt.Errorf("asked %+v", req.Messages)
	}
	return &mcp.CreateMessageResult{Model: "m1", StopReason: "endTurn",
		SamplingMessage: mcp.SamplingMessage{Role: mcp.RoleAssistant, Content: mcp.NewTextContent("quiet relay")}}, nil
}

// sureUser answers every elicitation with {"sure": true}, and remembers
// the messages.
type sureUser struct {
	mu    sync.Mutex
	asked []string
}

func (u *sureUser) Elicit(_ context.Context, req mcp.ElicitationRequest) (*mcp.ElicitationResult, error) {
	u.mu.Lock()
	u.asked = append(u.asked, req.Params.Message)
	u.mu.Unlock()
	return &mcp.ElicitationResult{ElicitationResponse: mcp.ElicitationResponse{Action: mcp.ElicitationResponseActionAccept,
		Content: map[string]any{"sure": true}}}, nil
}

func (u *sureUser) questions() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.asked)
}

// askedClient is an mcp-go client of the endpoint at path, initialized
// with protocol, that answers elicitations as user does (none when nil)
// and samples as haikuSampler does when sampling is set.
func askedClient(t *testing.T, path, protocol string, user *sureUser, sampling bool) *mcpclient.Client {
	t.Helper()
	var topts []transport.StreamableHTTPCOption
	if protocol != mcp.LATEST_PROTOCOL_VERSION {
		// A 2025-11-25 client is asked on the standing GET stream.
		topts = append(topts, transport.WithContinuousListening())
	}
	tr, err := transport.NewStreamableHTTP(base+path, topts...)
	if err != nil {
		t.Fatal(err)
	}
	opts := []mcpclient.ClientOption{mcpclient.WithProtocolVersion(protocol)}
	if user != nil {
		opts = append(opts, mcpclient.WithElicitationHandler(user))
	}
	if sampling {
		opts = append(opts, mcpclient.WithSamplingHandler(haikuSampler{}))
	}
	c := mcpclient.NewClient(tr, opts...)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{}); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestMCPFacePassesAServersInputRequestsOnToItsClientInBothEras(t *testing.T) {
	rootDir := t.TempDir()
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /rounds {
		url %s
		elicitation decline
		sampling relay
		roots %s
	}
}
`, httpPort, newRoundTripServer(t), rootDir))
	waitReady(t, "/rounds/openapi.json")
	where := "where: file://" + rootDir

	connect := func(t *testing.T, protocol string, user *sureUser, sampling bool) *mcpclient.Client {
		return askedClient(t, "/rounds/mcp", protocol, user, sampling)
	}

	for _, protocol := range []string{mcp.LATEST_PROTOCOL_VERSION, mcp.LATEST_LEGACY_PROTOCOL_VERSION} {
		for _, tc := range []struct {
			name     string
			user     bool // the client answers elicitations
			sampling bool // and samples
			ask      []string
			want     string // the tool's text, or the error's
			err      bool
		}{
			{name: "a client that answers everything is asked everything but the roots", user: true, sampling: true,
				ask: []string{"ok", "haiku", "where"}, want: "ok: accept {\"sure\":true}\nhaiku: m1 quiet relay\n" + where},
			{name: "the elicitation policy answers for a client that cannot",
				ask: []string{"ok", "where"}, want: "ok: decline null\n" + where},
			{name: "sampling for a client that does not sample is refused", user: true,
				ask: []string{"ok", "haiku"}, want: "is not relayed", err: true},
		} {
			t.Run(protocol+"/"+tc.name, func(t *testing.T) {
				var user *sureUser
				if tc.user {
					user = &sureUser{}
				}
				c := connect(t, protocol, user, tc.sampling)
				ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
				defer cancel()
				args, _ := json.Marshal(map[string]any{"ask": tc.ask})
				res, err := mcpCall(ctx, c, "confirm", string(args))
				switch {
				case tc.err:
					if err == nil || !strings.Contains(err.Error(), tc.want) {
						t.Fatalf("confirm = %+v, %v; want an error saying %q", res, err, tc.want)
					}
				case err != nil:
					t.Fatal(err)
				case firstText(res) != tc.want:
					t.Fatalf("confirm answered %q, want %q", firstText(res), tc.want)
				}
				if user == nil {
					return
				}
				if q := user.questions(); tc.want != "" && !tc.err && !slices.Equal(q, []string{"Proceed?"}) {
					t.Errorf("the client was asked %q, want the server's question once", q)
				}
			})
		}
		t.Run(protocol+"/a prompt asks too", func(t *testing.T) {
			user := &sureUser{}
			c := connect(t, protocol, user, false)
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			req := mcp.GetPromptRequest{}
			req.Params.Name = "brief"
			res, err := c.GetPrompt(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			if text, _ := res.Messages[0].Content.(mcp.TextContent); text.Text != "brief: accept" {
				t.Errorf("brief = %+v, want the client's answer in it", res.Messages)
			}
			if q := user.questions(); !slices.Equal(q, []string{"Proceed?"}) {
				t.Errorf("the client was asked %q", q)
			}
		})
	}
}

// newAskingLegacyServer serves a stateful Streamable HTTP server of the
// official Go SDK whose tool "confirm" asks its client, with requests of
// its own sent in the call's answer (2025-11-25): an elicitation
// ("Proceed?"), then a sampling of fixture.SamplePrompt. It answers the
// action and content of the first and the model and text of the second.
func newAskingLegacyServer(t *testing.T) string {
	s := sdk.NewServer(&sdk.Implementation{Name: "asking", Version: "1"}, nil)
	s.AddTool(&sdk.Tool{Name: "confirm", InputSchema: map[string]any{"type": "object"}},
		func(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
			e, err := req.Session.Elicit(ctx, &sdk.ElicitParams{Message: "Proceed?", RequestedSchema: map[string]any{"type": "object",
				"properties": map[string]any{"sure": map[string]any{"type": "boolean"}}}})
			if err != nil {
				return nil, fmt.Errorf("elicitation: %w", err)
			}
			content, _ := json.Marshal(e.Content)
			text := "ok: " + e.Action + " " + string(content)
			if token := req.Params.GetProgressToken(); token != nil {
				// After the answer: on the client's next round.
				_ = req.Session.NotifyProgress(ctx, &sdk.ProgressNotificationParams{ProgressToken: token, Progress: 1, Total: 2, Message: "answered"})
			}
			m, err := req.Session.CreateMessage(ctx, &sdk.CreateMessageParams{MaxTokens: 20,
				Messages: []*sdk.SamplingMessage{{Role: "user", Content: &sdk.TextContent{Text: fixture.SamplePrompt}}}})
			if err != nil {
				text += "\nhaiku: " + err.Error()
			} else {
				said, _ := m.Content.(*sdk.TextContent)
				text += "\nhaiku: " + m.Model + " " + said.Text
			}
			return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: text}}}, nil
		})
	srv := httptest.NewServer(sdk.NewStreamableHTTPHandler(func(*http.Request) *sdk.Server { return s }, nil))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
	})
	return srv.URL
}

// startAsking serves newAskingLegacyServer at /asking, spoken to in
// 2025-11-25, its elicitations declined when they cannot be passed on, with
// the settings given besides.
func startAsking(t *testing.T, settings string) {
	t.Helper()
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /asking {
		url %s
		protocol legacy
		elicitation decline
		%s
	}
}
`, httpPort, newAskingLegacyServer(t), settings))
	waitReady(t, "/asking/openapi.json")
}

func TestMCPFaceAsksA2026ClientWhatA2025ServerAsksDuringTheCall(t *testing.T) {
	startAsking(t, "sampling relay")

	for _, tc := range []struct {
		name     string
		user     bool // the client answers elicitations
		sampling bool // and samples
		want     string
	}{
		{name: "a client that answers both is asked both, a round each", user: true, sampling: true,
			want: "ok: accept {\"sure\":true}\nhaiku: m1 quiet relay"},
		{name: "a client that only elicits is asked that, and sampling is refused", user: true,
			want: "ok: accept {\"sure\":true}\nhaiku: calling \"sampling/createMessage\": sampling/createMessage is not relayed: the MCP client that made the call did not declare sampling"},
		{name: "a client that answers nothing gets the policy's answer",
			want: "ok: decline null\nhaiku: calling \"sampling/createMessage\": sampling/createMessage is not relayed: the MCP client that made the call did not declare sampling"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := &sureUser{}
			answering := user
			if !tc.user {
				answering = nil
			}
			c := askedClient(t, "/asking/mcp", mcp.LATEST_PROTOCOL_VERSION, answering, tc.sampling)
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			res, err := mcpCall(ctx, c, "confirm", `{}`)
			if err != nil {
				t.Fatal(err)
			}
			if got := firstText(res); !strings.HasPrefix(got, tc.want) {
				t.Errorf("confirm answered %q, want %q", got, tc.want)
			}
			if q, want := user.questions(), tc.user; (len(q) == 1 && q[0] == "Proceed?") != want {
				t.Errorf("the client was asked %q", q)
			}
		})
	}
}

func TestMCPFacePassesAParkedCallsProgressOnInTheRoundUnderWay(t *testing.T) {
	startAsking(t, "")
	c := askedClient(t, "/asking/mcp", mcp.LATEST_PROTOCOL_VERSION, &sureUser{}, false)
	var (
		mu       sync.Mutex
		progress []string
	)
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == string(mcp.MethodNotificationProgress) {
			mu.Lock()
			defer mu.Unlock()
			p := n.Params.AdditionalFields
			progress = append(progress, fmt.Sprintf("%v %v/%v %v", p["progressToken"], p["progress"], p["total"], p["message"]))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name = "confirm"
	req.Params.Arguments = map[string]any{}
	req.Params.Meta = &mcp.Meta{ProgressToken: "p1"}
	res, err := c.CallTool(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if got := firstText(res); !strings.HasPrefix(got, `ok: accept {"sure":true}`) {
		t.Fatalf("confirm answered %q", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"p1 1/2 answered"}; !slices.Equal(progress, want) {
		t.Errorf("progress %q, want %q: sent on the second round, after the client's answer", progress, want)
	}
}

func TestMCPFaceParksTheCallsOfManyClientsAtOnce(t *testing.T) {
	startAsking(t, "sampling relay")
	const clients = 16
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		c := askedClient(t, "/asking/mcp", mcp.LATEST_PROTOCOL_VERSION, &sureUser{}, true)
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			res, err := mcpCall(ctx, c, "confirm", `{}`)
			switch {
			case err != nil:
				errs <- fmt.Errorf("client %d: %w", i, err)
			case firstText(res) != "ok: accept {\"sure\":true}\nhaiku: m1 quiet relay":
				errs <- fmt.Errorf("client %d: confirm answered %q", i, firstText(res))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

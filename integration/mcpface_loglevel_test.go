package integration

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	mcpclient "github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// A 2025-11-25 stdio server that sends its debug messages only once its
// session's level is debug: the endpoint's clients vote for its level
// with their logging/setLevel, each gets the messages at its own level,
// and the server goes back to Caddy's log's level when they leave.
func TestMCPFaceSetsAStdioServersLogLevelToWhatItsClientsAskFor(t *testing.T) {
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /loglv {
		%s
	}
}
`, httpPort, testFixture(t, fixture.Options{LogLevels: true})))
	waitReady(t, "/loglv/openapi.json")
	// levelsSet is what the fixture's log tool says, called over the HTTP
	// API: the levels its process was set to, in order.
	levelsSet := func() string {
		r := do(t, http.MethodPost, "/loglv/log", `{}`)
		_, set, _ := strings.Cut(string(r.body), "levels set: ")
		set, _, _ = strings.Cut(set, `"`)
		return set
	}
	if got := levelsSet(); got != "none" {
		t.Fatalf("levels set before any client asked: %q, want none", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	listen := []transport.StreamableHTTPCOption{transport.WithContinuousListening()}
	type client struct {
		level mcp.LoggingLevel
		logs  chan string
	}
	verbose, quiet := &client{level: mcp.LoggingLevelDebug}, &client{level: mcp.LoggingLevelError}
	verboseClient := mcpGoClientWith(t, "/loglv/mcp", mcp.LATEST_LEGACY_PROTOCOL_VERSION, listen)
	quietClient := mcpGoClientWith(t, "/loglv/mcp", mcp.LATEST_LEGACY_PROTOCOL_VERSION, listen)
	// The verbose client asks first: had the quiet one asked first, the
	// server would be set to info (what Caddy's log writes) before debug.
	for _, cc := range []struct {
		c  *client
		mc interface {
			OnNotification(func(mcp.JSONRPCNotification))
			SetLevel(context.Context, mcp.SetLevelRequest) error
		}
	}{{verbose, verboseClient}, {quiet, quietClient}} {
		c, mc := cc.c, cc.mc
		c.logs = make(chan string, 16)
		mc.OnNotification(func(n mcp.JSONRPCNotification) {
			if n.Method == string(mcp.MethodNotificationMessage) {
				c.logs <- fmt.Sprint(n.Params.AdditionalFields["level"], " ", n.Params.AdditionalFields["data"])
			}
		})
		if err := mc.SetLevel(ctx, mcp.SetLevelRequest{Params: mcp.SetLevelParams{Level: c.level}}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // the GET streams open

	// The server is set to debug, the most verbose level asked for, once,
	// before the client's logging/setLevel is answered.
	res, err := mcpCall(ctx, verboseClient, "log", `{}`)
	if err != nil || firstText(res) != "levels set: debug" {
		t.Fatalf("log = %+v, %v; want the server set to debug once", res, err)
	}
	select {
	case got := <-verbose.logs:
		if want := "debug " + fixture.LogLevelMessage; got != want {
			t.Errorf("the debug client got %q, want %q", got, want)
		}
	case <-ctx.Done():
		t.Fatal("the client at debug got no log message")
	}
	time.Sleep(200 * time.Millisecond) // the broadcast reaches every session at once
	select {
	case got := <-quiet.logs:
		t.Errorf("the client at error got %q", got)
	default:
	}

	// The debug client leaves: the server goes back to what Caddy's log
	// writes (info), the other client asking for less.
	if err := verboseClient.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitLimit)
	got := levelsSet()
	for got == "debug" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		got = levelsSet()
	}
	if got != "debug,info" {
		t.Errorf("levels set after the debug client left: %q, want debug,info", got)
	}
}

// A server with a session per caller: what each caller's session says
// goes to that caller's MCP sessions only, and each caller's
// logging/setLevel sets their own session, started by their first call
// after they asked.
func TestMCPFacePassesAPerUserServersLogMessagesToItsCallerOnly(t *testing.T) {
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /ulog {
		identity {http.request.header.%s}
		server fx {
			%s			isolation user
		}
	}
}
`, httpPort, userHeader, testFixture(t, fixture.Options{LogLevels: true})))
	waitReady(t, "/ulog/fx/openapi.json")

	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	listen := []transport.StreamableHTTPCOption{transport.WithContinuousListening()}
	type caller struct {
		c    *mcpclient.Client
		logs chan string
	}
	callers := map[string]*caller{}
	for _, user := range []string{"alice", "bob"} {
		c := &caller{c: mcpGoClientWith(t, "/ulog/fx/mcp", mcp.LATEST_LEGACY_PROTOCOL_VERSION, listen, userHeader, user), logs: make(chan string, 64)}
		c.c.OnNotification(func(n mcp.JSONRPCNotification) {
			if n.Method == string(mcp.MethodNotificationMessage) {
				c.logs <- fmt.Sprint(n.Params.AdditionalFields["level"], " ", n.Params.AdditionalFields["data"])
			}
		})
		if err := c.c.SetLevel(ctx, mcp.SetLevelRequest{Params: mcp.SetLevelParams{Level: mcp.LoggingLevelDebug}}); err != nil {
			t.Fatal(err)
		}
		callers[user] = c
	}
	time.Sleep(200 * time.Millisecond) // the GET streams open

	for _, tc := range []struct{ user, other string }{{"alice", "bob"}, {"bob", "alice"}} {
		// The caller's first call starts their session, which is set to
		// the level they asked for as it starts: its log tool sends its
		// debug message once it is.
		eventually(t, waitLimit, tc.user+"'s session set to debug", func() bool {
			res, err := mcpCall(ctx, callers[tc.user].c, "log", `{}`)
			return err == nil && firstText(res) == "levels set: debug"
		})
		select {
		case got := <-callers[tc.user].logs:
			if want := "debug " + fixture.LogLevelMessage; got != want {
				t.Errorf("%s got %q, want %q", tc.user, got, want)
			}
		case <-ctx.Done():
			t.Fatalf("%s got no log message of their session", tc.user)
		}
		time.Sleep(300 * time.Millisecond) // the messages reach every session at once
		select {
		case got := <-callers[tc.other].logs:
			t.Errorf("%s got %q, a message of %s's session", tc.other, got, tc.user)
		default:
		}
		for len(callers[tc.user].logs) > 0 {
			<-callers[tc.user].logs
		}
	}
}

// A reload keeps a session's log level: the reloaded endpoint votes it
// again, and passes the server's messages on at it.
func TestMCPFaceKeepsASessionsLogLevelThroughAReload(t *testing.T) {
	site := func(extra string) string {
		return fmt.Sprintf(`:%d {
	mcpo /relog {
		%s
		%s
	}
}
`, httpPort, testFixture(t, fixture.Options{LogLevels: true}), extra)
	}
	startCaddy(t, site(""))
	waitReady(t, "/relog/openapi.json")
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	c := mcpGoClientWith(t, "/relog/mcp", mcp.LATEST_LEGACY_PROTOCOL_VERSION,
		[]transport.StreamableHTTPCOption{transport.WithContinuousListening()})
	logs := make(chan string, 64)
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == string(mcp.MethodNotificationMessage) {
			logs <- fmt.Sprint(n.Params.AdditionalFields["data"])
		}
	})
	if err := c.SetLevel(ctx, mcp.SetLevelRequest{Params: mcp.SetLevelParams{Level: mcp.LoggingLevelDebug}}); err != nil {
		t.Fatal(err)
	}
	startCaddy(t, site("timeout 41s"))
	// The reloaded endpoint votes the session's level again at its next
	// request: the server is set back to debug, and its debug messages
	// reach the client.
	eventually(t, waitLimit, "a debug message after the reload", func() bool {
		if _, err := mcpCall(ctx, c, "log", `{}`); err != nil {
			return false
		}
		select {
		case got := <-logs:
			return got == fixture.LogLevelMessage
		case <-time.After(200 * time.Millisecond):
			return false
		}
	})
}

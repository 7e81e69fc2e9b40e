package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// progressCall is a tools/call of the fixture's progress tool, of three
// steps, with id 9 and the _meta entries meta (a JSON object's members).
func progressCall(meta string) string {
	return `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"progress","arguments":{"steps":3,"ms":30},"_meta":{` + meta + `}}}`
}

// streamedLogs returns the data of the log messages of an answer's event
// stream, in order, and whether the answer ends with the result of id 9
// after them (a JSON answer is that result alone).
func streamedLogs(t *testing.T, body string) (logs []string, resultLast bool) {
	t.Helper()
	messages := []string{body}
	if !strings.HasPrefix(strings.TrimSpace(body), "{") {
		messages = nil
		for _, line := range strings.Split(body, "\n") {
			if data, ok := strings.CutPrefix(strings.TrimSpace(line), "data:"); ok {
				messages = append(messages, data)
			}
		}
	}
	for _, data := range messages {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Level  string `json:"level"`
				Logger string `json:"logger"`
				Data   any    `json:"data"`
			} `json:"params"`
		}
		if err := json.Unmarshal([]byte(data), &m); err != nil {
			t.Fatalf("an event of the answer is not JSON: %q", data)
		}
		resultLast = string(m.ID) == "9"
		if m.Method == string(mcp.MethodNotificationMessage) {
			logs = append(logs, fmt.Sprintf("%s %s %v", m.Params.Level, m.Params.Logger, m.Params.Data))
		}
	}
	return logs, resultLast
}

// wantStepLogs checks logs are the progress tool's log messages of a call
// of three steps (mcp-go's server may drop the last one as the call ends).
func wantStepLogs(t *testing.T, logs []string) {
	t.Helper()
	if len(logs) < 2 || len(logs) > 3 {
		t.Fatalf("log messages %q, want 2 or 3", logs)
	}
	for i, l := range logs {
		if want := fmt.Sprintf("info fixture step %d of 3", i+1); l != want {
			t.Errorf("log message %d = %q, want %q", i, l, want)
		}
	}
}

// legacySession begins a 2025-11-25 session at url, setting level unless
// it is empty, and returns the headers of its requests.
func legacySession(t *testing.T, url string, level mcp.LoggingLevel) map[string]string {
	t.Helper()
	resp, _ := postMCP(t, url, initMsg, nil)
	session := map[string]string{"Mcp-Session-Id": resp.Header.Get("Mcp-Session-Id"), "Mcp-Protocol-Version": "2025-11-25"}
	postMCP(t, url, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, session)
	if level != "" {
		_, body := postMCP(t, url, `{"jsonrpc":"2.0","id":2,"method":"logging/setLevel","params":{"level":"`+string(level)+`"}}`, session)
		if !strings.Contains(body, `"result"`) {
			t.Fatalf("logging/setLevel answered %s", body)
		}
	}
	return session
}

// endSession ends the MCP session of header (its Mcp-Session-Id and the
// rest) at url with a DELETE.
func endSession(t *testing.T, url string, header map[string]string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, url, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE answered %s", resp.Status)
	}
}

func TestMCPFacePassesACallsLogMessagesOnToItsStream(t *testing.T) {
	srv := fixtureBridge(t, fixtureServer(t))
	url := srv.URL + "/m/mcp"
	modernCall := func(level string) (string, map[string]string) {
		meta := `"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},` +
			`"io.modelcontextprotocol/clientInfo":{"name":"raw","version":"1"}`
		if level != "" {
			meta += `,"io.modelcontextprotocol/logLevel":"` + level + `"`
		}
		return progressCall(meta), map[string]string{"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "progress"}
	}
	cases := []struct {
		name string
		call func(t *testing.T) (string, map[string]string)
		logs bool
	}{
		{"2025-11-25, every level until the session sets one", func(t *testing.T) (string, map[string]string) {
			return progressCall(""), legacySession(t, url, "")
		}, true},
		{"2025-11-25, at the level the session set", func(t *testing.T) (string, map[string]string) {
			return progressCall(""), legacySession(t, url, mcp.LoggingLevelInfo)
		}, true},
		{"2025-11-25, none under the level the session set", func(t *testing.T) (string, map[string]string) {
			return progressCall(""), legacySession(t, url, mcp.LoggingLevelWarning)
		}, false},
		{"2026-07-28, at the level the request declares", func(*testing.T) (string, map[string]string) {
			return modernCall("info")
		}, true},
		{"2026-07-28, none under the level the request declares", func(*testing.T) (string, map[string]string) {
			return modernCall("error")
		}, false},
		{"2026-07-28, none when the request declares no level", func(*testing.T) (string, map[string]string) {
			return modernCall("")
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body, header := tc.call(t)
			_, answer := postMCP(t, url, body, header)
			logs, resultLast := streamedLogs(t, answer)
			if !resultLast {
				t.Fatalf("the answer does not end with the call's result:\n%s", answer)
			}
			if !tc.logs {
				if len(logs) != 0 {
					t.Errorf("log messages %q, want none", logs)
				}
				return
			}
			wantStepLogs(t, logs)
		})
	}
}

func TestMCPFaceGivesACallsLogMessageToItsClientOnce(t *testing.T) {
	for _, protocol := range []string{upstream.ProtocolLegacy, upstream.ProtocolModern} {
		t.Run("a "+protocol+" server", func(t *testing.T) {
			srv := fixtureBridge(t, fixtureServerOf(t, protocol))
			// The client listens on its GET stream too, where the broadcast
			// of the server's log messages at its level goes.
			cl := connect(t, srv.URL+"/m/mcp", mcp.LATEST_LEGACY_PROTOCOL_VERSION, nil, transport.WithContinuousListening())
			got := make(chan string, 64)
			cl.OnNotification(func(n mcp.JSONRPCNotification) {
				if n.Method == string(mcp.MethodNotificationMessage) {
					p := n.Params.AdditionalFields
					got <- fmt.Sprintf("%v %v %v", p["level"], p["logger"], p["data"])
				}
			})
			if err := cl.SetLevel(context.Background(), mcp.SetLevelRequest{Params: mcp.SetLevelParams{Level: mcp.LoggingLevelInfo}}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond) // the GET stream opens
			if _, err := callMCPTool(cl, "progress", map[string]any{"steps": 3, "ms": 30}); err != nil {
				t.Fatal(err)
			}
			var logs []string
			for done := time.After(500 * time.Millisecond); ; {
				select {
				case l := <-got:
					logs = append(logs, l)
					continue
				case <-done:
				}
				break
			}
			// Each once, in order: on the call's stream, and not again by
			// the broadcast.
			wantStepLogs(t, logs)
		})
	}
}

// votingCaller records the log levels the face's sessions vote for, by
// session.
type votingCaller struct {
	*faceCaller
	votesMu sync.Mutex
	votes   map[string]string
}

func (c *votingCaller) Listen(func(upstream.Notice)) func() { return func() {} }

func (c *votingCaller) SetLogLevel(voter any, level string) <-chan struct{} {
	c.votesMu.Lock()
	defer c.votesMu.Unlock()
	session := voter.(faceClient).session
	if level == "" {
		delete(c.votes, session)
	} else {
		c.votes[session] = level
	}
	done := make(chan struct{})
	close(done)
	return done
}

// want fails t unless c, server, holds votes, by the names of the
// sessions in names, after step.
func (c *votingCaller) want(t *testing.T, step, server string, names, votes map[string]string) {
	t.Helper()
	if got := c.voted(names); !maps.Equal(got, votes) {
		t.Errorf("%s: votes on %s %v, want %v", step, server, got, votes)
	}
}

// voted returns the votes by the names of the sessions in names.
func (c *votingCaller) voted(names map[string]string) map[string]string {
	c.votesMu.Lock()
	defer c.votesMu.Unlock()
	out := map[string]string{}
	for id, level := range c.votes {
		out[names[id]] = level
	}
	return out
}

func TestMCPFaceVotesForTheLogLevelOfTheServersASessionIsGranted(t *testing.T) {
	clock, files := &votingCaller{faceCaller: newFaceCaller("now"), votes: map[string]string{}},
		&votingCaller{faceCaller: newFaceCaller("read"), votes: map[string]string{}}
	b, err := New(Config{
		Servers: []*ServerConfig{{Name: "time", Upstream: clock}, {Name: "files", Upstream: files}},
		Access: Access{Rules: []Rule{
			{Subjects: []string{"user:ann"}, Tools: []string{"*"}},
			{Subjects: []string{"user:bob"}, Tools: []string{"time/now"}},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := serveBridge(t, b)
	url := srv.URL + "/m/mcp"
	names := map[string]string{}
	session := func(user string, level mcp.LoggingLevel) map[string]string {
		t.Helper()
		resp, _ := postMCP(t, url, initMsg, map[string]string{"X-User": user})
		h := map[string]string{"Mcp-Session-Id": resp.Header.Get("Mcp-Session-Id"), "Mcp-Protocol-Version": "2025-11-25", "X-User": user}
		names[h["Mcp-Session-Id"]] = user
		postMCP(t, url, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, h)
		if _, body := postMCP(t, url, `{"jsonrpc":"2.0","id":2,"method":"logging/setLevel","params":{"level":"`+string(level)+`"}}`, h); !strings.Contains(body, `"result"`) {
			t.Fatalf("logging/setLevel answered %s", body)
		}
		return h
	}
	want := func(step string, wantTime, wantFiles map[string]string) {
		t.Helper()
		clock.want(t, step, "time", names, wantTime)
		files.want(t, step, "files", names, wantFiles)
	}
	ann := session("ann", mcp.LoggingLevelDebug)
	session("bob", mcp.LoggingLevelWarning)
	want("ann at debug, bob at warning granted time alone",
		map[string]string{"ann": "debug", "bob": "warning"}, map[string]string{"ann": "debug"})

	endSession(t, url, ann)
	want("ann's session ended", map[string]string{"bob": "warning"}, map[string]string{})

	b.Close()
	want("the endpoint closed", map[string]string{}, map[string]string{})
}

package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// streamEvent is an event of a streamed tool call as the client reads
// it, and when it arrived.
type streamEvent struct {
	name, data string
	at         time.Duration // since the request was sent
}

// readStream reads the events of body to its end; comments are events
// named ":".
func readStream(t *testing.T, body io.Reader, start time.Time) []streamEvent {
	t.Helper()
	var (
		evs  []streamEvent
		cur  streamEvent
		data []string
	)
	sc := bufio.NewScanner(body)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.name != "" {
				cur.data, cur.at = strings.Join(data, "\n"), time.Since(start)
				evs = append(evs, cur)
			}
			cur, data = streamEvent{}, nil
		case strings.HasPrefix(line, ":"):
			evs = append(evs, streamEvent{name: ":", at: time.Since(start)})
		case strings.HasPrefix(line, "event: "):
			cur.name = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[len("data: "):])
		default:
			t.Errorf("unexpected line %q in the event stream", line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Errorf("reading the event stream: %v", err)
	}
	return evs
}

// postStream calls the tool at path with body, asking for events, and
// returns the answer with its body unread.
func postStream(t *testing.T, ctx context.Context, path, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestAToolCallStreamsServerEverythingsLongRunningOperation(t *testing.T) {
	script := everythingScript(t)
	httpEverything := startEverythingHTTP(t, "streamableHttp")
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /stdio {
		command node %s stdio
	}
	mcpo /http {
		url http://127.0.0.1:%d/mcp
	}
}
`, httpPort, script, httpEverything))
	const (
		tool = "trigger-long-running-operation"
		args = `{"duration":2,"steps":4}`
		done = "Long running operation completed. Duration: 2 seconds, Steps: 4."
	)
	for _, mount := range []string{"/stdio", "/http"} {
		t.Run(mount, func(t *testing.T) {
			doc := waitReady(t, mount+"/openapi.json")
			loadDoc(t, "everything"+strings.ReplaceAll(mount, "/", "-"), doc, nil)
			var d struct {
				Paths map[string]struct {
					Post struct {
						Responses map[string]struct {
							Content map[string]json.RawMessage `json:"content"`
						} `json:"responses"`
					} `json:"post"`
				} `json:"paths"`
			}
			if err := json.Unmarshal(doc, &d); err != nil {
				t.Fatal(err)
			}
			if c := d.Paths["/"+tool].Post.Responses["200"].Content; c["application/json"] == nil || c["text/event-stream"] == nil {
				t.Errorf("the 200 of %s offers %v, want JSON and, as an alternative, events", tool, c)
			}

			start := time.Now()
			resp := postStream(t, context.Background(), mount+"/"+tool, args)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("%d %s, want an event stream", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			evs := readStream(t, resp.Body, start)
			var want []string
			for i := 1; i <= 4; i++ {
				want = append(want, fmt.Sprintf(`progress {"progress":%d,"total":4}`, i))
			}
			want = append(want, fmt.Sprintf("result %q", done))
			var got []string
			for _, ev := range evs {
				got = append(got, ev.name+" "+ev.data)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Fatalf("events\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			// Each event went through Caddy as it came: the first step
			// ends half a second in, the operation two seconds in.
			first, last := evs[0].at, evs[len(evs)-1].at
			if first > 1500*time.Millisecond || last < 2*time.Second {
				t.Errorf("the first event came after %v, the result after %v: want each as it happens", first, last)
			}
			t.Logf("through Caddy: the first progress event after %v, the result after %v", first, last)

			// JSON stays the answer of clients that do not ask for events,
			// Open WebUI's (Accept: */*) among them.
			for _, accept := range []string{"", "*/*", "application/json, text/event-stream"} {
				r := do(t, http.MethodPost, mount+"/"+tool, `{"duration":0.1,"steps":2}`, "Content-Type", "application/json", "Accept", accept)
				if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" ||
					string(r.body) != `"Long running operation completed. Duration: 0.1 seconds, Steps: 2."` {
					t.Errorf("Accept %q: %s, want the JSON answer", accept, r)
				}
			}
		})
	}
}

func TestServerEverythingsProgressExtendsTheDeadlineUpToMaxTimeout(t *testing.T) {
	script := everythingScript(t)
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /extended {
		command node %s stdio
		timeout 1s
		max_timeout 10s
	}
	mcpo /capped {
		command node %s stdio
		timeout 1s
		max_timeout 2s
	}
	mcpo /plain {
		command node %s stdio
		timeout 1s
	}
}
`, httpPort, script, script, script))
	for _, mount := range []string{"/extended", "/capped", "/plain"} {
		waitReady(t, mount+"/openapi.json")
	}
	const args = `{"duration":3,"steps":6}` // a progress notification every 0.5s, 3s in all
	for _, tc := range []struct {
		mount   string
		status  int
		message string
	}{
		{mount: "/extended", status: http.StatusOK, message: "Long running operation completed"},
		{mount: "/capped", status: http.StatusGatewayTimeout, message: "did not answer within 2s, the longest a call may take when it reports progress (max_timeout)"},
		{mount: "/plain", status: http.StatusGatewayTimeout, message: "did not answer within 1s"},
	} {
		t.Run(tc.mount, func(t *testing.T) {
			r := do(t, http.MethodPost, tc.mount+"/trigger-long-running-operation", args, "Content-Type", "application/json")
			if r.status != tc.status || !strings.Contains(string(r.body), tc.message) {
				t.Errorf("%s, want %d saying %q", r, tc.status, tc.message)
			}
		})
	}
}

func TestAStreamedCallsClientThatGoesAwayMidStreamCancelsTheCallAtTheServer(t *testing.T) {
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /fx {
		%s
	}
}
`, httpPort, testFixture(t, fixture.Options{Progress: true})))
	waitReady(t, "/fx/openapi.json")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp := postStream(t, ctx, "/fx/progress", `{"steps":2400,"ms":50}`)
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if resp.StatusCode != http.StatusOK || err != nil || line != "event: progress\n" {
		t.Fatalf("%d, first line %q, %v; want a progress event", resp.StatusCode, line, err)
	}
	if n := serverOf(t, "/fx", "fx").InFlight; n != 1 {
		t.Fatalf("%d calls in flight mid-stream, want 1", n)
	}
	cancel()
	eventually(t, 10*time.Second, "the server saw the call cancelled", func() bool {
		return string(do(t, http.MethodPost, "/fx/cancelled_calls", `{}`).body) == "1"
	})
	eventually(t, 10*time.Second, "no call in flight", func() bool { return serverOf(t, "/fx", "fx").InFlight == 0 })
}

func TestAStreamedCallOverCaddyKeepsItsEventsInTheServersOrder(t *testing.T) {
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /stdio {
		%s
	}
	mcpo /http {
		url %s
	}
}
`, httpPort, testFixture(t, fixture.Options{Progress: true}), fixture.NewStreamableHTTP(t, fixture.Options{Progress: true})))
	for _, tc := range []struct {
		mount string
		logs  bool // over stdio a log message names no call, and is not streamed
	}{{"/stdio", false}, {"/http", true}} {
		t.Run(tc.mount, func(t *testing.T) {
			waitReady(t, tc.mount+"/openapi.json")
			resp := postStream(t, context.Background(), tc.mount+"/progress", `{"steps":4,"ms":20}`)
			var want []string
			for i := 1; i <= 4; i++ {
				want = append(want, fmt.Sprintf(`progress {"progress":%d,"total":4,"message":"step %d of 4"}`, i, i))
				if tc.logs {
					want = append(want, fmt.Sprintf(`log {"level":"info","logger":"fixture","data":"step %d of 4"}`, i))
				}
			}
			want = append(want, `result "done after 4 steps"`)
			var got []string
			for _, ev := range readStream(t, resp.Body, time.Now()) {
				got = append(got, ev.name+" "+ev.data)
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("events\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// A 2026-07-28 server (the conformance suite's reference server, in its
// stateless mode) logs about a call only at the level the call asks for.
func TestAStreamedCallGetsTheLogMessagesOfAStatelessServer(t *testing.T) {
	port := freePort()
	startReferenceServer(t, buildReferenceServer(t), port, true)
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /ref {
		url http://127.0.0.1:%d/mcp
	}
}
`, httpPort, port))
	waitReady(t, "/ref/openapi.json")
	resp := postStream(t, context.Background(), "/ref/test_tool_with_logging", `{}`)
	var logs []string
	evs := readStream(t, resp.Body, time.Now())
	for _, ev := range evs {
		if ev.name == "log" {
			logs = append(logs, ev.data)
		}
	}
	if len(logs) != 3 || !strings.Contains(logs[0], `"level":"info"`) || !strings.Contains(logs[0], "Tool execution started") {
		t.Errorf("log events %q, want the server's three", logs)
	}
	if len(evs) == 0 || evs[len(evs)-1].name != "result" {
		t.Errorf("events %+v, want a result last", evs)
	}
}

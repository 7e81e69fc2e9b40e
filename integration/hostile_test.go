package integration

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

// The requests here are the ones a careless or hostile client sends: bodies
// a server would read otherwise than the bridge checked them, or not at
// all; bodies that are compressed, huge, slow or many; credentials where
// they do not belong.

// rawExchange writes a request by hand on a fresh connection to the Caddy
// under test, then reads the answer, and returns it with how long it took
// from the last byte written.
func rawExchange(t *testing.T, request string) (response, time.Duration) {
	t.Helper()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(waitLimit)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the answer's body: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}, time.Since(sent)
}

// gzipOf compresses s.
func gzipOf(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := io.WriteString(zw, s); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// startFixtureAt starts Caddy, with extra global options, with a fixture
// server of this test alone at mount, its block holding the settings
// given, and waits until it is ready.
func startFixtureAt(t *testing.T, global []string, mount string, settings ...string) {
	t.Helper()
	startCaddyWith(t, global, fmt.Sprintf(":%d {\n\tmcpo %s {\n\t\t%s\t\t%s\n\t}\n}\n",
		httpPort, mount, testFixture(t, fixture.Options{}), strings.Join(settings, "\n\t\t")))
	waitReady(t, mount+"/openapi.json")
}

// nestedArgs is an object of echo_args nesting depth levels.
func nestedArgs(depth int) string {
	return `{"a":` + strings.Repeat("[", depth-1) + strings.Repeat("]", depth-1) + "}"
}

func TestHostileBodiesAreAnsweredAtOnceAndNeverForwarded(t *testing.T) {
	startFixtureAt(t, nil, "/hostile", "timeout 30s", "max_request_body 64KB")

	bomb := gzipOf(t, `{"pad":"`+strings.Repeat("0", 10<<20)+`"}`)
	for _, tc := range []struct {
		name     string
		body     string
		encoding string
		status   int
		says     string
		want     string // the arguments the server got, for a 200
	}{
		// Parsers that replace invalid bytes read another text; those that
		// refuse it leave the request unanswered until the timeout.
		{name: "invalid UTF-8", body: "{\"message\":\"caf\xe9\"}", status: 400, says: "byte offset 15: invalid UTF-8"},
		// A server keeping the first value would get one never checked.
		{name: "a member name twice", body: `{"message":"hi","message":{"not":"a string"}}`, status: 400, says: `"message" appears twice`},
		// encoding/json accepts 10,000 levels, then the MCP client cannot
		// encode the request that holds them.
		{name: "ten thousand levels", body: nestedArgs(10000), status: 400, says: "nested more than 62 levels deep"},
		{name: "sixty-two levels", body: nestedArgs(62), status: 200, want: nestedArgs(62)},
		{name: "gzip", body: gzipOf(t, `{"x":"zipped"}`), encoding: "gzip", status: 200, want: `{"x":"zipped"}`},
		{name: "a gzip bomb", body: bomb, encoding: "gzip", status: 413, says: "larger than 64000 bytes once decoded"},
		{name: "brotli", body: `{}`, encoding: "br", status: 415, says: "Content-Encoding: gzip"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			header := []string{"Content-Type", "application/json"}
			if tc.encoding != "" {
				header = append(header, "Content-Encoding", tc.encoding)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r, err := send(ctx, http.MethodPost, "/hostile/echo_args", tc.body, header...)
			if err != nil {
				t.Fatalf("no answer within 10 s: %v", err)
			}
			if r.status != tc.status {
				t.Fatalf("%s, want %d", r, tc.status)
			}
			if tc.status == 200 {
				if string(r.body) != tc.want {
					t.Errorf("the server got %.100s, want %.100s", r.body, tc.want)
				}
				return
			}
			if msg := errorMessage(t, r); !strings.Contains(msg, tc.says) {
				t.Errorf("message %q does not say %q", msg, tc.says)
			}
			if tc.status == 415 && r.header.Get("Accept-Encoding") != "gzip" {
				t.Errorf("415 with Accept-Encoding %q, want gzip", r.header.Get("Accept-Encoding"))
			}
		})
	}

	t.Run("a declared length over the limit, before the body is sent", func(t *testing.T) {
		r, took := rawExchange(t, "POST /hostile/echo_args HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"+
			"Content-Length: 100000000\r\n\r\n")
		if r.status != 413 || !strings.Contains(errorMessage(t, r), "larger than 64000 bytes") {
			t.Errorf("%s, want 413", r)
		}
		if took > 5*time.Second {
			t.Errorf("the 413 took %s: the body was waited for", took)
		}
	})
}

// A body that stops arriving is ended by Caddy's server timeouts: 408, with
// nothing of the connection in the answer.
func TestAStalledBodyGets408WithoutTheConnectionsAddresses(t *testing.T) {
	for _, timeout := range []string{"read_body 1s", "read_body_idle 1s"} {
		t.Run(timeout, func(t *testing.T) {
			startFixtureAt(t, []string{"servers {\n\t\ttimeouts {\n\t\t\t" + timeout + "\n\t\t}\n\t}"}, "/stall")
			r, took := rawExchange(t, "POST /stall/echo_args HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"+
				"Content-Length: 100\r\n\r\n{\"message\":")
			if r.status != http.StatusRequestTimeout {
				t.Fatalf("%s, want 408", r)
			}
			if took > 10*time.Second {
				t.Errorf("the 408 took %s", took)
			}
			msg := errorMessage(t, r)
			if !strings.Contains(msg, "timed out") {
				t.Errorf("message %q does not say the body timed out", msg)
			}
			for _, s := range []string{"127.0.0.1", strconv.Itoa(httpPort), "tcp", "i/o timeout", "deadline"} {
				if strings.Contains(string(r.body), s) {
					t.Errorf("the answer shows %q: %s", s, r.body)
				}
			}
		})
	}
}

// The bodies of the calls under way share max_request_bytes_in_flight: a
// call whose body does not fit gets 503 with Retry-After, counted as
// rejected, and fits once the others are answered.
func TestBodiesInFlightAreBoundedByMaxRequestBytesInFlight(t *testing.T) {
	startFixtureAt(t, nil, "/budget", "max_request_body 1MB", "max_request_bytes_in_flight 2MB")
	padded := func(ms, size int) string {
		head := fmt.Sprintf(`{"ms":%d,"pad":"`, ms)
		return head + strings.Repeat("x", size-len(head)-2) + `"}`
	}
	first := sendAsync(context.Background(), http.MethodPost, "/budget/slow", padded(3000, 900_000))
	second := sendAsync(context.Background(), http.MethodPost, "/budget/slow", padded(3000, 900_000))
	eventually(t, 10*time.Second, "two calls under way", func() bool { return serverOf(t, "/budget", "budget").InFlight == 2 })

	r := do(t, http.MethodPost, "/budget/slow", padded(0, 300_000))
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("a third body of 300 kB: %s, want 503", r)
	}
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
		t.Errorf("503 with Retry-After %q", r.header.Get("Retry-After"))
	}
	if msg := errorMessage(t, r); !strings.Contains(msg, "busy with other large requests") || !strings.Contains(msg, "try again shortly") {
		t.Errorf("message %q does not say the server is busy and to try again", msg)
	}
	if r := do(t, http.MethodPost, "/budget/slow", padded(0, 100_000)); r.status != 200 {
		t.Errorf("a third body of 100 kB, which fits: %s", r)
	}
	for _, ch := range []<-chan result{first, second} {
		if r := await(t, ch); r.err != nil || r.status != 200 {
			t.Errorf("a call within the budget: %s", r)
		}
	}
	if r := do(t, http.MethodPost, "/budget/slow", padded(0, 300_000)); r.status != 200 {
		t.Errorf("the third body once the others are answered: %s", r)
	}
	mcpoScrapeMetrics(t, `caddy_mcpo_calls_total{face="rest",outcome="rejected",server="budget",tool="slow"} 1`)
}

// POST to the health report, which only reads, is 405 with Allow, at a
// single-server mount and at a mount of several.
func TestPostToHealthIs405WithAllow(t *testing.T) {
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /one {
		%s
	}
	mcpo /many {
		server a {
			%s
		}
	}
}
`, httpPort, testFixture(t, fixture.Options{}), testFixture(t, fixture.Options{})))
	waitReady(t, "/one/openapi.json")
	waitReady(t, "/many/a/openapi.json")
	for _, path := range []string{"/one/health", "/many/health"} {
		r := do(t, http.MethodPost, path, `{}`)
		if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, HEAD, OPTIONS" {
			t.Errorf("POST %s: %s with Allow %q, want 405 with Allow: GET, HEAD, OPTIONS", path, r, r.header.Get("Allow"))
		}
		errorMessage(t, r)
	}
}

// A credential in the wrong place is never repeated, through Caddy either.
func TestRefusedCredentialsAreNeverRepeated(t *testing.T) {
	const secret = "sk-hostile-5d1e8b03"
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /keyed {
		%s
		api_key right-key-0123
		protect_docs
	}
}
`, httpPort, testFixture(t, fixture.Options{})))
	waitReadyWith(t, "/keyed/openapi.json", "Authorization", "Bearer right-key-0123")
	basic := func(s string) string { return "Basic " + base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, auth := range []string{secret, secret + " x", "Token " + secret, "Bearer " + secret, "Basic " + secret, basic(secret), basic("u:" + secret)} {
		for _, path := range []string{"/keyed/echo", "/keyed/openapi.json"} {
			method := http.MethodPost
			if strings.HasSuffix(path, ".json") {
				method = http.MethodGet
			}
			r := do(t, method, path, `{"message":"hi"}`, "Authorization", auth)
			if r.status != 401 && r.status != 403 {
				t.Errorf("%s %s with %q: %s, want 401 or 403", method, path, auth, r)
			}
			if strings.Contains(string(r.body)+fmt.Sprint(r.header), secret) {
				t.Errorf("%s %s with %q repeats the secret: %s %v", method, path, auth, r, r.header)
			}
		}
	}
}

func TestAnAnswerOverMaxMessageSizeIs502AndTheServerRestarts(t *testing.T) {
	startFixtureAt(t, nil, "/big", "max_message_size 64KiB")
	small := do(t, http.MethodPost, "/big/echo", `{"message": "short"}`)
	if small.status != http.StatusOK {
		t.Fatalf("a small answer: %s", small)
	}
	pid := healthPID(t, "/big")

	big := do(t, http.MethodPost, "/big/echo", `{"message": "`+strings.Repeat("x", 100000)+`"}`)
	if big.status != http.StatusBadGateway || !strings.Contains(string(big.body), "sent a message larger than 64 KiB") ||
		!strings.Contains(string(big.body), "max_message_size") {
		t.Fatalf("an answer over the limit: %s; want 502 naming the limit and the setting", big)
	}
	waitReady(t, "/big/openapi.json")
	deadline := time.Now().Add(waitLimit)
	for {
		r := do(t, http.MethodPost, "/big/echo", `{"message": "again"}`)
		if r.status == http.StatusOK {
			break
		}
		if r.status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("after the restart: %s", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if again := healthPID(t, "/big"); again == pid || again == 0 {
		t.Errorf("the server's pid is %d after the message over the limit, %d before: want a new process", again, pid)
	}
}

func TestAnHTTPServersAnswerOverMaxMessageSizeIs502AndTheSessionStays(t *testing.T) {
	startCaddy(t, fmt.Sprintf(":%d {\n\tmcpo /web {\n\t\turl %s\n\t\tmax_message_size 64KiB\n\t}\n}\n",
		httpPort, fixture.NewStreamableHTTP(t, fixture.Options{})))
	waitReady(t, "/web/openapi.json")

	big := do(t, http.MethodPost, "/web/echo", `{"message": "`+strings.Repeat("x", 100000)+`"}`)
	if big.status != http.StatusBadGateway || !strings.Contains(string(big.body), "sent a message larger than 64 KiB (max_message_size raises the limit)") {
		t.Fatalf("an answer over the limit: %s; want 502 naming the limit and the setting", big)
	}
	if r := do(t, http.MethodPost, "/web/echo", `{"message": "again"}`); r.status != http.StatusOK {
		t.Fatalf("the next call: %s", r)
	}
	var report struct {
		Servers []struct {
			State    string `json:"state"`
			Restarts int    `json:"restarts"`
		} `json:"servers"`
	}
	r := do(t, http.MethodGet, "/web/health", "")
	if err := json.Unmarshal(r.body, &report); err != nil || len(report.Servers) != 1 ||
		report.Servers[0].State != "ready" || report.Servers[0].Restarts != 0 {
		t.Errorf("health after the answer over the limit: %s (%v); want ready, never restarted", r, err)
	}
}

// healthPID returns the pid of the single server of mount, from its health.
func healthPID(t *testing.T, mount string) int {
	t.Helper()
	var report struct {
		Servers []struct {
			PID int `json:"pid"`
		} `json:"servers"`
	}
	r := do(t, http.MethodGet, mount+"/health", "")
	if err := json.Unmarshal(r.body, &report); err != nil || len(report.Servers) != 1 {
		t.Fatalf("health: %s (%v)", r, err)
	}
	return report.Servers[0].PID
}

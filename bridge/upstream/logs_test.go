package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
)

func TestLogTapHandsOnTheLogMessagesOfAStreamUntouched(t *testing.T) {
	const logA = `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","logger":"x","data":"a"}}`
	big := `{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"info","data":"` +
		strings.Repeat("x", maxLogEventBytes) + `"}}`
	for _, tc := range []struct {
		name, stream string
		want         []string // level/logger/data of each message handed on
	}{
		{name: "one log message", stream: "event: message\ndata: " + logA + "\n\n", want: []string{`info x "a"`}},
		{name: "carriage returns", stream: "event: message\r\ndata: " + logA + "\r\n\r\n", want: []string{`info x "a"`}},
		{name: "data over several lines", stream: "data: {\"jsonrpc\":\"2.0\",\ndata: \"method\":\"notifications/message\",\ndata: \"params\":{\"level\":\"warning\",\"data\":{\"k\":1}}}\n\n",
			want: []string{`warning  {"k":1}`}},
		{name: "no space after data:", stream: "data:" + logA + "\n\n", want: []string{`info x "a"`}},
		{name: "progress and results are not logs", stream: "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":\"t\",\"progress\":1}}\n\n" +
			"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"notifications/message\"}]}}\n\n"},
		{name: "an event without its blank line", stream: "data: " + logA + "\n"},
		{name: "malformed JSON", stream: "data: {\"method\":\"notifications/message\",\n\n"},
		{name: "an event over the bound is skipped, the next is not", stream: "data: " + big + "\n\n" + "data: " + logA + "\n\n",
			want: []string{`info x "a"`}},
		{name: "a long line of another field counts too", stream: ": " + strings.Repeat("c", maxLogEventBytes) + "\ndata: " + logA + "\n\n" + "data: " + logA + "\n\n",
			want: []string{`info x "a"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, read := range []struct {
				name string
				wrap func(io.Reader) io.Reader
			}{{"whole", func(r io.Reader) io.Reader { return r }}, {"byte by byte", iotest.OneByteReader}} {
				var got []string
				tap := &logTap{ReadCloser: io.NopCloser(read.wrap(strings.NewReader(tc.stream))), fn: func(m LogMessage) {
					got = append(got, m.Level+" "+m.Logger+" "+string(m.Data))
				}}
				out, err := io.ReadAll(tap)
				if err != nil || string(out) != tc.stream {
					t.Fatalf("%s: read %d bytes, %v; want the stream untouched", read.name, len(out), err)
				}
				if strings.Join(got, "|") != strings.Join(tc.want, "|") {
					t.Errorf("%s: handed on %q, want %q", read.name, got, tc.want)
				}
			}
		})
	}
}

func TestACallGetsTheLogMessagesOfItsOwnStream(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
		logs bool
	}{
		{name: "Streamable HTTP", spec: Spec{Name: "fx", Transport: TransportStreamableHTTP,
			URL: fixture.NewStreamableHTTP(t, fixture.Options{Progress: true})}, logs: true},
		{name: "stdio names no request", spec: stdioSpec(fixture.Options{Progress: true})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, _ := start(t, tc.spec, Options{})
			var (
				mu   sync.Mutex
				logs [2][]string // of each of two calls at once
				wg   sync.WaitGroup
			)
			for i := range logs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx := WithProgress(context.Background(), func(Progress) {})
					ctx = WithLog(ctx, func(m LogMessage) {
						mu.Lock()
						defer mu.Unlock()
						logs[i] = append(logs[i], fmt.Sprintf("%s %s %s after %d", m.Level, m.Logger, m.Data, m.AfterProgress))
					})
					args, _ := json.Marshal(map[string]int{"steps": 3 + i, "ms": 30})
					if _, err := u.CallTool(ctx, "progress", args); err != nil {
						t.Errorf("call %d: %v", i, err)
					}
				}()
			}
			wg.Wait()
			mu.Lock()
			defer mu.Unlock()
			for i, got := range logs {
				steps := 3 + i
				if !tc.logs {
					if len(got) != 0 {
						t.Errorf("call %d got %q, want no log message", i, got)
					}
					continue
				}
				// mcp-go's server may drop what it sends as the call ends.
				if len(got) < steps-1 || len(got) > steps {
					t.Fatalf("call %d got %q, want %d or %d log messages", i, got, steps-1, steps)
				}
				for j, m := range got {
					// Each step's log message comes after its progress.
					if want := fmt.Sprintf(`info fixture "step %d of %d" after %d`, j+1, steps, j+1); m != want {
						t.Errorf("call %d log message %d = %s, want %s", i, j, m, want)
					}
				}
			}
		})
	}
}

func TestLogTapCountsTheProgressOfItsCallBeforeEachLogMessage(t *testing.T) {
	const (
		progress = "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":%q,\"progress\":1}}\n\n"
		log      = "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":%d}}\n\n"
	)
	stream := fmt.Sprintf(log, 0) + fmt.Sprintf(progress, "mine") + fmt.Sprintf(log, 1) +
		fmt.Sprintf(progress, "another's") + fmt.Sprintf(progress, "mine") + fmt.Sprintf(log, 2)
	var got []string
	tap := &logTap{ReadCloser: io.NopCloser(strings.NewReader(stream)), token: "mine", fn: func(m LogMessage) {
		got = append(got, fmt.Sprintf("%s after %d", m.Data, m.AfterProgress))
	}}
	if _, err := io.ReadAll(tap); err != nil {
		t.Fatal(err)
	}
	if want := []string{"0 after 0", "1 after 1", "2 after 2"}; !slices.Equal(got, want) {
		t.Errorf("handed on %q, want %q", got, want)
	}
}

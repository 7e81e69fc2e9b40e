package caddymcpo

import (
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

func TestServerSpec_ChecksLimitsAndCarriesStopTimeouts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		server Server
		err    string // a part of the error, or "" for none
		want   upstream.Options
	}{
		{
			name:   "defaults",
			server: Server{Command: "prog"},
		},
		{
			name: "lifecycle timeouts reach the upstream",
			server: Server{Command: "prog", StartTimeout: caddy.Duration(time.Minute),
				DrainTimeout: caddy.Duration(5 * time.Second), StopTimeout: caddy.Duration(time.Second), KillTimeout: caddy.Duration(2 * time.Second)},
			want: upstream.Options{StartTimeout: time.Minute, Drain: 5 * time.Second,
				Stop: upstream.StopTimeouts{Grace: time.Second, Term: 2 * time.Second}},
		},
		{
			name:   "queue with a limit",
			server: Server{Command: "prog", MaxConcurrent: 2, QueueTimeout: caddy.Duration(time.Second)},
		},
		{
			name:   "queue without a limit",
			server: Server{Command: "prog", QueueTimeout: caddy.Duration(time.Second)},
			err:    "queue_timeout needs max_concurrent",
		},
		{
			name:   "negative limit",
			server: Server{Command: "prog", MaxConcurrent: -1},
			err:    "max_concurrent -1",
		},
		{
			name:   "tool error status that is not an error",
			server: Server{Command: "prog", ToolErrorStatus: 200},
			err:    "tool_error_status 200",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, opts, err := tc.server.spec("s", caddy.NewReplacer())
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if opts != tc.want {
				t.Errorf("options = %+v, want %+v", opts, tc.want)
			}
		})
	}
}

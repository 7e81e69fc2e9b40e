package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

func TestConfigFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		want    config
		wantErr string
	}{
		{
			name: "pinned era and context",
			args: []string{"--flag", "http://localhost:1234/mcp"},
			env: map[string]string{
				"MCP_CONFORMANCE_SCENARIO":         "auth/pre-registration",
				"MCP_CONFORMANCE_PROTOCOL_VERSION": "2026-07-28",
				"MCP_CONFORMANCE_CONTEXT":          `{"name":"auth/pre-registration","client_id":"id","client_secret":"s","toolCalls":[{"name":"t","arguments":{"a":1}}],"other":true}`,
			},
			want: config{ServerURL: "http://localhost:1234/mcp", Scenario: "auth/pre-registration", Protocol: "2026-07-28",
				Context: scenarioContext{Name: "auth/pre-registration", ClientID: "id", ClientSecret: "s",
					ToolCalls: []toolCall{{Name: "t", Arguments: []byte(`{"a":1}`)}}}},
		},
		{
			name: "no version: the product's auto era",
			args: []string{"http://localhost:1"},
			env:  map[string]string{"MCP_CONFORMANCE_SCENARIO": "initialize"},
			want: config{ServerURL: "http://localhost:1", Scenario: "initialize"},
		},
		{name: "no url", env: map[string]string{"MCP_CONFORMANCE_SCENARIO": "x"}, wantErr: "no server URL"},
		{name: "no scenario", args: []string{"http://localhost:1"}, wantErr: "MCP_CONFORMANCE_SCENARIO"},
		{name: "not http", args: []string{"localhost:1"}, env: map[string]string{"MCP_CONFORMANCE_SCENARIO": "x"}, wantErr: "not an http"},
		{name: "unknown version", args: []string{"http://localhost:1"},
			env: map[string]string{"MCP_CONFORMANCE_SCENARIO": "x", "MCP_CONFORMANCE_PROTOCOL_VERSION": "1999-01-01"}, wantErr: "PROTOCOL_VERSION"},
		{name: "bad context", args: []string{"http://localhost:1"},
			env: map[string]string{"MCP_CONFORMANCE_SCENARIO": "x", "MCP_CONFORMANCE_CONTEXT": "[1]"}, wantErr: "CONTEXT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := configFromEnv(tc.args, env(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.ServerURL != tc.want.ServerURL || got.Scenario != tc.want.Scenario || got.Protocol != tc.want.Protocol ||
				got.Context.ClientID != tc.want.Context.ClientID || got.Context.ClientSecret != tc.want.Context.ClientSecret ||
				len(got.Context.ToolCalls) != len(tc.want.Context.ToolCalls) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for i, c := range got.Context.ToolCalls {
				w := tc.want.Context.ToolCalls[i]
				if c.Name != w.Name || string(c.Arguments) != string(w.Arguments) {
					t.Errorf("tool call %d: %+v, want %+v", i, c, w)
				}
			}
		})
	}
}

func TestSampleArguments(t *testing.T) {
	for _, tc := range []struct {
		schema, want string
	}{
		{``, `{}`},
		{`{"type":"object","properties":{"a":{"type":"number"},"b":{"type":"number"}},"required":["a","b"]}`, `{"a":1,"b":1}`},
		{`{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"},"opt":{"type":"string"}},"required":["region"]}`, `{"region":"test"}`},
		{`{"properties":{"s":{"enum":["x","y"]},"d":{"type":"integer","default":7},"f":{"type":["boolean","null"]},"o":{"type":"object"},"l":{"type":"array"}},"required":["s","d","f","o","l"]}`,
			`{"d":7,"f":true,"l":[],"o":{},"s":"x"}`},
	} {
		got, err := sampleArguments([]byte(tc.schema))
		if err != nil {
			t.Fatalf("%s: %v", tc.schema, err)
		}
		if string(got) != tc.want {
			t.Errorf("sampleArguments(%s) = %s, want %s", tc.schema, got, tc.want)
		}
	}
	if _, err := sampleArguments([]byte(`[]`)); err == nil {
		t.Error("a schema that is not an object was accepted")
	}
}

func TestReadRequirements(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.yaml")
	const yaml = `# comment
server:
  - server-initialize

client:
  - initialize
  - auth/metadata-default

not_scored:
  - scenario: auth/dpop
    leg: client
    reason: extension
  - scenario: server-sse-polling
    leg: server
    reason: pending
    note: >-
      folded text: with a colon
  - scenario: json-schema-2020-12-preservation
    leg: client
    reason: added-after-release
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := readRequirements(path)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.required, []string{"initialize", "auth/metadata-default"}) {
		t.Errorf("required %v", r.required)
	}
	want := map[string]string{"auth/dpop": "extension", "json-schema-2020-12-preservation": "added-after-release"}
	if len(r.notScored) != len(want) {
		t.Errorf("not scored %v, want %v", r.notScored, want)
	}
	for k, v := range want {
		if r.notScored[k] != v {
			t.Errorf("not scored %v, want %v", r.notScored, want)
		}
	}
}

func TestResultDirectoryStamp(t *testing.T) {
	for in, want := range map[string]string{
		"auth/metadata-var1-2026-11-21T23-47-54-271Z": "auth/metadata-var1",
		"sse-retry-2026-11-21T23-47-54-271Z":          "sse-retry",
		"tools_call":                                  "tools_call",
	} {
		if got := stamp.ReplaceAllString(in, ""); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

func TestFollowRedirect(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/callback?code=c&state="+r.URL.Query().Get("state"), http.StatusFound)
	})
	mux.HandleFunc("GET /consent", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("<form>consent</form>"))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	hc := &http.Client{Timeout: 5 * time.Second}
	ctx := context.Background()

	q, err := followRedirect(ctx, hc, srv.URL+"/authorize?state=s")
	if err != nil || q.Get("code") != "c" || q.Get("state") != "s" {
		t.Errorf("redirect: query %v, error %v; want code c and state s", q, err)
	}
	for name, u := range map[string]string{
		"a page, not a redirect": srv.URL + "/consent?state=secret-state",
		"unreachable":            "http://127.0.0.1:1/authorize?state=secret-state",
	} {
		if _, err := followRedirect(ctx, hc, u); err == nil || strings.Contains(err.Error(), "secret-state") {
			t.Errorf("%s: error %v, want one without the URL's query", name, err)
		}
	}
}

func TestAcceptDefaults_AcceptsFormsAndDeclinesURLs(t *testing.T) {
	for mode, want := range map[string]string{
		"form": upstream.ElicitAccept,
		"url":  upstream.ElicitDecline,
	} {
		a, err := acceptDefaults(context.Background(), upstream.Elicitation{Mode: mode})
		if err != nil || a.Action != want || a.Content != nil {
			t.Errorf("%s: %+v, %v; want %s with no content", mode, a, err, want)
		}
	}
}

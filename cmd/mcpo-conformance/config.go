package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// config is one invocation by the runner.
type config struct {
	// ServerURL is the mock server's MCP endpoint.
	ServerURL string
	// Scenario is the scenario's name.
	Scenario string
	// Protocol is the upstream.Spec protocol choice: the revision the runner
	// asked for, or "" (auto) when it named none.
	Protocol string
	// Context is the scenario data.
	Context scenarioContext
}

// scenarioContext is MCP_CONFORMANCE_CONTEXT: the fields the scenarios
// this command runs send. Unknown fields are ignored.
type scenarioContext struct {
	Name string `json:"name"`

	// Pre-registered client credentials (auth/pre-registration, the
	// client-credentials extensions), and the authorization server they
	// belong to when the scenario says.
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	Issuer       string `json:"issuer"`

	// private_key_jwt client authentication (auth/client-credentials-jwt).
	PrivateKeyPEM    string `json:"private_key_pem"`
	SigningAlgorithm string `json:"signing_algorithm"`

	// ToolCalls are the calls to make (http-custom-headers).
	ToolCalls []toolCall `json:"toolCalls"`
}

// toolCall is one tool to call with its arguments.
type toolCall struct {
	Name      string          `json:"name"`
	Arguments json.RawMessage `json:"arguments"`
}

// configFromEnv reads the runner's contract: the server URL is the last
// argument, the rest comes from the environment.
func configFromEnv(args []string, getenv func(string) string) (*config, error) {
	if len(args) == 0 {
		return nil, errors.New("no server URL: the runner passes it as the last argument")
	}
	cfg := &config{
		ServerURL: args[len(args)-1],
		Scenario:  strings.TrimSpace(getenv("MCP_CONFORMANCE_SCENARIO")),
	}
	if cfg.Scenario == "" {
		return nil, errors.New("MCP_CONFORMANCE_SCENARIO is not set")
	}
	u, err := url.Parse(cfg.ServerURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server URL %q is not an http(s) URL", cfg.ServerURL)
	}
	p, err := upstream.ParseProtocol(strings.TrimSpace(getenv("MCP_CONFORMANCE_PROTOCOL_VERSION")))
	if err != nil {
		return nil, fmt.Errorf("MCP_CONFORMANCE_PROTOCOL_VERSION: %w", err)
	}
	cfg.Protocol = p
	if raw := strings.TrimSpace(getenv("MCP_CONFORMANCE_CONTEXT")); raw != "" {
		if err := json.Unmarshal([]byte(raw), &cfg.Context); err != nil {
			return nil, fmt.Errorf("MCP_CONFORMANCE_CONTEXT is not the JSON object expected: %w", err)
		}
	}
	return cfg, nil
}

// Command mcpo-conformance is caddy-mcpo's client under test for the MCP
// conformance suite (@modelcontextprotocol/conformance, `conformance client`).
//
// It speaks to the suite's mock servers through the same code the Caddy
// module uses toward real upstream servers: an upstream.Upstream for the
// server's URL (Streamable HTTP) and, for the authorization scenarios, an
// oauth.Client as its Authorizer. Where the proxy would wait for a person to
// consent in a browser (the upstream in needs_auth, the authorization URL
// shown on the proxy's routes), the command follows the authorization URL
// itself and hands the redirect's query to the callback, as the browser
// would.
//
// The runner's contract:
//
//   - the server URL is the last argument;
//   - MCP_CONFORMANCE_SCENARIO names the scenario;
//   - MCP_CONFORMANCE_CONTEXT is a JSON object with scenario data
//     (pre-registered credentials, tool calls);
//   - MCP_CONFORMANCE_PROTOCOL_VERSION, when set, is the protocol revision to
//     speak, which pins the era (upstream.Spec.Protocol);
//   - exit status 0 when the scenario ran to its end, non-zero otherwise,
//     always within the runner's 30 s per-scenario timeout; logs go to
//     stderr.
package main

// Package upstream owns the connections to MCP servers.
//
// An Upstream runs one MCP server: it starts a stdio process (in its own
// process group, with its stderr sent to the log and its stdout read with a
// bound on each message) or dials a Streamable HTTP or HTTP+SSE endpoint,
// negotiates the protocol era, lists the tools with their raw JSON schemas,
// calls tools, passes resources and prompts through, passes the server's
// elicitations and sampling requests to the caller they are for (or
// answers them with the proxy's policy), sets the session's log level to
// what the receivers of its log messages vote for, and reconnects with
// backoff when the connection dies. It pings a ready server and restarts one that stops
// answering, stops restarting one that fails too often (StateFailed), and
// bounds a stdio server's process with Linux resource limits (Limits). It
// knows nothing of HTTP routing, OpenAPI or Caddy.
//
// It is the product's only package that speaks to mcp-go, through one
// seam: every request to a ready server goes through withSession (which
// session, a new one when the server forgot it, the answer to a refusal for
// want of credentials), then send (one request through mcp-go's Client,
// whose answer the tap between the Client and its transport keeps as
// sent), and for lists through paginate.
package upstream

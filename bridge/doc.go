// Package bridge serves the tools of MCP servers over plain HTTP, the way
// the Python project mcpo does, so that Open WebUI and other OpenAPI
// clients can call them.
//
// It owns, for one mount of one or several servers:
//
//   - the route table: each tool as POST <server>/<tool> taking a JSON
//     object of its arguments, each server's OpenAPI document
//     (<server>/openapi.json) and Swagger UI (<server>/docs), one document
//     and Swagger UI covering every server (openapi.json, docs), a health
//     report (health), and the pages where an administrator authorizes a
//     server that needs OAuth (<server>/oauth/...), or where each caller
//     authorizes one that acts for them (UserConsent); at a single-server
//     mount, the server's paths are at the mount itself;
//   - the MCP face: an MCP server over Streamable HTTP at mcp, serving
//     every server of the mount with their tools named as the document
//     covering them names its operations, and in a mount of several
//     servers one at <server>/mcp for each (mcpface.go, the only file that
//     imports mcp-go's server side); its calls go through the same path
//     as the REST face's (invoke), under the same rules;
//   - who may use them (Access): API keys, some naming their users, an
//     admin key, CORS, and whether a call needs the caller's identity,
//     which the handler in front establishes (WithIdentity, or
//     WithIdentityError saying why it could not); and which tools each
//     caller may call (Rule), by that identity: the documents and the
//     health report of a caller list only those, each document built once
//     per distinct set of granted tools;
//   - a call: reading its body within the limits of size, coding and
//     memory (MaxBodyBytes, gzip, MaxBodyBytesInFlight), checking that
//     every server reads it as the bridge does (UTF-8, no name twice,
//     MaxBodyDepth) and against the tool's input schema, the server's
//     deadline and concurrency cap, and mapping the result or error to an
//     HTTP answer;
//   - the answers that are not successes, all of the one shape
//     {"detail": {"message": ..., ...}} that Open WebUI and the LLMs behind
//     it read, with the status, Retry-After and Allow headers they act on;
//   - telling an Observer how every call ended, for metrics; writing
//     each call's line in the audit log (Config.Audit, audit.go); and
//     giving each call of a traced request a span of its own (trace.go).
//
// It works on any Caller (package upstream's Upstream is the real one):
// it starts, stops and talks to no server itself. A Caller may refuse a
// call with a status of its own (RefusedError), and count the sessions it
// gives its callers (SessionCounter) for the health report. It knows nothing of
// Caddy: the Caddy handler strips its mount from the request path and calls
// Bridge.Serve with what is left and the mount's path as the client sees
// it. The only goroutines it starts are those of an MCP endpoint, from its
// first request until Close: mcp-go's sweeper of idle sessions and the
// watcher that tells listening clients of new tool listings. It never puts
// API keys in answers or logs.
package bridge

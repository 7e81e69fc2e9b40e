// Package bridge serves the tools of MCP servers over plain HTTP, the way
// mcpo does: each tool as POST <server>/<tool> taking a JSON object of its
// arguments, each server's OpenAPI document and Swagger UI, one document
// and Swagger UI covering every server of a mount, a health report, and the
// pages where an administrator authorizes a server that needs OAuth.
//
// It works on any Caller (package upstream's Upstream is the real one) and
// knows nothing of Caddy: the Caddy handler strips its mount from the
// request path and calls Bridge.Serve.
//
// A request walks one way through the package:
//
//   - Serve answers CORS preflights (access.go), then looks the path up in
//     the route table New built once (routes.go): a net/http ServeMux
//     mapping each path to a page.
//   - serve checks the key the page needs (the API key, or the admin key
//     for the authorization page), finds the tool the path names in the
//     server's latest tool listing (view.go), and checks the method: a path
//     nothing is at gets 404, a method the page does not answer 405, and
//     OPTIONS the methods it does.
//   - A POST to a tool goes to serveCall (call.go), which reads and checks
//     the arguments (args.go), calls the tool under the server's deadline
//     and concurrency cap, renders the result (result.go), and tells the
//     Observer how the call ended (observe.go). Other methods go to the
//     page: a document, Swagger UI, the health report (health.go), or a
//     consent page (consent.go).
//
// Every answer other than a success is an *httpError (errors.go), written by
// writeError alone as {"detail": {"message": ..., ...}}, the shape Open
// WebUI and the LLMs behind it read.
package bridge

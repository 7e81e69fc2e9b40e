// Package jsonbody checks a request body before it is forwarded to an MCP
// server: it must be one JSON value (RFC 8259) with valid UTF-8, no object
// with the same member name twice, and no deeper nesting than a limit.
//
// The bridge validates arguments and forwards the body's bytes as they
// came. Everything this package refuses would otherwise be forwarded raw
// and read differently by the server than by the bridge: invalid UTF-8 is
// replaced by some parsers and refused by others (a server that cannot
// parse a request never answers it), a repeated name is the last value for
// the validator and the first for some servers, and a nesting deeper than
// a parser's own limit fails inside the MCP client. Check finds them in one
// pass, without allocating for bodies whose objects have up to
// linearScanKeys members.
package jsonbody

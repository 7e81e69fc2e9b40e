// Package schema turns the JSON Schemas of MCP tools, as servers emit them
// (drafts 07 to 2020-12), into OpenAPI 3.1 schemas that every client reads
// right, and validates tool arguments against the original schemas.
//
// A converted schema is self-contained: every reference ($defs,
// definitions, JSON pointers into the schema, anchors) is inlined, recursion
// is cut at a bounded depth, and references outside the schema are never
// fetched. An input schema becomes a flat object whose top-level properties
// are the arguments, as Open WebUI and most LLM clients expect: root unions
// of objects are merged, a non-object input is wrapped in one argument, and
// argument names LLM providers refuse are renamed (the wire names are kept
// for forwarding). Dialect drift is normalized and keywords OpenAPI does not
// know are kept as extensions. A schema that cannot be converted loses what
// it must, with warnings, never an error that would cost the other tools
// their documentation.
package schema

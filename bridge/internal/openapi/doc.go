// Package openapi builds the OpenAPI 3.1 documents that describe MCP tools
// as REST operations, and picks the names those operations go by: an
// operationId that every LLM provider accepts as a function name, and a URL
// path segment.
package openapi

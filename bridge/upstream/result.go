package upstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unsafe"

	"github.com/mark3labs/mcp-go/mcp"
)

// CallResult is a tools/call result as the server sent it.
type CallResult struct {
	Content []Content
	// Structured is the result's structuredContent, byte for byte; nil when
	// absent.
	Structured json.RawMessage
	IsError    bool
	// Raw is the whole result as the server sent it, for passing it on
	// as it is (the MCP face): its content items, with their annotations
	// and _meta, and its own _meta. It is the buffer the result was read
	// from, not a copy.
	Raw json.RawMessage
	// Meta is the result's _meta, byte for byte; nil when absent.
	Meta json.RawMessage
}

// Content is one content item of a tool result. Type says which fields are
// set: "text" (Text), "image" and "audio" (Data, MIMEType), "resource_link"
// (URI, Name, Title, Description, MIMEType, Size) and "resource" (Resource).
// Raw keeps the whole item, as sent, for types this package does not know
// and for a "resource" item without its resource; nil for the others.
type Content struct {
	Type        string            `json:"type"`
	Text        string            `json:"text"`
	Data        string            `json:"data"`
	MIMEType    string            `json:"mimeType"`
	URI         string            `json:"uri"`
	Name        string            `json:"name"`
	Title       string            `json:"title"`
	Description string            `json:"description"`
	Size        *int64            `json:"size"`
	Resource    *ResourceContents `json:"resource"`
	Raw         json.RawMessage   `json:"-"`
	// Wire is the item as the server sent it, a part of its result's Raw
	// (so costing nothing to keep); nil for an item not read from a
	// server's result.
	Wire json.RawMessage `json:"-"`
}

// ResourceContents is the resource of an embedded resource item: Text for a
// text resource, Blob (base64) for a binary one.
type ResourceContents struct {
	URI      string  `json:"uri"`
	MIMEType string  `json:"mimeType"`
	Text     *string `json:"text"`
	Blob     *string `json:"blob"`
}

type rawCallResult struct {
	Content           []wireContent   `json:"content"`
	StructuredContent json.RawMessage `json:"structuredContent"`
	Meta              json.RawMessage `json:"_meta"`
	IsError           bool            `json:"isError"`
	ResultType        string          `json:"resultType"`
}

// wireContent is a content item of a result being decoded, with the part
// of the result's buffer it was read from (Wire).
type wireContent struct{ Content }

// A wireContent is laid out as a Content (decodeCallResult relies on it):
// neither can be larger than the other.
var (
	_ [unsafe.Sizeof(wireContent{}) - unsafe.Sizeof(Content{})]struct{}
	_ [unsafe.Sizeof(Content{}) - unsafe.Sizeof(wireContent{})]struct{}
)

func (w *wireContent) UnmarshalJSON(b []byte) error {
	if err := w.Content.UnmarshalJSON(b); err != nil {
		return err
	}
	w.Wire = b // checked to be a part of the result's buffer by decodeCallResult
	return nil
}

// within reports part a slice of whole's memory.
func within(part, whole []byte) bool {
	if len(part) == 0 || len(whole) == 0 {
		return false
	}
	p, w := uintptr(unsafe.Pointer(unsafe.SliceData(part))), uintptr(unsafe.Pointer(unsafe.SliceData(whole)))
	return p >= w && p+uintptr(len(part)) <= w+uintptr(len(whole))
}

// UnmarshalJSON decodes a content item, keeping its JSON (Raw) only when
// its fields do not say everything: a result is then decoded in one pass,
// and a result of one 1 MiB text is copied once, not three times.
func (c *Content) UnmarshalJSON(b []byte) error {
	type content Content // without this method
	if err := json.Unmarshal(b, (*content)(c)); err != nil {
		return err
	}
	switch c.Type {
	case "text", "image", "audio", "resource_link":
	case "resource":
		if c.Resource == nil {
			c.Raw = bytes.Clone(b)
		}
	default:
		c.Raw = bytes.Clone(b)
	}
	return nil
}

// decodeCallResult reads a raw tools/call result.
func decodeCallResult(b json.RawMessage) (*CallResult, error) {
	var raw rawCallResult
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, decodeCallResultError(b, err)
	}
	if raw.ResultType != "" && raw.ResultType != "complete" {
		return nil, newInputRequired(b)
	}
	// A wireContent is a Content and nothing else: the items are used as
	// they are, not copied.
	content := unsafe.Slice((*Content)(unsafe.Pointer(unsafe.SliceData(raw.Content))), len(raw.Content))
	if content == nil {
		content = []Content{}
	}
	for i := range content {
		if !within(content[i].Wire, b) {
			// encoding/json gave the item in a buffer of its own, which
			// it may reuse.
			content[i].Wire = bytes.Clone(content[i].Wire)
		}
	}
	return &CallResult{Content: content, Structured: nonNull(raw.StructuredContent), Meta: nonNull(raw.Meta), IsError: raw.IsError, Raw: b}, nil
}

// decodeCallResultError says why b could not be decoded, naming the
// content item at fault: decoding the result with its items kept as raw
// JSON, then each item, finds which one.
func decodeCallResultError(b json.RawMessage, err error) error {
	var raw struct {
		Content []json.RawMessage `json:"content"`
	}
	if json.Unmarshal(b, &raw) != nil {
		return err
	}
	for i, item := range raw.Content {
		var c Content
		if err := json.Unmarshal(item, &c); err != nil {
			return fmt.Errorf("content item %d: %w", i, err)
		}
	}
	return err
}

// RPCError is a JSON-RPC error answered by the server.
type RPCError struct {
	Code    int
	Message string
	// Data is the error's data member, nil when absent.
	Data json.RawMessage
}

func newRPCError(d *mcp.JSONRPCErrorDetails) *RPCError {
	e := &RPCError{Code: d.Code, Message: d.Message}
	if d.Data != nil {
		if b, err := json.Marshal(d.Data); err == nil {
			e.Data = b
		}
	}
	return e
}

func (e *RPCError) Error() string {
	return fmt.Sprintf("JSON-RPC error %d: %s", e.Code, e.Message)
}

// JSON-RPC error codes the bridge gives a meaning to.
const (
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
)

// InputRequiredError reports a request whose server asked for input
// (elicitation, sampling, roots) through a multi round-trip result
// (2026-07-28) that was not answered here: a caller of the HTTP API has
// nobody to answer it, and a caller taking part in the round trip
// (WithRoundTrip) answers it itself.
type InputRequiredError struct {
	ResultType string
	// Requests are the server's input requests, keyed by their IDs, each
	// as it sent it; none when it sheds load, asking to be sent the
	// request again later. Under WithRoundTrip, only those the caller
	// answers.
	Requests map[string]json.RawMessage
	// Answered are the answers the Upstream gave to the round's other
	// requests (see RoundTrip.Asks), to be sent back beside the caller's.
	Answered map[string]json.RawMessage
	// RequestState is the state the server asks to be echoed in the next
	// round.
	RequestState string
	// Cause, when set, is why the input could not be given: mcp-go's
	// client tried to answer the requests and failed.
	Cause error
}

func (e *InputRequiredError) Error() string {
	if e.Cause != nil {
		return "the server asked for input that could not be given: " + e.Cause.Error()
	}
	return fmt.Sprintf("the tool asked for interactive input (result type %q), which this proxy cannot provide", e.ResultType)
}

func (e *InputRequiredError) Unwrap() error { return e.Cause }

// UnavailableError reports a server that cannot take calls right now.
type UnavailableError struct {
	Server string
	State  State
	// Cause is why the last start failed or the connection died; nil while
	// the first start is still running.
	Cause error
	// RetryAfter is a hint for when to try again.
	RetryAfter time.Duration
}

func (e *UnavailableError) Error() string {
	var loop *CrashLoopError
	switch {
	case errors.As(e.Cause, &loop):
		return loop.Error()
	case e.State == StateFailed && e.Cause != nil:
		return fmt.Sprintf("server %q is not running: %v", e.Server, e.Cause)
	case e.State == StateFailed:
		return fmt.Sprintf("server %q failed too often and is not restarted", e.Server)
	case e.State == StateBackoff && e.Cause != nil:
		return fmt.Sprintf("server %q is not running: %v", e.Server, e.Cause)
	case e.State == StateBackoff:
		return fmt.Sprintf("server %q is not running", e.Server)
	case e.Cause != nil: // restarting after a failure
		return fmt.Sprintf("server %q is %s (the last attempt failed: %v)", e.Server, e.State, e.Cause)
	}
	return fmt.Sprintf("server %q is %s", e.Server, e.State)
}

func (e *UnavailableError) Unwrap() error { return e.Cause }

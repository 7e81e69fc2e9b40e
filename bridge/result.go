package bridge

import (
	"encoding/json"
	"strings"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// renderResult maps a successful tool result to a JSON body, the way mcpo
// does so that existing Open WebUI setups keep working:
//
//   - a tool with an outputSchema that returned structuredContent gets that
//     content as the body;
//   - otherwise each content item maps to a JSON value: text to its JSON
//     value when it parses as JSON, else to a string; image and audio to a
//     data: URI string; resource links and embedded resources to objects;
//   - one item is returned bare, any other number as an array.
//
// Unlike mcpo, a result holding an image or audio is always an array:
// Open WebUI shows data: URIs to the user as files only when they sit in a
// list, and would otherwise feed the base64 text to the model.
func renderResult(res *upstream.CallResult, tool *upstream.Tool) []byte {
	if res.Structured != nil && (tool.OutputSchema != nil || len(res.Content) == 0) {
		return res.Structured
	}
	items := make([][]byte, 0, len(res.Content))
	media := false
	for i := range res.Content {
		c := &res.Content[i]
		if c.Type == "image" || c.Type == "audio" {
			media = true
		}
		items = append(items, renderContent(c))
	}
	if len(items) == 1 && !media {
		return items[0]
	}
	size := 2 + max(len(items)-1, 0) // brackets and commas
	for _, it := range items {
		size += len(it)
	}
	b := make([]byte, 0, size)
	b = append(b, '[')
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, it...)
	}
	return append(b, ']')
}

// toolError is the answer to a result the tool marked as an error
// (isError): the server's ToolErrorStatus, with the tool's text as the
// message.
func toolError(res *upstream.CallResult, s *ServerConfig, tool *upstream.Tool) *httpError {
	return &httpError{Status: s.ToolErrorStatus, Outcome: OutcomeToolError,
		Detail: errorDetail{Message: errorText(res), Server: s.Name, Tool: tool.Name}}
}

// renderContent maps one content item to JSON.
func renderContent(c *upstream.Content) []byte {
	switch c.Type {
	case "text":
		// Only a text that starts like a JSON value is copied to be checked:
		// most texts are prose, and some are megabytes.
		if t := strings.TrimSpace(c.Text); t != "" && strings.IndexByte(jsonStart, t[0]) >= 0 {
			if b := []byte(t); json.Valid(b) {
				return b
			}
		}
		return textJSON(c.Text)
	case "image", "audio":
		return dataURIJSON(c.MIMEType, c.Data)
	case "resource_link":
		return mustJSON(struct {
			Type        string `json:"type"`
			URI         string `json:"uri"`
			Name        string `json:"name,omitempty"`
			Title       string `json:"title,omitempty"`
			Description string `json:"description,omitempty"`
			MIMEType    string `json:"mimeType,omitempty"`
			Size        *int64 `json:"size,omitempty"`
		}{"resource_link", c.URI, c.Name, c.Title, c.Description, c.MIMEType, c.Size})
	case "resource":
		if c.Resource == nil {
			return c.Raw
		}
		r := c.Resource
		out := struct {
			Type     string  `json:"type"`
			URI      string  `json:"uri"`
			MIMEType string  `json:"mimeType,omitempty"`
			Text     *string `json:"text,omitempty"`
			Data     string  `json:"data,omitempty"`
		}{Type: "resource", URI: r.URI, MIMEType: r.MIMEType, Text: r.Text}
		if r.Blob != nil {
			out.Data = dataURI(r.MIMEType, *r.Blob)
		}
		return mustJSON(out)
	}
	return c.Raw // a content type newer than this bridge: passed on as sent
}

// textJSON is the JSON string of s: written as it is, in one allocation,
// when it holds no character JSON escapes, as most short texts do.
func textJSON(s string) []byte {
	if !plainJSON(s) {
		return mustJSON(s)
	}
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// jsonStart holds the bytes a JSON text can start with.
const jsonStart = `{["tfn-0123456789`

func dataURI(mime, data string) string {
	if mime == "" {
		mime = "application/octet-stream"
	}
	return "data:" + mime + ";base64," + data
}

// dataURIJSON is the JSON string of dataURI(mime, data). Base64 data and
// MIME types normally hold no character JSON escapes (nor one json.Marshal
// escapes for HTML); then the string is written as it is, in one
// allocation, rather than joined, then escaped, then copied: images are
// often megabytes.
func dataURIJSON(mime, data string) []byte {
	if mime == "" {
		mime = "application/octet-stream"
	}
	if !plainJSON(mime) || !plainJSON(data) {
		return mustJSON(dataURI(mime, data))
	}
	const prefix, middle = `"data:`, ";base64,"
	b := make([]byte, 0, len(prefix)+len(mime)+len(middle)+len(data)+1)
	b = append(b, prefix...)
	b = append(b, mime...)
	b = append(b, middle...)
	b = append(b, data...)
	return append(b, '"')
}

// plainJSON reports whether json.Marshal writes s unchanged between its
// quotes: printable ASCII, without the characters it escapes.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if !plainByte[s[i]] {
			return false
		}
	}
	return true
}

// plainByte holds the bytes plainJSON allows.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < 0x7f; c++ {
		t[c] = true
	}
	for _, c := range `"\<>&` {
		t[c] = false
	}
	return t
}()

// errorText is the message of a tool error: its text items, joined.
func errorText(res *upstream.CallResult) string {
	var parts []string
	for _, c := range res.Content {
		if c.Type == "text" && strings.TrimSpace(c.Text) != "" {
			parts = append(parts, c.Text)
		}
	}
	if len(parts) == 0 {
		return "the tool reported an error without a message"
	}
	return strings.Join(parts, "\n")
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("bridge: encoding a content item: " + err.Error()) // only strings and ints
	}
	return b
}

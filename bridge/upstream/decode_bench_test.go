package upstream

import (
	"encoding/json"
	"strings"
	"testing"
)

// BenchmarkDecodeCallResult measures reading a tools/call result as the
// server sent it, what every call costs on top of the transport: a short
// text, a few items of several types, and a text of 1 MiB.
func BenchmarkDecodeCallResult(b *testing.B) {
	for _, bc := range []struct{ name, result string }{
		{"short text", `{"content":[{"type":"text","text":"hello"}]}`},
		{"mixed", `{"content":[{"type":"text","text":"Here is the chart."},{"type":"image","mimeType":"image/png","data":"iVBORw0KGgo="},` +
			`{"type":"resource_link","uri":"file:///c.png","name":"c.png"},{"type":"text","text":"{\"rows\":3}"}],"structuredContent":{"rows":3}}`},
		{"1 MiB text", `{"content":[{"type":"text","text":"` + strings.Repeat("x", 1<<20) + `"}]}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			raw := json.RawMessage(bc.result)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := decodeCallResult(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

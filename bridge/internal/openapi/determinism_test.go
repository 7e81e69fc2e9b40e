package openapi

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
)

// rebuilds is how many times each tool's document is built afresh.
const rebuilds = 50

// TestSameListingSameBytes builds the document of each tool of the test
// corpus (every hard schema and every captured tool) 50 times: the bytes
// and the warnings must never differ, or a rebuild of the same listing
// would change the document and its ETag.
func TestSameListingSameBytes(t *testing.T) {
	for _, d := range corpusDocuments() {
		if d.tagged {
			continue // the same tools again
		}
		for _, op := range d.ops {
			one := corpusDocument{name: d.name, ops: []Operation{op}}
			first := one.build(t)
			for i := 1; i < rebuilds; i++ {
				again := one.build(t)
				if !bytes.Equal(first.JSON("/"), again.JSON("/")) {
					t.Errorf("%s/%s: build %d differs from the first:\n%s\n%s", d.name, op.Tool.Name, i+1, first.JSON("/"), again.JSON("/"))
					break
				}
				if !slices.Equal(first.Warnings, again.Warnings) {
					t.Errorf("%s/%s: build %d warns %s, the first %s", d.name, op.Tool.Name, i+1, warningList(again), warningList(first))
					break
				}
			}
		}
	}
}

func warningList(d *Document) string {
	var b bytes.Buffer
	for _, w := range d.Warnings {
		fmt.Fprintf(&b, "\n\t%s: %s", w.Tool, w.Message)
	}
	return b.String()
}

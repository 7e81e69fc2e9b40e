package schema

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// decodeCases are JSON texts, valid and not, that decodeInstance must read
// exactly as jsonschema.UnmarshalJSON does.
var decodeCases = []string{
	`{}`, `[]`, `{"a":1}`, ` { "a" : [ 1 , -2.5e+3 , 0 , 1E2 , true , false , null ] } `,
	`{"s":"plain","e":"tab\tquote\"slash\/u\u00e9pair\ud83d\ude00","k\u00e9y":"v"}`,
	`{"dup":1,"dup":2}`, `{"n":12345678901234567890123}`, `"top"`, `42`, `null`,
	`{"nested":{"a":[{"b":[[]]}]}}`, "{\"bad utf8\":\"\xff\xfe\"}", "{\"\xff\":1}",
	// Invalid: the slow path's errors.
	``, ` `, `{`, `{"a"}`, `{"a":}`, `{"a":1,}`, `[1,]`, `[01]`, `01`, `-`, `1.`, `1e`, `.5`, `+1`,
	`tru`, `truex`, `{"a":1}x`, `{"a":1} {"b":2}`, "\"ctl\x01\"", `"\x"`, `"unterminated`, `{'a':1}`, `[1 2]`,
}

func TestDecodeInstanceReadsAsTheValidatorsOwnDecoder(t *testing.T) {
	for _, c := range append(decodeCases, strings.Repeat("[", 1100)+strings.Repeat("]", 1100)) {
		want, wantErr := jsonschema.UnmarshalJSON(bytes.NewReader([]byte(c)))
		got, err := decodeInstance([]byte(c))
		if (err != nil) != (wantErr != nil) || err != nil && err.Error() != wantErr.Error() {
			t.Errorf("decodeInstance(%q) error %v, want %v", c, err, wantErr)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("decodeInstance(%q) = %#v, want %#v", c, got, want)
		}
	}
}

func FuzzDecodeInstance(f *testing.F) {
	for _, c := range decodeCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, wantErr := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		got, err := decodeInstance(b)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("decodeInstance(%q) error %v, want %v", b, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeInstance(%q) = %#v, want %#v", b, got, want)
		}
	})
}

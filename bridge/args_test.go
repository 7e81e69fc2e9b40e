package bridge

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

func routeFor(t *testing.T, inputSchema string) *route {
	t.Helper()
	return newRoute("t", "t", &upstream.Tool{Name: "t", InputSchema: json.RawMessage(inputSchema)}, "s", zap.NewNop())
}

func TestPrepareArgs(t *testing.T) {
	const plain = `{"type":"object","properties":{"n":{"type":"integer"},"s":{"type":"string"},"z":{"type":["string","null"]}},"required":["n"]}`
	const renamed = `{"type":"object","properties":{"user-id":{"type":"integer"},"name":{"type":"string"}},"required":["user-id"]}`
	const wrapped = `{"type":"array","items":{"type":"integer"}}`
	tests := []struct {
		name    string
		schema  string
		lenient bool
		body    string
		want    string // the arguments forwarded, exactly
		status  int
		says    string
	}{
		{"valid arguments pass as sent", plain, false, `{"s":"x", "n":5,"z":null}`, `{"s":"x", "n":5,"z":null}`, 0, ""},
		{"big and precise numbers stay as sent", `{"type":"object"}`, false, `{"n":12345678901234567890,"f":1.50}`, `{"n":12345678901234567890,"f":1.50}`, 0, ""},
		{"invalid arguments are refused", plain, false, `{"n":"5"}`, "", http.StatusUnprocessableEntity, "/n: got string, want integer"},
		{"missing required argument", plain, false, `{}`, "", http.StatusUnprocessableEntity, "missing property 'n'"},
		{"lenient: a string holding a number is coerced", plain, true, `{"n":"5"}`, `{"n":5}`, 0, ""},
		{"lenient: what coercion cannot fix is refused", plain, true, `{"n":"five"}`, "", http.StatusUnprocessableEntity, "/n"},
		{"renamed arguments go back to their wire names", renamed, false, `{"user_id":7,"name":"a"}`, `{"user-id":7,"name":"a"}`, 0, ""},
		{"the wire name is accepted too", renamed, false, `{"user-id":7}`, `{"user-id":7}`, 0, ""},
		{"both names: the wire name wins", renamed, false, `{"user_id":1,"user-id":2}`, `{"user-id":2}`, 0, ""},
		{"renamed arguments are validated under their wire names", renamed, false, `{"user_id":"x"}`, "", http.StatusUnprocessableEntity, "/user-id"},
		{"a wrapped input is unwrapped", wrapped, false, `{"input":[1,2,3]}`, `[1,2,3]`, 0, ""},
		{"a wrapped input must be given", wrapped, false, `{}`, "", http.StatusUnprocessableEntity, `"input" argument`},
		{"a wrapped input is validated", wrapped, false, `{"input":["x"]}`, "", http.StatusUnprocessableEntity, "/0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt := routeFor(t, tt.schema)
			got, e := prepareArgs(json.RawMessage(tt.body), &ServerConfig{Name: "s", LenientArgs: tt.lenient}, rt)
			status, d := 0, errorDetail{}
			if e != nil {
				status, d = e.Status, e.Detail
				if e.Outcome != OutcomeInvalidArguments {
					t.Errorf("outcome = %q, want %q", e.Outcome, OutcomeInvalidArguments)
				}
			}
			if status != tt.status {
				t.Fatalf("status = %d (%+v), want %d", status, d, tt.status)
			}
			if status == 0 && string(got) != tt.want {
				t.Errorf("forwarded %s, want %s", got, tt.want)
			}
			if status != 0 && got != nil {
				t.Errorf("forwarded %s with a refusal", got)
			}
			if status != 0 && !strings.Contains(d.Message, tt.says) {
				t.Errorf("message %q does not say %q", d.Message, tt.says)
			}
			if status == http.StatusUnprocessableEntity && tt.says != `"input" argument` && len(d.Errors) == 0 {
				t.Error("422 without the list of errors")
			}
		})
	}
}

func TestPrepareArgs_AToolWhoseSchemaCannotBeCompiledIsNotValidated(t *testing.T) {
	rt := routeFor(t, `{"type":"object","properties":{"a":{"$ref":"https://example.com/a.json"}}}`)
	if rt.argsValidator() != nil {
		t.Fatal("a schema with an external reference compiled")
	}
	got, e := prepareArgs(json.RawMessage(`{"a":1}`), &ServerConfig{Name: "s"}, rt)
	if e != nil || string(got) != `{"a":1}` {
		t.Errorf("forwarded %s, refused with %v", got, e)
	}
}

func TestMembers_KeepValuesAsSent(t *testing.T) {
	in := `{"b": [1, 2],"a":{"x" : null},"c":"\u00e9"}`
	ms, err := members(json.RawMessage(in))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(object(ms)); got != `{"b":[1, 2],"a":{"x" : null},"c":"\u00e9"}` {
		t.Errorf("object(members(%s)) = %s", in, got)
	}
}

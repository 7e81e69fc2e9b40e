package caddymcpo

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

func TestElicitationPolicies(t *testing.T) {
	const (
		covered   = `{"type":"object","properties":{"color":{"type":"string","default":"blue"},"note":{"type":"string"}},"required":["color"]}`
		uncovered = `{"type":"object","properties":{"name":{"type":"string"}},"required":["name"]}`
	)
	for _, c := range []struct {
		policy, mode, schema string
		want                 string // "" for no elicitation capability
	}{
		{"", "form", covered, ""},
		{"off", "form", covered, ""},
		{"decline", "form", covered, upstream.ElicitDecline},
		{"defaults", "form", covered, upstream.ElicitAccept},
		{"defaults", "form", uncovered, upstream.ElicitDecline},
		{"defaults", "form", `not json`, upstream.ElicitDecline},
		{"defaults", "form", ``, upstream.ElicitDecline},
		{"defaults", "url", covered, upstream.ElicitDecline},
	} {
		fn := elicitPolicy(c.policy)
		if fn == nil {
			if c.want != "" {
				t.Errorf("%q: no elicitation capability, want %s", c.policy, c.want)
			}
			continue
		}
		ans, err := fn(context.Background(), upstream.Elicitation{Mode: c.mode, RequestedSchema: json.RawMessage(c.schema)})
		if err != nil || ans.Action != c.want {
			t.Errorf("%q %s %s: %q %v, want %s", c.policy, c.mode, c.schema, ans.Action, err, c.want)
		}
	}
}

package identity

import (
	"strings"
	"testing"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
)

func TestCheck(t *testing.T) {
	many := make([]string, MaxGroups+1)
	for i := range many {
		many[i] = "g"
	}
	for _, tc := range []struct {
		name string
		id   bridge.Identity
		err  string // "" when acceptable
	}{
		{"a UUID", bridge.Identity{ID: "2d95199f-1f70-4690-9b4a-8f98280ca9da", Email: "zoe@example.com", Name: "Zoë Doe", Role: "user"}, ""},
		// Acceptable here: what uses an ID in a path encodes it.
		{"a path as the id", bridge.Identity{ID: "../x"}, ""},
		{"spaces and symbols", bridge.Identity{ID: "a b/c\\d'e\"f;g$(h)`i`", Name: "O'Brien, Jr."}, ""},
		{"an id of 128 bytes", bridge.Identity{ID: strings.Repeat("é", 64)}, ""},
		{"a name of 256 bytes", bridge.Identity{ID: "u", Name: strings.Repeat("n", 256)}, ""},
		{"64 groups", bridge.Identity{ID: "user-7", Groups: many[:MaxGroups]}, ""},

		{"no id", bridge.Identity{Email: "a@example.com"}, "the id is empty"},
		{"an id of 129 bytes", bridge.Identity{ID: strings.Repeat("x", 129)}, "the id is 129 bytes long, more than 128"},
		{"an id of 10 KB", bridge.Identity{ID: strings.Repeat("x", 10<<10)}, "more than 128"},
		{"NUL in the id", bridge.Identity{ID: "a\x00b"}, "the id holds a control character"},
		{"a newline in the id", bridge.Identity{ID: "a\nb"}, "the id holds a control character"},
		{"CR in the id", bridge.Identity{ID: "a\rb"}, "control character"},
		{"a tab in the id", bridge.Identity{ID: "a\tb"}, "control character"},
		{"DEL in the id", bridge.Identity{ID: "a\x7fb"}, "control character"},
		{"a C1 control in the id", bridge.Identity{ID: "a\u0085b"}, "control character"},
		{"a line separator in the id", bridge.Identity{ID: "a\u2028b"}, "control character"},
		{"invalid UTF-8 in the id", bridge.Identity{ID: "a\xffb"}, "the id is not valid UTF-8"},
		{"a newline in the email", bridge.Identity{ID: "u", Email: "a@example.com\r\nX-Evil: 1"}, "the email holds a control character"},
		{"a name of 257 bytes", bridge.Identity{ID: "u", Name: strings.Repeat("n", 257)}, "the name is 257 bytes long, more than 256"},
		{"NUL in the role", bridge.Identity{ID: "u", Role: "admin\x00"}, "the role holds"},
		{"an empty group", bridge.Identity{ID: "user-7", Groups: []string{"a", ""}}, "group 2 is empty"},
		{"a newline in a group", bridge.Identity{ID: "user-7", Groups: []string{"a\nb"}}, "group 1 holds a control character"},
		{"65 groups", bridge.Identity{ID: "user-7", Groups: many}, "65 groups, more than 64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Check(tc.id)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("Check: %v, want an error saying %q", err, tc.err)
			}
			if strings.Contains(err.Error(), tc.id.ID) && tc.id.ID != "" {
				t.Errorf("the error %q repeats the id", err)
			}
		})
	}
}

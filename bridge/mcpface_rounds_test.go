package bridge

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestRoundStateOpensOnlyAsSealedForItsRequest(t *testing.T) {
	sealed := (&roundState{Server: "s", Name: "confirm", State: "server-state",
		Answered: map[string]json.RawMessage{"where": json.RawMessage(`{"roots":[]}`)}}).seal()
	payload, sig, _ := strings.Cut(strings.TrimPrefix(sealed, roundStatePrefix), ".")
	forged, _ := json.Marshal(roundState{Server: "s", Name: "confirm", State: "server-state",
		Answered: map[string]json.RawMessage{"where": json.RawMessage(`{"roots":[{"uri":"file:///"}]}`)}})
	for _, tc := range []struct {
		name, state, server, tool string
		ok                        bool
	}{
		{"as sealed", sealed, "s", "confirm", true},
		{"for another tool", sealed, "s", "other", false},
		{"for another server", sealed, "t", "confirm", false},
		{"with other roots, signed as the old", roundStatePrefix + base64.RawURLEncoding.EncodeToString(forged) + "." + sig, "s", "confirm", false},
		{"without its signature", roundStatePrefix + payload, "s", "confirm", false},
		{"a server's own state", "server-state", "s", "confirm", false},
		{"empty", "", "s", "confirm", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := openRoundState(tc.state, tc.server, tc.tool)
			if !tc.ok {
				if !errors.Is(err, errRoundState) {
					t.Fatalf("opened %+v, %v; want errRoundState", rs, err)
				}
				return
			}
			if err != nil || rs.State != "server-state" || string(rs.Answered["where"]) != `{"roots":[]}` {
				t.Fatalf("opened %+v, %v", rs, err)
			}
		})
	}
}

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

func TestMCPFaceRefusesAnAlteredRequestStateAsInvalidParams(t *testing.T) {
	for _, path := range []struct {
		name   string
		noFast bool
	}{{"direct path", false}, {"mcp-go's transport", true}} {
		t.Run(path.name, func(t *testing.T) {
			_, url := fastFace(t, path.noFast)
			body, header := callOf("1", "echo", `{"message":"again"}`, "", true)
			body = strings.Replace(body, `"arguments":`, `"requestState":"`+roundStatePrefix+`e30.forged","arguments":`, 1)
			resp, answer := postMCP(t, url, body, header)
			var m struct {
				Error *struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal([]byte(answer), &m); err != nil || m.Error == nil {
				t.Fatalf("answered %d %s; want a JSON-RPC error", resp.StatusCode, answer)
			}
			if m.Error.Code != -32602 || resp.StatusCode != 400 || !strings.Contains(m.Error.Message, "requestState was not given by this endpoint") {
				t.Errorf("answered %d, error %d %q; want 400, -32602 saying the requestState is not the endpoint's", resp.StatusCode, m.Error.Code, m.Error.Message)
			}
		})
	}
}

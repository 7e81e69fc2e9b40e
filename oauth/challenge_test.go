package oauth

import (
	"net/http"
	"reflect"
	"testing"
)

func TestParseChallenges(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   []Challenge
	}{
		{
			name:   "bearer with resource_metadata and scope",
			values: []string{`Bearer resource_metadata="https://mcp.example/.well-known/oauth-protected-resource/mcp", scope="files:read files:write"`},
			want: []Challenge{{Scheme: "Bearer", Params: map[string]string{
				"resource_metadata": "https://mcp.example/.well-known/oauth-protected-resource/mcp",
				"scope":             "files:read files:write",
			}}},
		},
		{
			name:   "scheme and parameter names are case-insensitive; values keep their case",
			values: []string{`bEaReR Error="insufficient_scope", SCOPE="Admin"`},
			want:   []Challenge{{Scheme: "bEaReR", Params: map[string]string{"error": "insufficient_scope", "scope": "Admin"}}},
		},
		{
			name:   "quoted-string escapes and commas inside quotes",
			values: []string{`Bearer realm="a \"quoted\", realm", error_description="x\\y"`},
			want:   []Challenge{{Scheme: "Bearer", Params: map[string]string{"realm": `a "quoted", realm`, "error_description": `x\y`}}},
		},
		{
			name:   "several challenges in one header",
			values: []string{`Basic realm="simple", Bearer scope="a", error="invalid_token", DPoP algs="ES256"`},
			want: []Challenge{
				{Scheme: "Basic", Params: map[string]string{"realm": "simple"}},
				{Scheme: "Bearer", Params: map[string]string{"scope": "a", "error": "invalid_token"}},
				{Scheme: "DPoP", Params: map[string]string{"algs": "ES256"}},
			},
		},
		{
			name:   "several header lines",
			values: []string{`Basic realm="x"`, `Bearer scope="mcp:basic"`},
			want: []Challenge{
				{Scheme: "Basic", Params: map[string]string{"realm": "x"}},
				{Scheme: "Bearer", Params: map[string]string{"scope": "mcp:basic"}},
			},
		},
		{
			name:   "token values, spaces around equals, first duplicate wins",
			values: []string{`Bearer error = invalid_token ,scope=a, scope=b`},
			want:   []Challenge{{Scheme: "Bearer", Params: map[string]string{"error": "invalid_token", "scope": "a"}}},
		},
		{
			name:   "bare scheme and token68",
			values: []string{`Bearer, Negotiate abc+/def==, Basic`},
			want: []Challenge{
				{Scheme: "Bearer", Params: map[string]string{}},
				{Scheme: "Negotiate", Params: map[string]string{}, Token68: "abc+/def=="},
				{Scheme: "Basic", Params: map[string]string{}},
			},
		},
		{
			name:   "malformed parts are skipped, the rest is kept",
			values: []string{`@@@, Bearer scope="unterminated`, `Bearer scope="ok", error=`},
			want: []Challenge{
				{Scheme: "Bearer", Params: map[string]string{}},
				{Scheme: "Bearer", Params: map[string]string{"scope": "ok"}},
			},
		},
		{
			name:   "empty header",
			values: []string{""},
			want:   nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tt.values {
				h.Add("WWW-Authenticate", v)
			}
			got := ParseChallenges(h)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseChallenges(%q)\n got  %#v\n want %#v", tt.values, got, tt.want)
			}
		})
	}
}

func TestFindBearerPicksTheBearerChallenge(t *testing.T) {
	h := http.Header{}
	h.Add("WWW-Authenticate", `Basic realm="x", Bearer error="insufficient_scope", scope="a b", resource_metadata="https://r/prm"`)
	ch, ok := findBearer(h, http.StatusForbidden)
	if !ok {
		t.Fatal("no Bearer challenge found")
	}
	want := bearerChallenge{status: 403, resourceMetadata: "https://r/prm", scope: []string{"a", "b"}, err: "insufficient_scope"}
	if !reflect.DeepEqual(ch, want) {
		t.Errorf("got %#v, want %#v", ch, want)
	}
	if _, ok := findBearer(http.Header{"Www-Authenticate": {`Basic realm="x"`}}, 401); ok {
		t.Error("found a Bearer challenge in a Basic-only header")
	}
}

package identity

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
	"github.com/caddy-mcpo/caddy-mcpo/internal/identity/jwttest"
)

const testSecret = "open-webui-forward-secret-for-tests-only-7f3a"

func TestOpenWebUIVerify(t *testing.T) {
	now := time.Unix(1791110855, 0)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	hs512Key := []byte(strings.Repeat("k", 64))
	const sub = "2d95199f-1f70-4690-9b4a-8f98280ca9da"
	good := bridge.Identity{ID: sub, Email: sub + "@example.com", Name: "User " + sub, Role: "user"}
	claims := func(changes map[string]any) map[string]any { return jwttest.OpenWebUIClaims(sub, now, changes) }
	hs256 := func(changes map[string]any) func(t *testing.T) string {
		return func(t *testing.T) string { return jwttest.Sign(t, jose.HS256, []byte(testSecret), claims(changes)) }
	}
	for _, tc := range []struct {
		name  string
		token func(t *testing.T) string
		want  bridge.Identity
		// err is why the token is refused: one of the Err values, or an
		// *AlgorithmError naming the algorithm; nil for a good token.
		err error
	}{
		{name: "a token as Open WebUI mints it", token: hs256(nil), want: good},
		// PyJWT 2.15.1: jwt.encode({"sub": ..., "email": ..., "name": "Zoë Doe", "role": "user",
		// "iss": "open-webui", "iat": 1791110855, "exp": 1791111155}, testSecret, algorithm="HS256"):
		// its header is {"alg":"HS256","typ":"JWT"}, and its payload JSON escapes non-ASCII (\u00eb).
		{name: "a token PyJWT encoded, byte for byte", want: bridge.Identity{ID: sub, Email: "zoe@example.com", Name: "Zoë Doe", Role: "user"}, token: func(*testing.T) string {
			return "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." +
				"eyJzdWIiOiIyZDk1MTk5Zi0xZjcwLTQ2OTAtOWI0YS04Zjk4MjgwY2E5ZGEiLCJlbWFpbCI6InpvZUBleGFtcGxlLmNvbSIsIm5hbWUiOiJab1x1MDBlYiBEb2UiLCJyb2xlIjoidXNlciIsImlzcyI6Im9wZW4td2VidWkiLCJpYXQiOjE3OTExMTA4NTUsImV4cCI6MTc5MTExMTE1NX0." +
				"rWGSBIpW3PQVqyjh8P2L9GefqctdtWgmHKTNIkbUziI"
		}},
		{name: "groups as a list", token: hs256(map[string]any{"groups": []string{"eng", "ops"}}),
			want: bridge.Identity{ID: good.ID, Email: good.Email, Name: good.Name, Role: good.Role, Groups: []string{"eng", "ops"}}},
		{name: "a group alone", token: hs256(map[string]any{"groups": "eng"}),
			want: bridge.Identity{ID: good.ID, Email: good.Email, Name: good.Name, Role: good.Role, Groups: []string{"eng"}}},
		{name: "only sub, iss and exp", token: hs256(map[string]any{"email": nil, "name": nil, "role": nil, "iat": nil}),
			want: bridge.Identity{ID: good.ID}},
		{name: "expired within the leeway", token: hs256(map[string]any{"exp": now.Unix() - 29}), want: good},
		{name: "expired beyond the leeway", token: hs256(map[string]any{"exp": now.Unix() - 31}), err: ErrExpired},
		{name: "issued in the future within the leeway", token: hs256(map[string]any{"iat": now.Unix() + 29}), want: good},
		{name: "issued in the future beyond the leeway", token: hs256(map[string]any{"iat": now.Unix() + 31}), err: ErrIssuedInFuture},
		{name: "not valid yet", token: hs256(map[string]any{"nbf": now.Unix() + 60}), err: ErrNotYetValid},
		{name: "no exp", token: hs256(map[string]any{"exp": nil}), err: ErrNoExpiry},
		{name: "wrong issuer", token: hs256(map[string]any{"iss": "someone-else"}), err: ErrIssuer},
		{name: "no issuer", token: hs256(map[string]any{"iss": nil}), err: ErrIssuer},
		{name: "no sub", token: hs256(map[string]any{"sub": nil}), err: ErrNoSubject},
		{name: "empty sub", token: hs256(map[string]any{"sub": ""}), err: ErrNoSubject},
		{name: "sub a number", token: hs256(map[string]any{"sub": 42}), err: ErrClaims},
		{name: "exp a string", token: hs256(map[string]any{"exp": "tomorrow"}), err: ErrClaims},
		{name: "wrong secret", err: ErrSignature, token: func(t *testing.T) string {
			return jwttest.Sign(t, jose.HS256, []byte(testSecret+"x"), claims(nil))
		}},
		{name: "alg none", err: &AlgorithmError{Alg: "none"}, token: func(t *testing.T) string {
			return jwttest.Unsigned(t, map[string]any{"alg": "none", "typ": "JWT"}, claims(nil))
		}},
		{name: "alg None, in another case", err: &AlgorithmError{}, token: func(t *testing.T) string {
			return jwttest.Unsigned(t, map[string]any{"alg": "None"}, claims(nil))
		}},
		{name: "no alg", err: &AlgorithmError{}, token: func(t *testing.T) string {
			return jwttest.Unsigned(t, map[string]any{"typ": "JWT"}, claims(nil))
		}},
		{name: "HS512 with a key as long as the secret", err: &AlgorithmError{Alg: "HS512"}, token: func(t *testing.T) string {
			return jwttest.Sign(t, jose.HS512, hs512Key, claims(nil))
		}},
		{name: "RS256", err: &AlgorithmError{Alg: "RS256"}, token: func(t *testing.T) string {
			return jwttest.Sign(t, jose.RS256, rsaKey, claims(nil))
		}},
		{name: "HS256 header on an unsigned token", err: ErrSignature, token: func(t *testing.T) string {
			return jwttest.Unsigned(t, map[string]any{"alg": "HS256"}, claims(nil))
		}},
		{name: "one part", err: ErrMalformed, token: func(*testing.T) string { return "garbage" }},
		{name: "two parts", err: ErrMalformed, token: func(*testing.T) string { return "eyJhbGciOiJIUzI1NiJ9.e30" }},
		{name: "four parts", err: ErrMalformed, token: func(t *testing.T) string { return hs256(nil)(t) + ".x" }},
		{name: "a header that is not base64url", err: ErrMalformed, token: func(*testing.T) string { return "***.e30.sig" }},
		{name: "a header that is not JSON", err: ErrMalformed, token: func(*testing.T) string {
			return base64.RawURLEncoding.EncodeToString([]byte("HS256")) + ".e30.sig"
		}},
		{name: "claims that are not JSON", err: ErrClaims, token: func(t *testing.T) string {
			signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte(testSecret)}, nil)
			if err != nil {
				t.Fatal(err)
			}
			jws, err := signer.Sign([]byte("not json"))
			if err != nil {
				t.Fatal(err)
			}
			s, err := jws.CompactSerialize()
			if err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{name: "longer than MaxTokenBytes", err: ErrMalformed, token: hs256(map[string]any{"name": strings.Repeat("n", MaxTokenBytes)})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := NewOpenWebUI(testSecret, 0)
			if err != nil {
				t.Fatal(err)
			}
			v.now = func() time.Time { return now }
			tok := tc.token(t)
			got, err := v.Verify(tok)
			if tc.err == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("Verify = %+v, want %+v", got, tc.want)
				}
				return
			}
			var wantAlg, gotAlg *AlgorithmError
			if errors.As(tc.err, &wantAlg) {
				if !errors.As(err, &gotAlg) || *gotAlg != *wantAlg {
					t.Fatalf("Verify: %v, want %v", err, tc.err)
				}
			} else if !errors.Is(err, tc.err) {
				t.Fatalf("Verify: %v, want %v", err, tc.err)
			}
			if got.ID != "" {
				t.Errorf("a refused token gave the identity %+v", got)
			}
			// The reason is for the caller: it never repeats the token or the secret.
			for _, secret := range []string{tok, testSecret, strings.SplitN(tok, ".", 2)[0]} {
				if secret != "" && strings.Contains(err.Error(), secret) {
					t.Errorf("the error %q holds the token or the secret", err)
				}
			}
		})
	}
}

func TestNewOpenWebUIRefusesWeakSettings(t *testing.T) {
	for _, tc := range []struct {
		name, secret string
		leeway       time.Duration
		err          string
	}{
		{"an empty secret", "", 0, "empty"},
		{"a secret shorter than HS256 takes", strings.Repeat("s", MinSecretBytes-1), 0, "shorter than 32 bytes"},
		{"a negative leeway", testSecret, -time.Second, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewOpenWebUI(tc.secret, tc.leeway)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("NewOpenWebUI: %v, want an error saying %q", err, tc.err)
			}
			if tc.secret != "" && strings.Contains(err.Error(), tc.secret) {
				t.Errorf("the error %q holds the secret", err)
			}
		})
	}
	v, err := NewOpenWebUI(strings.Repeat("s", MinSecretBytes), 0)
	if err != nil || v.leeway != DefaultLeeway {
		t.Errorf("NewOpenWebUI with a 32-byte secret: %v, leeway %v", err, v.leeway)
	}
}

// Package jwttest makes JWTs for tests: signed as Open WebUI signs the
// user tokens it forwards, signed otherwise, or forged without a
// signature.
package jwttest

import (
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Sign returns a compact JWT of claims, typed JWT, signed with alg and
// key.
func Sign(t testing.TB, alg jose.SignatureAlgorithm, key any, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Unsigned returns a token of header and claims with an empty signature,
// as forged with "alg": "none".
func Unsigned(t testing.TB, header, claims map[string]any) string {
	t.Helper()
	part := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return part(header) + "." + part(claims) + "."
}

// OpenWebUIClaims are the claims Open WebUI mints for the user sub
// (backend utils/headers.py: sub, email, name, role, iss "open-webui",
// iat, exp 300 s later), issued at now, with changes applied: a nil value
// removes a claim.
func OpenWebUIClaims(sub string, now time.Time, changes map[string]any) map[string]any {
	c := map[string]any{"sub": sub, "email": sub + "@example.com", "name": "User " + sub, "role": "user",
		"iss": "open-webui", "iat": now.Unix(), "exp": now.Unix() + 300}
	for k, v := range changes {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

package oauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// assertionLifetime is how long a client assertion is valid.
const assertionLifetime = 5 * time.Minute

// assertionSigner signs private_key_jwt client assertions (RFC 7523 §2.2).
type assertionSigner struct {
	signer jose.Signer
}

// newAssertionSigner parses the PEM key. Its errors name the Config field
// and never quote the key.
func newAssertionSigner(pemText, alg string) (*assertionSigner, error) {
	key, err := parsePrivateKey([]byte(pemText))
	if err != nil {
		return nil, fmt.Errorf("oauth: PrivateKeyPEM: %w", err)
	}
	var want jose.SignatureAlgorithm
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return nil, errors.New("oauth: PrivateKeyPEM: RSA keys need at least 2048 bits")
		}
		want = jose.RS256
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return nil, errors.New("oauth: PrivateKeyPEM: ECDSA keys must be on P-256 (ES256)")
		}
		want = jose.ES256
	default:
		return nil, fmt.Errorf("oauth: PrivateKeyPEM: unsupported key type %T (want RSA or ECDSA P-256)", key)
	}
	if alg != "" && jose.SignatureAlgorithm(alg) != want {
		return nil, fmt.Errorf("oauth: SigningAlgorithm: %q does not fit the key in PrivateKeyPEM (it needs %s)", alg, want)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: want, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("oauth: PrivateKeyPEM: %w", err)
	}
	return &assertionSigner{signer: s}, nil
}

// parsePrivateKey reads the first private key block of a PEM text.
func parsePrivateKey(b []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("no PEM private key block")
		}
		switch block.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, errors.New("not a valid PKCS #8 private key")
			}
			s, ok := k.(crypto.Signer)
			if !ok {
				return nil, fmt.Errorf("unsupported key type %T", k)
			}
			return s, nil
		case "RSA PRIVATE KEY":
			k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
			if err != nil {
				return nil, errors.New("not a valid PKCS #1 RSA private key")
			}
			return k, nil
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(block.Bytes)
			if err != nil {
				return nil, errors.New("not a valid SEC 1 EC private key")
			}
			return k, nil
		}
		// Skip other blocks (EC PARAMETERS, certificates).
	}
}

// assertion returns a signed client assertion: iss and sub are the client
// ID, aud the authorization server's issuer identifier (as RFC 7523bis and
// the MCP client-credentials extension require), with a unique jti and a
// short expiry.
func (s *assertionSigner) assertion(clientID, issuer string, now time.Time) (string, error) {
	claims := jwt.Claims{
		Issuer:    clientID,
		Subject:   clientID,
		Audience:  jwt.Audience{issuer},
		IssuedAt:  jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now.Add(-30 * time.Second)),
		Expiry:    jwt.NewNumericDate(now.Add(assertionLifetime)),
		ID:        randomString(),
	}
	a, err := jwt.Signed(s.signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("signing the client assertion: %w", err)
	}
	return a, nil
}

// Package identity establishes who is calling from what a request carries,
// in plain Go: it checks the values an identity is made of, and verifies
// the signed token Open WebUI forwards with each request
// (X-OpenWebUI-User-Jwt). The Caddy handler decides which source applies
// and what a refusal looks like.
package identity

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
)

// Limits of an identity's values, in bytes.
const (
	// MaxIDBytes bounds the ID: what per-user sessions key on and, encoded,
	// put in paths.
	MaxIDBytes = 128
	// MaxFieldBytes bounds the email, the name, the role and each group.
	MaxFieldBytes = 256
	// MaxGroups bounds the number of groups.
	MaxGroups = 64
)

// Check reports why id cannot be a caller's identity: an empty ID, a value
// that is not valid UTF-8 or holds a control character (NUL, CR, LF, and
// the Unicode line and paragraph separators), an ID longer than MaxIDBytes,
// another value longer than MaxFieldBytes, an empty group or more than
// MaxGroups of them. The error names the value at fault, never what it
// holds. Anything else is acceptable: an identity is an opaque string, and
// what uses it encodes it for where it goes (a path, an argument).
func Check(id bridge.Identity) error {
	if id.ID == "" {
		return errors.New("the id is empty")
	}
	if err := checkValue("the id", id.ID, MaxIDBytes); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{{"the email", id.Email}, {"the name", id.Name}, {"the role", id.Role}} {
		if err := checkValue(f.name, f.v, MaxFieldBytes); err != nil {
			return err
		}
	}
	if len(id.Groups) > MaxGroups {
		return fmt.Errorf("%d groups, more than %d", len(id.Groups), MaxGroups)
	}
	for i, g := range id.Groups {
		if g == "" {
			return fmt.Errorf("group %d is empty", i+1)
		}
		if err := checkValue(fmt.Sprintf("group %d", i+1), g, MaxFieldBytes); err != nil {
			return err
		}
	}
	return nil
}

// checkValue checks one value of an identity, named field ("the id"),
// against max bytes.
func checkValue(field, v string, max int) error {
	if len(v) > max {
		return fmt.Errorf("%s is %d bytes long, more than %d", field, len(v), max)
	}
	if !utf8.ValidString(v) {
		return fmt.Errorf("%s is not valid UTF-8", field)
	}
	for _, r := range v {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			return fmt.Errorf("%s holds a control character", field)
		}
	}
	return nil
}

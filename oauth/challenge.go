package oauth

import (
	"net/http"
	"strings"
)

// Challenge is one authentication challenge from a WWW-Authenticate
// header (RFC 7235 §4.1), such as
//
//	Bearer resource_metadata="https://mcp.example/.well-known/…", scope="read"
type Challenge struct {
	// Scheme is the authentication scheme as sent (compare it with
	// strings.EqualFold).
	Scheme string
	// Params are the auth-params, with names in lower case and quoted
	// strings unquoted. A parameter repeated keeps its first value.
	Params map[string]string
	// Token68 is the token68 form some schemes use instead of parameters.
	Token68 string
}

// ParseChallenges returns the challenges of every WWW-Authenticate header
// in h, in order. Malformed parts are skipped; what parses is kept.
func ParseChallenges(h http.Header) []Challenge {
	var out []Challenge
	for _, v := range h.Values("Www-Authenticate") {
		out = parseChallenges(v, out)
	}
	return out
}

// bearerChallenge is what this package reads from a Bearer challenge.
type bearerChallenge struct {
	status           int // the HTTP status it came with
	resourceMetadata string
	scope            []string
	err              string // the error parameter, e.g. insufficient_scope
}

// findBearer returns the first Bearer challenge in h.
func findBearer(h http.Header, status int) (bearerChallenge, bool) {
	for _, ch := range ParseChallenges(h) {
		if strings.EqualFold(ch.Scheme, "Bearer") {
			return bearerChallenge{
				status:           status,
				resourceMetadata: ch.Params["resource_metadata"],
				scope:            strings.Fields(ch.Params["scope"]),
				err:              ch.Params["error"],
			}, true
		}
	}
	return bearerChallenge{}, false
}

// parseChallenges parses one header value, appending to out.
//
// The grammar is ambiguous where several challenges share a header (commas
// separate both challenges and parameters); as in common practice, a token
// not followed by "=" starts a new challenge.
func parseChallenges(s string, out []Challenge) []Challenge {
	var cur *Challenge
	i := 0
	for {
		i = skipSpaceComma(s, i)
		if i >= len(s) {
			return out
		}
		tok, j := readToken(s, i)
		if tok == "" {
			// Not a token: skip to the next comma and resynchronize.
			i = skipPast(s, i)
			continue
		}
		k := skipSpace(s, j)
		if cur != nil && k < len(s) && s[k] == '=' {
			// name = value
			v, next, ok := readValue(s, skipSpace(s, k+1))
			if !ok {
				i = skipPast(s, k+1)
				continue
			}
			name := strings.ToLower(tok)
			if _, dup := cur.Params[name]; !dup {
				cur.Params[name] = v
			}
			i = next
			continue
		}
		// A new challenge: the token is its scheme.
		out = append(out, Challenge{Scheme: tok, Params: map[string]string{}})
		cur = &out[len(out)-1]
		i = k
		if k > j { // whitespace after the scheme: maybe a token68
			if t68, next, ok := readToken68(s, k); ok {
				cur.Token68 = t68
				i = next
			}
		}
	}
}

// isTchar reports whether b is a tchar (RFC 9110 §5.6.2).
func isTchar(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

func readToken(s string, i int) (string, int) {
	j := i
	for j < len(s) && isTchar(s[j]) {
		j++
	}
	return s[i:j], j
}

// readToken68 reads a token68 at i if one stands there alone, that is,
// followed by the end of the value or a comma.
func readToken68(s string, i int) (string, int, bool) {
	j := i
	for j < len(s) {
		b := s[j]
		if 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' ||
			strings.IndexByte("-._~+/", b) >= 0 {
			j++
			continue
		}
		break
	}
	if j == i {
		return "", i, false
	}
	for j < len(s) && s[j] == '=' {
		j++
	}
	k := skipSpace(s, j)
	if k < len(s) && s[k] != ',' {
		return "", i, false
	}
	return s[i:j], k, true
}

// readValue reads a token or a quoted-string at i.
func readValue(s string, i int) (string, int, bool) {
	if i < len(s) && s[i] == '"' {
		var b strings.Builder
		for j := i + 1; j < len(s); j++ {
			switch s[j] {
			case '\\':
				if j+1 < len(s) {
					j++
					b.WriteByte(s[j])
				}
			case '"':
				return b.String(), j + 1, true
			default:
				b.WriteByte(s[j])
			}
		}
		return "", len(s), false // unterminated
	}
	tok, j := readToken(s, i)
	if tok == "" {
		return "", i, false
	}
	return tok, j, true
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

func skipSpaceComma(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == ',') {
		i++
	}
	return i
}

// skipPast returns the index after the next comma at or after i that is
// not inside a quoted string, or len(s).
func skipPast(s string, i int) int {
	inQuote := false
	for ; i < len(s); i++ {
		switch {
		case inQuote && s[i] == '\\':
			i++
		case s[i] == '"':
			inQuote = !inQuote
		case !inQuote && s[i] == ',':
			return i + 1
		}
	}
	return len(s)
}

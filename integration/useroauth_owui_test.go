package integration

import (
	"fmt"
	"html"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
	"github.com/caddy-mcpo/caddy-mcpo/internal/identity/jwttest"
)

// Open WebUI's backend calls with the API key and the user's signed token;
// the person then opens the link in a browser that has neither, and the
// page names them from the token's claims.
func TestPerUserOAuth_OpenWebUIUsersLinkFromABrowserWithoutTheirToken(t *testing.T) {
	const apiKey = "owui-per-user-oauth-key-6f1d"
	t.Setenv("MCPO_TEST_OWUI_SECRET", owuiSecret)
	t.Setenv("MCPO_TEST_OWUI_KEY", apiKey)
	as := fixture.NewOAuthServer(t)
	startCaddyWith(t, []string{"storage file_system " + t.TempDir()}, fmt.Sprintf(`:%d {
	mcpo /tools {
		api_key {env.MCPO_TEST_OWUI_KEY}
		identity openwebui_jwt {env.MCPO_TEST_OWUI_SECRET}
		server remote {
			url %s
			isolation user
			oauth {
				redirect_uri %s/tools/remote/oauth/callback
			}
		}
	}
}
`, httpPort, as.URL, base))
	call := func(user string) response {
		t.Helper()
		tok := jwttest.Sign(t, jose.HS256, []byte(owuiSecret), jwttest.OpenWebUIClaims(user, time.Now(), nil))
		return do(t, http.MethodPost, "/tools/remote/request_info", `{}`, "Authorization", "Bearer "+apiKey, "X-OpenWebUI-User-Jwt", tok)
	}

	link := authorizeLink(t, call("u-ana"), base)
	page := visit(t, browser(t, as, "ana@provider"), http.MethodGet, link, nil)
	for _, want := range []string{"User u-ana", "u-ana@example.com", "user ID u-ana", "remote"} {
		if !strings.Contains(html.UnescapeString(string(page.body)), want) {
			t.Errorf("the confirmation page does not name %q: %s", want, page)
		}
	}
	linkAccount(t, as, link, "ana@provider", "u-ana")
	eventually(t, waitLimit, "ana's session to list the tools", func() bool {
		return serverOf(t, "/tools", "remote").State == "ready"
	})
	if got := accountOfCall(t, as, call("u-ana")); got != "ana@provider" {
		t.Errorf("ana's call acted as %q", got)
	}
	authorizeLink(t, call("u-bo"), base)

	// The calls themselves still need the key and a valid token.
	if r := do(t, http.MethodPost, "/tools/remote/request_info", `{}`, "Authorization", "Bearer "+apiKey); r.status != http.StatusUnauthorized ||
		strings.Contains(string(r.body), "authorize") {
		t.Errorf("a call without a user's token: %s, want 401 without a link", r)
	}
	if r := visit(t, browser(t, as, "x"), http.MethodGet, base+"/tools/remote/oauth/authorize", nil); r.status != http.StatusBadRequest {
		t.Errorf("the authorize page without a ticket or a signed-in user: %s", r)
	}
}

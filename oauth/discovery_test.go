package oauth

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// TestDiscoveryOrder runs the whole flow against each metadata layout
// the MCP conformance suite uses, and asserts the exact sequence of
// metadata requests (which also proves the traps are never hit: the root
// PRM when a path-based one exists, the root AS metadata for an issuer
// with a path).
func TestDiscoveryOrder(t *testing.T) {
	tests := []struct {
		name string
		as   asOptions
		rs   rsOptions
		// want are the metadata requests, "<host> GET <path>".
		want []string
		// wantResource is the resource indicator sent; "" means the RS
		// URL.
		wantResource func(e *env) string
	}{
		{
			name: "PRM named by the challenge, RFC 8414 metadata at the root (metadata-default)",
			rs:   rsOptions{prm: "path", inChallenge: true},
			as:   asOptions{metadata: "oauth"},
			want: []string{
				"rs GET /.well-known/oauth-protected-resource/mcp",
				"as GET /.well-known/oauth-authorization-server",
			},
		},
		{
			name: "path-based PRM without challenge, OpenID configuration (metadata-var1)",
			rs:   rsOptions{prm: "path"},
			as:   asOptions{metadata: "oidc"},
			want: []string{
				"rs GET /.well-known/oauth-protected-resource/mcp",
				"as GET /.well-known/oauth-authorization-server",
				"as GET /.well-known/openid-configuration",
			},
		},
		{
			name: "root PRM after the path-based one, issuer with a path (metadata-var2)",
			rs:   rsOptions{prm: "root"},
			as:   asOptions{metadata: "oauth", issuerPath: "/tenant1"},
			want: []string{
				"rs GET /.well-known/oauth-protected-resource/mcp",
				"rs GET /.well-known/oauth-protected-resource",
				"as GET /.well-known/oauth-authorization-server/tenant1",
			},
			// The root PRM declares the origin: sent exactly as published,
			// without a slash added.
			wantResource: func(e *env) string { return e.rs.host.url() },
		},
		{
			name: "custom PRM from the challenge, OpenID configuration appended to the issuer path (metadata-var3)",
			rs:   rsOptions{prm: "custom", inChallenge: true},
			as:   asOptions{metadata: "oidc-append", issuerPath: "/tenant1"},
			want: []string{
				"rs GET /custom/prm.json",
				"as GET /.well-known/oauth-authorization-server/tenant1",
				"as GET /.well-known/openid-configuration/tenant1",
				"as GET /tenant1/.well-known/openid-configuration",
			},
		},
		{
			name: "OpenID configuration inserted before the issuer path",
			rs:   rsOptions{prm: "path", inChallenge: true},
			as:   asOptions{metadata: "oidc", issuerPath: "/tenant1"},
			want: []string{
				"rs GET /.well-known/oauth-protected-resource/mcp",
				"as GET /.well-known/oauth-authorization-server/tenant1",
				"as GET /.well-known/openid-configuration/tenant1",
			},
		},
		{
			name: "no PRM: 2025-03-26 metadata at the server's origin (oauth-metadata-backcompat)",
			rs:   rsOptions{prm: "none"},
			as:   asOptions{metadata: "oauth", endpointPrefix: "/oauth"},
			want: []string{
				"rs GET /.well-known/oauth-protected-resource/mcp",
				"rs GET /.well-known/oauth-protected-resource",
				"rs GET /.well-known/oauth-authorization-server",
			},
		},
		{
			name: "no PRM, no metadata: 2025-03-26 default endpoints (oauth-endpoint-fallback)",
			rs:   rsOptions{prm: "none"},
			as:   asOptions{metadata: "none"},
			want: []string{
				"rs GET /.well-known/oauth-protected-resource/mcp",
				"rs GET /.well-known/oauth-protected-resource",
				"rs GET /.well-known/oauth-authorization-server",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.as, tt.rs)
			c := e.client(nil)
			e.connect(c)
			if got := e.log.discovery(); !slices.Equal(got, tt.want) {
				t.Errorf("metadata requests:\n got  %q\n want %q", got, tt.want)
			}
			wantRes := e.rs.serverURL()
			if tt.wantResource != nil {
				wantRes = tt.wantResource(e)
			}
			if got := lastAuthorizeQuery(t, e.as).Get("resource"); got != wantRes {
				t.Errorf("resource on the authorization request = %q, want %q", got, wantRes)
			}
			for _, tr := range e.as.tokenRequests("") {
				if got := tr.form.Get("resource"); got != wantRes {
					t.Errorf("resource on the %s token request = %q, want %q", tr.form.Get("grant_type"), got, wantRes)
				}
			}
			if n := len(e.as.regs()); n != 1 {
				t.Errorf("%d registrations, want 1", n)
			}
			if st := c.Status(); st.State != StateAuthorized || st.Issuer != e.as.issuer {
				t.Errorf("status %+v, want authorized by %s", st, e.as.issuer)
			}
		})
	}
}

// TestDiscoveryRefusals covers the checks that stop a flow before any
// registration or authorization request is made.
func TestDiscoveryRefusals(t *testing.T) {
	tests := []struct {
		name string
		as   asOptions
		rs   rsOptions
		// resource, if set, overrides the resource the PRM publishes.
		resource func(e *env) string
		wantErr  error
	}{
		{
			name:    "PRM resource on another origin (resource-mismatch)",
			rs:      rsOptions{prm: "path", inChallenge: true, prmResource: "https://evil.example.com/mcp"},
			wantErr: errResourceMismatch,
		},
		{
			name:     "PRM resource for a sibling path",
			rs:       rsOptions{prm: "root"},
			resource: func(e *env) string { return e.rs.host.url() + "/mc" },
			wantErr:  errResourceMismatch,
		},
		{
			name:    "metadata issuer differs from the issuer (metadata-issuer-mismatch)",
			rs:      rsOptions{prm: "path", inChallenge: true},
			as:      asOptions{issuerOverride: "https://evil.example.com"},
			wantErr: errIssuerMismatch,
		},
		{
			name:    "no code_challenge_methods_supported (pkce-no-support)",
			rs:      rsOptions{prm: "path", inChallenge: true},
			as:      asOptions{noPKCE: true},
			wantErr: errPKCEUnsupported,
		},
		{
			name:    "PKCE without S256",
			rs:      rsOptions{prm: "path", inChallenge: true},
			as:      asOptions{pkceMethods: []string{"plain"}},
			wantErr: errPKCEUnsupported,
		},
		{
			name:    "nothing to register with",
			rs:      rsOptions{prm: "path", inChallenge: true},
			as:      asOptions{noRegistration: true},
			wantErr: errNoRegistration,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.as, tt.rs)
			if tt.resource != nil {
				e.rs.opt.prmResource = tt.resource(e) // before any request
			}
			c := e.client(nil)
			e.call(c, "")
			_, err := c.Authorize(context.Background())
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Authorize error = %v, want %v", err, tt.wantErr)
			}
			if n := len(e.as.regs()); n != 0 {
				t.Errorf("%d registrations after a refusal", n)
			}
			if n := len(e.as.authRequests()); n != 0 {
				t.Errorf("%d authorization requests after a refusal", n)
			}
			st := c.Status()
			if st.State != StateNeedsAuth || !strings.Contains(st.LastError, tt.wantErr.Error()) {
				t.Errorf("status %+v: want needs_auth with the error", st)
			}
		})
	}
}

func TestResourceMatches(t *testing.T) {
	server, _ := url.Parse("https://MCP.example.com:8443/api/mcp")
	tests := []struct {
		resource string
		want     bool
	}{
		{"https://mcp.example.com:8443/api/mcp", true},
		{"https://mcp.example.com:8443/api/mcp/", true},
		{"HTTPS://MCP.EXAMPLE.COM:8443/api/mcp", true},
		{"https://mcp.example.com:8443", true},
		{"https://mcp.example.com:8443/", true},
		{"https://mcp.example.com:8443/api", true},
		{"https://mcp.example.com:8443/ap", false},
		{"https://mcp.example.com:8443/api/mcp/tools", false},
		{"https://mcp.example.com:8443/api/mcpx", false},
		{"https://mcp.example.com/api/mcp", false},
		{"http://mcp.example.com:8443/api/mcp", false},
		{"https://evil.example.com:8443/api/mcp", false},
		{"https://mcp.example.com:8443/api/mcp#frag", false},
		{"/api/mcp", false},
		{"https://user@mcp.example.com:8443/api/mcp", false},
	}
	for _, tt := range tests {
		if got := resourceMatches(tt.resource, server); got != tt.want {
			t.Errorf("resourceMatches(%q) = %v, want %v", tt.resource, got, tt.want)
		}
	}
}

func TestCanonicalURL(t *testing.T) {
	for in, want := range map[string]string{
		"HTTPS://MCP.Example.COM/Mcp/#x": "https://mcp.example.com/Mcp",
		"http://127.0.0.1:8080/mcp":      "http://127.0.0.1:8080/mcp",
		"https://a.example/":             "https://a.example",
		"https://a.example/mcp?tenant=1": "https://a.example/mcp?tenant=1",
	} {
		u, _ := url.Parse(in)
		if got := canonicalURL(u); got != want {
			t.Errorf("canonicalURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWellKnownURLs(t *testing.T) {
	u, _ := url.Parse("https://mcp.example/a/mcp/")
	if got, want := prmWellKnown(u), []string{
		"https://mcp.example/.well-known/oauth-protected-resource/a/mcp",
		"https://mcp.example/.well-known/oauth-protected-resource",
	}; !slices.Equal(got, want) {
		t.Errorf("prmWellKnown = %q, want %q", got, want)
	}
	u, _ = url.Parse("https://mcp.example/")
	if got, want := prmWellKnown(u), []string{"https://mcp.example/.well-known/oauth-protected-resource"}; !slices.Equal(got, want) {
		t.Errorf("prmWellKnown(root) = %q, want %q", got, want)
	}
	u, _ = url.Parse("https://as.example/t1/")
	if got, want := asWellKnown(u), []string{
		"https://as.example/.well-known/oauth-authorization-server/t1",
		"https://as.example/.well-known/openid-configuration/t1",
		"https://as.example/t1/.well-known/openid-configuration",
	}; !slices.Equal(got, want) {
		t.Errorf("asWellKnown = %q, want %q", got, want)
	}
}

func TestCheckSecureURL(t *testing.T) {
	for u, ok := range map[string]bool{
		"https://as.example/token":  true,
		"http://127.0.0.1:9/token":  true,
		"http://localhost/token":    true,
		"http://[::1]:80/token":     true,
		"http://as.example/token":   false,
		"ftp://as.example/token":    false,
		"/token":                    false,
		"http://127.0.0.1.nip.io/x": false,
	} {
		if err := checkSecureURL(u); (err == nil) != ok {
			t.Errorf("checkSecureURL(%q) = %v, want ok=%v", u, err, ok)
		}
	}
}

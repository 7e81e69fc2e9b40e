package swaggerui

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// serve runs Serve on a request for sub (the path is cosmetic: Serve only
// looks at sub) with the given headers.
func serve(t *testing.T, method, sub, title string, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, "/some/nested/base/docs"+sub, nil)
	for k, v := range header {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	Serve(w, r, sub, title)
	return w
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("gzip.NewReader: %v", err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("reading gzip body: %v", err)
	}
	return out
}

func TestPageEscapesTitleAndSetsSecurityHeaders(t *testing.T) {
	w := serve(t, http.MethodGet, "", `Tools & <script>alert("x")</script>`, nil)
	if w.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", w.Code)
	}
	body := w.Body.String()
	const wantTitle = `<title>Tools &amp; &lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;</title>`
	if !strings.Contains(body, wantTitle) {
		t.Errorf("page does not contain %s:\n%s", wantTitle, body)
	}
	if strings.Contains(body, "<script>") {
		t.Errorf("page has an inline <script>:\n%s", body)
	}
	for k, want := range map[string]string{
		"Content-Type":            "text/html; charset=utf-8",
		"Cache-Control":           "no-cache",
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": contentSecurityPolicy,
	} {
		if got := w.Header().Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	csp := w.Header().Get("Content-Security-Policy")
	for _, bad := range []string{"unsafe-eval", "http:", "https:", "*"} {
		if strings.Contains(csp, bad) {
			t.Errorf("CSP %q allows %q", csp, bad)
		}
	}
}

func TestPageReferencesOnlyRelativeURLs(t *testing.T) {
	body := serve(t, http.MethodGet, "", "API", nil).Body.String()
	for _, ref := range []string{
		`href="docs/swagger-ui.css"`,
		`src="docs/swagger-ui-bundle.js"`,
		`src="docs/swagger-initializer.js"`,
	} {
		if !strings.Contains(body, ref) {
			t.Errorf("page lacks %s", ref)
		}
	}
	// No absolute or scheme-relative URL anywhere, and every src/href is
	// one of the three assets above.
	for _, s := range []string{"http://", "https://", "//", `="/`} {
		if strings.Contains(body, s) {
			t.Errorf("page contains %q:\n%s", s, body)
		}
	}
	refs := regexp.MustCompile(`(?:src|href)="([^"]*)"`).FindAllStringSubmatch(body, -1)
	if len(refs) != 3 {
		t.Errorf("page has %d src/href attributes, want 3: %q", len(refs), refs)
	}
	for _, m := range refs {
		if !strings.HasPrefix(m[1], "docs/") {
			t.Errorf("reference %q is not below docs/", m[1])
		}
	}
}

func TestInitializerLoadsRelativeDocumentWithoutStandalonePreset(t *testing.T) {
	body := serve(t, http.MethodGet, "/swagger-initializer.js", "", nil).Body.String()
	for _, want := range []string{
		`new URL("openapi.json", document.baseURI).href`,
		`dom_id: "#swagger-ui"`,
		`layout: "BaseLayout"`,
		`SwaggerUIBundle.presets.apis`,
		`deepLinking: true`,
		`validatorUrl: null`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("initializer lacks %s:\n%s", want, body)
		}
	}
	for _, bad := range []string{"StandalonePreset", "http://", "https://", "//"} {
		if strings.Contains(body, bad) {
			t.Errorf("initializer contains %q", bad)
		}
	}
}

func TestAssetsAreServedWithTheNegotiatedEncoding(t *testing.T) {
	cases := []struct {
		name           string
		sub            string
		acceptEncoding string
		wantGzip       bool
		contentType    string
		wantPrefix     string
	}{
		{"bundle gzipped for a browser", "/swagger-ui-bundle.js", "gzip, deflate, br, zstd", true, "text/javascript; charset=utf-8", "/*!"},
		{"bundle gzipped for bare gzip", "/swagger-ui-bundle.js", "gzip", true, "text/javascript; charset=utf-8", "/*!"},
		{"bundle gzipped for x-gzip", "/swagger-ui-bundle.js", "x-gzip", true, "text/javascript; charset=utf-8", "/*!"},
		{"bundle gzipped for wildcard", "/swagger-ui-bundle.js", "*", true, "text/javascript; charset=utf-8", "/*!"},
		{"bundle gzipped for GZIP with q", "/swagger-ui-bundle.js", "br;q=1.0, GZIP ; q=0.5", true, "text/javascript; charset=utf-8", "/*!"},
		{"bundle plain without Accept-Encoding", "/swagger-ui-bundle.js", "", false, "text/javascript; charset=utf-8", "/*!"},
		{"bundle plain for identity", "/swagger-ui-bundle.js", "identity", false, "text/javascript; charset=utf-8", "/*!"},
		{"bundle plain for br only", "/swagger-ui-bundle.js", "br", false, "text/javascript; charset=utf-8", "/*!"},
		{"bundle plain for gzip;q=0", "/swagger-ui-bundle.js", "gzip;q=0, identity", false, "text/javascript; charset=utf-8", "/*!"},
		{"bundle plain for gzip;q=0.000", "/swagger-ui-bundle.js", "gzip;q=0.000", false, "text/javascript; charset=utf-8", "/*!"},
		{"bundle plain for gzip;q=0 despite wildcard", "/swagger-ui-bundle.js", "*, gzip;q=0", false, "text/javascript; charset=utf-8", "/*!"},
		{"bundle plain for wildcard;q=0", "/swagger-ui-bundle.js", "*;q=0", false, "text/javascript; charset=utf-8", "/*!"},
		{"bundle plain for malformed q", "/swagger-ui-bundle.js", "gzip;q=high", false, "text/javascript; charset=utf-8", "/*!"},
		{"bundle plain for gzip-like coding", "/swagger-ui-bundle.js", "gzipx", false, "text/javascript; charset=utf-8", "/*!"},
		{"css gzipped for a browser", "/swagger-ui.css", "gzip, deflate, br", true, "text/css; charset=utf-8", ".swagger-ui{"},
		{"css plain without Accept-Encoding", "/swagger-ui.css", "", false, "text/css; charset=utf-8", ".swagger-ui{"},
		{"css plain for gzip;q=0", "/swagger-ui.css", "gzip;q=0", false, "text/css; charset=utf-8", ".swagger-ui{"},
		{"initializer plain even for a browser", "/swagger-initializer.js", "gzip, deflate, br", false, "text/javascript; charset=utf-8", `"use strict";`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{}
			if tc.acceptEncoding != "" {
				h["Accept-Encoding"] = tc.acceptEncoding
			}
			w := serve(t, http.MethodGet, tc.sub, "", h)
			if w.Code != http.StatusOK {
				t.Fatalf("status = %d, want 200", w.Code)
			}
			hdr := w.Header()
			for k, want := range map[string]string{
				"Content-Type":           tc.contentType,
				"Vary":                   "Accept-Encoding",
				"Cache-Control":          "public, max-age=86400",
				"X-Content-Type-Options": "nosniff",
			} {
				if got := hdr.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			if tag := hdr.Get("ETag"); !regexp.MustCompile(`^"[0-9a-f]{32}(-gz)?"$`).MatchString(tag) {
				t.Errorf("ETag %q is not a strong entity tag", tag)
			}
			if got := hdr.Get("Content-Length"); got != strconv.Itoa(w.Body.Len()) {
				t.Errorf("Content-Length = %s, body has %d bytes", got, w.Body.Len())
			}
			body := w.Body.Bytes()
			if tc.wantGzip {
				if got := hdr.Get("Content-Encoding"); got != "gzip" {
					t.Fatalf("Content-Encoding = %q, want gzip", got)
				}
				body = gunzip(t, body)
			} else if got := hdr.Get("Content-Encoding"); got != "" {
				t.Fatalf("Content-Encoding = %q, want none", got)
			}
			if len(body) < 100 {
				t.Fatalf("content is only %d bytes", len(body))
			}
			if !bytes.HasPrefix(body, []byte(tc.wantPrefix)) {
				t.Errorf("content starts with %q, want prefix %q", body[:40], tc.wantPrefix)
			}
		})
	}
}

func TestGzipAndIdentityVariantsHaveTheSameContentAndDifferentETags(t *testing.T) {
	for _, sub := range []string{"/swagger-ui-bundle.js", "/swagger-ui.css"} {
		t.Run(sub, func(t *testing.T) {
			gz := serve(t, http.MethodGet, sub, "", map[string]string{"Accept-Encoding": "gzip"})
			plain := serve(t, http.MethodGet, sub, "", nil)
			if !bytes.Equal(gunzip(t, gz.Body.Bytes()), plain.Body.Bytes()) {
				t.Error("gzip and identity variants differ in content")
			}
			if a, b := gz.Header().Get("ETag"), plain.Header().Get("ETag"); a == b {
				t.Errorf("both variants have ETag %s", a)
			}
			again := serve(t, http.MethodGet, sub, "", map[string]string{"Accept-Encoding": "gzip"})
			if a, b := gz.Header().Get("ETag"), again.Header().Get("ETag"); a != b {
				t.Errorf("ETag changed between requests: %s, %s", a, b)
			}
		})
	}
}

func TestIfNoneMatchGetsNotModified(t *testing.T) {
	etagOf := func(sub, ae string) string {
		h := map[string]string{}
		if ae != "" {
			h["Accept-Encoding"] = ae
		}
		return serve(t, http.MethodGet, sub, "", h).Header().Get("ETag")
	}
	bundleGz := etagOf("/swagger-ui-bundle.js", "gzip")
	bundlePlain := etagOf("/swagger-ui-bundle.js", "")
	cssGz := etagOf("/swagger-ui.css", "gzip")
	initTag := etagOf("/swagger-initializer.js", "")

	cases := []struct {
		name        string
		method      string
		sub         string
		ae          string
		ifNoneMatch string
		want        int
	}{
		{"same gzip tag", http.MethodGet, "/swagger-ui-bundle.js", "gzip", bundleGz, http.StatusNotModified},
		{"same identity tag", http.MethodGet, "/swagger-ui-bundle.js", "", bundlePlain, http.StatusNotModified},
		{"tag in a list", http.MethodGet, "/swagger-ui-bundle.js", "gzip", `"other", ` + bundleGz + `, "more"`, http.StatusNotModified},
		{"weak form of the tag", http.MethodGet, "/swagger-ui-bundle.js", "gzip", "W/" + bundleGz, http.StatusNotModified},
		{"star", http.MethodGet, "/swagger-ui.css", "gzip", "*", http.StatusNotModified},
		{"css tag on HEAD", http.MethodHead, "/swagger-ui.css", "gzip", cssGz, http.StatusNotModified},
		{"initializer tag", http.MethodGet, "/swagger-initializer.js", "", initTag, http.StatusNotModified},
		{"gzip tag on identity request", http.MethodGet, "/swagger-ui-bundle.js", "gzip;q=0", bundleGz, http.StatusOK},
		{"identity tag on gzip request", http.MethodGet, "/swagger-ui-bundle.js", "gzip", bundlePlain, http.StatusOK},
		{"other asset's tag", http.MethodGet, "/swagger-ui.css", "gzip", bundleGz, http.StatusOK},
		{"unquoted tag", http.MethodGet, "/swagger-ui-bundle.js", "gzip", strings.Trim(bundleGz, `"`), http.StatusOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{"If-None-Match": tc.ifNoneMatch}
			if tc.ae != "" {
				h["Accept-Encoding"] = tc.ae
			}
			w := serve(t, tc.method, tc.sub, "", h)
			if w.Code != tc.want {
				t.Fatalf("status = %d, want %d", w.Code, tc.want)
			}
			if tc.want == http.StatusNotModified {
				if w.Body.Len() != 0 {
					t.Errorf("304 has a %d-byte body", w.Body.Len())
				}
				for _, k := range []string{"ETag", "Vary", "Cache-Control"} {
					if w.Header().Get(k) == "" {
						t.Errorf("304 lacks %s", k)
					}
				}
			}
		})
	}
}

func TestHeadHasHeadersButNoBody(t *testing.T) {
	cases := []struct {
		name string
		sub  string
		ae   string
		code int
	}{
		{"page", "", "", http.StatusOK},
		{"gzipped bundle", "/swagger-ui-bundle.js", "gzip", http.StatusOK},
		{"plain bundle", "/swagger-ui-bundle.js", "", http.StatusOK},
		{"plain css", "/swagger-ui.css", "", http.StatusOK},
		{"initializer", "/swagger-initializer.js", "", http.StatusOK},
		{"unknown", "/nope", "", http.StatusNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{}
			if tc.ae != "" {
				h["Accept-Encoding"] = tc.ae
			}
			head := serve(t, http.MethodHead, tc.sub, "T", h)
			get := serve(t, http.MethodGet, tc.sub, "T", h)
			if head.Code != tc.code {
				t.Fatalf("status = %d, want %d", head.Code, tc.code)
			}
			if head.Body.Len() != 0 {
				t.Errorf("HEAD has a %d-byte body", head.Body.Len())
			}
			for _, k := range []string{"Content-Type", "Content-Length", "Content-Encoding", "ETag"} {
				if a, b := head.Header().Get(k), get.Header().Get(k); a != b {
					t.Errorf("%s: HEAD %q, GET %q", k, a, b)
				}
			}
			if head.Header().Get("Content-Length") != strconv.Itoa(get.Body.Len()) {
				t.Errorf("HEAD Content-Length %s, GET body %d bytes", head.Header().Get("Content-Length"), get.Body.Len())
			}
		})
	}
}

func TestUnknownSubPathIsJSONNotFound(t *testing.T) {
	for _, sub := range []string{
		"/index.html",
		"/swagger-ui-standalone-preset.js",
		"/swagger-ui.css.map",
		"/swagger-ui.css/",
		"//swagger-ui.css",
		"/../openapi.json",
		"/SWAGGER-UI.CSS",
		"x",
	} {
		t.Run(sub, func(t *testing.T) {
			w := serve(t, http.MethodGet, sub, "", map[string]string{"Accept-Encoding": "gzip"})
			if w.Code != http.StatusNotFound {
				t.Fatalf("status = %d, want 404", w.Code)
			}
			if got := w.Header().Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q", got)
			}
			var body struct {
				Detail struct {
					Message string `json:"message"`
				} `json:"detail"`
			}
			dec := json.NewDecoder(w.Body)
			dec.DisallowUnknownFields()
			if err := dec.Decode(&body); err != nil {
				t.Fatalf("body is not {\"detail\":{\"message\":...}}: %v", err)
			}
			if body.Detail.Message == "" {
				t.Error("empty message")
			}
		})
	}
}

func TestTrailingSlashRedirectsToRelativeDocs(t *testing.T) {
	cases := []struct {
		name, target, want string
	}{
		{"plain", "/a/b/docs/", "../docs"},
		{"query kept", "/a/b/docs/?x=1", "../docs?x=1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tc.target, nil)
			w := httptest.NewRecorder()
			Serve(w, r, "/", "T")
			if w.Code != http.StatusMovedPermanently {
				t.Fatalf("status = %d, want 301", w.Code)
			}
			if got := w.Header().Get("Location"); got != tc.want {
				t.Errorf("Location = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBundleIsSwaggerUIOfThePinnedVersion(t *testing.T) {
	raw, err := os.ReadFile("dist/VERSION")
	if err != nil {
		t.Fatal(err)
	}
	v := strings.TrimSpace(string(raw))
	if !regexp.MustCompile(`^5\.\d+\.\d+$`).MatchString(v) {
		t.Fatalf("dist/VERSION = %q, want a 5.x.y release", v)
	}
	bundle := serve(t, http.MethodGet, "/swagger-ui-bundle.js", "", nil).Body.String()
	for _, want := range []string{
		`PACKAGE_VERSION:"` + v + `"`,
		"SwaggerUIBundle",
		"presets",
	} {
		if !strings.Contains(bundle, want) {
			t.Errorf("bundle lacks %q", want)
		}
	}
	script, err := os.ReadFile("update.sh")
	if err != nil {
		t.Fatal(err)
	}
	if pin := `PINNED_VERSION="` + v + `"`; !strings.Contains(string(script), pin) {
		t.Errorf("update.sh does not pin %s: dist/ and update.sh disagree", pin)
	}
}

func TestEmbeddedAssetsAreDeterministicGzip(t *testing.T) {
	for name, gz := range map[string][]byte{"bundle": bundleGz, "css": cssGz} {
		t.Run(name, func(t *testing.T) {
			zr, err := gzip.NewReader(bytes.NewReader(gz))
			if err != nil {
				t.Fatal(err)
			}
			if zr.Name != "" || !zr.ModTime.IsZero() {
				t.Errorf("gzip header has name %q, mtime %v; want neither (gzip -n)", zr.Name, zr.ModTime)
			}
		})
	}
}

func TestAcceptsGzip(t *testing.T) {
	cases := []struct {
		values []string
		want   bool
	}{
		{nil, false},
		{[]string{""}, false},
		{[]string{"gzip"}, true},
		{[]string{"deflate", "gzip"}, true},
		{[]string{"gzip;q=0"}, false},
		{[]string{"gzip; q=0.0"}, false},
		{[]string{"gzip;Q=0"}, false},
		{[]string{"gzip;q=0.001"}, true},
		{[]string{"gzip;q=1.5"}, false},
		{[]string{"gzip;q="}, false},
		{[]string{"gzip;level=1"}, true},
		{[]string{"*;q=0.1"}, true},
		{[]string{"*;q=0, gzip"}, true},
		{[]string{"identity"}, false},
	}
	for _, tc := range cases {
		if got := acceptsGzip(tc.values); got != tc.want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", tc.values, got, tc.want)
		}
	}
}

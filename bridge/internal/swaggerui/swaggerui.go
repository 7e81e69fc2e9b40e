package swaggerui

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// The files below are written by update.sh; see its header to change the
// Swagger UI version.
var (
	//go:embed dist/swagger-ui-bundle.js.gz
	bundleGz []byte
	//go:embed dist/swagger-ui.css.gz
	cssGz []byte
)

// initializerJS starts Swagger UI. It is a separate file rather than an
// inline script so that the page's Content-Security-Policy needs no
// 'unsafe-inline' for scripts. The document URL is resolved against the
// page's own URL, so it works whatever <base> is.
const initializerJS = `"use strict";
window.ui = SwaggerUIBundle({
  url: new URL("openapi.json", document.baseURI).href,
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  presets: [SwaggerUIBundle.presets.apis],
  deepLinking: true,
  validatorUrl: null,
  queryConfigEnabled: false
});
`

// contentSecurityPolicy is sent with the page. It allows exactly what
// Swagger UI needs and nothing from another origin:
//   - default-src 'none': anything not listed below is refused;
//   - script-src 'self': the bundle and the initializer, no inline script,
//     no eval;
//   - style-src 'self': the stylesheet; Swagger UI sets its dynamic styles
//     through the DOM, which CSP does not restrict, so no 'unsafe-inline';
//   - img-src 'self' data:: the stylesheet's icons are data: URLs;
//   - connect-src 'self': fetching openapi.json and "Try it out" requests;
//   - base-uri 'none' and form-action 'self': these do not fall back to
//     default-src, so they are closed explicitly.
const contentSecurityPolicy = "default-src 'none'; " +
	"script-src 'self'; " +
	"style-src 'self'; " +
	"img-src 'self' data:; " +
	"connect-src 'self'; " +
	"base-uri 'none'; " +
	"form-action 'self'"

// pageTemplate is the HTML page; %s is the already-escaped title. The asset
// URLs are relative to the page at "<base>/docs", so they resolve below
// "<base>/docs/".
const pageTemplate = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%s</title>
<link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/swagger-initializer.js"></script>
</body>
</html>
`

// Cache lifetime of the assets. Their URLs do not change with the Swagger UI
// version, so this is kept short enough for an upgrade to reach browsers
// within a day; the ETag makes revalidation cheap after that.
const assetCacheControl = "public, max-age=86400"

// Serve answers a GET or HEAD request for the Swagger UI of one OpenAPI document.
// sub is what follows ".../docs" in the request path: "" for the page itself,
// "/swagger-ui.css", "/swagger-ui-bundle.js", "/swagger-initializer.js" for assets,
// "/" for the page with a trailing slash (answer with a redirect to "../docs" so
// relative URLs keep working). Anything else is a 404 with a JSON body.
//
// title is the page's <title>; it is HTML-escaped here. The caller has
// already checked that the method is GET or HEAD; a HEAD request gets the
// same headers as a GET and no body.
//
// The page is sent with Cache-Control: no-cache and a strict
// Content-Security-Policy. Assets are sent gzipped when the request's
// Accept-Encoding allows it, with a strong ETag per encoding, honour
// If-None-Match, and may be cached for a day. Errors have a JSON body of the
// form {"detail":{"message":"..."}}.
func Serve(w http.ResponseWriter, r *http.Request, sub string, title string) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")

	switch sub {
	case "":
		servePage(w, r, title)
	case "/":
		// A relative Location, written by hand: http.Redirect would turn it
		// into an absolute path built from r.URL.Path, which is wrong when a
		// prefix was stripped before the request got here.
		loc := "../docs"
		if r.URL.RawQuery != "" {
			loc += "?" + r.URL.RawQuery
		}
		h.Set("Location", loc)
		w.WriteHeader(http.StatusMovedPermanently)
	case "/swagger-ui.css", "/swagger-ui-bundle.js", "/swagger-initializer.js":
		all, err := loadAssets()
		if err != nil {
			writeError(w, r, http.StatusInternalServerError, "Swagger UI assets are unavailable")
			return
		}
		serveAsset(w, r, all[sub])
	default:
		writeError(w, r, http.StatusNotFound, "Not Found")
	}
}

func servePage(w http.ResponseWriter, r *http.Request, title string) {
	body := fmt.Sprintf(pageTemplate, html.EscapeString(title))
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		io.WriteString(w, body)
	}
}

// asset is one file below docs/, with everything that can be known about it
// computed once.
type asset struct {
	contentType string
	// gz is the gzip-encoded content, or nil when the asset is only kept
	// uncompressed.
	gz     []byte
	gzETag string
	// plain is the uncompressed content when it is kept in memory (small
	// assets); when nil, the content is decompressed from gz per request.
	plain     []byte
	plainLen  int64
	plainETag string
}

// loadAssets hashes the embedded assets and measures their decompressed
// size, once; the work is done on first use rather than at program start, so
// a binary that never serves the docs never pays for it.
var loadAssets = sync.OnceValues(func() (map[string]*asset, error) {
	bundle, err := gzAsset("text/javascript; charset=utf-8", bundleGz)
	if err != nil {
		return nil, fmt.Errorf("swagger-ui-bundle.js: %w", err)
	}
	css, err := gzAsset("text/css; charset=utf-8", cssGz)
	if err != nil {
		return nil, fmt.Errorf("swagger-ui.css: %w", err)
	}
	return map[string]*asset{
		"/swagger-ui-bundle.js":   bundle,
		"/swagger-ui.css":         css,
		"/swagger-initializer.js": plainAsset("text/javascript; charset=utf-8", []byte(initializerJS)),
	}, nil
})

// gzAsset describes an asset embedded gzipped. The decompressed content is
// streamed through the hash and dropped, not kept: clients that cannot take
// gzip are rare, and keeping it would double the memory the assets use.
func gzAsset(contentType string, gz []byte) (*asset, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	hp := sha256.New()
	n, err := io.Copy(hp, zr) // reading to EOF also checks the gzip CRC and size
	if err != nil {
		return nil, err
	}
	if err := zr.Close(); err != nil {
		return nil, err
	}
	hz := sha256.Sum256(gz)
	return &asset{
		contentType: contentType,
		gz:          gz,
		gzETag:      etag(hz[:], "gz"),
		plainLen:    n,
		plainETag:   etag(hp.Sum(nil), ""),
	}, nil
}

// plainAsset describes a small asset kept uncompressed only.
func plainAsset(contentType string, b []byte) *asset {
	sum := sha256.Sum256(b)
	return &asset{
		contentType: contentType,
		plain:       b,
		plainLen:    int64(len(b)),
		plainETag:   etag(sum[:], ""),
	}
}

// etag formats a strong entity tag from a content hash. The suffix keeps the
// tags of two encodings of the same content apart even if, in some unlikely
// future, their hashes were taken over the same bytes.
func etag(sum []byte, suffix string) string {
	t := hex.EncodeToString(sum[:16])
	if suffix != "" {
		t += "-" + suffix
	}
	return `"` + t + `"`
}

func serveAsset(w http.ResponseWriter, r *http.Request, a *asset) {
	h := w.Header()
	h.Set("Vary", "Accept-Encoding")
	h.Set("Cache-Control", assetCacheControl)

	useGzip := a.gz != nil && acceptsGzip(r.Header.Values("Accept-Encoding"))
	tag := a.plainETag
	if useGzip {
		tag = a.gzETag
	}
	h.Set("ETag", tag)

	if etagMatches(r.Header.Values("If-None-Match"), tag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}

	h.Set("Content-Type", a.contentType)
	if useGzip {
		h.Set("Content-Encoding", "gzip")
		h.Set("Content-Length", strconv.Itoa(len(a.gz)))
	} else {
		h.Set("Content-Length", strconv.FormatInt(a.plainLen, 10))
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}

	switch {
	case useGzip:
		w.Write(a.gz)
	case a.plain != nil:
		w.Write(a.plain)
	default:
		// The embedded bytes were checked in loadAssets, so this cannot fail
		// but for a client that went away; the status is already sent.
		zr, err := gzip.NewReader(bytes.NewReader(a.gz))
		if err != nil {
			return
		}
		io.Copy(w, zr)
	}
}

// acceptsGzip reports whether Accept-Encoding field values allow a gzip
// response: "gzip" (or its alias "x-gzip") with a non-zero q, or failing
// those a non-zero "*". A missing header gets the identity encoding, which
// every client understands. A malformed q value counts as a refusal, as
// the identity encoding is always a safe answer.
func acceptsGzip(values []string) bool {
	gzipQ, starQ := -1.0, -1.0
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(part, ";")
			coding = strings.ToLower(strings.TrimSpace(coding))
			if coding != "gzip" && coding != "x-gzip" && coding != "*" {
				continue
			}
			q := qValue(params)
			if coding == "*" {
				starQ = max(starQ, q)
			} else {
				gzipQ = max(gzipQ, q)
			}
		}
	}
	if gzipQ >= 0 {
		return gzipQ > 0
	}
	return starQ > 0
}

// qValue returns the weight in an Accept-Encoding element's parameters
// (the part after the first ";"): 1 when absent, 0 when malformed.
func qValue(params string) float64 {
	for p := range strings.SplitSeq(params, ";") {
		name, value, ok := strings.Cut(p, "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "q") {
			continue
		}
		q, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil || q < 0 || q > 1 {
			return 0
		}
		return q
	}
	return 1
}

// etagMatches reports whether If-None-Match field values match tag. As
// RFC 9110 requires for If-None-Match, the comparison is weak: W/"x"
// matches "x". "*" matches any current representation.
func etagMatches(values []string, tag string) bool {
	for _, v := range values {
		s := v
		for {
			s = strings.TrimLeft(s, " \t,")
			if s == "" {
				break
			}
			if s[0] == '*' {
				return true
			}
			s = strings.TrimPrefix(s, "W/")
			if s == "" || s[0] != '"' {
				break // malformed: ignore the rest of this field value
			}
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				break
			}
			if s[:end+2] == tag {
				return true
			}
			s = s[end+2:]
		}
	}
	return false
}

// writeError sends {"detail":{"message":msg}} with the given status.
func writeError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	type detail struct {
		Message string `json:"message"`
	}
	body, _ := json.Marshal(struct {
		Detail detail `json:"detail"`
	}{detail{msg}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

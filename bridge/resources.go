package bridge

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/yosida95/uritemplate/v3"
	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/openapi"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/schema"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// A server's resources, prompts and completions are served beside its
// tools, at its base:
//
//	GET  resources                    the resources and resource templates
//	GET  resources/read?uri=...       a resource's content
//	GET  resources/read?template=...&<variable>=...
//	                                  a resource of a template, expanded
//	GET  prompts                      the prompts
//	POST prompts/<name>               a prompt's messages, of its arguments
//	POST complete                     completions of an argument
//
// A tool may take the segment "resources" or "prompts" (POST calls it,
// GET is the page) but not "complete", which is reserved. URIs are opaque:
// the proxy passes them to the server and never fetches one itself.

// ResourceCaller is what the bridge needs of a server to serve its
// resources, prompts and completions; *upstream.Upstream implements it. A
// server whose Caller does not implement it serves none (501).
type ResourceCaller interface {
	// ListResources and ListResourceTemplates return every resource and
	// resource template the server lists, as it sent them.
	ListResources(ctx context.Context) ([]json.RawMessage, error)
	ListResourceTemplates(ctx context.Context) ([]json.RawMessage, error)
	// ReadResource returns the server's resources/read result.
	ReadResource(ctx context.Context, uri string) (json.RawMessage, error)
	// ListPrompts returns every prompt the server lists, as it sent them.
	ListPrompts(ctx context.Context) ([]json.RawMessage, error)
	// GetPrompt returns the server's prompts/get result.
	GetPrompt(ctx context.Context, name string, args map[string]string) (json.RawMessage, error)
	// Complete returns the server's completion/complete result.
	Complete(ctx context.Context, c upstream.Completion) (json.RawMessage, error)
}

// UnsupportedError is a ResourceCaller's refusal of a request it cannot
// serve for this server: the bridge answers 501 with its message.
type UnsupportedError struct{ Message string }

func (e *UnsupportedError) Error() string { return e.Message }

// codeResourceNotFound is the JSON-RPC error of resources/read for an
// unknown URI.
const codeResourceNotFound = -32002

// endpointsOf lists the endpoints a server serves of a listing: those of
// the capabilities it declared that its configuration leaves on, when its
// Caller serves them. namer hands out their operationIds, after the
// tools'.
func (s *serverState) endpointsOf(set *upstream.ToolSet, namer *openapi.Namer) []openapi.Endpoint {
	if _, ok := s.cfg.Upstream.(ResourceCaller); !ok {
		return nil
	}
	var kinds []openapi.EndpointKind
	if set.Server.Resources && !s.cfg.DisableResources {
		kinds = append(kinds, openapi.ListResources, openapi.ReadResource)
	}
	if set.Server.Prompts && !s.cfg.DisablePrompts {
		kinds = append(kinds, openapi.ListPrompts, openapi.GetPrompt)
	}
	if set.Server.Completions && len(kinds) > 0 {
		kinds = append(kinds, openapi.Complete)
	}
	eps := make([]openapi.Endpoint, len(kinds))
	for i, k := range kinds {
		eps[i] = openapi.Endpoint{Kind: k, Path: k.EndpointPath(), OperationID: namer.OperationID(k.EndpointName()), Server: s.cfg.Name}
	}
	return eps
}

// serves reports whether view v serves endpoint k.
func (v *view) serves(k openapi.EndpointKind) bool {
	return slices.ContainsFunc(v.endpoints, func(ep openapi.Endpoint) bool { return ep.Kind == k })
}

// aggregateEndpoints lists the endpoints of every server of views (nil
// for a server not ready) for the document covering them all: with
// grants, of the servers the caller is granted a tool of.
func (b *Bridge) aggregateEndpoints(views []*view, grants []*granted, namer *openapi.Namer) []openapi.Endpoint {
	var eps []openapi.Endpoint
	for i, s := range b.cfg.Servers {
		if views[i] == nil || (grants != nil && grants[i].n == 0) {
			continue
		}
		for _, ep := range views[i].endpoints {
			eps = append(eps, openapi.Endpoint{Kind: ep.Kind, Path: "/" + s.Name + ep.Kind.EndpointPath(),
				OperationID: namer.OperationID(s.Name, ep.Kind.EndpointName()), Server: s.Name})
		}
	}
	return eps
}

// endpoint returns the server's ResourceCaller when it serves endpoint k
// to the caller of r, else the answer saying why not (see endpointOf).
// base is the server's.
func (b *Bridge) endpoint(w http.ResponseWriter, r *http.Request, st *serverState, k openapi.EndpointKind, base string) (ResourceCaller, *httpError) {
	rc, e := b.endpointOf(r.Context(), st, k, base)
	if b.policy != nil && (e == nil || e.Status == http.StatusForbidden) {
		b.varyByCaller(w)
	}
	return rc, e
}

// endpointOf returns the server's ResourceCaller when it serves endpoint
// k to the caller of ctx, else the answer saying why not. With access
// rules, a caller granted any tool of a server may use its resources,
// prompts and completions. base is the server's.
func (b *Bridge) endpointOf(ctx context.Context, st *serverState, k openapi.EndpointKind, base string) (ResourceCaller, *httpError) {
	s := st.cfg
	v, err := st.current(b.log)
	if v == nil {
		return nil, serverDown(s, base, "", err)
	}
	what := "resources"
	switch k {
	case openapi.ListPrompts, openapi.GetPrompt:
		what = "prompts"
	case openapi.Complete:
		what = "completions"
	}
	rc, ok := s.Upstream.(ResourceCaller)
	switch {
	case !ok:
		return nil, &httpError{Status: http.StatusNotImplemented, Detail: errorDetail{Server: s.Name,
			Message: fmt.Sprintf("server %q does not serve %s over this proxy", s.Name, what)}}
	case !v.serves(k):
		msg := fmt.Sprintf("server %q has no %s: it does not declare the capability", s.Name, what)
		if (what == "resources" && s.DisableResources) || (what == "prompts" && s.DisablePrompts) {
			msg = fmt.Sprintf("server %q does not serve its %s here: they are turned off in the configuration", s.Name, what)
		}
		return nil, &httpError{Status: http.StatusNotFound, Detail: errorDetail{Server: s.Name, Message: msg}}
	}
	if b.policy != nil && b.policy.grantOf(ctx).of(st, v).n == 0 {
		return nil, &httpError{Status: http.StatusForbidden, Detail: errorDetail{Server: s.Name,
			Message: fmt.Sprintf("the %s of server %q are not granted to this caller", what, s.Name)}}
	}
	return rc, nil
}

// exchange runs one request to the server of the caller of ctx, what it
// does, under the server's concurrency cap and timeout, and returns the answer to a
// request that failed. name is what the request is about (a URI, a
// prompt), for the answer.
func (b *Bridge) exchange(ctx context.Context, st *serverState, base, what, name string, f func(ctx context.Context) error) *httpError {
	s := st.cfg
	caller := ctx
	release, busy := st.slot(caller, "", nil)
	if busy != nil {
		return busy
	}
	defer release()
	ctx, cancel := context.WithTimeout(caller, s.Timeout)
	defer cancel()
	start := time.Now()
	err := f(ctx)
	b.log.Debug("server request", zap.String("server", s.Name), zap.String("method", what), zap.String("name", name),
		zap.Duration("took", time.Since(start)), zap.Error(err))
	if err == nil {
		return nil
	}
	if caller.Err() != nil {
		return clientGone
	}
	var (
		unsupported *UnsupportedError
		rpc         *upstream.RPCError
	)
	if errors.As(err, &unsupported) {
		return &httpError{Status: http.StatusNotImplemented, Cause: err, Detail: errorDetail{Server: s.Name, Message: unsupported.Message}}
	}
	e := callFailed(ctx, s, base, what, err, s.Timeout)
	e.Detail.Tool = ""
	switch {
	case errors.As(err, &rpc) && rpc.Code == codeResourceNotFound:
		e.Status = http.StatusNotFound
	case e.Outcome == OutcomeTimeout:
		e.Detail.Message = fmt.Sprintf("server %q: %s did not answer within %s", s.Name, what, s.Timeout)
	case e.Outcome == OutcomeUpstreamError && e.Detail.Code == nil && e.Detail.Authorize == "" && !errors.As(err, new(*RefusedError)):
		e.Detail.Message = fmt.Sprintf("server %q: %s failed: %v", s.Name, what, err)
	}
	if e.Status >= 500 {
		b.log.Warn("server request failed", zap.String("server", s.Name), zap.String("method", what), zap.Int("status", e.Status), zap.Error(err))
	}
	return e
}

// serveResources lists the server's resources and resource templates.
func (b *Bridge) serveResources(w http.ResponseWriter, r *http.Request, p *page, base string) *httpError {
	rc, e := b.endpoint(w, r, p.server, openapi.ListResources, base)
	if e != nil {
		return e
	}
	var list struct {
		Resources []json.RawMessage `json:"resources"`
		Templates []json.RawMessage `json:"resourceTemplates"`
	}
	e = b.exchange(r.Context(), p.server, base, "resources/list", "", func(ctx context.Context) (err error) {
		if list.Resources, err = rc.ListResources(ctx); err != nil {
			return err
		}
		list.Templates, err = rc.ListResourceTemplates(ctx)
		return err
	})
	if e != nil {
		return e
	}
	list.Resources, list.Templates = nonNil(list.Resources), nonNil(list.Templates)
	return writeValue(w, r, list)
}

// servePrompts lists the server's prompts.
func (b *Bridge) servePrompts(w http.ResponseWriter, r *http.Request, p *page, base string) *httpError {
	rc, e := b.endpoint(w, r, p.server, openapi.ListPrompts, base)
	if e != nil {
		return e
	}
	var list struct {
		Prompts []json.RawMessage `json:"prompts"`
	}
	e = b.exchange(r.Context(), p.server, base, "prompts/list", "", func(ctx context.Context) (err error) {
		list.Prompts, err = rc.ListPrompts(ctx)
		return err
	})
	if e != nil {
		return e
	}
	list.Prompts = nonNil(list.Prompts)
	return writeValue(w, r, list)
}

func nonNil(l []json.RawMessage) []json.RawMessage {
	if l == nil {
		return []json.RawMessage{}
	}
	return l
}

// writeValue writes v as JSON, without a body for HEAD.
func writeValue(w http.ResponseWriter, r *http.Request, v any) *httpError {
	body, err := json.Marshal(v)
	if err != nil {
		return &httpError{Status: http.StatusBadGateway, Cause: err, Detail: errorDetail{Message: "the server's answer cannot be encoded: " + err.Error()}}
	}
	if r.Method == http.MethodHead {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		return nil
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

// serveReadResource reads a resource: by its URI, or by a template of the
// server's and the values of its variables.
func (b *Bridge) serveReadResource(w http.ResponseWriter, r *http.Request, p *page, base string) *httpError {
	s := p.server.cfg
	rc, e := b.endpoint(w, r, p.server, openapi.ReadResource, base)
	if e != nil {
		return e
	}
	q := r.URL.Query()
	uri, tmpl := q.Get("uri"), q.Get("template")
	switch {
	case q.Has("uri") && q.Has("template"):
		return invalidRead(s, "give either uri or template (with its variables), not both")
	case q.Has("template"):
		if uri, e = b.expand(r, p.server, rc, base, tmpl, q); e != nil {
			return e
		}
	case uri == "":
		return invalidRead(s, "give the resource's URI as the query parameter uri (see GET resources for the URIs), "+
			"or a resource template as template with its variables as further query parameters")
	}
	var raw json.RawMessage
	if e := b.exchange(r.Context(), p.server, base, "resources/read", uri, func(ctx context.Context) (err error) {
		raw, err = rc.ReadResource(ctx, uri)
		return err
	}); e != nil {
		if e != clientGone {
			e.Detail.Message += fmt.Sprintf(" (resource %q)", uri)
		}
		return e
	}
	if int64(len(raw)) > b.maxResourceBytes() {
		return resourceTooLarge(s, uri, b.maxResourceBytes())
	}
	return b.writeResource(w, r, s, uri, raw)
}

func invalidRead(s *ServerConfig, msg string) *httpError {
	return &httpError{Status: http.StatusUnprocessableEntity, Detail: errorDetail{Server: s.Name, Message: msg}}
}

// maxResourceBytes bounds a resource read: the mount's MaxBodyBytes, as
// the server sent it (base64 included).
func (b *Bridge) maxResourceBytes() int64 { return b.cfg.MaxBodyBytes }

func resourceTooLarge(s *ServerConfig, uri string, limit int64) *httpError {
	return &httpError{Status: http.StatusBadGateway, Detail: errorDetail{Server: s.Name, Message: fmt.Sprintf(
		"resource %q of server %q is larger than this mount serves (%d bytes as the server sent it; max_request_body raises the limit)", uri, s.Name, limit)}}
}

// expand returns the URI of template tmpl of the server with the values
// q gives its variables (RFC 6570: values are percent-encoded as the
// template's expressions say). The template must be one the server lists.
func (b *Bridge) expand(r *http.Request, st *serverState, rc ResourceCaller, base, tmpl string, q url.Values) (string, *httpError) {
	s := st.cfg
	var templates []json.RawMessage
	if e := b.exchange(r.Context(), st, base, "resources/templates/list", tmpl, func(ctx context.Context) (err error) {
		templates, err = rc.ListResourceTemplates(ctx)
		return err
	}); e != nil {
		return "", e
	}
	listed := false
	for _, raw := range templates {
		var t struct {
			URITemplate string `json:"uriTemplate"`
		}
		if json.Unmarshal(raw, &t) == nil && t.URITemplate == tmpl {
			listed = true
			break
		}
	}
	if !listed {
		return "", &httpError{Status: http.StatusNotFound, Detail: errorDetail{Server: s.Name, Message: fmt.Sprintf(
			"server %q lists no resource template %q; see GET resources for its templates", s.Name, tmpl)}}
	}
	t, err := uritemplate.New(tmpl)
	if err != nil {
		return "", &httpError{Status: http.StatusBadGateway, Cause: err, Detail: errorDetail{Server: s.Name, Message: fmt.Sprintf(
			"server %q lists the resource template %q, which is not an RFC 6570 template: %v", s.Name, tmpl, err)}}
	}
	names := t.Varnames()
	vals := uritemplate.Values{}
	var problems []schema.ArgumentError
	for k, v := range q {
		switch {
		case k == "template":
		case !slices.Contains(names, k):
			problems = append(problems, schema.ArgumentError{Path: "/" + k, Message: "not a variable of the template"})
		case len(v) > 1:
			problems = append(problems, schema.ArgumentError{Path: "/" + k, Message: "given more than once"})
		default:
			vals.Set(k, uritemplate.String(v[0]))
		}
	}
	if len(problems) > 0 {
		slices.SortFunc(problems, func(a, b schema.ArgumentError) int { return strings.Compare(a.Path, b.Path) })
		return "", &httpError{Status: http.StatusUnprocessableEntity, Detail: errorDetail{Server: s.Name, Errors: problems,
			Message: fmt.Sprintf("the template's variables are %s", strings.Join(names, ", "))}}
	}
	uri, err := t.Expand(vals)
	if err != nil {
		return "", invalidRead(s, fmt.Sprintf("expanding the template %q: %v", tmpl, err))
	}
	return uri, nil
}

// resourceContent is one item of a resources/read result.
type resourceContent struct {
	URI      string  `json:"uri"`
	MIMEType string  `json:"mimeType"`
	Text     *string `json:"text"`
	Blob     *string `json:"blob"`
}

// writeResource writes a resources/read result: the result itself when
// the client asks for JSON or it holds other than one content, else that
// content's bytes with its MIME type.
func (b *Bridge) writeResource(w http.ResponseWriter, r *http.Request, s *ServerConfig, uri string, raw json.RawMessage) *httpError {
	var res struct {
		Contents []resourceContent `json:"contents"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return &httpError{Status: http.StatusBadGateway, Cause: err, Detail: errorDetail{Server: s.Name,
			Message: fmt.Sprintf("server %q answered resources/read of %q with a result that is not one: %v", s.Name, uri, err)}}
	}
	if wantsJSON(r) || len(res.Contents) != 1 || (res.Contents[0].Text == nil) == (res.Contents[0].Blob == nil) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		if r.Method == http.MethodHead {
			h.Set("Content-Type", "application/json")
			h.Set("Content-Length", strconv.Itoa(len(raw)))
			w.WriteHeader(http.StatusOK)
			return nil
		}
		writeJSON(w, http.StatusOK, raw)
		return nil
	}
	c := res.Contents[0]
	var body []byte
	if c.Blob != nil {
		var err error
		if body, err = base64.StdEncoding.DecodeString(*c.Blob); err != nil {
			return &httpError{Status: http.StatusBadGateway, Cause: err, Detail: errorDetail{Server: s.Name,
				Message: fmt.Sprintf("server %q sent resource %q as a blob that is not base64: %v", s.Name, uri, err)}}
		}
	} else {
		body = []byte(*c.Text)
	}
	h := w.Header()
	ctype, disposition := contentHeaders(c.MIMEType, c.Text != nil)
	h.Set("Content-Type", ctype)
	name := c.URI
	if name == "" {
		name = uri
	}
	if fn := safeFilename(name); fn != "" {
		if d := mime.FormatMediaType(disposition, map[string]string{"filename": fn}); d != "" {
			disposition = d
		}
	}
	h.Set("Content-Disposition", disposition)
	h.Set("X-Content-Type-Options", "nosniff")
	// A page served from the proxy's origin runs nothing and reaches
	// nothing, whatever the server put in it.
	h.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	return nil
}

// wantsJSON says whether the client asks for the JSON result: its Accept
// names application/json, and not before everything else.
func wantsJSON(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		t, _, _ := strings.Cut(part, ";")
		if strings.EqualFold(strings.TrimSpace(t), "application/json") {
			return true
		}
	}
	return false
}

// inlineTypes are the media types a browser shows without running
// anything: other content is an attachment.
var inlineTypes = map[string]bool{
	"text/plain": true, "text/markdown": true, "text/csv": true, "application/json": true,
	"image/png": true, "image/jpeg": true, "image/gif": true, "image/webp": true,
	"audio/mpeg": true, "audio/wav": true, "audio/ogg": true, "application/pdf": true,
}

// contentHeaders returns the Content-Type and the disposition of a
// content of mimeType: a type that does not parse is
// application/octet-stream (text/plain for text), and text/* gets
// charset=utf-8 (MCP text is UTF-8).
func contentHeaders(mimeType string, text bool) (string, string) {
	mt, params, err := mime.ParseMediaType(mimeType)
	if err != nil || !strings.Contains(mt, "/") {
		mt, params = "application/octet-stream", nil
		if text {
			mt = "text/plain"
		}
	}
	if strings.HasPrefix(mt, "text/") || (text && mt == "application/json") {
		params = map[string]string{"charset": "utf-8"}
	}
	ctype := mime.FormatMediaType(mt, params)
	if ctype == "" {
		ctype = mt
	}
	if inlineTypes[mt] {
		return ctype, "inline"
	}
	return ctype, "attachment"
}

// safeFilename is the last segment of a resource's URI as a file name:
// decoded, without control characters, separators or quotes, at most
// 100 characters; "" when nothing is left.
func safeFilename(uri string) string {
	seg := uri
	if u, err := url.Parse(uri); err == nil {
		seg = u.Path // decoded
		if seg == "" {
			seg = u.Opaque[strings.LastIndexByte(u.Opaque, ':')+1:]
		}
	}
	seg = seg[strings.LastIndexAny(seg, "/\\")+1:]
	seg = strings.Map(func(c rune) rune {
		if unicode.IsControl(c) || strings.ContainsRune(`/\:"*?<>|%;`, c) || c == unicode.ReplacementChar {
			return '_'
		}
		return c
	}, seg)
	seg = strings.Trim(seg, ". ")
	if r := []rune(seg); len(r) > 100 {
		seg = string(r[:100])
	}
	return seg
}

// endpointRoutes registers a server's resource, prompt and completion
// pages with at (see routes).
func (b *Bridge) endpointRoutes(at func(path string, p page)) {
	// Their GETs serve data, not documents: they ask the key of calls.
	at("/resources", page{methods: methodsDoc, toolMethods: methodsBoth, guard: guardData, serve: b.audited("resources/list", b.serveResources)})
	at("/resources/read", page{methods: methodsDoc, guard: guardData, serve: b.audited("resources/read", b.serveReadResource)})
	at("/prompts", page{methods: methodsDoc, toolMethods: methodsBoth, guard: guardData, serve: b.audited("prompts/list", b.servePrompts)})
	at("/prompts/{name}", page{methods: methodsTool, guard: guardData, serve: b.audited("prompts/get", b.serveGetPrompt)})
	at("/complete", page{methods: methodsTool, guard: guardData, serve: b.audited("completion/complete", b.serveComplete)})
}

// audited is serve writing, with Config.Audit, an audit line of each
// request ("server request", with the MCP method instead of the tool) as
// for tool calls.
func (b *Bridge) audited(method string, serve func(w http.ResponseWriter, r *http.Request, p *page, base string) *httpError) func(w http.ResponseWriter, r *http.Request, p *page, base string) *httpError {
	if b.audit == nil {
		return serve
	}
	return func(w http.ResponseWriter, r *http.Request, p *page, base string) *httpError {
		start := time.Now()
		c := &struct {
			in  countingBody
			out countingWriter
		}{countingBody{ReadCloser: r.Body}, countingWriter{ResponseWriter: w}}
		r.Body = &c.in
		rec := auditRecord{server: p.server.cfg.Name, outcome: OutcomeOK, status: http.StatusOK}
		if e := serve(&c.out, r, p, base); e != nil {
			rec.outcome, rec.status = e.Outcome, e.Status
			if rec.outcome == "" {
				rec.outcome = OutcomeRejected
			}
			writeError(&c.out, e)
		}
		if rec.status == http.StatusOK && c.out.status != 0 {
			rec.status = c.out.status // a task's 202 or 204
		}
		rec.took, rec.in, rec.out = time.Since(start), c.in.n, c.out.n
		auditLine(r.Context(), b.audit, rec, "server request", zap.String("method", method))
		return nil
	}
}

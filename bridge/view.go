package bridge

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/openapi"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/schema"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/swaggerui"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// route is one exposed tool.
type route struct {
	index       int    // in its view's routes
	segment     string // path segment below the server's base
	operationID string // in the server's own document
	tool        *upstream.Tool
	input       schema.Result
	output      *schema.Result
	// validator checks arguments against the tool's original input schema;
	// nil when that schema cannot be compiled (the server still checks).
	validator *schema.Validator
}

// view is what one tool listing of a server looks like over HTTP: its
// routes and its document. It is built once per listing.
type view struct {
	set       *upstream.ToolSet
	routes    []*route // in listing order
	bySegment map[string]*route
	doc       *openapi.Document
	etag      string
	title     string
	info      openapi.Info // of doc, and of the documents of granted tools

	// docs are, with access rules, the documents of the sets of its
	// routes that callers are granted, by granted.key.
	mu   sync.Mutex
	docs map[string]*grantedDoc
}

// grantedDoc is the document of some of a view's routes.
type grantedDoc struct {
	doc  *openapi.Document
	etag string
}

func (v *view) titleOr(s *ServerConfig) string {
	if v != nil {
		return v.title
	}
	if s.Title != "" {
		return s.Title
	}
	return s.Name
}

// serverState holds a server's configuration and its current view.
type serverState struct {
	cfg   *ServerConfig
	allow map[string]bool // nil: every tool not denied
	deny  map[string]bool
	slots slots
	// security is the scheme the server's document declares; nil for none.
	security *openapi3.SecurityScheme

	view atomic.Pointer[view] // the latest view
	mu   sync.Mutex           // serializes building views

	index int           // in the bridge's servers
	built func(v *view) // called with each new view; nil for nothing
	// docsBuilt counts the documents built, the bridge's.
	docsBuilt *atomic.Int64
}

func newServerState(s *ServerConfig, security *openapi3.SecurityScheme) *serverState {
	st := &serverState{cfg: s, deny: map[string]bool{}, slots: newSlots(s.MaxConcurrent), security: security}
	if len(s.Tools) > 0 {
		st.allow = map[string]bool{}
		for _, t := range s.Tools {
			st.allow[t] = true
		}
	}
	for _, t := range s.DisabledTools {
		st.deny[t] = true
	}
	return st
}

// current returns the view of the server's latest tool listing, building it
// if the listing changed. Before the first listing it returns nil and the
// reason the server is unavailable.
func (s *serverState) current(log *zap.Logger) (*view, error) {
	set := s.cfg.Upstream.Tools()
	if set == nil {
		st := s.cfg.Upstream.Status()
		return nil, &upstream.UnavailableError{Server: s.cfg.Name, State: st.State, Cause: errorOf(st.LastError), RetryAfter: retryAfter(st)}
	}
	if v := s.view.Load(); v != nil && v.set == set {
		return v, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.view.Load(); v != nil && v.set == set {
		return v, nil
	}
	v, err := s.build(set, log)
	if err != nil {
		return nil, err
	}
	s.view.Store(v)
	if s.built != nil {
		s.built(v)
	}
	return v, nil
}

func (s *serverState) exposed(name string) bool {
	if s.deny[name] {
		return false
	}
	return s.allow == nil || s.allow[name]
}

func (s *serverState) build(set *upstream.ToolSet, log *zap.Logger) (*view, error) {
	v := &view{set: set, bySegment: map[string]*route{}}
	var namer openapi.Namer
	namer.Reserve("openapi.json")
	namer.Reserve(MCPSegment)
	ops := make([]openapi.Operation, 0, len(set.Tools))
	for _, t := range set.Tools {
		if !s.exposed(t.Name) {
			continue
		}
		rt := newRoute(namer.PathSegment(t.Name), namer.OperationID(t.Name), t, s.cfg.Name, log)
		rt.index = len(v.routes)
		v.routes = append(v.routes, rt)
		v.bySegment[rt.segment] = rt
		ops = append(ops, rt.operation("/"+rt.segment, rt.operationID, ""))
	}
	for name := range s.allow {
		if !hasTool(set, name) {
			log.Warn("tool named in the tools allow-list does not exist", zap.String("server", s.cfg.Name), zap.String("tool", name))
		}
	}
	v.title = s.cfg.Title
	if v.title == "" {
		v.title = s.cfg.Name
	}
	v.info = openapi.Info{
		Title:        v.title,
		Description:  serverDescription(s.cfg.Name, set.Server),
		Version:      set.Server.Version,
		Security:     s.security,
		SecurityName: SecuritySchemeName,
	}
	doc, err := s.document(v, ops, log)
	if err != nil {
		return nil, err
	}
	v.doc = doc
	v.etag = hashOf(doc)
	return v, nil
}

// document builds the server's document of ops, of view v.
func (s *serverState) document(v *view, ops []openapi.Operation, log *zap.Logger) (*openapi.Document, error) {
	doc, err := openapi.Build(v.info, ops, false)
	if err != nil {
		return nil, fmt.Errorf("server %q: %w", s.cfg.Name, err)
	}
	if s.docsBuilt != nil {
		s.docsBuilt.Add(1)
	}
	log.Debug("OpenAPI document built", zap.String("server", s.cfg.Name), zap.Int("tools", len(ops)), zap.Int("bytes", doc.Size()))
	return doc, nil
}

// grantedDoc returns the document of the routes x allows of view v: the
// view's own when x allows every route, else one built once per set of
// routes, whatever grants allow it.
func (s *serverState) grantedDoc(v *view, x *granted, log *zap.Logger) (*openapi.Document, string, error) {
	if x.n == len(v.routes) {
		return v.doc, v.etag, nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if d := v.docs[x.key]; d != nil {
		return d.doc, d.etag, nil
	}
	routes := x.routes()
	ops := make([]openapi.Operation, len(routes))
	for i, rt := range routes {
		ops[i] = rt.operation("/"+rt.segment, rt.operationID, "")
	}
	doc, err := s.document(v, ops, log)
	if err != nil {
		return nil, "", err
	}
	if v.docs == nil {
		v.docs = map[string]*grantedDoc{}
	}
	d := &grantedDoc{doc: doc, etag: hashOf(doc)}
	v.docs[x.key] = d
	return d.doc, d.etag, nil
}

// newRoute converts a tool's schemas and compiles its validator, logging
// what they lose.
func newRoute(segment, operationID string, t *upstream.Tool, server string, log *zap.Logger) *route {
	rt := &route{segment: segment, operationID: operationID, tool: t}
	rt.input, rt.output = openapi.Convert(described(t))
	warnings := append(slices.Clone(rt.input.Warnings), outputWarnings(rt.output)...)
	if t.InputSchema != nil {
		v, err := schema.NewValidator(t.InputSchema)
		if err != nil {
			warnings = append(warnings, "arguments are not validated here: "+err.Error())
		} else {
			rt.validator = v
			warnings = append(warnings, v.Warnings...)
		}
	}
	for _, w := range warnings {
		log.Warn("tool schema handled with losses", zap.String("server", server), zap.String("tool", t.Name), zap.String("warning", w))
	}
	return rt
}

func outputWarnings(r *schema.Result) []string {
	if r == nil {
		return nil
	}
	return r.Warnings
}

// operation describes the route for a document.
func (rt *route) operation(path, operationID, server string) openapi.Operation {
	return openapi.Operation{
		Path: path, OperationID: operationID, Server: server,
		Tool: described(rt.tool), Input: rt.input, Output: rt.output,
	}
}

// described is what a document says about a listed tool.
func described(t *upstream.Tool) openapi.Tool {
	return openapi.Tool{
		Name: t.Name, Title: t.Title, Description: t.Description,
		InputSchema: t.InputSchema, OutputSchema: t.OutputSchema, Annotations: t.Annotations,
	}
}

func hasTool(set *upstream.ToolSet, name string) bool {
	for _, t := range set.Tools {
		if t.Name == name {
			return true
		}
	}
	return false
}

func serverDescription(name string, info upstream.ServerInfo) string {
	var b strings.Builder
	if info.Instructions != "" {
		b.WriteString(strings.TrimSpace(info.Instructions))
		b.WriteString("\n\n")
	}
	fmt.Fprintf(&b, "Tools of the MCP server %q", name)
	if info.Name != "" {
		fmt.Fprintf(&b, " (%s", info.Name)
		if info.Version != "" {
			fmt.Fprintf(&b, " %s", info.Version)
		}
		b.WriteString(")")
	}
	if info.Protocol != "" {
		fmt.Fprintf(&b, ", MCP protocol %s", info.Protocol)
	}
	b.WriteString(", served by caddy-mcpo.")
	return b.String()
}

func hashOf(doc *openapi.Document) string {
	sum := sha256.Sum256(doc.JSON(""))
	return hex.EncodeToString(sum[:8])
}

// aggregate is the document covering every server of a mount, for one
// combination of their views.
type aggregate struct {
	views []*view // per server, in configuration order; nil when not ready
	doc   *openapi.Document
	etag  string
}

// serveServerDoc serves a server's own document. base is the server's.
func (b *Bridge) serveServerDoc(w http.ResponseWriter, r *http.Request, p *page, base string) *httpError {
	v, err := p.server.current(b.log)
	if v == nil {
		return serverDown(p.server.cfg, base, "", err)
	}
	doc, etag := v.doc, v.etag
	if x := b.allowed(r, p.server, v); x != nil {
		if doc, etag, err = p.server.grantedDoc(v, x, b.log); err != nil {
			return &httpError{Status: http.StatusInternalServerError, Cause: err, Detail: errorDetail{Message: err.Error()}}
		}
		b.varyByCaller(w)
	}
	serveDocument(w, r, doc, etag, base, b.policy != nil)
	return nil
}

// serveDocs serves Swagger UI for the document beside it: a server's, or
// at the mount's own page the one covering every server.
func (b *Bridge) serveDocs(w http.ResponseWriter, r *http.Request, p *page, _ string) *httpError {
	title := b.cfg.Title
	if p.server != nil {
		v, _ := p.server.current(b.log)
		title = v.titleOr(p.server.cfg)
	}
	swaggerui.Serve(w, r, r.URL.Path[len(p.prefix)+len("/docs"):], title)
	return nil
}

// serveAggregateDoc serves the document covering every server of the
// mount: those that are ready. base is the mount's.
func (b *Bridge) serveAggregateDoc(w http.ResponseWriter, r *http.Request, _ *page, base string) *httpError {
	views := make([]*view, len(b.cfg.Servers))
	var down []string
	ready := 0
	for i, s := range b.cfg.Servers {
		v, err := b.servers[s.Name].current(b.log)
		if v != nil {
			ready++
		} else {
			down = append(down, err.Error())
		}
		views[i] = v
	}
	if ready == 0 {
		return &httpError{Status: http.StatusServiceUnavailable, RetryAfter: 2 * time.Second, Detail: errorDetail{
			Message: "no server of this mount is ready: " + strings.Join(down, "; "),
		}}
	}

	var (
		a   *aggregate
		err error
	)
	if b.policy != nil {
		a, err = b.grantedAggregate(r, views, down)
		b.varyByCaller(w)
	} else {
		b.mu.Lock()
		if a = b.all; a == nil || !sameViews(a.views, views) {
			if a, err = b.buildAggregate(views, nil, down); err == nil {
				b.all = a
			}
		}
		b.mu.Unlock()
	}
	if err != nil {
		return &httpError{Status: http.StatusInternalServerError, Cause: err, Detail: errorDetail{Message: err.Error()}}
	}
	serveDocument(w, r, a.doc, a.etag, base, b.policy != nil)
	return nil
}

// grantedAggregate returns the document covering every server of views
// (nil for a server not ready) as the caller of r may call them: one
// per distinct set of granted tools, kept until a view changes.
func (b *Bridge) grantedAggregate(r *http.Request, views []*view, down []string) (*aggregate, error) {
	g := b.policy.grantOf(r.Context())
	grants := make([]*granted, len(views))
	var key strings.Builder
	for i, v := range views {
		if v != nil {
			grants[i] = g.of(b.servers[b.cfg.Servers[i].Name], v)
			// Of a fixed length for a view: the keys of views side by
			// side tell the sets apart.
			key.WriteString(grants[i].key)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !sameViews(b.grantedViews, views) {
		b.granted, b.grantedViews = map[string]*aggregate{}, views
	}
	if a := b.granted[key.String()]; a != nil {
		return a, nil
	}
	a, err := b.buildAggregate(views, grants, down)
	if err != nil {
		return nil, err
	}
	b.granted[key.String()] = a
	return a, nil
}

func sameViews(a, b []*view) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return len(a) == len(b)
}

// buildAggregate builds the document covering every server of views (nil
// for a server not ready): of every route, or with grants, of the routes
// each server's allows.
func (b *Bridge) buildAggregate(views []*view, grants []*granted, down []string) (*aggregate, error) {
	var namer openapi.Namer
	var ops []openapi.Operation
	for i, s := range b.cfg.Servers {
		if views[i] == nil {
			continue
		}
		for _, rt := range views[i].routes {
			if grants != nil && !grants[i].permits(rt) {
				continue
			}
			ops = append(ops, rt.operation("/"+s.Name+"/"+rt.segment, namer.OperationID(s.Name, rt.tool.Name), s.Name))
		}
	}
	names := make([]string, len(b.cfg.Servers))
	for i, s := range b.cfg.Servers {
		names[i] = s.Name
	}
	desc := fmt.Sprintf("Tools of the MCP servers %s, served by caddy-mcpo. Each server also has its own document at `<server>/openapi.json`.",
		strings.Join(names, ", "))
	if len(down) > 0 {
		desc += "\n\nNot ready, so not listed: " + strings.Join(down, "; ") + "."
	}
	doc, err := openapi.Build(openapi.Info{
		Title:        b.cfg.Title,
		Description:  desc,
		Security:     b.gate.scheme,
		SecurityName: SecuritySchemeName,
	}, ops, true)
	if err != nil {
		return nil, err
	}
	b.docsBuilt.Add(1)
	b.log.Debug("OpenAPI document built", zap.Strings("servers", names), zap.Int("tools", len(ops)), zap.Int("bytes", doc.Size()))
	return &aggregate{views: views, doc: doc, etag: hashOf(doc)}, nil
}

// serveDocument writes doc with its server URL set to base. A document of
// the caller's granted tools is private: no shared cache may keep it (and
// like any, it is revalidated before each reuse, against the caller's
// own ETag).
func serveDocument(w http.ResponseWriter, r *http.Request, doc *openapi.Document, etag, base string, private bool) {
	if base == "" {
		base = "/"
	}
	h := fnv.New32a()
	h.Write([]byte(base))
	tag := fmt.Sprintf(`"%s-%08x"`, etag, h.Sum32())
	hdr := w.Header()
	hdr.Set("ETag", tag)
	hdr.Set("Cache-Control", "no-cache")
	if private {
		hdr.Set("Cache-Control", "private, no-cache")
	}
	if match := r.Header.Get("If-None-Match"); match != "" && etagMatches(match, tag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := doc.JSON(base)
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Content-Length", fmt.Sprint(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

func etagMatches(header, tag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == tag {
			return true
		}
	}
	return false
}

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
	ops := make([]openapi.Operation, 0, len(set.Tools))
	for _, t := range set.Tools {
		if !s.exposed(t.Name) {
			continue
		}
		rt := newRoute(namer.PathSegment(t.Name), namer.OperationID(t.Name), t, s.cfg.Name, log)
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
	doc, err := openapi.Build(openapi.Info{
		Title:        v.title,
		Description:  serverDescription(s.cfg.Name, set.Server),
		Version:      set.Server.Version,
		Security:     s.security,
		SecurityName: SecuritySchemeName,
	}, ops, false)
	if err != nil {
		return nil, fmt.Errorf("server %q: %w", s.cfg.Name, err)
	}
	v.doc = doc
	v.etag = hashOf(doc)
	log.Debug("OpenAPI document built", zap.String("server", s.cfg.Name), zap.Int("tools", len(v.routes)), zap.Int("bytes", doc.Size()))
	return v, nil
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
	serveDocument(w, r, v.doc, v.etag, base)
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

	b.mu.Lock()
	a := b.all
	if a == nil || !sameViews(a.views, views) {
		var err error
		a, err = b.buildAggregate(views, down)
		if err != nil {
			b.mu.Unlock()
			return &httpError{Status: http.StatusInternalServerError, Cause: err, Detail: errorDetail{Message: err.Error()}}
		}
		b.all = a
	}
	b.mu.Unlock()
	serveDocument(w, r, a.doc, a.etag, base)
	return nil
}

func sameViews(a, b []*view) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return len(a) == len(b)
}

func (b *Bridge) buildAggregate(views []*view, down []string) (*aggregate, error) {
	var namer openapi.Namer
	var ops []openapi.Operation
	for i, s := range b.cfg.Servers {
		if views[i] == nil {
			continue
		}
		for _, rt := range views[i].routes {
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
	return &aggregate{views: views, doc: doc, etag: hashOf(doc)}, nil
}

// serveDocument writes doc with its server URL set to base.
func serveDocument(w http.ResponseWriter, r *http.Request, doc *openapi.Document, etag, base string) {
	if base == "" {
		base = "/"
	}
	h := fnv.New32a()
	h.Write([]byte(base))
	tag := fmt.Sprintf(`"%s-%08x"`, etag, h.Sum32())
	hdr := w.Header()
	hdr.Set("ETag", tag)
	hdr.Set("Cache-Control", "no-cache")
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

package bridge

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"net/http"
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

// route is one exposed tool. Its schemas are converted, and its arguments
// validator compiled, when first needed: a listing of many tools is served
// before they all are.
type route struct {
	index       int    // in its view's routes
	segment     string // path segment below the server's base
	operationID string // in the server's own document
	tool        *upstream.Tool
	// task is the tool's task support when it runs as a task here
	// (tasks.go): the server runs tasks, and so does its Caller; "" else.
	task   string
	server string      // the server's name, for logs
	log    *zap.Logger // where what the schemas lose is told

	converted sync.Once
	input     schema.Result
	output    *schema.Result

	compiled sync.Once
	// validator checks arguments against the tool's original input schema;
	// nil when that schema cannot be compiled (the server still checks).
	validator *schema.Validator
}

// schemaCache keeps the conversions and validators of the schemas of
// every bridge of the process, by content: servers generated from an API
// give many tools one schema, and a new listing, or a new configuration
// (Caddy builds a new bridge on each reload), mostly brings the schemas of
// the last. It is the package's, not a bridge's, so that a reload finds
// it warm, and bounded, so that schemas no longer listed leave it: 4,096
// entries are an input conversion and a validator for each of 2,048
// distinct tools; an entry takes about 7 times its schema's size (the
// captured schemas of internal/fixture: 7.7 for a conversion, 6.6 for a
// validator), so 4 MiB of schemas keeps about 30 MiB at most.
var schemaCache = schema.NewCache(4096, 4<<20)

// view is what one tool listing of a server looks like over HTTP: its
// routes and its document. It is built once per listing.
type view struct {
	set       *upstream.ToolSet
	routes    []*route // in listing order
	bySegment map[string]*route
	title     string
	info      openapi.Info // of doc, and of the documents of granted tools
	// endpoints are the server's resource, prompt and completion
	// endpoints (resources.go), in doc after the tools.
	endpoints []openapi.Endpoint

	mu sync.Mutex // guards what follows, built on first use
	// doc is the document of every route, etag its tag; docErr why it
	// could not be built.
	doc    *openapi.Document
	etag   string
	docErr error
	// docs are, with access rules, the documents of the sets of its
	// routes that callers are granted, by granted.key.
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
	// tasks keeps the tasks of its tools (tasks.go); nil when its Caller
	// runs none.
	tasks *TaskStore

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
	namer.Reserve("complete")
	namer.Reserve(TasksSegment)
	namer.Reserve(MCPSegment)
	for _, t := range set.Tools {
		if !s.exposed(t.Name) {
			continue
		}
		rt := newRoute(namer.PathSegment(t.Name), namer.OperationID(t.Name), t, s.cfg.Name, log)
		if s.tasks != nil {
			rt.task = t.TaskSupport
		}
		rt.index = len(v.routes)
		v.routes = append(v.routes, rt)
		v.bySegment[rt.segment] = rt
	}
	for name := range s.allow {
		if !hasTool(set, name) {
			log.Warn("tool named in the tools allow-list does not exist", zap.String("server", s.cfg.Name), zap.String("tool", name))
		}
	}
	v.endpoints = s.endpointsOf(set, &namer)
	v.endpoints = append(v.endpoints, s.taskEndpoints(v, &namer)...)
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
	return v, nil
}

// ownDoc returns the document of every route of view v, built on first
// use: a call after a new listing does not wait for it.
func (s *serverState) ownDoc(v *view, log *zap.Logger) (*openapi.Document, string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.doc == nil && v.docErr == nil {
		ops := make([]openapi.Operation, len(v.routes))
		for i, rt := range v.routes {
			ops[i] = rt.operation("/"+rt.segment, rt.operationID, "")
		}
		if v.doc, v.docErr = s.document(v, ops, true, log); v.docErr == nil {
			v.etag = hashOf(v.doc)
		}
	}
	return v.doc, v.etag, v.docErr
}

// document builds the server's document of ops, of view v, with the
// view's endpoints when endpoints is set.
func (s *serverState) document(v *view, ops []openapi.Operation, endpoints bool, log *zap.Logger) (*openapi.Document, error) {
	doc, err := openapi.Build(v.info, ops, false)
	if err == nil && endpoints {
		doc, err = openapi.WithEndpoints(doc, v.info, v.endpoints, false)
	}
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
	if x.n == len(v.routes) && (x.n > 0 || len(v.endpoints) == 0) {
		return s.ownDoc(v, log)
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
	doc, err := s.document(v, ops, x.n > 0, log)
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

// newRoute returns the route of a tool, its schemas not converted yet.
func newRoute(segment, operationID string, t *upstream.Tool, server string, log *zap.Logger) *route {
	return &route{segment: segment, operationID: operationID, tool: t, server: server, log: log}
}

// schemas returns the tool's converted schemas, converting them on first
// use (by their content, once for every tool that has them), and logs what
// they lose.
func (rt *route) schemas() (schema.Result, *schema.Result) {
	rt.converted.Do(func() {
		rt.input = schemaCache.Input(rt.tool.InputSchema)
		rt.warn(rt.input.Warnings)
		if rt.tool.OutputSchema != nil {
			out := schemaCache.Output(rt.tool.OutputSchema)
			rt.output = &out
			rt.warn(out.Warnings)
		}
	})
	return rt.input, rt.output
}

// argsValidator returns the validator of the tool's arguments, compiled on
// first use (by the schema's content, once for every tool that has it);
// nil when the tool's input schema cannot be compiled, which it logs.
func (rt *route) argsValidator() *schema.Validator {
	rt.compiled.Do(func() {
		if rt.tool.InputSchema == nil {
			return
		}
		v, err := schemaCache.Validator(rt.tool.InputSchema)
		if err != nil {
			rt.warn([]string{"arguments are not validated here: " + err.Error()})
			return
		}
		rt.validator = v
		rt.warn(v.Warnings)
	})
	return rt.validator
}

// warn logs what the tool's schemas lose.
func (rt *route) warn(warnings []string) {
	for _, w := range warnings {
		rt.log.Warn("tool schema handled with losses", zap.String("server", rt.server), zap.String("tool", rt.tool.Name), zap.String("warning", w))
	}
}

// operation describes the route for a document.
func (rt *route) operation(path, operationID, server string) openapi.Operation {
	in, out := rt.schemas()
	return openapi.Operation{
		Path: path, OperationID: operationID, Server: server,
		Tool: described(rt.tool, rt.task), Input: in, Output: out, TaskSupport: rt.task,
	}
}

// described is what a document says about a listed tool; task is its
// task support here.
func described(t *upstream.Tool, task string) openapi.Tool {
	desc := t.Description
	if note := taskNote(task); note != "" {
		desc = strings.TrimSpace(desc + "\n\n" + note)
	}
	return openapi.Tool{
		Name: t.Name, Title: t.Title, Description: desc,
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
	var (
		doc  *openapi.Document
		etag string
	)
	x := b.allowed(r, p.server, v)
	if x != nil {
		doc, etag, err = p.server.grantedDoc(v, x, b.log)
	} else {
		doc, etag, err = p.server.ownDoc(v, b.log)
	}
	if err != nil {
		return &httpError{Status: http.StatusInternalServerError, Cause: err, Detail: errorDetail{Message: err.Error()}}
	}
	if x != nil {
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
	info := openapi.Info{
		Title:        b.cfg.Title,
		Description:  desc,
		Security:     b.gate.scheme,
		SecurityName: SecuritySchemeName,
	}
	doc, err := openapi.Build(info, ops, true)
	if err == nil {
		doc, err = openapi.WithEndpoints(doc, info, b.aggregateEndpoints(views, grants, &namer), true)
	}
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

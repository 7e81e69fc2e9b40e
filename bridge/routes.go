package bridge

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"go.uber.org/zap"
)

// A request walks one way through the package:
//
//   - Serve answers CORS preflights (access.go), then looks the path up in
//     the route table New built once: a net/http ServeMux mapping each path
//     to a page.
//   - serve checks the key the page needs, finds the tool the path names in
//     the server's latest tool listing (view.go), and checks the method: a
//     path nothing is at gets 404, a method the page does not answer 405,
//     OPTIONS the methods it does.
//   - With access rules (rules.go), a POST to a tool the caller is not
//     granted gets 403, and the documents and health list only the
//     caller's tools.
//   - A POST to a tool goes to serveCall (call.go), which reads the body
//     (body.go) and checks the arguments (args.go), calls the tool,
//     renders the result (result.go) and tells the Observer how the call
//     ended. Other methods go to the page: a document (view.go), Swagger
//     UI, the health report (health.go) or a consent page (consent.go).
//   - Every answer other than a success is an *httpError (errors.go),
//     written by writeError alone.

// A page is what the route table maps a path to.
type page struct {
	b *Bridge
	// methods are the methods serve answers; nil on a server's {tool} page.
	methods []string
	// toolMethods, on a page whose last path segment a tool may take, are
	// its methods when one of server's tools does: POST then calls it.
	toolMethods []string
	guard       guard
	// server is the server the page belongs to, nil for the mount's own.
	server *serverState
	// face is the MCP endpoint of an MCP page.
	face *mcpFace
	// prefix is server's path below the mount: "/<name>" in a mount of
	// several servers, "" at a single-server mount and for the mount's
	// own pages.
	prefix string
	// cache, when set, is the Cache-Control of every answer past the
	// method check, errors included.
	cache string
	// serve answers the page's methods. base is the page's base path as
	// the client sees it: the mount's, then prefix.
	serve func(w http.ResponseWriter, r *http.Request, p *page, base string) *httpError
}

// guard says which key a page needs.
type guard uint8

const (
	// guardCaller asks the API key of calls, and of reads when documents
	// are protected. Paths without a page are guarded so too.
	guardCaller guard = iota
	// guardAdmin asks the admin key (an API key when none is set).
	guardAdmin
	// guardNone asks nothing, for the pages authorization servers and the
	// browsers they send back fetch.
	guardNone
	// guardData asks the API key of calls for every method but OPTIONS:
	// for the pages that serve a server's data (its resources and
	// prompts) to GET as well.
	guardData
)

// Methods of the pages.
var (
	methodsDoc  = []string{http.MethodGet, http.MethodHead}
	methodsTool = []string{http.MethodPost}
	methodsBoth = []string{http.MethodGet, http.MethodHead, http.MethodPost}
	// methodsMCP are those of an MCP endpoint (Streamable HTTP).
	methodsMCP = []string{http.MethodGet, http.MethodPost, http.MethodDelete}
	// methodsConfirm are those of a page that a form posts back to.
	methodsConfirm = methodsBoth
)

// routes builds the route table. In a mount of several servers:
//
//	/openapi.json, /docs, /docs/{file...}, /health   the mount's pages
//	/<server>/{tool}                                 POST calls a tool
//	/<server>/openapi.json, /<server>/docs, /<server>/docs/{file...}
//	/<server>/tasks/{id}                             GET polls, DELETE cancels a task
//	/<server>/oauth/authorize, /<server>/oauth/callback,
//	/<server>/oauth/client-metadata.json             servers with Consent
//
// At a single-server mount, the server's pages are at the mount itself,
// and so is /health. The patterns name each server rather than a {server}
// wildcard, which would conflict with /docs/{file...}; they carry no
// method, so that a page's methods, 405 and OPTIONS are decided in one
// place (serve), whatever tool takes a path ("docs" answers POST as a
// tool and GET as Swagger UI).
func (b *Bridge) routes() *http.ServeMux {
	mux := http.NewServeMux()
	handle := func(pattern string, p page) {
		p.b = b
		mux.Handle(pattern, &p)
	}
	// An MCP endpoint admits its requests itself: its GET needs the key
	// as much as its POST.
	mcpPage := func(servers []*serverState, prefixed bool, title string) page {
		return page{methods: methodsMCP, guard: guardNone, cache: "no-store", serve: b.serveMCP,
			face: b.newMCPFace(servers, prefixed, title)}
	}
	if b.cfg.Single {
		s := b.servers[b.cfg.Servers[0].Name]
		handle("/"+MCPSegment, mcpPage([]*serverState{s}, false, s.cfg.Name))
	} else {
		all := make([]*serverState, len(b.cfg.Servers))
		for i, s := range b.cfg.Servers {
			all[i] = b.servers[s.Name]
		}
		handle("/"+MCPSegment, mcpPage(all, true, b.cfg.Title))
		handle("/openapi.json", page{methods: methodsDoc, serve: b.serveAggregateDoc})
		handle("/docs", page{methods: methodsDoc, serve: b.serveDocs})
		handle("/docs/{file...}", page{methods: methodsDoc, serve: b.serveDocs})
		handle("/health", page{methods: methodsDoc, serve: b.serveHealth})
	}
	for _, s := range b.cfg.Servers {
		st, prefix := b.servers[s.Name], ""
		if !b.cfg.Single {
			prefix = "/" + s.Name
		}
		// at registers a page of the server at path below its prefix.
		at := func(path string, p page) {
			p.server, p.prefix = st, prefix
			handle(prefix+path, p)
		}
		at("/{tool}", page{toolMethods: methodsTool})
		if !b.cfg.Single {
			at("/"+MCPSegment, mcpPage([]*serverState{st}, false, s.Name))
		}
		at("/openapi.json", page{methods: methodsDoc, serve: b.serveServerDoc})
		at("/"+TasksSegment+"/{id}", b.taskPage())
		b.endpointRoutes(at)
		at("/docs", page{methods: methodsDoc, toolMethods: methodsBoth, serve: b.serveDocs})
		at("/docs/{file...}", page{methods: methodsDoc, serve: b.serveDocs})
		if b.cfg.Single {
			at("/health", page{methods: methodsDoc, toolMethods: methodsBoth, serve: b.serveHealth})
		}
		if s.Consent != nil {
			authorize := page{methods: methodsDoc, guard: guardAdmin, cache: "no-store", serve: b.serveAuthorize}
			if _, ok := s.Consent.(UserConsent); ok {
				// Each caller authorizes for themselves: the link's
				// ticket, or the browser's own identity, admits them, and
				// they confirm with a POST.
				authorize.methods, authorize.guard = methodsConfirm, guardNone
			}
			at(consentAuthorize, authorize)
			at(consentCallback, page{methods: methodsDoc, guard: guardNone, cache: "no-store", serve: b.serveCallback})
			at(consentMetadata, page{methods: methodsDoc, guard: guardNone, serve: b.serveClientMetadata})
		}
	}
	return mux
}

// ServeHTTP serves the page as if the mount were the root.
func (p *page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if e := p.b.serve(w, r, p, ""); e != nil {
		writeError(w, e)
	}
}

// Serve answers a request. rel is the request path below the mount ("" or
// starting with "/"); base is the mount's path as the client sees it, used
// in the documents' server URL and in the links the answers give.
func (b *Bridge) Serve(w http.ResponseWriter, r *http.Request, rel, base string) {
	if b.gate.cors(w, r) {
		return
	}
	r = below(r, rel)
	// The mux answers an unclean path, or one a trailing slash would
	// match, with a redirect: computed from rel, it would lead outside the
	// mount, so such a path, like any other that is not a page, is not
	// found.
	h, _ := b.mux.Handler(r)
	p, _ := h.(*page)
	if e := b.serve(w, r, p, strings.TrimSuffix(base, "/")); e != nil {
		writeError(w, e)
	}
}

// below is r with its path cut to rel, the path below the mount: a
// shallow copy, as http.StripPrefix makes, in one allocation.
func below(r *http.Request, rel string) *http.Request {
	c := &struct {
		r http.Request
		u url.URL
	}{*r, *r.URL}
	c.u.Path, c.u.RawPath = rel, ""
	c.r.URL = &c.u
	return &c.r
}

// serve answers r with page p, nil when no page is at r's path, and
// returns the error to write: it checks the key the page needs, finds the
// tool its path names, checks the method, and hands the request to the
// call or to the page.
func (b *Bridge) serve(w http.ResponseWriter, r *http.Request, p *page, base string) *httpError {
	if p == nil || p.guard == guardCaller || p.guard == guardData {
		read := isRead(r.Method) && (p == nil || p.guard != guardData || r.Method == http.MethodOptions)
		if e := b.gate.admit(r, read); e != nil {
			return e
		}
	}
	if p == nil {
		return b.notFound(r)
	}
	methods := p.methods
	var (
		v    *view
		rt   *route
		seg  string
		down error
	)
	// A page that may also be a tool's path (/docs, and /health of a
	// single server) looks the tool up only for a method the page itself
	// does not answer, or for OPTIONS, which lists both: a GET of the
	// health report must not build the server's view of a new listing.
	if p.toolMethods != nil && (p.methods == nil || r.Method == http.MethodOptions || !slices.Contains(p.methods, r.Method)) {
		seg = r.URL.Path[len(p.prefix)+1:]
		v, down = p.server.current(b.log)
		if v != nil {
			rt = v.bySegment[seg]
		}
		// A tool, or on the {tool} page a server that has not listed its
		// tools yet: only POST makes sense, and a call says why it is down.
		if rt != nil || (v == nil && p.methods == nil) {
			methods = p.toolMethods
		}
	}
	if methods == nil {
		return b.notFound(r)
	}
	if !slices.Contains(methods, r.Method) {
		return refuse(w, r, methods)
	}
	if p.cache != "" {
		w.Header().Set("Cache-Control", p.cache)
	}
	if p.guard == guardAdmin {
		if e := b.gate.admitAdmin(r); e != nil {
			return e
		}
	}
	if r.Method == http.MethodPost && !slices.Contains(p.methods, http.MethodPost) {
		if rt != nil && !b.allowed(r, p.server, v).permits(rt) {
			b.log.Debug("tool call not granted", zap.String("server", p.server.cfg.Name), zap.String("tool", rt.tool.Name))
			return notGranted(p.server, rt)
		}
		if rt == nil && b.grantsNothingOf(r, p.server) {
			// Before the server has listed its tools (or for a tool it
			// does not have), a caller granted none of them learns no
			// more than that: not why the server is down.
			b.log.Debug("tool call not granted", zap.String("server", p.server.cfg.Name), zap.String("segment", seg))
			return serverNotGranted(p.server)
		}
		b.serveCall(w, r, p.server, rt, seg, down, base+p.prefix)
		return nil
	}
	return p.serve(w, r, p, base+p.prefix)
}

// isRead says whether a request with method only reads.
func isRead(method string) bool {
	return method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
}

// refuse answers a method a page does not: OPTIONS with the methods it
// does, anything else with 405.
func refuse(w http.ResponseWriter, r *http.Request, methods []string) *httpError {
	allow := strings.Join(methods, ", ") + ", " + http.MethodOptions
	if r.Method == http.MethodOptions {
		w.Header().Set("Allow", allow)
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	msg := fmt.Sprintf("method %s is not allowed here; use %s", r.Method, strings.Join(methods, " or "))
	if len(methods) == 1 && methods[0] == http.MethodPost {
		msg = fmt.Sprintf("method %s is not allowed: call the tool with POST and a JSON object of its arguments as the body", r.Method)
	}
	return &httpError{Status: http.StatusMethodNotAllowed, Header: http.Header{"Allow": {allow}}, Detail: errorDetail{Message: msg}}
}

// notFound is the answer for r, whose path no page is at: it names the
// tools of the server the path is under that the caller may call, or the
// servers of the mount.
func (b *Bridge) notFound(r *http.Request) *httpError {
	rel := r.URL.Path
	s, below := b.serverAt(rel)
	if s == nil {
		names := make([]string, 0, len(b.cfg.Servers))
		for _, s := range b.cfg.Servers {
			names = append(names, s.Name)
		}
		return &httpError{Status: http.StatusNotFound, Detail: errorDetail{Message: fmt.Sprintf(
			"no endpoint at %q: the servers here are %s; each serves POST <server>/<tool>, "+
				"<server>/openapi.json and <server>/docs, and openapi.json and docs here cover them all",
			rel, strings.Join(names, ", "))}}
	}
	if b.grantsNothingOf(r, s) {
		return serverNotGranted(s)
	}
	name := s.cfg.Name
	msg := fmt.Sprintf("server %q has no tool at %q; see its openapi.json or docs for the tools it has", name, below)
	if v, _ := s.current(b.log); v != nil && len(v.routes) <= 20 {
		x := b.allowed(r, s, v)
		segs := make([]string, 0, len(v.routes))
		for _, rt := range v.routes {
			if x.permits(rt) {
				segs = append(segs, rt.segment)
			}
		}
		msg = fmt.Sprintf("server %q has no tool at %q; its tools are at: %s (POST)", name, below, strings.Join(segs, ", "))
	}
	return &httpError{Status: http.StatusNotFound, Detail: errorDetail{Message: msg, Server: name}}
}

// serverAt returns the server whose path rel is under, if any, and the
// path below it.
func (b *Bridge) serverAt(rel string) (*serverState, string) {
	if b.cfg.Single {
		return b.servers[b.cfg.Servers[0].Name], rel
	}
	name, below, _ := strings.Cut(strings.TrimPrefix(rel, "/"), "/")
	s := b.servers[name]
	if s == nil {
		return nil, ""
	}
	if below != "" || strings.HasSuffix(rel, "/") {
		below = "/" + below
	}
	return s, below
}

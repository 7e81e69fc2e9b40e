package bridge

// Resources, prompts and completions at the MCP endpoints. mcp-go serves
// what is registered with it, and a server's resources are many, change,
// and may differ from one user's session to another's: the face
// registers none of them. Instead, before mcp-go handles a list request
// (its request-initialization hook, which may refuse the request with
// why), the face asks the servers for their lists, under their limits and
// the caller's grants, and keeps them with the request; mcp-go's answer
// to the request is then given those lists (its after-list hooks). Reads
// go to one resource template that matches every URI, which the lists
// never show; a URI outside RFC 3986's characters, which that template
// does not match, is registered as a resource for the read. Prompts are
// registered by name (mcp-go looks a prompt up before calling its
// handler), from the servers' lists; registering a changed set of them
// tells the clients that the prompts changed (as does registering an odd
// URI, for resources: such URIs are rare).
//
// In a face of several servers, prompts are named <server>_<prompt> as
// tools are, and a resource's URI is mcpo://<server>/<the server's URI>:
// the server's URI follows the prefix unchanged, so that the URI
// templates stay templates, expanding one gives the URI of the resource,
// and any URI (query, fragment and all) maps back by cutting the prefix.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"github.com/yosida95/uritemplate/v3"
	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/openapi"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// URIScheme is the scheme of the resource URIs at an MCP endpoint of
// several servers: mcpo://<server>/<the server's URI>.
const URIScheme = "mcpo"

// anyURI is the resource template that matches every URI (of RFC 3986's
// characters), through which the face reads resources.
var anyURI = mcp.NewResourceTemplate("{+uri}", "any resource")

// maxOddURIs bounds the URIs registered for reads that anyURI does not
// match; past it they are forgotten all at once.
const maxOddURIs = 1000

// faceLists are the lists a request to the face is answered with,
// gathered before mcp-go handles it.
type faceLists struct {
	resources []mcp.Resource
	templates []mcp.ResourceTemplate
	prompts   []mcp.Prompt
}

// listsOf returns the place for the lists of ctx's request, or nil.
func listsOf(ctx context.Context) *faceLists {
	if fr := faceRequestOf(ctx); fr != nil {
		return &fr.lists
	}
	return nil
}

// facePrompt is a registered prompt: its server and its name there.
type facePrompt struct {
	st     *serverState
	prompt prompt
}

// facePrompts are the prompts the face registered, by the name it gives
// them; and per server (by index in the face) those it listed and the
// names the face gives them.
type facePrompts struct {
	byName map[string]facePrompt
	listed [][]prompt
	names  [][]string
}

// extrasOptions are the options of mcp-go's server for the face's
// resources, prompts and completions, with their hooks added to hooks.
// Their capabilities are declared to clients by declare.
func (f *mcpFace) extrasOptions(hooks *server.Hooks) []server.ServerOption {
	hooks.AddOnRequestInitialization(f.gather)
	hooks.AddAfterListResources(func(ctx context.Context, _ any, _ *mcp.ListResourcesRequest, res *mcp.ListResourcesResult) {
		if l := listsOf(ctx); l != nil {
			res.Resources = nonNilList(l.resources)
		}
	})
	hooks.AddAfterListResourceTemplates(func(ctx context.Context, _ any, _ *mcp.ListResourceTemplatesRequest, res *mcp.ListResourceTemplatesResult) {
		if l := listsOf(ctx); l != nil {
			res.ResourceTemplates = nonNilList(l.templates)
		}
	})
	hooks.AddAfterListPrompts(func(ctx context.Context, _ any, _ *mcp.ListPromptsRequest, res *mcp.ListPromptsResult) {
		if l := listsOf(ctx); l != nil {
			res.Prompts = nonNilList(l.prompts)
		}
	})
	return []server.ServerOption{
		server.WithResourceCapabilities(f.subscribes, f.relays),
		server.WithPromptCapabilities(f.relays),
		server.WithCompletions(),
		server.WithPromptCompletionProvider(faceCompletions{f}),
		server.WithResourceCompletionProvider(faceCompletions{f}),
	}
}

func nonNilList[T any](l []T) []T {
	if l == nil {
		return []T{}
	}
	return l
}

// registerExtras registers what the face reads resources through.
func (f *mcpFace) registerExtras() {
	n := len(f.servers)
	f.prompts.Store(&facePrompts{byName: map[string]facePrompt{}, listed: make([][]prompt, n), names: make([][]string, n)})
	f.mcp.AddResourceTemplate(anyURI, f.readResource)
}

// declare sets the capabilities the face declares for resources, prompts
// and completions: those some server of the face may serve (one not yet
// listed may, unless its configuration turns them off).
func (f *mcpFace) declare(caps *mcp.ServerCapabilities) {
	caps.Resources, caps.Prompts, caps.Completions = nil, nil, nil
	for _, st := range f.servers {
		if _, ok := st.cfg.Upstream.(ResourceCaller); !ok {
			continue
		}
		v, _ := st.current(f.b.log)
		if (v == nil && !st.cfg.DisableResources) || (v != nil && v.serves(openapi.ListResources)) {
			if caps.Resources == nil {
				caps.Resources = &struct {
					Subscribe   bool `json:"subscribe,omitempty"`
					ListChanged bool `json:"listChanged,omitempty"`
				}{ListChanged: f.relays}
			}
			caps.Resources.Subscribe = caps.Resources.Subscribe || (subscribable(st) && (v == nil || v.set.Server.Subscribe))
		}
		if (v == nil && !st.cfg.DisablePrompts) || (v != nil && v.serves(openapi.ListPrompts)) {
			caps.Prompts = &struct {
				ListChanged bool `json:"listChanged,omitempty"`
			}{ListChanged: f.relays}
		}
		if (v == nil && !(st.cfg.DisableResources && st.cfg.DisablePrompts)) || (v != nil && v.serves(openapi.Complete)) {
			caps.Completions = &struct{}{}
		}
	}
}

// gather gets, before mcp-go handles a request, what it needs of the
// servers: their lists for a list request (refusing it, with why, when
// no server gave one), the prompts' names for prompts/get, and the
// registration of a URI that anyURI does not match for resources/read.
func (f *mcpFace) gather(ctx context.Context, _ any, message any) error {
	raw, ok := message.(json.RawMessage)
	l := listsOf(ctx)
	if !ok || l == nil || !mayGather(raw) {
		return nil
	}
	var m struct {
		Method string `json:"method"`
		Params struct {
			Name string `json:"name"`
			URI  string `json:"uri"`
			Ref  struct {
				Type string `json:"type"`
				Name string `json:"name"`
			} `json:"ref"`
		} `json:"params"`
	}
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	switch mcp.MCPMethod(m.Method) {
	case mcp.MethodResourcesList:
		return f.gatherList(ctx, openapi.ListResources, "resources/list", func(ctx context.Context, i int, st *serverState, rc ResourceCaller) error {
			items, err := rc.ListResources(ctx)
			for _, it := range items {
				var r mcp.Resource
				if json.Unmarshal(it, &r) == nil {
					r.URI = f.wrapURI(st, r.URI)
					l.resources = append(l.resources, r)
				}
			}
			return err
		})
	case mcp.MethodResourcesTemplatesList:
		return f.gatherList(ctx, openapi.ListResources, "resources/templates/list", func(ctx context.Context, i int, st *serverState, rc ResourceCaller) error {
			items, err := rc.ListResourceTemplates(ctx)
			for _, it := range items {
				var t mcp.ResourceTemplate
				if e := json.Unmarshal(it, &t); e != nil || t.URITemplate == nil {
					f.b.log.Debug("a resource template the MCP endpoint cannot serve", zap.String("server", st.cfg.Name), zap.Error(e))
					continue
				}
				if f.prefixed {
					wrapped, e := uritemplate.New(f.wrapURI(st, t.URITemplate.Raw()))
					if e != nil {
						continue
					}
					t.URITemplate = &mcp.URITemplate{Template: wrapped}
				}
				l.templates = append(l.templates, t)
			}
			return err
		})
	case mcp.MethodPromptsList:
		return f.gatherPrompts(ctx, l)
	case mcp.MethodPromptsGet:
		if _, ok := f.prompts.Load().byName[m.Params.Name]; !ok {
			return f.gatherPrompts(ctx, nil)
		}
	case mcp.MethodCompletionComplete:
		if m.Params.Ref.Type == "ref/prompt" {
			if _, ok := f.prompts.Load().byName[m.Params.Ref.Name]; !ok {
				return f.gatherPrompts(ctx, nil)
			}
		}
	case mcp.MethodResourcesSubscribe, mcp.MethodResourcesUnsubscribe:
		return f.subscribe(ctx, mcp.MCPMethod(m.Method), m.Params.URI)
	case mcp.MethodResourcesRead:
		if !anyURI.URITemplate.Regexp().MatchString(m.Params.URI) {
			f.registerOdd(m.Params.URI)
		}
	}
	return nil
}

// gatheredMethods are the prefixes of the methods gather looks at.
var gatheredMethods = [][]byte{[]byte(`"resources/`), []byte(`"prompts/`), []byte(`"completion/`)}

// mayGather reports whether a message may be of a method gather looks at,
// without parsing it (a tools/call's arguments may be large).
func mayGather(raw []byte) bool {
	for _, m := range gatheredMethods {
		if bytes.Contains(raw, m) {
			return true
		}
	}
	return false
}

// registerOdd registers uri, which anyURI does not match, as a resource
// read through the face.
func (f *mcpFace) registerOdd(uri string) {
	f.oddMu.Lock()
	defer f.oddMu.Unlock()
	if f.odd[uri] {
		return
	}
	if len(f.odd) >= maxOddURIs || f.odd == nil {
		for u := range f.odd {
			f.mcp.RemoveResource(u)
		}
		f.odd = map[string]bool{}
	}
	f.odd[uri] = true
	f.mcp.AddResource(mcp.Resource{URI: uri, Name: uri}, f.readResource)
}

// gatherPrompts lists the prompts of the face's servers the caller may
// use into l (nil: only to register them), and registers their names.
func (f *mcpFace) gatherPrompts(ctx context.Context, l *faceLists) error {
	listed := make([][]prompt, len(f.servers))
	var items [][]mcp.Prompt
	if l != nil {
		items = make([][]mcp.Prompt, len(f.servers))
	}
	err := f.gatherList(ctx, openapi.ListPrompts, "prompts/list", func(ctx context.Context, i int, st *serverState, rc ResourceCaller) error {
		raws, err := rc.ListPrompts(ctx)
		for _, it := range raws {
			var p prompt
			var mp mcp.Prompt
			if json.Unmarshal(it, &p) != nil || json.Unmarshal(it, &mp) != nil {
				continue
			}
			listed[i] = append(listed[i], p)
			if l != nil {
				items[i] = append(items[i], mp)
			}
		}
		if err == nil && listed[i] == nil {
			listed[i] = []prompt{} // listed, none
		}
		return err
	})
	names := f.registerPrompts(listed)
	if l != nil {
		for i := range f.servers {
			for j, p := range items[i] {
				p.Name = names[i][j]
				l.prompts = append(l.prompts, p)
			}
		}
	}
	return err
}

// registerPrompts registers the prompts of the servers listed (indexed as
// the face's servers; nil for one not listed, whose registered prompts
// stay) and returns the names the face gives those listed.
func (f *mcpFace) registerPrompts(listed [][]prompt) [][]string {
	f.promptMu.Lock()
	defer f.promptMu.Unlock()
	cur := f.prompts.Load()
	next := &facePrompts{byName: map[string]facePrompt{}, listed: make([][]prompt, len(f.servers)), names: make([][]string, len(f.servers))}
	var namer openapi.Namer
	changed := false
	for i, st := range f.servers {
		next.listed[i] = listed[i]
		if listed[i] == nil {
			next.listed[i] = cur.listed[i]
		}
		for _, p := range next.listed[i] {
			name := p.Name
			if f.prefixed {
				name = namer.OperationID(st.cfg.Name, p.Name)
			}
			next.byName[name] = facePrompt{st: st, prompt: p}
			next.names[i] = append(next.names[i], name)
		}
		changed = changed || !slices.Equal(next.names[i], cur.names[i])
	}
	f.prompts.Store(next)
	if changed {
		var reg []server.ServerPrompt
		for name := range next.byName {
			reg = append(reg, server.ServerPrompt{Prompt: mcp.Prompt{Name: name}, Handler: f.getPrompt})
		}
		f.mcp.SetPrompts(reg...)
	}
	return next.names
}

// gatherList asks each server of the face that serves k to the caller for
// a list, through add. Servers that do not serve it are left out; when
// some do and none gives its list, the request is refused with why (in a
// face of several servers, those that fail are logged and left out).
func (f *mcpFace) gatherList(ctx context.Context, k openapi.EndpointKind, method string, add func(ctx context.Context, i int, st *serverState, rc ResourceCaller) error) error {
	var (
		failed []string
		first  error // the error of the first server that failed
	)
	tried := 0
	for i, st := range f.servers {
		base := baseOf(ctx) + f.prefixOf(st)
		rc, e := f.b.endpointOf(ctx, st, k, base)
		if e != nil && (e.Status == http.StatusNotFound || e.Status == http.StatusForbidden || e.Status == http.StatusNotImplemented) {
			continue
		}
		tried++
		if e == nil {
			e = f.serverRequest(ctx, st, method, "", func(ctx context.Context) error { return add(ctx, i, st, rc) })
		}
		if e == nil {
			continue
		}
		if e == clientGone {
			return context.Canceled
		}
		if first == nil {
			first = faceErr(ctx, e)
		}
		failed = append(failed, (&faceError{e: e}).text())
	}
	if len(failed) == 1 && tried == 1 {
		return first // a server's JSON-RPC error keeps its code
	}
	if len(failed) > 0 && len(failed) == tried {
		return errors.New(strings.Join(failed, "; "))
	}
	if len(failed) > 0 {
		f.b.log.Warn("servers left out of an MCP list", zap.String("method", method), zap.Strings("errors", failed))
	}
	return nil
}

// serverRequest runs one request to a server, do, with the bookkeeping of
// the REST face's: the server's concurrency cap and timeout, and the
// audit line ("server request" with the MCP method).
func (f *mcpFace) serverRequest(ctx context.Context, st *serverState, method, name string, do func(ctx context.Context) error) *httpError {
	start := time.Now()
	e := f.b.exchange(ctx, st, baseOf(ctx)+f.prefixOf(st), method, name, do)
	if f.b.audit != nil {
		rec := auditRecord{face: FaceMCP, server: st.cfg.Name, outcome: OutcomeOK, status: http.StatusOK, took: time.Since(start)}
		if e != nil {
			rec.outcome, rec.status = e.Outcome, e.Status
			if rec.outcome == "" {
				rec.outcome = OutcomeRejected
			}
		}
		auditLine(ctx, f.b.audit, rec, "server request", zap.String("method", method))
	}
	return e
}

// use returns the ResourceCaller of st for endpoint k and the caller of
// ctx, or the error to answer with.
func (f *mcpFace) use(ctx context.Context, st *serverState, k openapi.EndpointKind) (ResourceCaller, error) {
	rc, e := f.b.endpointOf(ctx, st, k, baseOf(ctx)+f.prefixOf(st))
	if e != nil {
		return nil, faceErr(ctx, e)
	}
	return rc, nil
}

// wrapURI is the URI the face gives uri of server st.
func (f *mcpFace) wrapURI(st *serverState, uri string) string {
	if !f.prefixed {
		return uri
	}
	return URIScheme + "://" + st.cfg.Name + "/" + uri
}

// unwrapURI returns the server and the server's URI of a URI the face
// gave (wrapURI).
func (f *mcpFace) unwrapURI(uri string) (*serverState, string, error) {
	if !f.prefixed {
		return f.servers[0], uri, nil
	}
	prefix := URIScheme + "://"
	if len(uri) > len(prefix) && strings.EqualFold(uri[:len(prefix)], prefix) {
		name, rest, ok := strings.Cut(uri[len(prefix):], "/")
		for _, st := range f.servers {
			if ok && st.cfg.Name == name {
				return st, rest, nil
			}
		}
	}
	names := make([]string, len(f.servers))
	for i, st := range f.servers {
		names[i] = st.cfg.Name
	}
	return nil, "", fmt.Errorf("resource %q is not of a server of this endpoint: its URIs are %s://<server>/<the server's URI>, the servers being %s",
		uri, URIScheme, strings.Join(names, ", "))
}

// readResource reads a resource of a face's server.
func (f *mcpFace) readResource(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
	st, uri, err := f.unwrapURI(req.Params.URI)
	if err != nil {
		return nil, err
	}
	rc, err := f.use(ctx, st, openapi.ReadResource)
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	if e := f.serverRequest(ctx, st, "resources/read", uri, func(ctx context.Context) (err error) {
		raw, err = rc.ReadResource(ctx, uri)
		return err
	}); e != nil {
		if e != clientGone {
			e.Detail.Message += fmt.Sprintf(" (resource %q)", uri)
		}
		return nil, faceErr(ctx, e)
	}
	if int64(len(raw)) > f.b.maxResourceBytes() {
		return nil, faceErr(ctx, resourceTooLarge(st.cfg, uri, f.b.maxResourceBytes()))
	}
	var res struct {
		Contents []map[string]json.RawMessage `json:"contents"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return nil, fmt.Errorf("server %q answered resources/read of %q with a result that is not one: %w", st.cfg.Name, uri, err)
	}
	out := make([]mcp.ResourceContents, len(res.Contents))
	for i, c := range res.Contents {
		var u string
		if f.prefixed && json.Unmarshal(c["uri"], &u) == nil {
			c["uri"] = mustJSON(f.wrapURI(st, u))
		}
		out[i] = rawResourceContents{raw: mustJSON(c)}
	}
	return out, nil
}

// rawResourceContents is an item of a resources/read result passed on as
// the server sent it (but for its URI). It embeds a TextResourceContents
// only to be an mcp.ResourceContents.
type rawResourceContents struct {
	mcp.TextResourceContents
	raw json.RawMessage
}

// MarshalJSON returns the item as the server sent it.
func (c rawResourceContents) MarshalJSON() ([]byte, error) { return c.raw, nil }

// getPrompt gets a prompt of a face's server.
func (f *mcpFace) getPrompt(ctx context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
	fp, ok := f.prompts.Load().byName[req.Params.Name]
	if !ok { // the prompts changed since mcp-go looked it up
		return nil, fmt.Errorf("prompt %q is not listed any more; list the prompts again", req.Params.Name)
	}
	st := fp.st
	hooks := upstream.HooksFrom(ctx)
	round, err := f.asking(ctx, requesterOf(ctx), st.cfg.Name, fp.prompt.Name, req.Params.MultiRoundTripParams, &hooks)
	if err != nil {
		return nil, paramsErr(ctx, fmt.Sprintf("prompt %q: %v", req.Params.Name, err))
	}
	ctx = upstream.WithHooks(ctx, &hooks)
	rc, err := f.use(ctx, st, openapi.GetPrompt)
	if err != nil {
		return nil, err
	}
	given := make(map[string]any, len(req.Params.Arguments))
	for k, v := range req.Params.Arguments {
		given[k] = v
	}
	args, e := promptArgs(st.cfg, &fp.prompt, given)
	if e != nil {
		return nil, faceErr(ctx, e)
	}
	out, e, asked := f.run(ctx, round, st, fp.prompt.Name, func(ctx context.Context) (any, *httpError) {
		var (
			raw json.RawMessage
			ir  *upstream.InputRequiredError
		)
		e := f.serverRequest(ctx, st, "prompts/get", fp.prompt.Name, func(ctx context.Context) (err error) {
			raw, err = rc.GetPrompt(ctx, fp.prompt.Name, args)
			if round != nil && errors.As(err, &ir) {
				return nil // the client is asked
			}
			return err
		})
		if ir != nil && e == nil {
			return ir, nil
		}
		return raw, e
	})
	switch {
	case e != nil:
		return nil, faceErr(ctx, e)
	case asked != nil:
		return &mcp.GetPromptResult{Result: mcp.Result{ResultType: mcp.ResultTypeInputRequired}, MultiRoundTripResult: *asked}, nil
	}
	raw, _ := out.(json.RawMessage)
	var wire struct {
		Description string `json:"description"`
		Messages    []struct {
			Role    mcp.Role        `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
		Meta json.RawMessage `json:"_meta"`
	}
	if err := json.Unmarshal(raw, &wire); err != nil {
		return nil, fmt.Errorf("server %q answered prompts/get of %q with a result that is not one: %w", st.cfg.Name, fp.prompt.Name, err)
	}
	res := &mcp.GetPromptResult{Description: wire.Description, Messages: make([]mcp.PromptMessage, len(wire.Messages))}
	for i, m := range wire.Messages {
		res.Messages[i] = mcp.PromptMessage{Role: m.Role, Content: rawContent{raw: m.Content}}
	}
	if m := nonNullJSON(wire.Meta); m != nil {
		var meta mcp.Meta
		if json.Unmarshal(m, &meta) == nil {
			res.Meta = &meta
		}
	}
	return res, nil
}

// faceCompletions completes the arguments of the face's prompts and
// resource templates.
type faceCompletions struct{ f *mcpFace }

// CompletePromptArgument completes an argument of a prompt.
func (c faceCompletions) CompletePromptArgument(ctx context.Context, name string, arg mcp.CompleteArgument, cctx mcp.CompleteContext) (*mcp.Completion, error) {
	fp, ok := c.f.prompts.Load().byName[name]
	if !ok {
		return nil, fmt.Errorf("no prompt %q; list the prompts for their names", name)
	}
	if _, err := c.f.use(ctx, fp.st, openapi.GetPrompt); err != nil {
		return nil, err
	}
	return c.f.complete(ctx, fp.st, map[string]string{"type": "ref/prompt", "name": fp.prompt.Name}, arg, cctx)
}

// CompleteResourceArgument completes a variable of a resource template.
func (c faceCompletions) CompleteResourceArgument(ctx context.Context, uri string, arg mcp.CompleteArgument, cctx mcp.CompleteContext) (*mcp.Completion, error) {
	st, orig, err := c.f.unwrapURI(uri)
	if err != nil {
		return nil, err
	}
	if _, err := c.f.use(ctx, st, openapi.ReadResource); err != nil {
		return nil, err
	}
	return c.f.complete(ctx, st, map[string]string{"type": "ref/resource", "uri": orig}, arg, cctx)
}

// complete asks server st for completions of ref's argument.
func (f *mcpFace) complete(ctx context.Context, st *serverState, ref map[string]string, arg mcp.CompleteArgument, cctx mcp.CompleteContext) (*mcp.Completion, error) {
	rc, err := f.use(ctx, st, openapi.Complete)
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	if e := f.serverRequest(ctx, st, "completion/complete", arg.Name, func(ctx context.Context) (err error) {
		raw, err = rc.Complete(ctx, completion(ref, arg.Name, arg.Value, cctx.Arguments))
		return err
	}); e != nil {
		return nil, faceErr(ctx, e)
	}
	var res struct {
		Completion mcp.Completion `json:"completion"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return nil, fmt.Errorf("server %q answered completion/complete with a result that is not one: %w", st.cfg.Name, err)
	}
	return &res.Completion, nil
}

// faceExtras is the state of a face's resources and prompts.
type faceExtras struct {
	promptMu sync.Mutex // serializes registering prompts
	prompts  atomic.Pointer[facePrompts]

	oddMu sync.Mutex
	odd   map[string]bool // URIs registered for reads
}

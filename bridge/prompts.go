package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/openapi"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/internal/schema"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// prompt is what the bridge reads of a listed prompt.
type prompt struct {
	Name      string           `json:"name"`
	Arguments []promptArgument `json:"arguments"`
}

// promptArgument is an argument of a listed prompt.
type promptArgument struct {
	Name     string `json:"name"`
	Required bool   `json:"required"`
}

// serveGetPrompt renders a prompt with the arguments of the body, a JSON
// object of strings checked against the prompt's listed arguments.
func (b *Bridge) serveGetPrompt(w http.ResponseWriter, r *http.Request, p *page, base string) *httpError {
	st, s := p.server, p.server.cfg
	rc, e := b.endpoint(w, r, st, openapi.GetPrompt, base)
	if e != nil {
		return e
	}
	name := r.URL.Path[len(p.prefix)+len("/prompts/"):]
	held := hold{b: &b.bodies}
	defer held.release()
	body, e := readArgs(w, r, b.cfg.MaxBodyBytes, &held)
	if e != nil {
		return ofServer(e, s)
	}
	var given map[string]any
	if err := json.Unmarshal(body, &given); err != nil {
		return invalidArgs(http.StatusBadRequest, "the body is not a JSON object: "+err.Error())
	}

	var listed []json.RawMessage
	if e := b.exchange(r.Context(), st, base, "prompts/list", name, func(ctx context.Context) (err error) {
		listed, err = rc.ListPrompts(ctx)
		return err
	}); e != nil {
		return e
	}
	var pr *prompt
	var names []string
	for _, raw := range listed {
		var c prompt
		if json.Unmarshal(raw, &c) != nil {
			continue
		}
		names = append(names, c.Name)
		if c.Name == name {
			pr = &c
		}
	}
	if pr == nil {
		msg := fmt.Sprintf("server %q has no prompt %q; see GET prompts for its prompts", s.Name, name)
		if len(names) <= 20 {
			msg = fmt.Sprintf("server %q has no prompt %q; its prompts are: %s", s.Name, name, strings.Join(names, ", "))
		}
		return &httpError{Status: http.StatusNotFound, Detail: errorDetail{Server: s.Name, Message: msg}}
	}
	args, e := promptArgs(s, pr, given)
	if e != nil {
		return e
	}

	var raw json.RawMessage
	if e := b.exchange(r.Context(), st, base, "prompts/get", name, func(ctx context.Context) (err error) {
		raw, err = rc.GetPrompt(ctx, name, args)
		return err
	}); e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, raw)
	return nil
}

// promptArgs checks the arguments given to prompt pr: strings, each one
// of its arguments, every required one present. They come as the body
// itself or, as the documents declare them, as its "arguments" (when the
// prompt takes no argument of that name). A "name" holding the prompt's
// name is dropped when the prompt takes no argument of that name: Open
// WebUI sends the path's parameters in the body too.
func promptArgs(s *ServerConfig, pr *prompt, given map[string]any) (map[string]string, *httpError) {
	takes := func(n string) bool {
		return slices.ContainsFunc(pr.Arguments, func(a promptArgument) bool { return a.Name == n })
	}
	if v, ok := given["name"]; ok && v == pr.Name && !takes("name") {
		delete(given, "name")
	}
	// The document's form: {"arguments": {...}}.
	if wrapped, ok := given["arguments"].(map[string]any); ok && len(given) == 1 && !takes("arguments") {
		given = wrapped
	}
	args := make(map[string]string, len(given))
	var problems []schema.ArgumentError
	for k, v := range given {
		str, isString := v.(string)
		switch {
		case !takes(k):
			problems = append(problems, schema.ArgumentError{Path: "/" + k, Message: "the prompt takes no such argument"})
		case !isString:
			problems = append(problems, schema.ArgumentError{Path: "/" + k, Message: "a prompt's arguments are strings"})
		default:
			args[k] = str
		}
	}
	var missing []string
	for _, a := range pr.Arguments {
		if _, ok := given[a.Name]; a.Required && !ok {
			missing = append(missing, a.Name)
			problems = append(problems, schema.ArgumentError{Path: "/" + a.Name, Message: "required argument missing"})
		}
	}
	if len(problems) == 0 {
		return args, nil
	}
	slices.SortFunc(problems, func(a, b schema.ArgumentError) int { return strings.Compare(a.Path, b.Path) })
	msg := fmt.Sprintf("invalid arguments for prompt %q", pr.Name)
	if len(missing) > 0 {
		msg += ": missing " + strings.Join(missing, ", ")
	}
	e := invalidArgs(http.StatusUnprocessableEntity, msg)
	e.Detail.Server, e.Detail.Errors = s.Name, problems
	return nil, e
}

// ofServer is e naming server s; clientGone, shared, stays as it is.
func ofServer(e *httpError, s *ServerConfig) *httpError {
	if e != clientGone {
		e.Detail.Server = s.Name
	}
	return e
}

// completeRequest is the body of POST complete.
type completeRequest struct {
	Ref struct {
		Type string `json:"type"`
		Name string `json:"name"`
		URI  string `json:"uri"`
	} `json:"ref"`
	Argument *struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	} `json:"argument"`
	Context struct {
		Arguments map[string]string `json:"arguments"`
	} `json:"context"`
}

// serveComplete asks the server for completions of an argument of a
// prompt or a resource template.
func (b *Bridge) serveComplete(w http.ResponseWriter, r *http.Request, p *page, base string) *httpError {
	st, s := p.server, p.server.cfg
	rc, e := b.endpoint(w, r, st, openapi.Complete, base)
	if e != nil {
		return e
	}
	held := hold{b: &b.bodies}
	defer held.release()
	body, e := readArgs(w, r, b.cfg.MaxBodyBytes, &held)
	if e != nil {
		return ofServer(e, s)
	}
	var req completeRequest
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	bad := func(msg string) *httpError {
		e := invalidArgs(http.StatusUnprocessableEntity, msg+`; send {"ref": {"type": "ref/prompt", "name": ...} or {"type": "ref/resource", "uri": ...}, `+
			`"argument": {"name": ..., "value": ...}, "context": {"arguments": {...}}}`)
		e.Detail.Server = s.Name
		return e
	}
	if err := dec.Decode(&req); err != nil {
		return bad("the body is not a completion request: " + err.Error())
	}
	v, _ := st.current(b.log)
	ref := map[string]string{"type": req.Ref.Type}
	switch req.Ref.Type {
	case "ref/prompt":
		if req.Ref.Name == "" {
			return bad("ref/prompt needs the prompt's name")
		}
		if v == nil || !v.serves(openapi.GetPrompt) {
			return bad(fmt.Sprintf("server %q serves no prompts here", s.Name))
		}
		ref["name"] = req.Ref.Name
	case "ref/resource":
		if req.Ref.URI == "" {
			return bad("ref/resource needs the resource template's uri")
		}
		if v == nil || !v.serves(openapi.ReadResource) {
			return bad(fmt.Sprintf("server %q serves no resources here", s.Name))
		}
		ref["uri"] = req.Ref.URI
	default:
		return bad(fmt.Sprintf("ref.type %q is neither ref/prompt nor ref/resource", req.Ref.Type))
	}
	if req.Argument == nil || req.Argument.Name == "" {
		return bad("argument.name is missing")
	}
	c := completion(ref, req.Argument.Name, req.Argument.Value, req.Context.Arguments)
	var raw json.RawMessage
	if e := b.exchange(r.Context(), st, base, "completion/complete", req.Argument.Name, func(ctx context.Context) (err error) {
		raw, err = rc.Complete(ctx, c)
		return err
	}); e != nil {
		return e
	}
	writeJSON(w, http.StatusOK, raw)
	return nil
}

// completion is the request for completions of argument arg of ref (its
// type and its name or uri), which holds value so far; given holds the
// values of the arguments already given.
func completion(ref map[string]string, arg, value string, given map[string]string) upstream.Completion {
	refJSON, _ := json.Marshal(ref)
	return upstream.Completion{Ref: refJSON, Argument: arg, Value: value, Context: given}
}

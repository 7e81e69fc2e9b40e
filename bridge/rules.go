package bridge

import (
	"context"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"go.uber.org/zap"
)

// Rule grants tools to callers (see Access.Rules).
type Rule struct {
	// Subjects are the callers the rule grants to: "user:<id>",
	// "role:<role>", "group:<group>", "email:<email>" (compared without
	// regard to case), "anonymous" (a caller without an identity) or "*"
	// (any caller, identified or not).
	Subjects []string
	// Tools are glob patterns over "<server>/<tool>": the part before the
	// first "/" is matched against the server's name and the rest against
	// the tool's, each with path.Match, so that "*" matches any run of
	// characters but "/". A tool part of "*" alone matches every tool of
	// the server, and "*" alone every tool of every server.
	Tools []string
}

// Subjects of a rule that take no value.
const (
	// SubjectAnyone is any caller, identified or not.
	SubjectAnyone = "*"
	// SubjectAnonymous is a caller without an identity.
	SubjectAnonymous = "anonymous"
)

// The kinds of subjects that take a value, as "<kind>:<value>".
var subjectKinds = []string{"user", "role", "group", "email"}

// Validate reports a rule that grants nothing to nobody, a subject that is
// none of the kinds a rule takes, or a pattern that is not one; the error
// names the subject or the pattern at fault.
func (r Rule) Validate() error {
	if len(r.Subjects) == 0 {
		return fmt.Errorf("a rule needs a subject: %s", subjectSyntax)
	}
	if len(r.Tools) == 0 {
		return fmt.Errorf("a rule needs tool patterns, such as time/* or */read_*, or * for every tool")
	}
	for _, s := range r.Subjects {
		if _, _, err := parseSubject(s); err != nil {
			return err
		}
	}
	for _, p := range r.Tools {
		if _, err := parsePattern(p); err != nil {
			return err
		}
	}
	return nil
}

const subjectSyntax = "user:<id>, role:<role>, group:<group>, email:<email>, anonymous or *"

// parseSubject returns a subject's kind and value; "*" and "anonymous"
// have no value.
func parseSubject(s string) (kind, value string, err error) {
	if s == SubjectAnyone || s == SubjectAnonymous {
		return s, "", nil
	}
	kind, value, ok := strings.Cut(s, ":")
	if !ok || !slices.Contains(subjectKinds, kind) {
		return "", "", fmt.Errorf("subject %q: want %s", s, subjectSyntax)
	}
	if value == "" {
		return "", "", fmt.Errorf("subject %q names no %s", s, kind)
	}
	if kind == "email" {
		value = strings.ToLower(value)
	}
	return kind, value, nil
}

// pattern is a parsed tool pattern.
type pattern struct {
	text         string
	all          bool   // "*": every tool of every server
	server, tool string // path.Match patterns; tool "*" matches every tool
}

// parsePattern parses "<server>/<tool>" or "*".
func parsePattern(p string) (pattern, error) {
	if p == "*" {
		return pattern{text: p, all: true}, nil
	}
	server, tool, ok := strings.Cut(p, "/")
	if !ok || server == "" || tool == "" {
		return pattern{}, fmt.Errorf("tool pattern %q: want <server>/<tool>, such as time/* or */read_*, or * for every tool "+
			"(at a single-server mount too, the server's name comes first)", p)
	}
	for _, part := range []string{server, tool} {
		if _, err := path.Match(part, ""); err != nil {
			return pattern{}, fmt.Errorf("tool pattern %q: %q is not a valid glob: %w", p, part, err)
		}
	}
	return pattern{text: p, server: server, tool: tool}, nil
}

// spans reports whether the pattern may match tools of the server.
func (p pattern) spans(server string) bool {
	if p.all {
		return true
	}
	ok, _ := path.Match(p.server, server)
	return ok
}

// match reports whether the pattern matches the tool of the server.
func (p pattern) match(server, tool string) bool {
	if !p.spans(server) {
		return false
	}
	if p.all || p.tool == "*" {
		return true
	}
	ok, _ := path.Match(p.tool, tool)
	return ok
}

// maxGrants bounds the distinct sets of rules a policy keeps the grants
// of; past it, the cache starts over.
const maxGrants = 1024

// policy enforces Access.Rules. A caller's mask has bit i set when rule
// i's subjects match the caller; the grant of each distinct mask is
// computed once, and what it allows of each server once per listing.
type policy struct {
	rules    [][]pattern // by rule
	patterns []pattern   // every distinct pattern, for the warnings
	size     int         // bytes of a mask

	anyone, anonymous []byte
	users, roles      map[string][]byte
	groups, emails    map[string][]byte

	vary    string // the Vary of answers that depend on the caller
	servers int    // of the bridge

	grants atomic.Pointer[map[string]*grant] // by mask; copied on write
	mu     sync.Mutex                        // serializes adding grants
}

// newPolicy compiles validated rules; nil for none.
func newPolicy(rules []Rule, vary []string, servers []*ServerConfig, log *zap.Logger) (*policy, error) {
	if len(rules) == 0 {
		return nil, nil
	}
	p := &policy{size: (len(rules) + 7) / 8, servers: len(servers), vary: strings.Join(vary, ", "),
		users: map[string][]byte{}, roles: map[string][]byte{}, groups: map[string][]byte{}, emails: map[string][]byte{}}
	p.anyone, p.anonymous = make([]byte, p.size), make([]byte, p.size)
	seen := map[string]bool{}
	for i, r := range rules {
		if err := r.Validate(); err != nil {
			return nil, fmt.Errorf("access rule %d: %w", i+1, err)
		}
		for _, s := range r.Subjects {
			kind, value, _ := parseSubject(s)
			m := p.subjectMask(kind, value)
			m[i/8] |= 1 << (i % 8)
		}
		var pats []pattern
		for _, t := range r.Tools {
			pat, _ := parsePattern(t)
			pats = append(pats, pat)
			if !seen[t] {
				seen[t] = true
				p.patterns = append(p.patterns, pat)
			}
		}
		p.rules = append(p.rules, pats)
	}
	p.grants.Store(&map[string]*grant{})
	p.warnUnknownServers(servers, log)
	return p, nil
}

// subjectMask returns the mask of the rules naming a subject, making it
// at its first rule.
func (p *policy) subjectMask(kind, value string) []byte {
	var byValue map[string][]byte
	switch kind {
	case SubjectAnyone:
		return p.anyone
	case SubjectAnonymous:
		return p.anonymous
	case "user":
		byValue = p.users
	case "role":
		byValue = p.roles
	case "group":
		byValue = p.groups
	default:
		byValue = p.emails
	}
	if byValue[value] == nil {
		byValue[value] = make([]byte, p.size)
	}
	return byValue[value]
}

// warnUnknownServers warns of the patterns whose server part names no
// server of the mount.
func (p *policy) warnUnknownServers(servers []*ServerConfig, log *zap.Logger) {
	for _, pat := range p.patterns {
		if !slices.ContainsFunc(servers, func(s *ServerConfig) bool { return pat.spans(s.Name) }) {
			names := make([]string, len(servers))
			for i, s := range servers {
				names[i] = s.Name
			}
			log.Warn("access pattern names no server of this mount", zap.String("pattern", pat.text),
				zap.String("server", pat.server), zap.Strings("servers", names))
		}
	}
}

// or sets in m the bits set in x, which is nil or as long as m.
func or(m, x []byte) {
	for i := range x {
		m[i] |= x[i]
	}
}

// mask returns the mask of the rules whose subjects match the caller
// ctx, a request's, carries, in buf when it is large enough.
func (p *policy) mask(ctx context.Context, buf []byte) []byte {
	var m []byte
	if len(buf) >= p.size {
		m = buf[:p.size]
	} else {
		m = make([]byte, p.size)
	}
	copy(m, p.anyone)
	id, ok := IdentityFrom(ctx)
	if !ok {
		or(m, p.anonymous)
		return m
	}
	or(m, p.users[id.ID])
	if id.Role != "" {
		or(m, p.roles[id.Role])
	}
	if id.Email != "" && len(p.emails) > 0 {
		var lb [256]byte // identity.MaxValueBytes
		or(m, p.emails[string(lower(id.Email, lb[:]))])
	}
	for _, g := range id.Groups {
		or(m, p.groups[g])
	}
	return m
}

// lower returns s in lower case, in buf when s is ASCII and fits.
func lower(s string, buf []byte) []byte {
	if len(s) > len(buf) {
		return []byte(strings.ToLower(s))
	}
	b := buf[:len(s)]
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= utf8.RuneSelf:
			return []byte(strings.ToLower(s))
		case 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		b[i] = c
	}
	return b
}

// grantOf returns the grant of the caller ctx, a request's, carries.
func (p *policy) grantOf(ctx context.Context) *grant {
	var buf [64]byte // 512 rules without allocating
	m := p.mask(ctx, buf[:])
	if g := (*p.grants.Load())[string(m)]; g != nil {
		return g
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	cur := *p.grants.Load()
	if g := cur[string(m)]; g != nil {
		return g
	}
	g := &grant{servers: make([]atomic.Pointer[granted], p.servers)}
	seen := map[string]bool{}
	for i, pats := range p.rules {
		if m[i/8]&(1<<(i%8)) == 0 {
			continue
		}
		for _, pat := range pats {
			if !seen[pat.text] {
				seen[pat.text] = true
				g.patterns = append(g.patterns, pat)
			}
		}
	}
	next := make(map[string]*grant, len(cur)+1)
	if len(cur) < maxGrants {
		for k, v := range cur {
			next[k] = v
		}
	}
	next[string(m)] = g
	p.grants.Store(&next)
	return g
}

// grant is what the rules of one mask grant.
type grant struct {
	patterns []pattern
	servers  []atomic.Pointer[granted] // by server index, for its latest view
}

// allows reports whether the grant allows the tool of the server.
func (g *grant) allows(server, tool string) bool {
	for _, p := range g.patterns {
		if p.match(server, tool) {
			return true
		}
	}
	return false
}

// spans reports whether the grant may allow any tool of the server.
func (g *grant) spans(server string) bool {
	for _, p := range g.patterns {
		if p.spans(server) {
			return true
		}
	}
	return false
}

// granted is what a grant allows of one view of a server.
type granted struct {
	view *view
	ok   []bool // by route index
	n    int    // of ok
	// key tells the set of routes allowed: grants that allow the same
	// routes of a view share its documents.
	key string
}

// of returns what the grant allows of view v of server s.
func (g *grant) of(s *serverState, v *view) *granted {
	if x := g.servers[s.index].Load(); x != nil && x.view == v {
		return x
	}
	x := &granted{view: v, ok: make([]bool, len(v.routes))}
	key := make([]byte, (len(v.routes)+7)/8)
	for i, rt := range v.routes {
		if g.allows(s.cfg.Name, rt.tool.Name) {
			x.ok[i] = true
			x.n++
			key[i/8] |= 1 << (i % 8)
		}
	}
	x.key = string(key)
	g.servers[s.index].Store(x) // another caller may store its own equal one
	return x
}

// routes returns the routes x allows, in listing order.
func (x *granted) routes() []*route {
	out := make([]*route, 0, x.n)
	for i, rt := range x.view.routes {
		if x.ok[i] {
			out = append(out, rt)
		}
	}
	return out
}

// allowed returns what the caller of r may call of view v of server s;
// nil when there are no rules.
func (b *Bridge) allowed(r *http.Request, s *serverState, v *view) *granted {
	if b.policy == nil {
		return nil
	}
	return b.policy.grantOf(r.Context()).of(s, v)
}

// permits reports whether x allows route rt; a nil x allows every route.
func (x *granted) permits(rt *route) bool {
	return x == nil || x.ok[rt.index]
}

// notGranted is the answer to a call of a tool the caller is not granted.
// It names the tool, never the rules or the caller.
func notGranted(s *serverState, rt *route) *httpError {
	return &httpError{Status: http.StatusForbidden, Detail: errorDetail{
		Message: fmt.Sprintf("the tool %s/%s is not granted to this caller", s.cfg.Name, rt.tool.Name),
	}}
}

// grantsNothingOf reports whether the caller of r may call no tool of
// server s, whatever its tools: with rules, a caller none of whose
// patterns name the server.
func (b *Bridge) grantsNothingOf(r *http.Request, s *serverState) bool {
	return b.policy != nil && !b.policy.grantOf(r.Context()).spans(s.cfg.Name)
}

// serverNotGranted is the answer to a call of a tool of a server none of
// whose tools the caller is granted.
func serverNotGranted(s *serverState) *httpError {
	return &httpError{Status: http.StatusForbidden, Detail: errorDetail{
		Message: fmt.Sprintf("no tool of server %q is granted to this caller", s.cfg.Name),
	}}
}

// varyByCaller adds to an answer that depends on the caller's grant the
// headers that decide the caller, when they are known (documents are
// also private: see serveDocument).
func (b *Bridge) varyByCaller(w http.ResponseWriter) {
	if b.policy != nil && b.policy.vary != "" {
		w.Header().Add("Vary", b.policy.vary)
	}
}

// lint warns, once per listing, of the patterns that match no tool: when
// server s gets view v, each pattern that spans s and matches no tool of
// the servers it spans, once each of them has a listing.
func (p *policy) lint(b *Bridge, s *serverState, v *view) {
	for _, pat := range p.patterns {
		if pat.all || !pat.spans(s.cfg.Name) {
			continue
		}
		var spanned []string
		matched, listed := false, true
		for _, other := range b.cfg.Servers {
			if !pat.spans(other.Name) {
				continue
			}
			spanned = append(spanned, other.Name)
			ov := v
			if st := b.servers[other.Name]; st != s {
				ov = st.view.Load()
			}
			if ov == nil {
				listed = false
				break
			}
			matched = matched || slices.ContainsFunc(ov.routes, func(rt *route) bool { return pat.match(other.Name, rt.tool.Name) })
		}
		if listed && !matched {
			b.log.Warn("access pattern matches no tool", zap.String("pattern", pat.text), zap.Strings("servers", spanned))
		}
	}
}

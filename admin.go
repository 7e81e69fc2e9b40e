package caddymcpo

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI is a module that serves the MCP servers of the running
// configuration on Caddy's admin endpoint, to see how they are doing and to
// restart them or have them list their tools again:
//
//   - GET /mcpo/servers lists every MCP server the running configuration
//     uses, sorted by name then id, as a JSON array. Each server has an id
//     (12 hex digits, stable while its configuration does not change), its
//     name, state (idle, starting, ready, backoff, failed, needs_auth or stopped), endpoint (the
//     command or the URL without secrets), protocol, server (the name and
//     version it reports), tools (how many it listed), in_flight (calls
//     under way), restarts, failures (failed starts since it was last
//     ready), pid (of a stdio server's process), since (when it entered its
//     state), retry_at (when a server in backoff is started again) and
//     last_error.
//   - GET /mcpo/servers/<server> gives one of them.
//   - POST /mcpo/servers/<server>/restart stops the server's session (a
//     stdio server's process) and starts a new one, or cuts short the wait
//     before a server in backoff is started again, or starts again a
//     server that failed too often (failed). It answers 202 Accepted with
//     {"restarted": "<id>"} at once; GET the server to follow it.
//   - POST /mcpo/servers/<server>/refresh has a ready server list its tools
//     again, for servers that do not announce changes to their tools. It
//     answers 202 Accepted with {"refreshed": "<id>"}, or 503 with
//     Retry-After while the server is not ready.
//   - GET /mcpo/servers/<server>/sessions lists the sessions of a server
//     that gives each caller its own (isolation user), sorted by caller
//     ID: id (the caller's), digest (how Caddy's log names the session),
//     state, pid, in_flight, restarts, since, last_use and last_error;
//     the listing session, while it runs, comes last with "listing": true.
//     A shared server answers 409.
//   - DELETE /mcpo/servers/<server>/sessions/<caller id> stops that
//     caller's session of the server; DELETE /mcpo/sessions/<caller id>
//     stops the caller's sessions of every server. The caller's next call
//     starts a new one. They answer 202 Accepted with {"ended": [<server
//     ids>]}, or 404 when the caller has no session there. The caller ID
//     is path-escaped.
//   - DELETE /mcpo/servers/<server>/oauth/users/<caller id>, for a server
//     each caller authorizes for themselves (isolation user with oauth),
//     forgets that caller's OAuth tokens (in memory and in storage) and
//     stops their session: their next call gets the link to authorize
//     again. It answers 200 with {"revoked": "<server id>"}, 404 when the
//     caller had neither a token nor a session, 409 for another server.
//     Such a server's report adds oauth_users: how many callers seen
//     since it started have a token (authorized) and how many do not
//     (unauthorized).
//
// <server> is a server's id, or its name when no other server has that
// name: the same name under two mounts with different configurations
// answers 409 with the ids to choose from. Errors are Caddy's admin API
// errors: a JSON object whose "error" says what went wrong.
//
// The module is part of the admin API whenever Caddy is built with
// caddy-mcpo; it needs no configuration.
type AdminAPI struct {
	pool *pool
	log  *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.mcpo",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Provision sets the module up on the pool of running MCP servers.
func (a *AdminAPI) Provision(ctx caddy.Context) error {
	a.pool = shared
	a.log = ctx.Logger(a)
	return nil
}

// Where the module's endpoints are.
const (
	adminServersPath  = "/mcpo/servers"
	adminSessionsPath = "/mcpo/sessions"
)

// Routes returns the routes of /mcpo/servers and /mcpo/sessions, and
// below.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: adminServersPath, Handler: caddy.AdminHandlerFunc(a.handleList)},
		{Pattern: adminServersPath + "/", Handler: caddy.AdminHandlerFunc(a.handleServer)},
		{Pattern: adminSessionsPath + "/", Handler: caddy.AdminHandlerFunc(a.handleCaller)},
	}
}

// adminReport is one MCP server as the admin API reports it: as a
// mount's /health report does, with its id.
type adminReport struct {
	ID string `json:"id"`
	bridge.ServerReport
	// OAuthUsers counts the callers of a server each caller authorizes.
	OAuthUsers *oauthUsers `json:"oauth_users,omitempty"`
}

// oauthUsers counts the callers of a server each caller authorizes, among
// those seen since it started: with a usable token, and without.
type oauthUsers struct {
	Authorized   int `json:"authorized"`
	Unauthorized int `json:"unauthorized"`
}

// newAdminReport describes a pooled server.
func newAdminReport(s serverSnapshot) adminReport {
	r := adminReport{ID: s.id, ServerReport: bridge.Report(s.status)}
	r.CountSessions(s.entry)
	if u := s.entry.users; u != nil && u.auth != nil {
		r.OAuthUsers = &oauthUsers{}
		r.OAuthUsers.Authorized, r.OAuthUsers.Unauthorized = u.auth.users.Counts()
	}
	return r
}

// handleList answers GET /mcpo/servers with every server of the pool.
func (a *AdminAPI) handleList(w http.ResponseWriter, r *http.Request) error {
	if err := allowMethod(w, r, http.MethodGet); err != nil {
		return err
	}
	servers := a.pool.snapshot()
	out := make([]adminReport, 0, len(servers))
	for _, s := range servers {
		out = append(out, newAdminReport(s))
	}
	return writeAdminJSON(w, http.StatusOK, out)
}

// handleServer answers the paths below /mcpo/servers/: one server, its
// restart and refresh actions, and its callers' sessions.
func (a *AdminAPI) handleServer(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimPrefix(r.URL.EscapedPath(), adminServersPath+"/")
	if rest == "" {
		return a.handleList(w, r)
	}
	ref, action, _ := strings.Cut(rest, "/")
	action, caller, ok := strings.Cut(action, "/")
	if ok && action == "sessions" && caller != "" {
		action = "sessions/"
	}
	if id, found := strings.CutPrefix(caller, "users/"); ok && action == "oauth" && found && id != "" {
		action, caller = "oauth/users/", id
	}
	method, known := map[string]string{
		"": http.MethodGet, "restart": http.MethodPost, "refresh": http.MethodPost,
		"sessions": http.MethodGet, "sessions/": http.MethodDelete, "oauth/users/": http.MethodDelete,
	}[action]
	if !known || (ok && action != "sessions/" && action != "oauth/users/") {
		return caddy.APIError{
			HTTPStatus: http.StatusNotFound,
			Err: fmt.Errorf("no such endpoint: %s; a server has %s/<server>, .../restart, .../refresh, .../sessions, "+
				".../sessions/<caller id> and .../oauth/users/<caller id>", r.URL.Path, adminServersPath),
		}
	}
	if err := allowMethod(w, r, method); err != nil {
		return err
	}
	ref, err := unescapeSegment(ref)
	if err != nil {
		return err
	}
	s, err := a.find(ref)
	if err != nil {
		return err
	}
	switch action {
	case "restart":
		return a.restart(w, s)
	case "refresh":
		return a.refresh(w, s)
	case "sessions":
		return a.sessions(w, s)
	case "sessions/":
		return a.endSessions(w, caller, []serverSnapshot{s})
	case "oauth/users/":
		return a.revoke(w, r, caller, s)
	default:
		return writeAdminJSON(w, http.StatusOK, newAdminReport(s))
	}
}

// handleCaller answers DELETE /mcpo/sessions/<caller id>: the caller's
// sessions of every server end.
func (a *AdminAPI) handleCaller(w http.ResponseWriter, r *http.Request) error {
	caller := strings.TrimPrefix(r.URL.EscapedPath(), adminSessionsPath+"/")
	if caller == "" {
		return caddy.APIError{
			HTTPStatus: http.StatusNotFound,
			Err:        fmt.Errorf("no such endpoint: %s; a caller's sessions are at %s/<caller id>", r.URL.Path, adminSessionsPath),
		}
	}
	if err := allowMethod(w, r, http.MethodDelete); err != nil {
		return err
	}
	return a.endSessions(w, caller, a.pool.snapshot())
}

// unescapeSegment decodes a path segment of a request.
func unescapeSegment(seg string) (string, error) {
	v, err := url.PathUnescape(seg)
	if err != nil {
		return "", caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("the path segment %q is not escaped properly: %w", seg, err)}
	}
	return v, nil
}

// sessions lists the sessions of a per-user server.
func (a *AdminAPI) sessions(w http.ResponseWriter, s serverSnapshot) error {
	if s.entry.users == nil {
		return caddy.APIError{
			HTTPStatus: http.StatusConflict,
			Err: fmt.Errorf("server %q (%s) is shared by every caller: it has no sessions of callers; isolation user gives each caller one",
				s.status.Name, s.id),
		}
	}
	return writeAdminJSON(w, http.StatusOK, s.entry.users.reports())
}

// endSessions stops the sessions of the caller whose escaped ID is caller
// on the per-user servers among servers.
func (a *AdminAPI) endSessions(w http.ResponseWriter, caller string, servers []serverSnapshot) error {
	id, err := unescapeSegment(caller)
	if err != nil {
		return err
	}
	ended := []string{}
	for _, s := range servers {
		if s.entry.users != nil && s.entry.users.end(id) {
			ended = append(ended, s.id)
		}
	}
	if len(ended) == 0 {
		// The ID stays out of the answer: Caddy logs the admin API's errors.
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("that caller has no session to end")}
	}
	a.log.Info("caller's sessions ended", zap.Strings("servers", ended), zap.String("session", sessionKey(id)[:12]))
	return writeAdminJSON(w, http.StatusAccepted, map[string][]string{"ended": ended})
}

// revoke forgets the OAuth tokens of the caller whose escaped ID is caller
// on a server each caller authorizes, and stops their session.
func (a *AdminAPI) revoke(w http.ResponseWriter, r *http.Request, caller string, s serverSnapshot) error {
	id, err := unescapeSegment(caller)
	if err != nil {
		return err
	}
	if s.entry.users == nil || s.entry.users.auth == nil {
		return caddy.APIError{
			HTTPStatus: http.StatusConflict,
			Err: fmt.Errorf("server %q (%s) is not one each caller authorizes for themselves (isolation user with oauth)",
				s.status.Name, s.id),
		}
	}
	had, err := s.entry.users.revoke(r.Context(), id)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError,
			Err: fmt.Errorf("revoking a caller's authorization of server %s: %w", s.id, err)}
	}
	if !had {
		// The ID stays out of the answer: Caddy logs the admin API's errors.
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: errors.New("that caller has no authorization or session to revoke")}
	}
	a.log.Info("caller's OAuth authorization revoked", zap.String("server", s.status.Name), zap.String("id", s.id),
		zap.String("session", sessionKey(id)[:12]))
	return writeAdminJSON(w, http.StatusOK, map[string]string{"revoked": s.id})
}

// restart restarts a server that was started.
func (a *AdminAPI) restart(w http.ResponseWriter, s serverSnapshot) error {
	switch s.status.State {
	case upstream.StateIdle, upstream.StateStopped:
		return caddy.APIError{
			HTTPStatus: http.StatusConflict,
			Err:        fmt.Errorf("server %q (%s) is %s: only a started server can be restarted", s.status.Name, s.id, s.status.State),
		}
	}
	s.entry.restart()
	a.log.Info("MCP server restart requested", zap.String("server", s.status.Name), zap.String("id", s.id),
		zap.String("state", string(s.status.State)))
	return writeAdminJSON(w, http.StatusAccepted, map[string]string{"restarted": s.id})
}

// refresh has a ready server list its tools again.
func (a *AdminAPI) refresh(w http.ResponseWriter, s serverSnapshot) error {
	if err := s.entry.refresh(); err != nil {
		var unavailable *upstream.UnavailableError
		if errors.As(err, &unavailable) && unavailable.State != upstream.StateIdle && unavailable.State != upstream.StateStopped {
			secs := int(math.Ceil(unavailable.RetryAfter.Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
			return caddy.APIError{
				HTTPStatus: http.StatusServiceUnavailable,
				Err:        fmt.Errorf("refreshing the tools of server %s: %w", s.id, err),
			}
		}
		return caddy.APIError{
			HTTPStatus: http.StatusConflict,
			Err:        fmt.Errorf("refreshing the tools of server %s: %w", s.id, err),
		}
	}
	a.log.Info("MCP server tool refresh requested", zap.String("server", s.status.Name), zap.String("id", s.id))
	return writeAdminJSON(w, http.StatusAccepted, map[string]string{"refreshed": s.id})
}

// find returns the server whose id, or else whose name, is ref: an error
// for Caddy's admin API when there is none, or when several servers have
// that name.
func (a *AdminAPI) find(ref string) (serverSnapshot, error) {
	var named []serverSnapshot
	for _, s := range a.pool.snapshot() {
		if s.id == ref {
			return s, nil
		}
		if s.status.Name == ref {
			named = append(named, s)
		}
	}
	switch len(named) {
	case 0:
		return serverSnapshot{}, caddy.APIError{
			HTTPStatus: http.StatusNotFound,
			Err:        fmt.Errorf("no MCP server has the id or name %q; GET %s lists them", ref, adminServersPath),
		}
	case 1:
		return named[0], nil
	}
	ids := make([]string, len(named))
	for i, s := range named {
		ids[i] = s.id
	}
	return serverSnapshot{}, caddy.APIError{
		HTTPStatus: http.StatusConflict,
		Err: fmt.Errorf("%d MCP servers are named %q (under different mounts or configurations): use one of their ids: %s",
			len(named), ref, strings.Join(ids, ", ")),
	}
}

// allowMethod returns the admin API's 405 error, and sets Allow, unless the
// request's method is method.
func allowMethod(w http.ResponseWriter, r *http.Request, method string) error {
	if r.Method == method {
		return nil
	}
	w.Header().Set("Allow", method)
	return caddy.APIError{
		HTTPStatus: http.StatusMethodNotAllowed,
		Err:        fmt.Errorf("method %s not allowed on %s; use %s", r.Method, r.URL.Path, method),
	}
}

// writeAdminJSON writes v as a JSON response.
func writeAdminJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: fmt.Errorf("encoding the response: %w", err)}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
	return nil
}

// Interface guards.
var (
	_ caddy.Provisioner = (*AdminAPI)(nil)
	_ caddy.AdminRouter = (*AdminAPI)(nil)
)

package bridge

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// ServerReport is one server as the health report and the admin API show
// it.
type ServerReport struct {
	Name     string         `json:"name"`
	State    upstream.State `json:"state"`
	Endpoint string         `json:"endpoint"`
	Protocol string         `json:"protocol,omitempty"`
	Server   string         `json:"server,omitempty"` // the server's own name and version
	Tools    int            `json:"tools"`
	InFlight int            `json:"in_flight"`
	Restarts int            `json:"restarts"`
	Failures int            `json:"failures"`
	PID      int            `json:"pid,omitempty"`
	Since    time.Time      `json:"since"`
	RetryAt  *time.Time     `json:"retry_at,omitempty"`
	// LastMessage is when the server last sent anything, OldestCall when
	// the oldest call under way began: a call older than the last message
	// that keeps growing older tells a stuck server.
	LastMessage *time.Time `json:"last_message,omitempty"`
	OldestCall  *time.Time `json:"oldest_call,omitempty"`
	LastError   string     `json:"last_error,omitempty"`
	// Authorize is the page where an administrator authorizes a server in
	// StateNeedsAuth.
	Authorize string `json:"authorize,omitempty"`
	// Sessions is how many sessions a server that gives each caller its
	// own runs now, MaxSessions how many it may run at once; both are
	// left out for a server every caller shares.
	Sessions    *int `json:"sessions,omitempty"`
	MaxSessions int  `json:"max_sessions,omitempty"`
}

// SessionCounter is a Caller that can give each caller a session of its
// own (a process, or an HTTP session): the health report says how many
// run.
type SessionCounter interface {
	// Sessions returns how many sessions run and how many may run at
	// once; ok is false for a server every caller shares.
	Sessions() (running, max int, ok bool)
}

// CountSessions adds the sessions of c, when it is a SessionCounter giving
// each caller a session of its own, to the report.
func (r *ServerReport) CountSessions(c any) {
	sc, ok := c.(SessionCounter)
	if !ok {
		return
	}
	if n, limit, ok := sc.Sessions(); ok {
		r.Sessions, r.MaxSessions = &n, limit
	}
}

// Report describes a server from its status.
func Report(st upstream.Status) ServerReport {
	r := ServerReport{
		Name: st.Name, State: st.State, Endpoint: st.Endpoint, Protocol: st.Server.Protocol,
		Tools: st.Tools, InFlight: st.InFlight, Restarts: st.Restarts, Failures: st.Failures, PID: st.PID,
		Since: st.Since.UTC(), LastError: st.LastError,
	}
	if st.Server.Name != "" {
		r.Server = st.Server.Name + " " + st.Server.Version
	}
	r.RetryAt = utcOrNil(st.RetryAt)
	r.LastMessage = utcOrNil(st.LastMessage)
	r.OldestCall = utcOrNil(st.OldestCall)
	return r
}

// utcOrNil returns t in UTC, or nil for the zero time.
func utcOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// serveHealth reports every server's state: 200 when all are ready (or
// idle with a listing: started on demand, and stopped), 503
// otherwise (with the same body). With access rules, each server's tools
// are those the caller may call. base is the mount's.
func (b *Bridge) serveHealth(w http.ResponseWriter, r *http.Request, _ *page, base string) *httpError {
	report := struct {
		Status  string         `json:"status"`
		Servers []ServerReport `json:"servers"`
	}{Status: "ready", Servers: make([]ServerReport, 0, len(b.cfg.Servers))}
	ready := 0
	for _, s := range b.cfg.Servers {
		h := Report(s.Upstream.Status())
		h.Name = s.Name
		h.CountSessions(s.Upstream)
		if b.policy != nil {
			h.Tools = b.grantedTools(r, b.servers[s.Name])
		}
		if h.State == upstream.StateNeedsAuth && s.Consent != nil {
			h.Authorize = base + consentAuthorize
			if !b.cfg.Single {
				h.Authorize = base + "/" + s.Name + consentAuthorize
			}
		}
		// An idle server with a listing (started on demand, and stopped)
		// serves: its next call starts it.
		if h.State == upstream.StateReady || h.State == upstream.StateIdle && s.Upstream.Tools() != nil {
			ready++
		}
		report.Servers = append(report.Servers, h)
	}
	status := http.StatusOK
	switch {
	case ready == len(b.cfg.Servers):
	case ready == 0:
		report.Status, status = "unavailable", http.StatusServiceUnavailable
	case ready < len(b.cfg.Servers):
		report.Status, status = "degraded", http.StatusServiceUnavailable
	}
	body, _ := json.Marshal(report)
	w.Header().Set("Cache-Control", "no-store")
	b.varyByCaller(w)
	if r.Method == http.MethodHead {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		return nil
	}
	writeJSON(w, status, body)
	return nil
}

// grantedTools counts the tools of s the caller of r may call: none
// before its first listing. It builds the view of a new listing, as the
// caller's document would.
func (b *Bridge) grantedTools(r *http.Request, s *serverState) int {
	v, _ := s.current(b.log)
	if v == nil {
		return 0
	}
	return b.allowed(r, s, v).n
}

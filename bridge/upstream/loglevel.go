package upstream

import (
	"context"
	"slices"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// A 2025-11-25 session has one log level, set with logging/setLevel, and
// some servers send no log message at all until it is set. The session is
// shared by everyone who calls the server, so its level is what they ask
// for together: each asker (an MCP endpoint's client session) votes with
// SetLogLevel, and the session is set to the most verbose level voted,
// never less verbose than Caddy's log writes the server's messages at (so
// that Caddy's log, which gets every message, keeps what it showed before
// anyone asked). Whoever receives the messages filters them at their own
// level: a voter gets no more than it asked for from them.
//
// Nothing is sent while nobody has voted, so a server nobody asks keeps
// its own level. The level is sent only when it changes (a vote comes, a
// voter leaves or asks another level), to each new session once someone
// voted, and when the last voter leaves it goes back to Caddy's log's.

// logLevels are the levels of logging/setLevel, most verbose first.
var logLevels = []mcp.LoggingLevel{
	mcp.LoggingLevelDebug, mcp.LoggingLevelInfo, mcp.LoggingLevelNotice, mcp.LoggingLevelWarning,
	mcp.LoggingLevelError, mcp.LoggingLevelCritical, mcp.LoggingLevelAlert, mcp.LoggingLevelEmergency,
}

// setLevelTimeout bounds one logging/setLevel.
const setLevelTimeout = 10 * time.Second

// logVotes is the levels voters asked for (SetLogLevel).
type logVotes struct {
	byVoter map[any]mcp.LoggingLevel
	wake    chan struct{} // a vote changed; cap 1, set by New
	gen     uint64        // counts the changes of byVoter
	// active is set while the ready session has a level (hasLogLevel):
	// its logLevelLoop closes settled once it has sent what the votes of
	// gen want, or ends.
	active  bool
	settled chan struct{} // nil when nobody waits
}

// SetLogLevel records that voter (a comparable value naming one receiver
// of the server's log messages, such as an MCP endpoint's client session)
// wants them at level and above; "" (or a level logging/setLevel does not
// know) withdraws its vote, as a voter that goes away must. The server's
// 2025-11-25 session, when the server declares the logging capability, is
// set (logging/setLevel) to the most verbose level voted, but never less
// verbose than the one Caddy's log writes the server's messages at; and
// back to that one once no vote is left. The level is sent only when it
// changes, and again to each new session of the server; a 2026-07-28
// session, which has no level of its own, is sent none. Receivers filter
// the messages at their own level: the server sends at the most verbose
// level any of them asked for.
//
// The channel returned is closed once the server's session was sent the
// level the votes now want (or failed to take it), at once when there is
// nothing to send or no session to send it to: a caller that waits for it
// knows the server sends at the new level from then on.
func (u *Upstream) SetLogLevel(voter any, level string) <-chan struct{} {
	l := mcp.LoggingLevel(level)
	if !slices.Contains(logLevels, l) {
		l = ""
	}
	u.mu.Lock()
	old, had := u.votes.byVoter[voter]
	if l == "" {
		delete(u.votes.byVoter, voter)
	} else {
		u.votes.byVoter[voter] = l
	}
	changed := (l == "" && had) || (l != "" && l != old)
	settled := closedChan
	if changed {
		u.votes.gen++
		if u.votes.active {
			if u.votes.settled == nil {
				u.votes.settled = make(chan struct{})
			}
			settled = u.votes.settled
		}
	}
	u.mu.Unlock()
	if changed {
		select {
		case u.votes.wake <- struct{}{}:
		default: // a look at the votes is already pending
		}
	}
	return settled
}

// closedChan is a closed channel.
var closedChan = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// settle tells the waiters of SetLogLevel that the votes of gen were
// acted on, unless they changed since; end says the session's loop ends,
// leaving nothing to wait for.
func (u *Upstream) settle(gen uint64, end bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if end {
		u.votes.active = false
	}
	if u.votes.settled != nil && (end || gen == u.votes.gen) {
		close(u.votes.settled)
		u.votes.settled = nil
	}
}

// wantedLogLevel returns the level the server's session should be at:
// the most verbose of the votes and Caddy's log's level; whether any
// voter asked; and the votes' generation.
func (u *Upstream) wantedLogLevel() (mcp.LoggingLevel, bool, uint64) {
	want := u.caddyLogLevel()
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, l := range u.votes.byVoter {
		if slices.Index(logLevels, l) < slices.Index(logLevels, want) {
			want = l
		}
	}
	return want, len(u.votes.byVoter) > 0, u.votes.gen
}

// caddyLogLevel is the most verbose level of the server's log messages
// that Caddy's log writes (see logMessage).
func (u *Upstream) caddyLogLevel() mcp.LoggingLevel {
	core := u.logger().Core()
	switch {
	case core.Enabled(zapcore.DebugLevel):
		return mcp.LoggingLevelDebug
	case core.Enabled(zapcore.InfoLevel):
		return mcp.LoggingLevelInfo
	case core.Enabled(zapcore.WarnLevel):
		return mcp.LoggingLevelWarning
	case core.Enabled(zapcore.ErrorLevel):
		return mcp.LoggingLevelError
	default:
		return mcp.LoggingLevelEmergency
	}
}

// hasLogLevel reports a session whose level logLevelLoop sets: of the
// 2025-11-25 era, with a server that declares logging.
func hasLogLevel(s *session) bool {
	return s.caps.Logging != nil && !mcp.IsModernProtocol(s.info.Protocol)
}

// logLevelLoop keeps the level of session s what the votes want, until s
// ends. It sends nothing for a session without a level of its own (a
// 2026-07-28 one) or of a server that does not declare logging.
func (u *Upstream) logLevelLoop(s *session) {
	defer u.settle(0, true)
	if !hasLogLevel(s) {
		return
	}
	var sent mcp.LoggingLevel // "" until a level is sent
	for {
		want, asked, gen := u.wantedLogLevel()
		if (asked || sent != "") && want != sent {
			ctx, cancel := context.WithTimeout(s.ctx, setLevelTimeout)
			err := s.client.SetLevel(ctx, mcp.SetLevelRequest{Params: mcp.SetLevelParams{Level: want}})
			cancel()
			switch {
			case err == nil:
				u.logger().Debug("MCP server log level set", zap.String("server", u.spec.Name),
					zap.String("level", string(want)), zap.Bool("asked", asked))
				sent = want
			case s.err() != nil:
				return
			default:
				// Tried again at the next change of the votes.
				u.logger().Warn("setting the MCP server's log level failed", zap.String("server", u.spec.Name),
					zap.String("level", string(want)), zap.Error(u.redact(err)))
			}
		}
		u.settle(gen, false)
		select {
		case <-u.votes.wake:
		case <-s.done:
			return
		}
	}
}

package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/server"
)

// Resumability (2025-11-25): the SSE events of a session's streams are
// kept, so that a client whose connection broke resumes the stream with
// Last-Event-ID and gets what it missed. mcp-go's own store keeps every
// event of a session until the session ends; this one keeps, for the
// whole process, the latest of each session within bounds, so that
// neither a chatty session nor many of them grow it without end. Like the
// session IDs, it is the process's: a session resumes its streams after a
// reload too.

// Bounds of the events kept.
const (
	maxSessionEventBytes = 1 << 20  // per session: its latest events
	maxEventBytes        = 64 << 20 // in all: the sessions written longest ago go first
)

// mcpEvents is the process's store of the MCP endpoints' events.
var mcpEvents = newEventStore(maxSessionEventBytes, maxEventBytes)

// eventStore implements mcp-go's EventStore within bounds.
type eventStore struct {
	perSession, total int

	mu       sync.Mutex
	seq      int64
	size     int // bytes kept, in all
	sessions map[string]*sessionEvents
}

// sessionEvents are the events kept of one session, oldest first.
type sessionEvents struct {
	events  []storedEvent
	size    int
	written time.Time
}

// storedEvent is one event of a stream.
type storedEvent struct {
	id, stream string
	message    json.RawMessage
}

func newEventStore(perSession, total int) *eventStore {
	return &eventStore{perSession: perSession, total: total, sessions: map[string]*sessionEvents{}}
}

// StoreEvent keeps message as the next event of stream, dropping the
// oldest events of the session, then of the sessions written longest ago,
// past the bounds.
func (s *eventStore) StoreEvent(_ context.Context, sessionID, streamID string, message json.RawMessage) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	id := strconv.FormatInt(s.seq, 10)
	se := s.sessions[sessionID]
	if se == nil {
		se = &sessionEvents{}
		s.sessions[sessionID] = se
	}
	ev := storedEvent{id: id, stream: streamID, message: append(json.RawMessage(nil), message...)}
	se.events = append(se.events, ev)
	se.size += len(ev.message)
	se.written = time.Now()
	s.size += len(ev.message)
	for se.size > s.perSession && len(se.events) > 1 {
		s.dropOldest(se)
	}
	for s.size > s.total {
		if !s.dropSession(sessionID) {
			break
		}
	}
	return id, nil
}

// dropOldest forgets the oldest event of se.
func (s *eventStore) dropOldest(se *sessionEvents) {
	n := len(se.events[0].message)
	se.events[0] = storedEvent{}
	se.events = se.events[1:]
	se.size -= n
	s.size -= n
}

// dropSession forgets the events of the session written longest ago, but
// keep's; false when there is none.
func (s *eventStore) dropSession(keep string) bool {
	var oldest string
	var at time.Time
	for id, se := range s.sessions {
		if id != keep && (oldest == "" || se.written.Before(at)) {
			oldest, at = id, se.written
		}
	}
	if oldest == "" {
		return false
	}
	s.size -= s.sessions[oldest].size
	delete(s.sessions, oldest)
	return true
}

// ReplayEventsAfter sends the events kept after lastEventID on its stream.
func (s *eventStore) ReplayEventsAfter(_ context.Context, sessionID, lastEventID string, send func(eventID string, message json.RawMessage) error) (string, error) {
	s.mu.Lock()
	var (
		stream string
		tail   []storedEvent
		found  bool
	)
	if se := s.sessions[sessionID]; se != nil {
		for _, ev := range se.events {
			switch {
			case !found && ev.id == lastEventID:
				found, stream = true, ev.stream
			case found && ev.stream == stream:
				tail = append(tail, ev)
			}
		}
	}
	s.mu.Unlock()
	if !found {
		return "", fmt.Errorf("%w: %s", server.ErrUnknownEventID, lastEventID)
	}
	for _, ev := range tail {
		if err := send(ev.id, ev.message); err != nil {
			return "", err
		}
	}
	return stream, nil
}

// PurgeSession forgets the events of a session that ended.
func (s *eventStore) PurgeSession(_ context.Context, sessionID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if se := s.sessions[sessionID]; se != nil {
		s.size -= se.size
		delete(s.sessions, sessionID)
	}
	return nil
}

// faceEvents is the store as one endpoint sees it: once the endpoint is
// closed, the sessions it ends on its side keep their events, for the
// endpoint of the reloaded configuration.
type faceEvents struct {
	*eventStore
	closed *atomic.Bool // the endpoint's
}

// PurgeSession forgets the events of a session, unless the endpoint is
// closed.
func (f faceEvents) PurgeSession(ctx context.Context, sessionID string) error {
	if f.closed.Load() {
		return nil
	}
	return f.eventStore.PurgeSession(ctx, sessionID)
}

// events is the endpoint's event store, which mcp-go's transport and the
// direct path (fastSink) store the events of a session's streams in.
func (f *mcpFace) events() faceEvents {
	return faceEvents{eventStore: mcpEvents, closed: &f.sessions.closed}
}

var _ server.EventStore = faceEvents{}

package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/server"
)

func TestEventStoreKeepsTheLatestEventsWithinItsBounds(t *testing.T) {
	ctx := context.Background()
	msg := func(n int) json.RawMessage { return json.RawMessage(`"` + strings.Repeat("x", n-2) + `"`) }
	replay := func(s *eventStore, session, after string) ([]string, error) {
		var ids []string
		_, err := s.ReplayEventsAfter(ctx, session, after, func(id string, _ json.RawMessage) error {
			ids = append(ids, id)
			return nil
		})
		return ids, err
	}
	s := newEventStore(100, 250)
	var a []string
	for range 4 {
		id, _ := s.StoreEvent(ctx, "a", "get", msg(40))
		a = append(a, id)
	}
	// 160 bytes in a session capped at 100: the two oldest are gone.
	if _, err := replay(s, "a", a[0]); !errors.Is(err, server.ErrUnknownEventID) {
		t.Errorf("replay after a dropped event: %v, want ErrUnknownEventID", err)
	}
	if got, _ := replay(s, "a", a[2]); !slices.Equal(got, a[3:]) {
		t.Errorf("replay after %s = %v, want %v", a[2], got, a[3:])
	}
	// Other streams of the session are not replayed.
	other, _ := s.StoreEvent(ctx, "a", "post-1", msg(10))
	if got, _ := replay(s, "a", a[2]); !slices.Equal(got, a[3:]) {
		t.Errorf("replay after %s with another stream = %v, want %v", a[2], got, a[3:])
	}
	// Past the total, the session written longest ago goes.
	s.StoreEvent(ctx, "b", "get", msg(90))
	s.StoreEvent(ctx, "c", "get", msg(90))
	if _, err := replay(s, "a", other); !errors.Is(err, server.ErrUnknownEventID) {
		t.Errorf("session a was kept past the total: %v", err)
	}
	if s.size > 250 {
		t.Errorf("%d bytes kept, more than 250", s.size)
	}
	s.PurgeSession(ctx, "b")
	s.PurgeSession(ctx, "c")
	if s.size != 0 || len(s.sessions) != 0 {
		t.Errorf("after purging every session: %d bytes, %d sessions", s.size, len(s.sessions))
	}
}

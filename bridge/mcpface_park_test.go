package bridge

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// asked returns the IDs and messages of the elicitations res asks for.
func askedOf(t *testing.T, res *mcp.MultiRoundTripResult) map[string]string {
	t.Helper()
	if res == nil {
		t.Fatal("the client is not asked")
	}
	got := map[string]string{}
	for id, r := range res.InputRequests {
		got[id] = r.Elicitation.Message
	}
	return got
}

func TestAParkedCallAsksItsCallerRoundByRound(t *testing.T) {
	ps := newParks()
	ann := WithIdentity(context.Background(), Identity{ID: "ann"})
	caps := &mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapability{}}
	p := ps.park(ann, "s", "confirm", caps, func(ctx context.Context) (any, *httpError) {
		ask := upstream.ElicitationFrom(ctx)
		first, err := ask(ctx, upstream.Elicitation{Message: "Sure?"})
		if err != nil {
			return nil, &httpError{Cause: err}
		}
		second, err := ask(ctx, upstream.Elicitation{Message: "Really?"})
		if err != nil {
			return nil, &httpError{Cause: err}
		}
		return first.Action + ", then " + second.Action, nil
	})
	if p == nil {
		t.Fatal("not parked")
	}

	_, e, asked := p.round(ann, nil)
	if e != nil || !maps.Equal(askedOf(t, asked), map[string]string{"mcpo-1": "Sure?"}) {
		t.Fatalf("first round: %v, asked %v", e, asked)
	}
	rs, err := openRoundState(asked.RequestState, "s", "confirm")
	if err != nil || rs.Park != p.id {
		t.Fatalf("the state opens to %+v, %v; want the call's ID", rs, err)
	}

	for _, tc := range []struct {
		name       string
		ctx        context.Context
		server, fn string
	}{
		{"another caller", WithIdentity(context.Background(), Identity{ID: "bob"}), "s", "confirm"},
		{"an anonymous caller", context.Background(), "s", "confirm"},
		{"another tool", ann, "s", "other"},
		{"another server", ann, "t", "confirm"},
	} {
		if _, err := ps.resume(tc.ctx, rs, tc.server, tc.fn); err == nil {
			t.Errorf("%s resumes the call", tc.name)
		}
	}

	p, err = ps.resume(ann, rs, "s", "confirm")
	if err != nil {
		t.Fatal(err)
	}
	_, _, asked = p.round(ann, map[string]json.RawMessage{"other": json.RawMessage(`{"action":"accept"}`)})
	if !maps.Equal(askedOf(t, asked), map[string]string{"mcpo-1": "Sure?"}) {
		t.Fatalf("a round without the answer is asked %v, want the same again", asked)
	}
	if _, err := ps.resume(ann, rs, "s", "confirm"); err == nil {
		t.Error("the first round's state resumes the call after the second round's was given")
	}
	_, _, asked = p.round(ann, map[string]json.RawMessage{"mcpo-1": json.RawMessage(`{"action":"accept","content":{}}`)})
	if !maps.Equal(askedOf(t, asked), map[string]string{"mcpo-2": "Really?"}) {
		t.Fatalf("the second round is asked %v", asked)
	}
	out, e, asked := p.round(ann, map[string]json.RawMessage{"mcpo-2": json.RawMessage(`{"action":"decline"}`)})
	if e != nil || asked != nil || out != "accept, then decline" {
		t.Fatalf("the last round: %v, %v, asked %v", out, e, asked)
	}
	if _, err := ps.resume(ann, &roundState{Park: p.id, Round: int(p.rounds.Load())}, "s", "confirm"); err == nil {
		t.Error("the call is still held after its outcome was collected")
	}
}

func TestAParkedCallEndsWithTheRoundItsClientLeaves(t *testing.T) {
	ps := newParks()
	caps := &mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapability{}}
	ended := make(chan error, 1)
	p := ps.park(context.Background(), "s", "wait", caps, func(ctx context.Context) (any, *httpError) {
		<-ctx.Done()
		ended <- ctx.Err()
		return nil, &httpError{Cause: ctx.Err()}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, e, _ := p.round(ctx, nil); e != clientGone {
		t.Fatalf("round = %v, want clientGone", e)
	}
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the call ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call goes on after its client left")
	}
	if ids := slices.Collect(maps.Keys(ps.byID)); len(ids) != 0 {
		t.Errorf("still held: %v", ids)
	}
}

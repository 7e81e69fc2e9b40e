package bridge

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mcpclient "github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// reloadable serves the bridge cfg makes at /m, an X-User header naming
// the caller as with serveBridge, and returns the function
// that reloads it: a new bridge of cfg, the old one closed, as the module
// does on a reload of an unchanged server.
func reloadable(t *testing.T, cfg func() Config) (*httptest.Server, func()) {
	t.Helper()
	var cur struct {
		sync.Mutex
		b *Bridge
	}
	next := func() *Bridge {
		b, err := New(cfg())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	cur.b = next()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cur.Lock()
		b := cur.b
		cur.Unlock()
		if u := r.Header.Get("X-User"); u != "" { // as serveBridge does
			r = r.WithContext(WithIdentity(r.Context(), Identity{ID: u}))
		}
		b.Serve(w, r, strings.TrimPrefix(r.URL.Path, "/m"), "/m")
	}))
	t.Cleanup(func() {
		srv.Close()
		cur.Lock()
		defer cur.Unlock()
		cur.b.Close()
	})
	return srv, func() {
		b := next()
		cur.Lock()
		old := cur.b
		cur.b = b
		cur.Unlock()
		old.Close()
	}
}

func TestMCPSessionsKeepTheirLogLevelOverAReload(t *testing.T) {
	s := fixtureServer(t)
	srv, reload := reloadable(t, func() Config { return Config{Servers: []*ServerConfig{s}, Single: true} })
	url := srv.URL + "/m/mcp"
	warning := legacySession(t, url, mcp.LoggingLevelWarning)
	unset := legacySession(t, url, "")
	for _, when := range []string{"before the reload", "after it"} {
		if when != "before the reload" {
			reload()
		}
		_, answer := postMCP(t, url, progressCall(""), warning)
		if logs, last := streamedLogs(t, answer); len(logs) != 0 || !last {
			t.Errorf("%s, a session that set warning got log messages %q (result last: %v)", when, logs, last)
		}
		_, answer = postMCP(t, url, progressCall(""), unset)
		logs, _ := streamedLogs(t, answer)
		wantStepLogs(t, logs)
	}
}

func TestMCPSessionsKeepTheirClientsCapabilitiesOverAReload(t *testing.T) {
	srv, reload := reloadable(t, func() Config {
		return Config{Single: true, Servers: []*ServerConfig{{Name: "s", Upstream: samplingCaller{newFaceCaller("sample")}, Timeout: sampleTimeout}}}
	})
	sampler := &greeter{}
	// mcp-go's server sends sampling/createMessage on the standing GET
	// stream, which the client opens again when a reload ends it.
	cl, _ := initializeWith(t, srv.URL+"/m/mcp", mcp.LATEST_LEGACY_PROTOCOL_VERSION, nil,
		[]mcpclient.ClientOption{mcpclient.WithSamplingHandler(sampler)}, transport.WithContinuousListening())
	if res, err := callSampling(t, cl); err != nil || res.Content[0].(mcp.TextContent).Text != "m1: hi" {
		t.Fatalf("before the reload, sample = %+v, %v", res, err)
	}
	reload()
	var said string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		res, err := callSampling(t, cl)
		if err != nil {
			t.Fatal(err)
		}
		if said = res.Content[0].(mcp.TextContent).Text; said == "m1: hi" {
			return
		}
	}
	t.Errorf("after the reload, sample = %q; want the client, which declared sampling, asked", said)
}

func TestMCPSessionsKeepTheirSubscriptionsOverAReload(t *testing.T) {
	var caller atomic.Pointer[subscribingCaller] // the server of the bridge serving
	srv, reload := reloadable(t, func() Config {
		c := newSubscribingCaller([]string{"x://a", "x://b"}, "now")
		caller.Store(c)
		return Config{Single: true, Servers: []*ServerConfig{{Name: "s", Upstream: c}}}
	})
	updates := make(chan string, 16)
	cl, _ := initialize(t, srv.URL+"/m/mcp", mcp.LATEST_LEGACY_PROTOCOL_VERSION, nil, transport.WithContinuousListening())
	cl.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == string(mcp.MethodNotificationResourceUpdated) {
			updates <- fmt.Sprint(n.Params.AdditionalFields["uri"])
		}
	})
	ctx := context.Background()
	for _, uri := range []string{"x://a", "x://b"} {
		if err := cl.Subscribe(ctx, mcp.SubscribeRequest{Params: mcp.SubscribeParams{URI: uri}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.Unsubscribe(ctx, mcp.UnsubscribeRequest{Params: mcp.UnsubscribeParams{URI: "x://b"}}); err != nil {
		t.Fatal(err)
	}
	reload()
	// The client opens its GET stream again, and its session subscribes
	// to x://a again, not to x://b.
	for deadline := time.Now().Add(10 * time.Second); !slices.Equal(caller.Load().subscriptions(), []string{"+x://a"}); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the server of the reloaded endpoint got subscriptions %q, want +x://a", caller.Load().subscriptions())
		}
	}
	caller.Load().send("notifications/resources/updated", map[string]any{"uri": "x://b"})
	caller.Load().send("notifications/resources/updated", map[string]any{"uri": "x://a"})
	select {
	case uri := <-updates:
		if uri != "x://a" {
			t.Errorf("the client heard of an update of %s", uri)
		}
	case <-time.After(5 * time.Second):
		t.Error("the client heard of no update after the reload")
	}
}

func TestMCPFaceForgetsASessionRestoredAfterAReloadWhenItEnds(t *testing.T) {
	clock := &votingCaller{faceCaller: newFaceCaller("now"), votes: map[string]string{}}
	srv, reload := reloadable(t, func() Config { return Config{Single: true, Servers: []*ServerConfig{{Name: "time", Upstream: clock}}} })
	url := srv.URL + "/m/mcp"
	ann := legacySession(t, url, mcp.LoggingLevelDebug)
	names := map[string]string{ann["Mcp-Session-Id"]: "ann"}
	want := func(step string, votes map[string]string) {
		t.Helper()
		clock.want(t, step, "time", names, votes)
	}
	want("ann at debug", map[string]string{"ann": "debug"})
	reload()
	// The session goes on in the new endpoint, which gives it its level
	// back with its next request, a vote included; mcp-go registered the
	// session with the endpoint the reload replaced, not with this one.
	if _, body := postMCP(t, url, `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`, ann); !strings.Contains(body, `"result"`) {
		t.Fatalf("tools/list after the reload answered %s", body)
	}
	want("ann's session after the reload", map[string]string{"ann": "debug"})

	endSession(t, url, ann)
	want("ann's session ended", map[string]string{})
}

func TestMCPFaceVotesOnlyForGrantedServersForASessionRestoredAfterAReload(t *testing.T) {
	clock, files := &votingCaller{faceCaller: newFaceCaller("now"), votes: map[string]string{}},
		&votingCaller{faceCaller: newFaceCaller("read"), votes: map[string]string{}}
	srv, reload := reloadable(t, func() Config {
		return Config{
			Servers: []*ServerConfig{{Name: "time", Upstream: clock}, {Name: "files", Upstream: files}},
			Access:  Access{Rules: []Rule{{Subjects: []string{"user:bob"}, Tools: []string{"time/now"}}}},
		}
	})
	url := srv.URL + "/m/mcp"
	session := func() map[string]string {
		resp, _ := postMCP(t, url, initMsg, map[string]string{"X-User": "bob"})
		h := map[string]string{"Mcp-Session-Id": resp.Header.Get("Mcp-Session-Id"), "Mcp-Protocol-Version": "2025-11-25", "X-User": "bob"}
		postMCP(t, url, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, h)
		return h
	}
	setLevel := func(h map[string]string, level mcp.LoggingLevel) {
		t.Helper()
		if _, body := postMCP(t, url, `{"jsonrpc":"2.0","id":2,"method":"logging/setLevel","params":{"level":"`+string(level)+`"}}`, h); !strings.Contains(body, `"result"`) {
			t.Fatalf("logging/setLevel answered %s", body)
		}
	}
	bob, later := session(), session()
	setLevel(bob, mcp.LoggingLevelDebug)
	names := map[string]string{bob["Mcp-Session-Id"]: "bob", later["Mcp-Session-Id"]: "later"}
	want := func(step string, wantTime, wantFiles map[string]string) {
		t.Helper()
		clock.want(t, step, "time", names, wantTime)
		files.want(t, step, "files", names, wantFiles)
	}
	want("bob at debug, granted time alone", map[string]string{"bob": "debug"}, map[string]string{})
	reload()
	// The new endpoint gives the session its level back with its next
	// request, before mcp-go registers it with this endpoint (it never
	// does without a GET stream): the vote still goes by bob's grant.
	if _, body := postMCP(t, url, `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`, bob); !strings.Contains(body, `"result"`) {
		t.Fatalf("tools/list after the reload answered %s", body)
	}
	want("bob's session after the reload", map[string]string{"bob": "debug"}, map[string]string{})
	// A session that sets its level only now, unregistered too.
	setLevel(later, mcp.LoggingLevelInfo)
	want("bob's other session at info after the reload", map[string]string{"bob": "debug", "later": "info"}, map[string]string{})
	endSession(t, url, bob)
	endSession(t, url, later)
	want("bob's sessions ended", map[string]string{}, map[string]string{})
}

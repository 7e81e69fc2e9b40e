package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
	"github.com/caddy-mcpo/caddy-mcpo/internal/identity/jwttest"
)

// A session per caller (isolation user), through Caddy, with callers named
// by a header or the query, as a trusted proxy in front would name them.

// userHeader names the caller in these tests.
const userHeader = "X-Test-User"

// callAs posts a tool call as the caller user.
func callAs(ctx context.Context, user, path, body string) (response, error) {
	return send(ctx, http.MethodPost, path, body, userHeader, user)
}

// mustCallAs is callAs that wants a 200.
func mustCallAs(t *testing.T, user, path, body string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	r, err := callAs(ctx, user, path, body)
	if err != nil || r.status != http.StatusOK {
		t.Fatalf("POST %s as %q: %v %s", path, user, err, r)
	}
	return r
}

// pidOf calls the fixture's pid tool at mount as user.
func pidOf(t *testing.T, user, mount string) int {
	t.Helper()
	r := mustCallAs(t, user, mount+"/pid", `{}`)
	pid, err := strconv.Atoi(string(r.body))
	if err != nil {
		t.Fatalf("POST %s/pid as %q: %s", mount, user, r)
	}
	return pid
}

// adminSession is one session as the admin API lists it.
type adminSession struct {
	ID      string `json:"id"`
	Digest  string `json:"digest"`
	Listing bool   `json:"listing"`
	State   string `json:"state"`
	PID     int    `json:"pid"`
}

// adminSessions lists the sessions of a server through the admin API.
func adminSessions(t *testing.T, server string) []adminSession {
	t.Helper()
	r := mcpoAdminRequest(t, http.MethodGet, "/mcpo/servers/"+server+"/sessions")
	var out []adminSession
	if r.status != http.StatusOK || json.Unmarshal(r.body, &out) != nil {
		t.Fatalf("GET the sessions of %s: %s", server, r)
	}
	return out
}

// callerIDs are the callers' IDs among sessions.
func callerIDs(sessions []adminSession) []string {
	var out []string
	for _, s := range sessions {
		if !s.Listing {
			out = append(out, s.ID)
		}
	}
	return out
}

// waitListed waits until a per-user server's listing session has listed
// the tools and stopped.
func waitListed(t *testing.T, server, docPath string) {
	t.Helper()
	waitReady(t, docPath)
	eventually(t, waitLimit, "the listing session stopped", func() bool { return len(adminSessions(t, server)) == 0 })
}

// memoryScript is server-memory's entry point among the peers.
func memoryScript(t *testing.T) string {
	t.Helper()
	return peerScript(t, "server-memory")
}

func TestSessions_TwoUsersOfServerMemoryNeverSeeEachOthersEntities(t *testing.T) {
	script := memoryScript(t)
	dir := t.TempDir()
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /mem {
		identity {http.request.header.%s}
		server private {
			command node %s
			env MEMORY_FILE_PATH %s/{mcpo.user.id}.json
			isolation user
		}
		server shared {
			command node %s
			env MEMORY_FILE_PATH %s/shared.json
		}
	}
}
`, httpPort, userHeader, script, dir, script, dir))
	waitReady(t, "/mem/private/openapi.json")
	waitReady(t, "/mem/shared/openapi.json")

	entity := func(name string) string {
		return fmt.Sprintf(`{"entities":[{"name":%q,"entityType":"note","observations":["only for its owner"]}]}`, name)
	}
	for _, server := range []string{"private", "shared"} {
		mustCallAs(t, "alice", "/mem/"+server+"/create_entities", entity("alice-"+server))
		mustCallAs(t, "bob", "/mem/"+server+"/create_entities", entity("bob-"+server))
	}
	for _, tc := range []struct {
		server, user string
		sees         []string
		seesNot      []string
	}{
		{"private", "alice", []string{"alice-private"}, []string{"bob-private"}},
		{"private", "bob", []string{"bob-private"}, []string{"alice-private"}},
		{"shared", "alice", []string{"alice-shared", "bob-shared"}, nil},
		{"shared", "bob", []string{"alice-shared", "bob-shared"}, nil},
	} {
		graph := string(mustCallAs(t, tc.user, "/mem/"+tc.server+"/read_graph", `{}`).body)
		for _, e := range tc.sees {
			if !strings.Contains(graph, `"`+e+`"`) {
				t.Errorf("%s on %s does not see %s: %s", tc.user, tc.server, e, graph)
			}
		}
		for _, e := range tc.seesNot {
			if strings.Contains(graph, e) {
				t.Errorf("%s on %s sees %s: %s", tc.user, tc.server, e, graph)
			}
		}
	}
	for _, f := range []string{"alice.json", "bob.json", "shared.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("no memory file %s: %v", f, err)
		}
	}

	// Health counts the sessions of the private server, and none of the
	// shared one's.
	if s := serverOf(t, "/mem", "private"); s.Sessions == nil || *s.Sessions != 2 || s.MaxSessions != 100 {
		t.Errorf("health of the private server: sessions %v of %d, want 2 of 100", s.Sessions, s.MaxSessions)
	}
	if s := serverOf(t, "/mem", "shared"); s.Sessions != nil {
		t.Errorf("health of the shared server counts %d sessions", *s.Sessions)
	}
}

// userFixture is a server block of the stdio fixture with a session per
// caller, FIXTURE_USER set to the caller's ID, and more settings.
func userFixture(t *testing.T, name string, settings ...string) string {
	return fmt.Sprintf("server %s {\n\t\t\t%s\t\t\tenv FIXTURE_USER {mcpo.user.id}\n\t\t\tisolation user\n\t\t\t%s\n\t\t}",
		name, testFixture(t, fixture.Options{}), strings.Join(settings, "\n\t\t\t"))
}

func TestSessions_AnIdleSessionStopsAfterIdleTimeout(t *testing.T) {
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /idle {
		identity {http.request.header.%s}
		%s
	}
}
`, httpPort, userHeader, userFixture(t, "fx", "idle_timeout 1s")))
	waitListed(t, "fx", "/idle/fx/openapi.json")
	pid := pidOf(t, "alice", "/idle/fx")
	if got := adminSessions(t, "fx"); len(got) != 1 || got[0].ID != "alice" || got[0].PID != pid || got[0].State != "ready" {
		t.Fatalf("sessions %+v, want alice's, ready, with pid %d", got, pid)
	}
	began := time.Now()
	eventually(t, waitLimit, "alice's idle session stopped", func() bool { return !running(pid) })
	if took := time.Since(began); took < 500*time.Millisecond {
		t.Errorf("the session stopped %s after the call, well before idle_timeout", took)
	}
	if got := adminSessions(t, "fx"); len(got) != 0 {
		t.Errorf("sessions %+v after idle_timeout, want none", got)
	}
	if again := pidOf(t, "alice", "/idle/fx"); again == pid {
		t.Error("alice's next call ran in the stopped process")
	}
}

func TestSessions_AThousandUsersAgainstTwentySessions(t *testing.T) {
	const (
		limit   = 20
		callers = 1000
		workers = 16
	)
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /many {
		identity {http.request.header.%s}
		%s
	}
}
`, httpPort, userHeader, userFixture(t, "fx", fmt.Sprintf("max_sessions %d", limit))))
	waitListed(t, "fx", "/many/fx/openapi.json")
	// Servers of earlier tests stop in the background: wait until none is
	// left, so that every process counted is one of this server's.
	eventually(t, waitLimit, "no other server process", func() bool { return len(descendants(os.Getpid())) == 0 })

	// The least recently used session without a call makes room.
	for i := range limit {
		pidOf(t, fmt.Sprintf("lru-%02d", i), "/many/fx")
	}
	pidOf(t, "lru-00", "/many/fx")
	pidOf(t, "newcomer", "/many/fx")
	if ids := callerIDs(adminSessions(t, "fx")); len(ids) != limit || slices.Contains(ids, "lru-01") ||
		!slices.Contains(ids, "lru-00") || !slices.Contains(ids, "newcomer") {
		t.Errorf("sessions of %q: want lru-01, the least recently used, gone, and lru-00 and newcomer there", ids)
	}

	// With every session busy, a new caller gets 429.
	ctx, cancel := context.WithCancel(context.Background())
	var busy sync.WaitGroup
	for i := range limit {
		user := fmt.Sprintf("busy-%02d", i)
		pidOf(t, user, "/many/fx")
		busy.Go(func() { _, _ = callAs(ctx, user, "/many/fx/slow", `{"ms":60000}`) })
	}
	eventually(t, waitLimit, "20 calls under way", func() bool { return serverOf(t, "/many", "fx").InFlight == limit })
	r := do(t, http.MethodPost, "/many/fx/echo", `{"message":"hi"}`, userHeader, "one-too-many")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), "max_sessions") {
		t.Errorf("a new caller while every session is busy: %s (Retry-After %q), want 429 naming max_sessions",
			r, r.header.Get("Retry-After"))
	}
	cancel()
	busy.Wait()

	// A thousand callers, never more than 20 processes.
	stopWatching := fixture.WatchDescendants(os.Getpid())
	loadCtx, loadCancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer loadCancel()
	var next, failed atomic.Int64
	var firstFailure atomic.Value
	var wg sync.WaitGroup
	began := time.Now()
	for range workers {
		wg.Go(func() {
			for loadCtx.Err() == nil {
				i := next.Add(1) - 1
				if i >= callers {
					return
				}
				r, err := callAs(loadCtx, fmt.Sprintf("user-%04d", i), "/many/fx/echo", `{"message":"hi"}`)
				if err != nil || r.status != http.StatusOK {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%v %s", err, r))
				}
			}
		})
	}
	wg.Wait()
	most := stopWatching()
	if loadCtx.Err() != nil {
		t.Fatalf("%d callers took more than 10 minutes (%d done)", callers, next.Load())
	}
	t.Logf("%d callers in %s, at most %d processes at once", callers, time.Since(began).Round(time.Millisecond), most)
	if n := failed.Load(); n > 0 {
		t.Errorf("%d calls failed, the first: %v", n, firstFailure.Load())
	}
	if got := most; got > limit {
		t.Errorf("%d server processes ran at once, more than max_sessions %d", got, limit)
	}
	if got := len(callerIDs(adminSessions(t, "fx"))); got != limit {
		t.Errorf("%d sessions after the load, want %d", got, limit)
	}
	mcpoNoMetricLineHas(t, "user-0")

	// Nothing is left once the configuration is gone.
	startCaddy(t, fmt.Sprintf(":%d {\n\trespond \"none\"\n}\n", httpPort))
	eventually(t, waitLimit, "every session stopped", func() bool { return len(descendants(os.Getpid())) == 0 })
}

func TestSessions_AReloadKeepsEveryCallersProcess(t *testing.T) {
	site := func(generation int, settings ...string) string {
		return fmt.Sprintf(`:%d {
	mcpo /kept {
		identity {http.request.header.%s}
		%s
	}
	respond /generation "%d"
}
`, httpPort, userHeader, userFixture(t, "fx", settings...), generation)
	}
	startCaddy(t, site(0))
	waitListed(t, "fx", "/kept/fx/openapi.json")
	users := []string{"alice", "bob", "carol"}
	pids := map[string]int{}
	for _, u := range users {
		pids[u] = pidOf(t, u, "/kept/fx")
	}
	// Other routes, and the settings of the sessions, change.
	startCaddy(t, site(1, "idle_timeout 1h", "max_sessions 10", "list_as lister", "timeout 30s"))
	if r := do(t, http.MethodGet, "/generation", ""); string(r.body) != "1" {
		t.Fatalf("the new configuration does not run: %s", r)
	}
	for _, u := range users {
		if got := pidOf(t, u, "/kept/fx"); got != pids[u] {
			t.Errorf("%s's process changed across the reload: %d, then %d", u, pids[u], got)
		}
	}
	if s := serverOf(t, "/kept", "fx"); s.MaxSessions != 10 {
		t.Errorf("max_sessions %d after the reload, want 10", s.MaxSessions)
	}
	sessions := adminSessions(t, "fx")
	for _, s := range sessions {
		if s.PID != pids[s.ID] {
			t.Errorf("the admin API lists %s with pid %d, want %d", s.ID, s.PID, pids[s.ID])
		}
	}
	if got := callerIDs(sessions); !slices.Equal(got, users) {
		t.Errorf("sessions of %q after the reload, want %q", got, users)
	}
}

func TestSessions_HostileIdentitiesAreRefusedOrEncoded(t *testing.T) {
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	if err := os.Mkdir(users, 0o700); err != nil {
		t.Fatal(err)
	}
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /hostile {
		identity {http.request.uri.query.user}
		%s
	}
}
`, httpPort, userFixture(t, "fx", "dir "+users+"/{mcpo.user.id}")))
	waitListed(t, "fx", "/hostile/fx/openapi.json")
	for _, tc := range []struct {
		name, id string
		encoded  string // the directory and FIXTURE_USER; "" for a refused identity
	}{
		{"the parent", "..", "%2E%2E"},
		{"the directory itself", ".", "%2E"},
		{"a way out", "../x", "%2E%2E%2Fx"},
		{"a path", "a/b", "a%2Fb"},
		{"an option", "--inspect=0:9229", "%2D-inspect=0:9229"},
		{"NUL", "a\x00b", ""},
		{"a newline", "a\nb", ""},
		{"10 KB", strings.Repeat("../", 10<<10/3), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, http.MethodPost, "/hostile/fx/pid?user="+url.QueryEscape(tc.id), `{}`)
			if tc.encoded == "" {
				if r.status != http.StatusUnauthorized || strings.Contains(string(r.body), tc.id) {
					t.Fatalf("as %q: %s, want 401 without the identity", tc.id[:min(len(tc.id), 20)], r)
				}
				return
			}
			pid, err := strconv.Atoi(string(r.body))
			if r.status != http.StatusOK || err != nil {
				t.Fatalf("as %q: %s", tc.id, r)
			}
			cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
			if err != nil {
				t.Skipf("no /proc: %v", err)
			}
			if want := filepath.Join(users, tc.encoded); cwd != want {
				t.Errorf("as %q the server runs in %s, want %s", tc.id, cwd, want)
			}
			environ, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
			if !slices.Contains(strings.Split(string(environ), "\x00"), "FIXTURE_USER="+tc.encoded) {
				t.Errorf("as %q the server's environment lacks FIXTURE_USER=%s", tc.id, tc.encoded)
			}
		})
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 1 {
		t.Errorf("%s holds %v (%v): a session made something outside the users' directory", dir, entries, err)
	}
}

// The README's recipe: Open WebUI names each caller with its signed token;
// each gets their own memory graph (a process of their own) and their own
// session of a remote server, which receives that caller's token read from
// a file named after their ID.
func TestSessions_OpenWebUIUsersGetTheirOwnProcessesAndCredentials(t *testing.T) {
	script := memoryScript(t)
	memDir, secrets := t.TempDir(), t.TempDir()
	for _, user := range []string{"mcpo", "u-alice", "u-bob"} { // mcpo: list_as
		if err := os.WriteFile(filepath.Join(secrets, user), []byte("token-of-"+user+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("MCPO_TEST_OWUI_SECRET", owuiSecret)
	remote := fixture.NewStreamableHTTPServer(t, fixture.Options{})
	startCaddy(t, fmt.Sprintf(`:%d {
	mcpo /team {
		identity openwebui_jwt {env.MCPO_TEST_OWUI_SECRET}
		server memory {
			command node %s
			env MEMORY_FILE_PATH %s/{mcpo.user.id}.json
			isolation user
		}
		server remote {
			url %s
			protocol legacy
			header Authorization "Bearer {file.%s/{mcpo.user.id}}"
			isolation user
		}
	}
}
`, httpPort, script, memDir, remote.URL, secrets))
	waitReady(t, "/team/memory/openapi.json")
	waitReady(t, "/team/remote/openapi.json")

	tokens := map[string]string{}
	for _, user := range []string{"u-alice", "u-bob"} {
		tokens[user] = pyJWT(t, jwttest.OpenWebUIClaims(user, time.Now(), nil), owuiSecret)
	}
	call := func(user, path, body string) response {
		t.Helper()
		r := do(t, http.MethodPost, path, body, "X-OpenWebUI-User-Jwt", tokens[user])
		if r.status != http.StatusOK {
			t.Fatalf("POST %s as %s: %s", path, user, r)
		}
		return r
	}
	sessions := map[string]string{}
	for _, user := range []string{"u-alice", "u-bob"} {
		call(user, "/team/memory/create_entities",
			fmt.Sprintf(`{"entities":[{"name":"%s-note","entityType":"note","observations":["private"]}]}`, user))
		var info fixture.RequestInfo
		if err := json.Unmarshal(call(user, "/team/remote/request_info", `{}`).body, &info); err != nil {
			t.Fatal(err)
		}
		if got, want := info.Headers.Get("Authorization"), "Bearer token-of-"+user; got != want {
			t.Errorf("%s's call reached the remote server with Authorization %q, want %q", user, got, want)
		}
		sessions[user] = info.Headers.Get("Mcp-Session-Id")
	}
	if sessions["u-alice"] == "" || sessions["u-alice"] == sessions["u-bob"] {
		t.Errorf("the remote server's sessions: %v, want one of each caller's own", sessions)
	}
	graph := string(call("u-alice", "/team/memory/read_graph", `{}`).body)
	if !strings.Contains(graph, "u-alice-note") || strings.Contains(graph, "u-bob-note") {
		t.Errorf("alice's graph: %s", graph)
	}

	// Without a token, no session: 401, and nothing started.
	if r := do(t, http.MethodPost, "/team/memory/read_graph", `{}`); r.status != http.StatusUnauthorized {
		t.Errorf("a call without a token: %s, want 401", r)
	}
	if got := len(adminSessions(t, "memory")); got != 2 {
		t.Errorf("memory has %d sessions, want alice's and bob's", got)
	}
}

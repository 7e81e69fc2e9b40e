package integration

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-mcpo/caddy-mcpo/internal/fixture"
	"github.com/caddy-mcpo/caddy-mcpo/internal/redistest"
)

// More than one Caddy: three caddy processes sharing their storage through
// a real redis-server (caddy.storage.mcpo_redis), behind a front Caddy
// that keeps each user on one instance (reverse_proxy, lb_policy header on
// the identity header) and a browser's OAuth flow on one (lb_policy
// cookie). The README's "More than one Caddy" recipe is these Caddyfiles.

// clusterUser is the identity header of the cluster tests: the instances
// name callers by it, and the front hashes it.
const clusterUser = "X-Test-User"

// clusterAdminKey authorizes the OAuth upstream.
const clusterAdminKey = "cluster-admin-key-5eed"

// clusterInstance is one caddy process of the cluster.
type clusterInstance struct {
	name        string
	http, admin int
	config      string
	proc        *caddyProcess
}

func (in *clusterInstance) url(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", in.http, path)
}

func (in *clusterInstance) addr() string { return fmt.Sprintf("127.0.0.1:%d", in.http) }

// instanceConfig is the Caddyfile of an instance.
func instanceConfig(t *testing.T, in *clusterInstance, redisAddr, prefix, remote, front string) string {
	return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	http_port %d
	https_port %d
	auto_https off
	skip_install_trust
	storage mcpo_redis {
		address %s
		key_prefix %s
	}
}
:%d {
	header X-Served-By %s
	header X-Config-Version 1
	mcpo /tools {
		admin_key %s
		identity {http.request.header.%s}
		server local {
			%s
		}
		server lazy {
			%s
			start on_demand
			idle_timeout 1m
		}
		server peruser {
			%s
			env FIXTURE_USER {mcpo.user.id}
			isolation user
		}
		server remote {
			url %s
			oauth {
				redirect_uri %s/tools/remote/oauth/callback
			}
		}
	}
}
`, in.admin, in.http, freePort(), redisAddr, prefix, in.http, in.name, clusterAdminKey, clusterUser,
		testFixture(t, fixture.Options{}), testFixture(t, fixture.Options{}), testFixture(t, fixture.Options{}), remote, front)
}

// frontConfig is the Caddyfile of the front Caddy over instances.
func frontConfig(port int, instances []*clusterInstance) string {
	var ups []string
	for _, in := range instances {
		ups = append(ups, in.addr())
	}
	u := strings.Join(ups, " ")
	return fmt.Sprintf(`{
	admin off
	http_port %d
	https_port %d
	auto_https off
	skip_install_trust
}
:%d {
	# A browser's OAuth flow (authorize page, then callback) stays on
	# the instance that started it.
	@oauth path */oauth/*
	reverse_proxy @oauth %s {
		lb_policy cookie mcpo_lb
		fail_duration 3s
		lb_try_duration 5s
	}
	# Everything else: a user's calls on one instance, by their identity.
	reverse_proxy %s {
		lb_policy header %s
		fail_duration 3s
		max_fails 1
		lb_try_duration 5s
		lb_try_interval 50ms
	}
}
`, port, freePort(), port, u, u, clusterUser)
}

// buildPlainCaddy builds ./cmd/caddy without -race, so that the figures
// measured through it are those of the binary users run.
func buildPlainCaddy(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "caddy")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/caddy")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/caddy: %v\n%s", err, out)
	}
	return bin
}

// getURL fetches a URL, failing the test on a transport error.
func getURL(t *testing.T, u string, header ...string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	r, err := sendURL(ctx, http.MethodGet, u, "", header...)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return r
}

// cookiesOf returns the cookies a response set, as a browser sends them.
func cookiesOf(r response) []string {
	var out []string
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		out = append(out, c.Name+"="+c.Value)
	}
	return out
}

// serverState reads one server's state from an instance's health.
func serverState(t *testing.T, in *clusterInstance, name string) serverHealth {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := sendURL(ctx, http.MethodGet, in.url("/tools/health"), "", clusterUser, "health")
	if err != nil {
		return serverHealth{}
	}
	var h healthReport
	if jsonErr := json.Unmarshal(r.body, &h); jsonErr != nil {
		return serverHealth{}
	}
	for _, s := range h.Servers {
		if s.Name == name {
			return s
		}
	}
	return serverHealth{}
}

// sessionsStarted reads how many sessions the server started from an
// instance's metrics.
func sessionsStarted(t *testing.T, in *clusterInstance, server string) int {
	t.Helper()
	r := getURL(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", in.admin))
	re := regexp.MustCompile(`caddy_mcpo_server_sessions_started_total\{[^}]*server="` + server + `"[^}]*\} (\d+)`)
	m := re.FindSubmatch(r.body)
	if m == nil {
		t.Fatalf("%s: no sessions_started_total of %s in /metrics", in.name, server)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// clusterCall is one call of a load, as the caller saw it.
type clusterCall struct {
	user       string
	start, end time.Time
	status     int
	servedBy   string
	err        error
}

func (c clusterCall) ok() bool { return c.err == nil && c.status == http.StatusOK }

// loadThrough runs c callers, caller i as user<i>, each calling path with
// body through the URL base until d has passed; at after (if > 0) it runs
// event once. It returns every call.
func loadThrough(base string, c int, d time.Duration, path, body string, after time.Duration, event func()) []clusterCall {
	var mu sync.Mutex
	var calls []clusterCall
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for i := range c {
		user := fmt.Sprintf("user%d", i)
		wg.Go(func() {
			for time.Now().Before(deadline) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				call := clusterCall{user: user, start: time.Now()}
				r, err := loadSend(ctx, base+path, body, user)
				cancel()
				call.end, call.err, call.status, call.servedBy = time.Now(), err, r.status, r.header.Get("X-Served-By")
				mu.Lock()
				calls = append(calls, call)
				mu.Unlock()
			}
		})
	}
	if after > 0 {
		time.Sleep(after)
		event()
	}
	wg.Wait()
	return calls
}

// loadClient keeps connections to the front, as a client under load does.
var loadClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

func loadSend(ctx context.Context, u, body, user string) (response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(body))
	if err != nil {
		return response{}, err
	}
	req.Header.Set(clusterUser, user)
	req.Header.Set("Content-Type", "application/json")
	resp, err := loadClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b := make([]byte, 0, 64)
	buf := make([]byte, 512)
	for {
		n, rerr := resp.Body.Read(buf)
		b = append(b, buf[:n]...)
		if rerr != nil {
			break
		}
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

func TestMoreThanOneCaddy(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four caddy processes")
	}
	rs := redistest.Start(t)
	bin := buildPlainCaddy(t)
	as := fixture.NewOAuthServer(t)
	as.TokenLifetime = time.Hour
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	t.Cleanup(func() { _ = rdb.Close() })
	prefix := "cluster-" + rand.Text()[:8]

	frontPort := freePort()
	front := fmt.Sprintf("http://127.0.0.1:%d", frontPort)
	instances := make([]*clusterInstance, 3)
	for i := range instances {
		in := &clusterInstance{name: fmt.Sprintf("i%d", i+1), http: freePort(), admin: freePort()}
		in.config = instanceConfig(t, in, rs.Addr, prefix, as.URL, front)
		instances[i] = in
	}
	ready := func(in *clusterInstance, server string) bool {
		s := serverState(t, in, server)
		return s.State == "ready" || (s.State == "idle" && s.Tools > 0)
	}

	// The first instance lists the server started on demand and keeps the
	// listing in Redis; the others, started after, take it from there.
	began := time.Now()
	instances[0].proc = runCaddy(t, bin, instances[0].config)
	eventually(t, waitLimit, "the first instance to list lazy", func() bool { return ready(instances[0], "lazy") })
	for _, in := range instances[1:] {
		in.proc = runCaddy(t, bin, in.config)
	}
	for _, in := range instances {
		eventually(t, waitLimit, in.name+" ready", func() bool { return ready(in, "local") && ready(in, "lazy") })
	}
	runCaddy(t, bin, frontConfig(frontPort, instances))
	eventually(t, waitLimit, "the front to answer", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := sendURL(ctx, http.MethodGet, front+"/tools/local/openapi.json", "", clusterUser, "someone")
		return err == nil && r.status == http.StatusOK
	})
	t.Logf("measured: 3 instances and the front up in %s", time.Since(began).Round(time.Millisecond))

	parent := t
	t.Run("the last tool listing is shared", func(t *testing.T) {
		keys, err := rdb.Keys(context.Background(), prefix+"/mcpo/listings/*").Result()
		if err != nil || len(keys) != 1 {
			t.Fatalf("the listings in Redis: %v, %v", keys, err)
		}
		if n := sessionsStarted(t, instances[0], "lazy"); n != 1 {
			t.Errorf("the first instance started %d sessions of lazy, want 1 (its listing)", n)
		}
		for _, in := range instances[1:] {
			if n := sessionsStarted(t, in, "lazy"); n != 0 {
				t.Errorf("%s started %d sessions of lazy to list it, want none (the listing is in Redis)", in.name, n)
			}
			if s := serverState(t, in, "lazy"); s.Tools == 0 {
				t.Errorf("%s serves lazy without its tools: %+v", in.name, s)
			}
		}
	})

	t.Run("an OAuth upstream authorized once through the front serves every instance", func(t *testing.T) {
		for _, in := range instances {
			eventually(t, waitLimit, in.name+": remote needs authorization", func() bool {
				return serverState(t, in, "remote").State == "needs_auth"
			})
		}
		authz := basicAuth("admin", clusterAdminKey)
		r := getURL(t, front+"/tools/remote/oauth/authorize", "Authorization", authz)
		if r.status != http.StatusFound {
			t.Fatalf("authorize page through the front: %s", r)
		}
		cookies := cookiesOf(r)
		back := follow(t, r.header.Get("Location"))
		cb, err := url.Parse(back)
		if err != nil || !strings.HasPrefix(back, front+"/tools/remote/oauth/callback?") {
			t.Fatalf("the authorization server sent the browser to %q", back)
		}
		authorized := time.Now()
		r = getURL(t, front+cb.RequestURI(), "Cookie", strings.Join(cookies, "; "))
		if r.status != http.StatusOK {
			t.Fatalf("callback through the front (cookies %d): %s", len(cookies), r)
		}
		for _, in := range instances {
			eventually(t, waitLimit, in.name+": remote ready", func() bool { return serverState(t, in, "remote").State == "ready" })
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			r, err := sendURL(ctx, http.MethodPost, in.url("/tools/remote/echo"), `{"message":"hi"}`, clusterUser, "anyone")
			cancel()
			if err != nil || r.status != http.StatusOK || string(r.body) != `"hi"` {
				t.Fatalf("%s: call of remote: %s, %v", in.name, r, err)
			}
		}
		t.Logf("measured: every instance called the OAuth upstream %s after the one consent", time.Since(authorized).Round(time.Millisecond))
		if c := as.Counts(); c.Authorizations != 1 || c.Registrations != 1 {
			t.Errorf("the authorization server saw %+v, want one registration and one authorization", c)
		}
	})

	// Which instance each user is on.
	homes := map[string]string{}
	for i := range 8 {
		user := fmt.Sprintf("user%d", i)
		r, err := loadSend(context.Background(), front+"/tools/peruser/pid", "{}", user)
		if err != nil || r.status != http.StatusOK {
			t.Fatalf("%s: %s, %v", user, r, err)
		}
		homes[user] = r.header.Get("X-Served-By")
	}
	t.Logf("users' instances: %v", homes)
	byInstance := map[string][]string{}
	for u, in := range homes {
		byInstance[in] = append(byInstance[in], u)
	}
	if len(byInstance) < 2 {
		t.Fatalf("the front put every user on one instance: %v", homes)
	}

	var victim *clusterInstance
	t.Run("killing an instance under load fails only the calls in flight on it", func(t *testing.T) {
		for _, in := range instances {
			if victim == nil || len(byInstance[in.name]) > len(byInstance[victim.name]) {
				victim = in
			}
		}
		var killedAt time.Time
		calls := loadThrough(front, 8, 3*time.Second, "/tools/peruser/slow", `{"ms":100}`, time.Second, func() {
			killedAt = time.Now()
			_ = victim.proc.cmd.Process.Signal(syscall.SIGKILL)
		})
		var failed, after, movedOK int
		moved := map[string]bool{}
		for _, c := range calls {
			if !c.ok() {
				failed++
				if !c.start.Before(killedAt) || c.end.Before(killedAt) || homes[c.user] != victim.name {
					t.Errorf("a call not in flight on %s at the kill failed: %s from %v to %v after the kill: %d %v",
						victim.name, c.user, c.start.Sub(killedAt), c.end.Sub(killedAt), c.status, c.err)
				}
				continue
			}
			if c.start.After(killedAt) {
				after++
				if c.servedBy == victim.name {
					t.Errorf("a call after the kill was served by the killed instance")
				}
				if homes[c.user] == victim.name {
					movedOK++
					moved[c.user] = true
				}
			}
		}
		for _, u := range byInstance[victim.name] {
			if !moved[u] {
				t.Errorf("%s, whose instance was killed, made no call elsewhere after the kill", u)
			}
		}
		if failed > len(byInstance[victim.name]) {
			t.Errorf("%d calls failed, more than the %d users in flight on %s", failed, len(byInstance[victim.name]), victim.name)
		}
		t.Logf("measured: killed %s (%d of 8 users) under load: %d of %d calls failed (in flight on it); %d calls after the kill succeeded, %d of them of its users elsewhere",
			victim.name, len(byInstance[victim.name]), failed, len(calls), after, movedOK)

		// The instance comes back, and the front uses it again after
		// fail_duration.
		victim.proc = runCaddy(parent, bin, victim.config) // beyond this subtest
		eventually(t, waitLimit, victim.name+" back", func() bool { return ready(victim, "local") })
		time.Sleep(3 * time.Second)
	})

	t.Run("reloading an instance under load drops nothing", func(t *testing.T) {
		// The instance with the most users, other than the one killed.
		var target *clusterInstance
		for _, in := range instances {
			if in != victim && (target == nil || len(byInstance[in.name]) > len(byInstance[target.name])) {
				target = in
			}
		}
		// The same servers; only a response header changes.
		next := strings.Replace(target.config, "X-Config-Version 1", "X-Config-Version 2", 1)
		var reloadErr error
		var reloadTook time.Duration
		calls := loadThrough(front, 8, 3*time.Second, "/tools/peruser/slow", `{"ms":100}`, time.Second, func() {
			start := time.Now()
			reloadErr = postLoad(target.admin, next)
			reloadTook = time.Since(start)
		})
		if reloadErr != nil {
			t.Fatalf("reload: %v", reloadErr)
		}
		var failed int
		var onTarget int
		for _, c := range calls {
			if !c.ok() {
				failed++
				t.Errorf("a call failed across the reload: %s %d %v", c.user, c.status, c.err)
			}
			if c.servedBy == target.name {
				onTarget++
			}
		}
		if onTarget == 0 {
			t.Errorf("no call went to %s", target.name)
		}
		r := getURL(t, target.url("/tools/health"), clusterUser, "x")
		if r.header.Get("X-Config-Version") != "2" {
			t.Errorf("%s does not serve the new configuration", target.name)
		}
		t.Logf("measured: reloaded %s (in %s) under load: %d of %d calls failed, %d served by it",
			target.name, reloadTook.Round(time.Millisecond), failed, len(calls), onTarget)
	})

	t.Run("throughput of 1, 2 and 3 instances", func(t *testing.T) {
		// n = 0: one instance, directly, without the front.
		for n := 0; n <= 3; n++ {
			u := instances[0].url("")
			var p *caddyProcess
			if n > 0 {
				port := freePort()
				u = fmt.Sprintf("http://127.0.0.1:%d", port)
				p = runCaddy(t, bin, frontConfig(port, instances[:n]))
				eventually(t, waitLimit, "the front to answer", func() bool {
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					defer cancel()
					r, err := sendURL(ctx, http.MethodGet, u+"/tools/local/openapi.json", "", clusterUser, "x")
					return err == nil && r.status == http.StatusOK
				})
			}
			loadThrough(u, 16, 500*time.Millisecond, "/tools/local/echo", `{"message":"hi"}`, 0, nil) // warm up
			// The CPU the serving side (front, instances and their servers)
			// spends, whatever the load generator and the machine's other
			// work take.
			serving := []int{}
			for _, in := range instances[:max(n, 1)] {
				serving = append(serving, in.proc.cmd.Process.Pid)
			}
			if p != nil {
				serving = append(serving, p.cmd.Process.Pid)
			}
			before := treeCPU(serving)
			const d = 4 * time.Second
			calls := loadThrough(u, 16, d, "/tools/local/echo", `{"message":"hi"}`, 0, nil)
			cpu := cpuSince(before, treeCPU(serving))
			var ok int
			var lat []time.Duration
			for _, c := range calls {
				if c.ok() {
					ok++
					lat = append(lat, c.end.Sub(c.start))
				}
			}
			slices.Sort(lat)
			if ok != len(calls) {
				t.Errorf("%d instances: %d of %d calls failed", n, len(calls)-ok, len(calls))
			}
			var p50 time.Duration
			if len(lat) > 0 {
				p50 = lat[len(lat)/2]
			}
			what := fmt.Sprintf("%d instance(s) behind the front", n)
			if n == 0 {
				what = "1 instance without the front"
			}
			t.Logf("measured: %s, c=16, %s: %.0f calls/s, p50 %s, %s of CPU per call serving it",
				what, d, float64(ok)/d.Seconds(), p50.Round(100*time.Microsecond),
				(cpu / time.Duration(max(ok, 1))).Round(time.Microsecond))
			if p != nil {
				if err := p.stop(t); err != nil {
					t.Logf("front exited with %v", err)
				}
			}
		}
	})
}

// treeCPU returns the CPU time (user and system, in clock ticks) of each
// process of the trees below pids, by PID.
func treeCPU(pids []int) map[int]int {
	out := map[int]int{}
	for _, pid := range pids {
		for _, p := range append([]int{pid}, descendantPIDs(pid)...) {
			if f := procStat(p); len(f) > 12 {
				user, _ := strconv.Atoi(f[11])
				system, _ := strconv.Atoi(f[12])
				out[p] = user + system
			}
		}
	}
	return out
}

// cpuSince returns the CPU time the processes of after spent since before.
func cpuSince(before, after map[int]int) time.Duration {
	ticks := 0
	for pid, t := range after {
		ticks += t - before[pid]
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// postLoad loads a Caddyfile into the caddy process whose admin endpoint
// is on port, as caddy reload does.
func postLoad(port int, caddyfile string) error {
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/load", port), strings.NewReader(caddyfile))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /load: %s", resp.Status)
	}
	return nil
}

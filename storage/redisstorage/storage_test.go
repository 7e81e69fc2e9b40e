package redisstorage

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"

	"github.com/caddy-mcpo/caddy-mcpo/internal/redistest"
)

// newStorage provisions the module against addr with its own key prefix.
func newStorage(t *testing.T, cfg Storage) *Storage {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	s := cfg
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := s.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Cleanup() })
	return &s
}

// op is one step run against a storage; its result is compared between
// certmagic's FileStorage and this one.
type op struct {
	name string
	run  func(ctx context.Context, s certmagic.Storage) string
}

func store(k, v string) op {
	return op{"store " + k, func(ctx context.Context, s certmagic.Storage) string {
		return errString(s.Store(ctx, k, []byte(v)))
	}}
}

func load(k string) op {
	return op{"load " + k, func(ctx context.Context, s certmagic.Storage) string {
		b, err := s.Load(ctx, k)
		return string(b) + "|" + errString(err)
	}}
}

func exists(k string) op {
	return op{"exists " + k, func(ctx context.Context, s certmagic.Storage) string {
		if s.Exists(ctx, k) {
			return "yes"
		}
		return "no"
	}}
}

func list(k string, recursive bool) op {
	name := "list " + k
	if recursive {
		name += " recursively"
	}
	return op{name, func(ctx context.Context, s certmagic.Storage) string {
		keys, err := s.List(ctx, k, recursive)
		slices.Sort(keys)
		return strings.Join(keys, ",") + "|" + errString(err)
	}}
}

func stat(k string) op {
	return op{"stat " + k, func(ctx context.Context, s certmagic.Storage) string {
		info, err := s.Stat(ctx, k)
		if err != nil {
			return errString(err)
		}
		if !info.IsTerminal {
			return info.Key + " dir"
		}
		if time.Since(info.Modified) > time.Minute || info.Modified.After(time.Now().Add(time.Second)) {
			return "modified " + info.Modified.String()
		}
		return info.Key + " file " + string(rune('0'+info.Size))
	}}
}

func del(k string) op {
	return op{"delete " + k, func(ctx context.Context, s certmagic.Storage) string {
		return errString(s.Delete(ctx, k))
	}}
}

// errString keeps what callers rely on of an error: whether it says the
// key does not exist.
func errString(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, fs.ErrNotExist):
		return "not exist"
	default:
		return "error"
	}
}

func TestTheStorageBehavesAsCertmagicsFileStorage(t *testing.T) {
	srv := redistest.Start(t)
	ops := []op{
		load("mcpo/a"),
		exists("mcpo"),
		list("mcpo", false),
		stat("mcpo/a"),
		store("mcpo/a", "1"),
		store("mcpo/b/c", "22"),
		store("mcpo/b/d/e", "333"),
		store("mcpo/b*/x", "4"),
		store("mcpo/bb/y", "5"),
		store("other/z", "6"),
		load("mcpo/a"),
		load("mcpo/b/c"),
		exists("mcpo/a"),
		exists("mcpo/b"),
		exists("mcpo/b/d"),
		exists("mcpo/nope"),
		exists("mcp"),
		list("mcpo", false),
		list("mcpo", true),
		list("mcpo/b", false),
		list("mcpo/b", true),
		list("mcpo/b*", true),
		stat("mcpo/a"),
		stat("mcpo/b/d/e"),
		stat("mcpo/b"),
		stat("mcpo/none"),
		store("mcpo/a", "77"),
		load("mcpo/a"),
		stat("mcpo/a"),
		del("mcpo/b"),
		del("mcpo/b"),
		load("mcpo/b/c"),
		exists("mcpo/b"),
		load("mcpo/b*/x"),
		load("mcpo/bb/y"),
		del("mcpo/a"),
		load("mcpo/a"),
		list("mcpo", true),
		load("other/z"),
	}
	ctx := context.Background()
	file := &certmagic.FileStorage{Path: t.TempDir()}
	rs := newStorage(t, Storage{Address: srv.Addr, KeyPrefix: "conformance"})
	for i, o := range ops {
		want := o.run(ctx, file)
		got := o.run(ctx, rs)
		if got != want {
			t.Errorf("step %d, %s: redis %q, file_system %q", i, o.name, got, want)
		}
	}
}

func TestPrefixesAndDatabasesKeepDeploymentsApart(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	a := newStorage(t, Storage{Address: srv.Addr, KeyPrefix: "a"})
	b := newStorage(t, Storage{Address: srv.Addr, KeyPrefix: "b"})
	c := newStorage(t, Storage{Address: "redis://" + srv.Addr + "/3", KeyPrefix: "a"})
	if err := a.Store(ctx, "k", []byte("from a")); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*Storage{"another prefix": b, "another database": c} {
		if _, err := s.Load(ctx, "k"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s sees a's key: %v", name, err)
		}
		if err := s.Delete(ctx, "k"); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := a.Load(ctx, "k"); err != nil || string(v) != "from a" {
		t.Errorf("a's key after the others deleted theirs: %q, %v", v, err)
	}
	if strings.Contains(a.String(), "password") || !strings.Contains(a.String(), srv.Addr) {
		t.Errorf("String: %q", a.String())
	}
}

func TestAReloadedConfigurationKeepsTheConnection(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	cfg := Storage{Address: srv.Addr, KeyPrefix: "reload"}
	old := newStorage(t, cfg)
	next := newStorage(t, cfg)
	if old.conn != next.conn {
		t.Fatal("two configurations with the same settings have separate clients")
	}
	if err := old.Lock(ctx, "held"); err != nil {
		t.Fatal(err)
	}
	if err := old.Cleanup(); err != nil {
		t.Fatal(err)
	}
	old.poolID = "" // cleaned up
	if err := next.Store(ctx, "k", []byte("v")); err != nil {
		t.Fatalf("storing after the old configuration's cleanup: %v", err)
	}
	// The lock taken under the old configuration is released under the
	// new one.
	if err := next.Unlock(ctx, "held"); err != nil {
		t.Fatalf("unlocking under the new configuration: %v", err)
	}
}

func TestLocks(t *testing.T) {
	srv := redistest.Start(t)
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = raw.Close() })
	// Renewed every 500 ms: slack for a loaded machine.
	const ttl = 1500 * time.Millisecond
	one := newStorage(t, Storage{Address: srv.Addr, KeyPrefix: "locks"})
	// another instance: its own connection (another database index would
	// not share locks, another timeout gives another client).
	two := newStorage(t, Storage{Address: srv.Addr, KeyPrefix: "locks", DialTimeout: caddy.Duration(4 * time.Second)})
	if one.conn == two.conn {
		t.Fatal("the instances share a client")
	}
	one.lockTTL, two.lockTTL = ttl, ttl
	ctx := context.Background()

	t.Run("one holder at a time, the other waits for the release", func(t *testing.T) {
		var inside, most atomic.Int32
		var wg sync.WaitGroup
		for i := range 6 {
			s := []*Storage{one, two}[i%2]
			wg.Go(func() {
				for range 5 {
					if err := s.Lock(ctx, "mutex"); err != nil {
						t.Error(err)
						return
					}
					n := inside.Add(1)
					for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
					}
					time.Sleep(2 * time.Millisecond)
					inside.Add(-1)
					if err := s.Unlock(ctx, "mutex"); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		if most.Load() != 1 {
			t.Errorf("%d holders at once", most.Load())
		}
	})

	t.Run("a held lock is renewed past its TTL", func(t *testing.T) {
		if err := one.Lock(ctx, "long"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * ttl)
		for time.Now().Before(deadline) {
			if ok, err := two.TryLock(ctx, "long"); err != nil || ok {
				t.Fatalf("another instance took a held lock: %v, %v", ok, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := one.Unlock(ctx, "long"); err != nil {
			t.Fatal(err)
		}
		if ok, err := two.TryLock(ctx, "long"); err != nil || !ok {
			t.Fatalf("the released lock: %v, %v", ok, err)
		}
		if err := two.Unlock(ctx, "long"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("the lock of a holder that died expires after its TTL", func(t *testing.T) {
		if err := raw.Set(ctx, "locks:lock:dead", "a dead holder's token", ttl).Err(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := one.Lock(ctx, "dead"); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited < ttl/2 || waited > ttl+time.Second {
			t.Errorf("took the dead holder's lock after %v (TTL %v)", waited, ttl)
		}
		if err := one.Unlock(ctx, "dead"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("lock honours its context", func(t *testing.T) {
		if err := one.Lock(ctx, "ctx"); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = one.Unlock(ctx, "ctx") }()
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := two.Lock(cctx, "ctx")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("lock held elsewhere with a deadline: %v", err)
		}
		if d := time.Since(start); d > 300*time.Millisecond+lockPollEvery+time.Second {
			t.Errorf("returned %v after its deadline", d-300*time.Millisecond)
		}
	})

	t.Run("only the holder unlocks, and a lock taken over is not released by its old holder", func(t *testing.T) {
		if err := two.Unlock(ctx, "never-taken"); err == nil {
			t.Error("unlocking a lock never taken succeeded")
		}
		if err := one.Lock(ctx, "stolen"); err != nil {
			t.Fatal(err)
		}
		// The lock expires under the holder (Redis lost it, or it
		// stalled) and another takes it.
		one.conn.mu.Lock()
		held := one.conn.locks["locks:lock:stolen"]
		one.conn.mu.Unlock()
		held.stopRenewal()
		if err := raw.Set(ctx, "locks:lock:stolen", "the new holder's token", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if err := one.Unlock(ctx, "stolen"); err == nil {
			t.Error("the old holder's unlock reports success")
		}
		if v, _ := raw.Get(ctx, "locks:lock:stolen").Result(); v != "the new holder's token" {
			t.Errorf("the old holder's unlock released the new holder's lock: %q", v)
		}
	})
}

func TestTheStorageFailsWithContextWhenRedisIsDown(t *testing.T) {
	s := newStorage(t, Storage{Address: "127.0.0.1:1", DialTimeout: caddy.Duration(200 * time.Millisecond)})
	ctx := context.Background()
	if err := s.Store(ctx, "k", []byte("v")); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("store with Redis down: %v", err)
	}
	if _, err := s.Load(ctx, "k"); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("load with Redis down must not say the key does not exist: %v", err)
	}
	if err := s.Lock(ctx, "l"); err == nil {
		t.Error("lock with Redis down succeeded")
	}
}

func TestCaddyfile(t *testing.T) {
	tests := []struct {
		name, in string
		want     Storage
		wantErr  string
	}{
		{name: "address as argument", in: "mcpo_redis 10.0.0.1:6380", want: Storage{Address: "10.0.0.1:6380"}},
		{name: "every option", in: `mcpo_redis {
	address rediss://redis.internal:6380/2
	username caddy
	password {env.REDIS_PASSWORD}
	db 4
	key_prefix prod
	tls
	dial_timeout 2s
	read_timeout 500ms
}`, want: Storage{Address: "rediss://redis.internal:6380/2", Username: "caddy", Password: "{env.REDIS_PASSWORD}", DB: 4,
			KeyPrefix: "prod", TLS: true, DialTimeout: caddy.Duration(2 * time.Second), ReadTimeout: caddy.Duration(500 * time.Millisecond)}},
		{name: "unknown option", in: "mcpo_redis {\n\tpasswd x\n}", wantErr: `unknown option "passwd"`},
		{name: "db not a number", in: "mcpo_redis {\n\tdb one\n}", wantErr: "db"},
		{name: "tls takes no argument", in: "mcpo_redis {\n\ttls yes\n}", wantErr: "argument"},
		{name: "two addresses", in: "mcpo_redis a:1 b:2", wantErr: "argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Storage
			err := got.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestProvisionErrorsDoNotQuoteTheAddress(t *testing.T) {
	s := Storage{Address: "redis://user:s3cret-pass@host:notaport/x/y"}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	err := s.Provision(ctx)
	if err == nil {
		_ = s.Cleanup()
		t.Fatal("a bad URL was accepted")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("the error quotes the password: %v", err)
	}
}

func TestOptions(t *testing.T) {
	t.Setenv("MCPO_TEST_REDIS_PASSWORD", "from-env")
	tests := []struct {
		name                  string
		cfg                   Storage
		addr, user, password  string
		db                    int
		tlsServerName         string // "" for no TLS
		dialTimeout, readTime time.Duration
	}{
		{name: "default address", cfg: Storage{}, addr: "127.0.0.1:6379"},
		{name: "host and port", cfg: Storage{Address: "redis.internal:6380", DB: 2}, addr: "redis.internal:6380", db: 2},
		{name: "URL with database and credentials", cfg: Storage{Address: "redis://u:p@redis.internal:6381/5"},
			addr: "redis.internal:6381", user: "u", password: "p", db: 5},
		{name: "rediss URL is TLS", cfg: Storage{Address: "rediss://redis.internal:6380"}, addr: "redis.internal:6380", tlsServerName: "redis.internal"},
		{name: "tls on an IPv6 address", cfg: Storage{Address: "[::1]:6380", TLS: true}, addr: "[::1]:6380", tlsServerName: "::1"},
		{name: "placeholders", cfg: Storage{Address: "127.0.0.1:7000", Username: "caddy", Password: "{env.MCPO_TEST_REDIS_PASSWORD}"},
			addr: "127.0.0.1:7000", user: "caddy", password: "from-env"},
		{name: "timeouts", cfg: Storage{DialTimeout: caddy.Duration(time.Second), ReadTimeout: caddy.Duration(2 * time.Second)},
			addr: "127.0.0.1:6379", dialTimeout: time.Second, readTime: 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := tt.cfg.options(caddy.NewReplacer())
			if err != nil {
				t.Fatal(err)
			}
			if o.Addr != tt.addr || o.Username != tt.user || o.Password != tt.password || o.DB != tt.db {
				t.Errorf("addr %q user %q password %q db %d", o.Addr, o.Username, o.Password, o.DB)
			}
			switch {
			case tt.tlsServerName == "" && o.TLSConfig != nil:
				t.Error("TLS without asking for it")
			case tt.tlsServerName != "" && (o.TLSConfig == nil || o.TLSConfig.ServerName != tt.tlsServerName):
				t.Errorf("TLS config %+v, want server name %q", o.TLSConfig, tt.tlsServerName)
			}
			if tt.dialTimeout != 0 && (o.DialTimeout != tt.dialTimeout || o.ReadTimeout != tt.readTime || o.WriteTimeout != tt.readTime) {
				t.Errorf("timeouts %v %v %v", o.DialTimeout, o.ReadTimeout, o.WriteTimeout)
			}
		})
	}
}

package caddymcpo

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
	"github.com/caddy-mcpo/caddy-mcpo/oauth"
)

// pool owns the running MCP servers, shared by the configurations that use
// them: a reload hands every server whose identity (its spec's key) did
// not change over to the new configuration, running. Handlers lease their
// servers from it while they are provisioned; the mcpo app starts the
// leases when their configuration starts; the pool stops a server, in the
// background, when the last configuration using it releases it.
type pool struct {
	entries *caddy.UsagePool // *entry, by the key of its upstream's spec
	closing sync.WaitGroup   // entries stopping in the background
}

func newPool() *pool {
	return &pool{entries: caddy.NewUsagePool()}
}

// shared is the process's pool: servers outlive the configurations that
// start them.
var shared = newPool()

// owner is what the configuration using a server gives it: its logger and
// its storage, for the server's OAuth tokens.
type owner struct {
	log     *zap.Logger
	storage certmagic.Storage
}

// acquire leases the server r describes to the configuration o: the
// running one when another configuration uses it, else a new, idle one. A
// per-user server is keyed by its template: its callers' sessions carry
// over as long as the template does.
func (p *pool) acquire(r resolved, o owner) (*lease, error) {
	key := r.spec.Key()
	if r.users != nil {
		key = r.users.key()
	}
	val, loaded, err := p.entries.LoadOrNew(key, func() (caddy.Destructor, error) {
		return p.newEntry(key, r, o)
	})
	if err != nil {
		return nil, err
	}
	return &lease{pool: p, key: key, entry: val.(*entry), adopt: loaded, opts: r.opts, users: r.users, owner: o, extras: r.extras}, nil
}

// wait waits for the servers stopping in the background.
func (p *pool) wait() { p.closing.Wait() }

// serverSnapshot is one server of the pool at a moment.
type serverSnapshot struct {
	id     string
	status upstream.Status
	entry  *entry
}

// snapshot returns every server of the pool, sorted by name, then id.
func (p *pool) snapshot() []serverSnapshot {
	var out []serverSnapshot
	p.entries.Range(func(_, value any) bool {
		if e, ok := value.(*entry); ok {
			out = append(out, serverSnapshot{id: e.id, entry: e})
		}
		return true
	})
	// Status locks the server: take it outside the pool's lock.
	for i := range out {
		out[i].status = out[i].entry.status()
	}
	slices.SortFunc(out, func(a, b serverSnapshot) int {
		return cmp.Or(strings.Compare(a.status.Name, b.status.Name), strings.Compare(a.id, b.id))
	})
	return out
}

// entry is one server of the pool: its upstream, and the OAuth client and
// token storage that go with it; or, for a per-user server, its callers'
// sessions.
type entry struct {
	pool     *pool
	id       string             // the admin API's id
	upstream *upstream.Upstream // nil for a per-user server
	users    *userSessions      // nil for a shared server
	oauth    *oauth.Client      // nil without OAuth
	storage  *liveStorage       // the OAuth client's storage; nil without OAuth
	// tasks keeps the tasks of the server's tools started over REST:
	// with the server, they outlive a reload that keeps it.
	tasks *bridge.TaskStore
}

// newEntry builds the idle server r describes, for the configuration o.
func (p *pool) newEntry(key string, r resolved, o owner) (*entry, error) {
	e := &entry{pool: p, id: serverID(key)}
	if r.users != nil {
		var auth *userOAuth
		if r.oauth != nil { // the authorization-code grant (ServerConfig.Validate)
			e.storage = newLiveStorage(o.storage)
			var err error
			if auth, err = newUserOAuth(r.spec.Name, *r.oauth, e.storage, o.log); err != nil {
				return nil, err
			}
		}
		var store *listingStore
		if r.users.stored && auth == nil {
			e.storage = newLiveStorage(o.storage)
			store = &listingStore{storage: e.storage, key: listingStoreKey(key), log: func() *zap.Logger {
				return e.users.logger().With(zap.String("server", r.spec.Name))
			}}
		}
		e.users = newUserSessions(r.spec.Name, r.users, r.opts, o.log, auth, store)
		e.tasks = bridge.NewTaskStore(bridge.TaskLimits{}, o.log.With(zap.String("server", r.spec.Name)))
		return e, nil
	}
	spec := r.spec
	if r.oauth != nil {
		e.storage = newLiveStorage(o.storage)
		cfg := *r.oauth
		cfg.Store, cfg.Logger = e.storage, o.log.With(zap.String("server", spec.Name))
		c, err := oauth.New(cfg)
		if err != nil {
			return nil, err
		}
		e.oauth, spec.Auth = c, c
	}
	e.upstream = upstream.New(spec, r.opts, o.log)
	e.tasks = bridge.NewTaskStore(bridge.TaskLimits{}, o.log.With(zap.String("server", spec.Name)))
	return e, nil
}

// serverID returns the id of the server under a pool key: the first 12 hex
// digits of the key's SHA-256, short and stable while the server's
// configuration stays the same.
func serverID(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:6])
}

// adopt hands the running server over to the configuration o, with its
// options, and for a per-user server the settings of its sessions.
func (e *entry) adopt(opts upstream.Options, users *userTemplate, o owner) {
	if e.users != nil {
		e.users.configure(users.settings, opts, o.log)
		if e.storage != nil {
			e.storage.set(o.storage)
		}
		if a := e.users.auth; a != nil {
			a.setLogger(o.log)
		}
		return
	}
	e.upstream.SetLogger(o.log)
	e.upstream.SetOptions(opts)
	if e.oauth != nil {
		e.storage.set(o.storage)
		e.oauth.SetLogger(o.log.With(zap.String("server", e.upstream.Spec().Name)))
	}
}

// consent returns the consent pages of a server a user authorizes, nil
// for others.
func (e *entry) consent() bridge.Consent {
	if e.users != nil && e.users.auth != nil {
		return e.users.auth
	}
	if e.oauth == nil || e.oauth.Status().Grant != oauth.GrantAuthorizationCode {
		return nil
	}
	return e.oauth
}

// status describes the server.
func (e *entry) status() upstream.Status {
	if e.users != nil {
		return e.users.status()
	}
	return e.upstream.Status()
}

// Sessions returns how many sessions a per-user server runs and may run;
// ok is false for a shared server.
func (e *entry) Sessions() (running, limit int, ok bool) {
	if e.users == nil {
		return 0, 0, false
	}
	running, limit = e.users.count()
	return running, limit, true
}

// start starts the server, or a per-user server's listing session.
func (e *entry) start() {
	if e.users != nil {
		e.users.start()
		return
	}
	e.upstream.Start()
}

// restart ends the server's session, or cuts its backoff short; for a
// per-user server, it ends every caller's session, and each caller's next
// call starts a new one.
func (e *entry) restart() {
	if e.users != nil {
		e.users.endAll()
		return
	}
	e.upstream.Restart()
}

// refresh has the server list its tools again.
func (e *entry) refresh() error {
	if e.users != nil {
		return e.users.refresh()
	}
	return e.upstream.Refresh()
}

// Destruct stops the server, which no configuration uses any more, in the
// background: calls under way finish (within the drain timeout) without
// holding up the new configuration, and when Caddy exits, the servers of
// the last configuration stop together rather than one after the other
// (app.go has the process wait for them).
func (e *entry) Destruct() error {
	// The tasks' watchers end now; the tasks run on at the server until it
	// stops.
	e.tasks.Close()
	if e.users != nil {
		e.pool.closing.Go(e.users.close)
		return nil
	}
	e.pool.closing.Go(func() { _ = e.upstream.Close() })
	return nil
}

// lease is a configuration's hold on a server of the pool: what its
// handler's bridge calls, and what its app starts.
type lease struct {
	pool  *pool
	key   string
	entry *entry
	adopt bool // the server ran for an earlier configuration
	opts  upstream.Options
	users *userTemplate // a per-user server's settings; nil for a shared one
	owner owner
	// extras are what the configuration adds to each call; nil for none.
	extras *callExtras

	released bool
}

// Tools returns the server's last tool listing.
func (l *lease) Tools() *upstream.ToolSet {
	if u := l.entry.users; u != nil {
		return u.tools()
	}
	return l.entry.upstream.Tools()
}

// CallTool calls a tool of the server: of a per-user server, in the
// session of the caller ctx carries (bridge.IdentityFrom).
func (l *lease) CallTool(ctx context.Context, name string, args json.RawMessage) (*upstream.CallResult, error) {
	ctx = l.callExtras(ctx)
	if u := l.entry.users; u != nil {
		return u.callTool(ctx, name, args)
	}
	return l.entry.upstream.CallTool(ctx, name, args)
}

// callExtras returns ctx with what the configuration adds to a call of
// the caller whose request ctx belongs to (forward_headers, header values
// resolved per call, meta_identity): ctx itself for a server with none.
func (l *lease) callExtras(ctx context.Context) context.Context {
	if l.extras == nil {
		return ctx
	}
	return l.extras.apply(ctx, l.owner.log)
}

// Status describes the server.
func (l *lease) Status() upstream.Status { return l.entry.status() }

// MayAsk tells whether the server may ask for input during a request: its
// configuration lets it elicit or sample.
func (l *lease) MayAsk() bool { return l.opts.Elicitation != nil || l.opts.Sampling }

// Sessions returns how many sessions a per-user server runs and may run;
// ok is false for a shared server.
func (l *lease) Sessions() (running, limit int, ok bool) { return l.entry.Sessions() }

// consent returns the server's consent pages, nil if it has none.
func (l *lease) consent() bridge.Consent { return l.entry.consent() }

// start starts the server for the configuration holding the lease, which
// starts now: a server that ran for an earlier configuration is handed
// over (logger, options, storage) only then, so that a configuration that
// fails to load leaves it as it was.
func (l *lease) start() {
	if l.adopt {
		l.entry.adopt(l.opts, l.users, l.owner)
	}
	l.entry.start()
}

// release gives the server back, once; the pool stops it when no
// configuration holds it any more.
func (l *lease) release() error {
	if l.released {
		return nil
	}
	l.released = true
	_, err := l.pool.entries.Delete(l.key)
	return err
}

// liveStorage is the storage of the newest configuration that uses a
// pooled server. A server outlives the configuration that started it,
// while Caddy cleans up a configuration's storage module when that
// configuration stops; each configuration that takes the server over
// hands it its own storage.
type liveStorage struct {
	cur atomic.Pointer[certmagic.Storage]
}

func newLiveStorage(s certmagic.Storage) *liveStorage {
	l := &liveStorage{}
	l.set(s)
	return l
}

func (l *liveStorage) set(s certmagic.Storage) { l.cur.Store(&s) }

func (l *liveStorage) get() certmagic.Storage { return *l.cur.Load() }

// Store stores a value in the current storage.
func (l *liveStorage) Store(ctx context.Context, key string, value []byte) error {
	return l.get().Store(ctx, key, value)
}

// Load loads a value from the current storage.
func (l *liveStorage) Load(ctx context.Context, key string) ([]byte, error) {
	return l.get().Load(ctx, key)
}

// Delete deletes a value from the current storage.
func (l *liveStorage) Delete(ctx context.Context, key string) error {
	return l.get().Delete(ctx, key)
}

// Lock takes a lock of the current storage, shared with the processes
// that use it.
func (l *liveStorage) Lock(ctx context.Context, name string) error {
	return l.get().Lock(ctx, name)
}

// Unlock releases a lock of the current storage.
func (l *liveStorage) Unlock(ctx context.Context, name string) error {
	return l.get().Unlock(ctx, name)
}

// Interface guards.
var (
	_ caddy.Destructor      = (*entry)(nil)
	_ bridge.Caller         = (*lease)(nil)
	_ bridge.InputAsker     = (*lease)(nil)
	_ bridge.SessionCounter = (*lease)(nil)
	_ bridge.SessionCounter = (*entry)(nil)
	_ oauth.Store           = (*liveStorage)(nil)
)

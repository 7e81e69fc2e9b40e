// Package redisstorage is a Caddy storage module on Redis,
// caddy.storage.mcpo_redis, so that several Caddy instances share what
// Caddy keeps in storage: for caddy-mcpo the OAuth client registrations
// and tokens and the last tool listings of servers started on demand, and
// for Caddy itself certificates and ACME accounts.
//
// It is a thin certmagic.Storage over github.com/redis/go-redis: Redis is
// the engine, and this package only maps the storage's file semantics onto
// it. Its module ID is caddy.storage.mcpo_redis rather than
// caddy.storage.redis so that it never collides with a third-party Redis
// storage module built into the same Caddy: Caddy refuses two modules with
// one ID, and the third-party ones are not served by every module proxy.
//
// Keys: a file key k is the Redis hash <key_prefix>/k, with the fields v
// (the value) and m (the modification time, Unix milliseconds), written in
// one HSET. Directories are implicit, as in certmagic: a directory exists
// while a file below it does. List, Exists and Delete of a directory walk
// the keys below it with SCAN MATCH (never KEYS, which blocks the server).
//
// Locks: the lock name n is the Redis string <key_prefix>:lock:<n>, taken
// with SET NX PX and a random token, so that only its holder releases it
// (a Lua compare-and-delete). While held, it is renewed every third of its
// TTL (a Lua compare-and-pexpire), so that a lock outlives long work, as
// certmagic's file locks do by refreshing their timestamp; a holder that
// dies stops renewing, and its lock expires after the TTL (certmagic's file
// locks are stale after 10 s; these after LockTTL). Lock polls until the
// lock is free or its context ends.
package redisstorage

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Storage{})
	// go-redis logs (dial failures, pool events) through Caddy's logger,
	// as structured lines, instead of its own to stderr.
	redis.SetLogger(redisLogger{})
}

// redisLogger is go-redis's logger on Caddy's.
type redisLogger struct{}

// Printf implements go-redis's internal.Logging.
func (redisLogger) Printf(_ context.Context, format string, v ...any) {
	caddy.Log().Named("storage.mcpo_redis").Warn(fmt.Sprintf(format, v...))
}

// Defaults and lock timings.
const (
	// DefaultKeyPrefix is the prefix of every Redis key the storage uses.
	DefaultKeyPrefix = "caddy"
	// LockTTL is how long a lock lives without renewal: how long a lock
	// of a holder that died blocks others.
	LockTTL = 15 * time.Second
	// lockPollEvery is how often Lock tries again while the lock is held
	// elsewhere.
	lockPollEvery = 200 * time.Millisecond
	// scanCount is the COUNT hint of SCAN.
	scanCount = 1000
)

// Storage is the Caddy storage module caddy.storage.mcpo_redis: Caddy's
// storage kept in Redis, shared by every Caddy instance configured with the
// same address, database and key prefix.
//
// In the Caddyfile's global options:
//
//	storage mcpo_redis {
//		address    127.0.0.1:6379      # or redis://, rediss:// URL
//		username   {env.REDIS_USER}
//		password   {env.REDIS_PASSWORD}
//		db         0
//		key_prefix caddy
//		tls
//		dial_timeout 5s
//		read_timeout 3s
//	}
type Storage struct {
	// Address is the Redis server: host:port, or a redis:// or rediss://
	// URL (which may carry the database, and TLS with rediss). Default:
	// 127.0.0.1:6379. Placeholders such as {env.REDIS_ADDR} are replaced.
	Address string `json:"address,omitempty"`
	// Username for Redis ACLs; placeholders are replaced.
	Username string `json:"username,omitempty"`
	// Password; placeholders are replaced. It is never logged.
	Password string `json:"password,omitempty"`
	// DB is the Redis database number. Default: 0, or the URL's.
	DB int `json:"db,omitempty"`
	// KeyPrefix prefixes every key, so that several deployments share one
	// Redis. Default: "caddy".
	KeyPrefix string `json:"key_prefix,omitempty"`
	// TLS connects with TLS (the system's roots verify the server).
	TLS bool `json:"tls,omitempty"`
	// DialTimeout bounds connecting. Default: go-redis's (5 s).
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`
	// ReadTimeout bounds each command's reply (and its write). Default:
	// go-redis's (3 s).
	ReadTimeout caddy.Duration `json:"read_timeout,omitempty"`

	prefix string // KeyPrefix, resolved
	conn   *conn
	poolID string
	log    *zap.Logger
	// lockTTL replaces LockTTL in tests.
	lockTTL time.Duration
}

// CaddyModule returns the Caddy module information.
func (Storage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.storage.mcpo_redis",
		New: func() caddy.Module { return new(Storage) },
	}
}

// conns are the Redis clients in use, by their connection settings, so
// that a reload keeps the connections (and the locks held through them)
// of an unchanged configuration.
var conns = caddy.NewUsagePool()

// conn is a Redis client and the locks this process holds through it.
type conn struct {
	rdb *redis.Client

	mu    sync.Mutex
	locks map[string]*heldLock // by Redis key
}

// Destruct closes the client, and with it the renewal of any lock still
// held (they then expire after LockTTL).
func (c *conn) Destruct() error {
	c.mu.Lock()
	for k, l := range c.locks {
		l.stopRenewal()
		delete(c.locks, k)
	}
	c.mu.Unlock()
	return c.rdb.Close()
}

// Provision resolves placeholders and connects (lazily: the first command
// dials).
func (s *Storage) Provision(ctx caddy.Context) error {
	s.log = ctx.Logger()
	repl := caddy.NewReplacer()
	opts, err := s.options(repl)
	if err != nil {
		return err
	}
	s.prefix = repl.ReplaceAll(s.KeyPrefix, "")
	if s.prefix == "" {
		s.prefix = DefaultKeyPrefix
	}
	// The pool key is a digest: it holds the password.
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%s\x00%d\x00%t\x00%d\x00%d",
		opts.Addr, opts.Username, opts.Password, opts.DB, opts.TLSConfig != nil, opts.DialTimeout, opts.ReadTimeout))
	s.poolID = hex.EncodeToString(sum[:])
	v, _, err := conns.LoadOrNew(s.poolID, func() (caddy.Destructor, error) {
		return &conn{rdb: redis.NewClient(opts), locks: make(map[string]*heldLock)}, nil
	})
	if err != nil {
		return fmt.Errorf("redis storage: %w", err)
	}
	s.conn = v.(*conn)
	return nil
}

// options builds the client options from the configuration.
func (s *Storage) options(repl *caddy.Replacer) (*redis.Options, error) {
	addr := repl.ReplaceAll(s.Address, "")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	var opts *redis.Options
	if strings.Contains(addr, "://") {
		var err error
		if opts, err = redis.ParseURL(addr); err != nil {
			// The URL may hold a password: do not quote it.
			return nil, errors.New("redis storage: address is not a valid redis:// or rediss:// URL")
		}
	} else {
		opts = &redis.Options{Addr: addr}
	}
	if u := repl.ReplaceAll(s.Username, ""); u != "" {
		opts.Username = u
	}
	if p := repl.ReplaceAll(s.Password, ""); p != "" {
		opts.Password = p
	}
	if s.DB != 0 {
		opts.DB = s.DB
	}
	if s.TLS && opts.TLSConfig == nil {
		host := opts.Addr
		if h, _, err := net.SplitHostPort(opts.Addr); err == nil {
			host = h
		}
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	}
	if s.DialTimeout > 0 {
		opts.DialTimeout = time.Duration(s.DialTimeout)
	}
	if s.ReadTimeout > 0 {
		opts.ReadTimeout = time.Duration(s.ReadTimeout)
		opts.WriteTimeout = time.Duration(s.ReadTimeout)
	}
	return opts, nil
}

// Validate checks the configuration.
func (s *Storage) Validate() error {
	if s.DB < 0 {
		return fmt.Errorf("redis storage: db %d is negative", s.DB)
	}
	if s.DialTimeout < 0 || s.ReadTimeout < 0 {
		return errors.New("redis storage: timeouts must not be negative")
	}
	if strings.ContainsAny(s.KeyPrefix, "*?[]\\") {
		return fmt.Errorf("redis storage: key_prefix %q holds a glob character", s.KeyPrefix)
	}
	return nil
}

// Cleanup releases the client; it closes when no configuration uses it.
func (s *Storage) Cleanup() error {
	if s.poolID == "" {
		return nil
	}
	_, err := conns.Delete(s.poolID)
	return err
}

// CertMagicStorage returns the storage (caddy.StorageConverter).
func (s *Storage) CertMagicStorage() (certmagic.Storage, error) { return s, nil }

// String describes the storage, without credentials.
func (s *Storage) String() string {
	if s.conn == nil {
		return "mcpo_redis"
	}
	o := s.conn.rdb.Options()
	return fmt.Sprintf("mcpo_redis:%s/%d/%s", o.Addr, o.DB, s.prefix)
}

func (s *Storage) logger() *zap.Logger {
	if s.log == nil {
		return zap.NewNop()
	}
	return s.log
}

// fileKey is the Redis key of the file key.
func (s *Storage) fileKey(key string) string { return s.prefix + "/" + key }

// dirPattern is the SCAN pattern of every file below the directory dir
// ("" for the root).
func (s *Storage) dirPattern(dir string) string {
	p := s.prefix + "/"
	if dir != "" {
		p += dir + "/"
	}
	return globEscape(p) + "*"
}

// globEscape escapes the characters special to SCAN MATCH.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// normalize trims the slashes certmagic's keys must not have.
func normalize(key string) string { return strings.Trim(key, "/") }

// Store implements certmagic.Storage.
func (s *Storage) Store(ctx context.Context, key string, value []byte) error {
	key = normalize(key)
	if key == "" {
		return errors.New("redis storage: empty key")
	}
	if err := s.conn.rdb.HSet(ctx, s.fileKey(key), "v", value, "m", time.Now().UnixMilli()).Err(); err != nil {
		return fmt.Errorf("redis storage: storing %s: %w", key, err)
	}
	return nil
}

// Load implements certmagic.Storage.
func (s *Storage) Load(ctx context.Context, key string) ([]byte, error) {
	key = normalize(key)
	v, err := s.conn.rdb.HGet(ctx, s.fileKey(key), "v").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%s: %w", key, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("redis storage: loading %s: %w", key, err)
	}
	return v, nil
}

// Delete implements certmagic.Storage: the file key, or every file below
// the directory key.
func (s *Storage) Delete(ctx context.Context, key string) error {
	key = normalize(key)
	if err := s.conn.rdb.Unlink(ctx, s.fileKey(key)).Err(); err != nil {
		return fmt.Errorf("redis storage: deleting %s: %w", key, err)
	}
	if key == "" {
		return nil // never the whole storage by accident
	}
	err := s.scan(ctx, s.dirPattern(key), func(keys []string) error {
		return s.conn.rdb.Unlink(ctx, keys...).Err()
	})
	if err != nil {
		return fmt.Errorf("redis storage: deleting %s: %w", key, err)
	}
	return nil
}

// Exists implements certmagic.Storage.
func (s *Storage) Exists(ctx context.Context, key string) bool {
	key = normalize(key)
	n, err := s.conn.rdb.Exists(ctx, s.fileKey(key)).Result()
	if err != nil {
		return false
	}
	if n > 0 {
		return true
	}
	dir, err := s.isDir(ctx, key)
	return err == nil && dir
}

// isDir reports whether a file exists below key.
func (s *Storage) isDir(ctx context.Context, key string) (bool, error) {
	found := false
	errFound := errors.New("found")
	err := s.scan(ctx, s.dirPattern(key), func([]string) error {
		found = true
		return errFound
	})
	if err != nil && !errors.Is(err, errFound) {
		return false, err
	}
	return found, nil
}

// scan calls f with every non-empty batch of keys matching pattern.
func (s *Storage) scan(ctx context.Context, pattern string, f func(keys []string) error) error {
	var cursor uint64
	for {
		keys, next, err := s.conn.rdb.Scan(ctx, cursor, pattern, scanCount).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := f(keys); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// List implements certmagic.Storage: the keys directly below dir, files
// and directories; with recursive, every file and directory below it, as
// certmagic's FileStorage lists them (in no particular order).
func (s *Storage) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	dir = normalize(dir)
	base := s.prefix + "/"
	if dir != "" {
		base += dir + "/"
	}
	seen := make(map[string]bool)
	var out []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	err := s.scan(ctx, s.dirPattern(dir), func(keys []string) error {
		for _, k := range keys {
			rel := strings.TrimPrefix(k, base)
			segs := strings.Split(rel, "/")
			if !recursive {
				add(path.Join(dir, segs[0]))
				continue
			}
			for i := range segs {
				add(path.Join(dir, strings.Join(segs[:i+1], "/")))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("redis storage: listing %s: %w", dir, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: %w", dir, fs.ErrNotExist)
	}
	return out, nil
}

// Stat implements certmagic.Storage.
func (s *Storage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	key = normalize(key)
	fk := s.fileKey(key)
	pipe := s.conn.rdb.Pipeline()
	m := pipe.HGet(ctx, fk, "m")
	n := pipe.HStrLen(ctx, fk, "v")
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return certmagic.KeyInfo{}, fmt.Errorf("redis storage: stat %s: %w", key, err)
	}
	if ms, err := m.Result(); err == nil {
		msec, perr := strconv.ParseInt(ms, 10, 64)
		if perr != nil {
			return certmagic.KeyInfo{}, fmt.Errorf("redis storage: stat %s: bad modification time", key)
		}
		return certmagic.KeyInfo{Key: key, Modified: time.UnixMilli(msec), Size: n.Val(), IsTerminal: true}, nil
	}
	dir, err := s.isDir(ctx, key)
	if err != nil {
		return certmagic.KeyInfo{}, fmt.Errorf("redis storage: stat %s: %w", key, err)
	}
	if !dir {
		return certmagic.KeyInfo{}, fmt.Errorf("%s: %w", key, fs.ErrNotExist)
	}
	return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
}

// Interface guards.
var (
	_ certmagic.Storage      = (*Storage)(nil)
	_ certmagic.TryLocker    = (*Storage)(nil)
	_ caddy.StorageConverter = (*Storage)(nil)
	_ caddy.Provisioner      = (*Storage)(nil)
	_ caddy.Validator        = (*Storage)(nil)
	_ caddy.CleanerUpper     = (*Storage)(nil)
	_ caddyfile.Unmarshaler  = (*Storage)(nil)
)

// newToken returns a random lock token.
func newToken() string {
	return rand.Text()
}

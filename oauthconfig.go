package caddymcpo

import (
	"context"
	"sync/atomic"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/oauth"
)

// newOAuthClient builds the client of a server that is not pooled yet,
// keeping its tokens in store.
func newOAuthClient(cfg oauth.Config, store *liveStorage, log *zap.Logger) (*oauth.Client, error) {
	cfg.Store = store
	cfg.Logger = log
	return oauth.New(cfg)
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

func (l *liveStorage) Store(ctx context.Context, key string, value []byte) error {
	return l.get().Store(ctx, key, value)
}

func (l *liveStorage) Load(ctx context.Context, key string) ([]byte, error) {
	return l.get().Load(ctx, key)
}

func (l *liveStorage) Delete(ctx context.Context, key string) error {
	return l.get().Delete(ctx, key)
}

package caddymcpo

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io/fs"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-mcpo/caddy-mcpo/bridge"
	"github.com/caddy-mcpo/caddy-mcpo/bridge/upstream"
)

// A shared server started on demand (start on_demand) runs as a per-user
// server (userSessions) whose every caller is onDemandIdentity: its one
// session starts on the first call, which waits for it, and stops after
// idle_timeout without calls, and its listing comes from storage or from a
// listing session at load. Its template holds no caller's placeholder
// (ServerConfig.validateUserPlaceholders), so the session's spec is the
// server's.

// onDemandIdentity is who every call of a server started on demand runs
// as; also the identity of its listing session.
var onDemandIdentity = bridge.Identity{ID: "on_demand"}

// onDemandSessions is how many sessions a server started on demand may
// run at once: its callers' one, and the listing session at load, so that
// a call coming while the listing runs need not wait for it.
const onDemandSessions = 2

// onDemandTemplate returns the template of the shared server spec started
// on demand, stopped after idle (default: defaultIdleTimeout).
func onDemandTemplate(spec upstream.Spec, idle time.Duration) *userTemplate {
	return &userTemplate{spec: spec, shared: true, stored: true, settings: userSettings{
		idle:   cmp.Or(idle, defaultIdleTimeout),
		max:    onDemandSessions,
		listAs: onDemandIdentity.ID,
	}}
}

// listingStoreKey is where the listing of the server under the pool key is
// kept in storage: under a digest of the key, which names the server's
// identity (command, arguments, environment, url) without showing it.
func listingStoreKey(poolKey string) string {
	sum := sha256.Sum256([]byte(poolKey))
	return "mcpo/listings/" + hex.EncodeToString(sum[:16])
}

// listingStore keeps a server's last tool listing in Caddy's storage, so
// that a restart serves the documents before the server runs.
type listingStore struct {
	storage *liveStorage
	key     string
	log     func() *zap.Logger

	mu sync.Mutex // orders the writes
}

// load returns the listing kept in storage, nil if there is none or it
// cannot be read.
func (s *listingStore) load(ctx context.Context) *upstream.ToolSet {
	b, err := s.storage.Load(ctx, s.key)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log().Warn("cannot read the stored tool listing", zap.Error(err))
		}
		return nil
	}
	var ts upstream.ToolSet
	if err := json.Unmarshal(b, &ts); err != nil {
		s.log().Warn("ignoring a stored tool listing that is not valid", zap.Error(err))
		return nil
	}
	return &ts
}

// save keeps the listing current returns in storage. Writes are ordered,
// and each writes the listing current when it runs, so the last one
// stored is the latest.
func (s *listingStore) save(current func() *upstream.ToolSet) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := current()
	if ts == nil {
		return
	}
	b, err := json.Marshal(ts)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err = s.storage.Store(ctx, s.key, b)
	}
	if err != nil {
		s.log().Warn("cannot store the tool listing; a restart lists the tools again", zap.Error(err))
	}
}

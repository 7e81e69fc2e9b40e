package redisstorage

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// The scripts that touch a lock only while it holds the caller's token.
var (
	unlockScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)
	renewScript  = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)
)

// heldLock is a lock this process holds, and its renewal.
type heldLock struct {
	token string
	stop  chan struct{} // closed to end the renewal
	done  chan struct{} // closed when the renewal has ended
}

// stopRenewal ends the renewal and waits for it.
func (l *heldLock) stopRenewal() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	<-l.done
}

// ttl is the locks' time to live.
func (s *Storage) ttl() time.Duration {
	if s.lockTTL > 0 {
		return s.lockTTL
	}
	return LockTTL
}

// lockKey is the Redis key of the lock name.
func (s *Storage) lockKey(name string) string { return s.prefix + ":lock:" + name }

// Lock implements certmagic.Locker: it takes the lock, trying again every
// lockPollEvery while another holds it, until ctx ends.
func (s *Storage) Lock(ctx context.Context, name string) error {
	for {
		ok, err := s.TryLock(ctx, name)
		if err != nil || ok {
			return err
		}
		t := time.NewTimer(lockPollEvery)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("redis storage: waiting for lock %s: %w", name, ctx.Err())
		case <-t.C:
		}
	}
}

// TryLock implements certmagic.TryLocker: it takes the lock if it is
// free, and reports whether it did.
func (s *Storage) TryLock(ctx context.Context, name string) (bool, error) {
	key := s.lockKey(name)
	token := newToken()
	ok, err := s.conn.rdb.SetNX(ctx, key, token, s.ttl()).Result()
	if err != nil {
		return false, fmt.Errorf("redis storage: taking lock %s: %w", name, err)
	}
	if !ok {
		return false, nil
	}
	l := &heldLock{token: token, stop: make(chan struct{}), done: make(chan struct{})}
	c := s.conn
	c.mu.Lock()
	old := c.locks[key]
	c.locks[key] = l
	c.mu.Unlock()
	if old != nil {
		// A lock of ours that expired (its renewal failed): forget it.
		old.stopRenewal()
	}
	go s.renew(key, name, l)
	return true, nil
}

// renew keeps the lock alive until stopped or lost.
func (s *Storage) renew(key, name string, l *heldLock) {
	defer close(l.done)
	ttl := s.ttl()
	every := ttl / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), every)
		n, err := renewScript.Run(ctx, s.conn.rdb, []string{key}, l.token, ttl.Milliseconds()).Int()
		cancel()
		switch {
		case err != nil:
			// Redis unreachable: try again; the lock expires after
			// LockTTL if it stays so.
			s.logger().Warn("cannot renew a storage lock", zap.String("lock", name), zap.Error(err))
		case n == 0:
			s.logger().Error("a storage lock expired while held: another instance may take it", zap.String("lock", name))
			return
		}
	}
}

// Unlock implements certmagic.Locker: it releases the lock if it still
// holds this process's token.
func (s *Storage) Unlock(ctx context.Context, name string) error {
	key := s.lockKey(name)
	c := s.conn
	c.mu.Lock()
	l := c.locks[key]
	delete(c.locks, key)
	c.mu.Unlock()
	if l == nil {
		return fmt.Errorf("redis storage: unlocking %s: not held", name)
	}
	l.stopRenewal()
	n, err := unlockScript.Run(ctx, c.rdb, []string{key}, l.token).Int()
	if err != nil {
		return fmt.Errorf("redis storage: unlocking %s: %w", name, err)
	}
	if n == 0 {
		return fmt.Errorf("redis storage: unlocking %s: the lock had expired", name)
	}
	return nil
}

// Package keycache keeps unwrapped keys for a short time in protected
// memory (internal/secret): the key server's opened bucket keys and the
// remote key source's unwrapped keys. It hands out copies, so a caller
// that wipes its key leaves the cached one intact, and wipes every entry
// when it expires (at each use, and at Sweep) and at Purge. It never
// persists or logs a key.
package keycache

import (
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/secret"
)

// maxEntries bounds a cache; when it is full the entry closest to expiry
// goes first.
const maxEntries = 4096

// Cache maps a 32-byte name (a hash of the record and its associated
// data) to a key for TTL after it was put. A nil *Cache, or one with a
// TTL <= 0, caches nothing. Safe for concurrent use.
type Cache struct {
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	m  map[[32]byte]entry
}

type entry struct {
	key secret.Key
	exp time.Time
}

// New returns a cache whose entries live for ttl; now replaces the clock
// (nil: time.Now).
func New(ttl time.Duration, now func() time.Time) *Cache {
	if now == nil {
		now = time.Now
	}
	return &Cache{ttl: ttl, now: now, m: map[[32]byte]entry{}}
}

// Get returns a copy of the live key named id.
func (c *Cache) Get(id [32]byte) (secret.Key, bool) {
	if c == nil || c.ttl <= 0 {
		return secret.Key{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepLocked()
	e, ok := c.m[id]
	if !ok {
		return secret.Key{}, false
	}
	k, err := keyring.CopyKey(e.key)
	return k, err == nil
}

// Put caches a copy of k as id.
func (c *Cache) Put(id [32]byte, k secret.Key) {
	if c == nil || c.ttl <= 0 {
		return
	}
	cp, err := keyring.CopyKey(k)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepLocked()
	if old, ok := c.m[id]; ok {
		old.key.Wipe()
	} else if len(c.m) >= maxEntries {
		c.evictLocked()
	}
	c.m[id] = entry{key: cp, exp: c.now().Add(c.ttl)}
}

// Sweep wipes every expired entry; a holder calls it periodically so that
// keys leave memory even when nothing asks.
func (c *Cache) Sweep() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepLocked()
}

// Len is the number of entries.
func (c *Cache) Len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// Purge wipes every entry.
func (c *Cache) Purge() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, e := range c.m {
		e.key.Wipe()
		delete(c.m, id)
	}
}

func (c *Cache) sweepLocked() {
	now := c.now()
	for id, e := range c.m {
		if !now.Before(e.exp) {
			e.key.Wipe()
			delete(c.m, id)
		}
	}
}

func (c *Cache) evictLocked() {
	var first [32]byte
	var at time.Time
	for id, e := range c.m {
		if at.IsZero() || e.exp.Before(at) {
			first, at = id, e.exp
		}
	}
	c.m[first].key.Wipe()
	delete(c.m, first)
}

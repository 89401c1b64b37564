package hsm

import (
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/keyring"
	"github.com/holdfast/holdfast/internal/secret"
)

// DefaultCacheTTL is how long an unwrapped key stays cached by default:
// long enough that a burst of requests for one bucket costs one HSM
// operation, short enough that a key leaves memory soon after use.
const DefaultCacheTTL = 30 * time.Second

// maxCached bounds the cache; when full, expired entries are dropped
// first, then the one closest to expiry.
const maxCached = 4096

// cache keeps keys the token unwrapped, in protected memory
// (internal/secret), for ttl after they were unwrapped. It hands out
// copies, so a caller that wipes its key leaves the cached one intact, and
// wipes an entry when it expires (at the next use of the cache, at Sweep,
// which the source calls periodically, and at Purge).
type cache struct {
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	m  map[[32]byte]cached
}

type cached struct {
	key secret.Key
	exp time.Time
}

func newCache(ttl time.Duration, now func() time.Time) *cache {
	if now == nil {
		now = time.Now
	}
	return &cache{ttl: ttl, now: now, m: map[[32]byte]cached{}}
}

// get returns a copy of the cached key for id, if it is there and alive.
func (c *cache) get(id [32]byte) (secret.Key, bool) {
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
	if err != nil {
		return secret.Key{}, false
	}
	return k, true
}

// put caches a copy of k under id for the TTL.
func (c *cache) put(id [32]byte, k secret.Key) {
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
	} else if len(c.m) >= maxCached {
		c.evictLocked()
	}
	c.m[id] = cached{key: cp, exp: c.now().Add(c.ttl)}
}

// sweep wipes every expired entry.
func (c *cache) sweep() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepLocked()
}

func (c *cache) sweepLocked() {
	now := c.now()
	for id, e := range c.m {
		if !now.Before(e.exp) {
			e.key.Wipe()
			delete(c.m, id)
		}
	}
}

func (c *cache) evictLocked() {
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

// len is the number of live entries (for tests).
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// purge wipes every entry.
func (c *cache) purge() {
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

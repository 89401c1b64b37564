package keycache

import (
	"sync"
	"testing"
	"time"

	"github.com/holdfast/holdfast/internal/secret"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// The cached key is a copy in protected memory: wiping it when the entry
// expires leaves keys handed out earlier intact; a purge forgets all.
func TestCacheCopies(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1700000000, 0)}
	c := New(time.Second, clk.now)
	k, _ := secret.New()
	c.Put([32]byte{1}, k)
	got, ok := c.Get([32]byte{1})
	if !ok || !got.Equal(k) {
		t.Fatal("miss")
	}
	clk.add(time.Second)
	if _, ok := c.Get([32]byte{1}); ok {
		t.Fatal("hit after TTL")
	}
	if !got.Valid() || !k.Valid() {
		t.Fatal("expiry wiped a key handed out")
	}
	c.Put([32]byte{2}, k)
	c.Purge()
	if _, ok := c.Get([32]byte{2}); ok || c.Len() != 0 {
		t.Fatal("hit after purge")
	}
	// A nil cache caches nothing.
	var none *Cache
	none.Put([32]byte{3}, k)
	if _, ok := none.Get([32]byte{3}); ok {
		t.Fatal("a nil cache answered")
	}
}

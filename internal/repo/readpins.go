package repo

import (
	"context"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/keys"
)

// A superseded or deleted version is removed from the store right after
// the catalog commits what replaced it. A read that opened the old
// version before that may not be done with it: the CLI's get and the
// gateway's GET read a large object in several store requests after
// opening it, and S3 lets a GET that has begun finish with the version it
// began with, whatever is written meanwhile (a tag change included,
// which stores the object anew). So a version this process has open
// (OpenEntry, until Reader.Close) is not removed until its last reader
// closes; it stays on the catalog's garbage list meanwhile, so a crash
// leaves it for Cleanup, like a removal that failed. Readers in other
// processes are not known here; for them the window is what it always
// was, between a read's opening and its later store requests.
//
// Removals that destroy data on purpose (a retired or shredded key's
// objects) do not wait for readers.

// readPins counts the open readers of each object version.
type readPins struct {
	mu      sync.Mutex
	open    map[keys.ID]int
	doomed  map[keys.ID]bool // garbage waiting for its readers to close
	closing bool             // Repo.Close has begun: no more removals start
	ctx     context.Context  // of the removals; cancelled by Repo.Close
	cancel  context.CancelFunc
}

// pin records a reader of object id.
func (r *Repo) pin(id keys.ID) {
	p := &r.pins
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.open == nil {
		p.open, p.doomed = map[keys.ID]int{}, map[keys.ID]bool{}
	}
	p.open[id]++
}

// unpin forgets a reader of object id, and removes the version if it was
// superseded while read and this was its last reader.
func (r *Repo) unpin(id keys.ID) {
	p := &r.pins
	p.mu.Lock()
	if p.open[id] == 0 { // not pinned (cannot happen: OpenEntry pins)
		p.mu.Unlock()
		return
	}
	p.open[id]--
	remove := false
	if p.open[id] <= 0 {
		delete(p.open, id)
		remove = p.doomed[id]
		delete(p.doomed, id)
	}
	if remove && !p.closing {
		// Not in the caller's time: Close runs where a slow store must
		// not hold things up (a GET's last bytes, a seal stopping every
		// body). Repo.Close cancels and waits for it; what it leaves
		// stays on the garbage list for Cleanup, as after a closing.
		if p.ctx == nil {
			p.ctx, p.cancel = context.WithCancel(context.Background())
		}
		parent := p.ctx
		r.bg.Go(func() {
			ctx, cancel := context.WithTimeout(parent, unpinRemoveTimeout)
			defer cancel()
			r.removeGarbage(ctx, id)
		})
	}
	p.mu.Unlock()
}

// stopRemovals is Repo.Close's: no removal starts after it, and those
// under way get stopRemovalsGrace to finish before they are cancelled
// (a store that does not answer must not hold a closing up for long).
func (r *Repo) stopRemovals() {
	p := &r.pins
	p.mu.Lock()
	p.closing = true
	cancel := p.cancel
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { r.bg.Wait(); close(done) }()
	t := time.NewTimer(stopRemovalsGrace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		if cancel != nil {
			cancel()
		}
		<-done
	}
}

// stopRemovalsGrace is how long Repo.Close lets removals under way finish.
const stopRemovalsGrace = 5 * time.Second

// unpinRemoveTimeout bounds the removal a last reader's Close starts; what
// does not finish is left for Cleanup.
const unpinRemoveTimeout = 30 * time.Second

// pinned reports whether this process has object id open.
func (r *Repo) pinned(id keys.ID) bool {
	p := &r.pins
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open[id] > 0
}

// retire removes a superseded or deleted version (garbage in the
// catalog) from the store, now or, if this process is reading it, when
// its last reader closes.
func (r *Repo) retire(ctx context.Context, id keys.ID) {
	p := &r.pins
	p.mu.Lock()
	if p.open[id] > 0 {
		p.doomed[id] = true
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	r.removeGarbage(ctx, id)
}

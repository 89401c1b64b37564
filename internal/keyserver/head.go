package keyserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/holdfast/holdfast/internal/atomicfile"
	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/keyserver/api"
)

// CatalogHeadFile holds the newest catalog head a client reported
// (api.CatalogHead as JSON).
const CatalogHeadFile = "catalog-head.json"

// headBook keeps the newest catalog head: every commit of a client's
// catalog reports its head, and a client opening the catalog checks that
// the catalog still holds it (internal/repo, checkCatalogHead). The book
// only moves forward. Reports arriving together share one write of the
// file (group commit): a report is answered once the file holds its head
// or a newer one, so an acknowledged head survives a crash of the server.
type headBook struct {
	path string

	mu       sync.Mutex
	cond     *sync.Cond
	cur      api.CatalogHead // newest reported
	saved    uint64          // newest sequence the file holds
	flushing bool
}

func openHeadBook(path string) (*headBook, error) {
	b := &headBook{path: path}
	b.cond = sync.NewCond(&b.mu)
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return b, nil
	case err != nil:
		return nil, fmt.Errorf("reading the catalog head: %w", err)
	}
	if err := json.Unmarshal(data, &b.cur); err != nil || !b.cur.Has {
		return nil, fmt.Errorf("the catalog head file %q is damaged (restore it from a backup of the state directory, or remove it to record afresh)", path)
	}
	b.saved = b.cur.Seq
	return b, nil
}

func (b *headBook) get() api.CatalogHead {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cur
}

// errHeadFork: a report names a sequence already recorded with another
// hash: two catalogs claim to be the repository's, one of them rolled
// back and written again.
var errHeadFork = errors.New("catalog head fork")

// maxHeadStep bounds how far one report may move the book: a catalog
// advances by one per commit, so no client reports billions of commits at
// once, while a report near the top of the range would make every later
// open of the repository refuse its catalog as rolled back. A client that
// tries is refused, and the refusal logged under its name; reaching the
// top by steps takes billions of such reports.
const maxHeadStep = 1 << 32

// errHeadJump: a report moves the book further than maxHeadStep.
var errHeadJump = errors.New("catalog head jump")

// record takes a reported head. A head older than the book's is not an
// error (another client committed later and reported first); the answer
// is the book's head either way.
func (b *headBook) record(seq uint64, hash [32]byte) (api.CatalogHead, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if seq > b.cur.Seq && seq-b.cur.Seq > maxHeadStep {
		return b.cur, fmt.Errorf("%w: commit %d reported, %d recorded: more than %d commits at once", errHeadJump, seq, b.cur.Seq, uint64(maxHeadStep))
	}
	switch {
	case b.cur.Has && seq < b.cur.Seq:
		return b.cur, nil
	case b.cur.Has && seq == b.cur.Seq && hash != b.cur.Hash:
		return b.cur, fmt.Errorf("%w: commit %d is recorded with hash %x, this catalog's is %x", errHeadFork, seq, b.cur.Hash[:8], hash[:8])
	case !b.cur.Has || seq > b.cur.Seq:
		b.cur = api.CatalogHead{Has: true, Seq: seq, Hash: hash, Time: time.Now().UTC()}
	}
	for b.saved < seq {
		if b.flushing {
			b.cond.Wait()
			continue
		}
		b.flushing = true
		snap := b.cur
		b.mu.Unlock()
		err := atomicfile.WriteFile(b.path, mustJSON(snap), atomicfile.Options{})
		b.mu.Lock()
		b.flushing = false
		b.cond.Broadcast()
		if err != nil {
			return b.cur, fmt.Errorf("recording the catalog head: %w", err)
		}
		b.saved = max(b.saved, snap.Seq)
	}
	return b.cur, nil
}

func (s *Server) catalogHead(c call) (any, error) {
	return s.heads.get(), nil
}

// setCatalogHead records a client's catalog head after a commit. Heads are
// not written to the key-operation log (one per commit); a fork is, as a
// refusal.
func (s *Server) setCatalogHead(c call) (any, error) {
	var req api.CatalogHead
	if err := decode(c, &req); err != nil {
		return nil, err
	}
	if !c.client.Grant.allowsBucket(keys.ID{}) {
		return nil, refusal("client %q may not record catalog heads (its grant names buckets, not \"*\")", c.client.Name)
	}
	h, err := s.heads.record(req.Seq, req.Hash)
	if errors.Is(err, errHeadFork) {
		return nil, &apiError{http.StatusConflict, api.CodeRollback, err.Error() + ": this client's catalog was rolled back", "rollback"}
	}
	if errors.Is(err, errHeadJump) {
		return nil, refusal("client %q: %v", c.client.Name, err)
	}
	if err != nil {
		return nil, err
	}
	return h, nil
}

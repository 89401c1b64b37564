package catalog

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
)

// The catalog head is a hash chain with one link per committed write: a
// record of the catalog's history that a party off the host (the key
// server) can keep, so that a catalog rolled back to an earlier state, or
// forked (two copies written independently), is detected when it is next
// opened. Every write transaction advances it in the same transaction:
//
//	seq_n  = seq_{n-1} + 1
//	hash_n = SHA-256("holdfast/v1/catalog-head" || hash_{n-1} || uint64be(seq_n) || 16 random bytes)
//
// from seq 0 with the all-zero hash, which a new or migrated catalog
// starts at. The random bytes make a head unguessable: a copy of the
// catalog taken at seq n and written on its own cannot reach the hash of
// seq n+1 the original committed, nor can a rolled-back one forge it.
//
// The heads table holds the current head (its newest row) and the ones
// before it, pruned to the newest headsKept.

// Head is the catalog head after a committed write.
type Head struct {
	Seq  uint64
	Hash [32]byte
}

// HeadNotifier is implemented by the catalogs Open and OpenPostgres return:
// SetOnCommit sets the function told the head of every write this handle
// commits, so that a caller learns it without another query. fn runs after
// the commit, in commit order for the handle, while the handle's next
// write waits: it must be quick and must not write to the catalog through
// the same handle (it would wait for itself). Writes of other handles and
// processes are not reported here; Head reads the latest. nil removes it.
type HeadNotifier interface {
	SetOnCommit(fn func(Head))
}

// headDomain separates the head hash from every other use of SHA-256.
const headDomain = "holdfast/v1/catalog-head"

// headsKept is how many heads HeadAt can find; heads are pruned every
// headsPruneEvery writes. Variables so that a test can make them small.
var (
	headsKept       uint64 = 65536
	headsPruneEvery uint64 = 1024
)

// schemaV4Heads adds the heads table; initSchema inserts head 0.
var schemaV4Heads = []string{
	`CREATE TABLE heads (
		seq  INTEGER PRIMARY KEY CHECK (seq >= 0),
		hash BLOB NOT NULL CHECK (length(hash) = 32)
	)`,
}

// nextHead returns the head after prev, with fresh randomness.
func nextHead(prev Head) Head {
	var nonce [16]byte
	rand.Read(nonce[:]) // never fails (crypto/rand)
	n := Head{Seq: prev.Seq + 1}
	h := sha256.New()
	h.Write([]byte(headDomain))
	h.Write(prev.Hash[:])
	h.Write(binary.BigEndian.AppendUint64(nil, n.Seq))
	h.Write(nonce[:])
	h.Sum(n.Hash[:0])
	return n
}

const currentHead = `SELECT seq, hash FROM heads ORDER BY seq DESC LIMIT 1`

func scanHead(r *sql.Row) (Head, error) {
	var h Head
	var seq int64
	if err := r.Scan(&seq, fixed{h.Hash[:], "head hash"}); err != nil {
		return Head{}, err
	}
	if seq < 0 {
		return Head{}, fmt.Errorf("head seq %d", seq)
	}
	h.Seq = uint64(seq)
	return h, nil
}

// advanceHead records the next head in t's transaction, prunes old ones
// every headsPruneEvery writes, and returns the new head.
func (t *txn) advanceHead() (Head, error) {
	prev, err := scanHead(t.queryRow(currentHead))
	if err != nil {
		return Head{}, fmt.Errorf("catalog head: %w", err)
	}
	if prev.Seq >= maxVersion {
		return Head{}, errors.New("catalog head: sequence exhausted")
	}
	h := nextHead(prev)
	if _, err := t.exec(`INSERT INTO heads (seq, hash) VALUES (?, ?)`, int64(h.Seq), h.Hash[:]); err != nil {
		return Head{}, fmt.Errorf("catalog head: %w", err)
	}
	if h.Seq%headsPruneEvery == 0 && h.Seq >= headsKept {
		if _, err := t.exec(`DELETE FROM heads WHERE seq <= ?`, int64(h.Seq-headsKept)); err != nil {
			return Head{}, fmt.Errorf("catalog head: %w", err)
		}
	}
	return h, nil
}

func (c *sqlCatalog) SetOnCommit(fn func(Head)) {
	if fn == nil {
		c.onCommit.Store(nil)
		return
	}
	c.onCommit.Store(&fn)
}

func (c *sqlCatalog) Head(ctx context.Context) (Head, error) {
	h, err := scanHead(c.queryRow(ctx, currentHead))
	if err != nil {
		return Head{}, fmt.Errorf("catalog: head: %w", err)
	}
	return h, nil
}

func (c *sqlCatalog) HeadAt(ctx context.Context, seq uint64) ([32]byte, bool, error) {
	var hash [32]byte
	if seq > maxVersion {
		return hash, false, nil
	}
	err := c.queryRow(ctx, `SELECT hash FROM heads WHERE seq = ?`, int64(seq)).Scan(fixed{hash[:], "head hash"})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return hash, false, nil
	case err != nil:
		return hash, false, fmt.Errorf("catalog: head %d: %w", seq, err)
	}
	return hash, true, nil
}

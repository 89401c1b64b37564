package repo

// Audit checkpoints in the store (docs/audit.md, "Checkpoints";
// docs/format.md, "Audit checkpoint (kind 5)"): a copy of each checkpoint
// line of the audit log, sealed under the root key like every system
// object, so that a log cut at its tail on the premises still shows
// against what the store holds. The audit package checks the lines; this
// file stores, lists, opens and prunes them.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/object"
	"github.com/holdfast/holdfast/internal/store"
)

// AuditCheckpointsKept is how many audit checkpoints the store keeps: a
// new one deletes those beyond the newest AuditCheckpointsKept. The
// newest vouches for every line before it; the others are spares against
// a provider that loses one.
const AuditCheckpointsKept = 16

// AuditCheckpoint is an audit checkpoint the catalog records, as read
// from the store.
type AuditCheckpoint struct {
	Object  string    // its store name
	Created time.Time // when it was stored
	// Line is the checkpoint line, byte for byte (nil when Err is set).
	Line []byte
	// Err says why the object does not count: missing, altered, swapped,
	// or not this repository's (a format.ErrCorrupt, or a not-found).
	Err error
}

// PutAuditCheckpoint stores line, a checkpoint line of the repository's
// audit log (without its newline), as an audit checkpoint object, then
// deletes the checkpoints beyond the newest AuditCheckpointsKept. It
// implements audit.CheckpointSink. A failed deletion is left for verify's
// cleanup (the object is garbage once retired in the catalog).
func (r *Repo) PutAuditCheckpoint(ctx context.Context, line []byte) error {
	plain, err := format.AuditCheckpoint{Repo: r.id, Line: line}.Marshal()
	if err != nil {
		return err
	}
	id, err := r.writeSystem(ctx, format.KindCheckpoint, nil, plain, nil)
	if err != nil {
		return fmt.Errorf("storing the audit checkpoint: %w", err)
	}
	r.pruneAuditCheckpoints(ctx, format.StoreName(id))
	return nil
}

// pruneAuditCheckpoints deletes every audit checkpoint but the newest
// AuditCheckpointsKept (by when they were stored; keep, the one just
// written, always stays). It returns how many it deleted.
func (r *Repo) pruneAuditCheckpoints(ctx context.Context, keep string) int {
	sos, err := r.cat.SystemObjects(ctx)
	if err != nil {
		return 0
	}
	var cps []catalog.SystemObject
	for _, so := range sos {
		if so.Kind == catalog.KindCheckpoint {
			cps = append(cps, so)
		}
	}
	sort.SliceStable(cps, func(i, j int) bool { return cps[i].Created.After(cps[j].Created) })
	removed := 0
	for i, so := range cps {
		if i < AuditCheckpointsKept || format.StoreName(so.ObjectID) == keep {
			continue
		}
		// Another process may prune the same one: whoever retires it
		// deletes it.
		if err := r.cat.RetireSystem(ctx, so.ObjectID); err != nil {
			continue
		}
		r.removeGarbage(ctx, so.ObjectID)
		removed++
	}
	return removed
}

// AuditCheckpoints reads every audit checkpoint the catalog records,
// oldest first. Each must open under the root key, match the catalog's
// pin and name this repository; one that does not is returned with Err
// set (the provider deleted, altered or swapped it: verify reports it
// too). One pruned by a concurrent writer meanwhile is left out. The
// error is for what could not be checked at all (the catalog, or a store
// that does not answer).
//
// Its unwraps are not counted in KeyUseCounts: 'audit verify' reads the
// checkpoints to check the audit log, as it unseals the log's key, and
// recording that key use in the log it checks would lengthen the log at
// every check.
func (r *Repo) AuditCheckpoints(ctx context.Context) ([]AuditCheckpoint, error) {
	sos, err := r.cat.SystemObjects(ctx)
	if err != nil {
		return nil, err
	}
	var out []AuditCheckpoint
	for _, so := range sos {
		if so.Kind != catalog.KindCheckpoint {
			continue
		}
		name := format.StoreName(so.ObjectID)
		c := AuditCheckpoint{Object: name, Created: so.Created}
		cp, err := r.readAuditCheckpoint(ctx, so)
		switch {
		case err == nil:
			c.Line = cp.Line
		case errors.Is(err, format.ErrCorrupt) || isNotExist(err) || errors.Is(err, store.ErrInvalidRange):
			if k, lerr := r.cat.Lookup(ctx, so.ObjectID); lerr == nil && k != catalog.KnownSystem {
				continue // pruned since the list was read
			}
			c.Err = fmt.Errorf("audit checkpoint %s: %w", name, err)
		default:
			return nil, fmt.Errorf("reading audit checkpoint %s: %w", name, err)
		}
		out = append(out, c)
	}
	return out, nil
}

// readAuditCheckpoint opens the audit checkpoint so records and checks
// its plaintext (its unwraps not counted: AuditCheckpoints).
func (r *Repo) readAuditCheckpoint(ctx context.Context, so catalog.SystemObject) (format.AuditCheckpoint, error) {
	pin := so.Pin
	exp := object.Expect{Identity: object.Identity{Kind: format.KindCheckpoint, Repo: r.id, Object: so.ObjectID},
		Pin: &pin, StoredLen: so.StoredLen, ManifestOff: so.ManifestOff, ManifestLen: so.ManifestLen}
	o, err := object.Open(ctx, r.st, format.StoreName(so.ObjectID), exp, r.unwrapSystemCounted(ctx, so.ObjectID, r.rootVersions(), false))
	if err != nil {
		return format.AuditCheckpoint{}, err
	}
	defer o.Wipe()
	var body writerBuf
	if _, err := o.WriteTo(ctx, &body); err != nil {
		return format.AuditCheckpoint{}, err
	}
	return r.parseAuditCheckpoint(body.b)
}

// parseAuditCheckpoint parses an audit checkpoint's plaintext and checks
// that it names this repository.
func (r *Repo) parseAuditCheckpoint(plain []byte) (format.AuditCheckpoint, error) {
	cp, err := format.ParseAuditCheckpoint(plain)
	if err != nil {
		return cp, err
	}
	if cp.Repo != r.id {
		return format.AuditCheckpoint{}, format.Corrupt(format.LayerIdentity, "audit checkpoint names repository %x", cp.Repo[:])
	}
	return cp, nil
}

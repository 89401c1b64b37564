package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"

	"github.com/holdfast/holdfast/internal/catalog"
	"github.com/holdfast/holdfast/internal/format"
	"github.com/holdfast/holdfast/internal/object"
	"github.com/holdfast/holdfast/internal/store"
)

// Finding is verify's verdict on one object.
type Finding struct {
	Bucket string `json:"bucket,omitempty"`
	Key    string `json:"key,omitempty"`
	Kind   string `json:"kind"`
	Name   string `json:"name"` // store name
	// What says which system object it is ("catalog backup 7 of
	// 2026-…", "key journal entry of …: bucket photos key v2"), from the
	// catalog or the object's authenticated contents; empty for data
	// objects and for what cannot be known.
	What   string `json:"what,omitempty"`
	Status Status `json:"status"`
	Layer  string `json:"layer,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// StatusUnchecked: verify could not check the object (the store did not
// answer for it, after its retries). It is neither damage nor intact; a
// run with any is not clean.
const StatusUnchecked Status = "unchecked"

// VerifyOptions tune verify.
type VerifyOptions struct {
	// Quick checks listing, lengths, headers, manifests and footers (and
	// their pins) but does not decrypt bodies.
	Quick bool
	// Progress, if set, is called after each object with the counts so far
	// (objects examined and bytes checked), from one goroutine, in store
	// name order.
	Progress func(objects int, bytes int64)
	// Jobs is how many objects are checked at once; 0 picks a default for
	// the store (DefaultVerifyJobs).
	Jobs int
	// Sample, in (0,1), checks the stored bytes of only that fraction of
	// the data objects, chosen at random (unpredictably to the store);
	// every object is still checked against the listing (present, at its
	// recorded length). 0 or 1 checks every object.
	Sample float64
	// SampleSeed fixes the sample (tests); nil draws a random one.
	SampleSeed []byte
	// Resume continues the run whose checkpoint is in the home, if there
	// is one and it was made with the same Quick and Sample; its findings
	// are reported again first, so the result is that of one whole run.
	Resume bool
}

// VerifySummary counts verify's findings.
type VerifySummary struct {
	Checked int            `json:"checked"` // objects examined: the sum of Counts and Unsampled
	Bytes   int64          `json:"bytes"`   // stored bytes of the objects opened
	Counts  map[Status]int `json:"counts"`
	Cleaned int            `json:"cleaned"` // leftovers of this repository's own interrupted writes removed
	// Unsampled counts data objects outside the sample: present in the
	// listing at their recorded length, their bytes not read.
	Unsampled int     `json:"unsampled,omitempty"`
	Sample    float64 `json:"sample,omitempty"` // the fraction sampled, when sampling
	Jobs      int     `json:"jobs"`
	Resumed   bool    `json:"resumed,omitempty"` // continued an interrupted run
}

// isDamage reports whether st is damage (the provider changed or lost
// something), as opposed to ok, pending or unchecked.
func isDamage(st Status) bool {
	return st != StatusOK && st != StatusPending && st != StatusUnchecked
}

// Damaged reports whether verify found damage: anything but ok, pending
// and unchecked.
func (s VerifySummary) Damaged() bool { return s.DamagedCount() > 0 }

// DamagedCount is the number of objects found damaged, of every status.
func (s VerifySummary) DamagedCount() int {
	n := 0
	for st, c := range s.Counts {
		if isDamage(st) {
			n += c
		}
	}
	return n
}

// Unchecked is the number of objects verify could not check.
func (s VerifySummary) Unchecked() int { return s.Counts[StatusUnchecked] }

// Verdict is "damaged" if anything was damaged, else "could-not-check" if
// some object could not be checked, else "clean".
func (s VerifySummary) Verdict() string {
	switch {
	case s.Damaged():
		return VerdictDamaged
	case s.Unchecked() > 0:
		return VerdictUnchecked
	}
	return VerdictClean
}

// Verify's verdicts.
const (
	VerdictClean     = "clean"
	VerdictDamaged   = "damaged"
	VerdictUnchecked = "could-not-check"
)

// DefaultVerifyJobs is how many objects verify checks at once: on a
// network store (one that keeps request statistics, like S3) enough to
// hide the round trips, on a local one a goroutine per core.
func DefaultVerifyJobs(st store.Store) int {
	if _, ok := st.(store.StatsReporter); ok {
		return 16
	}
	return max(2, runtime.NumCPU())
}

// Verify checks every object the catalog knows against the store, and
// every object the store holds against the catalog. It reports each
// finding but ok through report, in store name order; an error means it
// could not check (what was found until then is in the summary, and a
// checkpoint lets a later run resume). See verify_walk.go for how.
func (r *Repo) Verify(ctx context.Context, o VerifyOptions, report func(Finding)) (VerifySummary, error) {
	if o.Sample < 0 || o.Sample > 1 || math.IsNaN(o.Sample) {
		return VerifySummary{Counts: map[Status]int{}}, fmt.Errorf("verify: sample %v is not a fraction in (0,1]", o.Sample)
	}
	if o.Sample == 1 {
		o.Sample = 0
	}
	if o.Jobs <= 0 {
		o.Jobs = DefaultVerifyJobs(r.st)
	}
	unlock, err := r.lockVerify()
	if err != nil {
		return VerifySummary{Counts: map[Status]int{}}, err
	}
	defer unlock()
	v, err := r.newVerifyRun(o, report)
	if err != nil {
		return v.sum, err
	}
	defer v.close()
	// Our own leftovers first, so they are not reported as unknown.
	cleaned, err := r.Cleanup(ctx)
	if err != nil {
		return v.sum, err
	}
	v.sum.Cleaned += cleaned
	return v.run(ctx)
}

func (r *Repo) checkEntry(ctx context.Context, e catalog.Entry, quick bool) error {
	o, err := r.openEntry(ctx, e)
	if err != nil {
		return err
	}
	defer o.Wipe()
	if quick {
		return nil
	}
	_, err = o.WriteTo(ctx, io.Discard)
	return err
}

func (r *Repo) checkSystem(ctx context.Context, so catalog.SystemObject, name string) error {
	pin := so.Pin
	exp := object.Expect{Identity: object.Identity{Kind: format.Kind(so.Kind), Repo: r.id, Object: so.ObjectID},
		Pin: &pin, StoredLen: so.StoredLen, ManifestOff: so.ManifestOff, ManifestLen: so.ManifestLen}
	o, err := object.Open(ctx, r.st, name, exp, r.unwrapSystem(ctx, so.ObjectID, r.rootVersions()))
	if err != nil {
		return err
	}
	defer o.Wipe()
	if format.Kind(so.Kind) == format.KindBackup {
		// A backup may be large: read it through, keeping only its head.
		sink := &backupSink{h: format.NewBackupHash()}
		if _, err := o.WriteTo(ctx, sink); err != nil {
			return err
		}
		_, err := sink.parseHead(r.id)
		return err
	}
	var body writerBuf
	if _, err := o.WriteTo(ctx, &body); err != nil {
		return err
	}
	switch format.Kind(so.Kind) {
	case format.KindMarker:
		m, err := format.ParseMarker(body.b)
		if err != nil {
			return err
		}
		if m.Repo != r.id {
			return format.Corrupt(format.LayerIdentity, "marker names repository %x", m.Repo[:])
		}
	case format.KindJournal:
		if _, err := format.ParseJournal(body.b); err != nil {
			return err
		}
	case format.KindCheckpoint:
		if _, err := r.parseAuditCheckpoint(body.b); err != nil {
			return err
		}
	}
	return nil
}

func (r *Repo) classifySystem(ctx context.Context, so catalog.SystemObject, name string, err error) (Status, error) {
	if !errors.Is(err, format.ErrCorrupt) && !isNotExist(err) && !errors.Is(err, store.ErrInvalidRange) {
		return "", err
	}
	info, serr := r.st.Stat(ctx, name)
	switch {
	case isNotExist(serr):
		return StatusMissing, nil
	case serr != nil:
		return "", serr
	case info.Size < so.StoredLen:
		return StatusTruncated, nil
	}
	var pe *object.PinError
	if errors.As(err, &pe) {
		return StatusSwapped, nil
	}
	return StatusAltered, nil
}

// Cleanup removes what this repository's interrupted writes left behind:
// store objects of pending writes whose process is gone, and superseded or
// deleted versions not yet removed from the store. It returns how many
// store objects it removed. A store object it cannot delete now is left
// for the next run (it is harmless garbage); only catalog errors fail it.
func (r *Repo) Cleanup(ctx context.Context) (int, error) {
	n := 0
	pend, err := r.cat.ListPending(ctx)
	if err != nil {
		return 0, err
	}
	for _, p := range pend {
		if ownerAlive(p.Owner) {
			continue
		}
		if p.Kind == int(format.KindMarker) {
			// The marker is written by init only; keep whatever is there.
			if err := r.cat.AbortPut(ctx, p.ObjectID); err != nil && !errors.Is(err, catalog.ErrNotFound) {
				return n, err
			}
			continue
		}
		err := r.st.Delete(ctx, format.StoreName(p.ObjectID))
		switch {
		case err == nil:
			n++
		case !isNotExist(err):
			continue // try again next time; the pending record stays
		}
		if err := r.cat.AbortPut(ctx, p.ObjectID); err != nil && !errors.Is(err, catalog.ErrNotFound) {
			return n, err
		}
	}
	// Multipart uploads past their expiry are aborted (one that cannot
	// reach the store now stays recorded, and is tried again next time).
	expired, err := r.expireUploads(ctx)
	if err != nil {
		return n, err
	}
	n += expired
	// Invisible leftovers of killed uploads (S3 multipart parts), except
	// those of writes whose process still runs.
	// A writer records its pending write before it starts an upload, so
	// reading the pending list afresh for each upload found never aborts a
	// live writer's upload.
	if j, ok := r.st.(store.Janitor); ok {
		inProgress := func(name string) bool {
			id, ok := format.ParseStoreName(name)
			if !ok {
				return true // not ours to judge
			}
			now, err := r.cat.ListPending(ctx)
			if err != nil {
				return true
			}
			for _, p := range now {
				if p.ObjectID == id {
					return ownerAlive(p.Owner)
				}
			}
			return false
		}
		if a, err := j.AbortIncomplete(ctx, inProgress); err == nil {
			n += a
		}
	}
	garbage, err := r.cat.Garbage(ctx)
	if err != nil {
		return n, err
	}
	for _, id := range garbage {
		if r.pinned(id) {
			continue // read by this process: removed when the read ends (retire)
		}
		err := r.st.Delete(ctx, format.StoreName(id))
		switch {
		case err == nil:
			n++
		case !isNotExist(err):
			continue
		}
		if err := r.cat.ForgetGarbage(ctx, id); err != nil && !errors.Is(err, catalog.ErrNotFound) {
			return n, err
		}
	}
	return n, nil
}

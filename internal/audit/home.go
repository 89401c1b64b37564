package audit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/holdfast/holdfast/internal/keys"
	"github.com/holdfast/holdfast/internal/secret"
)

// Layout is what of a home's audit log is there: the files in its audit
// directory and the off-box copy.
type Layout struct {
	Dir string
	// Checkpoints is the off-box copy: the one the caller named, else
	// the one the writer's state names (where the writer copied
	// checkpoints), else the one the home's record names, else the
	// default beside the audit directory.
	Checkpoints string
	Named       bool // the caller named Checkpoints
	Log         bool
	State       bool
	Record      bool  // the home's sealed record is there...
	RecordErr   error // ...but does not parse
	OffBox      bool  // the off-box copy is there and not empty
}

// Locate says what of home's audit log is there; cp, if not "", names
// the off-box copy.
func Locate(home, cp string) Layout {
	dir := Dir(home)
	l := Layout{Dir: dir, Checkpoints: cp, Named: cp != ""}
	l.Log = exists(filepath.Join(dir, LogName))
	l.State = exists(filepath.Join(dir, StateName))
	l.Record = exists(filepath.Join(dir, RecordName))
	var recPath string
	if l.Record {
		rec, err := ReadRecord(dir)
		l.RecordErr = err
		recPath = rec.Checkpoints
	}
	if l.Checkpoints == "" && l.State {
		w := newWriter(dir, "", Options{})
		if st, err := w.readState(); err == nil {
			l.Checkpoints = st.Checkpoints
			clear(st.Key)
		}
	}
	if l.Checkpoints == "" {
		l.Checkpoints = recPath
	}
	if l.Checkpoints == "" {
		l.Checkpoints = DefaultCheckpoints(home)
	}
	if fi, err := os.Stat(l.Checkpoints); err == nil && fi.Size() > 0 {
		l.OffBox = true
	}
	return l
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// Present reports whether anything of an audit log is there: then the
// home is audited, and what is missing is damage (Check).
func (l Layout) Present() bool { return l.Log || l.State || l.Record || l.OffBox }

// Check returns nil if the log, its state and its sealed record are all
// there; ErrNoLog if nothing of a log is; otherwise an ErrDamaged error
// naming what is missing. Writers call it first: they fail on damage
// rather than skip the record.
func (l Layout) Check() error {
	if !l.Present() {
		return fmt.Errorf("%q: %w", l.Dir, ErrNoLog)
	}
	var missing []string
	if !l.Log {
		missing = append(missing, "the log "+LogName)
	}
	if !l.State {
		missing = append(missing, "the writer's state "+StateName)
	}
	if !l.Record {
		missing = append(missing, "the sealed record "+RecordName)
	}
	if len(missing) > 0 {
		what := "the off-box copy " + l.Checkpoints
		if l.Log || l.State || l.Record {
			what = "the audit directory " + l.Dir
		}
		return fmt.Errorf("%w: %s holds an audit log but %s is missing (deleted?): nothing is audited until it is repaired (run 'holdfast audit verify'; docs/audit.md, \"Repair\")", ErrDamaged, what, strings.Join(missing, ", "))
	}
	if l.RecordErr != nil {
		return fmt.Errorf("%w: %w", ErrDamaged, l.RecordErr)
	}
	return nil
}

// VerifyKeys verifies the log of l with the repository's keys: it opens
// K_0 from the home's sealed record or, if that is missing, damaged, or
// holds another K_0 than the log's first line was MACed with, from the
// newest record line of the off-box copy that does (Report.Record says
// which copy). A missing or damaged record, a record whose checkpoint
// path K_0 does not vouch for, and a deleted log are damage, named in
// Damage.Problems, and the log is still checked with K_0. Unless the
// caller named the off-box copy, the log is checked against the one
// K_0 vouches for (the record's path); a writer's state naming another
// is damage. When the home's
// record is intact and sealed under an older root key version, it is
// sealed again under the primary one (Report.Resealed).
func VerifyKeys(ctx context.Context, l Layout, src keys.Source, repo keys.ID) (Report, error) {
	return VerifyKeysWith(ctx, l, src, repo, VerifyOptions{})
}

// VerifyKeysWith is VerifyKeys that also checks the store's checkpoints
// (VerifyWith).
func VerifyKeysWith(ctx context.Context, l Layout, src keys.Source, repo keys.ID, o VerifyOptions) (Report, error) {
	homeRec := filepath.Join(l.Dir, RecordName)
	rep := Report{Log: filepath.Join(l.Dir, LogName), Checkpoints: l.Checkpoints}
	dmg := &Damage{Log: rep.Log}
	type candidate struct {
		rec  Record
		from string
		home bool
	}
	var cands []candidate
	switch {
	case !l.Record:
		dmg.Problems = append(dmg.Problems, fmt.Sprintf("the sealed record %q is missing (deleted?)", homeRec))
	case l.RecordErr != nil:
		dmg.Problems = append(dmg.Problems, fmt.Sprintf("the sealed record is damaged: %v", l.RecordErr))
	default:
		rec, _ := ReadRecord(l.Dir)
		cands = append(cands, candidate{rec, homeRec, true})
	}
	first, err := firstLine(rep.Log)
	if err != nil {
		return rep, err
	}
	var chosen *candidate
	var k0 secret.Key
	var pathOK, fits bool
	defer func() { k0.Wipe() }()
	try := func(c candidate) error {
		k, ok, err := UnsealKey(ctx, src, repo, c.rec)
		if err != nil {
			if errors.Is(err, keys.ErrUnavailable) || !errors.Is(err, ErrRecord) {
				return err // the keys do not open: not the record's fault
			}
			if c.home {
				dmg.Problems = append(dmg.Problems, fmt.Sprintf("the sealed record %q does not open with this repository's keys: %v", homeRec, err))
			}
			return nil
		}
		f := first == nil || firstLineOK(first, k)
		if chosen == nil || (f && !fits) {
			k0.Wipe()
			cc := c
			chosen, k0, pathOK, fits = &cc, k, ok, f
		} else {
			k.Wipe()
		}
		return nil
	}
	for _, c := range cands {
		if err := try(c); err != nil {
			return rep, err
		}
	}
	if chosen == nil || !fits {
		recs, err := offBoxRecords(l.Checkpoints)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return rep, err
		}
		for _, r := range recs {
			if fits {
				break
			}
			if len(cands) > 0 && bytes.Equal(r.rec.Wrapped, cands[0].rec.Wrapped) {
				continue // the home's, tried
			}
			if err := try(candidate{r.rec, fmt.Sprintf("%s line %d (the off-box copy)", l.Checkpoints, r.fileLine), false}); err != nil {
				return rep, err
			}
		}
	}
	if chosen == nil {
		dmg.Problems = append(dmg.Problems, fmt.Sprintf("no copy of the sealed record opens with this repository's keys (the home's, and the record lines of %s): the log cannot be checked", l.Checkpoints))
		return rep, dmg
	}
	rep.Record = chosen.from
	if !chosen.home && len(cands) > 0 && fits {
		dmg.Problems = append(dmg.Problems, fmt.Sprintf("the sealed record %q holds another K_0 than the one the log was made with (it was replaced); K_0 came from %s", homeRec, chosen.from))
	}
	if !pathOK {
		dmg.Problems = append(dmg.Problems, fmt.Sprintf("the sealed record from %s names the off-box copy %q, which is not the path K_0 was sealed with (the record was edited); writers append nothing while it differs from their state", chosen.from, chosen.rec.Checkpoints))
	}
	// The off-box copy a cut is checked against is the one K_0 vouches
	// for, not the one the writer's state names: the state is not
	// authenticated, and pointing it at a stale copy would hide a cut.
	cp := l.Checkpoints
	if !l.Named && pathOK && chosen.rec.Checkpoints != cp {
		if l.State {
			dmg.Problems = append(dmg.Problems, fmt.Sprintf("the writer's state names the off-box copy %q, not %q, the one K_0 was sealed with (the state was edited); verified against the latter", l.Checkpoints, chosen.rec.Checkpoints))
		}
		cp = chosen.rec.Checkpoints
	}
	rep.Checkpoints = cp
	vrep, verr := VerifyWith(l.Dir, cp, k0, o)
	vrep.Record = chosen.from
	var vd *Damage
	switch {
	case errors.Is(verr, ErrNoLog):
		dmg.Problems = append(dmg.Problems, fmt.Sprintf("the audit log %q was deleted (its sealed record or off-box copy is still there)", rep.Log))
		return vrep, dmg
	case errors.As(verr, &vd):
		dmg.BadEntry, dmg.Checkpoint = vd.BadEntry, vd.Checkpoint
		dmg.Problems = append(dmg.Problems, vd.Problems...)
	case verr != nil:
		return vrep, verr
	}
	if chosen.home && pathOK && len(dmg.Problems) == 0 {
		if done, err := Rewrap(ctx, l.Dir, src, repo, chosen.rec, k0); err != nil {
			vrep.Warnings = append(vrep.Warnings, fmt.Sprintf("the audit key could not be sealed under the primary root key version: %v", err))
		} else if done {
			vrep.Resealed = src.Primary()
		}
	}
	if dmg.any() {
		return vrep, dmg
	}
	return vrep, nil
}

// firstLine returns the log's first line without its newline (nil if the
// log is missing or empty, or the line is not whole).
func firstLine(path string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	line, err := bufio.NewReaderSize(f, maxLine).ReadSlice('\n')
	if err != nil && (err == io.EOF || errors.Is(err, bufio.ErrBufferFull)) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	return bytes.Clone(line[:len(line)-1]), nil
}

// firstLineOK reports whether line carries the MAC of K_0 k0.
func firstLineOK(line []byte, k0 secret.Key) bool {
	e, why := parse(line)
	if why != "" {
		return false
	}
	ok := false
	_ = k0.Use(func(k []byte) error { ok = macOK(e, k); return nil })
	return ok
}

package spread

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/holdfast/holdfast/internal/store"
)

// The freshness record (store.FreshnessKeeper): a small opaque record —
// the repository's account of its newest catalog backup — kept whole on
// every member (replica mode), unlike the backups themselves, which are
// spread like any object so that no provider holds a whole catalog.
//
// It is an internal object: its member objects are named
// TOKEN-r-SIZE-GEN-u, TOKEN being that of the name "u-freshness", so
// List, Stat, Survey and the janitor never see it ("freshness" is not a
// construction handle). Every copy carries the stripe tags of any member
// object, binding the name "spread:freshness" (not a valid object name,
// so no object's tags can pass for the record's), the member and the
// generation: a provider can withhold or roll back its copy, never forge
// or edit one. A read takes the newest generation that K members hold
// authentically, so fewer than K members cannot put a record forward,
// and the record can only be rolled back by all but K-1 members together.

const (
	// freshnessName is the name the record's tags bind, and what
	// warnings and the repair queue call it.
	freshnessName = "spread:freshness"
	// freshnessHandle gives the record its token. It is not a valid
	// construction handle, so the janitor never takes the record for an
	// abandoned construction.
	freshnessHandle = "freshness"
	freshnessLabel  = "r"
	// maxRecordCopies bounds the generations read per member: a provider
	// that lists many names cannot make a read of the record slow.
	maxRecordCopies = 4
)

var _ store.FreshnessKeeper = (*Store)(nil)

func freshnessRef() ref {
	return ref{name: freshnessName, handle: freshnessHandle, label: freshnessLabel}
}

// allMembers is every member index, in order.
func (s *Store) allMembers() []int {
	all := make([]int, s.n)
	for j := range all {
		all[j] = j
	}
	return all
}

// PutFreshness implements store.FreshnessKeeper. The record is written
// whole to every member under a generation above the current one, with
// the write rule of Put; members that missed it are warned of and queued
// for repair. Older generations are then removed from the members that
// took the new one.
func (s *Store) PutFreshness(ctx context.Context, rec []byte) error {
	if err := s.checkRecord(ctx, "put"); err != nil {
		return err
	}
	if len(rec) == 0 || len(rec) > store.MaxFreshnessRecord {
		return fmt.Errorf("spread: put %s: a record of %d bytes, want 1 to %d", freshnessName, len(rec), store.MaxFreshnessRecord)
	}
	r := freshnessRef()
	all := s.allMembers()
	ls := s.listName(ctx, r, all)
	// Generations only move forward, even if this clock is behind the
	// writer of the current record.
	gen := s.newGen()
	if cur, ok := s.pick(r, ls); ok && cur.gen >= gen {
		gen = cur.gen + 1
	}
	g := s.geometry(r, int64(len(rec)))
	errs, err := s.writeMembers(ctx, r, g, gen, bytes.NewReader(rec), all)
	if err != nil {
		return fmt.Errorf("spread: put %s: %w", freshnessName, err)
	}
	var ok []int
	var failures []string
	for j := range s.n {
		if e := errs[j]; e == nil {
			ok = append(ok, j)
		} else {
			failures = append(failures, fmt.Sprintf("member %s: %v", s.label(j), e))
		}
	}
	if len(ok) < s.quorum {
		s.removeGen(context.WithoutCancel(ctx), r, g, gen, ok)
		return fmt.Errorf("spread: put %s: only %d of %d members stored it, %d needed (%s): %w",
			freshnessName, len(ok), s.n, s.quorum, strings.Join(failures, "; "), store.ErrUnavailable)
	}
	for j := range s.n {
		if e := errs[j]; e != nil {
			s.warn(Problem{Member: s.label(j), Object: freshnessName, Stripe: -1, Err: fmt.Errorf("%w: %w", errWriteMissed, e)})
		}
	}
	// Older generations go; one that cannot be removed now is stale, and
	// repair removes it.
	for _, j := range ok {
		for _, e := range ls[j].entries {
			if e.gen < gen {
				s.cfg.Members[j].Store.Delete(ctx, e.String())
			}
		}
	}
	return nil
}

// Freshness implements store.FreshnessKeeper: the newest record K
// members hold authentically, and how many members hold it.
func (s *Store) Freshness(ctx context.Context) ([]byte, int, int, error) {
	if err := s.checkRecord(ctx, "read"); err != nil {
		return nil, 0, 0, err
	}
	v := s.readRecord(ctx)
	if err := ctx.Err(); err != nil {
		return nil, 0, 0, fmt.Errorf("spread: read %s: %w", freshnessName, err)
	}
	if v.best == nil {
		if v.answered < s.cfg.K {
			return nil, 0, 0, fmt.Errorf("spread: read %s: only %d of %d members answered (%s): %w",
				freshnessName, v.answered, s.n, v.failures(s), store.ErrUnavailable)
		}
		if v.held() {
			return nil, 0, 0, fmt.Errorf("spread: read %s: no generation is held authentically by %d members: %w",
				freshnessName, s.cfg.K, store.ErrNotExist)
		}
		return nil, 0, 0, fmt.Errorf("spread: read %s: %w", freshnessName, store.ErrNotExist)
	}
	return slices.Clone(v.best.rec), v.agreed, s.n, nil
}

func (s *Store) checkRecord(ctx context.Context, op string) error {
	if s.closed.Load() {
		return fmt.Errorf("spread: %s %s: store is closed", op, freshnessName)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("spread: %s %s: %w", op, freshnessName, err)
	}
	return nil
}

// recordCopy is one generation of the record as a member holds it.
type recordCopy struct {
	gen uint64
	rec []byte
}

// memberRecord is what one member holds of the record.
type memberRecord struct {
	err     error        // why the member could not be listed or read
	entries []memberName // every generation it lists
	copies  []recordCopy // the authentic ones, newest first
	damaged int          // copies that failed authentication
}

// holds reports whether the member holds c authentically.
func (m memberRecord) holds(c *recordCopy) bool {
	return slices.ContainsFunc(m.copies, func(x recordCopy) bool { return x.gen == c.gen && bytes.Equal(x.rec, c.rec) })
}

// newest is the member's newest authentic copy, or nil.
func (m memberRecord) newest() *recordCopy {
	if len(m.copies) == 0 {
		return nil
	}
	return &m.copies[0]
}

// recordView is every member's record, and the one a read takes.
type recordView struct {
	members  []memberRecord
	answered int
	best     *recordCopy // the newest copy K members hold; nil if none
	agreed   int         // how many members hold best
}

// held reports whether any member listed a generation of the record.
func (v *recordView) held() bool {
	return slices.ContainsFunc(v.members, func(m memberRecord) bool { return len(m.entries) > 0 })
}

func (v *recordView) failures(s *Store) string {
	var f []string
	for j, m := range v.members {
		if m.err != nil {
			f = append(f, fmt.Sprintf("member %s: %v", s.label(j), m.err))
		}
	}
	return strings.Join(f, "; ")
}

// readRecord lists and reads the record on every member, concurrently,
// and picks the newest generation that K members hold authentically. A
// copy that fails authentication is warned of (by member) and queued for
// repair, and counts for nothing.
func (s *Store) readRecord(ctx context.Context) *recordView {
	r := freshnessRef()
	ls := s.listName(ctx, r, s.allMembers())
	v := &recordView{members: make([]memberRecord, s.n)}
	var wg sync.WaitGroup
	for j := range s.n {
		l := ls[j]
		if l.err != nil {
			v.members[j].err = l.err
			continue
		}
		v.answered++
		wg.Go(func() { v.members[j] = s.readMemberRecord(ctx, j, l.entries) })
	}
	wg.Wait()
	// Copies agree when they are of one generation and byte for byte the
	// same.
	type key struct {
		gen uint64
		rec string
	}
	count := map[key]int{}
	for _, m := range v.members {
		for _, c := range m.copies {
			count[key{c.gen, string(c.rec)}]++
		}
	}
	for _, m := range v.members {
		for _, c := range m.copies {
			n := count[key{c.gen, string(c.rec)}]
			if n < s.cfg.K {
				continue
			}
			if v.best == nil || c.gen > v.best.gen || c.gen == v.best.gen && n > v.agreed {
				v.best, v.agreed = &c, n
			}
		}
	}
	return v
}

// readMemberRecord reads and authenticates member j's newest generations
// of the record.
func (s *Store) readMemberRecord(ctx context.Context, j int, entries []memberName) memberRecord {
	m := memberRecord{entries: entries}
	es := slices.Clone(entries)
	slices.SortFunc(es, func(a, b memberName) int { return -cmpGen(a, b) })
	for _, e := range es[:min(len(es), maxRecordCopies)] {
		rec, err := s.readCopy(ctx, j, e)
		switch {
		case err == nil:
			m.copies = append(m.copies, recordCopy{gen: e.gen, rec: rec})
		case errors.Is(err, ErrDamaged) || errors.Is(err, ErrMissing):
			m.damaged++
		default:
			m.err = err
			return m
		}
	}
	return m
}

func cmpGen(a, b memberName) int {
	switch {
	case a.gen < b.gen:
		return -1
	case a.gen > b.gen:
		return 1
	}
	return 0
}

// readCopy reads member j's copy mn of the record and checks every
// stripe's tag.
func (s *Store) readCopy(ctx context.Context, j int, mn memberName) ([]byte, error) {
	r := freshnessRef()
	g := s.geometry(r, mn.size)
	n := g.stripes()
	if n == 0 || mn.size > store.MaxFreshnessRecord {
		s.warn(Problem{Member: s.label(j), Object: freshnessName, Stripe: -1,
			Err: fmt.Errorf("a copy of %d bytes: %w", mn.size, ErrDamaged)})
		return nil, ErrDamaged
	}
	res := &resolved{ref: r, g: g, gen: mn.gen, lacks: make([]bool, s.n)}
	got, err := s.fetch(ctx, res, j, 0, n-1)
	if err != nil {
		return nil, err
	}
	var out []byte
	for _, b := range got {
		out = append(out, b...)
	}
	return out, nil
}

// MemberFreshness is what one member holds of the freshness record.
type MemberFreshness struct {
	Member    string `json:"member"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	// Generation is the newest generation the member holds authentically
	// (0: none); Record is that copy.
	Generation uint64 `json:"generation,omitempty"`
	Record     []byte `json:"-"`
	// Current: the member holds the generation reads take.
	Current bool `json:"current"`
	// Damaged counts copies that failed authentication.
	Damaged int `json:"damaged,omitempty"`
}

// FreshnessByMember reads the freshness record on every member and says
// what each holds (for `holdfast stores`).
func (s *Store) FreshnessByMember(ctx context.Context) ([]MemberFreshness, error) {
	if err := s.checkRecord(ctx, "read"); err != nil {
		return nil, err
	}
	v := s.readRecord(ctx)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := make([]MemberFreshness, s.n)
	for j, m := range v.members {
		mf := MemberFreshness{Member: s.label(j), Reachable: m.err == nil, Damaged: m.damaged}
		if m.err != nil {
			mf.Error = m.err.Error()
		}
		if c := m.newest(); c != nil {
			mf.Generation, mf.Record = c.gen, slices.Clone(c.rec)
		}
		mf.Current = v.best != nil && m.holds(v.best)
		out[j] = mf
	}
	return out, nil
}

// FreshnessRepair is what a repair found and did about the freshness
// record.
type FreshnessRepair struct {
	// Generation is the current generation (0: no generation is held by
	// K members), Agreed how many members held it before the repair.
	Generation uint64 `json:"generation,omitempty"`
	Agreed     int    `json:"agreed"`
	// Lacking names the reachable members that did not hold it
	// authentically; Rebuilt those it was written back to, Failed those
	// where that failed.
	Lacking []string `json:"lacking,omitempty"`
	Rebuilt []string `json:"rebuilt,omitempty"`
	Failed  []string `json:"failed,omitempty"`
	// Stale counts older generations removed.
	Stale int `json:"stale,omitempty"`
}

// repairFreshness brings every reachable member's record up to the
// current generation and removes older generations. It returns nil when
// no member holds any record; done says nothing is left to do.
func (s *Store) repairFreshness(ctx context.Context, o RepairOptions) (fr *FreshnessRepair, done bool, err error) {
	v := s.readRecord(ctx)
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if !v.held() {
		return nil, v.answered == s.n, nil
	}
	fr = &FreshnessRepair{}
	if v.best == nil {
		return fr, false, nil // nothing to rebuild from: reported as unreadable
	}
	fr.Generation, fr.Agreed = v.best.gen, v.agreed
	r := freshnessRef()
	var targets []int
	done = v.answered == s.n
	for j, m := range v.members {
		if m.err != nil {
			continue
		}
		if !m.holds(v.best) {
			fr.Lacking = append(fr.Lacking, s.label(j))
			targets = append(targets, j)
			continue
		}
		fr.Stale += s.removeOlder(ctx, j, m.entries, v.best.gen, o.DryRun)
	}
	if len(targets) == 0 || o.DryRun {
		return fr, done && len(targets) == 0, nil
	}
	g := s.geometry(r, int64(len(v.best.rec)))
	errs, err := s.writeMembers(ctx, r, g, v.best.gen, bytes.NewReader(v.best.rec), targets)
	if err != nil {
		return fr, false, err
	}
	for _, j := range targets {
		if e := errs[j]; e != nil {
			fr.Failed = append(fr.Failed, fmt.Sprintf("member %s: %v", s.label(j), e))
			done = false
			continue
		}
		fr.Rebuilt = append(fr.Rebuilt, s.label(j))
		fr.Stale += s.removeOlder(ctx, j, v.members[j].entries, v.best.gen, false)
	}
	return fr, done, nil
}

// removeOlder removes member j's generations of the record older than
// gen (only counts them with dryRun) and returns how many.
func (s *Store) removeOlder(ctx context.Context, j int, entries []memberName, gen uint64, dryRun bool) int {
	n := 0
	for _, e := range entries {
		if e.gen >= gen {
			continue
		}
		if !dryRun {
			if err := s.cfg.Members[j].Store.Delete(ctx, e.String()); err != nil && !errors.Is(err, store.ErrNotExist) {
				continue
			}
		}
		n++
	}
	return n
}

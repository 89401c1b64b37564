package spread

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
)

// MemberStatus is one member as a survey or a repair found it.
type MemberStatus struct {
	MemberInfo
	Index     int    `json:"index"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
	// Shards is the number of objects whose current generation the
	// member holds; Bytes is everything the member stores.
	Shards int   `json:"shards"`
	Bytes  int64 `json:"bytes"`
	// Foreign counts member objects that are not shards of this store.
	Foreign int `json:"foreign,omitempty"`
	// Missing and Damaged count shards the member lacks or holds damaged
	// (Damaged only when the shards were read); Rebuilt those a repair
	// wrote back; Stale the superseded generations a repair removed.
	Missing int `json:"missing,omitempty"`
	Damaged int `json:"damaged,omitempty"`
	Rebuilt int `json:"rebuilt,omitempty"`
	Stale   int `json:"stale,omitempty"`
}

// Layout is the spread store as a survey of its members found it.
type Layout struct {
	K       int            `json:"k"`
	M       int            `json:"m"`
	Quorum  int            `json:"write_quorum"`
	Objects int            `json:"objects"`
	Members []MemberStatus `json:"members"`
	// Unreadable lists objects no generation of which enough reachable
	// members hold.
	Unreadable []string `json:"unreadable,omitempty"`
}

// Survey lists every member and reports, per member, whether it answered
// and how many shards it holds.
func (s *Store) Survey(ctx context.Context) (*Layout, error) {
	sv, err := s.survey(ctx)
	if err != nil {
		return nil, err
	}
	lay := s.layoutOf(sv)
	for name, ls := range sv.objects {
		best, ok := s.pick(publicRef(name), ls)
		if !ok {
			lay.Unreadable = append(lay.Unreadable, name)
			continue
		}
		lay.Objects++
		for j, l := range ls {
			if hasGen(l, best) {
				lay.Members[j].Shards++
			} else if l.err == nil {
				lay.Members[j].Missing++
			}
		}
	}
	slices.Sort(lay.Unreadable)
	return lay, nil
}

func (s *Store) layoutOf(sv *survey) *Layout {
	lay := &Layout{K: s.cfg.K, M: s.cfg.M, Quorum: s.quorum, Members: make([]MemberStatus, s.n)}
	for j := range s.n {
		ms := MemberStatus{MemberInfo: s.cfg.Members[j].MemberInfo, Index: j, Reachable: sv.errs[j] == nil,
			Bytes: sv.bytes[j], Foreign: sv.foreign[j]}
		if err := sv.errs[j]; err != nil {
			ms.Error = err.Error()
		}
		lay.Members[j] = ms
	}
	return lay
}

func hasGen(l listing, best memberName) bool {
	return slices.ContainsFunc(l.entries, func(e memberName) bool { return e.gen == best.gen && e.size == best.size })
}

// RepairOptions configure Repair.
type RepairOptions struct {
	// Deep reads every shard on every member and authenticates it;
	// otherwise only the queued objects are read, and the rest checked
	// by listing (present, current generation, right size).
	Deep bool
	// DryRun finds and reports, and changes nothing.
	DryRun bool
	// Prune removes the shards of objects that no generation can be
	// rebuilt from (with every member reachable); otherwise only those of
	// objects queued as deleted are removed.
	Prune bool
	// Progress, if set, is called after each object.
	Progress func(RepairProgress)
}

// RepairProgress is how far a repair has come.
type RepairProgress struct {
	Done, Total int
	Object      string
	// Rebuilt is the number of shard bytes written back so far.
	Rebuilt int64
}

// RepairReport is what a repair found and did.
type RepairReport struct {
	Layout
	// Repaired counts objects that had a shard rebuilt or a superseded
	// generation removed; Problems those found at fault (in a dry run,
	// all of them, since none is repaired).
	Repaired int `json:"repaired"`
	Problems int `json:"problems"`
	Pruned   int `json:"pruned,omitempty"`
	// Failed lists objects a repair could not finish, with why.
	Failed       []string `json:"failed,omitempty"`
	BytesRebuilt int64    `json:"bytes_rebuilt"`
	// Freshness is what the repair found and did about the freshness
	// record (freshness.go); nil when no member holds one.
	Freshness *FreshnessRepair `json:"freshness_record,omitempty"`
}

// Clean reports whether every member is reachable and holds an authentic
// current shard of every object (as far as the repair read them), and
// nothing is left to do.
func (r *RepairReport) Clean() bool {
	if len(r.Failed) > 0 || len(r.Unreadable) > 0 {
		return false
	}
	for _, m := range r.Members {
		if !m.Reachable || m.Missing > m.Rebuilt || m.Damaged > m.Rebuilt {
			return false
		}
	}
	return true
}

// Repair checks every object on every member and rebuilds the shards that
// are missing or damaged onto the members that lack them (recovered or
// replacement members), from K authentic shards on the others, under the
// same generation; it removes superseded generations and the leftovers
// of objects deleted while a member was down. Members that cannot be
// reached are reported and left for a later repair.
func (s *Store) Repair(ctx context.Context, o RepairOptions) (*RepairReport, error) {
	queue, err := s.readQueue()
	if err != nil {
		return nil, fmt.Errorf("spread: reading the repair queue: %w", err)
	}
	sv, err := s.survey(ctx)
	if err != nil {
		return nil, fmt.Errorf("spread: repair: %w", err)
	}
	rep := &RepairReport{Layout: *s.layoutOf(sv)}
	names := make([]string, 0, len(sv.objects))
	for name := range sv.objects {
		names = append(names, name)
	}
	slices.Sort(names)
	settled := map[string]bool{}
	// Queued names that no member holds any more are settled.
	for name := range queue {
		if _, ok := sv.objects[name]; !ok && sv.answered == s.n {
			settled[name] = true
		}
	}
	for x, name := range names {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		ok, err := s.repairObject(ctx, rep, name, sv.objects[name], queue[name], o)
		switch {
		case err != nil:
			rep.Failed = append(rep.Failed, fmt.Sprintf("%s: %v", name, err))
		case ok && sv.answered == s.n && !o.DryRun:
			settled[name] = true
		}
		if o.Progress != nil {
			o.Progress(RepairProgress{Done: x + 1, Total: len(names), Object: name, Rebuilt: rep.BytesRebuilt})
		}
	}
	// The freshness record is checked on every member every time: it is
	// one small object per member.
	delete(settled, freshnessName)
	fr, done, err := s.repairFreshness(ctx, o)
	if err != nil {
		return rep, fmt.Errorf("spread: repair: %w", err)
	}
	s.noteFreshness(rep, fr)
	if done && !o.DryRun {
		settled[freshnessName] = true
	}
	slices.Sort(rep.Unreadable)
	if !o.DryRun {
		if err := s.settleQueue(settled); err != nil {
			return rep, fmt.Errorf("spread: rewriting the repair queue: %w", err)
		}
	}
	return rep, nil
}

// noteFreshness adds the freshness record's repair to the report's
// counts: a record no generation of which K members hold is unreadable,
// a member that lacked it a problem, a failed rewrite a failure.
func (s *Store) noteFreshness(rep *RepairReport, fr *FreshnessRepair) {
	rep.Freshness = fr
	switch {
	case fr == nil:
		return
	case fr.Generation == 0:
		rep.Unreadable = append(rep.Unreadable, freshnessName)
		rep.Problems++
		return
	}
	if len(fr.Lacking) > 0 {
		rep.Problems++
	}
	if len(fr.Rebuilt) > 0 || fr.Stale > 0 {
		rep.Repaired++
	}
	for _, f := range fr.Failed {
		rep.Failed = append(rep.Failed, freshnessName+": "+f)
	}
}

// repairObject checks and repairs one object; ok says that nothing is
// left to do for it on the members that answered.
func (s *Store) repairObject(ctx context.Context, rep *RepairReport, name string, ls map[int]listing, queued string, o RepairOptions) (bool, error) {
	r := publicRef(name)
	best, found := s.pick(r, ls)
	if !found {
		// Pruning decides that nothing can rebuild the object: only when
		// every member answered. A member that did not may hold the shards
		// that make it readable (TestPruneNeedsEveryMember).
		allAnswered := len(ls) == s.n
		for _, l := range ls {
			allAnswered = allAnswered && l.err == nil
		}
		if queued != queueDel && (!o.Prune || !allAnswered) {
			rep.Unreadable = append(rep.Unreadable, name)
			rep.Problems++
			return false, nil
		}
		// Leftovers of a deletion, or shards nothing can rebuild.
		if !o.DryRun {
			for j, l := range ls {
				for _, e := range l.entries {
					if err := s.cfg.Members[j].Store.Delete(ctx, e.String()); err != nil {
						return false, fmt.Errorf("member %s: removing a leftover shard: %w", s.label(j), err)
					}
				}
			}
		}
		rep.Pruned++
		return true, nil
	}
	rep.Objects++
	// Older generations go only once the newest is held by a write quorum:
	// held by fewer, it may be an overwrite still in progress, which fails
	// below the quorum and removes what it wrote — the older generation
	// must then still be there (TestRepairLeavesOldWhileOverwriteRuns).
	holders := 0
	for _, l := range ls {
		if l.err == nil && hasGen(l, best) {
			holders++
		}
	}
	dropOlder := holders >= s.quorum
	res := &resolved{ref: r, g: s.geometry(r, best.size), gen: best.gen, lacks: make([]bool, s.n)}
	var targets []int
	problem, changed := false, false
	for j := range s.n {
		l, answered := ls[j]
		if !answered || l.err != nil {
			problem = true // unreachable: left for a later repair
			continue
		}
		ms := &rep.Members[j]
		if !hasGen(l, best) {
			res.lacks[j] = true
			ms.Missing++
			targets = append(targets, j)
			continue
		}
		if o.Deep || queued == queuePut {
			bad, err := s.verifyMember(ctx, res, j)
			if err != nil && len(bad) == 0 {
				return false, fmt.Errorf("member %s: %w", s.label(j), err)
			}
			if len(bad) > 0 {
				ms.Damaged++
				targets = append(targets, j)
				continue
			}
		}
		ms.Shards++
		// Superseded generations; newer ones that are not (yet) readable
		// may be a write in progress, and are left alone.
		for _, e := range l.entries {
			if e.gen < best.gen && dropOlder || e.gen == best.gen && e.size != best.size {
				changed = true
				ms.Stale++
				if !o.DryRun {
					if err := s.cfg.Members[j].Store.Delete(ctx, e.String()); err != nil {
						return false, fmt.Errorf("member %s: removing a superseded shard: %w", s.label(j), err)
					}
				}
			}
		}
	}
	if len(targets) == 0 {
		if changed {
			rep.Repaired++
		}
		return !problem, nil
	}
	rep.Problems++
	if o.DryRun {
		return false, nil
	}
	errs, err := s.rebuild(ctx, res, targets)
	if err != nil {
		return false, err
	}
	var failed []string
	for _, j := range targets {
		if e := errs[j]; e != nil {
			failed = append(failed, fmt.Sprintf("member %s: %v", s.label(j), e))
			continue
		}
		rep.Members[j].Rebuilt++
		rep.Members[j].Shards++
		rep.BytesRebuilt += s.objSize(r, best)
	}
	if len(failed) > 0 {
		return false, fmt.Errorf("rebuilding: %v", failed)
	}
	rep.Repaired++
	return !problem, nil
}

// verifyMember reads every shard of res on member j and returns the
// stripes that failed authentication (all of them if the object is
// missing). err says why the member could not be read.
func (s *Store) verifyMember(ctx context.Context, res *resolved, j int) ([]int64, error) {
	g := res.g
	n := g.stripes()
	per := max(1, 4*batchBytes/(g.fullShard()+TagSize))
	var bad []int64
	for s0 := int64(0); s0 < n; s0 += per {
		s1 := min(n-1, s0+per-1)
		got, err := s.fetch(ctx, res, j, s0, s1)
		if err != nil && got == nil {
			if errors.Is(err, ErrMissing) {
				return []int64{-1}, nil
			}
			return nil, err
		}
		for i, b := range got {
			if b == nil {
				bad = append(bad, s0+int64(i))
			}
		}
	}
	return bad, nil
}

// rebuild writes generation res of the object again onto targets, from
// the other members: the data is read back (from K authentic shards) and
// encoded again, which gives the very shards that were lost.
func (s *Store) rebuild(ctx context.Context, res *resolved, targets []int) (map[int]error, error) {
	avoid := func(j int) bool { return slices.Contains(targets, j) }
	rd := &reader{s: s, ctx: ctx, res: res, pos: 0, end: res.g.size, avoid: avoid}
	pr, pw := io.Pipe()
	go func() {
		_, err := io.Copy(pw, rd)
		pw.CloseWithError(err)
	}()
	errs, err := s.writeMembers(ctx, res.ref, res.g, res.gen, pr, targets)
	pr.CloseWithError(errors.New("rebuild ended"))
	return errs, err
}

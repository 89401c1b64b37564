package spread

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/holdfast/holdfast/internal/store"
)

// recordFiles returns the paths of member j's copies of the freshness
// record (one per generation it holds), found by their token.
func (r *rig) recordFiles(t *testing.T, j int) []string {
	t.Helper()
	tok, _, err := r.s.keys.tokenFor(j, freshnessRef())
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	filepath.WalkDir(r.dirs[j], func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if mn, ok := parseMemberName(d.Name()); ok && mn.internal && mn.token == tok && mn.label == freshnessLabel {
			found = append(found, p)
		}
		return nil
	})
	return found
}

// recordFile is member j's only copy of the record.
func (r *rig) recordFile(t *testing.T, j int) string {
	t.Helper()
	fs := r.recordFiles(t, j)
	if len(fs) != 1 {
		t.Fatalf("member %d holds %d copies of the freshness record, want 1", j, len(fs))
	}
	return fs[0]
}

func wantRecord(t *testing.T, s *Store, want []byte, agreed int) {
	t.Helper()
	rec, n, of, err := s.Freshness(t.Context())
	if err != nil || !bytes.Equal(rec, want) || n != agreed || of != 5 {
		t.Fatalf("Freshness = %q, agreed %d of %d, %v; want %q agreed %d of 5", rec, n, of, err, want, agreed)
	}
}

// snapshot copies member files aside (what a provider keeps to roll back
// with); restore puts them back.
type fileCopy struct {
	path string
	data []byte
}

func snapshot(t *testing.T, p string) fileCopy {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return fileCopy{p, b}
}

func (f fileCopy) restore(t *testing.T) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(f.path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestFreshnessRecordRoundTrip: the record reads back with every member
// agreeing, a new one replaces it and the old generation is removed, and
// neither List, Survey nor the janitor sees it.
func TestFreshnessRecordRoundTrip(t *testing.T) {
	r := newRig(t, 1000)
	ctx := t.Context()
	if _, _, _, err := r.s.Freshness(ctx); !errors.Is(err, store.ErrNotExist) {
		t.Fatalf("Freshness before any record: %v; want ErrNotExist", err)
	}
	one, two := []byte("record one"), bytes.Repeat([]byte("record two "), 300) // two spans two stripes of 3000 bytes
	if err := r.s.PutFreshness(ctx, one); err != nil {
		t.Fatal(err)
	}
	wantRecord(t, r.s, one, 5)
	if err := r.s.PutFreshness(ctx, two); err != nil {
		t.Fatal(err)
	}
	wantRecord(t, r.s, two, 5)
	for j := range 5 {
		r.recordFile(t, j) // exactly one generation left on each member
	}
	// Replicated: each member holds the whole record (and its tags).
	if fi, err := os.Stat(r.recordFile(t, 0)); err != nil || fi.Size() != int64(len(two))+2*TagSize {
		t.Fatalf("member copy: %v, %v; want the whole record and two tags", fi, err)
	}
	put(t, r.s, "visible", []byte("x"))
	var listed []string
	if err := r.s.List(ctx, "", func(oi store.ObjectInfo) error { listed = append(listed, oi.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(listed, []string{"visible"}) {
		t.Fatalf("List shows %q; want only the object (the record is internal)", listed)
	}
	lay, err := r.s.Survey(ctx)
	if err != nil || lay.Objects != 1 || lay.Members[0].Shards != 1 || lay.Members[0].Foreign != 0 {
		t.Fatalf("Survey: %+v, %v", lay, err)
	}
	if n, err := r.s.AbortIncomplete(ctx, func(string) bool { return false }); err != nil || n != 0 {
		t.Fatalf("janitor: %d, %v", n, err)
	}
	wantRecord(t, r.s, two, 5)
	if p := r.seen(); len(p) != 0 {
		t.Fatalf("problems: %v", p)
	}
	if err := r.s.PutFreshness(ctx, nil); err == nil {
		t.Fatal("an empty record was accepted")
	}
}

// TestFreshnessRecordRollback plays the providers: members put back the
// copy of the older record they kept. One member rolled back changes
// nothing (the newer record, agreed by the other four); N-K+1 = 3 members
// rolled back together return the older record, held by 3 = K — the
// documented limit.
func TestFreshnessRecordRollback(t *testing.T) {
	r := newRig(t, 1000)
	ctx := t.Context()
	old, cur := []byte("sequence 1"), []byte("sequence 2")
	if err := r.s.PutFreshness(ctx, old); err != nil {
		t.Fatal(err)
	}
	var kept []fileCopy
	for j := range 5 {
		kept = append(kept, snapshot(t, r.recordFile(t, j)))
	}
	if err := r.s.PutFreshness(ctx, cur); err != nil {
		t.Fatal(err)
	}
	rollBack := func(j int) {
		for _, p := range r.recordFiles(t, j) {
			os.Remove(p)
		}
		kept[j].restore(t)
	}
	wantRecord(t, r.s, cur, 5) // control: nothing rolled back
	rollBack(4)
	wantRecord(t, r.s, cur, 4)
	rollBack(3)
	wantRecord(t, r.s, cur, 3) // N-K members: still caught
	rollBack(2)
	wantRecord(t, r.s, old, 3) // N-K+1: the limit
	// Repair cannot tell either: it makes the older record everyone's.
	rep, err := r.s.Repair(ctx, RepairOptions{})
	if err != nil || rep.Freshness == nil || len(rep.Freshness.Rebuilt) != 2 {
		t.Fatalf("repair: %+v, %v", rep, err)
	}
	wantRecord(t, r.s, old, 5)
}

// TestFreshnessRecordForged: a copy whose bytes a provider edited, or
// which it renamed to a newer generation, fails authentication: it is
// ignored, and the member is named.
func TestFreshnessRecordForged(t *testing.T) {
	r := newRig(t, 1000)
	ctx := t.Context()
	rec := []byte("sequence 7, hash ...")
	if err := r.s.PutFreshness(ctx, rec); err != nil {
		t.Fatal(err)
	}
	wantRecord(t, r.s, rec, 5) // control
	if p := r.seen(); len(p) != 0 {
		t.Fatalf("problems before the forgery: %v", p)
	}
	// Member 3 edits its copy: "sequence 9".
	rewrite(t, r.recordFile(t, 3), func(b []byte) []byte { b[9] = '9'; return b })
	// Members 0 and 1 put forward a "newer" generation: their copy under
	// a higher generation in the name (the tag binds the generation).
	for _, j := range []int{0, 1} {
		p := r.recordFile(t, j)
		mn, _ := parseMemberName(filepath.Base(p))
		mn.gen += 1 << 20
		b, _ := os.ReadFile(p)
		if err := os.WriteFile(filepath.Join(filepath.Dir(p), mn.String()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	wantRecord(t, r.s, rec, 4)
	named := map[string]bool{}
	for _, p := range r.seen() {
		if p.Object == freshnessName && errors.Is(p.Err, ErrDamaged) {
			named[p.Member] = true
		}
	}
	if !named["us-1"] || !named["eu-1"] || !named["eu-2"] || len(named) != 3 {
		t.Fatalf("members reported for the forged copies: %v (%v); want us-1, eu-1, eu-2", named, r.seen())
	}
	by, err := r.s.FreshnessByMember(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if by[3].Current || by[3].Damaged != 1 || !by[0].Current || by[0].Damaged != 1 || !by[4].Current || by[4].Damaged != 0 {
		t.Fatalf("by member: %+v", by)
	}
}

// TestFreshnessRecordRepair: a write that missed a member is queued;
// repair brings the member's record up to date and removes its older
// generation.
func TestFreshnessRecordRepair(t *testing.T) {
	r := newRig(t, 1000)
	ctx := t.Context()
	old, cur := []byte("sequence 1"), []byte("sequence 2")
	if err := r.s.PutFreshness(ctx, old); err != nil {
		t.Fatal(err)
	}
	r.members[4].down.Store(true)
	if err := r.s.PutFreshness(ctx, cur); err != nil {
		t.Fatal(err)
	}
	if q, _ := r.s.Queued(); !slices.Contains(q, freshnessName) {
		t.Fatalf("the degraded write was not queued: %q", q)
	}
	r.members[3].down.Store(true)
	if err := r.s.PutFreshness(ctx, []byte("refused")); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("PutFreshness with 2 of 5 members down: %v; want ErrUnavailable", err)
	}
	r.members[3].down.Store(false)
	r.members[4].down.Store(false)
	wantRecord(t, r.s, cur, 4) // the refused write left nothing readable
	by, err := r.s.FreshnessByMember(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if by[4].Current || by[4].Generation == 0 || by[4].Generation >= by[0].Generation || !by[0].Current {
		t.Fatalf("before repair: %+v", by)
	}
	dry, err := r.s.Repair(ctx, RepairOptions{DryRun: true})
	if err != nil || dry.Freshness == nil || !slices.Equal(dry.Freshness.Lacking, []string{"jp-1"}) || dry.Problems != 1 {
		t.Fatalf("dry run: %+v, %v", dry, err)
	}
	rep, err := r.s.Repair(ctx, RepairOptions{})
	if err != nil || !slices.Equal(rep.Freshness.Rebuilt, []string{"jp-1"}) || rep.Freshness.Stale != 1 || !rep.Clean() {
		t.Fatalf("repair: %+v (%+v), %v", rep, rep.Freshness, err)
	}
	wantRecord(t, r.s, cur, 5)
	r.recordFile(t, 4) // one generation: the older one is gone
	if q, _ := r.s.Queued(); slices.Contains(q, freshnessName) {
		t.Fatalf("still queued after repair: %q", q)
	}
	// The rebuilt copy is authentic on its own: with members 0-1 down,
	// K = 3 of the other three must agree, member 4 among them.
	r.members[0].down.Store(true)
	r.members[1].down.Store(true)
	wantRecord(t, r.s, cur, 3)
	r.members[2].down.Store(true)
	if _, _, _, err := r.s.Freshness(ctx); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Freshness with 3 of 5 members down: %v; want ErrUnavailable", err)
	}
}

// TestFreshnessRecordLayout recomputes, from docs/format.md ("The
// freshness record") and the standard library alone, every member's copy
// of the record: its name and every byte.
func TestFreshnessRecordLayout(t *testing.T) {
	r := newRig(t, 1000)
	rec := body(9, 3500) // two stripes of D = 3000 bytes: 3000 and 500
	if err := r.s.PutFreshness(t.Context(), rec); err != nil {
		t.Fatal(err)
	}
	macKey := docKey(t, "holdfast/v1/spread/shard-mac")
	for j := range 5 {
		p := r.recordFile(t, j)
		base := filepath.Base(p)
		// TOKEN-r-SIZE-GEN-u, TOKEN that of "u-freshness".
		prefix := docToken(t, j, "u-freshness") + "-r-" + strconv.FormatInt(int64(len(rec)), 36) + "-"
		genText, ok := strings.CutPrefix(base, prefix)
		genText, ok2 := strings.CutSuffix(genText, "-u")
		if !ok || !ok2 {
			t.Fatalf("member %d copy named %q, want %s<GEN>-u", j, base, prefix)
		}
		gen, err := strconv.ParseUint(genText, 36, 64)
		if err != nil {
			t.Fatal(err)
		}
		var want []byte
		for i, off := 0, 0; off < len(rec); i, off = i+1, off+3000 {
			stripe := rec[off:min(len(rec), off+3000)]
			tp := []byte("holdfast/v1/spread/shard\x00")
			tp = append(tp, 1 /* replica */, 3, 2, byte(j))
			tp = binary.BigEndian.AppendUint32(tp, 1000)
			tp = binary.BigEndian.AppendUint16(tp, uint16(len("spread:freshness")))
			tp = append(tp, "spread:freshness"...)
			tp = binary.BigEndian.AppendUint64(tp, uint64(len(rec)))
			tp = binary.BigEndian.AppendUint64(tp, gen)
			want = append(want, stripe...)
			want = append(want, docHMAC(macKey, tp, binary.BigEndian.AppendUint64(nil, uint64(i)), stripe)...)
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("member %d copy: %d bytes differ from the documented layout (%d bytes)", j, len(got), len(want))
		}
	}
}
